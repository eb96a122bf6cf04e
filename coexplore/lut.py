"""Per-block latency lookup tables in the search: building them, pricing with them, steering by them.

ProxylessNAS (Cai et al., ICLR 2019) and FBNet (Wu et al., CVPR 2019) price an architecture
on a device by a lookup table of measured per-block latencies, so that the expected latency
under the architecture distribution ``p`` is ``fixed + sum_b sum_c p[b, c] * t[b, c]`` --
a sum, and differentiable in ``p``.  This module brings that to the search loop:

* :func:`build_latency_table` measures every candidate of every choice block of a space (a
  :class:`~search_spaces.SearchSpace` or a detection space) and its fixed parts with a
  :class:`~accelerators.measured.MeasuredLatency` source;
* :class:`LatencyCostTable` answers like :class:`~coexplore.pricing.CostTable` -- latency per
  candidate over a one-entry accelerator axis, this machine -- so the verifier, the
  feasibility check, the one-shot baselines and the results use it unchanged.  Energy and
  area are unknown for a measured device: they are NaN in every answer, and
  :func:`check_latency_only` refuses (one line, naming the field) an objective or a
  constraint that needs them -- ``objective: latency`` (or ``{weighted: {latency: w}}``) and
  ``latency`` / ``fps`` constraints only;
* :func:`make_cost_table` is the one call the search makes: a measured source gets its table
  (the configured file, else the cache, else measured now and cached), any other source a
  :class:`~coexplore.pricing.CostTable`;
* :class:`LUTCost` is the differentiable hardware cost over such a table; the methods
  ``dance-lut`` and ``hdx-lut`` (:mod:`coexplore.lut_methods`) are DANCE's soft penalty and
  HDX's hard constraints with it in place of the neural evaluator (with one device there is
  no hardware to generate);
* :func:`additivity_check` measures whole networks and reports how far the table's sum is
  from them.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from accelerators.measured import LatencyTable, MeasuredLatency, now_iso
from search_spaces.pricing import CandidateTable

from .common import ConfigError, default_cache_dir
from .objectives import Objective
from .penalty import HardwareCost
from .pricing import CostTable

logger = logging.getLogger(__name__)


# ---- what is measured ------------------------------------------------------------------------------

def _classification_units(space) -> Tuple[List[Tuple[str, nn.Module, tuple]], Dict[Tuple[str, str], Tuple[nn.Module, tuple]]]:
    """The units of a classification :class:`~search_spaces.SearchSpace`: stem, fixed blocks,
    head (1x1 conv, pooling, classifier), and every non-skip candidate of every choice block."""
    from search_spaces.ops import ConvBNAct, build_op, is_skip_op

    z = torch.zeros
    fixed: List[Tuple[str, nn.Module, tuple]] = [
        ("stem", ConvBNAct(space.input_channels, space.stem.channels, space.stem.kernel, space.stem.stride),
         (z(1, space.input_channels, space.resolution, space.resolution),))]
    cands = {}
    for b in space.all_blocks:
        if not b.searched:
            if not is_skip_op(b.candidates[0]):
                fixed.append((b.label, build_op(b.candidates[0], b.C_in, b.C_out, b.stride), (z(1, b.C_in, *b.in_hw),)))
            continue
        for op in b.candidates:
            if not is_skip_op(op):
                cands[(b.label, op)] = (build_op(op, b.C_in, b.C_out, b.stride), (z(1, b.C_in, *b.in_hw),))
    head: List[nn.Module] = []
    c = space.final_channels
    if space.head.channels:
        head.append(ConvBNAct(c, space.head.channels, 1))
        c = space.head.channels
    head += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, space.num_classes)]
    fixed.append(("head", nn.Sequential(*head), (z(1, space.final_channels, *space.final_hw),)))
    for _, m, _ in fixed:
        m.eval()
    for m, _ in cands.values():
        m.eval()
    return fixed, cands


def measurement_units(space):
    """``(fixed, candidates)`` of any space: ``fixed`` lists ``(name, module, args)``, ``candidates``
    maps ``(label, op)`` to ``(module, args)`` (skip ops absent)."""
    units = getattr(space, "task", "classification") == "detection"
    if units:
        from search_spaces.detection.supernet import measurement_units as det_units
        return det_units(space)
    return _classification_units(space)


def build_network(space, sample: Mapping[str, str]) -> nn.Module:
    """A fresh standalone network of one architecture of any space (eval mode)."""
    if getattr(space, "task", "classification") == "detection":
        from search_spaces.detection import build_detector
        return build_detector(space, sample).eval()
    from search_spaces import build_network as build
    return build(space, sample).eval()


def build_latency_table(space, source: MeasuredLatency, progress: bool = False) -> LatencyTable:
    """Measure every unit of ``space`` with ``source`` into a :class:`~accelerators.measured.LatencyTable`.

    Every unit is timed in the source's interleaved rounds (:meth:`MeasuredLatency.measure_all`);
    the table keeps each unit's median over the rounds.
    """
    if not isinstance(source, MeasuredLatency):
        raise ConfigError(f"a latency table is measured by a measured cost source (measured-cpu, measured-cuda), "
                          f"got {getattr(source, 'name', type(source).__name__)!r}")
    t0 = time.perf_counter()
    fixed_units, cand_units = measurement_units(space)
    units = [(m, a) for _, m, a in fixed_units] + list(cand_units.values())
    logger.info("measuring %d blocks of %s on %s, %d rounds", len(units), space.name, source.device.name,
                source.rounds)

    def report(done: int, total: int) -> None:
        if progress:
            logger.info("latency table: round %d / %d done (%.0f s)", done, total, time.perf_counter() - t0)

    stats = source.measure_all(units, progress=report)
    nf = len(fixed_units)
    fixed = {name: st for (name, _, _), st in zip(fixed_units, stats[:nf])}
    entries = dict(zip(cand_units, stats[nf:]))
    return LatencyTable(machine=dict(source.machine), settings=source.settings(),
                        space={"name": space.name, "fingerprint": space.fingerprint()}, fixed=fixed, entries=entries,
                        created=now_iso(), seconds=time.perf_counter() - t0)


# ---- the table the search prices with ----------------------------------------------------------------

class LatencyCostTable(CostTable):
    """A measured per-block latency table answering like :class:`~coexplore.pricing.CostTable`.

    The accelerator axis has one entry, this machine (``accelerators[0]`` is the source's
    :class:`~accelerators.measured.MeasuredDevice`); ``fixed_latency`` is ``[1]``,
    ``cand_latency`` ``[D, 1]`` in the space's encoding order (0 for skip ops); energy and
    area are NaN (unknown for a measured device).

    Args:
        space: the search space the table was measured for.
        table: the measured table (checked: same machine and settings as ``source``, same space).
        source: the measured cost source.
        where: names the table in errors (its file).
    """

    def __init__(self, space, table: LatencyTable, source: MeasuredLatency, where: str = "latency table") -> None:
        table.check_machine(source, where)
        fp = space.fingerprint()
        if table.space.get("fingerprint") != fp:
            raise ConfigError(f"{where}: measured for search space {table.space.get('name')!r} (fingerprint "
                              f"{table.space.get('fingerprint')!r}), not for {space.name!r} ({fp!r}); measure this space")
        fixed_units, cand_units = measurement_units(space)
        missing = [k for k in cand_units if k not in table.entries] + \
                  [n for n, _, _ in fixed_units if n not in table.fixed]
        if missing:
            raise ConfigError(f"{where}: no measurement for {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                              f"measure this space again")
        self.space = space
        self.hardware = None
        self.accelerators = [source.device]
        self.model = source
        self.batch = 1
        self.latency_table = table
        self.where = where
        self.fixed_latency = np.array([table.fixed_s])
        self.cand_latency = np.array([[table.latency(b.label, op)] for b in space.blocks for op in b.candidates])
        self.fixed_energy = np.full(1, np.nan)
        self.cand_energy = np.full_like(self.cand_latency, np.nan)
        # one row per (block, op): the identity map from encodings (no bit choices are measured)
        keys, choices, offsets, slices, pos = [], [], [0], [], 0
        for b in space.blocks:
            for op in b.candidates:
                keys.append((b.label, op))
                choices.append({b.label: op})
            slices.append(((pos, pos + len(b.candidates)), None, None))
            pos += len(b.candidates)
            offsets.append(pos)
        self.candidate_table = CandidateTable((), tuple(keys), tuple(() for _ in keys), tuple(choices), tuple(offsets),
                                              tuple(slices), pos)
        self.block_offsets = self.candidate_table.block_offsets
        self.area = np.full(1, np.nan)
        self.num_layers_priced = len(table.fixed) + len(table.entries)

    def key(self) -> Dict[str, str]:
        return {"search_space": self.space.fingerprint(), "hardware_space": "measured-" + self.model.fingerprint(),
                "cost_source": self.model.fingerprint(), "batch": "1", "table": self.latency_table.content_hash()}

    def least(self, metric: str):
        if metric in ("energy", "area"):
            raise ConfigError(f"least(): {metric} is unknown for a measured latency table ({self.accelerators[0].name})")
        return super().least(metric)


def check_latency_only(objective: Optional[Objective], constraints=None, where: str = "config") -> None:
    """Refuse what a measured latency table cannot price: energy, area and their products.

    Raises:
        ConfigError: ``objective`` needs energy or area (edap, edp, energy, area, or a weighted sum
            with an energy / area weight), or a constraint bounds energy or area.
    """
    if objective is not None:
        needs = [m for m, _ in objective.weights] if objective.name == "weighted" else \
            {"edap": ["energy", "latency", "area"], "edp": ["energy", "latency"]}.get(objective.name, [objective.name])
        bad = [m for m in needs if m != "latency"]
        if bad:
            raise ConfigError(f"{where}: objective {objective.key()!r} needs {bad}, which a measured latency table does "
                              f"not have; allowed objectives: latency, or weighted with latency only")
    for c in (constraints or ()):
        if c.metric not in ("latency", "fps"):
            raise ConfigError(f"{where}: constraint {c.spec!r} bounds {c.metric}, which a measured latency table does "
                              f"not have; allowed constraint metrics: latency, fps")


def default_table_path(space, source: MeasuredLatency, cache_dir=None) -> Path:
    """Where the measured table of ``space`` for ``source`` is cached."""
    return default_cache_dir(cache_dir) / "latency" / f"{space.fingerprint()}-{source.fingerprint()}.json"


def make_cost_table(space, hardware, source, objective: Optional[Objective] = None, constraints=None,
                    cache_dir=None, progress: bool = False) -> CostTable:
    """The cost table a search prices with (see the module docstring).

    Args:
        space: the search space.
        hardware: the hardware space (ignored by a measured source: it prices this machine).
        source: the configured cost source.
        objective, constraints: checked against what a measured table knows.
        cache_dir: where measured tables are cached.
        progress: log the measurement's progress.
    """
    if not isinstance(source, MeasuredLatency):
        return CostTable(space, hardware, model=source)
    check_latency_only(objective, constraints)
    if source.table_path is not None:
        table = LatencyTable.load(source.table_path)
        return LatencyCostTable(space, table, source, where=str(source.table_path))
    path = default_table_path(space, source, cache_dir)
    if path.is_file():
        try:
            return LatencyCostTable(space, LatencyTable.load(path), source, where=str(path))
        except ConfigError as exc:
            logger.warning("cached latency table %s is unusable (%s); measuring again", path, exc)
    table = build_latency_table(space, source, progress=progress)
    try:
        table.save(path)
    except (OSError, ConfigError) as exc:
        logger.warning("could not cache the latency table at %s (%s)", path, exc)
    return LatencyCostTable(space, table, source, where=str(path))


# ---- additivity -------------------------------------------------------------------------------------------

def additivity_check(space, table: LatencyCostTable, samples: Sequence[Mapping[str, str]],
                     remeasure_blocks: bool = True, rounds: Optional[int] = None) -> Dict[str, Any]:
    """Whole-network latency measured against the sum of per-block latencies, for ``samples``.

    The networks are measured as the table's blocks are (BN folded, interleaved rounds,
    medians).  On a shared machine the load drifts between the time a table was measured
    and now, so with ``remeasure_blocks`` the blocks these architectures use are measured
    again *in the same interleaved rounds as the networks*: ``rel_error_fresh`` is then the
    additivity error proper, ``rel_error`` the error of the stored table (additivity plus
    drift), and ``drift`` the stored table's sum against the fresh one.  ``rounds`` (default the
    source's) sets the interleaved rounds of this check.

    Returns:
        ``{"rows": [{"architecture", "measured_s", "measured_spread_s", "table_s", "rel_error", "fresh_s",
        "rel_error_fresh", "drift"}], "mean_abs_rel_error", "max_abs_rel_error",
        "mean_rel_error"}`` (and the same three ``*_fresh`` summaries with ``remeasure_blocks``),
        errors as ``(sum - measured) / measured``.
    """
    x = torch.zeros(1, space.input_channels, space.resolution, space.resolution)
    units = [(build_network(space, s), (x,)) for s in samples]
    keys: List[Any] = []
    if remeasure_blocks:
        fixed_units, cand_units = measurement_units(space)
        used = {(b.label, s[b.label]) for s in samples for b in space.blocks} & set(cand_units)
        keys = [("fixed", n) for n, _, _ in fixed_units] + sorted(used)
        units += [(m, a) for _, m, a in fixed_units] + [cand_units[k] for k in sorted(used)]
    stats = table.model.measure_all(units, rounds=rounds)
    fresh = dict(zip(keys, (st.median_s for st in stats[len(samples):])))
    fresh_fixed = sum(v for k, v in fresh.items() if k[0] == "fixed")
    rows = []
    for s, st in zip(samples, stats):
        predicted = float(table.metrics(space.encode(s))[0][0, 0])
        row = {"architecture": dict(s), "measured_s": st.median_s, "measured_spread_s": st.spread_s, "table_s": predicted,
               "rel_error": (predicted - st.median_s) / st.median_s}
        if remeasure_blocks:
            f = fresh_fixed + sum(fresh.get((b.label, s[b.label]), 0.0) for b in space.blocks)
            row.update(fresh_s=f, rel_error_fresh=(f - st.median_s) / st.median_s, drift=(predicted - f) / f)
        rows.append(row)
    out: Dict[str, Any] = {"rows": rows}
    for suffix in ("", "_fresh") if remeasure_blocks else ("",):
        err = np.array([r["rel_error" + suffix] for r in rows])
        out.update({f"mean_abs_rel_error{suffix}": float(np.abs(err).mean()),
                    f"max_abs_rel_error{suffix}": float(np.abs(err).max()), f"mean_rel_error{suffix}": float(err.mean())})
    return out


# ---- the differentiable cost and the methods that use it -------------------------------------------------

class LUTCost(HardwareCost):
    """The expected latency under the architecture distribution from a one-device cost table.

    ``latency = fixed + enc @ t`` with ``t`` the ``[D]`` per-candidate latencies (ProxylessNAS'
    and FBNet's latency loss); the objective must be latency (or a weighted sum of it) --
    see :func:`check_latency_only`.  Energy and area, where the table has them (an analytical
    table of one accelerator), are priced alike and passed to the objective.

    Args:
        table: a :class:`LatencyCostTable`, or any :class:`~coexplore.pricing.CostTable` with one accelerator.
        objective: the network objective.
    """

    def __init__(self, table: CostTable, objective: Objective) -> None:
        super().__init__()
        if table.num_accelerators != 1:
            raise ConfigError(f"a lookup-table cost prices one device; this table has {table.num_accelerators} "
                              f"accelerators (use a measured cost source, or a hardware space of one accelerator)")
        measured = isinstance(table, LatencyCostTable) or not np.isfinite(table.fixed_energy).all()
        if measured:
            check_latency_only(objective)
        self.objective = objective
        self.measured = measured
        self.metrics = ("latency_s",) if measured else ("latency_s", "energy_j", "area_mm2")
        f = torch.float64
        self.register_buffer("fixed", torch.tensor([table.fixed_latency[0], table.fixed_energy[0]], dtype=f))
        self.register_buffer("cand", torch.as_tensor(np.stack([table.cand_latency[:, 0], table.cand_energy[:, 0]], 1),
                                                     dtype=f))
        self.area = float(table.area[0])

    def raw(self, enc: torch.Tensor) -> Dict[str, torch.Tensor]:
        e = enc.to(self.cand.dtype)
        lat = self.fixed[0] + e @ self.cand[:, 0]
        out = {"latency_s": lat.to(enc.dtype)}
        if not self.measured:
            out["energy_j"] = (self.fixed[1] + e @ self.cand[:, 1]).to(enc.dtype)
            out["area_mm2"] = torch.as_tensor(self.area, dtype=enc.dtype, device=enc.device)
            out["objective"] = self.objective(out["latency_s"], out["energy_j"], out["area_mm2"])
        else:  # check_latency_only made sure the objective reads latency only
            out["objective"] = self.objective(out["latency_s"], math.nan, math.nan)
        return out
