"""Hard constraints on hardware metrics: parsing, the sign rule, and feasibility checks.

HDX (Hong et al., "Enabling Hard Constraints in Differentiable Neural Network and
Accelerator Co-Exploration", DAC 2022, arXiv 2301.09312) searches for designs that meet
a hard target such as 60 fps.  This module holds what a constraint *is*; the gradient
manipulation that enforces it lives in :mod:`coexplore.hdx`.

Text form, as written in configs and on the command line::

    latency <= 16.6ms      energy <= 2mJ      area <= 4mm2      fps >= 60

Units are case-insensitive and spaces are optional: latency ``s ms us ns``, energy
``J mJ uJ nJ pJ``, area ``mm2 mm^2``, fps a bare number (or ``fps``/``Hz``).  Bounds are
stored in SI units: seconds, joules, mm^2 and 1/s.

Direction: latency, energy and area are costs and only take upper bounds (``<=``); a
frame rate only takes a lower bound (``>=``).  A lower bound on a cost (``latency >=
1ms``) is rejected: nothing in a co-exploration ever needs a design to be *slower*, and
HDX only ever steers a metric down.

Sign rule (the same in configs, logs and results): ``g = metric - bound <= 0`` is feasible,
and for ``>=`` constraints ``g = bound - metric``.  ``fps >= F`` is steered as ``latency
<= 1/F`` (see :attr:`Constraint.target_metric` / :attr:`Constraint.target_bound`).

:func:`check_feasible` answers, before a search starts, whether the constraints can be met
at all in a search space x hardware space, exactly, from the analytical
:class:`~coexplore.pricing.CostTable`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence as _SequenceABC
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from .common import CONSTRAINABLE, HARDWARE_METRICS, ConfigError, metric_value

logger = logging.getLogger(__name__)

METRICS = CONSTRAINABLE  # latency, fps, energy, area (see coexplore.common.metrics)
OPERATORS = ("<=", ">=")
#: The one direction each metric may be bounded in.
DIRECTION = {m: HARDWARE_METRICS[m].constraint_op for m in METRICS}
#: Accepted units (lower case) and their factor to SI.  ``""`` is a bare number.
UNITS: Dict[str, Dict[str, float]] = {
    "latency": {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ns": 1e-9},
    "energy": {"j": 1.0, "mj": 1e-3, "uj": 1e-6, "\u00b5j": 1e-6, "\u03bcj": 1e-6, "nj": 1e-9, "pj": 1e-12},
    "area": {"mm2": 1.0, "mm^2": 1.0, "mm\u00b2": 1.0},
    "fps": {"": 1.0, "fps": 1.0, "hz": 1.0, "1/s": 1.0},
}
#: Units shown in error messages (the canonical spelling of each).
_UNIT_NAMES = {"latency": "s, ms, us, ns", "energy": "J, mJ, uJ, nJ, pJ", "area": "mm2, mm^2",
               "fps": "a bare number (or fps, Hz)"}
_DISPLAY_UNITS = {  # (threshold in SI, unit name, factor to SI), largest first: 0.83 ms, not 830 us
    "latency": ((0.1, "s", 1.0), (1e-4, "ms", 1e-3), (1e-7, "us", 1e-6), (0.0, "ns", 1e-9)),
    "energy": ((0.1, "J", 1.0), (1e-4, "mJ", 1e-3), (1e-7, "uJ", 1e-6), (1e-10, "nJ", 1e-9), (0.0, "pJ", 1e-12)),
    "area": ((0.0, "mm^2", 1.0),),
    "fps": ((0.0, "fps", 1.0),),
}
#: Relative slack that absorbs float rounding when a feasibility check compares sums.
_RTOL = 1e-9
_EXAMPLES = "e.g. 'latency <= 16.6ms', 'fps >= 60', 'energy <= 2mJ', 'area <= 4mm2'"

_SPEC_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|=<|=>|==|<|>|=|\u2264|\u2265)\s*(.*?)\s*$")
_VALUE_RE = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*)$")


class InfeasibleConstraintError(ConfigError):
    """No design in the joint space meets the constraints; the message gives the numbers."""


def _allowed() -> str:
    return (f"allowed metrics: {list(METRICS)}; operators: {list(OPERATORS)} (latency/energy/area take '<=', fps "
            f"takes '>='); units: " + "; ".join(f"{m} {_UNIT_NAMES[m]}" for m in METRICS))


def format_quantity(metric: str, value: float, unit: Optional[str] = None, digits: int = 4) -> str:
    """A human text for a metric value in SI units: ``0.00083 -> '0.83 ms'``.

    Args:
        metric: ``latency``, ``energy``, ``area`` or ``fps``.
        value: the value in SI units.
        unit: force a display unit (one of :data:`_DISPLAY_UNITS`), else chosen by size.
        digits: significant digits.
    """
    table = _DISPLAY_UNITS[metric]
    if unit is None:
        unit, factor = next((u, f) for t, u, f in table if abs(value) >= t)
    else:
        factor = next(f for _, u, f in table if u == unit)
    if metric == "fps":
        return f"{value / factor:.{digits}g} fps"
    return f"{value / factor:.{digits}g} {unit}"


def _format_pair(metric: str, a: float, b: float) -> Tuple[str, str]:
    """Two values in one shared unit, with just enough digits to tell them apart."""
    unit = next(u for t, u, _ in _DISPLAY_UNITS[metric] if max(abs(a), abs(b)) >= t)
    for digits in range(4, 11):
        sa, sb = format_quantity(metric, a, unit, digits), format_quantity(metric, b, unit, digits)
        if sa != sb or a == b:
            break
    return sa, sb


@dataclass(frozen=True)
class Constraint:
    """One hard constraint on a hardware metric, e.g. ``latency <= 16.6 ms``.

    Construct with :meth:`parse` from text, or directly (the fields are validated).
    """

    metric: str  # "latency", "fps", "energy" or "area"
    op: str  # "<=" (latency, energy, area) or ">=" (fps)
    bound: float  # SI units: latency s, energy J, area mm^2, fps 1/s; > 0
    spec: str = field(default="", compare=False)  # the original text (canonical when constructed directly)

    def __post_init__(self) -> None:
        where = f"constraint {self.spec!r}" if self.spec else "constraint"
        if self.metric not in METRICS:
            raise ConfigError(f"{where}: unknown metric {self.metric!r}; {_allowed()}")
        if self.op not in OPERATORS:
            raise ConfigError(f"{where}: operator {self.op!r} is not allowed; {_allowed()}")
        if self.op != DIRECTION[self.metric]:
            hint = ("a frame rate is bounded from below: 'fps >= 60'" if self.metric == "fps" else
                    f"{self.metric} is a cost and only takes an upper bound: '{self.metric} <= ...' "
                    "(HDX steers metrics down; a lower bound on a cost is never a design goal)")
            raise ConfigError(f"{where}: '{self.metric} {self.op}' is not allowed; {hint}")
        b = self.bound
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
            raise ConfigError(f"{where}: bound must be a finite number > 0, got {b!r}")
        object.__setattr__(self, "bound", float(b))
        if not self.spec:
            object.__setattr__(self, "spec", str(self))

    # ---- text ------------------------------------------------------------------------
    @staticmethod
    def parse(text: Union[str, "Constraint"]) -> "Constraint":
        """A constraint from text such as ``"latency <= 16.6ms"`` or ``"fps >= 60"``.

        Raises:
            ConfigError: naming the offending text and listing the allowed metrics,
                operators and units.
        """
        if isinstance(text, Constraint):
            return text
        if not isinstance(text, str):
            raise ConfigError(f"constraint {text!r}: expected text such as {_EXAMPLES}")
        m = _SPEC_RE.match(text)
        if not m:
            raise ConfigError(f"constraint {text!r}: expected '<metric> <op> <bound><unit>', {_EXAMPLES}; {_allowed()}")
        metric, op, rest = m.group(1).lower(), m.group(2), m.group(3)
        op = {"\u2264": "<=", "\u2265": ">="}.get(op, op)
        if metric not in METRICS:
            raise ConfigError(f"constraint {text!r}: unknown metric {m.group(1)!r}; {_allowed()}")
        if op not in OPERATORS:
            raise ConfigError(f"constraint {text!r}: operator {op!r} is not allowed; {_allowed()}")
        v = _VALUE_RE.match(rest)
        if not rest or not v:
            raise ConfigError(f"constraint {text!r}: missing or malformed bound {rest!r}; give a number > 0 with a "
                              f"unit ({metric}: {_UNIT_NAMES[metric]}), {_EXAMPLES}")
        number = float(v.group(1))
        unit = re.sub(r"\s+", "", v.group(2)).lower()
        if unit not in UNITS[metric]:
            other = next((k for k, u in UNITS.items() if unit in u and unit), None)
            why = (f"{v.group(2)!r} is a unit of {other}, not of {metric}" if other else
                   ("a unit is required" if not unit else f"unknown unit {v.group(2)!r}"))
            raise ConfigError(f"constraint {text!r}: {why}; {metric} takes {_UNIT_NAMES[metric]}")
        if not number > 0:
            raise ConfigError(f"constraint {text!r}: bound must be > 0, got {v.group(1)}")
        return Constraint(metric, op, number * UNITS[metric][unit], text.strip())

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {format_quantity(self.metric, self.bound, digits=6)}"

    # ---- sign rule -------------------------------------------------------------------
    def g(self, value: Any) -> Any:
        """Signed violation: ``value - bound`` for ``<=``, ``bound - value`` for ``>=``.

        ``g <= 0`` is feasible.  Works on floats, numpy arrays and torch tensors; ``value``
        is in SI units of :attr:`metric`.
        """
        return value - self.bound if self.op == "<=" else self.bound - value

    def normalized_g(self, value: Any) -> Any:
        """``g(value) / bound``: unit-free, ``0.1`` means 10% over the bound."""
        return self.g(value) / self.bound

    def satisfied(self, value: Any, rtol: float = 0.0) -> Any:
        """Whether ``g(value) <= rtol * bound`` (a bool, or a bool array for arrays)."""
        ok = self.g(value) <= rtol * self.bound
        return bool(ok) if np.ndim(ok) == 0 and not hasattr(ok, "requires_grad") else ok

    # ---- what to steer ----------------------------------------------------------------
    @property
    def target_metric(self) -> str:
        """The differentiable metric to steer down: ``latency`` for fps, else :attr:`metric`."""
        return "latency" if self.metric == "fps" else self.metric

    @property
    def target_bound(self) -> float:
        """The bound on :attr:`target_metric` in ``<=`` form (``1/F`` seconds for ``fps >= F``)."""
        return 1.0 / self.bound if self.metric == "fps" else self.bound

    def as_target(self) -> "Constraint":
        """The equivalent ``<=`` constraint on :attr:`target_metric` (``fps >= 60`` ->
        ``latency <= 16.67 ms``); itself for latency, energy and area."""
        if self.metric != "fps":
            return self
        return Constraint("latency", "<=", self.target_bound, self.spec)

    def value_in(self, metrics: Mapping[str, Any]) -> Any:
        """This constraint's metric from a mapping keyed by metric names or storage keys
        (``latency``/``latency_s``, ``energy``/``energy_j``, ``area``/``area_mm2``, ``fps``; SI
        units); fps is derived from latency when absent."""
        try:
            return metric_value(metrics, self.metric)
        except ConfigError:
            raise ConfigError(f"constraint {self.spec!r}: no value for {self.metric!r} among {sorted(metrics)}; "
                              f"expected key {HARDWARE_METRICS[self.metric].key!r}") from None

    # ---- plain form -------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"spec": self.spec, "metric": self.metric, "op": self.op, "bound": self.bound}


class ConstraintSet(_SequenceABC):
    """An ordered, immutable collection of constraints.

    Args:
        constraints: :class:`Constraint` objects or their text forms.
    """

    def __init__(self, constraints: Iterable[Union[str, Constraint]] = ()) -> None:
        if isinstance(constraints, (str, Constraint)):
            constraints = [constraints]
        self._items: Tuple[Constraint, ...] = tuple(Constraint.parse(c) for c in constraints)

    @staticmethod
    def parse(items: Union[None, str, Constraint, Iterable[Union[str, Constraint]], "ConstraintSet"]
              ) -> "ConstraintSet":
        """From a list of strings (as in YAML), one string, ``None`` (no constraints) or a set."""
        if isinstance(items, ConstraintSet):
            return items
        if items is None:
            return ConstraintSet()
        if isinstance(items, Mapping) or not isinstance(items, (str, Constraint, Iterable)):
            raise ConfigError(f"constraints: expected a list of texts such as {_EXAMPLES}, got {items!r}")
        return ConstraintSet(items)

    from_list = parse

    def to_list(self) -> List[str]:
        """The original texts (YAML/JSON-able; :meth:`parse` inverts it)."""
        return [c.spec for c in self._items]

    def __getitem__(self, i):  # type: ignore[override]
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Constraint]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConstraintSet) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"ConstraintSet({self.to_list()!r})"

    def check(self, metrics: Mapping[str, float], rtol: float = 0.0) -> List[Dict[str, Any]]:
        """The status of every constraint for one design.

        Args:
            metrics: SI values keyed as in :meth:`Constraint.value_in`, e.g.
                ``{"latency_s": ..., "energy_j": ..., "area_mm2": ...}``.
            rtol: slack relative to the bound (0: exact).

        Returns:
            One JSON-able row per constraint: ``spec, metric, op, bound, value, g,
            normalized_g, satisfied``.
        """
        rows = []
        for c in self._items:
            value = float(c.value_in(metrics))
            rows.append({"spec": c.spec, "metric": c.metric, "op": c.op, "bound": c.bound, "value": value,
                         "g": float(c.g(value)), "normalized_g": float(c.normalized_g(value)),
                         "satisfied": bool(c.satisfied(value, rtol))})
        return rows

    def all_satisfied(self, metrics: Mapping[str, float], rtol: float = 0.0) -> bool:
        """Whether every constraint holds for one design (true for an empty set)."""
        return all(r["satisfied"] for r in self.check(metrics, rtol))

    def target_bounds(self) -> Dict[str, float]:
        """The tightest ``<=`` bound on each steered metric: ``{"latency": s, ...}``."""
        out: Dict[str, float] = {}
        for c in self._items:
            out[c.target_metric] = min(out.get(c.target_metric, math.inf), c.target_bound)
        return out


    def violation(self, latency_s: Any, energy_j: Any, area_mm2: Any) -> np.ndarray:
        """Total normalised violation ``sum_i max(0, g_i / bound_i)`` (0 where every constraint
        holds), broadcast over the arguments (e.g. ``[n, A]`` over architectures and accelerators)."""
        lat = np.asarray(latency_s, dtype=np.float64)
        vals = {"latency_s": lat, "energy_j": np.asarray(energy_j, dtype=np.float64),
                "area_mm2": np.asarray(area_mm2, dtype=np.float64)}
        out = np.zeros(np.broadcast_shapes(*(v.shape for v in vals.values())))
        for c in self._items:
            out = out + np.maximum(0.0, c.normalized_g(metric_value(vals, c.metric)))
        return out


def constrained_argmin(score: Any, violation: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The one rule for choosing an accelerator (or any design) under hard constraints.

    Along the last axis: the least ``score`` among the entries that meet every constraint
    (``violation <= 0``); where none does, the least ``score`` among the least-violating
    entries.  It is what the final verification, the evaluator's labels, the cost table and
    the baselines all use.

    Args:
        score: ``[..., A]`` objective (smaller is better).
        violation: ``[..., A]`` total normalised violation (:meth:`ConstraintSet.violation`).

    Returns:
        ``(index [...], masked [..., A])``: the chosen position, and ``score`` with every
        entry outside the eligible set (feasible ones, else least-violating ones) set to ``inf``.
    """
    score = np.asarray(score, dtype=np.float64)
    viol = np.broadcast_to(np.asarray(violation, dtype=np.float64), score.shape)
    least = viol.min(axis=-1, keepdims=True)
    eligible = viol <= np.maximum(least, 0.0)
    masked = np.where(eligible, score, np.inf)
    idx = np.argmin(masked, axis=-1)
    # a row whose eligible scores are all inf/nan still gets an eligible index
    bad = ~np.isfinite(np.take_along_axis(masked, idx[..., None], -1)[..., 0])
    if np.any(bad):
        idx = np.where(bad, np.argmax(eligible, axis=-1), idx)
    return idx, masked


