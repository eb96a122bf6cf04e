"""Technology constants of the analytical cost model, each with its source.

All energies are per access of one 16-bit word (or per 16-bit MAC) at a 65 nm node, the
node of Eyeriss (Chen et al., JSSC 2017) on which DANCE's Timeloop/Accelergy setup is
modelled.  Relative costs follow Eyeriss' normalised access energies (Chen, Emer, Sze,
"Eyeriss: A Spatial Architecture for Energy-Efficient Dataflow for CNNs", ISCA 2016,
Fig. 6 / Table IV): MAC 1x, RF (0.5 KB) 1x, inter-PE NoC 2x, global buffer (100-500 KB)
6x, DRAM 200x.  The absolute unit (1 pJ per 16-bit MAC) comes from Horowitz, "Computing's
energy problem", ISSCC 2014 (45 nm: 8-bit multiply 0.2 pJ, 32-bit multiply 3.1 pJ, so a
16-bit multiply-add is about 0.8 pJ at 45 nm, ~1 pJ at 65 nm).

Per-access energies of the RF and the global buffer scale with the square root of their
capacity (CACTI: bitline/wordline length grows as the square root of the array), anchored
at Eyeriss' sizes (0.5 KB RF = 1x, 108 KB buffer = 6x) and floored for very small
register files, which are flip-flop arrays whose access cost does not vanish.  Memory
energies scale linearly with word width; the MAC scales with the square of the width
(multiplier-dominated; Horowitz' 8- vs 32-bit multiply ratio is 15.5x for 4x width).

Areas (65 nm): a 16-bit MAC ~ 3.5 k NAND2 gates x 1.44 um^2 = 0.005 mm^2; SRAM global
buffer 0.012 mm^2/KB including periphery (65 nm 6T cell ~0.52 um^2, ~50 % array
efficiency); latch/flip-flop register files 0.035 mm^2/KB (about 3x less dense than
SRAM).  A further 15 % of the PE-array area is added for the NoC, control and clock tree.
These are rounded textbook figures, not a calibration to any one chip.

Static power (leakage and the ungated part of the clock tree) is charged as a power
density times area times latency: 5 mW/mm^2 is the assumption, about 15 % of the power of
a 65 nm accelerator at full load (the usual rule of thumb for 65 nm general-purpose logic).
It is what makes an idle, oversized array cost energy; without it a bigger array never
costs more energy, and the best design would always sit at the edge of the space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Union

import numpy as np

from coexplore.common import ConfigError

#: Version of the cost model; part of every cache key and evaluator checkpoint.  Bump it
#: whenever a formula or constant below changes the numbers.
COST_MODEL_VERSION = "2.0"  # the precision schemes (version 2.0 too) leave every fixed-precision number as it was


# ---------------------------------------------------------------------------------------
# precision-scalable MAC units (the schemes of accelerators/precision.py)
# ---------------------------------------------------------------------------------------
#
# These constants are part of the formulas of the precision schemes, not of a technology
# preset: they enter no number of a ``fixed`` accelerator (today's behaviour), so they are
# not in :meth:`Technology.to_dict` (the fingerprints of existing models stay the same).
# ``COST_MODEL_VERSION`` is bumped when one of them changes.  Each is a ratio against the
# fixed-precision MAC of the same technology (``Technology.e_mac`` / ``Technology.a_mac``),
# so they carry over to every technology preset.
#
# What each number is, and where it comes from:
#
# * Bit-serial (Stripes; Judd, Albericio, Hetherington, Aamodt, Moshovos, "Stripes: Bit-serial
#   deep neural network computing", MICRO 2016).  The abstract reports, against the bit-parallel
#   16-bit DaDianNao baseline at equal peak (16-bit) throughput: 1.92x faster on average, 57 %
#   more energy efficient, 32 % more area.  Energy per unit of work is 1/1.57 of the baseline's
#   while work runs 1.92x faster, so the power -- energy per cycle at full occupancy -- is
#   1.92 / 1.57 = 1.22x the baseline's.  We charge that 1.22 per *word-equivalent cycle* of the
#   serial unit: a MAC with ``a``-bit activations costs ``1.22 x e_mac(word) x a / word``.  The
#   32 % is a whole-chip figure (memories included) that we put on the MAC unit alone; since
#   the compute units are only part of that chip, the unit's true overhead is larger: this is a
#   lower bound, i.e. an estimate in the scheme's favour.
# * Loom (Sharify, Delmas Lascorz, Siu, Judd, Moshovos, "Loom: Exploiting Weight and Activation
#   Precisions to Accelerate Convolutional Neural Networks", DAC 2018; arXiv 1706.07853v2
#   abstract): 4.38x faster and 3.54x more energy efficient than an equivalent bit-parallel
#   accelerator (128 16b x 16b MACs per cycle), so its power is 4.38 / 3.54 = 1.24x.  The
#   abstract gives no area; we use Stripes' 1.32 (the same serial inner-product-unit family).
#   That area factor is an estimate.
# * Bit-fused (BitFusion; Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable
#   Architecture for Accelerating Deep Neural Networks", ISCA 2018).  A fusion unit of 16
#   2-bit BitBricks does one 8b x 8b MAC per cycle, or 4 of 4b x 4b, or 16 of 2b x 2b, all
#   bricks busy in every mode; 16-bit operands take 4 cycles (temporal fusion).  So energy per
#   cycle is about constant and energy per MAC falls with the throughput.  The overhead of the
#   fusion against a fixed 8-bit MAC comes from the authors' own synthesis results, released
#   with their simulator (github.com/hsharma35/bitfusion, ``results/systolic_array_synth.csv``:
#   45 nm, 500 MHz, systolic arrays of PEs by maximum and minimum precision).  For a 4 x 4 array,
#   a PE that fuses 2- to 8-bit operands takes 27,753 um^2 and 3.67 mW of dynamic power; a fixed
#   8-bit PE takes 8,172 um^2 and 1.63 mW.  That is 3.40x the area and 2.26x the dynamic energy
#   per cycle.  Across the other array shapes in the file the ratios are 2.3-3.5x in area and
#   1.8-2.3x in dynamic power.  We take the 4 x 4 figures.  Static power is charged through the
#   area (``p_static_mw_per_mm2``), so the dynamic ratio is the one that enters the MAC energy.
#   Energy per MAC at low precision is then the ideal 1/throughput scaling, BitFusion's own
#   claim (all bricks busy).  Camus, Mei, Enz, Verhelst ("Review and Benchmarking of
#   Precision-Scalable Multiply-Accumulate Unit Architectures for Embedded Neural-Network
#   Processing", IEEE JETCAS 9(4), 2019) benchmark such 2-D "sum-together" MACs in 28 nm and
#   report that real designs fall short of that ideal, so low-precision MAC energy is optimistic.
#   We could not read their tables from here (no PDF access), so no number is taken from them.
#: Stripes: energy per word-equivalent cycle of a bit-serial unit / a bit-parallel word MAC (1.92 / 1.57).
SERIAL_ENERGY_FACTOR = 1.92 / 1.57
#: Stripes: area of a bit-serial unit / a bit-parallel word MAC (+32 %, the whole-chip figure; a lower bound).
SERIAL_AREA_FACTOR = 1.32
#: Loom: energy per word-equivalent cycle / a bit-parallel word MAC (4.38 / 3.54).
LOOM_ENERGY_FACTOR = 4.38 / 3.54
#: Loom: area / a bit-parallel word MAC (estimate: Stripes' 1.32; Loom's abstract gives none).
LOOM_AREA_FACTOR = 1.32
#: BitFusion: native width of a fusion unit (16 2-bit BitBricks = one 8b x 8b MAC per cycle), bits.
FUSED_NATIVE_BITS = 8
#: BitFusion: dynamic energy per cycle of a fusion unit / a fixed 8-bit MAC (authors' synthesis, 4x4 array: 3.67 / 1.63 mW).
FUSED_ENERGY_FACTOR = 3673.5 / 1627.5
#: BitFusion: area of a fusion unit / a fixed 8-bit MAC (authors' synthesis, 4x4 array: 27,753 / 8,172 um^2).
FUSED_AREA_FACTOR = 27752.84 / 8171.73


@dataclass(frozen=True)
class Technology:
    """Per-access energies (pJ per 16-bit word) and areas at one technology node."""

    node_nm: int = 65  # technology node, nm
    e_mac_pj: float = 1.0  # one 16-bit MAC, pJ (Horowitz ISSCC'14, scaled to 65 nm)
    e_rf_ref_pj: float = 1.0  # RF access at rf_ref_bytes, pJ (Eyeriss: 1x MAC)
    rf_ref_bytes: float = 512.0  # Eyeriss' ~0.5 KB per-PE RF
    e_rf_floor_pj: float = 0.25  # smallest RF access (a few flip-flops), pJ
    e_noc_pj: float = 2.0  # inter-PE / GLB<->PE transfer, pJ (Eyeriss: 2x)
    e_glb_ref_pj: float = 6.0  # global-buffer access at glb_ref_bytes, pJ (Eyeriss: 6x)
    glb_ref_bytes: float = 108 * 1024.0  # Eyeriss' 108 KB global buffer
    e_dram_pj: float = 200.0  # DRAM access, pJ (Eyeriss: 200x)
    a_mac_mm2: float = 0.005  # 16-bit MAC, mm^2
    a_rf_mm2_per_kb: float = 0.035  # register file, mm^2 per KB
    a_sram_mm2_per_kb: float = 0.012  # SRAM global buffer, mm^2 per KB
    array_overhead: float = 0.15  # NoC + control + clock, fraction of PE-array area
    p_static_mw_per_mm2: float = 5.0  # leakage + ungated clock power density, mW/mm^2
    psum_bits_factor: int = 1  # partial-sum width as a multiple of the word width (accumulator precision)

    def to_dict(self):
        """Every constant by name (part of the cost model's fingerprint)."""
        return asdict(self)

    def psum_bits(self, word_bits):
        """Bits of a partial sum for ``word_bits`` operands."""
        return int(word_bits) * int(self.psum_bits_factor)

    def e_rf(self, rf_bytes, word_bits):
        """RF access energy (pJ per word) for an RF of ``rf_bytes``; works on arrays."""
        e = self.e_rf_ref_pj * np.sqrt(np.asarray(rf_bytes, dtype=np.float64) / self.rf_ref_bytes)
        return np.maximum(e, self.e_rf_floor_pj) * (np.asarray(word_bits) / 16.0)

    def e_glb(self, glb_bytes, word_bits):
        e = self.e_glb_ref_pj * np.sqrt(np.asarray(glb_bytes, dtype=np.float64) / self.glb_ref_bytes)
        return e * (np.asarray(word_bits) / 16.0)

    def e_mac(self, word_bits):
        return self.e_mac_pj * (np.asarray(word_bits, dtype=np.float64) / 16.0) ** 2

    def e_noc(self, word_bits):
        return self.e_noc_pj * (np.asarray(word_bits, dtype=np.float64) / 16.0)

    def e_dram(self, word_bits):
        return self.e_dram_pj * (np.asarray(word_bits, dtype=np.float64) / 16.0)

    def a_mac(self, word_bits):
        return self.a_mac_mm2 * (np.asarray(word_bits, dtype=np.float64) / 16.0) ** 2


DEFAULT_TECH = Technology()

#: ZigZag's per-access energies, so that coexplore and ZigZag can be compared on structure
#: rather than on constants.  Source: the example hardware shipped with ZigZag 3.9.1
#: (``zigzag/inputs/hardware/*.yaml``: ``tpu_like``, ``edge_tpu_like``, ``ascend_like``,
#: ``meta_prototype``, ``tesla_npu_like``), whose memory costs come from CACTI, converted to pJ
#: per 16-bit word:
#:
#: * MAC: ``unit_energy`` 0.04 pJ per 8-bit MAC -> 0.16 pJ at 16 bits (our MAC scales with the
#:   square of the width);
#: * RF: a 128 B register file costs 0.095 pJ per 8-bit read -> 0.19 pJ per 16-bit word at
#:   128 B; a 2 B register 0.021 pJ per 16-bit access (the floor).  Square-root capacity scaling
#:   from 128 B predicts 0.024 pJ for 2 B, so the scaling law itself agrees with ZigZag's numbers;
#: * GLB: a 64 KB SRAM costs 26.56 pJ per 512-bit read -> 0.83 pJ per 16-bit word at 64 KiB
#:   (a 1 MB SRAM: 208.08 pJ per 1024 bits = 3.25 pJ per word; square-root scaling gives 3.32);
#: * DRAM: 700 pJ per 64-bit read -> 175 pJ per 16-bit word (writes, 750 pJ, are charged as reads:
#:   coexplore has one DRAM energy);
#: * partial sums: twice the word width, ZigZag's default for layers it reads from ONNX
#:   (``ONNXOperatorParser.get_intermediate_output_precision``: 2 x the activation precision);
#: * NoC and static power: 0 -- ZigZag 3.9.1 has no interconnect energy (its
#:   ``CostModelEvaluation.calc_energy`` leaves it as a TODO) and no leakage.
#:
#: Areas are coexplore's (ZigZag's example areas are in arbitrary units).  ``node_nm`` is the
#: default of ZigZag's CACTI wrapper (0.022 um); it labels the preset and enters no formula.
ZIGZAG_TECH = Technology(node_nm=22, e_mac_pj=0.16, e_rf_ref_pj=0.19, rf_ref_bytes=128.0, e_rf_floor_pj=0.021,
                         e_noc_pj=0.0, e_glb_ref_pj=0.83, glb_ref_bytes=64 * 1024.0, e_dram_pj=175.0,
                         p_static_mw_per_mm2=0.0, psum_bits_factor=2)

#: Technology presets by name: ``default`` (the documented 65 nm constants above) and ``zigzag``.
TECH_PRESETS: Dict[str, Technology] = {"default": DEFAULT_TECH, "zigzag": ZIGZAG_TECH}


def list_technologies() -> List[str]:
    """Names of the technology presets."""
    return list(TECH_PRESETS)


def get_technology(tech: Union[str, Technology, Mapping[str, Any]] = "default") -> Technology:
    """A technology by preset name, a :class:`Technology` as is, or one from a mapping of its fields.

    Raises:
        ConfigError: an unknown preset name or field (the message lists the allowed ones).
    """
    if isinstance(tech, Technology):
        return tech
    if isinstance(tech, str):
        if tech not in TECH_PRESETS:
            raise ConfigError(f"technology {tech!r} is unknown; allowed values: {list(TECH_PRESETS)}")
        return TECH_PRESETS[tech]
    if isinstance(tech, Mapping):
        allowed = [f.name for f in fields(Technology)]
        bad = sorted(set(tech) - set(allowed))
        if bad:
            raise ConfigError(f"technology: unknown field(s) {bad}; allowed fields: {allowed}")
        return Technology(**tech)
    raise ConfigError(f"technology must be a preset name {list(TECH_PRESETS)} or a Technology, "
                      f"got {type(tech).__name__}")


def technology_name(tech: Technology) -> str:
    """The preset name of ``tech``, or ``custom``."""
    for name, t in TECH_PRESETS.items():
        if t == tech:
            return name
    return "custom"
