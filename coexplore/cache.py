"""What coexplore caches, where, and how big it is (``coexplore cache info|clear``).

The cache (``$COEXPLORE_CACHE``, else ``~/.cache/coexplore``, or ``--cache-dir``) holds:

* ``data/`` -- decoded image datasets (CIFAR-10 decodes to about 185 MB), so a second load
  takes a second instead of a minute;
* ``evaluator-data/`` -- the DANCE evaluator's analytical training data (a few MB each);
* ``evaluators/`` -- trained evaluators keyed by the spaces, the cost source, the objective
  and the build settings (well under 1 MB each).

Everything in it can be deleted at any time; it is rebuilt on demand.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from .common import ConfigError, default_cache_dir

PARTS = {"data": "decoded image datasets", "evaluator-data": "the evaluator's analytical training data",
         "evaluators": "trained DANCE evaluators"}


def _size(path: Path):
    files, total = 0, 0
    for p in path.rglob("*"):
        if p.is_file():
            files += 1
            total += p.stat().st_size
    return files, total


def cache_info(cache_dir: Optional[str] = None) -> Dict[str, Any]:
    """Path, and files and bytes per part (and in total)."""
    root = default_cache_dir(cache_dir)
    parts = []
    total = 0
    for name, what in PARTS.items():
        d = root / name
        files, size = _size(d) if d.is_dir() else (0, 0)
        total += size
        parts.append({"part": name, "holds": what, "files": files, "MB": round(size / 1e6, 2)})
    other_files, other = 0, 0
    if root.is_dir():
        for p in root.iterdir():
            if p.name not in PARTS:
                f, s = _size(p) if p.is_dir() else (1, p.stat().st_size)
                other_files += f
                other += s
    if other_files:
        parts.append({"part": "other", "holds": "files coexplore did not write", "files": other_files,
                      "MB": round(other / 1e6, 2)})
        total += other
    return {"path": str(root), "exists": root.is_dir(), "parts": parts, "total_bytes": total}


def cache_clear(cache_dir: Optional[str] = None, part: str = "all") -> Dict[str, Any]:
    """Remove one part of the cache (or all of coexplore's parts); returns what was removed."""
    if part != "all" and part not in PARTS:
        raise ConfigError(f"cache part {part!r} is unknown; allowed values: {sorted(PARTS) + ['all']}")
    root = default_cache_dir(cache_dir)
    names = list(PARTS) if part == "all" else [part]
    files, size = 0, 0
    for name in names:
        d = root / name
        if d.is_dir():
            f, s = _size(d)
            files += f
            size += s
            shutil.rmtree(d)
    return {"path": str(root), "parts": names, "files": files, "bytes": size}
