"""The accelerator record and the built-in named accelerators.

The template is the spatial-array accelerator of Eyeriss (Chen et al., JSSC 2017) and of
DANCE's Timeloop setup: DRAM -> global buffer (GLB) -> NoC -> a ``pe_y x pe_x`` array of
PEs, each a MAC with a private register file (RF).  The dataflow decides which loop
dimensions are unrolled on the array and which operand stays in the RF; it is one of the
registered :class:`~accelerators.dataflows.Dataflow` records (``list_dataflows()``).  How a PE's
MAC handles bit widths narrower than the word is its ``precision``, one of the registered
:class:`~accelerators.precision.PrecisionScheme` records (``list_precisions()``; default
``fixed``, written and fingerprinted only when it is not the default).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, Mapping, NamedTuple

import numpy as np

from coexplore.common import ConfigError, PathLike, check_keys, read_yaml, write_yaml
from coexplore.common import Registry
from .dataflows import DATAFLOWS, get_dataflow, list_dataflows
from .precision import PRECISIONS, get_precision, list_precisions

WORD_BITS = (4, 8, 16, 32)


class _DataflowView(Mapping):
    """A read-only ``{dataflow name: attribute}`` view of the dataflow registry, always current."""

    def __init__(self, attr: str) -> None:
        self._attr = attr

    def __getitem__(self, name: str) -> Any:
        return getattr(get_dataflow(name), self._attr)

    def __iter__(self) -> Iterator[str]:
        return iter(list_dataflows())

    def __len__(self) -> int:
        return len(DATAFLOWS)


#: ``{name: long name}`` of every registered dataflow (kept for callers of the former table;
#: prefer ``get_dataflow(name).long_name``).
DATAFLOW_NAMES: Mapping[str, str] = _DataflowView("long_name")
#: ``{name: smallest RF in words}`` of every registered dataflow (prefer
#: ``get_dataflow(name).min_rf_words``).
MIN_RF_WORDS: Mapping[str, int] = _DataflowView("min_rf_words")


class FieldRange(NamedTuple):
    """The accepted values of one numeric accelerator field."""

    lo: float  # smallest value
    hi: float  # largest value
    integer: bool  # True: an integer field
    text: str  # the range as error messages show it, with its unit


#: Accepted range of every numeric field.  The bounds are generous physical limits, and they
#: keep the cost model's int64 arithmetic safe (see :mod:`accelerators.workload`): at most
#: 4096 x 4096 PEs, 1 MiB of RF per PE and 16 GiB of GLB.
FIELD_RANGES: Dict[str, FieldRange] = {
    "pe_x": FieldRange(1, 4096, True, "1..4096 (PEs per array axis)"),
    "pe_y": FieldRange(1, 4096, True, "1..4096 (PEs per array axis)"),
    "rf_bytes": FieldRange(1, 2 ** 20, True, "1..1048576 (bytes per PE, up to 1 MiB)"),
    "glb_bytes": FieldRange(1, 2 ** 34, True, "1..17179869184 (bytes, up to 16 GiB)"),
    "clock_hz": FieldRange(1e3, 1e11, False, "1e3..1e11 (Hz, 1 kHz to 100 GHz)"),
    "dram_bw": FieldRange(1e-3, 1e9, False, "1e-3..1e9 (bytes per cycle)"),
    "glb_bw": FieldRange(1e-3, 1e9, False, "1e-3..1e9 (bytes per cycle)"),
}
#: The fields of an accelerator other than its name, in the order of the record.
FIELDS = ("pe_x", "pe_y", "rf_bytes", "glb_bytes", "dataflow", "clock_hz", "dram_bw", "glb_bw", "word_bits",
          "precision")
#: The default precision scheme: a fixed ``word_bits`` MAC (the model before precision schemes).  An
#: accelerator with it is written, compared and fingerprinted without the field.
DEFAULT_PRECISION = "fixed"


def check_field(name: str, value: Any, where: str = "accelerator") -> Any:
    """Validate one accelerator field on its own and return it normalised (int, float or lower-case name).

    Cross-field rules (the RF the dataflow needs, the GLB the array needs) are checked by
    :class:`Accelerator`.

    Raises:
        ConfigError: one line naming the field and its allowed values; NaN, infinities,
            booleans, strings for numbers and containers are refused.
    """
    if name == "dataflow":
        if not isinstance(value, str) or value.lower() not in DATAFLOWS:
            raise ConfigError(f"{where}: field dataflow is {value!r}; allowed values: {list_dataflows()}")
        return value.lower()
    if name == "precision":
        if not isinstance(value, str) or value.lower() not in PRECISIONS:
            raise ConfigError(f"{where}: field precision is {value!r}; allowed values: {list_precisions()}")
        return value.lower()
    if name == "word_bits":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
                or (not isinstance(value, numbers.Integral) and not float(value).is_integer()) \
                or int(value) not in WORD_BITS:
            raise ConfigError(f"{where}: field word_bits is {value!r}; allowed values: {list(WORD_BITS)}")
        return int(value)
    if name == "name":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: field name must be a string, got {value!r}")
        return value
    if name not in FIELD_RANGES:
        raise ConfigError(f"{where}: unknown field {name!r}; fields: {list(FIELDS)}")
    rng = FIELD_RANGES[name]
    kind = "a positive integer" if rng.integer else "a positive number"
    bad = ConfigError(f"{where}: field {name} must be {kind} in {rng.text}, got {value!r}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise bad
    if isinstance(value, numbers.Integral):
        x: Any = int(value)  # compared exactly: a huge int never goes through float()
    else:
        x = float(value)
        if not math.isfinite(x) or (rng.integer and not x.is_integer()):
            raise bad
        if rng.integer:
            x = int(x)
    if not rng.lo <= x <= rng.hi:
        raise bad
    return x if rng.integer else float(x)


@dataclass(frozen=True)
class Accelerator:
    """A spatial-array accelerator.  Immutable and validated on construction.

    Every numeric field is bounded (:data:`FIELD_RANGES`); NaN, infinities and booleans are
    refused.  ``rf_bytes`` must also hold the dataflow's ``min_rf_words`` words, and
    ``glb_bytes`` one word of each operand per PE.
    """

    pe_x: int  # PE array columns, 1..4096
    pe_y: int  # PE array rows, 1..4096
    rf_bytes: int  # register file per PE, bytes, 1..2^20 (and at least the dataflow's min_rf_words)
    glb_bytes: int  # global (shared on-chip) buffer, bytes, 1..2^34 (and at least 3 words per PE)
    dataflow: str  # a registered dataflow (list_dataflows()): "ws", "os", "rs", ...
    clock_hz: float = 200e6  # clock frequency, Hz, 1e3..1e11
    dram_bw: float = 16.0  # DRAM <-> GLB bandwidth, bytes per cycle, 1e-3..1e9
    glb_bw: float = 64.0  # GLB <-> PE-array (NoC) bandwidth, bytes per cycle, 1e-3..1e9
    word_bits: int = 16  # data word width, bits (weights, activations, partial sums): 4, 8, 16 or 32
    precision: str = DEFAULT_PRECISION  # a registered precision scheme (list_precisions()): "fixed", "bit-serial", ...
    name: str = field(default="", compare=False)  # label only; not part of identity

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"accelerator: field name must be a string, got {self.name!r}")
        where = f"accelerator {self.name!r}" if self.name else "accelerator"
        for f in FIELDS:
            object.__setattr__(self, f, check_field(f, getattr(self, f), where))
        scheme = get_precision(self.precision)
        if self.word_bits not in scheme.word_bits:
            raise ConfigError(f"{where}: field word_bits={self.word_bits} is not supported by precision "
                              f"{self.precision!r}; allowed values: {list(scheme.word_bits)}")
        df = get_dataflow(self.dataflow)
        need = df.min_rf_words * self.word_bytes
        if self.rf_bytes < need:
            raise ConfigError(
                f"{where}: field rf_bytes={self.rf_bytes} is too small for the {self.dataflow} dataflow: a PE must "
                f"hold at least {df.min_rf_words} words (one weight, one input, one partial sum) "
                f"= {need:g} bytes at {self.word_bits}-bit words")
        if self.glb_bytes < 3 * self.word_bytes * self.num_pes:
            raise ConfigError(
                f"{where}: field glb_bytes={self.glb_bytes} cannot hold one word of each operand per PE "
                f"(needs at least {3 * self.word_bytes * self.num_pes:g} bytes)")

    @property
    def num_pes(self) -> int:
        return self.pe_x * self.pe_y

    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8.0

    @property
    def rf_words(self) -> int:
        return int(self.rf_bytes * 8 // self.word_bits)

    @property
    def glb_words(self) -> int:
        return int(self.glb_bytes * 8 // self.word_bits)

    def with_(self, **changes: Any) -> "Accelerator":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def array_text(self) -> str:
        """The PE array, always as rows x columns: ``pe_y`` rows of ``pe_x`` PEs each."""
        return f"{self.pe_y}x{self.pe_x} PEs (rows x columns)"

    def short(self) -> str:
        """A one-line label; the array is written rows x columns (``pe_y x pe_x``)."""
        return (f"{self.pe_y}x{self.pe_x} {self.dataflow.upper()} RF{self.rf_bytes}B "
                f"GLB{self.glb_bytes // 1024}KB {self.word_bits}b"
                + ("" if self.precision == DEFAULT_PRECISION else f" {self.precision}"))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if not d["name"]:
            d.pop("name")
        if d["precision"] == DEFAULT_PRECISION:  # left out: old files and fingerprints are unchanged
            d.pop("precision")
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "accelerator") -> "Accelerator":
        allowed = set(FIELDS) | {"name"}
        check_keys(d, allowed, where, required=("pe_x", "pe_y", "rf_bytes", "glb_bytes", "dataflow"))
        try:
            return Accelerator(**d)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}" if where != "accelerator" else str(exc)) from None


def save_accelerator(path: PathLike, acc: Accelerator) -> None:
    write_yaml(path, acc.to_dict())


def load_accelerator(path: PathLike) -> Accelerator:
    return Accelerator.from_dict(read_yaml(path), where=str(path))


# ---- built-in accelerators ------------------------------------------------------------

ACCELERATORS: Registry[Callable[[], Accelerator]] = Registry("accelerator")


@ACCELERATORS.register("eyeriss")
def eyeriss() -> Accelerator:
    """Eyeriss v1 (Chen et al., JSSC 2017): 12x14 PEs, row-stationary, 16-bit.

    Each PE has 224 (filter) + 12 (ifmap) + 24 (psum) 16-bit words = 520 B of RF; the
    global buffer is 108 KB; the chip ran AlexNet at 200 MHz.  The off-chip link is 64 bits
    wide on a 90 MHz link clock: 720 MB/s, i.e. 3.6 B per 200 MHz core cycle.
    """
    return Accelerator(pe_x=14, pe_y=12, rf_bytes=520, glb_bytes=108 * 1024, dataflow="rs",
                       clock_hz=200e6, dram_bw=3.6, glb_bw=64.0, word_bits=16, name="eyeriss")


@ACCELERATORS.register("tpu-like")
def tpu_like() -> Accelerator:
    """A TPU-like weight-stationary systolic array scaled to the edge: 32x32 8-bit MACs.

    TPU v1 (Jouppi et al., ISCA 2017) is a 256x256 8-bit WS array at 700 MHz; we keep its
    dataflow, word width and clock and scale the array and buffer to an edge budget.
    """
    return Accelerator(pe_x=32, pe_y=32, rf_bytes=4, glb_bytes=256 * 1024, dataflow="ws",
                       clock_hz=700e6, dram_bw=32.0, glb_bw=128.0, word_bits=8, name="tpu-like")


@ACCELERATORS.register("shidiannao-like")
def shidiannao_like() -> Accelerator:
    """A ShiDianNao-like output-stationary array (Du et al., ISCA 2015): 8x8 16-bit PEs at 1 GHz.

    ShiDianNao keeps one output neuron per PE; its NBin/NBout/SB buffers total 256 KB.
    """
    return Accelerator(pe_x=8, pe_y=8, rf_bytes=64, glb_bytes=256 * 1024, dataflow="os",
                       clock_hz=1e9, dram_bw=16.0, glb_bw=64.0, word_bits=16, name="shidiannao-like")


@ACCELERATORS.register("dance-ws")
def dance_ws() -> Accelerator:
    """DANCE's published pick for its EDAP search: 16x16 PEs, 16 B RF, weight-stationary."""
    return Accelerator(pe_x=16, pe_y=16, rf_bytes=16, glb_bytes=108 * 1024, dataflow="ws", name="dance-ws")


