"""Necks of the detection space: FPN, PAN (YOLOX's PAFPN), a depthwise PAN and a light PAN.

A neck takes the last three backbone stages, ``(C3, C4, C5)`` channels at strides 8 / 16 /
32, and hands three maps to the decoupled head.  Because the head's per-level input 1x1
convs (YOLOX's ``stems``) change with the channels the neck emits, every neck candidate
*carries them*: a candidate is "neck + head stems" and emits ``head_channels`` at each level.
That keeps the detection space exactly additive -- the neck choice changes no other
block's layers -- so a per-candidate cost table prices any architecture exactly.

Candidates (registered in :data:`NECKS`):

* ``pan`` -- YOLOX's PAFPN (Liu et al., PANet, CVPR 2018; Ge et al., YOLOX, arXiv 2107.08430):
  top-down 1x1 lateral / reduce convs, nearest upsampling, concat and CSP layers (no
  shortcut), then bottom-up 3x3 stride-2 convs, concat and CSP layers; emits (C3, C4, C5);
* ``pan_dw`` -- the same with depthwise-separable convs and CSP bottlenecks (YOLOX-nano);
* ``fpn`` -- the top-down half only (Lin et al., CVPR 2017): emits the two top-down CSP
  outputs (C3, C4) and the raw C5 map;
* ``lite`` -- a light PAN without CSP layers (NanoDet's "PAN without convolution" plus a
  depthwise-separable 3x3 per level): 1x1 laterals to ``head_channels``, top-down and
  bottom-up additions with nearest upsampling and bilinear downsampling.

Each neck has an analytic layer list (:func:`neck_layers`) in execution order, held against
forward hooks by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from accelerators.workload import Layer, conv
from coexplore.common import ConfigError, Registry

from .ops import BaseConv, CSPLayer, DWConv, csp_layers, dwconv_layers, out_hw

HW = Tuple[int, int]


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class PAFPN(nn.Module):
    """YOLOX's PAFPN on ``(C3, C4, C5)``; ``bottom_up=False`` is the FPN half.

    Shapes: three maps ``[B, C_i, H_i, W_i]`` (strides 8, 16, 32) to three maps with
    ``(C3, C4, C5)`` channels at the same sizes.
    """

    def __init__(self, channels: Sequence[int], depth: int, dw: bool, act: str, bottom_up: bool = True) -> None:
        super().__init__()
        c3, c4, c5 = channels
        Conv = (lambda ci, co, k, s: DWConv(ci, co, k, s, act=act)) if dw else \
            (lambda ci, co, k, s: BaseConv(ci, co, k, s, act=act))
        self.bottom_up = bottom_up
        self.lateral_conv0 = BaseConv(c5, c4, 1, act=act)
        self.C3_p4 = CSPLayer(2 * c4, c4, depth, shortcut=False, dw=dw, act=act)
        self.reduce_conv1 = BaseConv(c4, c3, 1, act=act)
        self.C3_p3 = CSPLayer(2 * c3, c3, depth, shortcut=False, dw=dw, act=act)
        if bottom_up:
            self.bu_conv2 = Conv(c3, c3, 3, 2)
            self.C3_n3 = CSPLayer(2 * c3, c4, depth, shortcut=False, dw=dw, act=act)
            self.bu_conv1 = Conv(c4, c4, 3, 2)
            self.C3_n4 = CSPLayer(2 * c4, c5, depth, shortcut=False, dw=dw, act=act)

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        x2, x1, x0 = feats
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([_up(fpn_out0, x1), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([_up(fpn_out1, x2), x2], 1))
        if not self.bottom_up:
            return pan_out2, f_out0, x0
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


def pafpn_layers(channels: Sequence[int], hws: Sequence[HW], depth: int, dw: bool, bottom_up: bool,
                 N: int) -> Tuple[List[Layer], Tuple[int, int, int]]:
    c3, c4, c5 = channels
    h3, h4, h5 = hws
    out = [conv(c5, c4, 1, h5, N=N, name="lateral_conv0")]
    out += csp_layers(2 * c4, c4, depth, h4, dw, N, "C3_p4")
    out.append(conv(c4, c3, 1, h4, N=N, name="reduce_conv1"))
    out += csp_layers(2 * c3, c3, depth, h3, dw, N, "C3_p3")
    if not bottom_up:
        return out, (c3, c4, c5)

    def down(c: int, hw: HW, name: str) -> List[Layer]:
        if dw:
            return dwconv_layers(c, c, 3, hw, 2, N, name)
        return [conv(c, c, 3, out_hw(hw, 2), stride=2, N=N, name=name)]

    out += down(c3, h3, "bu_conv2")
    out += csp_layers(2 * c3, c4, depth, h4, dw, N, "C3_n3")
    out += down(c4, h4, "bu_conv1")
    out += csp_layers(2 * c4, c5, depth, h5, dw, N, "C3_n4")
    return out, (c3, c4, c5)


class LitePAN(nn.Module):
    """A light PAN: 1x1 laterals to ``width``, top-down and bottom-up additions (no convs
    between levels), a depthwise-separable 3x3 per level."""

    def __init__(self, channels: Sequence[int], width: int, act: str) -> None:
        super().__init__()
        self.laterals = nn.ModuleList([BaseConv(c, width, 1, act=act) for c in channels])
        self.outs = nn.ModuleList([DWConv(width, width, 3, act=act) for _ in channels])

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        l3, l4, l5 = [m(f) for m, f in zip(self.laterals, feats)]
        p4 = l4 + _up(l5, l4)
        p3 = l3 + _up(p4, l3)
        n4 = p4 + F.interpolate(p3, size=p4.shape[-2:], mode="bilinear", align_corners=False)
        n5 = l5 + F.interpolate(n4, size=l5.shape[-2:], mode="bilinear", align_corners=False)
        return tuple(m(x) for m, x in zip(self.outs, (p3, n4, n5)))


def lite_layers(channels: Sequence[int], hws: Sequence[HW], width: int, N: int) -> Tuple[List[Layer], Tuple[int, ...]]:
    out = [conv(c, width, 1, hw, N=N, name=f"laterals.{i}") for i, (c, hw) in enumerate(zip(channels, hws))]
    for i, hw in enumerate(hws):
        out += dwconv_layers(width, width, 3, hw, 1, N, f"outs.{i}")
    return out, (width,) * len(channels)


@dataclass(frozen=True)
class NeckDef:
    """One registered neck."""

    name: str  # registry key
    build: Callable[[Sequence[int], int, int, str], nn.Module]  # (channels, depth, head_channels, act)
    layers: Callable[[Sequence[int], Sequence[HW], int, int, int], Tuple[List[Layer], Tuple[int, ...]]]
    description: str
    emits_head_width: bool = False  # True: emits head_channels at every level; False: the input channels

    def out_channels(self, channels: Sequence[int], head_channels: int) -> Tuple[int, ...]:
        """Channels the neck emits per level (before the stems)."""
        return (head_channels,) * len(channels) if self.emits_head_width else tuple(channels)


NECKS: Registry[NeckDef] = Registry("neck")
for _d in (
    NeckDef("pan", lambda ch, d, w, a: PAFPN(ch, d, False, a),
            lambda ch, hws, d, w, N: pafpn_layers(ch, hws, d, False, True, N), "YOLOX's PAFPN"),
    NeckDef("pan_dw", lambda ch, d, w, a: PAFPN(ch, d, True, a),
            lambda ch, hws, d, w, N: pafpn_layers(ch, hws, d, True, True, N),
            "PAFPN with depthwise-separable convs (YOLOX-nano)"),
    NeckDef("fpn", lambda ch, d, w, a: PAFPN(ch, d, False, a, bottom_up=False),
            lambda ch, hws, d, w, N: pafpn_layers(ch, hws, d, False, False, N), "top-down FPN with CSP layers"),
    NeckDef("lite", lambda ch, d, w, a: LitePAN(ch, w, a),
            lambda ch, hws, d, w, N: lite_layers(ch, hws, w, N), "light PAN: additions, one DW 3x3 per level",
            emits_head_width=True),
):
    NECKS.register(_d.name, _d)
del _d


def list_necks() -> List[str]:
    return NECKS.names()


class NeckWithStems(nn.Module):
    """A neck followed by the head's per-level 1x1 input convs (its ``stems``).

    Shapes: three maps ``[B, C_i, H_i, W_i]`` to three ``[B, head_channels, H_i, W_i]`` maps.
    """

    def __init__(self, name: str, channels: Sequence[int], depth: int, head_channels: int, act: str) -> None:
        super().__init__()
        d = NECKS.get(name)
        self.name = d.name
        self.neck = d.build(tuple(channels), depth, head_channels, act)
        outs = d.out_channels(channels, head_channels)
        self.stems = nn.ModuleList([BaseConv(c, head_channels, 1, act=act) for c in outs])

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        return tuple(s(x) for s, x in zip(self.stems, self.neck(feats)))


def neck_layers(name: str, channels: Sequence[int], hws: Sequence[HW], depth: int, head_channels: int,
                N: int = 1, prefix: str = "") -> List[Layer]:
    """The layers of :class:`NeckWithStems` in execution order (neck, then the three stems)."""
    try:
        d = NECKS.get(name)
    except Exception as exc:
        raise ConfigError(str(exc)) from None
    out, outs = d.layers(tuple(channels), tuple(hws), depth, head_channels, N)
    out = [Layer(l.kind, l.N, l.K, l.C, l.R, l.S, l.P, l.Q, l.stride, l.groups, f"neck.{l.name}") for l in out]
    out += [conv(c, head_channels, 1, hw, N=N, name=f"stems.{i}") for i, (c, hw) in enumerate(zip(outs, hws))]
    if prefix:
        out = [Layer(l.kind, l.N, l.K, l.C, l.R, l.S, l.P, l.Q, l.stride, l.groups, f"{prefix}.{l.name}")
               for l in out]
    return out
