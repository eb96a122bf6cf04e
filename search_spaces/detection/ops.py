"""Candidate backbone ops of the detection space, and their layer lists for pricing.

The ops are the main building blocks of the lightweight one-stage detectors the space
covers, each with the module it builds and the convolution-like layers it runs
(:class:`accelerators.workload.Layer`), written analytically so that a test can hold them
against what forward hooks see on the real module:

* ``conv3`` -- a regular 3x3 conv + BN + act (YOLOX's ``BaseConv``; Ge et al., "YOLOX:
  Exceeding YOLO Series in 2021", arXiv 2107.08430);
* ``dw3`` / ``dw5`` -- depthwise-separable conv: ``k x k`` depthwise + BN + act, 1x1 pointwise
  + BN + act (MobileNet; YOLOX's ``DWConv``);
* ``mb{k}_e{e}`` (``k`` 3/5, ``e`` 3/6) -- MBConv / inverted residual: 1x1 expansion to
  ``e * C_in``, ``k x k`` depthwise with the stride, linear 1x1 projection, identity shortcut
  where the shape is kept (Sandler et al., CVPR 2018);
* ``ghost`` -- GhostNet bottleneck (Han et al., CVPR 2020): a ghost module (1x1 primary conv to
  half the width, 3x3 depthwise "cheap" conv for the other half) expanding to ``2 * C_out``, a
  3x3 depthwise conv when striding, a second ghost module back to ``C_out``, and a shortcut
  (identity, or depthwise 3x3 + 1x1 where the shape changes);
* ``shuffle`` -- ShuffleNetV2 unit (Ma et al., ECCV 2018): channel split, 1x1 / 3x3 depthwise /
  1x1 branch, concat and channel shuffle; the two-branch unit where the shape changes;
* ``csp{n}`` / ``csp{n}_ns`` / ``csp{n}_dw`` (``n`` 1-3) -- YOLOX's CSP layer (Wang et al.,
  CSPNet, CVPRW 2020): two 1x1 convs to ``C_out / 2``, ``n`` bottlenecks (1x1 + 3x3, shortcut;
  ``_ns`` without shortcut, ``_dw`` with a depthwise-separable 3x3) on one of them, concat, 1x1;
* ``spp`` -- YOLOX's SPP bottleneck: 1x1 to ``C_in / 2``, max-pools 5/9/13 concatenated, 1x1;
* ``skip`` -- the layer is skipped (identity), only where the shape is kept.

Every op is registered in :data:`DETECTION_OPS` with one constructor signature,
``build(C_in, C_out, stride, act) -> nn.Module`` mapping ``[B, C_in, H, W]`` to
``[B, C_out, ceil(H / stride), ceil(W / stride)]``, the strides it supports and the channel
counts it needs (:func:`op_problem` says why a geometry is impossible).  The registry is
separate from :data:`search_spaces.ops.OPS` because these ops take the activation as an
argument (YOLOX uses SiLU) and some cannot stride.

Pooling, upsampling, concatenation, additions and activations run no ``Layer``: the
analytical model prices convolutions, so these ops cost nothing there -- a measured latency
table (:mod:`accelerators.measured`) sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from accelerators.workload import Layer, conv, depthwise
from coexplore.common import ConfigError, Registry

HW = Tuple[int, int]

#: Activations by name (``act`` of a detection space).
ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "silu": lambda: nn.SiLU(inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "lrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
}


def make_act(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"act {name!r} is unknown; allowed values: {sorted(ACTIVATIONS)}") from None


def out_size(size: int, stride: int) -> int:
    """Output size of a 'same'-padded odd-kernel conv: ``ceil(size / stride)``."""
    return (size - 1) // stride + 1


def out_hw(hw: HW, stride: int) -> HW:
    return (out_size(hw[0], stride), out_size(hw[1], stride))


# ---- building blocks ---------------------------------------------------------------------

class BaseConv(nn.Sequential):
    """``k x k`` conv (no bias, 'same' padding) + BatchNorm + optional activation.

    Shapes: ``[B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]``.  The
    children are named ``conv``, ``bn`` (and ``act``) so that BatchNorm folding
    (:func:`accelerators.measured.fuse_batchnorm`) finds the pair.
    """

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: Optional[str] = "silu") -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(C_in, C_out, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(C_out, eps=1e-3, momentum=0.1))
        if act is not None:
            self.add_module("act", make_act(act))


def base_conv_layers(C_in: int, C_out: int, kernel: int, in_hw: HW, stride: int, groups: int, N: int,
                     name: str) -> List[Layer]:
    return [conv(C_in, C_out, kernel, out_hw(in_hw, stride), stride=stride, groups=groups, N=N, name=name)]


class DWConv(nn.Sequential):
    """Depthwise-separable conv: ``k x k`` depthwise + BN + act, then 1x1 + BN + act."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.add_module("dconv", BaseConv(C_in, C_in, kernel, stride, groups=C_in, act=act))
        self.add_module("pconv", BaseConv(C_in, C_out, 1, act=act))


