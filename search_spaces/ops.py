"""Candidate operations of the searchable layers, and their layer lists for pricing.

The candidate set follows ProxylessNAS (Cai, Zhu and Han, "ProxylessNAS: Direct Neural
Architecture Search on Target Task and Hardware", ICLR 2019, arXiv 1812.00332), which is
also the backbone of DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and HDX (Hong et
al., DAC 2022, arXiv 2301.09312): MobileNetV2 inverted-residual blocks ("MBConv") with
kernel 3/5/7 and expansion 3/6, plus a ``zero`` op that skips the layer.

Every op is registered in :data:`OPS` with one constructor signature,
``build(C_in, C_out, stride) -> nn.Module``, whose module maps a ``[B, C_in, H, W]``
tensor to ``[B, C_out, ceil(H / stride), ceil(W / stride)]``.  Users add their own with
``@register_op("name")``.  Each op also answers which convolution-like layers it runs
(:func:`op_layers`), so that the cost model can price it: built-in ops know their layers
analytically; user ops without a ``layers`` function are traced once with forward hooks
(:func:`accelerators.extract.layers_from_module`).

Built-in names:

* ``mb{k}_e{e}`` for ``k`` in 3, 5, 7 and ``e`` in 1, 3, 6 -- MBConv: 1x1 expansion conv
  to ``e * C_in`` channels + BN + ReLU6 (absent when ``e == 1``), ``k x k`` depthwise conv
  with the stride + BN + ReLU6, 1x1 projection + BN; identity shortcut when ``stride == 1``
  and ``C_in == C_out``.  ``mb3_e1`` is ProxylessNAS' fixed first block ("MBConv1 3x3").
* ``conv3x3`` and ``conv1x1`` -- a plain conv + BN + ReLU6.
* ``zero`` -- a skip op: the layer is skipped (identity).  It exists only where the
  input and output shapes agree (``stride == 1`` and ``C_in == C_out``); elsewhere
  building it fails and :class:`~search_spaces.space.SearchSpace` refuses to offer it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from coexplore.common import ConfigError
from coexplore.common import Registry
from accelerators.extract import layers_from_module
from accelerators.workload import Layer, conv, conv_output_size, depthwise

logger = logging.getLogger(__name__)

#: ``build(C_in, C_out, stride) -> nn.Module``.
OpBuilder = Callable[[int, int, int], nn.Module]
#: ``layers(C_in, C_out, stride, in_hw, N) -> list[Layer]`` with ``in_hw = (H, W)``.
OpLayersFn = Callable[[int, int, int, Tuple[int, int], int], List[Layer]]
HW = Union[int, Tuple[int, int]]


@dataclass(frozen=True)
class OpDef:
    """One registered op."""

    name: str  # registry key (lower case)
    build: OpBuilder  # constructor ``(C_in, C_out, stride) -> nn.Module``
    layers: Optional[OpLayersFn] = None  # analytic layer list; None: traced with forward hooks
    skip: bool = False  # True for ops that skip the layer (identity; no layers; dropped by freeze)
    quantizable: Optional[bool] = None  # can run at given bit widths; None: decided by its conv/linear layers


OPS: Registry[OpDef] = Registry("op")


def register_op(name: str, *, layers: Optional[OpLayersFn] = None, skip: bool = False,
                quantizable: Optional[bool] = None,
                registry: Registry[OpDef] = OPS) -> Callable[[OpBuilder], OpBuilder]:
    """Decorator registering an op constructor ``(C_in, C_out, stride) -> nn.Module``.

    Example::

        @register_op("sep3")
        def sep3(C_in, C_out, stride):
            return nn.Sequential(nn.Conv2d(C_in, C_in, 3, stride, 1, groups=C_in, bias=False),
                                 nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out))

    Args:
        name: the op's name in search spaces (case-insensitive).
        layers: optional ``(C_in, C_out, stride, (H, W), N) -> list[Layer]``; without it the
            op's layers are found by tracing its module with forward hooks.
        skip: mark a skip op (identity; only offered where shapes agree).
        quantizable: whether the op can carry bit widths (its ``nn.Conv2d`` / ``nn.Linear``
            layers are fake-quantised by :func:`build_quant_op`); ``None`` decides by building
            it and looking for such layers.  Skip ops carry no layers, so they never refuse bits.
        registry: the registry to add to (tests use a private one).

    Returns:
        The decorator; it returns the constructor unchanged.
    """

    def deco(fn: OpBuilder) -> OpBuilder:
        registry.register(name, OpDef(name.lower(), fn, layers, skip, quantizable))
        return fn

    return deco


def get_op(name: str) -> OpDef:
    """The :class:`OpDef` registered as ``name``; unknown names list the known ones."""
    return OPS.get(name)


def list_ops() -> List[str]:
    """Names of every registered op, sorted."""
    return OPS.names()


def is_skip_op(name: str) -> bool:
    """True if ``name`` is a skip op such as ``zero``."""
    return get_op(name).skip


def build_op(name: str, C_in: int, C_out: int, stride: int) -> nn.Module:
    """Instantiate op ``name`` for a ``[B, C_in, H, W] -> [B, C_out, H/stride, W/stride]`` layer."""
    return get_op(name).build(C_in, C_out, stride)


def can_carry_bits(name: str, C_in: int, C_out: int, stride: int, in_hw: HW = 8) -> bool:
    """True if op ``name`` can run at given bit widths in a block of this geometry.

    Skip ops can (they run nothing, so the bits are moot); others need at least one
    ``nn.Conv2d`` / ``nn.Linear`` for :func:`build_quant_op` to quantise.
    """
    op = get_op(name)
    if op.skip:
        return True
    if op.quantizable is not None:
        return bool(op.quantizable)
    module = op.build(C_in, C_out, stride)
    return any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in module.modules())


def build_quant_op(name: str, C_in: int, C_out: int, stride: int, wbits: Sequence[int], abits: Sequence[int],
                   act_mode: str = "pact") -> nn.Module:
    """Op ``name`` with every conv / linear fake-quantised for quantisation-aware training.

    Weights: LSQ with one learnable step per entry of ``wbits`` (the first is the initial
    setting); activations: ``act_mode`` (PACT by default, initialised from the first training
    batch), at ``abits[0]`` initially.  The supernet switches or mixes the bits per forward
    (:func:`search_spaces.quant.mixed_bits`), a frozen network keeps the ones it is set to.

    Args:
        name: a registered op that can carry bits (:func:`can_carry_bits`).
        C_in, C_out, stride: its geometry.
        wbits, abits: the weight and activation bit widths it may run at (non-empty).
    """
    from .quant import quantize_model

    module = build_op(name, C_in, C_out, stride)
    if get_op(name).skip:
        return module
    if not can_carry_bits(name, C_in, C_out, stride):
        raise ConfigError(f"op {name!r} cannot carry bit widths: it runs no convolution or linear layer")
    return quantize_model(module, wbits[0], abits[0], act_mode=act_mode, first_input_bits=None, inplace=True,
                          weight_mode="lsq", wbit_choices=tuple(wbits), auto_calibrate=True)


def _hw(hw: HW) -> Tuple[int, int]:
    return (hw, hw) if isinstance(hw, int) else (int(hw[0]), int(hw[1]))


def op_layers(name: str, C_in: int, C_out: int, stride: int, in_hw: HW, N: int = 1,
              prefix: str = "") -> List[Layer]:
    """The priced layers op ``name`` runs on a ``[N, C_in, H, W]`` input.

    Args:
        name: a registered op.
        C_in, C_out, stride: the op's geometry, as given to its constructor.
        in_hw: input height and width ``(H, W)`` (an int means square).
        N: batch size carried by every layer.
        prefix: prepended (with a dot) to the layer names.

    Returns:
        Convolution, depthwise and linear layers in execution order (empty for skip ops).
    """
    op = get_op(name)
    H, W = _hw(in_hw)
    if op.skip:
        op.build(C_in, C_out, stride)  # raises where shapes disagree
        return []
    if op.layers is not None:
        out = op.layers(C_in, C_out, stride, (H, W), N)
    else:
        # Traced once on one image; every layer then carries the requested batch.
        module = op.build(C_in, C_out, stride)
        out = [replace(l, N=N) for l in layers_from_module(module, (1, C_in, H, W))]
    if prefix:
        out = [replace(l, name=f"{prefix}.{l.name}" if l.name else prefix) for l in out]
    return out


# ---- building blocks ---------------------------------------------------------------------

class ConvBNAct(nn.Sequential):
    """``k x k`` convolution (no bias, 'same' padding) + BatchNorm + optional ReLU6.

    Shapes: ``[B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        mods: List[nn.Module] = [nn.Conv2d(C_in, C_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                                 nn.BatchNorm2d(C_out)]
        if act:
            mods.append(nn.ReLU6(inplace=True))
        super().__init__(*mods)


class MBConv(nn.Module):
    """MobileNetV2 inverted residual block (Sandler et al., CVPR 2018), as in ProxylessNAS.

    Shapes: ``[B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]``.

    Args:
        C_in, C_out: channels.
        stride: stride of the depthwise conv.
        kernel: depthwise kernel size.
        expand: expansion ratio; the hidden width is ``round(C_in * expand)`` (no 1x1
            expansion conv when ``expand == 1``).
    """

    def __init__(self, C_in: int, C_out: int, stride: int, kernel: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(C_in * expand))
        self.expand = ConvBNAct(C_in, hidden, 1) if expand != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBNAct(hidden, C_out, 1, act=False)
        self.residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def mbconv_layers(C_in: int, C_out: int, stride: int, in_hw: Tuple[int, int], N: int, kernel: int,
                  expand: int) -> List[Layer]:
    """Layers of :class:`MBConv`: expansion (if any), depthwise, projection."""
    H, W = in_hw
    out_hw = (conv_output_size(H, kernel, stride, kernel // 2), conv_output_size(W, kernel, stride, kernel // 2))
    hidden = int(round(C_in * expand))
    out: List[Layer] = []
    if expand != 1:
        out.append(conv(C_in, hidden, 1, (H, W), N=N, name="expand"))
    out.append(depthwise(hidden, kernel, out_hw, stride=stride, N=N, name="depthwise"))
    out.append(conv(hidden, C_out, 1, out_hw, N=N, name="project"))
    return out


def _register_mbconv(kernel: int, expand: int) -> None:
    def build(C_in: int, C_out: int, stride: int) -> nn.Module:
        return MBConv(C_in, C_out, stride, kernel, expand)

    def layers(C_in: int, C_out: int, stride: int, in_hw: Tuple[int, int], N: int) -> List[Layer]:
        return mbconv_layers(C_in, C_out, stride, in_hw, N, kernel, expand)

    build.__doc__ = f"MBConv, {kernel}x{kernel} depthwise, expansion {expand}."
    register_op(f"mb{kernel}_e{expand}", layers=layers, quantizable=True)(build)


for _k in (3, 5, 7):
    for _e in (1, 3, 6):
        _register_mbconv(_k, _e)
del _k, _e


def _register_conv(kernel: int) -> None:
    def build(C_in: int, C_out: int, stride: int) -> nn.Module:
        return ConvBNAct(C_in, C_out, kernel, stride)

    def layers(C_in: int, C_out: int, stride: int, in_hw: Tuple[int, int], N: int) -> List[Layer]:
        out_hw = tuple(conv_output_size(x, kernel, stride, kernel // 2) for x in in_hw)
        return [conv(C_in, C_out, kernel, out_hw, stride=stride, N=N, name="conv")]

    build.__doc__ = f"Plain {kernel}x{kernel} conv + BN + ReLU6."
    register_op(f"conv{kernel}x{kernel}", layers=layers, quantizable=True)(build)


for _k in (1, 3):
    _register_conv(_k)
del _k


@register_op("zero", skip=True)
def zero(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Skip the layer: identity, defined only where input and output shapes agree."""
    if C_in != C_out or stride != 1:
        raise ConfigError(f"op 'zero' skips the layer, so it needs C_in == C_out and stride 1; "
                          f"got C_in={C_in}, C_out={C_out}, stride={stride}")
    return nn.Identity()


def candidate_names(kernels: Sequence[int] = (3, 5, 7), expands: Sequence[int] = (3, 6),
                    zero_op: bool = True) -> Tuple[str, ...]:
    """The ProxylessNAS candidate list ``mb{k}_e{e}`` (kernel-major), plus ``zero`` if asked."""
    names = tuple(f"mb{k}_e{e}" for k in kernels for e in expands)
    return names + (("zero",) if zero_op else ())
