"""Dataflows as registered objects: the spatial mapping, the array-level reuse and the export hints of each.

A dataflow decides which loop dimensions the PE array unrolls and which operand each PE
keeps in its register file (the taxonomy of Chen, Emer and Sze, "Eyeriss: A Spatial
Architecture for Energy-Efficient Dataflow for Convolutional Neural Networks", ISCA 2016):

* ``ws`` -- weight-stationary (TPU/NVDLA-like): rows <- C', columns <- K'; the groups of a
  grouped/depthwise layer are laid block-diagonally, so a depthwise layer uses at most
  ``min(pe_x, pe_y)`` PEs.  Each PE keeps filter taps of its (c, k) pair.
* ``os`` -- output-stationary (ShiDianNao-like): rows <- P, columns <- Q; left-over blocks
  of the array take further output channels (K', then groups).  Each PE keeps partial sums.
* ``rs`` -- row-stationary (Eyeriss): rows <- R (filter rows), columns <- P (output rows);
  left-over rows take more input channels C', the remaining PE sets more output channels
  (K', then groups).  Each PE keeps a filter row and a sliding input window.

A :class:`Dataflow` record carries two functions with one signature each, which the
analytical model (:mod:`accelerators.cost_model`) calls for the accelerators that use it:

* ``spatial(pe_x, pe_y, L) -> Unrolling``: the spatial unrolling factors;
* ``array_level(L, unrolling, rf_words, d) -> ArrayLevel``: GLB-side accesses, NoC
  deliveries and inter-PE transfers per operand, and what each PE's RF holds.

Array shapes: ``pe_x``, ``pe_y`` and ``rf_words`` are ``[A, 1, 1]`` int64 (one row per
accelerator of the dataflow); ``L`` maps the layer quantities ``N, G, Kg, Cg, R, S, P, Q,
st`` (``Kg = K / G``, ``Cg = C / G``, ``st`` = stride) and ``macs``, ``W`` (weights), ``O``
(outputs) to ``[1, L, 1]`` int64 arrays, and ``ps`` to the partial-sum size; ``d`` maps the DRAM-level mapping candidates
(tile counts ``n_m, n_c, n_p``, tile sizes ``t_m, t_c, t_p``, DRAM words ``w_d, i_d, o_d``)
to arrays broadcastable to ``[A, L, E]`` (``E`` candidates per layer; the first axis is 1
when every accelerator has the same GLB size).  Unrolling factors are integer arrays
broadcastable to ``[A, L, 1]``, each at least 1, and together they may use at most
``pe_x * pe_y`` PEs; access counts broadcast to ``[A, L, E]``.

Operand sizes.  Counts are in *units*.  For a layer without bit widths the unit is the
accelerator's word: ``rf_words`` is the RF in words, every operand is one word and a partial
sum ``ps`` words (``L["ps"]``, the technology's ``psum_bits_factor``), as before precision
existed.  For a layer with bits (:mod:`accelerators.precision`), the unit is the gcd of its
operand widths, ``rf_words`` is ``[A, L, 1]`` (the RF in that unit) and ``L`` also carries the
element sizes in units: ``sw`` (a weight), ``sa`` (an input), ``so`` (a final output) and
``ps`` (a partial sum), float64 ``[1, L, 1]``.  A dataflow reads them with defaults of 1, so
a 4-bit weight takes half the RF of an 8-bit one; access counts stay element counts and the
model charges each operand at its size (``deliver_parts`` splits the NoC deliveries so that
it can).

Optional export hints say how the dataflow is written for ZigZag (:class:`ZigZagHints`)
and Timeloop (:class:`TimeloopHints`); :mod:`coexplore.export` refuses a dataflow without
them.  Users add dataflows with :func:`register_dataflow`; :func:`list_dataflows` lists
them in registration order (the built-ins first: ``ws``, ``os``, ``rs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from coexplore.common import ConfigError, Registry


def _cdiv(a, b):
    return -(-a // b)


def _mul(x, s):
    """``x * s``, skipped where ``s`` is the Python int 1 (a layer without bits: every size is one word)."""
    return x if type(s) is int and s == 1 else x * s


# ---------------------------------------------------------------------------------------
# the two function signatures and what they return
# ---------------------------------------------------------------------------------------

class Unrolling(NamedTuple):
    """Spatial unrolling factors; integer arrays broadcastable to ``[A, L, 1]``."""

    g: Any  # groups side by side
    k: Any  # output channels per group (K')
    c: Any  # input channels per group (C')
    r: Any  # filter rows (R)
    p: Any  # output rows (P)
    q: Any  # output columns (Q)


class ArrayLevel(NamedTuple):
    """Array-level traffic of one dataflow, words; arrays broadcastable to ``[A, L, E]``."""

    w_glb: Any  # weight words read from the GLB
    i_glb: Any  # input words read from the GLB
    o_glb: Any  # output / partial-sum words read from and written to the GLB
    deliver: Any  # words delivered to PEs over the NoC (multicast counted per receiving PE)
    inter_pe: Any  # words passed between neighbouring PEs
    rf_alloc: Dict[str, Any]  # what each PE's RF holds beyond one word per operand, by label
    rf_splits: Any  # how many pieces the RF-level reuse unit (filter taps / row) is split into
    inter_pe_psum: Any = 0.0  # fraction of the inter-PE words that are partial sums (charged at partial-sum width)
    rf_reads: Any = None  # RF accesses per MAC in units (each operand at its size); None: sw + sa + 2 ps
    deliver_parts: Any = None  # (weights, inputs, outputs) of ``deliver``, so each is charged at its bits; None: not split
    rf_psum_reads: Any = None  # the partial-sum part of ``rf_reads`` (units per MAC); None: 2 ps (a read and a write)


#: ``spatial(pe_x, pe_y, L) -> Unrolling``.
SpatialFn = Callable[[np.ndarray, np.ndarray, Mapping[str, np.ndarray]], Unrolling]
#: ``array_level(L, unrolling, rf_words, d) -> ArrayLevel``.
ArrayLevelFn = Callable[[Mapping[str, np.ndarray], Unrolling, np.ndarray, Mapping[str, np.ndarray]], ArrayLevel]


# ---------------------------------------------------------------------------------------
# export hints
# ---------------------------------------------------------------------------------------

ZIGZAG_LOOP_DIMS = ("G", "K", "C", "FY", "OY", "OX")  # ZigZag names of the unrollable loops
ZIGZAG_ARRAY_DIMS = ("D1", "D2")  # D1 = pe_x columns, D2 = pe_y rows
TIMELOOP_DIMS = "CMRSNPQ"  # dimensions shared by Timeloop's CNN-Layer and Grouped-CNN-Layer shapes
_FACTORS = re.compile(r"^([CMRSNPQ]=\d+)( [CMRSNPQ]=\d+)*$")


@dataclass(frozen=True)
class ZigZagHints:
    """How ZigZag's ``spatial_mapping`` lays the dataflow's loops on the two array axes."""

    placement: Tuple[Tuple[str, str], ...]  # (loop dim, preferred array dim), in placement order
    default: Tuple[str, str]  # loop dims of the generic 'default' entry on D1 (pe_x) and D2 (pe_y)

    def __post_init__(self) -> None:
        try:
            placement = tuple((str(dim), str(ax)) for dim, ax in self.placement)
            default = tuple(str(x) for x in self.default)
        except (TypeError, ValueError):
            raise ConfigError(f"ZigZagHints: placement must be (loop dim, array dim) pairs and default two loop "
                              f"dims, got placement={self.placement!r}, default={self.default!r}") from None
        for dim, ax in placement:
            if dim not in ZIGZAG_LOOP_DIMS or ax not in ZIGZAG_ARRAY_DIMS:
                raise ConfigError(f"ZigZagHints: placement entry ({dim!r}, {ax!r}) is invalid; loop dims: "
                                  f"{list(ZIGZAG_LOOP_DIMS)}, array dims: {list(ZIGZAG_ARRAY_DIMS)}")
        if len(default) != 2 or any(d not in ZIGZAG_LOOP_DIMS for d in default):
            raise ConfigError(f"ZigZagHints: default must be two loop dims (on D1, D2) out of "
                              f"{list(ZIGZAG_LOOP_DIMS)}, got {self.default!r}")
        object.__setattr__(self, "placement", placement)
        object.__setattr__(self, "default", default)


@dataclass(frozen=True)
class TimeloopHints:
    """The dataflow as Timeloop v0.3 architecture constraints (spatial on the GLB, temporal on the RF).

    In a spatial permutation the first ``split`` dimensions go along X (``pe_x`` columns),
    the rest along Y (``pe_y`` rows).  Only dimensions shared by the grouped and ungrouped
    problem shapes (:data:`TIMELOOP_DIMS`) may be named, so one file serves every layer.
    """

    spatial_factors: str  # e.g. "R=1 S=1 P=1 Q=1 N=1": dimensions not unrolled on the array
    spatial_permutation: str  # e.g. "MC": X dimensions first, then Y
    split: int  # how many leading dimensions of the spatial permutation go along X
    rf_factors: str  # temporal factors fixed to 1 at the register file
    rf_permutation: str  # loop order at the register file, inner first

    def __post_init__(self) -> None:
        for f in ("spatial_factors", "rf_factors"):
            v = getattr(self, f)
            if not isinstance(v, str) or not _FACTORS.match(v):
                raise ConfigError(f"TimeloopHints: {f} must look like 'R=1 S=1' over dimensions "
                                  f"{list(TIMELOOP_DIMS)}, got {v!r}")
        for f in ("spatial_permutation", "rf_permutation"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v or any(ch not in TIMELOOP_DIMS for ch in v) or len(set(v)) != len(v):
                raise ConfigError(f"TimeloopHints: {f} must be distinct letters out of {TIMELOOP_DIMS!r}, got {v!r}")
        s = self.split
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= len(self.spatial_permutation):
            raise ConfigError(f"TimeloopHints: split must be an integer in 0..{len(self.spatial_permutation)} "
                              f"(the length of spatial_permutation), got {s!r}")

    def constraints(self) -> List[Dict[str, Any]]:
        """The ``architecture_constraints: targets:`` entries (v0.3)."""
        return [{"target": "global_buffer", "type": "spatial", "factors": self.spatial_factors,
                 "permutation": self.spatial_permutation, "split": self.split},
                {"target": "register_file", "type": "temporal", "factors": self.rf_factors,
                 "permutation": self.rf_permutation}]


# ---------------------------------------------------------------------------------------
# the record and its registry
# ---------------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Dataflow:
    """One dataflow: its functions, the RF it needs and how to export it.  Validated on construction."""

    name: str  # registry key, lower case, e.g. "ws"
    long_name: str  # e.g. "weight-stationary"
    min_rf_words: int  # smallest RF per PE, words, from which the dataflow can issue a MAC
    spatial: SpatialFn  # spatial(pe_x, pe_y, L) -> Unrolling
    array_level: ArrayLevelFn  # array_level(L, unrolling, rf_words, d) -> ArrayLevel
    zigzag: Optional[ZigZagHints] = None  # ZigZag spatial-mapping hints; None: not exportable to ZigZag
    timeloop: Optional[TimeloopHints] = None  # Timeloop constraints; None: not exportable to Timeloop

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"dataflow: name must be lower-case letters, digits, '-' or '_' starting with a "
                              f"letter, got {self.name!r}")
        where = f"dataflow {self.name!r}"
        if not isinstance(self.long_name, str) or not self.long_name:
            raise ConfigError(f"{where}: long_name must be a non-empty string, got {self.long_name!r}")
        m = self.min_rf_words
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 1024:
            raise ConfigError(f"{where}: min_rf_words must be an integer in 1..1024, got {m!r}")
        for f in ("spatial", "array_level"):
            if not callable(getattr(self, f)):
                raise ConfigError(f"{where}: {f} must be a function, got {getattr(self, f)!r}")
        if self.zigzag is not None and not isinstance(self.zigzag, ZigZagHints):
            raise ConfigError(f"{where}: zigzag must be a ZigZagHints or None, got {type(self.zigzag).__name__}")
        if self.timeloop is not None and not isinstance(self.timeloop, TimeloopHints):
            raise ConfigError(f"{where}: timeloop must be a TimeloopHints or None, "
                              f"got {type(self.timeloop).__name__}")


#: Every registered dataflow by name.  ``name in DATAFLOWS``, ``list(DATAFLOWS)`` (the names,
#: in registration order) and ``DATAFLOWS.get(name)`` work as on any registry.
DATAFLOWS: Registry = Registry("dataflow", ordered=True)  # ws, os, rs: the order users know


def register_dataflow(dataflow: Dataflow) -> Dataflow:
    """Register ``dataflow`` under its name (overwriting warns) and return it.

    Example::

        ws = get_dataflow("ws")
        register_dataflow(dataclasses.replace(ws, name="ws-t", long_name="transposed WS",
                                              spatial=my_spatial, zigzag=None, timeloop=None))
    """
    if not isinstance(dataflow, Dataflow):
        raise ConfigError(f"register_dataflow: expected a Dataflow, got {type(dataflow).__name__}")
    DATAFLOWS.register(dataflow.name, dataflow)
    return dataflow


def get_dataflow(name: str) -> Dataflow:
    """The registered dataflow called ``name``; unknown names list the registered ones."""
    return DATAFLOWS.get(name)


def list_dataflows() -> List[str]:
    """Names of the registered dataflows, in registration order."""
    return DATAFLOWS.names()


# ---------------------------------------------------------------------------------------
# the built-in dataflows
# ---------------------------------------------------------------------------------------

def _ones(pe_x, L) -> np.ndarray:
    return np.ones(np.broadcast_shapes(pe_x.shape, L["G"].shape), dtype=np.int64)


def ws_spatial(pe_x, pe_y, L) -> Unrolling:
    """WS: rows <- C', cols <- K', groups block-diagonal."""
    G, Kg, Cg = L["G"], L["Kg"], L["Cg"]
    one = _ones(pe_x, L)
    s_c = np.minimum(Cg, pe_y)
    s_k = np.minimum(Kg, pe_x)
    s_g = np.minimum(G, np.minimum(pe_y // s_c, pe_x // s_k))
    return Unrolling(s_g, s_k, s_c, one, one, one)


def os_spatial(pe_x, pe_y, L) -> Unrolling:
    """OS: rows <- P, cols <- Q, left-over blocks <- output channels (K', then groups)."""
    G, Kg, P, Q = L["G"], L["Kg"], L["P"], L["Q"]
    one = _ones(pe_x, L)
    s_p = np.minimum(P, pe_y)
    s_q = np.minimum(Q, pe_x)
    slots = (pe_y // s_p) * (pe_x // s_q)
    s_k = np.minimum(Kg, slots)
    s_g = np.minimum(G, slots // s_k)
    return Unrolling(s_g, s_k, one, one, s_p, s_q)


def rs_spatial(pe_x, pe_y, L) -> Unrolling:
    """RS: rows <- R then C', cols <- P, left-over PE sets <- output channels (K', then groups)."""
    G, Kg, Cg, R, P = L["G"], L["Kg"], L["Cg"], L["R"], L["P"]
    one = _ones(pe_x, L)
    s_r = np.minimum(R, pe_y)
    s_c = np.minimum(Cg, pe_y // s_r)
    s_p = np.minimum(P, pe_x)
    slots = (pe_x // s_p) * (pe_y // (s_r * s_c))
    s_k = np.minimum(Kg, slots)
    s_g = np.minimum(G, slots // s_k)
    return Unrolling(s_g, s_k, s_c, s_r, s_p, one)


def ws_array_level(L, sp: Unrolling, rf_words, d) -> ArrayLevel:
    """WS: each PE keeps the taps of ``f`` filters x ``q`` input channels of its share of the array.

    The array unrolls C' on rows and K' on columns; a PE works through its own ``k_folds x
    c_folds`` (c, k) pairs in time.  Its RF holds ``f x q`` of them -- ``f q R S`` weights, the
    streamed input and ``f`` partial sums (``ps`` words each) -- so that every input it receives
    serves ``f`` filters (the GLB sends each input once per ``f s_k`` output channels) and the
    partial sums stay in the PE over ``q`` channels (they leave for the GLB once per ``q``
    channel folds).  When the RF holds all of a PE's weights, they are loaded once for the
    layer instead of once per output-row tile.  ``(f, q)`` is searched (``q`` in {1, 2, 4, 8,
    16}, ``f`` the most that fits) for the least GLB traffic.  An RF too small for one filter's
    taps keeps ``rs_w`` of them and splits the filter (more partial-sum traffic).

    RF reads per MAC: see :func:`_rf_reads_per_mac` (no weight reads when the PE holds one
    weight).
    """
    N, G, Kg, Cg, R, S, P, Q = (L[k] for k in ("N", "G", "Kg", "Cg", "R", "S", "P", "Q"))
    macs, W, O = L["macs"], L["W"], L["O"]
    ps, sw, sa = L.get("ps", 1), L.get("sw", 1), L.get("sa", 1)
    n_p = d["n_p"]
    RS = R * S
    k_folds, c_folds = _cdiv(Kg, sp.k), _cdiv(Cg, sp.c)
    full = rf_words >= _mul(RS, sw) + sa + ps
    rs_w = np.where(full, RS, np.clip((rf_words - sa - ps) // sw, 1, RS))
    n_rs = _cdiv(RS, rs_w)
    stream = N * G * Cg * P * Q * RS  # im2col input stream of one column fold

    def candidate(q):
        f = (rf_words - sa) // (_mul(q * RS, sw) + ps)
        ok = full & (f >= 1) & ((q == 1) | (q <= c_folds))
        f = np.where(ok, np.clip(f, 1, k_folds), 1)
        qq = np.where(ok, np.minimum(q, c_folds), 1)
        resident = (f >= k_folds) & (qq >= c_folds)  # all of the PE's weights stay: loaded once
        w = W * np.where(resident, 1, n_p)
        i = stream * _cdiv(k_folds, f)
        o = O * (2 * _cdiv(c_folds, qq) * n_rs - 1)
        return ok, f, qq, w, i, o

    # only the proxy and the winning q are carried through the search; the winner's counts are
    # computed once afterwards (the same formulas, with q an array)
    best_proxy, best_q = None, None
    for q in (1, 2, 4, 8, 16):
        ok, _, _, w, i, o = candidate(q)
        proxy = _mul(w, sw) + _mul(i, sa) + o * ps
        if best_proxy is None:
            best_proxy, best_q = proxy, np.ones(np.shape(proxy), dtype=np.int64)
        else:
            better = ok & (proxy < best_proxy)
            best_proxy, best_q = np.where(better, proxy, best_proxy), np.where(better, q, best_q)
    _, f_rf, q_rf, w_glb, i_glb, o_glb = candidate(best_q)
    w_glb, i_glb, o_glb = (np.broadcast_to(x, np.broadcast_shapes(x.shape, n_p.shape)) for x in (w_glb, i_glb, o_glb))
    deliver = w_glb + i_glb * sp.k + o_glb
    inter_pe = (macs * n_rs // (RS * q_rf)) * np.ones_like(n_p)  # partial sums passed down a column
    rf_reads = _rf_reads_per_mac(np.where(f_rf * q_rf * rs_w == 1, 0.0, 1.0), f_rf, ps, sw, sa)
    return ArrayLevel(w_glb, i_glb, o_glb, deliver, inter_pe,
                      {"filter taps per PE": rs_w, "filters per PE": f_rf, "channels per PE": q_rf}, n_rs, 1.0,
                      rf_reads, (w_glb, i_glb * sp.k, o_glb))


def _rf_reads_per_mac(weights_move, reuse, ps, sw=1, sa=1):
    """RF accesses per MAC: a weight, the input once per ``reuse`` MACs, a partial-sum read and write.

    The input stays in the PE's operand register while the inner loop runs over the ``reuse``
    filters it serves, so the RF is not read for it again (the rule of ZigZag's cost model,
    ``access_same_data_considered_as_no_access``); partial sums are read and written every MAC
    at their width (``ps`` words).  ``weights_move`` is 0 where the PE holds a single weight.
    Weights and inputs count ``sw`` and ``sa`` units each (1 for a layer without bits).
    """
    if type(sw) is int and type(sa) is int and sw == sa == 1:
        return weights_move + 1.0 / reuse + 2.0 * ps
    return weights_move * sw + sa / reuse + 2.0 * ps


def os_array_level(L, sp: Unrolling, rf_words, d) -> ArrayLevel:
    """OS: each PE accumulates output pixels; its RF buys input reuse one of two ways.

    * psums: ``o_rf`` partial sums of different output channels (``ps`` words each), so each
      input it receives serves ``o_rf`` filters (the GLB sends it once per ``o_rf s_k`` channels);
    * inputs: ``x`` inputs of the pixel's receptive field and one partial sum, so the input chunk
      serves every output channel of the tile (each input is sent once per fold) while the
      partial sum leaves the PE once per chunk.

    The cheaper in GLB words is taken per pair.
    """
    G, Kg, Cg, R, S, Q, st = (L[k] for k in ("G", "Kg", "Cg", "R", "S", "Q", "st"))
    macs, W, O = L["macs"], L["W"], L["O"]
    ps, sw, sa = L.get("ps", 1), L.get("sw", 1), L.get("sa", 1)
    n_p, t_p, n_c, t_c = d["n_p"], d["t_p"], d["n_c"], d["t_c"]
    k_slots = _cdiv(Kg, sp.k)
    folds = n_p * _cdiv(t_p, sp.p) * _cdiv(Q, sp.q)
    w_glb = W * folds
    win = ((sp.p - 1) * st + R) * ((sp.q - 1) * st + S)
    # (a) partial sums of o_rf output channels
    o_rf = np.clip((rf_words - sw - sa) // ps, 1, k_slots)
    i_a = G * Cg * win * folds * _cdiv(Kg, sp.k * o_rf)
    o_a = O * (2 * n_c - 1)
    # (b) a chunk of x inputs of the receptive field (t_c R S per tile) and one partial sum
    field = np.minimum(t_c, Cg) * R * S
    x = np.clip((rf_words - sw - ps) // sa, 1, field)
    chunks = _cdiv(field, x)
    i_b = G * Cg * win * folds
    o_b = O * (2 * n_c * chunks - 1)
    use_b = ((rf_words - sw - ps) // sa >= 1) & (_mul(i_b, sa) + o_b * ps < _mul(i_a, sa) + o_a * ps)
    i_glb = np.where(use_b, i_b, i_a)
    o_glb = np.where(use_b, o_b, o_a)
    reuse = np.where(use_b, k_slots, o_rf)
    deliver = w_glb * sp.p * sp.q + i_glb * sp.k + o_glb
    inter_pe = np.maximum(0, macs // reuse - i_glb * sp.k)  # inputs passed between neighbouring PEs
    rf_reads = _rf_reads_per_mac(1.0, np.where(use_b, 1, o_rf), ps, sw, sa)
    return ArrayLevel(w_glb, i_glb, o_glb, deliver, inter_pe,
                      {"output partial sums per PE": np.where(use_b, 1, o_rf),
                       "inputs per PE": np.where(use_b, x, 1)}, np.ones_like(o_rf), 0.0, rf_reads,
                      (w_glb * sp.p * sp.q, i_glb * sp.k, o_glb))


def rs_array_level(L, sp: Unrolling, rf_words, d) -> ArrayLevel:
    """RS: each PE keeps a filter row of ``f_rf`` filters x ``q_rf`` channels plus a sliding input window.

    An Eyeriss PE holds f filters x q channels of filter rows (f q S words), q input rows'
    sliding windows (q S) and f partial sums (``ps`` words each; Eyeriss: 224 + 12 + 24 16-bit
    words).  f reuses each input f times, q accumulates q channels before a partial sum leaves
    the PE.  The split is searched over q in {1, 2, 4, 8, 16} per pair.  An RF smaller than
    ``2 S + ps`` words splits the filter row, which costs partial-sum traffic.
    """
    N, G, Kg, Cg, R, S, P, Q, st = (L[k] for k in ("N", "G", "Kg", "Cg", "R", "S", "P", "Q", "st"))
    macs, W, O = L["macs"], L["W"], L["O"]
    ps, sw, sa = L.get("ps", 1), L.get("sw", 1), L.get("sa", 1)
    Wd = (Q - 1) * st + S
    n_p, t_p = d["n_p"], d["t_p"]
    full = rf_words >= _mul(S, sw) + _mul(S, sa) + ps
    s_chunk = np.where(full, S, np.maximum(1, (rf_words - ps) // (sw + sa)))
    n_s = _cdiv(S, s_chunk)
    c_folds = _cdiv(Cg, sp.c)
    best = None
    for q in (1, 2, 4, 8, 16):
        f = (rf_words - _mul(q * S, sa)) // (_mul(q * S, sw) + ps)
        ok = full & (f >= 1) & ((q == 1) | (q <= c_folds))
        f = np.where(ok, np.clip(f, 1, _cdiv(Kg, sp.k)), 1)
        qq = np.where(ok, q, 1)
        # GLB words this split costs: input rows per m-chunk + partial sums per channel pass
        proxy = (_mul(G * Cg * Wd * ((sp.p - 1) * st + R) * N * _cdiv(P, sp.p) * _cdiv(Kg, sp.k * f), sa)
                 + O * 2 * _cdiv(c_folds, qq) * ps)
        if best is None:
            best = (proxy, f, qq)
        else:
            better = ok & (proxy < best[0])
            best = tuple(np.where(better, new_, old_) for new_, old_ in zip((proxy, f, qq), best))
    _, f_rf, q_rf = best
    folds = n_p * _cdiv(t_p, sp.p)
    w_glb = W * folds
    m_chunks = _cdiv(Kg, sp.k * f_rf)
    i_glb = G * Cg * Wd * ((sp.p - 1) * st + R) * folds * m_chunks
    o_glb = O * (2 * _cdiv(c_folds, q_rf) * n_s - 1) * np.ones_like(n_p)
    deliver = w_glb * sp.p + i_glb * sp.r * sp.k + o_glb
    inter_pe = (macs * n_s // (S * q_rf)) * np.ones_like(n_p)
    rf_reads = _rf_reads_per_mac(1.0, f_rf, ps, sw, sa)
    return ArrayLevel(w_glb, i_glb, o_glb, deliver, inter_pe, {"filters per PE": f_rf, "channels per PE": q_rf},
                      n_s, 1.0, rf_reads, (w_glb * sp.p, i_glb * sp.r * sp.k, o_glb))


# Every built-in dataflow needs one weight, one input and one partial sum in the RF to issue
# a MAC from the PE's own storage: 3 words.
WS = register_dataflow(Dataflow(
    "ws", "weight-stationary", 3, ws_spatial, ws_array_level,
    # each PE keeps the taps of one (c, m) filter in its register file
    zigzag=ZigZagHints(placement=(("C", "D2"), ("K", "D1"), ("G", "D2")), default=("K", "C")),
    timeloop=TimeloopHints("R=1 S=1 P=1 Q=1 N=1", "MC", 1, "C=1 M=1", "SR")))
OS = register_dataflow(Dataflow(
    "os", "output-stationary", 3, os_spatial, os_array_level,
    # each PE accumulates one output pixel (of one or more channels) in its register file
    zigzag=ZigZagHints(placement=(("OY", "D2"), ("OX", "D1"), ("K", "D1"), ("G", "D1")), default=("OX", "OY")),
    timeloop=TimeloopHints("R=1 S=1 C=1 N=1", "QPM", 1, "P=1 Q=1 N=1", "SRC")))
RS = register_dataflow(Dataflow(
    "rs", "row-stationary", 3, rs_spatial, rs_array_level,
    # each PE runs a 1-D convolution of one filter row over one input row (Eyeriss)
    zigzag=ZigZagHints(placement=(("FY", "D2"), ("C", "D2"), ("OY", "D1"), ("K", "D1"), ("G", "D1")),
                       default=("OY", "FY")),
    timeloop=TimeloopHints("S=1 Q=1 N=1", "PRCM", 1, "R=1 P=1", "SQ")))