def dwconv_layers(C_in: int, C_out: int, kernel: int, in_hw: HW, stride: int, N: int, name: str) -> List[Layer]:
    o = out_hw(in_hw, stride)
    return [depthwise(C_in, kernel, o, stride=stride, N=N, name=f"{name}.dconv"),
            conv(C_in, C_out, 1, o, N=N, name=f"{name}.pconv")]


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2): 1x1 expand + BN + act, ``k x k`` depthwise + BN + act,
    1x1 project + BN; identity shortcut when ``stride == 1`` and ``C_in == C_out``."""

    def __init__(self, C_in: int, C_out: int, stride: int, kernel: int, expand: int, act: str) -> None:
        super().__init__()
        hidden = C_in * expand
        self.expand = BaseConv(C_in, hidden, 1, act=act)
        self.depthwise = BaseConv(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.project = BaseConv(hidden, C_out, 1, act=None)
        self.residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def mbconv_layers(C_in: int, C_out: int, stride: int, in_hw: HW, N: int, kernel: int, expand: int) -> List[Layer]:
    hidden = C_in * expand
    o = out_hw(in_hw, stride)
    return [conv(C_in, hidden, 1, in_hw, N=N, name="expand"),
            depthwise(hidden, kernel, o, stride=stride, N=N, name="depthwise"),
            conv(hidden, C_out, 1, o, N=N, name="project")]


class GhostModule(nn.Module):
    """Ghost module (ratio 2): a 1x1 primary conv to ``C_out / 2`` and a 3x3 depthwise cheap
    conv of that half, concatenated (``C_out`` must be even)."""

    def __init__(self, C_in: int, C_out: int, act: Optional[str]) -> None:
        super().__init__()
        half = C_out // 2
        self.primary = BaseConv(C_in, half, 1, act=act)
        self.cheap = BaseConv(half, half, 3, groups=half, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], 1)


def ghost_module_layers(C_in: int, C_out: int, hw: HW, N: int, name: str) -> List[Layer]:
    half = C_out // 2
    return [conv(C_in, half, 1, hw, N=N, name=f"{name}.primary"),
            depthwise(half, 3, hw, N=N, name=f"{name}.cheap")]


class GhostBottleneck(nn.Module):
    """GhostNet bottleneck with a ``2 * C_out`` hidden width (see the module docstring)."""

    def __init__(self, C_in: int, C_out: int, stride: int, act: str) -> None:
        super().__init__()
        mid = 2 * C_out
        self.ghost1 = GhostModule(C_in, mid, act)
        self.dw = BaseConv(mid, mid, 3, stride, groups=mid, act=None) if stride > 1 else None
        self.ghost2 = GhostModule(mid, C_out, None)
        self.residual = stride == 1 and C_in == C_out
        self.shortcut = None if self.residual else nn.Sequential(
            BaseConv(C_in, C_in, 3, stride, groups=C_in, act=None), BaseConv(C_in, C_out, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.dw is not None:
            y = self.dw(y)
        y = self.ghost2(y)
        return y + (x if self.shortcut is None else self.shortcut(x))


def ghost_layers(C_in: int, C_out: int, stride: int, in_hw: HW, N: int) -> List[Layer]:
    mid = 2 * C_out
    o = out_hw(in_hw, stride)
    out = ghost_module_layers(C_in, mid, in_hw, N, "ghost1")
    if stride > 1:
        out.append(depthwise(mid, 3, o, stride=stride, N=N, name="dw"))
    out += ghost_module_layers(mid, C_out, o, N, "ghost2")
    if not (stride == 1 and C_in == C_out):
        out += [depthwise(C_in, 3, o, stride=stride, N=N, name="shortcut.0"),
                conv(C_in, C_out, 1, o, N=N, name="shortcut.1")]
    return out


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet's channel shuffle of ``[B, C, H, W]`` (``C`` divisible by ``groups``)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: the split unit where the shape is kept, the two-branch unit elsewhere."""

    def __init__(self, C_in: int, C_out: int, stride: int, act: str) -> None:
        super().__init__()
        half = C_out // 2
        self.split = stride == 1 and C_in == C_out
        b_in = half if self.split else C_in
        self.branch2 = nn.Sequential(BaseConv(b_in, half, 1, act=act),
                                     BaseConv(half, half, 3, stride, groups=half, act=None),
                                     BaseConv(half, half, 1, act=act))
        self.branch1 = None if self.split else nn.Sequential(
            BaseConv(C_in, C_in, 3, stride, groups=C_in, act=None), BaseConv(C_in, half, 1, act=act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


def shuffle_layers(C_in: int, C_out: int, stride: int, in_hw: HW, N: int) -> List[Layer]:
    half = C_out // 2
    o = out_hw(in_hw, stride)
    split = stride == 1 and C_in == C_out
    out: List[Layer] = []
    if not split:
        out += [depthwise(C_in, 3, o, stride=stride, N=N, name="branch1.0"),
                conv(C_in, half, 1, o, N=N, name="branch1.1")]
    out += [conv(half if split else C_in, half, 1, in_hw, N=N, name="branch2.0"),
            depthwise(half, 3, o, stride=stride, N=N, name="branch2.1"),
            conv(half, half, 1, o, N=N, name="branch2.2")]
    return out


class Bottleneck(nn.Module):
    """YOLOX's bottleneck: 1x1 + BN + act, 3x3 (or depthwise-separable 3x3) + BN + act, shortcut."""

    def __init__(self, C: int, shortcut: bool, dw: bool, act: str) -> None:
        super().__init__()
        self.conv1 = BaseConv(C, C, 1, act=act)
        self.conv2 = DWConv(C, C, 3, act=act) if dw else BaseConv(C, C, 3, act=act)
        self.use_add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.use_add else y


def bottleneck_layers(C: int, hw: HW, dw: bool, N: int, name: str) -> List[Layer]:
    out = [conv(C, C, 1, hw, N=N, name=f"{name}.conv1")]
    if dw:
        out += dwconv_layers(C, C, 3, hw, 1, N, f"{name}.conv2")
    else:
        out.append(conv(C, C, 3, hw, N=N, name=f"{name}.conv2"))
    return out


class CSPLayer(nn.Module):
    """YOLOX's CSP layer (expansion 0.5): ``conv1``/``conv2`` 1x1 to ``C_out // 2``, ``n``
    bottlenecks on ``conv1``'s branch, concat, ``conv3`` 1x1 to ``C_out``."""

    def __init__(self, C_in: int, C_out: int, n: int, shortcut: bool = True, dw: bool = False,
                 act: str = "silu") -> None:
        super().__init__()
        hidden = C_out // 2
        self.conv1 = BaseConv(C_in, hidden, 1, act=act)
        self.conv2 = BaseConv(C_in, hidden, 1, act=act)
        self.conv3 = BaseConv(2 * hidden, C_out, 1, act=act)
        self.m = nn.Sequential(*[Bottleneck(hidden, shortcut, dw, act) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.m(self.conv1(x))
        x2 = self.conv2(x)
        return self.conv3(torch.cat([x1, x2], 1))


def csp_layers(C_in: int, C_out: int, n: int, hw: HW, dw: bool, N: int, name: str = "") -> List[Layer]:
    hidden = C_out // 2
    p = f"{name}." if name else ""
    out = [conv(C_in, hidden, 1, hw, N=N, name=f"{p}conv1")]
    for i in range(n):
        out += bottleneck_layers(hidden, hw, dw, N, f"{p}m.{i}")
    out.append(conv(C_in, hidden, 1, hw, N=N, name=f"{p}conv2"))
    out.append(conv(2 * hidden, C_out, 1, hw, N=N, name=f"{p}conv3"))
    return out


class SPPBottleneck(nn.Module):
    """YOLOX's SPP: 1x1 to ``C_in // 2``, max-pools (5, 9, 13) concatenated with it, 1x1 to ``C_out``."""

    def __init__(self, C_in: int, C_out: int, act: str, kernels: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = C_in // 2
        self.conv1 = BaseConv(C_in, hidden, 1, act=act)
        self.m = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernels])
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), C_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [m(x) for m in self.m], 1))


