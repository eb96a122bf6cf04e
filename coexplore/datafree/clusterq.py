"""ClusterQ: "ClusterQ: Semantic Feature Distribution Alignment for Data-Free Quantization",
Gao et al., 2022 (arXiv 2205.00179).

GDFQ's generator, with the deep-layer feature statistics clustered by class:

* for the ``cluster_layers`` deepest BatchNorm layers of the teacher, each generated sample's
  per-channel feature mean is recorded, and each class present in the batch gets its mean
  statistic vector;
* every class keeps an **EMA centroid** of these vectors (buffers, updated with weight
  ``cluster_momentum`` from detached batch statistics), and the generator is pulled towards its
  class's centroid (``cluster_weight * ||mu_k - c_k||^2``), so that the classes form compact,
  separate clusters in the teacher's semantic feature space;
* an **intra-class variance** term keeps each cluster from collapsing: the within-class variance
  of the per-sample statistics is pushed up to ``diversity_target`` times the BN layer's running
  variance with a hinge.  The term is computed on the live (non-detached) statistics, so it has
  a gradient with respect to the generator -- a public implementation's diversity term is
  known to have none.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from .base import GeneratorStep, register_method, soft_cross_entropy
from .gdfq import GDFQ


@register_method("clusterq")
class ClusterQ(GDFQ):
    """ClusterQ (see the module docstring)."""

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        layers = self.bn_stats.layers[-max(1, cfg.cluster_layers):]
        self.__dict__["_cluster_index"] = [len(self.bn_stats.layers) - len(layers) + i for i in range(len(layers))]
        for j, bn in enumerate(layers):
            self.register_buffer(f"centroid{j}", torch.zeros(self.num_classes, bn.num_features))
        self.register_buffer("seen", torch.zeros(self.num_classes, dtype=torch.bool))

    def centroids(self) -> List[torch.Tensor]:
        return [getattr(self, f"centroid{j}") for j in range(len(self._cluster_index))]

    def cluster_terms(self, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(alignment, diversity)`` losses of the last recorded batch, and the EMA update."""
        align = torch.zeros(())
        div = torch.zeros(())
        present = labels.unique()
        new_seen = self.seen.clone()
        for j, li in enumerate(self._cluster_index):
            feats = self.bn_stats.sample_means[li]  # B x C, with gradients
            target_var = self.bn_stats.layers[li].running_var.mean()
            cent = self.centroids()[j]
            for k in present.tolist():
                fk = feats[labels == k]
                mu = fk.mean(dim=0)
                if bool(self.seen[k]):
                    align = align + F.mse_loss(mu, cent[k].clone())
                if fk.shape[0] > 1:
                    var = fk.var(dim=0, unbiased=False).mean()
                    div = div + F.relu(self.cfg.diversity_target * target_var - var) / target_var.clamp(min=1e-8)
                with torch.no_grad():
                    if bool(self.seen[k]):
                        cent[k].lerp_(mu.detach(), self.cfg.cluster_momentum)
                    else:
                        cent[k].copy_(mu.detach())
                new_seen[k] = True
        self.seen.copy_(new_seen)
        norm = max(1, len(self._cluster_index) * int(present.numel()))
        return align / norm, div / norm

    def generator_loss(self, n: int, generator: torch.Generator) -> GeneratorStep:
        labels, targets, extra = self.draw(n, generator)
        x = self.generate(labels, targets, extra, generator)
        with self.bn_stats.recording(sample_means=True):
            logits = self.teacher(x)
        ce = soft_cross_entropy(logits, targets)
        bns = self.bn_stats.loss()
        align, div = self.cluster_terms(labels)
        loss = ce + self.cfg.bns_weight * bns + self.cfg.cluster_weight * align + self.cfg.diversity_weight * div
        return GeneratorStep(loss, {"g_ce": float(ce.detach()), "g_bns": float(bns.detach()),
                                    "g_align": float(align.detach()), "g_div": float(div.detach())},
                             x, targets, logits)
