"""YOLOX's decoupled, anchor-free head and the layout of a detector's output.

Per level (stride 8, 16, 32), on the ``head_channels`` map the neck's stems emit
(:class:`~search_spaces.detection.necks.NeckWithStems`): a classification branch of
``convs`` 3x3 BaseConvs (or depthwise-separable convs) and a 1x1 class predictor, and a
regression branch of as many convs with a 1x1 box predictor (4) and a 1x1 objectness
predictor (1) (Ge et al., "YOLOX", arXiv 2107.08430).  One anchor point per grid cell.

**Output layout** (:data:`ANCHOR_CHANNELS`, :func:`split_output`): the head decodes its
predictions and returns one tensor ``[B, A, 4 + 1 + num_classes + 3]`` over the ``A``
grid cells of all levels (level by level, row-major):

* ``[..., 0:4]`` -- the box ``(cx, cy, w, h)`` in input pixels: ``cx = (dx + gx) * s``,
  ``w = exp(dw) * s`` (``dw`` clamped at :data:`MAX_LOG_WH`);
* ``[..., 4]`` -- the objectness logit;
* ``[..., 5:5 + num_classes]`` -- the class logits;
* ``[..., -3:]`` -- the anchor point of the cell: ``(gx * s, gy * s, s)`` in pixels (a constant).

Carrying the anchor points in the output keeps the loss (label assignment needs them) and
the evaluation free of side channels: ``Task.loss(outputs, targets)`` sees everything it
needs, for a supernet and for a standalone detector alike.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from accelerators.workload import Layer, conv

from .ops import BaseConv, DWConv, dwconv_layers

HW = Tuple[int, int]

#: Channels of the anchor point appended to every prediction: grid x and y (pixels), stride.
ANCHOR_CHANNELS = 3
#: Clamp of the predicted log width / height (in strides) before ``exp``: e^8 strides is far
#: beyond any image, and an unclamped ``exp`` of an early, wild prediction overflows.
MAX_LOG_WH = 8.0
#: Prior probability of the class and objectness biases at initialisation (RetinaNet, YOLOX).
PRIOR_PROB = 0.01


class DetectionOutput(NamedTuple):
    """The parts of a detector's output tensor (see the module docstring)."""

    boxes: torch.Tensor  # [B, A, 4] (cx, cy, w, h), pixels
    obj: torch.Tensor  # [B, A] objectness logits
    cls: torch.Tensor  # [B, A, K] class logits
    anchors: torch.Tensor  # [A, 3] (x, y, stride) of each grid cell, pixels


def split_output(out: torch.Tensor) -> DetectionOutput:
    """Split a ``[B, A, 8 + K]`` detector output into its parts."""
    if out.dim() != 3 or out.shape[-1] < 4 + 1 + 1 + ANCHOR_CHANNELS:
        raise ValueError(f"a detector output is [B, A, 8 + num_classes], got {tuple(out.shape)}")
    return DetectionOutput(out[..., :4], out[..., 4], out[..., 5:-ANCHOR_CHANNELS], out[0, :, -ANCHOR_CHANNELS:])


class YOLOXHead(nn.Module):
    """The decoupled head on three ``[B, C, H_i, W_i]`` maps; returns ``[B, A, 8 + K]`` (see module docstring).

    Args:
        channels: the width of the maps and of the branches (``head_channels``).
        num_classes: classes ``K``.
        strides: stride of each level, pixels.
        convs: 3x3 convs per branch.
        dw: depthwise-separable branch convs (YOLOX-nano).
        act: activation.
    """

    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], convs: int = 2, dw: bool = False,
                 act: str = "silu") -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)

        def branch() -> nn.Sequential:
            return nn.Sequential(*[(DWConv(channels, channels, 3, act=act) if dw else BaseConv(channels, channels, 3, act=act))
                                   for _ in range(convs)])

        n = len(self.strides)
        self.cls_convs = nn.ModuleList([branch() for _ in range(n)])
        self.reg_convs = nn.ModuleList([branch() for _ in range(n)])
        self.cls_preds = nn.ModuleList([nn.Conv2d(channels, num_classes, 1) for _ in range(n)])
        self.reg_preds = nn.ModuleList([nn.Conv2d(channels, 4, 1) for _ in range(n)])
        self.obj_preds = nn.ModuleList([nn.Conv2d(channels, 1, 1) for _ in range(n)])
        self.init_predictors()

    def init_predictors(self, generator: Optional[torch.Generator] = None) -> None:
        """The 1x1 predictors as RetinaNet / YOLOX start them: weights ``N(0, 0.01)``, box biases 0,
        class and objectness biases at ``-log((1 - p) / p)`` (p = :data:`PRIOR_PROB`), so that the
        first steps see calibrated, near-zero scores rather than the wild ones a fan-out
        He init of a 1- or 4-channel conv gives.

        Args:
            generator: draws the weights (a CPU ``torch.Generator``); None: torch's global one.
        """
        b = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        with torch.no_grad():
            for group, bias in ((self.cls_preds, b), (self.obj_preds, b), (self.reg_preds, 0.0)):
                for m in group:
                    w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
                    nn.init.normal_(w, 0.0, 0.01, generator=generator)
                    m.weight.copy_(w)
                    m.bias.fill_(bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        outs = []
        for k, (x, s) in enumerate(zip(feats, self.strides)):
            cls = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg = self.reg_preds[k](reg_feat)
            obj = self.obj_preds[k](reg_feat)
            b, _, h, w = x.shape
            out = torch.cat([reg, obj, cls], 1).flatten(2).transpose(1, 2)  # [B, h*w, 5 + K]
            gy, gx = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                                    torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
            grid = torch.stack([gx, gy], -1).reshape(1, h * w, 2)
            xy = (out[..., :2] + grid) * s
            wh = torch.exp(out[..., 2:4].clamp(max=MAX_LOG_WH)) * s
            anchor = torch.cat([grid * s, torch.full_like(grid[..., :1], float(s))], -1).expand(b, -1, -1)
            outs.append(torch.cat([xy, wh, out[..., 4:], anchor], -1))
        return torch.cat(outs, 1)


def head_layers(channels: int, num_classes: int, hws: Sequence[HW], convs: int, dw: bool, N: int = 1) -> List[Layer]:
    """The layers of :class:`YOLOXHead` in execution order."""
    out: List[Layer] = []
    for k, hw in enumerate(hws):
        def branch(name: str) -> List[Layer]:
            ls: List[Layer] = []
            for i in range(convs):
                if dw:
                    ls += dwconv_layers(channels, channels, 3, hw, 1, N, f"head.{name}.{k}.{i}")
                else:
                    ls.append(conv(channels, channels, 3, hw, N=N, name=f"head.{name}.{k}.{i}"))
            return ls
        out += branch("cls_convs")
        out.append(conv(channels, num_classes, 1, hw, N=N, name=f"head.cls_preds.{k}"))
        out += branch("reg_convs")
        out.append(conv(channels, 4, 1, hw, N=N, name=f"head.reg_preds.{k}"))
        out.append(conv(channels, 1, 1, hw, N=N, name=f"head.obj_preds.{k}"))
    return out