def spp_layers(C_in: int, C_out: int, hw: HW, N: int) -> List[Layer]:
    hidden = C_in // 2
    return [conv(C_in, hidden, 1, hw, N=N, name="conv1"), conv(4 * hidden, C_out, 1, hw, N=N, name="conv2")]


class Focus(nn.Module):
    """YOLOX's Focus stem: space-to-depth (``[B, C, H, W] -> [B, 4C, H/2, W/2]``) then a ``k x k`` BaseConv."""

    def __init__(self, C_in: int, C_out: int, kernel: int, act: str) -> None:
        super().__init__()
        self.conv = BaseConv(4 * C_in, C_out, kernel, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tl, tr = x[..., ::2, ::2], x[..., ::2, 1::2]
        bl, br = x[..., 1::2, ::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat([tl, bl, tr, br], 1))


# ---- the registry ---------------------------------------------------------------------------

DetOpBuilder = Callable[[int, int, int, str], nn.Module]
DetOpLayers = Callable[[int, int, int, HW, int], List[Layer]]


@dataclass(frozen=True)
class DetOpDef:
    """One registered detection op."""

    name: str  # registry key (lower case)
    build: DetOpBuilder  # ``(C_in, C_out, stride, act) -> nn.Module``
    layers: Optional[DetOpLayers]  # ``(C_in, C_out, stride, (H, W), N) -> [Layer]``; None for skip ops
    strides: Tuple[int, ...] = (1, 2)  # strides the op supports
    even_out: bool = False  # needs an even C_out (channel split)
    skip: bool = False  # identity: only where the shape is kept; no layers
    description: str = ""  # one line for docs and listings


DETECTION_OPS: Registry[DetOpDef] = Registry("detection op")


def _register(d: DetOpDef) -> None:
    DETECTION_OPS.register(d.name, d)


def get_det_op(name: str) -> DetOpDef:
    """The op called ``name``; unknown names list the known ones."""
    return DETECTION_OPS.get(name)


def list_det_ops() -> List[str]:
    return DETECTION_OPS.names()


def op_problem(name: str, C_in: int, C_out: int, stride: int) -> Optional[str]:
    """Why op ``name`` cannot run a ``C_in -> C_out`` layer with ``stride`` (None when it can)."""
    d = get_det_op(name)
    if stride not in d.strides:
        return f"op {d.name!r} cannot run with stride {stride} (it supports strides {list(d.strides)})"
    if d.skip and not (C_in == C_out and stride == 1):
        return (f"op {d.name!r} skips the layer, so it needs C_in == C_out and stride 1 "
                f"(got C_in={C_in}, C_out={C_out}, stride={stride})")
    if d.even_out and C_out % 2:
        return f"op {d.name!r} splits its channels in two, so it needs an even C_out (got {C_out})"
    return None


def build_det_op(name: str, C_in: int, C_out: int, stride: int, act: str = "silu") -> nn.Module:
    """Instantiate op ``name`` for a ``[B, C_in, H, W] -> [B, C_out, H/stride, W/stride]`` layer."""
    why = op_problem(name, C_in, C_out, stride)
    if why:
        raise ConfigError(why)
    return get_det_op(name).build(C_in, C_out, stride, act)


def det_op_layers(name: str, C_in: int, C_out: int, stride: int, in_hw: HW, N: int = 1,
                  prefix: str = "") -> List[Layer]:
    """The priced layers op ``name`` runs on a ``[N, C_in, H, W]`` input (empty for ``skip``)."""
    why = op_problem(name, C_in, C_out, stride)
    if why:
        raise ConfigError(why)
    d = get_det_op(name)
    if d.skip:
        return []
    out = d.layers(C_in, C_out, stride, (int(in_hw[0]), int(in_hw[1])), N)
    if prefix:
        out = [Layer(l.kind, l.N, l.K, l.C, l.R, l.S, l.P, l.Q, l.stride, l.groups, f"{prefix}.{l.name}")
               for l in out]
    return out


_register(DetOpDef(
    "conv3", lambda ci, co, s, a: BaseConv(ci, co, 3, s, act=a),
    lambda ci, co, s, hw, N: base_conv_layers(ci, co, 3, hw, s, 1, N, "conv"),
    description="regular 3x3 conv + BN + act"))
for _k in (3, 5):
    _register(DetOpDef(
        f"dw{_k}", (lambda k: lambda ci, co, s, a: DWConv(ci, co, k, s, act=a))(_k),
        (lambda k: lambda ci, co, s, hw, N: dwconv_layers(ci, co, k, hw, s, N, "op"))(_k),
        description=f"depthwise-separable: {_k}x{_k} depthwise + 1x1, BN + act each"))
    for _e in (3, 6):
        _register(DetOpDef(
            f"mb{_k}_e{_e}", (lambda k, e: lambda ci, co, s, a: MBConv(ci, co, s, k, e, a))(_k, _e),
            (lambda k, e: lambda ci, co, s, hw, N: mbconv_layers(ci, co, s, hw, N, k, e))(_k, _e),
            description=f"MBConv / inverted residual, {_k}x{_k} depthwise, expansion {_e}"))
_register(DetOpDef("ghost", lambda ci, co, s, a: GhostBottleneck(ci, co, s, a), ghost_layers, even_out=True,
                   description="GhostNet bottleneck, hidden width 2 * C_out"))
_register(DetOpDef("shuffle", lambda ci, co, s, a: ShuffleUnit(ci, co, s, a), shuffle_layers, even_out=True,
                   description="ShuffleNetV2 unit (split unit where the shape is kept)"))
for _n in (1, 2, 3):
    for _suffix, _sc, _dw, _what in (("", True, False, "shortcut"), ("_ns", False, False, "no shortcut"),
                                     ("_dw", True, True, "depthwise-separable 3x3, shortcut")):
        _register(DetOpDef(
            f"csp{_n}{_suffix}",
            (lambda n, sc, dw: lambda ci, co, s, a: CSPLayer(ci, co, n, sc, dw, a))(_n, _sc, _dw),
            (lambda n, dw: lambda ci, co, s, hw, N: csp_layers(ci, co, n, hw, dw, N))(_n, _dw),
            strides=(1,), even_out=True, description=f"CSP layer, {_n} bottleneck(s), {_what}"))
_register(DetOpDef("spp", lambda ci, co, s, a: SPPBottleneck(ci, co, a),
                   lambda ci, co, s, hw, N: spp_layers(ci, co, hw, N), strides=(1,),
                   description="SPP bottleneck: 1x1, max-pools 5/9/13 concatenated, 1x1"))
_register(DetOpDef("skip", lambda ci, co, s, a: nn.Identity(), None, strides=(1,), skip=True,
                   description="skip the layer (identity)"))
del _k, _e, _n, _suffix, _sc, _dw, _what
