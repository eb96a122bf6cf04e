"""Quantisation-aware training on the real training split: the upper bound of the comparison.

Not data-free: the "source" draws batches of real, augmented training images with their true
labels, and the student is trained with the same loop and loss (cross-entropy on the labels
plus KL distillation from the teacher) as the data-free methods, with the same budget.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F

from ..common import ConfigError
from .base import DataFreeMethod, register_method


@register_method("real-qat")
class RealQAT(DataFreeMethod):
    """Real-data QAT (see the module docstring); needs :meth:`attach_data` before sampling."""

    needs_bn = False
    trains_generator = False
    data_free = False

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        self.__dict__["split"] = None

    def attach_data(self, data) -> None:
        """Use ``data.train`` (a :class:`~search_spaces.data.ArrayLoader`) as the source."""
        self.__dict__["split"] = data.train

    def draw(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        if self.split is None:
            raise ConfigError("method real-qat needs the real training data (give --data)")
        idx = torch.randint(0, self.split.num_samples, (n,), generator=generator)
        y = self.split.labels[idx]
        return y, F.one_hot(y, self.num_classes).float(), {"index": idx}

    def generate(self, labels, targets, extra: Mapping[str, Any], generator) -> torch.Tensor:
        loader = self.split
        return loader.augment(loader.images[extra["index"]], generator, train=True)
