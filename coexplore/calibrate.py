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
  oscillates across it and may end on the wrong side).

The margin never relaxes: measured on the embedded MNIST suite at a tight bound, the
design alternates between two discrete architectures either side of the bound, and a
margin that relaxed after each feasible epoch kept that alternation going to the last
epoch (ending 5 % outside the bound).  A margin grows only as far as violations demand, so
a design that never violates keeps a margin of 0 and lands as close to the bound as the
gradient manipulation takes it.

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
            if margins and not checks[i]["satisfied"]:
                t.margins[i] = min(self.max_margin, t.margins[i] + self.step)
        return logs
