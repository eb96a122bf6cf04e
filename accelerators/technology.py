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

from dataclasses import asdict, dataclass

import numpy as np

#: Version of the cost model; part of every cache key and evaluator checkpoint.  Bump it
#: whenever a formula or constant below changes the numbers.
COST_MODEL_VERSION = "1.0"


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

    def to_dict(self):
        """Every constant by name (part of the cost model's fingerprint)."""
        return asdict(self)

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
