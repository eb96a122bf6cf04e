"""ZigZag as a second cost source: coexplore's records translated into ZigZag's inputs, in memory.

ZigZag (Mei et al., "ZigZag: Enlarging Joint Architecture-Mapping Design Space Exploration for
DNN Accelerators", IEEE Trans. Computers 70(8), 2021; KULeuven-MICAS/zigzag) prices one layer
on one accelerator by searching the temporal mapping with LOMA (loop-order-based memory
allocation, Symons et al., AICAS 2021) and evaluating each candidate with its analytical cost
model.  This module turns an :class:`~accelerators.hardware.Accelerator` and a
:class:`~accelerators.workload.Layer` into the accelerator, workload and mapping records of
**zigzag-dse 3.9.1** (the schemas of ``zigzag/parser/accelerator_validator.py``,
``workload_validator.py`` and ``mapping_validator.py`` at that release), builds ZigZag's objects
with its own validators and factories -- no YAML round trip -- and runs its stages
``WorkloadStage -> reduce -> SpatialMappingGeneratorStage -> reduce ->
TemporalMappingGeneratorStage (LOMA) -> CostModelStage`` per (layer, accelerator).

The translation (``TRANSLATION_VERSION``):

* memories, lowest first: ``rf`` (one per PE: ``served_dimensions: []``), holding all three
  operands in ``rf_bytes``, with one read and one write port per operand, each a partial sum
  wide (one access per operand per cycle);
  ``glb`` (one for the array: served D1, D2), holding all three operands, one read/write port of
  ``glb_bw`` bytes per cycle; ``dram``, one read/write port of ``dram_bw`` bytes per cycle;
* per-access energies are coexplore's (:class:`~accelerators.technology.Technology`): every port
  has a minimum bandwidth of one word, so an access of ``n`` words costs ``n`` words' energy
  (``r_cost = w_cost`` = energy per word x words per full-width access); the MAC costs
  ``tech.e_mac``.  ZigZag has no NoC or static energy, so those terms of coexplore's technology
  do not enter (the ``zigzag`` technology preset sets them to zero on both sides);
* the operational array is ``D1 = pe_x`` columns by ``D2 = pe_y`` rows;
* the layer is ZigZag's ``Conv`` (grouped equation for grouped and depthwise layers) with the
  loop bounds coexplore prices (a batched matrix-vector layer has its batch as output rows),
  inputs as the padded maps (``pr_loop_sizes``, no padding); ZigZag's ``operand_precision`` from
  the layer's bits: ``W`` = ``weight_bits``, ``I`` = ``act_bits`` (each ``word_bits`` where the layer
  has none), ``O`` (partial sums) = ``out_bits`` or ``tech.psum_bits(word_bits)``, ``O_final`` =
  ``out_bits`` or ``word_bits`` -- the widths the analytical model uses;
* precision schemes: ZigZag 3.9.1 has no bit-serial (Stripes, Loom) or bit-fused (BitFusion)
  MAC model -- its operational array does one MAC per unit per cycle at ``unit_energy``.  So an
  accelerator of any ``precision`` is priced as a fixed ``word_bits`` MAC array: the operand bits
  change memory capacity and traffic (as in the analytical model), the scheme's speed-up, MAC
  energy and area overhead do not enter (a warning says so);
* the spatial mapping is fixed to the unrolling of the accelerator's dataflow
  (:func:`accelerators.cost_model.spatial_unrolling`, placed on D1/D2 as the dataflow's
  :class:`~accelerators.dataflows.ZigZagHints` prefer); LOMA searches the temporal mapping and
  the memory allocation (``lpf_limit`` loop prime factors), and the reduce stages keep the best
  mapping for the mapping objective (``energy``, ``latency`` or ``edp``).

Latency is ZigZag's ``latency_total2`` (cycles, including stalls, on- and off-loading) over
the clock; energy is ZigZag's ``energy_total`` (pJ); DRAM traffic is what crosses the DRAM
port; area is coexplore's area model (ZigZag's example areas carry no unit).

Because ZigZag takes seconds per pair, :class:`ZigZagBackend` keeps a content-addressed disk
cache of per-pair results (under ``default_cache_dir()/zigzag``, keyed by the ZigZag version,
the translation version and the translated records themselves), runs missing pairs in a
process pool with a progress bar, and so resumes an interrupted sweep where it stopped.

This module imports ZigZag only when a pair is priced; without it, building the cost source
fails with a one-line :class:`~coexplore.common.ConfigError` naming the extra to install.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from coexplore.common import ConfigError, default_cache_dir, read_json, write_json

from .cost_model import AnalyticalModel, Costs, check_precision, layer_shape, spatial_unrolling
from .cost_source import COST_SOURCES, fingerprint_of
from .dataflows import get_dataflow
from .hardware import Accelerator
from .technology import DEFAULT_TECH, Technology, get_technology, technology_name
from .workload import Layer

logger = logging.getLogger(__name__)

#: The zigzag-dse releases whose input schema the translation targets.
ZIGZAG_VERSIONS = ("3.9.1",)
#: Version of the translation below; part of every cache key.  Bump it whenever a translated
#: record changes.
TRANSLATION_VERSION = "1"
#: Mapping objectives ZigZag can minimise, and its names for them.
ZIGZAG_OBJECTIVES = {"energy": "energy", "latency": "latency", "edp": "EDP"}
INSTALL_HINT = 'pip install "coexplore[zigzag]"'
#: Where missing pairs run: a process pool on this machine, or one Ray task per pair.
EXECUTORS = ("local", "ray")
RAY_HINT = 'pip install "coexplore[ray]"'
_DRAM_BITS = 10_000_000_000  # "unbounded" off-chip memory, as in ZigZag's examples
_LINKS = {"O": "O", "W": "I2", "I": "I1"}  # layer operand -> memory operand
_CONV_EQ = "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]"
_GROUPED_EQ = "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]"
_SPATIAL_DIMS = {"g": "G", "k": "K", "c": "C", "r": "FY", "p": "OY", "q": "OX"}


# ---------------------------------------------------------------------------------------
# the translation (pure Python; no ZigZag needed)
# ---------------------------------------------------------------------------------------

def _round(x: float, digits: int = 9) -> float:
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def _bits_per_cycle(bytes_per_cycle: float, word_bits: int) -> int:
    """A port width in whole bits per cycle, at least one word."""
    return max(int(word_bits), int(round(bytes_per_cycle * 8)))


def per_word_energies_pj(acc: Accelerator, tech: Technology = DEFAULT_TECH) -> Dict[str, float]:
    """coexplore's per-access energies for ``acc``, pJ per word (per MAC for ``mac``)."""
    wb = acc.word_bits
    return {"mac": float(tech.e_mac(wb)), "rf": float(tech.e_rf(acc.rf_bytes, wb)), "noc": float(tech.e_noc(wb)),
            "glb": float(tech.e_glb(acc.glb_bytes, wb)), "dram": float(tech.e_dram(wb))}


