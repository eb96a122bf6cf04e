"""The cost-source protocol: one question, one answer shape, whatever answers it.

A *cost source* prices layers on accelerators.  The analytical model
(:class:`~accelerators.cost_model.AnalyticalModel`) is one; external backends (ZigZag) and
measured latency tables are others.  Each has

* ``name`` -- its registry name (``"analytical"``);
* ``fingerprint()`` -- a stable hash of *everything* its numbers depend on (model version,
  technology constants, mapping objective, backend version ...).  Caches, evaluator
  datasets, evaluators and checkpoints key on it, so numbers made by one source are never
  reused for another;
* ``evaluate(layers, accelerators) -> Costs`` -- ``[A, L]`` latency and energy per layer and
  ``[A]`` area (see :class:`~accelerators.cost_model.Costs`);
* ``describe()`` -- a JSON-able provenance record (``name``, ``version``, ``fingerprint`` and
  options) that results store as ``checked_by``.

Sources are registered in :data:`COST_SOURCES` with one constructor signature,
``factory(**options) -> CostSource``; :func:`get_cost_source` builds one by name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Mapping, Protocol, Sequence, runtime_checkable

from coexplore.common import ConfigError, Registry

from .hardware import Accelerator
from .workload import Layer


@runtime_checkable
class CostSource(Protocol):
    """What every cost source provides (see the module docstring)."""

    name: str

    def fingerprint(self) -> str: ...

    def evaluate(self, layers: Sequence[Layer], accelerators: Sequence[Accelerator]) -> Any: ...

    def describe(self) -> Dict[str, Any]: ...


def fingerprint_of(record: Mapping[str, Any]) -> str:
    """A 16-hex-digit hash of a JSON-able record (sorted keys)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


COST_SOURCES: Registry = Registry("cost source")


def get_cost_source(name: str = "analytical", **options: Any) -> CostSource:
    """A registered cost source built with ``options`` (e.g. ``mapping_objective="edp"``)."""
    factory = COST_SOURCES.get(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"cost source {name!r}: bad options {sorted(options)}: {exc}") from None


def list_cost_sources():
    return COST_SOURCES.names()
