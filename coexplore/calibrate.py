"""Calibration of HDX's surrogate targets against the exact analytical check.

The surrogate (the DANCE evaluator) prices a design on the accelerator *its generator*
proposes; the verifier prices it exactly on the best accelerator that meets the
constraints.  When the two disagree, steering the surrogate to the bound steers the real
design past it (or short of it).  Once per epoch, after the exact check of the current
argmax design, the calibrator moves each constraint's internal target
(:class:`~coexplore.penalty.ConstraintTargets`):

* ``scale_i = clip(surrogate_i / analytical_i, 1/4, 4)``: the target is the bound as the
  analytical model sees it, expressed in the surrogate's units;
* ``margin_i += step`` (up to 1/2) after every epoch whose analytical check fails --
  whether or not the surrogate agrees: a design that the surrogate says is inside is
  steered by a biased surrogate, and one that the surrogate also sees outside was not pushed
  hard enough by the gradient manipulation alone (at a tight bound the design otherwise
  oscillates across it and may end on the wrong side);
* ``margin_i -= step / 2`` (down to 0) after an epoch whose design is met with an
  analytical slack of more than ``margin_i + 2 step`` (as a fraction of the bound): the
  design sits deeper inside than the margin asks, so the margin relaxes slowly and the
  design can move back towards the bound, where the accuracy is.  A design at its target
  has a slack of about ``margin_i``, so a met design near its target keeps its margin.

It is an explicit step of the loop (:class:`~coexplore.search.CoExplorer` calls it after
logging the epoch's row), never a side effect of building a log row.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import numpy as np

from .penalty import ConstraintTargets


class Calibrator:
    """Per-epoch calibration of constraint targets.

    Args:
        targets: the targets it moves.
        step: margin growth per disagreeing epoch, as a fraction of the bound.
        scale_range: the clip of the scale.
        max_margin: the cap of the margin.
    """

    def __init__(self, targets: ConstraintTargets, step: float = 0.03, scale_range=(0.25, 4.0),
                 max_margin: float = 0.5) -> None:
        self.targets = targets
        self.step = float(step)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.max_margin = float(max_margin)

    def update(self, surrogate: Mapping[str, float], analytical: Mapping[str, float],
               checks: Sequence[Mapping[str, Any]], margins: bool = True) -> Dict[str, float]:
        """Move the targets after an epoch.

        Args:
            surrogate: the surrogate's metrics of the current design, by storage key
                (``latency_s``, ``energy_j``, ``area_mm2``).
            analytical: the exact metrics of the same design on its verified accelerator.
            checks: the verifier's constraint rows (``satisfied`` per constraint).
            margins: whether to move the margins too (not during the warm-up: the
                architecture is not steered then, so a violation says nothing about the
                steering; the scales are still calibrated).

        Returns:
            For logs, per constraint name: ``surrogate_g_<name>`` (the surrogate's signed
            distance to the target it was steered to this epoch), and the ``scale_<name>``
            and ``margin_<name>`` that target used (the values before this update).
        """
        t = self.targets
        logs: Dict[str, float] = {}
        for i, name in enumerate(t.names):
            key = t.key(i)
            sur = float(surrogate[key])
            g_sur = sur - t.target(i)
            logs[f"surrogate_g_{name}"] = g_sur
            logs[f"scale_{name}"] = t.scales[i]
            logs[f"margin_{name}"] = t.margins[i]
            ana = float(analytical[key])
            t.scales[i] = float(np.clip(sur / max(ana, 1e-30), *self.scale_range))
            bound = t.constraints[i].target_bound
            slack = (bound - ana) / bound  # the analytical distance inside the bound, fraction of it
            if not margins:
                continue
            if not checks[i]["satisfied"]:
                t.margins[i] = min(self.max_margin, t.margins[i] + self.step)
            elif slack > t.margins[i] + 2 * self.step:
                t.margins[i] = max(0.0, t.margins[i] - self.step / 2)
        return logs