# ---- feasibility ----------------------------------------------------------------------
_LEAST_PHRASE = {
    "latency": "the fastest design {where} takes {v}",
    "fps": "the fastest design {where} reaches {v}",
    "energy": "the most energy-efficient design {where} uses {v}",
    "area": "the smallest accelerator in this hardware space has {v}",
}


def _unreachable(c: Constraint, value: float, where: str = "in this space", extra: str = "") -> str:
    sb, sv = _format_pair(c.metric, c.bound, value)
    return (f"{c.metric} {c.op} {sb} is unreachable{extra}: "
            + _LEAST_PHRASE[c.metric].format(where=where, v=sv))


def _design(table, arch: Dict[str, str], a: int) -> Dict[str, Any]:
    """A witness design priced exactly by the table (not by the running sums)."""
    lat, en, area = table.metrics(table.space.encode(arch), np.array([a]))
    return {"architecture": arch, "accelerator": int(a), "accelerator_desc": table.accelerators[a].short(),
            "latency_s": float(lat[0]), "energy_j": float(en[0]), "area_mm2": float(area[0]),
            "fps": float(1.0 / lat[0])}


def _min_energy_within_latency(table, a: int, lat_limit: float, incumbent: float, max_front: int
                               ) -> Tuple[Optional[float], Optional[np.ndarray], bool]:
    """Exact least energy on accelerator ``a`` over architectures with latency <= limit.

    A dynamic programme over blocks that keeps the Pareto front of partial (latency,
    energy) sums, pruned by the latency limit (with the least latency the remaining
    blocks can add) and by the incumbent energy.

    Returns:
        ``(energy, choices [B], complete)``: energy/choices are ``None`` when nothing on
        ``a`` beats the incumbent; ``complete`` is false when the front outgrew
        ``max_front`` and the search was abandoned.
    """
    offs = table.block_offsets
    blocks = list(zip(offs[:-1], offs[1:]))
    cl = [table.cand_latency[lo:hi, a] for lo, hi in blocks]
    ce = [table.cand_energy[lo:hi, a] for lo, hi in blocks]
    rem_l = np.concatenate([np.cumsum([c.min() for c in cl][::-1])[::-1], [0.0]])
    rem_e = np.concatenate([np.cumsum([c.min() for c in ce][::-1])[::-1], [0.0]])
    L = np.array([table.fixed_latency[a]])
    E = np.array([table.fixed_energy[a]])
    ch = np.zeros((1, 0), dtype=np.int64)
    for b in range(len(blocks)):
        k = len(cl[b])
        nL = (L[:, None] + cl[b][None, :]).ravel()
        nE = (E[:, None] + ce[b][None, :]).ravel()
        parent = np.repeat(np.arange(len(L)), k)
        opt = np.tile(np.arange(k), len(L))
        keep = (nL + rem_l[b + 1] <= lat_limit) & (nE + rem_e[b + 1] < incumbent)
        nL, nE, parent, opt = nL[keep], nE[keep], parent[keep], opt[keep]
        if nL.size == 0:
            return None, None, True
        order = np.lexsort((nE, nL))
        nL, nE, parent, opt = nL[order], nE[order], parent[order], opt[order]
        prev_min = np.concatenate([[np.inf], np.minimum.accumulate(nE)[:-1]])
        front = nE < prev_min
        L, E = nL[front], nE[front]
        ch = np.hstack([ch[parent[front]], opt[front][:, None]])
        if len(L) > max_front:
            return None, None, False
    i = int(np.argmin(E))
    return float(E[i]), ch[i], True


