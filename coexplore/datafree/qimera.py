"""Qimera: "Qimera: Data-free Quantization with Synthetic Boundary Supporting Samples",
Choi et al., NeurIPS 2021 (arXiv 2111.02625).

On top of GDFQ:

* **superposed latent embeddings**: a fraction ``mix_ratio`` of every batch is generated from a
  convex combination of the embeddings of ``mix_classes`` distinct classes, with weights drawn
  uniformly from the simplex; the target of such a *boundary-supporting* sample is the same
  combination of one-hot labels, used in the generator's and the student's cross-entropy;
* **embeddings from the teacher**: the class embeddings start as the rows of the teacher's
  classifier weight (its feature-space class directions), rescaled to unit RMS;
* **disentanglement mapping layer** (DML): a learnable linear map from the (superposed)
  embedding to the generator's conditioning input, so that superposition happens in the
  teacher's embedding space and the generator sees a mapped code.  It is used whenever the
  generator runs -- for the generator's training and for the student's samples alike.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import ConditionalGenerator, DataFreeMethod, init_module, register_method
from .teacher import classifier_layer


@register_method("qimera")
class Qimera(DataFreeMethod):
    """Qimera's boundary-supporting samples (see the module docstring)."""

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        if cfg.mix_classes < 2 or cfg.mix_classes > self.num_classes:
            from ..common import ConfigError
            raise ConfigError(f"mix_classes must be in [2, {self.num_classes}], got {cfg.mix_classes}")
        self.net = ConditionalGenerator(self.image_shape, cfg.latent_dim, channels=cfg.generator_channels)
        fc = classifier_layer(teacher.model).weight.detach()
        self.dml = nn.Linear(fc.shape[1], cfg.latent_dim)  # the disentanglement mapping layer
        init_module(self, generator)
        emb = fc / fc.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-8)
        self.embedding = nn.Parameter(emb.clone())  # K x feature_dim, from the teacher

    def draw(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        k, m = self.num_classes, self.cfg.mix_classes
        y = torch.randint(0, k, (n,), generator=generator)
        targets = F.one_hot(y, k).float()
        n_mix = int(round(self.cfg.mix_ratio * n))
        if n_mix > 0:
            # m distinct classes per boundary sample, weights uniform on the simplex (Dirichlet(1))
            classes = torch.rand(n_mix, k, generator=generator).argsort(dim=1)[:, :m]
            w = -torch.log(torch.rand(n_mix, m, generator=generator).clamp(min=1e-12))
            w = w / w.sum(dim=1, keepdim=True)
            mixed = torch.zeros(n_mix, k).scatter_(1, classes, w)
            targets = torch.cat([mixed, targets[n_mix:]])
            y = targets.argmax(dim=1)
        return y, targets, {}

    def conditioning(self, targets: torch.Tensor) -> torch.Tensor:
        """``[n, latent_dim]``: the DML applied to the superposed embedding ``targets @ E``."""
        return self.dml(targets @ self.embedding)

    def generate(self, labels: torch.Tensor, targets: torch.Tensor, extra: Mapping[str, Any],
                 generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(labels.shape[0], self.cfg.latent_dim, generator=generator)
        return self.net(z, self.conditioning(targets))
