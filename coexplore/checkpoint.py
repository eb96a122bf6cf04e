"""Search checkpoints that load without running code.

A checkpoint is written with ``torch.save`` and read with ``torch.load(weights_only=True)``:
tensors, numbers, strings, lists and dicts only -- no pickled objects, no RNG objects
(the search re-derives its random streams from the seed, see :mod:`coexplore.seeds`).  A
file that holds anything else is refused with a clear error instead of being unpickled, so
a run folder shared by someone else cannot be a way in.  The checkpoint also records the
fingerprint of every input its numbers depend on; a resume with a changed input is refused
with the name of what changed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping

import torch

from .common import ConfigError, atomic_write_bytes

CHECKPOINT_FORMAT = 2
_REQUIRED = {"format": int, "epoch": int, "trainer": dict, "targets": dict, "rows": list, "config": dict,
             "inputs": dict}


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (plain containers of tensors and numbers) atomically."""
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a search checkpoint safely and check its layout.

    Raises:
        ConfigError: the file is truncated or not a checkpoint, holds anything but tensors,
            numbers, strings, lists and dicts, or lacks the fields of format
            :data:`CHECKPOINT_FORMAT`.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise ConfigError(f"{path}: not a readable checkpoint (not a torch archive: truncated or corrupted); "
                          "delete it to start the run again")
    try:
        st = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: refused: the file holds objects other than tensors, numbers, strings, lists and "
                          f"dicts (a coexplore checkpoint never does; it may have been tampered with): {first}") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable checkpoint (truncated or corrupted: "
                          f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}); "
                          "delete it to start the run again") from None
    if not isinstance(st, dict):
        raise ConfigError(f"{path}: not a coexplore search checkpoint (a {type(st).__name__})")
    if st.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: checkpoint format {st.get('format')!r}, this coexplore reads format "
                          f"{CHECKPOINT_FORMAT}; start the run again in a new folder")
    for k, t in _REQUIRED.items():
        if not isinstance(st.get(k), t) or isinstance(st.get(k), bool):
            raise ConfigError(f"{path}: checkpoint field {k!r} is missing or not a {t.__name__}")
    extra = sorted(set(st) - set(_REQUIRED))
    if extra:
        raise ConfigError(f"{path}: checkpoint holds unexpected field(s) {extra}; refusing to resume from it")
    return st


def check_inputs(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse a resume whose inputs (spaces, cost source, data) differ from the checkpoint's."""
    changed = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if changed:
        what = ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in changed)
        raise ConfigError(f"{path}: cannot resume: input(s) changed since the checkpoint was written: {what}; "
                          "restore them or start a new run folder")
