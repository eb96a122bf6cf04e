"""The accelerator record and the built-in named accelerators.

The template is the spatial-array accelerator of Eyeriss (Chen et al., JSSC 2017) and of
DANCE's Timeloop setup: DRAM -> global buffer (GLB) -> NoC -> a ``pe_y x pe_x`` array of
PEs, each a MAC with a private register file (RF).  The dataflow decides which loop
dimensions are unrolled on the array and which operand stays in the RF.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, Mapping

from coexplore.common import ConfigError, PathLike, check_keys, read_yaml, write_yaml
from coexplore.common import Registry

DATAFLOWS = ("ws", "os", "rs")
DATAFLOW_NAMES = {"ws": "weight-stationary", "os": "output-stationary", "rs": "row-stationary"}
WORD_BITS = (4, 8, 16, 32)

#: Smallest RF, in words, that still holds one weight, one input and one partial sum,
#: which every dataflow needs to issue a MAC from the PE's own storage.
MIN_RF_WORDS = {"ws": 3, "os": 3, "rs": 3}

_INT_FIELDS = ("pe_x", "pe_y", "rf_bytes", "glb_bytes", "word_bits")
_FLOAT_FIELDS = ("clock_hz", "dram_bw", "glb_bw")


@dataclass(frozen=True)
class Accelerator:
    """A spatial-array accelerator.  Immutable and validated on construction."""

    pe_x: int  # PE array columns
    pe_y: int  # PE array rows
    rf_bytes: int  # register file per PE, bytes
    glb_bytes: int  # global (shared on-chip) buffer, bytes
    dataflow: str  # "ws", "os" or "rs"
    clock_hz: float = 200e6  # clock frequency, Hz
    dram_bw: float = 16.0  # DRAM <-> GLB bandwidth, bytes per cycle
    glb_bw: float = 64.0  # GLB <-> PE-array (NoC) bandwidth, bytes per cycle
    word_bits: int = 16  # data word width, bits (weights, activations, partial sums)
    name: str = field(default="", compare=False)  # label only; not part of identity

    def __post_init__(self) -> None:
        where = f"accelerator {self.name!r}" if self.name else "accelerator"
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
                raise ConfigError(f"{where}: field {f} must be a positive integer, got {v!r}")
            object.__setattr__(self, f, int(v))
            if int(v) < 1:
                raise ConfigError(f"{where}: field {f} must be a positive integer, got {v}")
        for f in _FLOAT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{where}: field {f} must be a positive number, got {v!r}")
            object.__setattr__(self, f, float(v))
        if self.dataflow not in DATAFLOWS:
            raise ConfigError(f"{where}: field dataflow is {self.dataflow!r}; allowed values: {list(DATAFLOWS)}")
        if self.word_bits not in WORD_BITS:
            raise ConfigError(f"{where}: field word_bits is {self.word_bits}; allowed values: {list(WORD_BITS)}")
        need = MIN_RF_WORDS[self.dataflow] * self.word_bytes
        if self.rf_bytes < need:
            raise ConfigError(
                f"{where}: field rf_bytes={self.rf_bytes} is too small for the {self.dataflow} dataflow: a PE must "
                f"hold at least {MIN_RF_WORDS[self.dataflow]} words (one weight, one input, one partial sum) "
                f"= {need} bytes at {self.word_bits}-bit words")
        if self.glb_bytes < 3 * self.word_bytes * self.num_pes:
            raise ConfigError(
                f"{where}: field glb_bytes={self.glb_bytes} cannot hold one word of each operand per PE "
                f"(needs at least {3 * self.word_bytes * self.num_pes} bytes)")

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

    def short(self) -> str:
        return (f"{self.pe_x}x{self.pe_y} {self.dataflow.upper()} RF{self.rf_bytes}B "
                f"GLB{self.glb_bytes // 1024}KB {self.word_bits}b")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if not d["name"]:
            d.pop("name")
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "accelerator") -> "Accelerator":
        allowed = set(_INT_FIELDS) | set(_FLOAT_FIELDS) | {"dataflow", "name"}
        check_keys(d, allowed, where, required=("pe_x", "pe_y", "rf_bytes", "glb_bytes", "dataflow"))
        d = dict(d)
        if isinstance(d.get("dataflow"), str):
            d["dataflow"] = d["dataflow"].lower()
        return Accelerator(**d)


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


def get_accelerator(name_or_path: str) -> Accelerator:
    """A built-in accelerator by name, or one loaded from a YAML file path."""
    return ACCELERATORS.build(name_or_path, load_accelerator)


def list_accelerators():
    return ACCELERATORS.names()
