"""LRQ: "Long-Range Zero-Shot Generative Deep Network Quantization", Luo et al., 2022
(arXiv 2211.06816).

Three changes to GDFQ, as implemented here:

* **long-range generator**: residual large-kernel attention blocks (:class:`~coexplore.datafree.base.LKA`,
  a 21x21 receptive field from 5x5 depthwise + 7x7 dilated depthwise + 1x1 convs) after each
  upsampling stage of the generator, so that samples carry long-range structure;
* **Adversarial Margin Add (AMA)**: the generator's cross-entropy is computed on the teacher's
  *cosine* logits (penultimate feature and classifier rows both L2-normalised, times
  ``ama_scale``) with an additive margin ``ama_margin`` subtracted from the target class: the
  generator must produce samples whose angle to their class exceeds the margin, which widens the
  intra-class angular spread it can use.  (The paper's exact margin schedule is not reproduced;
  the margin is a fixed hyper-parameter.)
* **decoupled knowledge distillation** (DKD, Zhao et al., CVPR 2022) as the student's loss:
  ``alpha * TCKD + beta * NCKD`` -- KL over the binary (target, rest) split plus KL over the
  renormalised non-target classes.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from .base import GeneratorStep, register_method, soft_cross_entropy
from .gdfq import GDFQ
from .teacher import classifier_layer


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             temperature: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD: ``(TCKD, NCKD)``, each a batch-mean scalar times ``T^2``.

    Args:
        student_logits, teacher_logits: ``B x K``.
        labels: ``B`` int64 target classes.
        temperature: T > 0.
    """
    t = temperature
    mask = F.one_hot(labels, student_logits.shape[1]).bool()
    ps, pt = F.softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1)
    bs = torch.stack([(ps * mask).sum(1), (ps * ~mask).sum(1)], dim=1).clamp(min=1e-8)
    bt = torch.stack([(pt * mask).sum(1), (pt * ~mask).sum(1)], dim=1).clamp(min=1e-8)
    tckd = (bt * (bt.log() - bs.log())).sum(1).mean() * t * t
    big = 1000.0
    ls = F.log_softmax(student_logits / t - big * mask, dim=1)
    lt = F.log_softmax(teacher_logits / t - big * mask, dim=1)
    nckd = F.kl_div(ls, lt, reduction="batchmean", log_target=True) * t * t
    return tckd, nckd


@register_method("lrq")
class LRQ(GDFQ):
    """LRQ (see the module docstring)."""

    lka = True

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        self.__dict__["classifier"] = classifier_layer(teacher.model)

    def ama_logits(self, x: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(margin-added cosine logits, plain logits)`` of the teacher on ``x``, both ``[B, K]``."""
        feats = []
        handle = self.classifier.register_forward_hook(lambda m, i, o: feats.append(i[0]))
        try:
            logits = self.teacher(x)
        finally:
            handle.remove()
        f = F.normalize(feats[-1].flatten(1), dim=1)
        w = F.normalize(self.classifier.weight, dim=1)
        cos = f @ w.t()
        return self.cfg.ama_scale * (cos - self.cfg.ama_margin * targets), logits

    def generator_loss(self, n: int, generator: torch.Generator) -> GeneratorStep:
        labels, targets, extra = self.draw(n, generator)
        x = self.generate(labels, targets, extra, generator)
        with self.bn_stats.recording():
            margin_logits, logits = self.ama_logits(x, targets)
        ce = soft_cross_entropy(margin_logits, targets)
        bns = self.bn_stats.loss()
        return GeneratorStep(ce + self.cfg.bns_weight * bns, {"g_ce": float(ce.detach()), "g_bns": float(bns.detach())},
                             x, targets, logits)

    def student_loss(self, student_logits, teacher_logits, targets):
        labels = targets.argmax(dim=1)
        tckd, nckd = dkd_loss(student_logits, teacher_logits, labels, self.cfg.kd_temperature)
        ce = soft_cross_entropy(student_logits, targets)
        loss = self.cfg.ce_weight * ce + self.cfg.dkd_alpha * tckd + self.cfg.dkd_beta * nckd
        return loss, {"s_ce": float(ce.detach()), "s_tckd": float(tckd.detach()), "s_nckd": float(nckd.detach())}