def _port(name: str, kind: str, bw_min: int, bw_max: int, allocation: List[str]) -> Dict[str, Any]:
    return {"name": name, "type": kind, "bandwidth_min": int(bw_min), "bandwidth_max": int(bw_max),
            "allocation": list(allocation)}


_ALL_DIRECTIONS = ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"]


def zigzag_accelerator(acc: Accelerator, tech: Technology = DEFAULT_TECH) -> Dict[str, Any]:
    """The ZigZag 3.9.1 accelerator record of ``acc`` (see the module docstring)."""
    wb = acc.word_bits
    e = per_word_energies_pj(acc, tech)
    glb_bw = _bits_per_cycle(acc.glb_bw, wb)
    dram_bw = _bits_per_cycle(acc.dram_bw, wb)

    def mem(size_bits: int, e_word: float, bw_max: int, area: float, ports: List[Dict[str, Any]],
            served: List[str]) -> Dict[str, Any]:
        cost = _round(e_word * bw_max / wb)  # pJ per full-width access
        return {"size": int(size_bits), "r_cost": cost, "w_cost": cost, "area": _round(area), "latency": 1,
                "operands": ["I1", "I2", "O"], "ports": ports, "served_dimensions": served}

    # One read and one write port per operand, each as wide as a partial sum, so that a PE can
    # read a weight, an input and a partial sum and write a partial sum every cycle; all ports of
    # a memory have one width, so r_cost / w_cost are the same per word on every port.
    rf_bw = tech.psum_bits(wb)
    rf_ports = [_port("r_port_1", "read", wb, rf_bw, ["I1, tl"]), _port("w_port_1", "write", wb, rf_bw, ["I1, fh"]),
                _port("r_port_2", "read", wb, rf_bw, ["I2, tl"]), _port("w_port_2", "write", wb, rf_bw, ["I2, fh"]),
                _port("r_port_3", "read", wb, rf_bw, ["O, tl", "O, th"]),
                _port("w_port_3", "write", wb, rf_bw, ["O, fh", "O, fl"])]
    return {
        "name": "coexplore",
        "memories": {
            "rf": mem(acc.rf_bytes * 8, e["rf"], rf_bw, acc.rf_bytes / 1024.0 * tech.a_rf_mm2_per_kb, rf_ports, []),
            "glb": mem(acc.glb_bytes * 8, e["glb"], glb_bw, acc.glb_bytes / 1024.0 * tech.a_sram_mm2_per_kb,
                       [_port("rw_port_1", "read_write", wb, glb_bw, _ALL_DIRECTIONS)], ["D1", "D2"]),
            "dram": mem(_DRAM_BITS, e["dram"], dram_bw, 0.0,
                        [_port("rw_port_1", "read_write", wb, dram_bw, _ALL_DIRECTIONS)], ["D1", "D2"]),
        },
        "operational_array": {"unit_energy": _round(e["mac"]), "unit_area": _round(float(tech.a_mac(wb))),
                              "dimensions": ["D1", "D2"], "sizes": [int(acc.pe_x), int(acc.pe_y)]},
    }


