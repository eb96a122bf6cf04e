"""File helpers shared by every package: atomic writes, and YAML/JSON readers that turn any
malformed input into a one-line :class:`~coexplore.common.errors.ConfigError`.

YAML is read with a safe loader (no object construction from tags) that also rejects
duplicate keys (YAML's "last one wins" silently drops a value) and anchors/aliases (a
few hundred bytes of nested aliases expand to gigabytes: the "billion laughs").
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

import yaml

from .errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

#: Temporary files older than this (seconds) next to a file being written are left-overs of
#: a killed writer and are removed.
STALE_TMP_S = 60.0
_umask_lock = threading.Lock()


def _current_umask() -> int:
    with _umask_lock:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def _remove_stale_tmp(path: Path) -> None:
    now = time.time()
    try:
        for p in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                if now - p.stat().st_mtime > STALE_TMP_S:
                    p.unlink()
            except OSError:
                pass
    except OSError:
        pass


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half.

    The file gets the usual permissions (``0666`` less the umask), not ``mkstemp``'s ``0600``;
    temporary files that a killed writer left next to ``path`` are cleaned up.

    Raises:
        ConfigError: ``path`` (or a folder above it) cannot be written -- a file where a
            folder should be, no permission, a full disk; the old file is left intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{path}: cannot create folder {path.parent}: a file of that name is in the way") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create folder {path.parent}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, cannot write a file there")
    _remove_stale_tmp(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}; the previous file, if any, "
                              "is unchanged") from None
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(o: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples, paths, records with ``to_dict`` and
    non-finite floats (as ``None``)."""
    import numpy as np
    if isinstance(o, Mapping):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, np.bool_):
        return bool(o)
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
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


# ---- reading ---------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors/aliases and duplicate mapping keys."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases ('*{event.anchor}') are not allowed in coexplore files", event.start_mark)
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"anchors ('&{anchor}') are not allowed in coexplore files", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hashable = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a plain value, got {key!r}", key_node.start_mark) from None
            if hashable:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def loads_yaml(text: str, where: str = "YAML") -> Any:
    """Parse YAML text strictly (see the module docstring); errors are :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"{where}: malformed YAML: {msg}") from None


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a {what} file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (it is not valid UTF-8); expected a {what} file") from None


def read_yaml(path: PathLike) -> Any:
    """Read a YAML file strictly; a missing, binary or malformed file raises :class:`ConfigError`
    naming it."""
    path = Path(path)
    return loads_yaml(_read_text(path, "YAML"), where=str(path))


def read_json(path: PathLike) -> Any:
    """Read a JSON file; a missing, binary or malformed file raises :class:`ConfigError` naming it.
    ``NaN`` and ``Infinity`` literals are refused."""
    path = Path(path)
    text = _read_text(path, "JSON")

    def _no_const(name: str):
        raise ConfigError(f"{path}: malformed JSON: {name} is not a number")

    try:
        return json.loads(text, parse_constant=_no_const)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: malformed JSON: {exc}") from None


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> None:
    """Reject unknown and missing keys, naming the allowed ones."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed fields: {sorted(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}")
