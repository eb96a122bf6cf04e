"""One vocabulary for the metrics of a design, and their units.

Every part of coexplore names metrics the same way: constraints (``latency <= 2ms``), the
network objectives (``edap``), the Pareto tools, the cost model's :class:`~accelerators.Costs`,
``result.json`` and the command line.

* ``name`` is what users write: ``latency``, ``fps``, ``energy``, ``area``, ``edp``, ``edap``,
  and the task metrics ``accuracy`` and ``error``.
* ``key`` is where the value is stored, with its SI unit in the name: ``latency_s``,
  ``energy_j``, ``area_mm2`` (``fps``, ``edp``, ``edap``, ``accuracy``, ``error`` carry no
  suffix).  Values are always stored in SI units (seconds, joules, mm^2, 1/s) or fractions.
* ``display_*`` is how tables and plots show them (latency in ms, energy in mJ, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ConfigError


@dataclass(frozen=True)
class Metric:
    """How one metric is named, stored, optimised and displayed."""

    name: str  # what users write, e.g. "latency"
    key: str  # storage key with the SI unit in it, e.g. "latency_s"
    unit: str  # SI unit of the stored value
    minimize: bool  # True when smaller is better
    display_scale: float  # display value = stored value x display_scale
    display_unit: str  # unit of the display value
    label: str  # axis label without the unit
    constraint_op: Optional[str] = None  # the one direction a hard constraint may take ("<=" / ">="); None: none

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.display_unit})" if self.display_unit else self.label


#: The hardware metrics of a design (network on accelerator).
HARDWARE_METRICS: Dict[str, Metric] = {
    "latency": Metric("latency", "latency_s", "s", True, 1e3, "ms", "latency", "<="),
    "fps": Metric("fps", "fps", "1/s", False, 1.0, "fps", "throughput", ">="),
    "energy": Metric("energy", "energy_j", "J", True, 1e3, "mJ", "energy", "<="),
    "area": Metric("area", "area_mm2", "mm^2", True, 1.0, "mm^2", "area", "<="),
    "edp": Metric("edp", "edp", "J*s", True, 1.0, "J·s", "EDP"),
    "edap": Metric("edap", "edap", "J*s*mm^2", True, 1.0, "J·s·mm^2", "EDAP"),
}
#: Task metrics of a design (fractions in [0, 1]).
TASK_METRICS: Dict[str, Metric] = {
    "accuracy": Metric("accuracy", "accuracy", "", False, 100.0, "%", "accuracy"),
    "error": Metric("error", "error", "", True, 100.0, "%", "error"),
}
METRICS: Dict[str, Metric] = {**HARDWARE_METRICS, **TASK_METRICS}
#: The metrics a hard constraint may bound (with the direction each one takes).
CONSTRAINABLE: Tuple[str, ...] = tuple(n for n, m in HARDWARE_METRICS.items() if m.constraint_op)
#: The per-layer additive metrics a cost source prices, and the accelerator-only one.
ADDITIVE: Tuple[str, ...] = ("latency", "energy")


def get_metric(name: str, among: Mapping[str, Metric] = METRICS) -> Metric:
    """The :class:`Metric` called ``name`` (or stored as ``name``); unknown names list the known ones."""
    if name in among:
        return among[name]
    for m in among.values():
        if m.key == name:
            return m
    raise ConfigError(f"unknown metric {name!r}; known metrics: {list(among)}")


def hardware_metrics(latency_s: Any, energy_j: Any, area_mm2: Any) -> Dict[str, Any]:
    """All six hardware metrics, keyed by storage key, from latency, energy and area.

    Works on floats, numpy arrays and torch tensors (broadcasting).
    """
    return {"latency_s": latency_s, "fps": 1.0 / latency_s, "energy_j": energy_j, "area_mm2": area_mm2,
            "edp": energy_j * latency_s, "edap": energy_j * latency_s * area_mm2}


def metric_value(values: Mapping[str, Any], name: str) -> Any:
    """The value of metric ``name`` from a mapping keyed by names or storage keys.

    ``fps``, ``edp``, ``edap``, ``error`` and ``accuracy`` are derived when absent but
    derivable (``fps = 1 / latency``, ...).
    """
    m = get_metric(name)
    for k in (m.key, m.name):
        if k in values:
            return values[k]

    def get(n: str) -> Any:
        return metric_value(values, n)

    try:
        if m.name == "fps":
            return 1.0 / get("latency")
        if m.name == "edp":
            return get("energy") * get("latency")
        if m.name == "edap":
            return get("energy") * get("latency") * get("area")
        if m.name == "error":
            return 1.0 - get("accuracy")
        if m.name == "accuracy":
            return 1.0 - get("error")
    except ConfigError:
        pass
    raise ConfigError(f"no value for metric {name!r} among {sorted(values)}; expected key {m.key!r}")