def zigzag_layer(layer: Layer, layer_id: int, name: str, source_id: int, word_bits: int,
                 psum_bits: Optional[int] = None) -> Dict[str, Any]:
    """One ZigZag 3.9.1 workload layer.

    Args:
        layer: the layer; its loop bounds are those coexplore prices (:func:`layer_shape`).
        layer_id: its ``id``.
        name: its name (the mapping entry refers to it).
        source_id: ``id`` of the layer producing its input (its own id: the input is a constant).
        word_bits: precision of weights, inputs and final outputs where the layer has no bits.
        psum_bits: precision of partial sums where the layer has no ``out_bits`` (default ``word_bits``).
    """
    sh = layer_shape(layer)
    st = sh["st"]
    if sh["G"] > 1:
        eq, dims = _GROUPED_EQ, ["B", "G", "K", "C", "OY", "OX", "FY", "FX"]
        sizes = [sh["N"], sh["G"], sh["Kg"], sh["Cg"], sh["P"], sh["Q"], sh["R"], sh["S"]]
    else:
        eq, dims = _CONV_EQ, ["B", "K", "C", "OY", "OX", "FY", "FX"]
        sizes = [sh["N"], sh["Kg"], sh["Cg"], sh["P"], sh["Q"], sh["R"], sh["S"]]
    ix = (sh["Q"] - 1) * st + sh["S"]
    iy = (sh["P"] - 1) * st + sh["R"]
    return {
        "id": int(layer_id), "name": name, "operator_type": "Conv", "equation": eq,
        "dimension_relations": [f"ix={st}*ox+1*fx", f"iy={st}*oy+1*fy"],
        "loop_dims": dims, "loop_sizes": [int(s) for s in sizes],
        "operand_precision": operand_precision(layer, word_bits, psum_bits),
        "operand_source": {"I": int(source_id), "W": int(layer_id)},
        "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [int(ix), int(iy)], "padding": [[0, 0], [0, 0]],
    }


def operand_precision(layer: Layer, word_bits: int, psum_bits: Optional[int] = None) -> Dict[str, int]:
    """ZigZag's ``operand_precision`` of ``layer``: its own bits, the accelerator's word where it has none.

    ``W`` weights, ``I`` inputs, ``O`` partial sums (``out_bits``, else ``psum_bits``, else the
    word), ``O_final`` final outputs (``out_bits``, else the word).
    """
    wb = int(word_bits)
    return {"W": int(layer.weight_bits or wb), "I": int(layer.act_bits or wb),
            "O": int(layer.out_bits or psum_bits or wb), "O_final": int(layer.out_bits or wb)}