@ACCELERATORS.register("dance-rs")
def dance_rs() -> Accelerator:
    """DANCE's published pick for its latency-oriented search: 12x8 PEs (PE x = 12, PE y = 8), 32 B RF, row-stationary."""
    return Accelerator(pe_x=12, pe_y=8, rf_bytes=32, glb_bytes=108 * 1024, dataflow="rs", name="dance-rs")


@ACCELERATORS.register("bitfusion-like")
def bitfusion_like() -> Accelerator:
    """A BitFusion-like bit-fused array (Sharma et al., ISCA 2018): 16x32 fusion units at 500 MHz.

    The configuration of the paper's comparison with Eyeriss, as the authors' simulator
    configures it (github.com/hsharma35/bitfusion, ``bf_e_conf.ini``): a 16 x 32 array of fusion
    units (8-bit, 2-bit bricks), 64 KB of weight SRAM, 32 KB of input and 16 KB of output SRAM
    (112 KB), a 192-bit off-chip interface, 500 MHz.  In this template the weight SRAM is
    distributed over the units as their register files (64 KB / 512 = 128 B each; each BitFusion
    unit has its own weight buffer), and the input and output SRAMs are the global buffer
    (48 KB).  DRAM: 192 bits = 24 B per cycle.  The systolic array keeps weights in the units and
    streams inputs along rows, so the dataflow is weight-stationary.  Our choices: 16-bit words
    (a layer without bits runs as 16-bit operands by temporal fusion) and the project's default
    buffer bandwidth of 64 B per cycle.
    """
    return Accelerator(pe_x=32, pe_y=16, rf_bytes=128, glb_bytes=48 * 1024, dataflow="ws", clock_hz=500e6,
                       dram_bw=24.0, glb_bw=64.0, word_bits=16, precision="bit-fused", name="bitfusion-like")


def get_accelerator(name_or_path: str) -> Accelerator:
    """A built-in accelerator by name, or one loaded from a YAML file path."""
    return ACCELERATORS.build(name_or_path, load_accelerator)


def list_accelerators():
    return ACCELERATORS.names()
