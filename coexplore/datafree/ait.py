"""AIT: "It's All In the Teacher: Zero-Shot Quantization Brought Closer to the Teacher",
Choi et al., CVPR 2022 (arXiv 2203.17008) -- a student-side option for any generator.

Two changes to the student's training:

* **KL only**: the student minimises the KL divergence to the teacher's output alone
  (:func:`ait_loss`); the cross-entropy on the generator's labels, which pulls the student
  away from the teacher, is dropped;
* **gradient inundation** (:class:`GradientInundation`): with low-bit weights most updates are
  too small to move any weight across a rounding threshold, so the quantised student barely
  changes.  Before each optimiser step, every quantised layer's weight gradient is scaled up
  -- never down -- by the smallest factor for which a set fraction ``flip_ratio`` of its
  weights would cross a rounding threshold under the plain SGD step ``w - lr * g``.  For weight
  ``i`` at continuous code ``u_i = w_i / s + z`` with rounded code ``q_i``, the step crosses the
  threshold ``q_i +- 1/2`` in the direction of ``-g_i`` once ``lr * k * |g_i| >= s * dist_i``,
  so the factor is the ``flip_ratio``-quantile of ``s * dist_i / (lr * |g_i|)`` over the weights
  that can move (capped at ``max_scale``).
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from search_spaces.quant import is_float_bits, qmax_of, quant_layers, weight_qparams

from .base import kd_kl


def ait_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """AIT's student loss: KL(teacher || student) only (``B x K`` logits)."""
    return kd_kl(student_logits, teacher_logits, temperature)


class GradientInundation:
    """AIT's gradient manipulation (see the module docstring).

    Args:
        flip_ratio: the fraction of each layer's weights whose integer code the step should
            change, in (0, 1).
        max_scale: the largest factor a gradient is multiplied by.
    """

    def __init__(self, flip_ratio: float = 1e-3, max_scale: float = 100.0) -> None:
        if not 0.0 < flip_ratio < 1.0:
            from ..common import ConfigError
            raise ConfigError(f"ait_flip_ratio must be in (0, 1), got {flip_ratio!r}")
        self.flip_ratio = float(flip_ratio)
        self.max_scale = float(max_scale)

    @torch.no_grad()
    def scale_for(self, weight: torch.Tensor, grad: torch.Tensor, bits: int, lr: float) -> float:
        """The factor for one layer (>= 1): see the module docstring.

        Args:
            weight, grad: ``K x ...`` tensors of the same shape.
            bits: the layer's weight bits (2..8).
            lr: the learning rate of the step.
        """
        scale, zp = weight_qparams(weight, bits)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        s = scale.view(shape)
        u = weight.float() / s + zp.view(shape)
        q = torch.round(u).clamp(0, qmax_of(bits))
        d = -torch.sign(grad)
        dist = (q + 0.5 * d - u).abs()  # in code units, (0, 1]
        movable = (d != 0) & ~((q <= 0) & (d < 0)) & ~((q >= qmax_of(bits)) & (d > 0))
        if not bool(movable.any()):
            return 1.0
        need = (dist * s / (lr * grad.abs().clamp(min=1e-30)))[movable]
        k = float(torch.quantile(need.double().flatten()[:16_000_000], self.flip_ratio))
        return float(min(max(k, 1.0), self.max_scale))

    @torch.no_grad()
    def manipulate(self, model: nn.Module, lr: float) -> Dict[str, float]:
        """Scale the weight gradients of every quantised layer of ``model`` in place.

        Returns:
            ``{"ait_scale": geometric mean factor, "ait_layers": layers scaled}``.
        """
        logs, n, scaled = 0.0, 0, 0
        for _, m in quant_layers(model):
            g = m.weight.grad
            if g is None or is_float_bits(m.wbits):
                continue
            k = self.scale_for(m.weight, g, m.wbits, lr)
            if k > 1.0:
                g.mul_(k)
                scaled += 1
            logs += float(torch.log(torch.tensor(k)))
            n += 1
        return {"ait_scale": float(torch.exp(torch.tensor(logs / max(n, 1)))), "ait_layers": float(scaled)}


@torch.no_grad()
def code_change_fraction(before: Dict[str, torch.Tensor], model: nn.Module) -> float:
    """The fraction of quantised weights whose integer code differs from ``before`` (``{name: codes}``)."""
    from search_spaces.quant import weight_codes
    changed, total = 0, 0
    for name, m in quant_layers(model):
        if name in before:
            c = weight_codes(m.weight, m.wbits)
            changed += int((c != before[name]).sum())
            total += c.numel()
    return changed / max(total, 1)


@torch.no_grad()
def snapshot_codes(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``{layer name: integer weight codes}`` of every integer-quantised layer."""
    from search_spaces.quant import weight_codes
    return {n: weight_codes(m.weight, m.wbits) for n, m in quant_layers(model) if not is_float_bits(m.wbits)}
