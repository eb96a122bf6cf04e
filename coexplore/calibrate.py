"""Calibration of HDX's surrogate targets against the exact analytical check.

The surrogate (the DANCE evaluator) prices a design on the accelerator *its generator*
proposes; the verifier prices it exactly on the best accelerator that meets the
constraints.  When the two disagree, steering the surrogate to the bound steers the real
design past it (or short of it).  Once per epoch, after the exact check of the current
argmax design, the calibrator moves each constraint's internal target
(:class:`~coexplore.penalty.ConstraintTargets`):

* ``scale_i = clip(surrogate_i / analytical_i, 1/4, 4)``: the target is the bound as the
  analytical model sees it, expressed in the surrogate's units;
* ``margin_i += step`` (up to 1/2) while the analytical check still fails although the
  surrogate says the design is inside: aim further inside the bound.

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
               checks: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
        """Move the targets after an epoch.

        Args:
            surrogate: the surrogate's metrics of the current design, by storage key
                (``latency_s``, ``energy_j``, ``area_mm2``).
            analytical: the exact metrics of the same design on its verified accelerator.
            checks: the verifier's constraint rows (``satisfied`` per constraint).

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
            if not checks[i]["satisfied"] and g_sur <= 0:
                t.margins[i] = min(self.max_margin, t.margins[i] + self.step)
        return logs
