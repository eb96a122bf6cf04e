"""The hardware design space: a set of choices per accelerator parameter.

Vocabulary follows NNI's ``nni.mutable``: each searched parameter is a choice with a
label (the field name) and its candidates; a sample is a plain ``dict[label, value]``;
``freeze(sample)`` gives an :class:`~accelerators.hardware.Accelerator`.  The
per-parameter index / one-hot encoding is what DANCE's hardware-generation network
predicts, one categorical head per parameter.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import numbers
from dataclasses import fields
from functools import cached_property
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .hardware import FIELDS, Accelerator, check_field
from .precision import BUILTIN_PRECISIONS
from coexplore.common import ConfigError, PathLike, check_keys, read_yaml, write_yaml
from coexplore.common import Registry

_ACC_FIELDS = tuple(f.name for f in fields(Accelerator) if f.name != "name")
SEARCHABLE = FIELDS

#: The dataflows of the built-in spaces.  Spelled out, not read from the registry, so that a
#: user-registered dataflow does not change the built-in spaces (their size, encoding and
#: fingerprint, on which evaluators and caches key).
BUILTIN_DATAFLOWS = ("ws", "os", "rs")

#: PE-array sizes (per axis) of DANCE's space.
DANCE_PE = [6, 8, 10, 12, 14, 16, 20, 24, 32]

#: Fixed values of the default DANCE-style space (Eyeriss' 108 KB buffer and 16-bit words).
DEFAULT_BASE = dict(glb_bytes=108 * 1024, clock_hz=200e6, dram_bw=16.0, glb_bw=64.0, word_bits=16)


def _value(field: str, v: Any, where: str) -> Any:
    """A validated candidate or fixed value, kept as written (an int stays an int, so fingerprints
    do not change); names are lower-cased and numpy scalars become Python numbers."""
    if isinstance(v, (list, tuple, set, frozenset, Mapping)) or v is None:
        raise ConfigError(f"{where}: {v!r} is not a single value; each value is one number or name")
    check_field(field, v, where)
    if isinstance(v, str):
        return v.lower()
    return v.item() if isinstance(v, np.generic) else v


class HardwareSpace:
    """Choices for each searched accelerator parameter; the other fields are fixed.

    Args:
        choices: ordered mapping ``field -> sequence of candidate values``.  Order of the
            mapping is the order of the encoding; order of each sequence is the order of
            the categories.
        fixed: values for the fields that are not searched.
        name: label used in tables and cache keys.
    """

    def __init__(self, choices: Mapping[str, Sequence[Any]], fixed: Optional[Mapping[str, Any]] = None,
                 name: str = "custom") -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"hardware space: name must be a non-empty string, got {name!r}")
        self.name = name
        if not isinstance(choices, Mapping):
            raise ConfigError(f"hardware space: 'choices' must be a mapping of parameter -> list of values, "
                              f"got {type(choices).__name__}")
        if not choices:
            raise ConfigError("hardware space: 'choices' must name at least one parameter")
        ch: Dict[str, Tuple[Any, ...]] = {}
        for k, vals in choices.items():
            if k not in SEARCHABLE:
                raise ConfigError(f"hardware space: unknown parameter {k!r}; searchable parameters: {list(SEARCHABLE)}")
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or len(vals) == 0:
                raise ConfigError(f"hardware space: choices for {k!r} must be a non-empty list, got {vals!r}")
            vals = tuple(_value(k, v, f"hardware space: choices for {k!r}") for v in vals)
            if len(set(vals)) != len(vals):
                raise ConfigError(f"hardware space: choices for {k!r} repeat a value: {list(vals)}")
            ch[k] = vals
        if fixed is not None and not isinstance(fixed, Mapping):
            raise ConfigError(f"hardware space: 'fixed' must be a mapping of field -> value, "
                              f"got {type(fixed).__name__}")
        fixed = dict(DEFAULT_BASE if fixed is None else fixed)
        unknown = sorted(str(k) for k in fixed if k not in _ACC_FIELDS)
        if unknown:
            raise ConfigError(f"hardware space: unknown fixed field(s) {unknown}; allowed: {list(_ACC_FIELDS)}")
        fixed = {k: _value(k, v, f"hardware space: fixed {k!r}") for k, v in fixed.items()}
        both = set(fixed) & set(ch)
        if both:
            raise ConfigError(f"hardware space: field(s) {sorted(both)} are both fixed and searched")
        missing = [f for f in ("pe_x", "pe_y", "rf_bytes", "glb_bytes", "dataflow") if f not in fixed and f not in ch]
        if missing:
            raise ConfigError(f"hardware space: field(s) {missing} are neither fixed nor searched")
        self.choices = ch
        self.fixed = fixed
        # Validate every candidate value once, against the first choice of the others.
        first = {k: v[0] for k, v in ch.items()}
        for k, vals in ch.items():
            for v in vals:
                self.freeze({**first, k: v})

    # ---- vocabulary --------------------------------------------------------------------
    @property
    def labels(self) -> List[str]:
        return list(self.choices)

    @property
    def cardinalities(self) -> List[int]:
        return [len(v) for v in self.choices.values()]

    @property
    def size(self) -> int:
        return int(np.prod(self.cardinalities))

    def __len__(self) -> int:
        return self.size

    def freeze(self, sample: Mapping[str, Any]) -> Accelerator:
        """The accelerator for a ``{label: value}`` sample."""
        if not isinstance(sample, Mapping):
            raise ConfigError(f"hardware sample: expected a mapping label -> value, got {type(sample).__name__}")
        missing = [k for k in self.choices if k not in sample]
        extra = [k for k in sample if k not in self.choices]
        if missing or extra:
            raise ConfigError(f"hardware sample: expected labels {self.labels}, got {list(sample)}")
        for k, v in sample.items():
            if v not in self.choices[k]:
                raise ConfigError(f"hardware sample: {k}={v!r} is not a choice; allowed values: {list(self.choices[k])}")
        return Accelerator(**self.fixed, **sample)

    def sample_of(self, acc: Accelerator) -> Dict[str, Any]:
        return {k: getattr(acc, k) for k in self.choices}

    # ---- encoding ----------------------------------------------------------------------
    def encode(self, acc: Accelerator) -> Tuple[int, ...]:
        """Per-parameter category indices of ``acc``; raises if ``acc`` is outside the space."""
        idx = []
        for k, vals in self.choices.items():
            v = getattr(acc, k)
            if v not in vals:
                raise ConfigError(f"accelerator {acc.short()}: {k}={v!r} is not in this space's choices {list(vals)}")
            idx.append(vals.index(v))
        for k, v in self.fixed.items():
            if getattr(acc, k) != v:
                raise ConfigError(f"accelerator {acc.short()}: fixed field {k} must be {v!r}")
        return tuple(idx)

    def decode(self, indices: Sequence[int]) -> Accelerator:
        if len(indices) != len(self.choices):
            raise ConfigError(f"hardware encoding: expected {len(self.choices)} indices ({self.labels}), got {len(indices)}")
        sample = {}
        for (k, vals), i in zip(self.choices.items(), indices):
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
                raise ConfigError(f"hardware encoding: index {i!r} for {k} is not an integer")
            i = int(i)
            if not 0 <= i < len(vals):
                raise ConfigError(f"hardware encoding: index {i} for {k} out of range 0..{len(vals) - 1}")
            sample[k] = vals[i]
        return self.freeze(sample)

    def one_hot(self, acc: Accelerator) -> np.ndarray:
        """Concatenated one-hot vectors, length ``sum(cardinalities)``."""
        out = np.zeros(sum(self.cardinalities), dtype=np.float32)
        off = 0
        for i, n in zip(self.encode(acc), self.cardinalities):
            out[off + i] = 1.0
            off += n
        return out

    def decode_one_hot(self, vec: Sequence[float]) -> Accelerator:
        """Argmax per parameter of a (possibly soft) concatenated one-hot vector."""
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        if vec.size != sum(self.cardinalities):
            raise ConfigError(f"hardware one-hot: expected length {sum(self.cardinalities)}, got {vec.size}")
        idx, off = [], 0
        for n in self.cardinalities:
            idx.append(int(np.argmax(vec[off:off + n])))
            off += n
        return self.decode(idx)

    # ---- flat indexing / enumeration ----------------------------------------------------
    def flat_index(self, acc: Accelerator) -> int:
        return int(np.ravel_multi_index(self.encode(acc), self.cardinalities))

    def index_grid(self) -> np.ndarray:
        """All index tuples, shape ``[size, n_params]``, in flat (C) order."""
        grids = np.indices(self.cardinalities).reshape(len(self.cardinalities), -1).T
        return grids

    @cached_property
    def _all(self) -> Tuple[Accelerator, ...]:
        return tuple(self.freeze(dict(zip(self.choices, combo)))
                     for combo in itertools.product(*self.choices.values()))

    def enumerate(self) -> List[Accelerator]:
        """Every accelerator of the space, in flat-index order."""
        return list(self._all)

    def __iter__(self) -> Iterator[Accelerator]:
        return iter(self._all)

    def sample(self, n: int, rng: Union[int, np.random.Generator, None] = None) -> List[Accelerator]:
        """``n`` accelerators drawn uniformly with replacement, reproducible from ``rng``."""
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
            raise ConfigError(f"hardware space: the number of samples must be an integer >= 0, got {n!r}")
        rng = np.random.default_rng(rng)
        idx = rng.integers(0, self.cardinalities, size=(int(n), len(self.cardinalities)))
        return [self.decode(row) for row in idx]

    # ---- I/O -----------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "choices": {k: list(v) for k, v in self.choices.items()}, "fixed": dict(self.fixed)}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "hardware space") -> "HardwareSpace":
        check_keys(d, {"name", "choices", "fixed"}, where, required=("choices",))
        try:
            return HardwareSpace(d["choices"], d.get("fixed"), name=d.get("name", "custom"))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def save(self, path: PathLike) -> None:
        write_yaml(path, self.to_dict())

    @staticmethod
    def load(path: PathLike) -> "HardwareSpace":
        return HardwareSpace.from_dict(read_yaml(path), where=str(path))

    def fingerprint(self) -> str:
        """A stable hash of the choices and fixed values (for caches and checkpoints)."""
        blob = json.dumps({"choices": {k: list(v) for k, v in self.choices.items()},
                           "fixed": {k: self.fixed[k] for k in sorted(self.fixed)}}, sort_keys=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        dims = ", ".join(f"{k}[{len(v)}]" for k, v in self.choices.items())
        return f"HardwareSpace({self.name!r}, {dims}, size={self.size})"


# ---- built-in spaces --------------------------------------------------------------------

HARDWARE_SPACES: Registry = Registry("hardware space")


@HARDWARE_SPACES.register("default")
def default_space() -> HardwareSpace:
    """DANCE's space: PE x, PE y, RF size and dataflow over a fixed 108 KB global buffer.

    9 x 9 x 4 x 3 = 972 points; it holds both of DANCE's picks (16x16/16 B/WS, 12x8/32 B/RS).
    """
    return HardwareSpace({"pe_x": DANCE_PE, "pe_y": DANCE_PE, "rf_bytes": [8, 16, 32, 64], "dataflow": BUILTIN_DATAFLOWS},
                         DEFAULT_BASE, name="default")


@HARDWARE_SPACES.register("small")
def small_space() -> HardwareSpace:
    """A 48-point space for quick demos and tests."""
    return HardwareSpace({"pe_x": [8, 16], "pe_y": [8, 16], "rf_bytes": [16, 32, 64, 128], "dataflow": BUILTIN_DATAFLOWS},
                         DEFAULT_BASE, name="small")


@HARDWARE_SPACES.register("extended")
def extended_space() -> HardwareSpace:
    """The default space plus searched global-buffer size and DRAM bandwidth (972 x 3 x 2 points)."""
    fixed = {k: v for k, v in DEFAULT_BASE.items() if k not in ("glb_bytes", "dram_bw")}
    return HardwareSpace({"pe_x": DANCE_PE, "pe_y": DANCE_PE, "rf_bytes": [8, 16, 32, 64], "dataflow": BUILTIN_DATAFLOWS,
                          "glb_bytes": [54 * 1024, 108 * 1024, 216 * 1024], "dram_bw": [8.0, 16.0]},
                         fixed, name="extended")


@HARDWARE_SPACES.register("precision-scalable")
def precision_scalable_space() -> HardwareSpace:
    """The default space plus the precision scheme: 972 x 4 = 3,888 points.

    ``precision`` in fixed (a 16-bit MAC), bit-serial (Stripes), loom and bit-fused (BitFusion
    fusion units); see :mod:`accelerators.precision`.  For networks with per-layer bits
    (``tiny-mnist-mp``, ``proxyless-cifar10-mp``) the best accelerator then depends on the bits.
    """
    return HardwareSpace({"pe_x": DANCE_PE, "pe_y": DANCE_PE, "rf_bytes": [8, 16, 32, 64],
                          "dataflow": BUILTIN_DATAFLOWS, "precision": BUILTIN_PRECISIONS},
                         DEFAULT_BASE, name="precision-scalable")


def get_hardware_space(name_or_path: str) -> HardwareSpace:
    return HARDWARE_SPACES.build(name_or_path, HardwareSpace.load)


def list_hardware_spaces() -> List[str]:
    return HARDWARE_SPACES.names()