def place_spatial(factors: Dict[str, int], dataflow: str, pe_x: int, pe_y: int
                  ) -> Tuple[Dict[str, List[str]], bool]:
    """Spread spatial unrolling factors (ZigZag dims ``G, K, C, FY, OY, OX``) over D1 (``pe_x``) and
    D2 (``pe_y``), greedily in the order and on the sides the dataflow's ZigZagHints prefer.

    Returns:
        ``({"D1": ["K, 16"], "D2": [...]}, exact)``; ``exact`` is False when a factor had to be
        rounded up to fit a rectangle of the array.

    Raises:
        ConfigError: the dataflow has no ZigZag hints.
    """
    hints = get_dataflow(dataflow).zigzag
    if hints is None:
        raise ConfigError(f"zigzag: dataflow {dataflow!r} has no zigzag export hints (its Dataflow.zigzag is None); "
                          f"register it with a ZigZagHints to price or export it with ZigZag")
    cap = {"D1": pe_x, "D2": pe_y}
    placed: Dict[str, List[str]] = {"D1": [], "D2": []}
    exact = True
    for dim, pref in hints.placement:
        f = factors.get(dim, 1)
        if f <= 1:
            continue
        other = "D1" if pref == "D2" else "D2"
        if f <= cap[pref]:
            split = {pref: f}
        elif f <= cap[other]:
            split = {other: f}
        else:  # across both: the largest divisor that fits the preferred side, if the rest fits the other
            a = max((d for d in range(1, cap[pref] + 1) if f % d == 0 and f // d <= cap[other]), default=0)
            if a:
                split = {pref: a, other: f // a}
            else:
                a = cap[pref]
                b = min(cap[other], -(-f // a))
                split = {pref: a, other: b}
                exact = exact and a * b == f
        for d, v in split.items():
            if v > 1:
                placed[d].append(f"{dim}, {v}")
                cap[d] //= v
    return placed, exact


def zigzag_spatial_mapping(layer: Layer, acc: Accelerator) -> Tuple[Dict[str, List[str]], bool]:
    """The dataflow's spatial unrolling of ``layer`` on ``acc`` as a ZigZag ``spatial_mapping``."""
    un = spatial_unrolling(layer, acc)
    factors = {_SPATIAL_DIMS[k]: v for k, v in un.items()}
    if layer_shape(layer)["G"] == 1:
        factors.pop("G", None)
    placed, exact = place_spatial(factors, acc.dataflow, acc.pe_x, acc.pe_y)
    sm = {d: v for d, v in placed.items() if v}
    if not sm:  # nothing unrolled (a layer of one MAC per step): one PE on D1
        sm = {"D1": [f"{get_dataflow(acc.dataflow).zigzag.default[0]}, 1"]}
    return sm, exact


def zigzag_mapping(layer: Layer, acc: Accelerator, name: str) -> List[Dict[str, Any]]:
    """The ZigZag mapping records of one layer: its fixed spatial mapping (by name) and a ``default``."""
    sm, _ = zigzag_spatial_mapping(layer, acc)
    d1, d2 = get_dataflow(acc.dataflow).zigzag.default
    return [{"name": "default", "spatial_mapping": {"D1": [f"{d1}, {acc.pe_x}"], "D2": [f"{d2}, {acc.pe_y}"]},
             "memory_operand_links": dict(_LINKS)},
            {"name": name, "spatial_mapping": sm, "memory_operand_links": dict(_LINKS)}]


# ---------------------------------------------------------------------------------------
# ZigZag itself (imported lazily)
# ---------------------------------------------------------------------------------------

def zigzag_version() -> Optional[str]:
    """The installed zigzag-dse version, or None."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("zigzag-dse")
        except PackageNotFoundError:
            return None
    except ImportError:  # pragma: no cover - Python < 3.8
        return None


def require_zigzag() -> str:
    """The installed ZigZag version, checked against :data:`ZIGZAG_VERSIONS`.

    Raises:
        ConfigError: ZigZag is missing or another release is installed (one line, with the fix).
    """
    v = zigzag_version()
    if v is None:
        raise ConfigError(f"cost model 'zigzag' needs ZigZag (zigzag-dse {ZIGZAG_VERSIONS[-1]}), which is not "
                          f"installed: {INSTALL_HINT}")
    if v not in ZIGZAG_VERSIONS:
        raise ConfigError(f"cost model 'zigzag': zigzag-dse {v} is installed, but the translation targets "
                          f"{' / '.join(ZIGZAG_VERSIONS)}: {INSTALL_HINT}")
    try:
        import zigzag.stages.main  # noqa: F401  (a broken install fails here, not deep in a worker)
    except ImportError as exc:
        raise ConfigError(f"cost model 'zigzag': importing zigzag failed ({exc}); {INSTALL_HINT}") from None
    return v


@contextlib.contextmanager
def _quiet_zigzag() -> Iterator[None]:
    """ZigZag logs every layer and mapping at INFO; keep its loggers at WARNING while it runs."""
    lg = logging.getLogger("zigzag")
    old = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(old)


def build_zigzag_inputs(acc_rec: Dict[str, Any], layer_rec: Dict[str, Any], mapping_rec: List[Dict[str, Any]]):
    """ZigZag's ``Accelerator`` and ``DNNWorkload`` objects from the records, through its own validators.

    Raises:
        ConfigError: ZigZag's validators refuse a record (the message carries their errors).
    """
    from zigzag.parser.accelerator_factory import AcceleratorFactory
    from zigzag.parser.accelerator_validator import AcceleratorValidator
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.workload_factory import WorkloadFactory
    from zigzag.parser.workload_validator import WorkloadValidator

    av = AcceleratorValidator(acc_rec)
    acc_data = av.normalized_data
    if not av.validate():
        raise ConfigError(f"zigzag: the translated accelerator is invalid: {av.validator.errors}")
    wv = WorkloadValidator([layer_rec])
    wl_data = wv.normalized_data
    if not wv.validate():
        raise ConfigError(f"zigzag: the translated layer {layer_rec.get('name')!r} is invalid")
    mv = MappingValidator(mapping_rec)
    map_data = mv.normalized_data
    if not mv.validate():
        raise ConfigError(f"zigzag: the translated mapping of {layer_rec.get('name')!r} is invalid")
    return AcceleratorFactory(acc_data).create(), WorkloadFactory(wl_data, map_data).create()


def run_zigzag_pair(job: Dict[str, Any]) -> Dict[str, Any]:
    """Run ZigZag on one translated (layer, accelerator) pair and summarise its best mapping.

    Args:
        job: ``{"accelerator": record, "layer": record, "mapping": records, "opt": "energy"|"latency"|"EDP",
            "lpf_limit": int}``.

    Returns:
        A JSON-able record: ``latency_cycles``, ``energy_pj``, ``mac_pj``, ``energy_pj_by_level``
        (rf, glb, dram), ``energy_pj_by_operand`` (W, I, O per level), ``words`` (element moves per
        operand and level), ``dram_bytes``, ``ideal_cycles``, ``compute_cycles``, ``stall_cycles``,
        ``spatial`` and ``temporal`` (ZigZag's own rendering) and ``seconds``.
    """
    from zigzag.mapping.data_movement import DataMoveAttr
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.results.reduce_stages import MinimalEDPStage, MinimalEnergyStage, MinimalLatencyStage
    from zigzag.stages.workload_iterator import WorkloadStage

    t0 = time.perf_counter()
    reduce = {"energy": MinimalEnergyStage, "latency": MinimalLatencyStage, "EDP": MinimalEDPStage}[job["opt"]]
    with _quiet_zigzag():
        hw, workload = build_zigzag_inputs(job["accelerator"], job["layer"], job["mapping"])
        stages = [WorkloadStage, reduce, SpatialMappingGeneratorStage, reduce, TemporalMappingGeneratorStage,
                  CostModelStage]
        answers = MainStage(stages, accelerator=hw, workload=workload, loma_lpf_limit=int(job["lpf_limit"]),
                            loma_show_progress_bar=False, nb_mappings_generated=3,
                            enable_mix_spatial_mapping_generation=False,
                            access_same_data_considered_as_no_access=True,
                            temporal_mapping_type=TemporalMappingType("uneven")).run()
    if len(answers) != 1:
        raise RuntimeError(f"zigzag returned {len(answers)} results for one layer")
    cme = answers[0][0]
    levels = ["rf", "glb", "dram"]
    by_op: Dict[str, List[float]] = {}
    words: Dict[str, Dict[str, float]] = {}
    dram_bits = 0.0
    for op, parts in cme.mem_energy_breakdown.items():
        by_op[str(op)] = [float(x) for x in parts]
    for op, moves in cme.mapping.unit_mem_data_movement.items():
        per_level = {}
        for lvl, mv in enumerate(moves):
            count = mv.get_attribute(DataMoveAttr.DATA_ELEM_MOVE_COUNT)
            prec = mv.get_attribute(DataMoveAttr.DATA_PRECISION)
            per_level[levels[lvl] if lvl < len(levels) else f"L{lvl}"] = float(sum(count.data.values()))
            if lvl == len(moves) - 1:  # the DRAM: what it sends down and receives from below
                for d, n in count.data.items():
                    if d.name in ("RD_OUT_TO_LOW", "WR_IN_BY_LOW"):
                        dram_bits += float(n) * float(prec.get(d))
        words[str(op)] = per_level
    e_level = {lv: float(sum(v[i] for v in by_op.values() if i < len(v))) for i, lv in enumerate(levels)}
    return {
        "latency_cycles": float(cme.latency_total2),
        "energy_pj": float(cme.energy_total),
        "mac_pj": float(cme.mac_energy),
        "energy_pj_by_level": e_level,
        "energy_pj_by_operand": by_op,
        "words": words,
        "dram_bytes": dram_bits / 8.0,
        "ideal_cycles": float(cme.ideal_cycle),
        "compute_cycles": float(cme.ideal_temporal_cycle),
        "stall_cycles": float(cme.latency_total2 - cme.ideal_temporal_cycle),
        "spatial": str(cme.layer.spatial_mapping),
        "temporal": str(cme.temporal_mapping),
        "seconds": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------------------
# the per-pair cache
# ---------------------------------------------------------------------------------------

def _key(job: Dict[str, Any], version: str) -> str:
    rec = {"zigzag": version, "translation": TRANSLATION_VERSION,
           **{k: job[k] for k in ("accelerator", "layer", "mapping", "opt", "lpf_limit")}}
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()


class PairCache:
    """Per-(layer, accelerator) ZigZag results on disk, one JSON file per content key.

    A result is written (atomically) as soon as its pair finishes, so an interrupted sweep
    keeps what it computed and the next one resumes from there.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            rec = read_json(p)
        except ConfigError:  # a damaged file is recomputed, not trusted
            logger.warning("zigzag cache: %s is unreadable; recomputing it", p)
            return None
        if not isinstance(rec, dict) or rec.pop("key", None) != key:
            return None
        return rec

    def put(self, key: str, rec: Dict[str, Any]) -> None:
        write_json(self.path(key), {**rec, "key": key})

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0


# ---------------------------------------------------------------------------------------
# the cost source
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairResult:
    """ZigZag's answer for one (layer, accelerator) pair (see :func:`run_zigzag_pair`), and whether it was cached."""

    record: Dict[str, Any]
    cached: bool


class ZigZagBackend:
    """ZigZag 3.9.1 as a cost source (``name = "zigzag"``), behind the same protocol as the analytical model.

    Args:
        tech: technology constants (a :class:`Technology` or a preset name, ``default`` or ``zigzag``),
            translated into ZigZag's per-access energies.
        mapping_objective: what ZigZag's reduce stages keep per layer: ``energy``, ``latency`` or ``edp``.
        lpf_limit: LOMA's limit on loop prime factors (ZigZag's default, 6); more is slower and finer.
        workers: processes for missing pairs (default: the CPU count, at most the pairs to run);
            1 runs in this process.  With ``executor="ray"``: the Ray tasks in flight at once
            (default: the cluster's CPUs).
        executor: ``"local"`` (a process pool on this machine) or ``"ray"`` (one Ray task per
            pair, one CPU each, on the cluster at ``ray_address``: where a sweep already runs on
            Ray, its ZigZag pricing can spread over the same cluster).
        ray_address: the Ray cluster (default: ``$RAY_ADDRESS``; neither: a local Ray started for
            the call and shut down after it).
        cache_dir: the project cache folder (default :func:`coexplore.common.default_cache_dir`);
            results go to its ``zigzag`` subfolder.
        cache: False to neither read nor write cached results.
        progress: show a progress bar with an ETA while pairs run (default: when stderr is a terminal).

    ``workers``, ``executor``, ``ray_address``, ``cache_dir``, ``cache`` and ``progress`` change
    how the numbers are made, not the numbers, so they are not part of the fingerprint.
    """

    name = "zigzag"

    def __init__(self, tech: Union[str, Technology] = DEFAULT_TECH, mapping_objective: str = "edp",
                 lpf_limit: int = 6, workers: Optional[int] = None, cache_dir: Any = None, cache: bool = True,
                 progress: Optional[bool] = None, executor: str = "local",
                 ray_address: Optional[str] = None) -> None:
        if mapping_objective not in ZIGZAG_OBJECTIVES:
            raise ConfigError(f"cost model 'zigzag': mapping_objective {mapping_objective!r} is not supported; "
                              f"allowed values: {list(ZIGZAG_OBJECTIVES)}")
        if isinstance(lpf_limit, bool) or not isinstance(lpf_limit, int) or not 1 <= lpf_limit <= 12:
            raise ConfigError(f"cost model 'zigzag': lpf_limit must be an integer in 1..12, got {lpf_limit!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"cost model 'zigzag': workers must be an integer >= 1, got {workers!r}")
        if executor not in EXECUTORS:
            raise ConfigError(f"cost model 'zigzag': executor {executor!r} is not supported; "
                              f"allowed values: {list(EXECUTORS)}")
        self.executor = executor
        self.ray_address = ray_address
        self.tech = get_technology(tech)
        self.mapping_objective = mapping_objective
        self.lpf_limit = lpf_limit
        self.workers = workers
        self.cache_dir = cache_dir
        self.use_cache = bool(cache)
        self.progress = progress
        self.zigzag_version = require_zigzag()
        self._area = AnalyticalModel(self.tech)
        #: pairs run (not found in the cache) by the last evaluate(); for tests and reports
        self.last_run = 0
        self.last_cached = 0

    # -- the cost-source protocol --------------------------------------------------------
    def describe(self) -> Dict[str, Any]:
        """Provenance: name, ZigZag and translation versions, mapping objective, constants, fingerprint."""
        rec = {"name": self.name, "version": f"zigzag-dse {self.zigzag_version}, translation {TRANSLATION_VERSION}",
               "mapping_objective": self.mapping_objective, "lpf_limit": self.lpf_limit,
               "technology_preset": technology_name(self.tech), "technology": self.tech.to_dict(),
               "area": "coexplore's area model"}
        return {**rec, "fingerprint": fingerprint_of(rec)}

    def fingerprint(self) -> str:
        return self.describe()["fingerprint"]

    def __repr__(self) -> str:
        return f"ZigZagBackend(mapping_objective={self.mapping_objective!r}, fingerprint={self.fingerprint()!r})"

    @property
    def cache(self) -> Optional[PairCache]:
        return PairCache(default_cache_dir(self.cache_dir) / "zigzag") if self.use_cache else None

    def job(self, layer: Layer, acc: Accelerator) -> Dict[str, Any]:
        """The translated inputs of one pair (what its cache key hashes)."""
        if not isinstance(layer, Layer):
            raise ConfigError(f"zigzag: expected a Layer, got {type(layer).__name__}")
        if not isinstance(acc, Accelerator):
            raise ConfigError(f"zigzag: expected an Accelerator, got {type(acc).__name__}")
        check_precision([layer], [acc])  # the same bits the analytical model refuses
        name = "layer"
        return {"accelerator": zigzag_accelerator(acc, self.tech),
                "layer": zigzag_layer(layer, 0, name, 0, acc.word_bits, self.tech.psum_bits(acc.word_bits)),
                "mapping": zigzag_mapping(layer, acc, name),
                "opt": ZIGZAG_OBJECTIVES[self.mapping_objective], "lpf_limit": self.lpf_limit}

    def pairs(self, pairs: Sequence[Tuple[Layer, Accelerator]],
              on_result: Optional[Callable[[int, PairResult], None]] = None) -> List[PairResult]:
        """ZigZag's result for every ``(layer, accelerator)`` pair, from the cache or by running ZigZag.

        Identical pairs run once; missing ones run in ``workers`` processes, and each result is
        cached the moment it arrives (so an interruption loses only the pairs in flight).

        Args:
            pairs: the pairs.
            on_result: called as ``on_result(index, result)`` for every pair once its result is known.
        """
        jobs = [self.job(l, a) for l, a in pairs]
        scalable = sorted({a.precision for _, a in pairs if a.precision != "fixed"})
        if scalable:
            logger.warning("zigzag: ZigZag has no model of the %s MAC scheme(s); those accelerators are priced as "
                           "fixed word_bits MAC arrays (operand bits in memory only, no speed-up)", ", ".join(scalable))
        keys = [_key(j, self.zigzag_version) for j in jobs]
        cache = self.cache
        found: Dict[str, Dict[str, Any]] = {}
        todo: Dict[str, Dict[str, Any]] = {}
        for k, j in zip(keys, jobs):
            if k in found or k in todo:
                continue
            rec = cache.get(k) if cache is not None else None
            if rec is not None:
                found[k] = rec
            else:
                todo[k] = j
        cached_keys = set(found)
        waiting: Dict[str, List[int]] = {}
        for i, k in enumerate(keys):
            waiting.setdefault(k, []).append(i)

        def deliver(k: str, rec: Dict[str, Any], cached: bool) -> None:
            if on_result is not None:
                for i in waiting[k]:
                    on_result(i, PairResult(rec, cached))

        for k in found:
            deliver(k, found[k], True)
        self.last_cached = len(found)
        self.last_run = 0
        if todo:
            for k, rec in self._run(todo):
                if cache is not None:
                    cache.put(k, rec)
                found[k] = rec
                self.last_run += 1
                deliver(k, rec, False)
        return [PairResult(found[k], k in cached_keys) for k in keys]

    def _run(self, todo: Dict[str, Dict[str, Any]]) -> Iterator[Tuple[str, Dict[str, Any]]]:
        """Run the jobs, yielding ``(key, record)`` as each finishes, with a progress bar."""
        n = len(todo)
        workers = min(self.workers or os.cpu_count() or 1, n)
        show = self.progress if self.progress is not None else _stderr_is_tty()
        from tqdm import tqdm

        bar = tqdm(total=n, desc="zigzag", unit="pair", disable=not show, dynamic_ncols=True)
        try:
            if self.executor == "ray":
                for k, rec in self._run_ray(todo):
                    bar.update(1)
                    yield k, rec
                return
            if workers == 1:
                for k, job in todo.items():
                    rec = run_zigzag_pair(job)
                    bar.update(1)
                    yield k, rec
                return
            import multiprocessing as mp

            # fork where there is one: workers start at once and a user's script needs no
            # `if __name__ == "__main__"` guard.  A worker runs only ZigZag (numpy, sympy), never
            # torch, so a parent's threads do not matter to it.  Elsewhere: spawn.
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(run_zigzag_pair, job): k for k, job in todo.items()}
                try:
                    pending = set(futures)
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            rec = f.result()
                            bar.update(1)
                            yield futures[f], rec
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            bar.close()

    def _run_ray(self, todo: Dict[str, Dict[str, Any]]) -> Iterator[Tuple[str, Dict[str, Any]]]:
        """One Ray task per pair (one CPU each), at most ``workers`` in flight; an interruption
        cancels the tasks in flight (the results already yielded are cached by the caller)."""
        try:
            import ray
        except ImportError:
            raise ConfigError(f'cost model \'zigzag\': executor "ray" needs Ray, which is not installed: '
                              f'{RAY_HINT}') from None
        address = self.ray_address or os.environ.get("RAY_ADDRESS") or None
        started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=self.workers or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING)
            started_here = True
        inflight: Dict[Any, str] = {}
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(run_zigzag_pair)
            limit = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            queue = list(todo.items())
            while queue or inflight:
                while queue and len(inflight) < limit:
                    k, job = queue.pop(0)
                    inflight[task.remote(job)] = k
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    yield inflight.pop(ref), ray.get(ref)
        except BaseException:
            for ref in inflight:
                ray.cancel(ref)
            raise
        finally:
            if started_here:
                ray.shutdown()

    def evaluate(self, layers: Sequence[Layer], accelerators: Sequence[Accelerator]) -> Costs:
        """Price every (accelerator, layer) pair with ZigZag.

        Args:
            layers: ``L`` layers.
            accelerators: ``A`` accelerators.

        Returns:
            :class:`~accelerators.cost_model.Costs` with ``[A, L]`` arrays and ``[A]`` area.
        """
        if isinstance(accelerators, Accelerator):
            accelerators = [accelerators]
        layers, accs = list(layers), list(accelerators)
        if not layers:
            raise ConfigError("workload: the layer list is empty")
        if not accs:
            raise ConfigError("accelerators: the list is empty")
        return self.costs(layers, accs, self.pairs([(l, a) for a in accs for l in layers]))

    def costs(self, layers: Sequence[Layer], accs: Sequence[Accelerator], results: Sequence[PairResult]) -> Costs:
        """:class:`Costs` from the results of :meth:`pairs` run on ``[(l, a) for a in accs for l in layers]``."""
        A, L = len(accs), len(layers)
        if len(results) != A * L:
            raise ConfigError(f"zigzag: {len(results)} results for {A} x {L} pairs")
        col = lambda k: np.array([r.record[k] for r in results], dtype=np.float64).reshape(A, L)
        cyc, comp = col("latency_cycles"), col("compute_cycles")
        clock = np.array([a.clock_hz for a in accs], dtype=np.float64)[:, None]
        pes = np.array([a.num_pes for a in accs], dtype=np.float64)[:, None]
        macs = np.array([l.macs for l in layers], dtype=np.float64)[None, :]
        return Costs(latency_s=cyc / clock, energy_j=col("energy_pj") * 1e-12,
                     utilization=np.minimum(1.0, macs / (cyc * pes)), area_mm2=self._area.area_mm2(list(accs)),
                     cycles=cyc, dram_bytes=col("dram_bytes"), memory_bound=cyc > comp)

    def __call__(self, layers: Sequence[Layer], accs: Sequence[Accelerator]) -> Costs:
        return self.evaluate(layers, accs)


def _stderr_is_tty() -> bool:
    import sys
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@COST_SOURCES.register("zigzag")
def _zigzag(mapping_objective: str = "edp", tech: Union[str, Technology] = DEFAULT_TECH, lpf_limit: int = 6,
            workers: Optional[int] = None, cache_dir: Any = None, cache: bool = True,
            progress: Optional[bool] = None, executor: str = "local", ray_address: Optional[str] = None) -> ZigZagBackend:
    """ZigZag 3.9.1 with its LOMA mapping search (``pip install "coexplore[zigzag]"``)."""
    return ZigZagBackend(tech, mapping_objective, lpf_limit, workers, cache_dir, cache, progress, executor, ray_address)
