"""Tasks: what a network is trained for and how its quality is measured.

The search loop never assumes a classifier: it asks the search space for its task (the
space's ``task`` attribute, a name in :data:`TASKS`; ``"classification"`` when absent) and
trains with the task's loss and scores with the task's quality metric.

A task has

* ``name`` and ``metric`` -- the name of its quality metric in results (``"accuracy"`` for
  classification; a detection task reports ``"map"``), a fraction in [0, 1], higher is
  better;
* ``loss(outputs, targets) -> scalar tensor``;
* ``evaluate(model, loader, device) -> {metric: float, "loss": float, "samples": int}``;
* ``chance(num_classes) -> float`` -- the metric of guessing, for flagging runs that
  learned nothing;
* optionally ``batch_correct(outputs, targets) -> float`` -- the training-batch count
  behind the logged training accuracy (tasks without one log none).
"""

from __future__ import annotations

from typing import Any, Dict

import torch.nn.functional as F

from coexplore.common import Registry

TASKS: Registry = Registry("task")


@TASKS.register("classification")
class Classification:
    """Top-1 classification with cross-entropy (labels are class indices or, from data-free
    training, soft ``[B, K]`` probabilities: cross-entropy to a teacher's distribution, whose
    gradient is the KL divergence's, and accuracy against its argmax)."""

    name = "classification"
    metric = "accuracy"

    def loss(self, logits, y):
        return F.cross_entropy(logits, y)

    def evaluate(self, model, loader, device=None) -> Dict[str, Any]:
        from .train import evaluate_network
        return evaluate_network(model, loader, device)

    def chance(self, num_classes: int) -> float:
        return 1.0 / max(1, int(num_classes))

    def batch_correct(self, logits, y) -> float:
        """How many of a training batch are right (for the training-accuracy log)."""
        from .train import hard_labels
        return float((logits.argmax(1) == hard_labels(y)).sum())


@TASKS.register("detection")
def _detection():
    """One-stage detection (YOLOX's loss, COCO mAP): :class:`search_spaces.detection.task.Detection`."""
    from .detection.task import Detection
    return Detection()


def get_task(space) -> Any:
    """The task of a search space (its ``task`` attribute; classification by default)."""
    name = getattr(space, "task", "classification")
    return TASKS.get(name)()
