"""File helpers shared by the packages: atomic writes and YAML reading with clear errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

PathLike = Union[str, "os.PathLike[str]"]


class ConfigError(ValueError):
    """A user-supplied file or value is invalid; the message names the field."""


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(o: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples, paths, records with ``to_dict`` and
    non-finite floats (as ``None``)."""
    import math

    import numpy as np
    if isinstance(o, Mapping):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        o = float(o)
    if isinstance(o, os.PathLike):
        return str(o)
    if hasattr(o, "to_dict"):
        return to_jsonable(o.to_dict())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_yaml(path: PathLike, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_json(path: PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_yaml(path: PathLike) -> Any:
    """Read a YAML file; a missing or malformed file raises :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None


def check_keys(data: Mapping[str, Any], allowed, where: str, required=()) -> None:
    """Reject unknown and missing keys, naming the allowed ones."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed fields: {sorted(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}")
