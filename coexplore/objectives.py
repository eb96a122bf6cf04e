"""Hardware objectives: how (latency, energy, area) become one cost to minimise.

DANCE (Choi et al., DAC 2021) uses EDAP, energy x delay x area, by default and shows
latency- and energy-oriented variants; weighted sums of the normalised metrics are also
common.  An objective works on numpy arrays and on torch tensors alike, so the same object
labels the evaluator's training data and forms the differentiable search loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple, Union

from .common import HARDWARE_METRICS, ConfigError

#: The base metrics an objective combines (names of :mod:`coexplore.common.metrics`).
METRICS = ("latency", "energy", "area")
#: Product objectives: a metric of the shared vocabulary and the base metrics it multiplies.
PRODUCTS: Dict[str, Tuple[str, ...]] = {
    "edap": ("energy", "latency", "area"),
    "edp": ("energy", "latency"),
    "latency": ("latency",),
    "energy": ("energy",),
    "area": ("area",),
}
assert set(PRODUCTS) <= set(HARDWARE_METRICS)

#: Scales that make the weighted sum unit-free: 1 ms, 1 mJ, 1 mm^2 (the display units of the vocabulary).
UNITS = {m: 1.0 / HARDWARE_METRICS[m].display_scale for m in METRICS}


@dataclass(frozen=True)
class Objective:
    """A hardware cost: a product of metrics (``edap`` ...) or a weighted sum.

    Args:
        name: one of ``edap``, ``edp``, ``latency``, ``energy``, ``area`` or ``weighted``.
        weights: for ``weighted`` only: ``{metric: weight}``; each metric is divided by its
            unit (1 ms, 1 mJ, 1 mm^2) before weighting.
    """

    name: str = "edap"
    weights: Tuple[Tuple[str, float], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.name not in PRODUCTS and self.name != "weighted":
            raise ConfigError(f"objective {self.name!r} is unknown; allowed values: {sorted(PRODUCTS) + ['weighted']}")
        if self.name == "weighted":
            if not self.weights:
                raise ConfigError("objective 'weighted' needs weights, e.g. {latency: 1.0, energy: 0.5}")
            for k, w in self.weights:
                if k not in METRICS:
                    raise ConfigError(f"objective weights: unknown metric {k!r}; allowed: {list(METRICS)}")
                if isinstance(w, bool) or not (isinstance(w, (int, float)) and 0 < w < float("inf")):
                    raise ConfigError(f"objective weights: weight of {k} must be a finite number > 0, got {w!r}")
        elif self.weights:
            raise ConfigError(f"objective {self.name!r} takes no weights (only 'weighted' does)")

    @staticmethod
    def parse(spec: Union[str, Mapping[str, Any], "Objective"]) -> "Objective":
        """From ``"edap"``, ``{"weighted": {"latency": 1, "energy": 0.5}}`` or an Objective."""
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, str):
            return Objective(spec.lower())
        if isinstance(spec, Mapping) and len(spec) == 1 and "weighted" in spec:
            w = spec["weighted"]
            if not isinstance(w, Mapping):
                raise ConfigError("objective 'weighted' needs a mapping of metric -> weight")
            items = []
            for k, v in w.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"objective weights: weight of {k} must be a finite number > 0, got {v!r}")
                items.append((str(k), float(v)))
            return Objective("weighted", tuple(sorted(items)))
        raise ConfigError(f"objective {spec!r}: give a name ({sorted(PRODUCTS)}) or {{weighted: {{metric: weight}}}}")

    def to_spec(self) -> Union[str, Dict[str, Dict[str, float]]]:
        """The inverse of :meth:`parse` (JSON/YAML-able)."""
        return self.name if self.name != "weighted" else {"weighted": dict(self.weights)}

    def key(self) -> str:
        """A stable text form for cache keys and file names."""
        if self.name != "weighted":
            return self.name
        return "weighted-" + "-".join(f"{k}{w:g}" for k, w in self.weights)

    def __call__(self, latency_s: Any, energy_j: Any, area_mm2: Any) -> Any:
        """The cost; arguments broadcast (numpy arrays or torch tensors)."""
        vals = {"latency": latency_s, "energy": energy_j, "area": area_mm2}
        if self.name == "weighted":
            out = 0.0
            for k, w in self.weights:
                out = out + w * vals[k] / UNITS[k]
            return out
        out = 1.0
        for k in PRODUCTS[self.name]:
            out = out * vals[k]
        return out

    def log(self, log_latency: Any, log_energy: Any, log_area: Any) -> Any:
        """The log of a product objective from logs of the metrics (numerically safer)."""
        if self.name == "weighted":
            raise ConfigError("log() is defined for product objectives only")
        vals = {"latency": log_latency, "energy": log_energy, "area": log_area}
        out = 0.0
        for k in PRODUCTS[self.name]:
            out = out + vals[k]
        return out
