"""GDFQ: "Generative Low-bitwidth Data Free Quantization", Xu et al., ECCV 2020 (arXiv 2003.03603).

A class-conditional generator (label embedding times noise, see
:class:`~coexplore.datafree.base.ConditionalGenerator`) is trained so that the teacher
classifies its samples as their label (cross-entropy) and the statistics of every BatchNorm
layer's input match the teacher's running statistics (the BNS loss).  The quantised student
is fine-tuned on the samples with cross-entropy on the labels plus KL distillation from the
teacher -- the loss of :meth:`~coexplore.datafree.base.DataFreeMethod.student_loss`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import ConditionalGenerator, DataFreeMethod, init_module, register_method


@register_method("gdfq")
class GDFQ(DataFreeMethod):
    """GDFQ's generator and losses (see the module docstring)."""

    lka = False

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        self.embedding = nn.Embedding(self.num_classes, cfg.latent_dim)
        self.net = ConditionalGenerator(self.image_shape, cfg.latent_dim, lka=self.lka,
                                        channels=cfg.generator_channels)
        init_module(self, generator)

    def conditioning(self, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[n, latent_dim]``: the label embedding (``targets @ E``, equal to ``E[labels]`` for one-hot targets)."""
        return targets @ self.embedding.weight

    def generate(self, labels: torch.Tensor, targets: torch.Tensor, extra: Mapping[str, Any],
                 generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(labels.shape[0], self.cfg.latent_dim, generator=generator)
        return self.net(z, self.conditioning(labels, targets))
