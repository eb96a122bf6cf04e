"""The hardware-aware loss as modules: differentiable hardware costs and the penalty.

NNI's ``ProfilerPenalty(profiler, baseline, scale)`` is the model.  A *hardware cost* maps
the architecture encoding the search feeds it (``[D]``, soft probabilities or a
straight-through one-hot) to a scalar ``cost`` normalised by a reference, plus the raw
metrics it predicts:

* :class:`EvaluatorCost` -- DANCE's frozen neural evaluator (Choi et al., DAC 2021):
  latency, energy and area of the best accelerator it generates, combined by the
  network objective (EDAP, ...);
* :class:`MacsCost` -- the FLOPs proxy of the NAS->HW baseline: the expected number of
  multiply-accumulates, exact per block.

:class:`HardwarePenalty` forms DANCE's loss ``task loss + lambda * cost``.  HDX's hard
targets (Hong et al., DAC 2022) are a separate object, :class:`ConstraintTargets`: the
internal target of each constraint on the surrogate's metric, which the calibrator
(:mod:`coexplore.calibrate`) steers and the gradient manipulation (:mod:`coexplore.hdx`)
enforces.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from .common import ConfigError, HARDWARE_METRICS
from .constraints import ConstraintSet
from .objectives import Objective


class HardwareCost(nn.Module):
    """A differentiable hardware cost of an architecture encoding.

    Subclasses set :attr:`metrics` (the storage keys of what they predict, e.g.
    ``("latency_s", "energy_j", "area_mm2")``) and implement :meth:`raw`.
    ``forward(enc)`` returns ``raw(enc)`` plus ``cost`` = the raw objective divided by
    :attr:`reference` (the cost of the uniform architecture distribution), so that
    ``lambda`` is unit-free.
    """

    metrics: Tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.reference = 1.0

    def raw(self, enc: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{"objective": scalar, <metric key>: scalar, ...}`` for an encoding ``[D]``."""
        raise NotImplementedError

    def set_reference(self, uniform_encoding: torch.Tensor) -> float:
        """Normalise by the cost of ``uniform_encoding`` (``[D]``); returns the reference."""
        with torch.no_grad():
            ref = float(self.raw(uniform_encoding)["objective"])
        if not (ref > 0 and ref < float("inf")):
            raise ConfigError(f"hardware cost: the reference cost of the uniform architecture is {ref!r}; "
                              "it must be a finite number > 0")
        self.reference = ref
        return ref

    def forward(self, enc: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.raw(enc)
        out["cost"] = out["objective"] / self.reference
        return out


class EvaluatorCost(HardwareCost):
    """DANCE's cost: the frozen evaluator's latency, energy and area under the network objective.

    Args:
        evaluator: a trained :class:`~coexplore.evaluator.Evaluator` (frozen here).
        objective: the network objective combining the metrics.
        hw_mode: straight-through relaxation of the generated hardware (``argmax``/``gumbel``).
    """

    metrics = ("latency_s", "energy_j", "area_mm2")

    def __init__(self, evaluator: nn.Module, objective: Objective, hw_mode: str = "argmax") -> None:
        super().__init__()
        self.evaluator = evaluator
        for p in self.evaluator.parameters():
            p.requires_grad_(False)
        self.objective = objective
        self.hw_mode = hw_mode

    def raw(self, enc: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = dict(self.evaluator(enc, mode=self.hw_mode))
        out["objective"] = self.objective(out["latency_s"], out["energy_j"], out["area_mm2"])
        return out


class ExactTableCost(HardwareCost):
    """The exact cost table as a differentiable cost: no neural surrogate, no training.

    DANCE needed a neural evaluator because Timeloop is not differentiable, but the
    analytical costs add up over layers, so the cost table prices any architecture
    distribution exactly, on every accelerator, as ``fixed + enc @ table``
    (:class:`~coexplore.pricing.CostTable`).  The hardware choice is the verifier's own rule
    (:func:`~coexplore.constraints.constrained_argmin`: the best accelerator for the
    objective among those meeting the constraints, else the least violating) taken on the
    detached values, with straight-through gradients: the forward pass reports the chosen
    accelerator's exact latency, energy and area, the backward pass differentiates them in
    ``enc``.  So what the search steers is exactly what the final check measures.

    Args:
        table: the cost table of the search space x hardware space.
        objective: the network objective.
        constraints: the hard constraints the accelerator choice honours.
    """

    metrics = ("latency_s", "energy_j", "area_mm2")

    def __init__(self, table, objective: Objective, constraints: ConstraintSet) -> None:
        super().__init__()
        self.objective = objective
        self.constraints = constraints
        self.accelerators = table.accelerators
        f32 = torch.float32
        self.register_buffer("fixed_latency", torch.as_tensor(table.fixed_latency, dtype=torch.float64).to(f32))
        self.register_buffer("fixed_energy", torch.as_tensor(table.fixed_energy, dtype=torch.float64).to(f32))
        self.register_buffer("cand_latency", torch.as_tensor(table.cand_latency, dtype=torch.float64).to(f32))
        self.register_buffer("cand_energy", torch.as_tensor(table.cand_energy, dtype=torch.float64).to(f32))
        self.register_buffer("area", torch.as_tensor(table.area, dtype=torch.float64).to(f32))
        self.last_choice = -1  # index of the accelerator the last call chose (for logs)
        self._rows = table.candidate_table.weights  # encoding -> per-(op, bits) rows; identity without bits

    def raw(self, enc: torch.Tensor) -> Dict[str, torch.Tensor]:
        from .constraints import constrained_argmin
        rows = self._rows(enc)
        lat = self.fixed_latency + rows @ self.cand_latency  # [A]
        en = self.fixed_energy + rows @ self.cand_energy
        area = self.area
        with torch.no_grad():
            l64, e64, a64 = (t.detach().double().cpu().numpy() for t in (lat, en, area))
            score = self.objective(l64, e64, a64)
            idx, _ = constrained_argmin(score, self.constraints.violation(l64, e64, a64))
        a = int(idx)
        self.last_choice = a
        out = {"latency_s": lat[a], "energy_j": en[a], "area_mm2": area[a]}
        out["objective"] = self.objective(out["latency_s"], out["energy_j"], out["area_mm2"])
        return out


class MacsCost(HardwareCost):
    """NAS->HW's FLOPs proxy: expected multiply-accumulates ``fixed + enc . per_candidate``.

    Args:
        fixed_macs: MACs of the layers every architecture runs.
        candidate_macs: ``[D]`` MACs each (block, candidate) adds, in encoding order.
    """

    metrics = ("macs",)

    def __init__(self, fixed_macs: float, candidate_macs: Sequence[float], rows=None) -> None:
        super().__init__()
        self.fixed_macs = float(fixed_macs)
        self._rows = rows  # encoding -> per-(op, bits) rows (CandidateTable.weights); None: the identity
        self.register_buffer("candidate_macs", torch.as_tensor(list(candidate_macs), dtype=torch.float32))

    @staticmethod
    def for_space(space) -> "MacsCost":
        from search_spaces.pricing import candidate_layer_table
        cl = candidate_layer_table(space)
        return MacsCost(sum(l.macs for l in cl.fixed), [sum(l.macs for l in c) for c in cl.candidates], cl.weights)

    def raw(self, enc: torch.Tensor) -> Dict[str, torch.Tensor]:
        rows = self._rows(enc) if self._rows is not None else enc
        macs = self.fixed_macs + rows @ self.candidate_macs.to(enc.dtype)
        return {"objective": macs, "macs": macs}


class HardwarePenalty(nn.Module):
    """``loss = task_loss + lam * cost(enc)["cost"]``: DANCE's hardware-aware loss.

    Args:
        cost: the differentiable hardware cost.
        lam: the weight of the normalised cost (>= 0).
    """

    def __init__(self, cost: HardwareCost, lam: float) -> None:
        super().__init__()
        if not (isinstance(lam, (int, float)) and lam >= 0 and lam < float("inf")):
            raise ConfigError(f"penalty: lambda must be a finite number >= 0, got {lam!r}")
        self.cost = cost
        self.lam = float(lam)

    def forward(self, task_loss: torch.Tensor, enc: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Returns ``(loss, cost outputs)``; ``enc`` is ``[D]``."""
        out = self.cost(enc)
        return task_loss + self.lam * out["cost"], out


class ConstraintTargets:
    """HDX's internal target of each constraint on the surrogate's metric.

    Constraint ``i`` bounds :attr:`~coexplore.constraints.Constraint.target_metric`
    (``fps >= 60`` bounds latency by 1/60 s).  The surrogate is steered towards
    ``target_i = bound_i * scale_i * (1 - margin_i)``: ``scale_i`` corrects the surrogate's
    bias as the analytical check measures it, ``margin_i`` is a safety margin that grows
    while the check still fails (both set by :class:`~coexplore.calibrate.Calibrator`).

    Args:
        constraints: the hard constraints.
    """

    def __init__(self, constraints: ConstraintSet) -> None:
        self.constraints = constraints
        n = len(constraints)
        self.scales: List[float] = [1.0] * n
        self.margins: List[float] = [0.0] * n
        metrics = [c.metric for c in constraints]
        #: one unique name per constraint for logs (``latency``, or ``latency0``, ``latency1``)
        self.names = [m if metrics.count(m) == 1 else f"{m}{i}" for i, m in enumerate(metrics)]

    def __len__(self) -> int:
        return len(self.constraints)

    def key(self, i: int) -> str:
        """The storage key of constraint ``i``'s steered metric (``latency_s`` ...)."""
        return HARDWARE_METRICS[self.constraints[i].target_metric].key

    def target(self, i: int) -> float:
        c = self.constraints[i]
        return c.target_bound * self.scales[i] * (1.0 - self.margins[i])

    def terms(self, out: Dict[str, torch.Tensor]) -> List[Tuple[torch.Tensor, float]]:
        """Per constraint: the surrogate's value of the steered metric and its internal target."""
        missing = [self.key(i) for i in range(len(self)) if self.key(i) not in out]
        if missing:
            raise ConfigError(f"HDX: the hardware cost does not predict {sorted(set(missing))}; constraints need a "
                              "cost that predicts latency, energy and area (the DANCE evaluator)")
        return [(out[self.key(i)], self.target(i)) for i in range(len(self))]

    def state_dict(self) -> Dict[str, Any]:
        return {"scales": [float(x) for x in self.scales], "margins": [float(x) for x in self.margins]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict) or sorted(state) != ["margins", "scales"] or \
                len(state["scales"]) != len(self) or len(state["margins"]) != len(self):
            raise ConfigError(f"constraint targets: state does not match {len(self)} constraint(s)")
        self.scales = [float(x) for x in state["scales"]]
        self.margins = [float(x) for x in state["margins"]]
