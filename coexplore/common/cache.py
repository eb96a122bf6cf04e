"""Where coexplore caches decoded datasets, evaluator training data and evaluators."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

CACHE_ENV = "COEXPLORE_CACHE"


def default_cache_dir(cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$COEXPLORE_CACHE``, else ``~/.cache/coexplore``.

    Resolved at call time, never at import.
    """
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "coexplore"
