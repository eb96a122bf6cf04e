"""The analytical cost model: latency, energy and area of layers on spatial accelerators.

It follows the structure of Timeloop (Parashar et al., ISPASS 2019) and of the Eyeriss
energy analysis (Chen et al., ISCA 2016): a mapping of the convolution loop nest onto a
``DRAM -> global buffer (GLB) -> NoC -> PE array -> RF`` hierarchy determines how often
each operand (weights W, inputs I, outputs/partial sums O) is moved at each level; energy
is the access counts times per-access energies, latency the larger of compute cycles and
the cycles the DRAM and GLB bandwidths need.

The mapping has three parts.

* **Spatial** (fixed by the dataflow, greedy fill of the array).  Dimensions per group:
  ``K' = K/G`` outputs and ``C' = C/G`` inputs.  Each dataflow is a registered
  :class:`~accelerators.dataflows.Dataflow` whose ``spatial`` function gives the unrolling
  and whose ``array_level`` function the traffic below the GLB; the built-ins are

  - ``ws`` (weight-stationary, TPU/NVDLA-like): rows <- C', columns <- K'; the groups of a
    grouped/depthwise layer are laid block-diagonally, so a depthwise layer uses at most
    ``min(pe_x, pe_y)`` PEs -- the classic WS under-utilisation.
  - ``os`` (output-stationary, ShiDianNao-like): rows <- P, columns <- Q; blocks of the
    array that are left over take further output channels (K', then groups).
  - ``rs`` (row-stationary, Eyeriss): rows <- R (filter rows), columns <- P (output rows);
    left-over rows take more input channels C', the remaining PE sets take more output
    channels (K', then groups), as Eyeriss replicates its logical PE sets.

* **RF level** (per PE, under the RF capacity).  What the RF holds beyond one weight,
  one input and one partial sum buys reuse, and more is never worse, so the allocation
  is the largest that fits (closed form): WS keeps ``rs_w`` filter taps of its (c, k)
  pair, cutting partial-sum traffic; OS keeps ``o_rf`` partial sums of different output
  channels, reusing each input ``o_rf`` times; RS keeps a filter row of ``f_rf`` filters
  plus a sliding input window (an RF smaller than ``2 S + 1`` words splits the filter row,
  which costs partial-sum traffic).

* **GLB/DRAM level** (searched under the GLB capacity).  Tiles of the output channels
  (M = G K'), input channels (C') and output rows (P) with tile counts from
  ``{1, 2, 4, ...}`` and all 6 orders of the three DRAM-level loops are enumerated; a
  candidate is feasible when its weight, input (with halo) and output tiles fit in the
  GLB together.  An operand is re-fetched from DRAM by its irrelevant loop whenever a
  relevant loop with more than one iteration sits inside it; partial sums that leave the
  GLB cost a read and a write.  For each P tiling the least-DRAM-traffic candidate is
  kept, then every kept candidate is priced in full on every accelerator and the best
  one for the selected mapping objective (``energy``, ``latency``, ``edp`` or ``dram``) wins.

The search at the GLB/DRAM level depends only on the layer and the GLB size, so it runs
once per (unique layer, GLB size) and its results are shared by all accelerators with
that buffer; this is what makes pricing a network on a whole hardware space take
milliseconds.

Simplifications (stated, not hidden): compute cycles use whole-layer spatial folds (tile
edges are not re-rounded); the GLB is single-buffered; the batch is stacked along the
output rows for tiling (so weights can be reused across images);
WS streams inputs in im2col order (no line buffer); no zero-skipping.  A batched
linear layer is priced as one matrix-matrix product (the batch takes the place of P).  See
``docs/cost_model.md`` for the comparison with the Eyeriss chip.

Integer arithmetic is int64 throughout; the bounds on :class:`~accelerators.workload.Layer`
and :class:`~accelerators.hardware.Accelerator` keep every intermediate below 2^62 (the
argument is in :mod:`accelerators.workload`).  As a guard, every result is checked to be
physical -- finite, positive latency and energy, utilisation in (0, 1] -- before it is returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np

from coexplore.common import ConfigError
from .dataflows import ArrayLevel, Dataflow, Unrolling, get_dataflow
from .hardware import Accelerator
from .precision import PrecisionScheme, get_precision
from .cost_source import COST_SOURCES, fingerprint_of
from .technology import COST_MODEL_VERSION, DEFAULT_TECH, Technology, get_technology
from .workload import Layer

logger = logging.getLogger(__name__)

MAPPING_OBJECTIVES = ("energy", "latency", "edp", "dram")
_LOOPS = ("m", "c", "p")  # DRAM-level tile loops: output channels, input channels, output rows
_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # outer -> inner
_MAX_SPLIT_EXP = 12  # tile counts 1..4096
_P_SPLIT_EXP = 8  # output-row tile counts 1..256


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Costs:
    """Costs of every (accelerator, layer) pair.  Arrays are ``[A, L]`` unless noted."""

    latency_s: np.ndarray  # [A, L] seconds per layer
    energy_j: np.ndarray  # [A, L] joules per layer
    utilization: np.ndarray  # [A, L] MACs / (cycles x PEs), in (0, 1]
    area_mm2: np.ndarray  # [A] accelerator area, mm^2
    cycles: np.ndarray  # [A, L] cycles per layer
    dram_bytes: np.ndarray  # [A, L] DRAM traffic, bytes
    memory_bound: np.ndarray  # [A, L] True where a bandwidth, not compute, sets the latency

    @property
    def latency_total_s(self) -> np.ndarray:
        """``[A]`` network latency: layers run one after another."""
        return self.latency_s.sum(axis=1)

    @property
    def energy_total_j(self) -> np.ndarray:
        """``[A]`` network energy."""
        return self.energy_j.sum(axis=1)

    @property
    def edp(self) -> np.ndarray:
        """``[A]`` energy-delay product, J*s."""
        return self.energy_total_j * self.latency_total_s

    @property
    def edap(self) -> np.ndarray:
        """``[A]`` energy-delay-area product, J*s*mm^2 (DANCE's default objective)."""
        return self.edp * self.area_mm2

    def metric(self, name: str) -> np.ndarray:
        """``[A]`` network-level metric by name: latency, energy, area, edp, edap, fps."""
        table = {"latency": self.latency_total_s, "energy": self.energy_total_j, "area": self.area_mm2,
                 "edp": self.edp, "edap": self.edap}
        if name == "fps":
            return 1.0 / self.latency_total_s
        if name not in table:
            raise ConfigError(f"unknown metric {name!r}; known metrics: {sorted(table) + ['fps']}")
        return table[name]


# ---------------------------------------------------------------------------------------
# packing records into arrays
# ---------------------------------------------------------------------------------------

def _layer_matrix(layers: Sequence[Layer]) -> Tuple[np.ndarray, np.ndarray]:
    """Unique layer shapes and precisions as an int64 matrix and the index of each input layer.

    Columns: N, G, Kg, Cg, R, S, P, Q, stride, then the layer's weight, activation and output
    bits (0 where the layer has none: the accelerator's word).
    """
    if len(layers) == 0:
        raise ConfigError("workload: the layer list is empty")
    rows = np.array([(l.N, l.groups, l.K // l.groups, l.C // l.groups, l.R, l.S, l.P, l.Q, l.stride,
                      l.weight_bits or 0, l.act_bits or 0, l.out_bits or 0)
                     for l in layers], dtype=np.int64)
    # A matrix-vector layer (linear, or a 1x1 conv on a 1x1 map) over a batch is one
    # matrix-matrix product: the batch plays the role of output rows, so the mapping can
    # reuse each weight across the batch instead of streaming all weights per sample.
    mv = (rows[:, 4] == 1) & (rows[:, 5] == 1) & (rows[:, 6] == 1) & (rows[:, 7] == 1) & (rows[:, 0] > 1)
    rows[mv, 6] = rows[mv, 0]
    rows[mv, 0] = 1
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _acc_arrays(accs: Sequence[Accelerator]) -> Dict[str, Any]:
    """Accelerator fields as ``[A]`` arrays; ``df`` indexes ``dataflows``, the names present in order of appearance."""
    if len(accs) == 0:
        raise ConfigError("accelerators: the list is empty")
    codes: Dict[str, int] = {}
    pcodes: Dict[str, int] = {}
    f = np.array([(a.pe_x, a.pe_y, a.rf_bytes, a.glb_bytes, codes.setdefault(a.dataflow, len(codes)), a.word_bits,
                   pcodes.setdefault(a.precision, len(pcodes)))
                  for a in accs], dtype=np.int64)
    g = np.array([(a.clock_hz, a.dram_bw, a.glb_bw) for a in accs], dtype=np.float64)
    out = {"pe_x": f[:, 0], "pe_y": f[:, 1], "rf_bytes": f[:, 2], "glb_bytes": f[:, 3], "df": f[:, 4],
           "word_bits": f[:, 5], "pc": f[:, 6], "clock_hz": g[:, 0], "dram_bw": g[:, 1], "glb_bw": g[:, 2],
           "dataflows": tuple(codes), "precisions": tuple(pcodes)}
    out["rf_words"] = out["rf_bytes"] * 8 // out["word_bits"]
    out["glb_words"] = out["glb_bytes"] * 8 // out["word_bits"]
    return out


def _cdiv(a, b):
    return -(-a // b)


def _mul(x, s):
    """``x * s``, skipped where ``s`` is the Python int 1 (layers without bits: every size is one word)."""
    return x if type(s) is int and s == 1 else x * s


def _operand_sizes(lm: np.ndarray, word: Any, f_ps: int) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """Operand widths of the layers of ``lm`` on accelerators with ``word``-bit words.

    Weights, inputs and final outputs are at the layer's ``weight_bits``, ``act_bits`` and
    ``out_bits`` (the word where unset); partial sums at ``out_bits``, or ``f_ps`` words where
    unset.  Capacities and traffic are counted in a *unit* of ``u`` bits per layer, the gcd of
    its four widths, so that every count stays an integer and a layer without bits is counted
    in words exactly as before (``u = word``, sizes 1, 1, 1, ``f_ps``).

    Returns:
        ``(u, sizes, bits)``: ``u`` the unit in bits (the scalar ``word`` when no layer has
        bits, else ``[L]``), ``sizes`` the widths in units (``w``, ``a``, ``o``, ``ps``: Python
        ints, or ``[L]`` float64 arrays), ``bits`` the widths in bits (scalars or ``[L]``).
    """
    if not lm[:, 9:12].any():
        return word, {"w": 1, "a": 1, "o": 1, "ps": int(f_ps)}, \
            {"w": word, "a": word, "o": word, "ps": word * int(f_ps)}
    lb = lm[:, 9:12].astype(np.int64)
    w = int(word)
    bits = {"w": np.where(lb[:, 0] > 0, lb[:, 0], w), "a": np.where(lb[:, 1] > 0, lb[:, 1], w),
            "o": np.where(lb[:, 2] > 0, lb[:, 2], w), "ps": np.where(lb[:, 2] > 0, lb[:, 2], w * int(f_ps))}
    u = np.gcd.reduce(np.stack(list(bits.values())), axis=0)
    return u, {k: (v / u).astype(np.float64) for k, v in bits.items()}, bits


_SHAPE = ("N", "G", "Kg", "Cg", "R", "S", "P", "Q", "st")


def layer_shape(layer: Layer) -> Dict[str, int]:
    """The loop bounds the model prices ``layer`` with: ``N, G, Kg = K/G, Cg = C/G, R, S, P, Q, st``.

    The same as the layer's own fields except that a batched matrix-vector layer (see
    :func:`_layer_matrix`) has its batch as output rows (``P = N``, ``N = 1``).
    """
    lm, _ = _layer_matrix([layer])
    return {k: int(v) for k, v in zip(_SHAPE, lm[0])}


def spatial_unrolling(layer: Layer, acc: Accelerator) -> Dict[str, int]:
    """The spatial unrolling of ``layer`` on ``acc`` by its dataflow: ``{g, k, c, r, p, q}`` factors.

    The same unrolling :func:`explain` reports (``spatial``); the ZigZag backend gives it to
    ZigZag as the fixed spatial mapping, so both models map a layer onto the array alike.
    """
    sh = layer_shape(layer)
    L = {k: np.array([[[v]]], dtype=np.int64) for k, v in sh.items()}
    L["macs"] = np.prod([L[k] for k in _SHAPE[:-1]], axis=0)
    L["W"] = L["G"] * L["Kg"] * L["Cg"] * L["R"] * L["S"]
    L["O"] = L["N"] * L["G"] * L["Kg"] * L["P"] * L["Q"]
    x, y = (np.array([[[v]]], dtype=np.int64) for v in (acc.pe_x, acc.pe_y))
    df = get_dataflow(acc.dataflow)
    sp = _unrolling(df, df.spatial(x, y, L), x * y)
    return {f: int(np.asarray(v).reshape(-1)[0]) for f, v in zip(Unrolling._fields, sp)}


# ---------------------------------------------------------------------------------------
# GLB/DRAM-level search: depends on the layer and the GLB size only
# ---------------------------------------------------------------------------------------

def _dram_search(lm: np.ndarray, glb_words: np.ndarray, ps: int = 1,
                 sizes: Dict[str, Any] = None) -> Dict[str, np.ndarray]:
    """Best DRAM-level mapping per (GLB size, layer, P-tiling).

    Args:
        lm: ``L x 9`` (or more columns) unique layer matrix (see :func:`_layer_matrix`).
        glb_words: ``B`` distinct GLB capacities, words; or ``B x L`` capacities in each layer's
            unit when the layers carry their own bits (see :func:`_operand_sizes`).
        ps: partial-sum width in words: the output tile accumulates in the GLB at this width,
            and partial sums that leave for DRAM travel at it.
        sizes: per-operand element sizes in units (``w``, ``a``, ``o``, ``ps``: scalars or ``[L]``
            arrays), replacing ``ps`` and the one-word weights, inputs and outputs.

    Returns:
        Arrays of shape ``B x L x 2E`` (E = number of P tilings, two candidates each): tile counts ``n_m, n_c,
        n_p``, tile sizes ``t_m, t_c, t_p``, DRAM words per operand ``w_d, i_d, o_d``, the
        loop order index and ``ok`` (a feasible candidate exists).
    """
    N, G, Kg, Cg, R, S, P, Q, st = (lm[:, i][None, :, None, None] for i in range(9))
    sizes = sizes or {"w": 1, "a": 1, "o": 1, "ps": ps}
    sw, sa, so, ps = (s if np.ndim(s) == 0 else np.asarray(s)[None, :, None, None]
                      for s in (sizes["w"], sizes["a"], sizes["o"], sizes["ps"]))
    gw = np.asarray(glb_words)
    gw = gw[:, None, None, None] if gw.ndim == 1 else gw[:, :, None, None]
    M = G * Kg
    H = (P - 1) * st + R
    Wd = (Q - 1) * st + S
    e_p = np.arange(_P_SPLIT_EXP + 1)[None, None, :, None]
    em, ec = np.meshgrid(np.arange(_MAX_SPLIT_EXP + 1), np.arange(_MAX_SPLIT_EXP + 1), indexing="ij")
    em = em.reshape(1, 1, 1, -1)
    ec = ec.reshape(1, 1, 1, -1)
    # tile sizes and the real number of tiles they give
    t_m = np.maximum(1, _cdiv(M, 2 ** em))
    t_c = np.maximum(1, _cdiv(Cg, 2 ** ec))
    # The batch is stacked along the output rows: the row loop runs over N * P rows, so a
    # weight tile can stay in the GLB across images when the row loop is innermost.
    NP = N * P
    t_p = np.maximum(1, _cdiv(NP, 2 ** e_p))
    n_m, n_c, n_p = _cdiv(M, t_m), _cdiv(Cg, t_c), _cdiv(NP, t_p)
    g_touched = np.minimum(G, _cdiv(t_m, Kg))
    tile_words = (_mul(t_m * t_c * R * S, sw) + _mul(g_touched * t_c * ((np.minimum(t_p, P) - 1) * st + R) * Wd
                                                     * _cdiv(t_p, P), sa) + t_m * t_p * Q * ps)
    fits = tile_words <= gw  # B x L x E x X

    W = M * Cg * R * S
    O = N * M * P * Q
    I_halo = G * Cg * Wd * (N * H + np.maximum(0, n_p - N) * np.maximum(0, R - st))
    i_refetch = _cdiv(Kg, np.minimum(t_m, Kg))  # m-tiles that share one input tile

    n = (n_m, n_c, n_p)
    best = None
    for oi, order in enumerate(_ORDERS):
        # refetched[x]: loop x has a loop with >1 iterations inside it
        inside_gt1 = {}
        for pos, loop in enumerate(order):
            inner = order[pos + 1:]
            flag = np.zeros(np.broadcast_shapes(n_m.shape, n_c.shape, n_p.shape), dtype=bool)
            for j in inner:
                flag = flag | (n[j] > 1)
            inside_gt1[loop] = flag
        w_d = W * np.where(inside_gt1[2], n_p, 1)
        i_d = I_halo * np.where(inside_gt1[0], i_refetch, 1)
        o_d = O * np.where(inside_gt1[1], 2 * n_c - 1, 1)
        o_bits = o_d * np.where(inside_gt1[1] & (n_c > 1), ps, so)  # partial sums to and from DRAM
        tot = np.where(fits, (_mul(w_d, sw) + _mul(i_d, sa) + o_bits).astype(np.float64), np.inf)
        # tie-break towards fewer tiles (less control overhead)
        tot = tot + 1e-6 * (n_m + n_c + n_p)
        cand = dict(tot=tot, w_d=np.broadcast_to(w_d, tot.shape), i_d=np.broadcast_to(i_d, tot.shape),
                    o_d=np.broadcast_to(o_d, tot.shape), order=np.full(tot.shape, oi))
        if best is None:
            best = {k: np.array(v) for k, v in cand.items()}
        else:
            better = cand["tot"] < best["tot"]
            for k in best:
                best[k] = np.where(better, cand[k], best[k])
    # Keep, per P tiling, the least-traffic candidate overall and the least-traffic one that
    # does not split the input channels (no partial sums leave the array's accumulators in
    # OS): the array level of some dataflows pays for channel splits, the DRAM level cannot see it.
    whole_c = np.where(ec == 0, best["tot"], np.inf)
    idx = np.concatenate([np.argmin(best["tot"], axis=-1)[..., None], np.argmin(whole_c, axis=-1)[..., None]], -1)
    shape = best["tot"].shape[:-1] + (idx.shape[-1],)
    take = lambda a: np.take_along_axis(np.broadcast_to(a, best["tot"].shape), idx, axis=-1).reshape(
        shape[:-2] + (-1,))
    out = {k: take(v) for k, v in best.items()}
    out.update(n_m=take(n_m), n_c=take(n_c), n_p=take(n_p), t_m=take(t_m), t_c=take(t_c), t_p=take(t_p))
    out["ok"] = np.isfinite(out.pop("tot"))
    return out


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------

class AnalyticalModel:
    """The analytical cost source.  Pure: no I/O, no logging set-up, no global state.

    Args:
        tech: technology constants (per-access energies and areas).
        mapping_objective: what the mapping search minimises per layer: ``energy``,
            ``latency``, ``edp`` or ``dram`` (DRAM traffic, Timeloop's "last-level accesses";
            ties broken by energy).  Not to be confused with the *network* objective of a
            search (:class:`coexplore.objectives.Objective`), which ranks whole designs.
    """

    version = COST_MODEL_VERSION
    name = "analytical"

    def __init__(self, tech: Union[str, Technology] = DEFAULT_TECH, mapping_objective: str = "edp") -> None:
        if mapping_objective not in MAPPING_OBJECTIVES:
            raise ConfigError(f"mapping_objective {mapping_objective!r} is unknown; allowed values: "
                              f"{list(MAPPING_OBJECTIVES)}")
        self.tech = get_technology(tech)
        self.mapping_objective = mapping_objective

    # -- the cost-source protocol --------------------------------------------------------
    def describe(self) -> Dict[str, Any]:
        """Provenance: name, model version, mapping objective, technology constants, fingerprint."""
        rec = {"name": self.name, "version": self.version, "mapping_objective": self.mapping_objective,
               "technology": self.tech.to_dict()}
        return {**rec, "fingerprint": fingerprint_of(rec)}

    def fingerprint(self) -> str:
        """A hash of everything the numbers depend on: version, mapping objective, constants."""
        return self.describe()["fingerprint"]

    def __repr__(self) -> str:
        return f"AnalyticalModel(mapping_objective={self.mapping_objective!r}, fingerprint={self.fingerprint()!r})"

    # -- area ---------------------------------------------------------------------------
    def area_mm2(self, accs: Union[Sequence[Accelerator], Dict[str, np.ndarray]]) -> np.ndarray:
        """``[A]`` area in mm^2: PEs x (MAC + RF) x (1 + overhead) + global buffer."""
        a = accs if isinstance(accs, dict) else _acc_arrays(accs)
        t = self.tech
        if all(p == "fixed" for p in a["precisions"]):
            a_mac = t.a_mac(a["word_bits"])
        else:  # the MAC unit of each accelerator's precision scheme (its scalability overhead included)
            a_mac = np.zeros(len(a["pe_x"]))
            for c, name in enumerate(a["precisions"]):
                m = a["pc"] == c
                a_mac[m] = get_precision(name).mac_area(a["word_bits"][m], t)
        pe = a_mac + a["rf_bytes"] / 1024.0 * t.a_rf_mm2_per_kb
        return (a["pe_x"] * a["pe_y"]) * pe * (1.0 + t.array_overhead) + a["glb_bytes"] / 1024.0 * t.a_sram_mm2_per_kb

    # -- pricing ------------------------------------------------------------------------
    def __call__(self, layers: Sequence[Layer], accs: Sequence[Accelerator]) -> Costs:
        return self.evaluate(layers, accs)

    def evaluate(self, layers: Sequence[Layer], accs: Sequence[Accelerator]) -> Costs:
        """Price every (accelerator, layer) pair.

        Args:
            layers: ``L`` layers.
            accs: ``A`` accelerators.

        Returns:
            :class:`Costs` with ``[A, L]`` arrays and ``[A]`` area.
        """
        lm, inverse = _layer_matrix(layers)
        a = _acc_arrays(accs)
        _check_precision(lm, a, layers, inverse, accs)
        res = self._price(lm, a)
        sel = lambda x: x[:, inverse]
        return Costs(latency_s=sel(res["latency_s"]), energy_j=sel(res["energy_j"]),
                     utilization=sel(res["utilization"]), area_mm2=self.area_mm2(a), cycles=sel(res["cycles"]),
                     dram_bytes=sel(res["dram_bytes"]), memory_bound=sel(res["memory_bound"]))

    def _price(self, lm: np.ndarray, a: Dict[str, np.ndarray], detail: bool = False) -> Dict[str, Any]:
        A, Lu = len(a["pe_x"]), lm.shape[0]
        cols = ("N", "G", "Kg", "Cg", "R", "S", "P", "Q", "st")
        Ld = {k: lm[:, i][None, :, None] for i, k in enumerate(cols)}
        Ld["macs"] = Ld["N"] * Ld["G"] * Ld["Kg"] * Ld["Cg"] * Ld["R"] * Ld["S"] * Ld["P"] * Ld["Q"]
        Ld["W"] = Ld["G"] * Ld["Kg"] * Ld["Cg"] * Ld["R"] * Ld["S"]
        Ld["O"] = Ld["N"] * Ld["G"] * Ld["Kg"] * Ld["P"] * Ld["Q"]

        t = self.tech
        f_ps = int(t.psum_bits_factor)
        # The GLB/DRAM search runs once per (word width, GLB size): the word sets the bits of
        # operands without their own, hence each layer's unit and how many units the GLB holds.
        gkey = np.stack([a["word_bits"], a["glb_bytes"]], axis=1)
        gvals, glb_idx = np.unique(gkey, axis=0, return_inverse=True)
        glb_idx = glb_idx.reshape(-1)
        per_word: Dict[Any, Tuple[Any, Dict[str, Any], Dict[str, Any]]] = {}
        parts = []
        for w in np.unique(gvals[:, 0]):
            u, sizes, bits = per_word.setdefault(w.item(), _operand_sizes(lm, w, f_ps))
            glb_bits = gvals[gvals[:, 0] == w, 1] * 8
            cap = glb_bits // u if np.ndim(u) == 0 else glb_bits[:, None] // u[None, :]
            parts.append(_dram_search(lm, cap, f_ps, sizes))
        dram = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if not dram["ok"].any(axis=-1).all():
            b, l = np.argwhere(~dram["ok"].any(axis=-1))[0]
            raise ConfigError(f"no mapping of layer shape {lm[l, :9].tolist()} fits a global buffer of "
                              f"{gvals[b, 1]} bytes at {gvals[b, 0]}-bit words; enlarge glb_bytes")

        area = self.area_mm2(a)
        out = {k: np.zeros((A, Lu)) for k in ("latency_s", "energy_j", "utilization", "cycles", "dram_bytes")}
        out["memory_bound"] = np.zeros((A, Lu), dtype=bool)
        details: Dict[str, Any] = {}
        groups = np.unique(np.stack([a["df"], a["word_bits"]], axis=1), axis=0)
        for code, w in groups:
            df_name = a["dataflows"][int(code)]
            df = get_dataflow(df_name)
            ai = np.nonzero((a["df"] == code) & (a["word_bits"] == w))[0]
            col = lambda k: a[k][ai][:, None, None]
            u, sz, bits = per_word[w.item()]
            exp = lambda x: x if np.ndim(x) == 0 else np.asarray(x)[None, :, None]  # [L] -> [1, L, 1]
            u, sw, sa, so, sps = exp(u), exp(sz["w"]), exp(sz["a"]), exp(sz["o"]), exp(sz["ps"])
            wbits, abits = exp(bits["w"]), exp(bits["a"])
            gi = glb_idx[ai]
            if (gi == gi[0]).all():  # one GLB size (e.g. the default space): a view that broadcasts
                d = {k: v[gi[0]][None] for k, v in dram.items()}  # [1, L, E]
            else:
                d = {k: v[gi] for k, v in dram.items()}  # [A', L, E]
            sp = _unrolling(df, df.spatial(col("pe_x"), col("pe_y"), Ld), col("pe_x") * col("pe_y"))
            s_g, s_k, s_c, s_r, s_p, s_q = sp
            used = s_g * s_k * s_c * s_r * s_p * s_q
            compute = (Ld["N"] * _cdiv(Ld["G"], s_g) * _cdiv(Ld["Kg"], s_k) * _cdiv(Ld["Cg"], s_c)
                       * _cdiv(Ld["R"], s_r) * Ld["S"] * _cdiv(Ld["P"], s_p) * _cdiv(Ld["Q"], s_q))
            # the RF in units of this layer's operands (words when the layer has no bits)
            rf_units = col("rf_words") if np.ndim(u) == 0 else col("rf_bytes") * 8 // u
            unit_sizes = np.ndim(u) == 0
            L_df = {**Ld, "ps": np.int64(f_ps)} if unit_sizes else {**Ld, "ps": sps, "sw": sw, "sa": sa, "so": so}
            al = df.array_level(L_df, sp, rf_units, d)
            if not isinstance(al, ArrayLevel):
                raise ConfigError(f"dataflow {df.name!r}: array_level must return an ArrayLevel, "
                                  f"got {type(al).__name__}")
            w_glb, i_glb, o_glb, deliver, inter_pe = al.w_glb, al.i_glb, al.o_glb, al.deliver, al.inter_pe
            # Partial sums are psum_bits_factor words wide (out_bits where the layer sets them).
            # Where they bounce through a level (written, read back and accumulated again), all
            # output traffic at that level is at partial-sum width; where each output is written
            # once, it is final (the word, or out_bits).
            o_w = Ld["O"].astype(np.float64)
            if unit_sizes:  # every size is one word but partial sums: the expressions of model 2.0, exactly
                f = float(f_ps)
                ps_glb = np.where(o_glb > o_w, f, 1.0)
                ps_dram = np.where(d["o_d"] > o_w, f, 1.0)
                dram_words = (d["w_d"] + d["i_d"] + d["o_d"] * ps_dram).astype(np.float64)  # word-equivalents
                glb_words = (w_glb + i_glb + o_glb * ps_glb).astype(np.float64)
                deliver_w = deliver + (ps_glb - 1.0) * o_glb  # partial sums delivered to / drained from PEs
                inter_w = inter_pe * (1.0 + (f - 1.0) * al.inter_pe_psum)
                rf_reads = (2.0 + 2.0 * f) if al.rf_reads is None else al.rf_reads
            else:  # units of u bits: each operand at its own size (float64: sizes up to 32 units)
                ps_glb = np.where(o_glb > o_w, sps, so)
                ps_dram = np.where(d["o_d"] > o_w, sps, so)
                dram_words = d["w_d"] * sw + d["i_d"] * sa + d["o_d"] * ps_dram
                glb_words = w_glb * sw + i_glb * sa + o_glb * ps_glb
                if al.deliver_parts is not None:
                    dw, di, do = al.deliver_parts
                    deliver_w = dw * sw + di * sa + do * ps_glb
                else:  # a dataflow that gives only the sum: non-output words at the wider operand
                    deliver_w = (deliver - o_glb) * np.maximum(sw, sa) + o_glb * ps_glb
                inter_w = inter_pe * (al.inter_pe_psum * sps + (1.0 - al.inter_pe_psum) * sa)
                rf_reads = (sw + sa + 2.0 * sps) if al.rf_reads is None else al.rf_reads
            ub, bits_u = u / 8.0, u  # bytes and bits per unit (per word when the layer has no bits)
            if unit_sizes:
                ub, bits_u = col("word_bits") / 8.0, col("word_bits")
            macs = Ld["macs"].astype(np.float64)
            # the precision scheme: MACs per PE per cycle and energy per MAC at each pair's bits
            pcs = a["pc"][ai]
            if unit_sizes and all(a["precisions"][int(c)] == "fixed" for c in np.unique(pcs)):
                thr, e_per_mac = None, t.e_mac(col("word_bits"))
            else:
                wb_, ab_ = (np.broadcast_to(x, (1, Lu, 1)) if np.ndim(x) else x for x in (wbits, abits))
                wcol = col("word_bits")
                if unit_sizes:
                    wb_, ab_ = wcol, wcol
                thr = np.ones((ai.size, Lu, 1))
                e_per_mac = np.ones((ai.size, Lu, 1))
                st = None  # partial-sum updates per MAC of a sum-together unit (1 elsewhere)
                for c in np.unique(pcs):
                    sch = get_precision(a["precisions"][int(c)])
                    m = pcs == c
                    wbm = wb_ if np.shape(wb_)[0] == 1 else wb_[m]
                    abm = ab_ if np.shape(ab_)[0] == 1 else ab_[m]
                    thr[m] = np.broadcast_to(sch.throughput(wbm, abm, wcol[m]), (int(m.sum()), Lu, 1))
                    e_per_mac[m] = np.broadcast_to(sch.mac_energy(wbm, abm, wcol[m], t), (int(m.sum()), Lu, 1))
                    if sch.sum_together:
                        st = np.ones((ai.size, Lu, 1)) if st is None else st
                        st[m] = 1.0 / np.maximum(thr[m], 1.0)
                if st is not None and (st < 1.0).any():
                    # A sum-together unit (BitFusion) adds the products it fuses in its adder tree and
                    # updates one partial sum per cycle, not per MAC: the partial-sum RF accesses and the
                    # partial sums passed between PEs shrink by the fused throughput.
                    ps_size = float(f_ps) if unit_sizes else sps
                    psum_rf = 2.0 * ps_size if al.rf_psum_reads is None else al.rf_psum_reads
                    rf_reads = rf_reads - psum_rf * (1.0 - st)
                    inter_w = inter_w - inter_pe * al.inter_pe_psum * ps_size * (1.0 - st)
            e_mac = macs * e_per_mac
            compute_c = compute if thr is None else compute / thr  # cycles at the scheme's throughput
            e_rf = (rf_reads * macs + deliver_w) * t.e_rf(col("rf_bytes"), bits_u)
            e_noc = (deliver_w + inter_w) * t.e_noc(bits_u)
            e_glb = (glb_words + dram_words) * t.e_glb(col("glb_bytes"), bits_u)
            e_dram = dram_words * t.e_dram(bits_u)
            dram_cyc = dram_words * ub / col("dram_bw")
            glb_cyc = glb_words * ub / col("glb_bw")
            cycles = np.maximum(np.maximum(compute_c.astype(np.float64), dram_cyc), glb_cyc)
            latency = cycles / col("clock_hz")
            e_static = t.p_static_mw_per_mm2 * 1e-3 * area[ai][:, None, None] * latency * 1e12
            energy_pj = e_mac + e_rf + e_noc + e_glb + e_dram + e_static
            energy = energy_pj * 1e-12
            score = {"energy": energy, "latency": latency, "edp": energy * latency,
                     "dram": dram_words + 1e-9 * energy_pj / (1.0 + energy_pj)}[self.mapping_objective]
            score = np.where(d["ok"], score, np.inf)
            best = np.argmin(score, axis=-1)[..., None]
            pick = lambda x: np.take_along_axis(np.broadcast_to(x, score.shape), best, axis=-1)[..., 0]
            pes = (col("pe_x") * col("pe_y"))[..., 0]
            out["latency_s"][ai] = pick(latency)
            out["energy_j"][ai] = pick(energy)
            out["cycles"][ai] = pick(cycles)
            peak = pes if thr is None else pes * thr[..., 0]  # MACs per cycle of the whole array at these bits
            out["utilization"][ai] = Ld["macs"][..., 0] / (pick(cycles) * peak)
            out["dram_bytes"][ai] = pick(dram_words) * np.broadcast_to(ub, (ai.size, Lu, 1))[..., 0]
            out["memory_bound"][ai] = pick(cycles) > pick(compute_c.astype(np.float64)) * (1 + 1e-9)
            if detail:
                keys = dict(compute_cycles=compute_c, dram_cycles=dram_cyc, glb_cycles=glb_cyc,
                            w_dram=d["w_d"], i_dram=d["i_d"], o_dram=d["o_d"], w_glb=w_glb, i_glb=i_glb,
                            o_glb=o_glb, noc_deliveries=deliver, inter_pe=inter_pe, e_mac=e_mac, e_rf=e_rf,
                            e_noc=e_noc, e_glb=e_glb, e_dram=e_dram, e_static=e_static, n_m=d["n_m"], n_c=d["n_c"], n_p=d["n_p"],
                            t_m=d["t_m"], t_c=d["t_c"], t_p=d["t_p"], order=d["order"],
                            rf_splits=al.rf_splits, used_pes=used, rf_reads=np.asarray(rf_reads, dtype=np.float64),
                            ps_glb=ps_glb, ps_dram=ps_dram, spatial_k=sp.k, spatial_pq=sp.p * sp.q,
                            throughput=np.ones(1) if thr is None else thr, e_per_mac=e_per_mac,
                            unit_bits=np.asarray(bits_u, dtype=np.float64))
                keys.update({"rf:" + k: v for k, v in al.rf_alloc.items()})
                for k, v in keys.items():
                    details.setdefault(k, {})[df.name] = (ai, pick(v))
                details.setdefault("spatial", {})[df.name] = (
                    ai, [np.broadcast_to(s, (ai.size, Lu, 1))[..., 0] for s in sp])
                details.setdefault("rf_names", {})[df.name] = list(al.rf_alloc)
        _check_physical(out, lm, a)
        if detail:
            out["details"] = details
        return out

    # -- explanation --------------------------------------------------------------------
    def explain(self, layer: Layer, acc: Accelerator) -> "Explanation":
        """The chosen mapping, access counts and energy breakdown of one layer on one accelerator."""
        lm, inv = _layer_matrix([layer])
        a = _acc_arrays([acc])
        _check_precision(lm, a, [layer], inv, [acc])
        res = self._price(lm, a, detail=True)
        df = get_dataflow(acc.dataflow).name
        dt = res["details"]
        g = lambda k: np.asarray(dt[k][df][1]).reshape(-1)[0].item()
        s_g, s_k, s_c, s_r, s_p, s_q = (int(np.asarray(s).reshape(-1)[0]) for s in dt["spatial"][df][1])
        order = _ORDERS[int(g("order"))]
        wb = acc.word_bytes
        u_bits = g("unit_bits")
        bits = {"weights": layer.weight_bits or acc.word_bits, "inputs": layer.act_bits or acc.word_bits,
                "outputs": layer.out_bits or acc.word_bits,
                "partial sums": layer.out_bits or acc.word_bits * int(self.tech.psum_bits_factor)}
        scheme = get_precision(acc.precision)
        thr = g("throughput")
        precision = {"scheme": acc.precision, "word_bits": acc.word_bits, "bits": bits,
                     "MACs per PE per cycle (speed-up over one MAC)": thr,
                     "MAC energy pJ": g("e_per_mac")}
        if scheme.name == "bit-fused":
            from .precision import fused_bits
            precision["fused bits (weights, inputs)"] = (int(fused_bits(bits["weights"])), int(fused_bits(bits["inputs"])))
        energy = {"mac": g("e_mac"), "rf": g("e_rf"), "noc": g("e_noc"), "glb": g("e_glb"), "dram": g("e_dram"),
                  "static": g("e_static")}
        return Explanation(
            layer=layer, accelerator=acc, mapping_objective=self.mapping_objective,
            spatial={"groups": s_g, "out_channels": s_k, "in_channels": s_c, "filter_rows": s_r,
                     "out_rows": s_p, "out_cols": s_q},
            used_pes=int(g("used_pes")), num_pes=acc.num_pes,
            rf_allocation={**{k: int(g("rf:" + k)) for k in dt["rf_names"][df]}, "filter/row splits": int(g("rf_splits"))},
            glb_tile={"out_channels": int(g("t_m")), "in_channels_per_group": int(g("t_c")), "out_rows": int(g("t_p")),
                      "out_cols": layer.Q},
            dram_loops={"order (outer->inner)": [_LOOPS[i] for i in order],
                        "tiles": {"m": int(g("n_m")), "c": int(g("n_c")), "p": int(g("n_p"))}},
            accesses_words={
                "dram": {"weights": g("w_dram"), "inputs": g("i_dram"), "outputs": g("o_dram")},
                "glb": {"weights": g("w_glb"), "inputs": g("i_glb"), "outputs/psums": g("o_glb")},
                "noc": {"deliveries to PEs": g("noc_deliveries"), "inter-PE": g("inter_pe")},
                "rf": {"per-MAC accesses (word-equivalents)": g("rf_reads") * layer.macs * u_bits / acc.word_bits,
                       "fills": g("noc_deliveries")},
            },
            reuse={
                "RF reads per MAC (word-equivalents)": g("rf_reads") * u_bits / acc.word_bits,
                "PEs fed per GLB input read (multicast)": g("noc_deliveries") and _safe_div(
                    g("noc_deliveries") - g("w_glb") - g("o_glb"), g("i_glb")),
                "partial-sum bits": bits["partial sums"],
                "partial sums through the GLB": bool(g("o_glb") > layer.output_elems),
                "partial sums through DRAM": bool(g("o_dram") > layer.output_elems),
            },
            energy_pj=energy,
            cycles={"compute": g("compute_cycles"), "dram": g("dram_cycles"), "glb": g("glb_cycles")},
            latency_s=float(res["latency_s"][0, 0]), energy_j=float(res["energy_j"][0, 0]),
            utilization=float(res["utilization"][0, 0]), dram_bytes=float(res["dram_bytes"][0, 0]),
            bound=_bound_name(g("compute_cycles"), g("dram_cycles"), g("glb_cycles")),
            word_bytes=wb, precision=precision,
        )


def check_precision(layers: Sequence[Layer], accelerators: Sequence[Accelerator]) -> None:
    """Refuse layer bits that one of ``accelerators`` cannot run or hold (every pair is checked).

    The analytical model runs this check on every call; other cost sources (the ZigZag backend)
    call it so that they refuse the same inputs.

    Raises:
        ConfigError: one line naming the layer, the accelerator, the field and its allowed values.
    """
    lm, inverse = _layer_matrix(layers)
    _check_precision(lm, _acc_arrays(accelerators), layers, inverse, accelerators)


def _check_precision(lm: np.ndarray, a: Dict[str, Any], layers: Sequence[Layer], inverse: np.ndarray,
                     accs: Sequence[Accelerator]) -> None:
    """Refuse layer bits an accelerator cannot run or hold: the boundary check of the precision fields.

    * weight and activation bits above what the accelerator's precision scheme runs (a ``fixed``
      accelerator: its ``word_bits``; ``bit-fused``: 16; ...);
    * an RF that cannot hold one weight, one input and one output of the layer at its bits, or
      a GLB that cannot hold one of each per PE.

    Layers without bits need no check: :class:`Accelerator` already guarantees all of it at its word.

    Raises:
        ConfigError: one line naming the layer, the accelerator, the field and its allowed values.
    """
    lb = lm[:, 9:12]
    if not lb.any():
        return
    lb = lb.astype(np.int64)
    first_layer = lambda l: layers[int(np.nonzero(inverse == l)[0][0])]
    lname = lambda l: repr(first_layer(l).name or first_layer(l).kind)
    for c, w in np.unique(np.stack([a["pc"], a["word_bits"]], axis=1), axis=0):
        sel = np.nonzero((a["pc"] == c) & (a["word_bits"] == w))[0]
        acc0 = accs[int(sel[0])]
        sch = get_precision(a["precisions"][int(c)])
        for j, field_ in ((0, "weight_bits"), (1, "act_bits")):
            hi = sch.max_bits(int(w))[j]
            bad = np.nonzero(lb[:, j] > hi)[0]
            if bad.size:
                l = int(bad[0])
                raise ConfigError(f"layer {lname(l)} on accelerator {acc0.name or acc0.short()!r}: field "
                                  f"{field_}={int(lb[l, j])} is not supported; allowed values: "
                                  f"{sch.allowed_text(field_, int(w))}")
        wd = int(w)
        need = (np.where(lb[:, 0] > 0, lb[:, 0], wd) + np.where(lb[:, 1] > 0, lb[:, 1], wd)
                + np.where(lb[:, 2] > 0, lb[:, 2], wd))  # [L] bits of one weight, one input, one output
        rf_bits = a["rf_bytes"][sel] * 8
        glb_bits = a["glb_bytes"][sel] * 8
        pes = a["pe_x"][sel] * a["pe_y"][sel]
        for what, have, per in (("rf_bytes", rf_bits, np.ones_like(pes)), ("glb_bytes", glb_bits, pes)):
            short = have[:, None] < per[:, None] * need[None, :]
            if short.any():
                i, l = (int(x) for x in np.argwhere(short)[0])
                acc = accs[int(sel[i])]
                hold = "a PE must hold" if what == "rf_bytes" else f"the buffer must hold, for each of {int(per[i])} PEs,"
                raise ConfigError(
                    f"accelerator {acc.name or acc.short()!r}: field {what}={int(have[i]) // 8} is too small for layer "
                    f"{lname(l)} at its precision: {hold} one weight, one input and one output "
                    f"({int(need[l])} bits); allowed values: {what} >= {-(-int(per[i] * need[l]) // 8)}")


def _unrolling(df: Dataflow, sp: Any, pes: np.ndarray) -> Unrolling:
    """Check a dataflow's spatial unrolling: six integer factors >= 1 on at most ``pes`` PEs.

    Args:
        df: the dataflow that computed ``sp``.
        sp: what ``df.spatial`` returned.
        pes: ``[A', 1, 1]`` PEs of each accelerator.
    """
    if not isinstance(sp, tuple) or len(sp) != len(Unrolling._fields):
        raise ConfigError(f"dataflow {df.name!r}: spatial must return an Unrolling of {len(Unrolling._fields)} "
                          f"factors {list(Unrolling._fields)}, got {type(sp).__name__}")
    sp = Unrolling(*(np.asarray(s) for s in sp))
    for f, s in zip(Unrolling._fields, sp):
        if s.dtype.kind not in "iu" or not (s >= 1).all():
            raise ConfigError(f"dataflow {df.name!r}: spatial unrolling factor {f} must be integers >= 1")
    used = sp.g * sp.k * sp.c * sp.r * sp.p * sp.q
    if not (used <= pes).all():
        raise ConfigError(f"dataflow {df.name!r}: the spatial unrolling uses more PEs than the array has")
    return sp


def _check_physical(out: Dict[str, np.ndarray], lm: np.ndarray, a: Dict[str, Any]) -> None:
    """Refuse non-physical results: latency and energy must be finite and > 0, utilisation in (0, 1].

    For valid inputs this never fires (see the bounds in :mod:`accelerators.workload`); it
    guards against a user dataflow's functions, or a bug, producing nonsense that would rank
    as the best design.
    """
    lat, en, util = out["latency_s"], out["energy_j"], out["utilization"]
    ok = np.isfinite(lat) & (lat > 0) & np.isfinite(en) & (en > 0) & (util > 0) & (util <= 1.0)
    if ok.all():
        return
    i, l = np.argwhere(~ok)[0]
    name = a["dataflows"][a["df"][i]]
    raise ConfigError(
        f"analytical model: non-physical result for layer shape {lm[l].tolist()} (N, G, K/G, C/G, R, S, P, Q, "
        f"stride) on a {name!r} accelerator ({a['pe_x'][i]}x{a['pe_y'][i]} PEs): latency {float(lat[i, l])!r} s, "
        f"energy {float(en[i, l])!r} J, utilisation {float(util[i, l])!r}; expected finite latency and energy > 0 and "
        f"utilisation in (0, 1] -- dataflow {name!r}'s functions or the cost model are wrong")


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _bound_name(compute: float, dram: float, glb: float) -> str:
    m = max(compute, dram, glb)
    if m == compute:
        return "compute"
    return "dram-bandwidth" if m == dram else "glb-bandwidth"


@dataclass(frozen=True)
class Explanation:
    """Why a layer costs what it costs on an accelerator (see :meth:`AnalyticalModel.explain`)."""

    layer: Layer
    accelerator: Accelerator
    mapping_objective: str  # what the mapping search minimised
    spatial: Dict[str, int]  # spatial unrolling per dimension
    used_pes: int  # PEs with work in one array step
    num_pes: int  # PEs in the array
    rf_allocation: Dict[str, int]  # what each PE's RF holds beyond one word per operand
    glb_tile: Dict[str, int]  # GLB tile sizes
    dram_loops: Dict[str, Any]  # DRAM-level loop order and tile counts
    accesses_words: Dict[str, Dict[str, float]]  # per level, per operand
    energy_pj: Dict[str, float]  # energy breakdown per level, pJ
    cycles: Dict[str, float]  # compute / DRAM / GLB cycles; the largest is the latency
    latency_s: float  # seconds
    energy_j: float  # joules
    utilization: float  # MACs / (cycles x PEs)
    dram_bytes: float  # DRAM traffic, bytes
    bound: str  # "compute", "dram-bandwidth" or "glb-bandwidth"
    word_bytes: float  # bytes per word
    reuse: Dict[str, Any] = field(default_factory=dict)  # RF reads per MAC, multicast, partial-sum width
    precision: Dict[str, Any] = field(default_factory=dict)  # scheme, bits per operand, MACs per PE per cycle

    def to_dict(self) -> Dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("layer", "accelerator")}
        d["layer"] = self.layer.to_dict()
        d["accelerator"] = self.accelerator.to_dict()
        return d

    def __str__(self) -> str:
        l, acc = self.layer, self.accelerator
        lines = [
            f"layer {l.name or l.kind}: {l.kind} N={l.N} K={l.K} C={l.C} R={l.R} S={l.S} P={l.P} Q={l.Q} "
            f"stride={l.stride} groups={l.groups}  ({l.macs:,} MACs)",
            f"accelerator {acc.name or ''} {acc.short()}",
            "spatial: " + ", ".join(f"{k}={v}" for k, v in self.spatial.items() if v > 1)
            + f"  -> {self.used_pes}/{self.num_pes} PEs busy",
            "RF: " + ", ".join(f"{k}={v}" for k, v in self.rf_allocation.items()),
            "GLB tile: " + ", ".join(f"{k}={v}" for k, v in self.glb_tile.items()),
            f"DRAM loops: order {'>'.join(self.dram_loops['order (outer->inner)'])}, tiles "
            + ", ".join(f"{k}={v}" for k, v in self.dram_loops["tiles"].items()),
            "accesses (words):",
        ]
        for lvl, ops in self.accesses_words.items():
            lines.append(f"  {lvl:5s} " + ", ".join(f"{k}={v:,.0f}" for k, v in ops.items()))
        tot = sum(self.energy_pj.values())
        if self.precision:
            p = self.precision
            lines.append(f"precision: {p['scheme']} (word {p['word_bits']} b), bits "
                         + ", ".join(f"{k} {v}" for k, v in p["bits"].items())
                         + f"; {p['MACs per PE per cycle (speed-up over one MAC)']:.3g} MACs per PE per cycle, "
                         f"{p['MAC energy pJ']:.3g} pJ per MAC"
                         + (f"; fused at {p['fused bits (weights, inputs)']}" if "fused bits (weights, inputs)" in p
                            else ""))
        if self.reuse:
            lines.append("reuse: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in self.reuse.items()))
        lines.append("energy: " + ", ".join(f"{k} {v / 1e6:.3f} uJ ({100 * v / tot:.0f}%)"
                                             for k, v in self.energy_pj.items()))
        lines.append("cycles: " + ", ".join(f"{k}={v:,.0f}" for k, v in self.cycles.items())
                     + f"  -> {self.bound}-bound")
        lines.append(f"latency {self.latency_s * 1e3:.4f} ms, energy {self.energy_j * 1e3:.4f} mJ, "
                     f"utilisation {100 * self.utilization:.1f}%, DRAM {self.dram_bytes / 1e6:.3f} MB")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# functional API
# ---------------------------------------------------------------------------------------

def evaluate(layers: Sequence[Layer], accelerators: Union[Accelerator, Sequence[Accelerator]],
             mapping_objective: str = "edp", tech: Technology = DEFAULT_TECH) -> Costs:
    """Price every (accelerator, layer) pair with the analytical model.

    Args:
        layers: ``L`` layers.
        accelerators: one accelerator or a sequence of ``A``.
        mapping_objective: what the per-layer mapping search minimises: ``energy``, ``latency``,
            ``edp`` or ``dram``.
        tech: technology constants.

    Returns:
        :class:`Costs` with ``[A, L]`` latency (s), energy (J), utilisation, cycles, DRAM
        bytes and boundness, and ``[A]`` area (mm^2).
    """
    if isinstance(accelerators, Accelerator):
        accelerators = [accelerators]
    return AnalyticalModel(tech, mapping_objective).evaluate(layers, accelerators)


def explain(layer: Layer, accelerator: Accelerator, mapping_objective: str = "edp",
            tech: Technology = DEFAULT_TECH) -> Explanation:
    """See :meth:`AnalyticalModel.explain`."""
    return AnalyticalModel(tech, mapping_objective).explain(layer, accelerator)


@COST_SOURCES.register("analytical")
def _analytical(mapping_objective: str = "edp", tech: Union[str, Technology] = DEFAULT_TECH) -> AnalyticalModel:
    """The analytical model as a registered cost source."""
    return AnalyticalModel(tech, mapping_objective)