def check_feasible(constraints: Union[ConstraintSet, Iterable[Union[str, Constraint]]], table,
                   max_front: int = 20000) -> Dict[str, Any]:
    """Check, before searching, that the constraints can be met in the joint space.

    Each constraint alone is checked exactly with ``table.least``.  Jointly: area depends
    only on the accelerator, so area bounds filter the accelerators exactly; on the
    remaining ones least latency and least energy are exact too (costs add over blocks).
    Latency and energy *together* is a 2-D knapsack: the per-accelerator
    latency-minimising and energy-minimising designs are tried as witnesses first, then
    an exact Pareto-front dynamic programme (:func:`_min_energy_within_latency`) decides;
    if its front outgrows ``max_front`` the answer is "not proven" (logged as a warning),
    never an error.

    Args:
        constraints: a :class:`ConstraintSet` or a list of texts/constraints.
        table: a :class:`~coexplore.pricing.CostTable` of the search and hardware spaces.
        max_front: the largest Pareto front the joint latency/energy check may keep.

    Returns:
        A JSON-able report: ``least`` (each constrained metric alone over the joint
        space: ``{metric: {value, architecture, accelerator}}``), ``accelerators_within_area``
        (how many accelerators meet the area bounds), ``witness`` (a design meeting every
        constraint, priced exactly: architecture, accelerator index, latency_s, energy_j,
        area_mm2, fps; ``None`` when not found), ``proven`` (joint feasibility shown by the
        witness), ``method`` and ``message``.

    Raises:
        InfeasibleConstraintError: a constraint, or a combination, is unreachable; the
            message gives the bound and the least reachable value.
    """
    cs = ConstraintSet.parse(constraints)
    report: Dict[str, Any] = {"constraints": cs.to_list(), "least": {}, "accelerators_within_area": None,
                              "witness": None, "proven": True, "method": "none", "message": "no constraints"}
    if not cs:
        return report
    errors = []
    for c in cs:
        value, arch, acc = table.least(c.metric)
        report["least"][c.metric] = {"value": float(value), "architecture": arch, "accelerator": int(acc)}
        if not c.satisfied(value, rtol=_RTOL):
            errors.append(_unreachable(c, value))
    if errors:
        raise InfeasibleConstraintError("; ".join(errors))

    bounds = cs.target_bounds()
    tight = {m: min((c for c in cs if c.target_metric == m), key=lambda c: c.target_bound) for m in bounds}
    area_b = bounds.get("area", math.inf)
    # without an area bound every accelerator qualifies (also one of unknown, NaN, area: a measured device)
    accs = (np.flatnonzero(table.area <= area_b * (1 + _RTOL)) if "area" in bounds
            else np.arange(table.num_accelerators))
    report["accelerators_within_area"] = int(len(accs))
    within = (f"on an accelerator of at most {format_quantity('area', area_b)}" if "area" in bounds
              else "in this space")
    extra = f" together with area <= {format_quantity('area', area_b)}" if "area" in bounds else ""
    lat_b, en_b = bounds.get("latency", math.inf), bounds.get("energy", math.inf)

    lat_tot, lat_ch = table.cheapest_per_accelerator("latency", accs)
    en_tot, en_ch = table.cheapest_per_accelerator("energy", accs)
    # Each of latency/energy alone on the area-feasible accelerators: exact.
    for m, tot in (("latency", lat_tot), ("energy", en_tot)):
        if m in bounds and tot.min() > bounds[m] * (1 + _RTOL):
            c = tight[m]
            v = float(tot.min()) if c.metric != "fps" else 1.0 / float(tot.min())
            errors.append(_unreachable(c, v, within, extra))
    if errors:
        raise InfeasibleConstraintError("; ".join(errors))

    def ok(d: Dict[str, Any]) -> bool:
        return d["latency_s"] <= lat_b * (1 + _RTOL) and d["energy_j"] <= en_b * (1 + _RTOL)

    if not ("latency" in bounds and "energy" in bounds):
        tot, ch = (en_tot, en_ch) if "energy" in bounds and "latency" not in bounds else (lat_tot, lat_ch)
        j = int(np.argmin(tot))
        report.update(witness=_design(table, table.architecture(ch[:, j]), int(accs[j])), method="exact",
                      message="each constraint is met by the witness design")
        return report

    # Latency and energy together.  Cheap witnesses first: the least-latency and the
    # least-energy design of every area-feasible accelerator.
    for tot_ch in (lat_ch, en_ch):
        lat_w = table.fixed_latency[accs] + sum(
            table.cand_latency[lo + tot_ch[b], accs] for b, lo in enumerate(table.block_offsets[:-1]))
        en_w = table.fixed_energy[accs] + sum(
            table.cand_energy[lo + tot_ch[b], accs] for b, lo in enumerate(table.block_offsets[:-1]))
        good = np.flatnonzero((lat_w <= lat_b * (1 + _RTOL)) & (en_w <= en_b * (1 + _RTOL)))
        if good.size:
            j = int(good[np.argmin(en_w[good] / en_b + lat_w[good] / lat_b)])
            d = _design(table, table.architecture(tot_ch[:, j]), int(accs[j]))
            if ok(d):
                report.update(witness=d, method="witness",
                              message="a per-accelerator extreme design meets all constraints")
                return report

    # Exact: least energy among designs within the latency bound, accelerator by accelerator.
    best_e, best = math.inf, None
    complete = True
    cand = [j for j in np.argsort(en_tot) if lat_tot[j] <= lat_b * (1 + _RTOL)]
    for j in cand:
        if en_tot[j] >= best_e:
            continue
        e, choice, done = _min_energy_within_latency(table, int(accs[j]), lat_b * (1 + _RTOL), best_e, max_front)
        complete &= done
        if e is not None and e < best_e:
            best_e, best = e, (choice, int(accs[j]))
            if best_e <= en_b * (1 + _RTOL):
                break  # a witness is all feasibility needs
    if best is not None and best_e <= en_b * (1 + _RTOL):
        d = _design(table, table.architecture(best[0]), best[1])
        report.update(witness=d, method="pareto",
                      message="exact search of the latency/energy trade-off found a design meeting all constraints")
        return report
    if complete:
        sl = format_quantity("latency", lat_b)
        sb, sv = _format_pair("energy", en_b, best_e)
        raise InfeasibleConstraintError(
            f"latency <= {sl} and energy <= {sb} cannot be met together: the most energy-efficient "
            f"design {within} with latency <= {sl} uses {sv} (constraints {cs.to_list()})")
    msg = (f"joint feasibility of {cs.to_list()} is not proven: no witness found and the exact latency/energy "
           f"search gave up (Pareto front > {max_front}); each constraint alone is reachable")
    logger.warning(msg)
    report.update(proven=False, method="unproven", message=msg)
    return report
