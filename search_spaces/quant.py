"""Fake quantisation of convolutions and linear layers: the shared base of low-bit deployment.

Simulated ("fake") integer quantisation with straight-through rounding, as used by
quantisation-aware training and by the data-free quantisation methods of
:mod:`coexplore.datafree` (GDFQ, Xu et al., ECCV 2020; ZeroQ, Cai et al., CVPR 2020):

* **weights**: asymmetric, per output channel, with the range of each channel's current
  weights (min/max, widened to include 0 so that the integer zero point lies on the grid):
  ``q = clamp(round(w / s) + z, 0, 2^b - 1)``, ``w_q = (q - z) * s``.  The rounding runs in
  :func:`torch.fake_quantize_per_channel_affine`, whose backward pass is the straight-through
  estimator (gradient 1 inside the range, 0 outside; the min/max range holds every weight).
* **activations** (the input of each wrapped layer): per tensor, with one of three range rules
  (``act_mode``):

  - ``"minmax"``: a calibrated range -- the mean of per-batch min/max over calibration batches
    (:func:`calibrate`), optionally tracked during training as an exponential moving average
    (:func:`observing`, GDFQ's running range); the rounding is
    :func:`torch.fake_quantize_per_tensor_affine` (straight-through);
  - ``"lsq"``: a learnable step size and zero point (LSQ, Esser et al., ICLR 2020; LSQ+'s
    learnable offset), initialised from the calibrated range and trained with torch's
    ``_fake_quantize_learnable_per_tensor_affine`` (the op behind
    ``torch.ao.quantization._LearnableFakeQuantize``) with LSQ's gradient scale
    ``1 / sqrt(numel * qmax)``;
  - ``"pact"``: a learnable clipping level ``alpha`` (PACT, Choi et al., 2018): the input is
    clipped to ``[0, alpha]`` (``[-alpha, alpha]`` when the calibration saw negative values) and
    quantised with the straight-through op; ``alpha`` receives PACT's gradient (1 where the input
    was clipped above, -1 where clipped below).

* **weights, LSQ** (``weight_mode="lsq"``, the quantisation-aware training and mixed-precision
  supernet path): symmetric, per output channel, with one *learnable* step size per bit width
  (LSQ, Esser et al., ICLR 2020): ``w_q = clamp(round(w / s), -2^(b-1), 2^(b-1) - 1) * s``,
  ``s`` initialised on first use to LSQ's ``2 mean|w| / sqrt(2^(b-1) - 1)`` per channel and
  trained through torch's ``_fake_quantize_learnable_per_channel_affine`` (straight-through
  rounding, LSQ's step gradient and gradient scale ``1 / sqrt(numel_k * Qp)``).  A layer built
  with several ``wbit_choices`` keeps one step per choice, so the choices share the weights.
* **bit mixtures** (:func:`mixed_bits`): inside the block a layer's weight is
  ``sum_k g_k Q_{b_k}(w)`` and its input ``sum_k h_k Q_{a_k}(x)`` for gates ``g``, ``h`` (scalar
  tensors) -- EdMIPS' composite convolution (Cai and Vasconcelos, CVPR 2020): one convolution
  whatever the number of bit choices, with gradients to every gate.  The supernet
  (:mod:`search_spaces.supernet`) sets the gates from its path mode.
* **bit widths**: any of 2..8 bits, set per layer (constructor arguments, :meth:`QuantConv2d.set_bits`,
  :func:`set_layer_bits`); 16 and 32 mean floating point: the tensor passes unchanged.  A
  layer's bits travel in its ``state_dict`` (as extra state), so a checkpoint records them and
  loads with ``torch.load(weights_only=True)``.
* Biases stay in floating point (the 32-bit accumulator domain); BatchNorm is not folded.

:class:`QuantConv2d` and :class:`QuantLinear` are subclasses of ``nn.Conv2d`` / ``nn.Linear``
usable on their own (bits are constructor arguments), so a candidate op of a choice block can be
built from them directly and the workload tracer still sees a convolution.  Everything is
deterministic and device-agnostic (quantisation parameters live on the weight's device).
:func:`quantize_model` wraps every ``Conv2d`` / ``Linear`` of a built network (e.g. one from
:func:`search_spaces.build_network`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from coexplore.common import ConfigError

#: Integer bit widths a layer may take.
INT_BITS: Tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
#: Bit widths that mean floating point (no quantisation).
FLOAT_BITS: Tuple[int, ...] = (16, 32)
#: Every accepted bit width.
ALLOWED_BITS: Tuple[int, ...] = INT_BITS + FLOAT_BITS
#: Activation range rules.
ACT_MODES: Tuple[str, ...] = ("minmax", "lsq", "pact")
#: Weight range rules: per-channel min/max (post-training, data-free) or LSQ's learnable step (QAT).
WEIGHT_MODES: Tuple[str, ...] = ("minmax", "lsq")
#: One gated term of a bit mixture: ``(bits, gate, probe)``; a probe's quantised tensor is
#: detached, so it only feeds its gate's gradient (the gate's value is then 0).
BitGate = Tuple[int, torch.Tensor, bool]
# The smallest step size: a channel whose weights are all equal (or all zero) still gets a grid.
_EPS = 1e-8


def check_bits(bits: object, name: str = "bits") -> int:
    """``bits`` as an ``int`` if it is an allowed bit width (2..8, or 16/32 for float).

    Raises:
        ConfigError: not an integer in :data:`ALLOWED_BITS`, naming ``name`` and the allowed values.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in ALLOWED_BITS:
        raise ConfigError(f"{name} must be one of {list(ALLOWED_BITS)} (16 and 32 mean float), got {bits!r}")
    return int(bits)


def check_act_mode(mode: object, name: str = "act_mode") -> str:
    if not isinstance(mode, str) or mode not in ACT_MODES:
        raise ConfigError(f"{name} must be one of {list(ACT_MODES)}, got {mode!r}")
    return mode


def check_weight_mode(mode: object, name: str = "weight_mode") -> str:
    if not isinstance(mode, str) or mode not in WEIGHT_MODES:
        raise ConfigError(f"{name} must be one of {list(WEIGHT_MODES)}, got {mode!r}")
    return mode


def is_float_bits(bits: int) -> bool:
    """True for the bit widths that mean floating point (16, 32)."""
    return bits in FLOAT_BITS


def qmax_of(bits: int) -> int:
    """The largest integer code of an unsigned ``bits``-bit grid: ``2^bits - 1``."""
    return (1 << bits) - 1


# --------------------------------------------------------------------------------------------------
# Weights: asymmetric, per output channel
# --------------------------------------------------------------------------------------------------


def weight_qparams(weight: torch.Tensor, bits: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel asymmetric quantisation parameters of a weight tensor.

    The range of channel ``k`` is ``[min(0, min w_k), max(0, max w_k)]`` (0 is included so the
    integer zero point lies in ``[0, 2^bits - 1]``).

    Args:
        weight: ``K x ...`` (a conv's ``K x C/g x R x S`` or a linear's ``K x C``).
        bits: 2..8.

    Returns:
        ``(scale, zero_point)``: float32 ``K`` (> 0) and int32 ``K`` in ``[0, 2^bits - 1]``, on
        ``weight``'s device.
    """
    w = weight.detach().reshape(weight.shape[0], -1).float()
    lo = w.min(dim=1).values.clamp(max=0.0)
    hi = w.max(dim=1).values.clamp(min=0.0)
    qmax = qmax_of(bits)
    scale = ((hi - lo) / qmax).clamp(min=_EPS)
    zero_point = torch.round(-lo / scale).clamp(0, qmax).to(torch.int32)
    return scale, zero_point


def fake_quant_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantise-dequantise ``weight`` per output channel (straight-through gradient).

    Args:
        weight: ``K x ...``.
        bits: an allowed bit width; 16 / 32 return ``weight`` unchanged.

    Returns:
        A tensor of ``weight``'s shape whose channel ``k`` takes at most ``2^bits`` values.
    """
    if is_float_bits(bits):
        return weight
    scale, zero_point = weight_qparams(weight, bits)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, 0, qmax_of(bits))


def weight_codes(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The integer codes of ``weight`` on its per-channel grid (what an accelerator stores).

    Args:
        weight: ``K x ...``.
        bits: 2..8.

    Returns:
        int64 tensor of ``weight``'s shape, values in ``[0, 2^bits - 1]``.
    """
    if is_float_bits(bits):
        raise ConfigError(f"weight_codes needs integer bits {list(INT_BITS)}, got {bits}")
    scale, zero_point = weight_qparams(weight, bits)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    q = torch.round(weight.detach().float() / scale.view(shape)) + zero_point.view(shape)
    return q.clamp(0, qmax_of(bits)).to(torch.int64)


class LSQWeightQuantizer(nn.Module):
    """Symmetric per-output-channel weight quantisation with a learnable step per bit width (LSQ).

    Shapes: ``forward(weight [K, ...], bits) -> [K, ...]``.

    Args:
        out_channels: ``K``, the number of step sizes per bit width.
        bit_choices: the bit widths this layer may run at (float widths need no step).
    """

    def __init__(self, out_channels: int, bit_choices: Sequence[int]) -> None:
        super().__init__()
        choices = tuple(dict.fromkeys(check_bits(b, "wbits") for b in bit_choices))
        self.bit_choices = choices
        self._int = tuple(b for b in choices if not is_float_bits(b))
        for b in self._int:
            # step size per output channel at b bits; set from the weights on first use
            self.register_parameter(f"step_{b}", nn.Parameter(torch.ones(out_channels)))
        self.register_buffer("initialised", torch.zeros(len(self._int), dtype=torch.bool))

    @staticmethod
    def qrange(bits: int) -> Tuple[int, int]:
        """``(Qn, Qp)``: the signed integer grid ``[-2^(b-1), 2^(b-1) - 1]``."""
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def step(self, bits: int) -> nn.Parameter:
        return getattr(self, f"step_{bits}")

    @torch.no_grad()
    def init_steps(self, weight: torch.Tensor, bits: Optional[int] = None) -> None:
        """LSQ's initial step ``2 mean|w_k| / sqrt(Qp)`` for ``bits`` (default: every choice)."""
        w = weight.detach().reshape(weight.shape[0], -1).float().abs().mean(1)
        for i, b in enumerate(self._int):
            if bits is None or b == bits:
                self.step(b).copy_((2 * w / math.sqrt(self.qrange(b)[1])).clamp(min=_EPS))
                self.initialised[i] = True

    def forward(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        if is_float_bits(bits):
            return weight
        if bits not in self._int:
            raise ConfigError(f"wbits={bits} is not among this layer's bit choices {list(self.bit_choices)}")
        i = self._int.index(bits)
        if not bool(self.initialised[i]):
            self.init_steps(weight, bits)
        qn, qp = self.qrange(bits)
        grad_factor = 1.0 / math.sqrt(weight[0].numel() * qp)
        zero = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        return torch._fake_quantize_learnable_per_channel_affine(
            weight, self.step(bits).abs() + _EPS, zero, 0, qn, qp, grad_factor)

    def extra_repr(self) -> str:
        return f"bit_choices={list(self.bit_choices)}"


def _mix(gates: Sequence[BitGate], quantize: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``sum_k gate_k * quantize(bits_k)``; probes' quantised tensors are detached."""
    out = None
    for bits, gate, probe in gates:
        q = quantize(bits)
        if gate is None:  # a single path, unweighted
            return q
        y = gate * (q.detach() if probe else q)
        out = y if out is None else out + y
    return out


# --------------------------------------------------------------------------------------------------
# Activations: per tensor, calibrated or learnable
# --------------------------------------------------------------------------------------------------


class ActQuantizer(nn.Module):
    """Per-tensor fake quantisation of activations with a calibrated or learnable range.

    Shapes: any ``[B, ...]`` tensor maps to a tensor of the same shape.

    The running range (buffers ``lo``, ``hi``) is updated only while :attr:`observe` is on
    (:func:`calibrate`, :func:`observing`).  Before any range has been observed the quantiser
    uses each batch's own min/max (dynamic quantisation), so an uncalibrated layer still runs.

    Args:
        bits: 2..8, or 16 / 32 for float passthrough.
        mode: ``"minmax"``, ``"lsq"`` or ``"pact"`` (see the module docstring).
    """

    def __init__(self, bits: int = 8, mode: str = "minmax") -> None:
        super().__init__()
        self.bits = check_bits(bits, "abits")
        self.mode = check_act_mode(mode)
        self.register_buffer("lo", torch.zeros(()))  # observed lower end of the range
        self.register_buffer("hi", torch.zeros(()))  # observed upper end of the range
        self.register_buffer("observed", torch.zeros((), dtype=torch.long))  # batches seen
        self.observe = False  # update lo/hi from the batches that pass
        self.auto_calibrate = False  # uncalibrated and training: take the range of the first batch (QAT)
        self._mix: Optional[Sequence[BitGate]] = None  # set by mixed_bits(): a gated mixture of bit widths
        self.momentum: Optional[float] = None  # None: cumulative mean; else EMA weight of a new batch
        if self.mode == "lsq":
            self.scale = nn.Parameter(torch.ones(1))  # step size (LSQ); shape [1], as torch's op wants
            self.zero_point = nn.Parameter(torch.zeros(1))  # offset on the integer grid (LSQ+), shape [1]
        elif self.mode == "pact":
            self.alpha = nn.Parameter(torch.ones(()))  # clipping level (PACT)
            self.register_buffer("signed", torch.zeros((), dtype=torch.bool))  # clip to [-alpha, alpha]

    @property
    def calibrated(self) -> bool:
        return bool(self.observed.item() > 0)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mode={self.mode}"

    def set_bits(self, bits: int) -> None:
        """Change the bit width; an LSQ step size is rescaled so the range stays the same."""
        bits = check_bits(bits, "abits")
        if self.mode == "lsq" and not is_float_bits(bits) and not is_float_bits(self.bits):
            with torch.no_grad():
                ratio = qmax_of(self.bits) / qmax_of(bits)
                self.scale.mul_(ratio)
                self.zero_point.div_(ratio)
        self.bits = bits

    @torch.no_grad()
    def _update_range(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().min().float(), x.detach().max().float()
        n = int(self.observed.item())
        if n == 0:
            self.lo.copy_(lo)
            self.hi.copy_(hi)
        elif self.momentum is None:
            self.lo.mul_(n / (n + 1)).add_(lo / (n + 1))
            self.hi.mul_(n / (n + 1)).add_(hi / (n + 1))
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)
        self.observed.add_(1)

    def init_from_range(self) -> None:
        """Set the learnable parameters (LSQ step and offset, PACT's alpha) from the observed range."""
        if not self.calibrated:
            return
        lo, hi = float(self.lo.clamp(max=0.0)), float(self.hi.clamp(min=0.0))
        with torch.no_grad():
            if self.mode == "lsq" and not is_float_bits(self.bits):
                s = max((hi - lo) / qmax_of(self.bits), _EPS)
                self.scale.fill_(s)
                self.zero_point.fill_(min(max(round(-lo / s), 0), qmax_of(self.bits)))
            elif self.mode == "pact":
                self.signed.fill_(lo < 0)
                self.alpha.fill_(max(hi, -lo, _EPS))

    def _range(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.calibrated:
            return self.lo, self.hi
        return x.detach().min().float(), x.detach().max().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mix is not None:
            if self.mode == "lsq":
                raise ConfigError("activation bit mixtures need act_mode 'pact' or 'minmax' (one LSQ step "
                                  "belongs to one bit width)")
            if self.observe:
                self._update_range(x)
            self._auto_init(x)
            return _mix(self._mix, lambda b: self._quantize(x, b))
        if is_float_bits(self.bits):
            return x
        if self.observe:
            self._update_range(x)
        self._auto_init(x)
        return self._quantize(x, self.bits)

    def _auto_init(self, x: torch.Tensor) -> None:
        if self.auto_calibrate and self.training and not self.calibrated:
            self._update_range(x)
            self.init_from_range()

    def _quantize(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        if is_float_bits(bits):
            return x
        qmax = qmax_of(bits)
        if self.mode == "lsq" and self.calibrated:
            grad_factor = 1.0 / math.sqrt(x.numel() / max(x.shape[0], 1) * qmax)
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, self.scale.abs() + _EPS, self.zero_point, 0, qmax, grad_factor)
        if self.mode == "pact" and self.calibrated:
            alpha = self.alpha.abs() + _EPS
            if bool(self.signed):
                y = torch.maximum(torch.minimum(x, alpha), -alpha)
                scale = (2 * alpha / qmax).detach()
                zp = torch.round(alpha.detach() / scale).to(torch.int32)
            else:
                y = torch.minimum(F.relu(x), alpha)
                scale, zp = (alpha / qmax).detach(), torch.zeros((), dtype=torch.int32, device=x.device)
            return torch.fake_quantize_per_tensor_affine(y, scale.reshape(()), zp.reshape(()), 0, qmax)
        lo, hi = self._range(x)
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        scale = ((hi - lo) / qmax).clamp(min=_EPS)
        zp = torch.round(-lo / scale).clamp(0, qmax).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale.to(x.device), zp.to(x.device), 0, qmax)


# --------------------------------------------------------------------------------------------------
# Quantised layers
# --------------------------------------------------------------------------------------------------


class _QuantMixin:
    """Bits bookkeeping shared by :class:`QuantConv2d` and :class:`QuantLinear`."""

    wbits: int
    act_quant: ActQuantizer
    w_quant: Optional[LSQWeightQuantizer]
    _wmix: Optional[Sequence[BitGate]]

    def _copy_float(self, src: nn.Module):
        """Take ``src``'s weight, bias, device and train/eval mode (``from_float``'s last step); returns self."""
        with torch.no_grad():
            self.weight.copy_(src.weight)
            if src.bias is not None:
                self.bias.copy_(src.bias)
        self.act_quant.to(src.weight.device)
        self.train(src.training)
        return self

    def _init_quant(self, out_channels: int, wbits: int, abits: int, act_mode: str, weight_mode: str,
                    wbit_choices: Optional[Sequence[int]]) -> None:
        self.wbits = check_bits(wbits, "wbits")
        self.act_quant = ActQuantizer(abits, act_mode)
        self.weight_mode = check_weight_mode(weight_mode)
        self._wmix = None
        if self.weight_mode == "lsq":
            self.w_quant = LSQWeightQuantizer(out_channels, tuple(wbit_choices or ()) + (self.wbits,))
        else:
            if wbit_choices is not None:
                raise ConfigError("wbit_choices needs weight_mode 'lsq' (one learnable step per bit width)")
            self.w_quant = None

    @property
    def wbit_choices(self) -> Tuple[int, ...]:
        """The weight bit widths this layer can run at (``()``: any, for min/max weights)."""
        return self.w_quant.bit_choices if self.w_quant is not None else ()

    @property
    def abits(self) -> int:
        return self.act_quant.bits

    @property
    def bits(self) -> Tuple[int, int]:
        """``(wbits, abits)``."""
        return self.wbits, self.act_quant.bits

    def set_bits(self, wbits: Optional[int] = None, abits: Optional[int] = None) -> None:
        """Change the weight and/or activation bit width (``None`` keeps the current one)."""
        if wbits is not None:
            wbits = check_bits(wbits, "wbits")
            if self.w_quant is not None and wbits not in self.w_quant.bit_choices and not is_float_bits(wbits):
                raise ConfigError(f"wbits={wbits} is not among this layer's bit choices {list(self.wbit_choices)}")
            self.wbits = wbits
        if abits is not None:
            self.act_quant.set_bits(abits)

    def quantized_weight(self) -> torch.Tensor:
        """The weight after fake quantisation (what the forward pass uses), same shape."""
        if self._wmix is not None:
            return _mix(self._wmix, self._quantize_weight)
        return self._quantize_weight(self.wbits)

    def _quantize_weight(self, bits: int) -> torch.Tensor:
        if self.w_quant is not None:
            return self.w_quant(self.weight, bits)  # type: ignore[attr-defined]
        return fake_quant_weight(self.weight, bits)  # type: ignore[attr-defined]

    def get_extra_state(self) -> Dict[str, object]:
        state: Dict[str, object] = {"wbits": self.wbits, "abits": self.act_quant.bits, "act_mode": self.act_quant.mode}
        if self.weight_mode != "minmax":  # written only when not the default, so older states are unchanged
            state["weight_mode"] = self.weight_mode
        return state

    def set_extra_state(self, state: Mapping[str, object]) -> None:
        if not isinstance(state, Mapping) or state.get("act_mode") != self.act_quant.mode \
                or state.get("weight_mode", "minmax") != self.weight_mode:
            raise ConfigError(f"quantised layer state {state!r} does not match this layer's act_mode "
                              f"{self.act_quant.mode!r} and weight_mode {self.weight_mode!r}")
        self.set_bits(int(state["wbits"]), int(state["abits"]))  # type: ignore[arg-type]


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` whose input and weight are fake-quantised.

    Shapes: ``[B, C_in, H, W] -> [B, C_out, H_out, W_out]``, as ``nn.Conv2d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode: as ``nn.Conv2d``.
        wbits: weight bits (2..8, or 16/32 for float), per output channel, asymmetric.
        abits: input-activation bits (2..8, or 16/32), per tensor.
        act_mode: the activation range rule, one of :data:`ACT_MODES`.
        weight_mode: the weight range rule, one of :data:`WEIGHT_MODES`.
        wbit_choices: with ``weight_mode="lsq"``, every weight bit width the layer may be set to
            (one learnable step each); ``wbits`` is always included.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, wbits: int = 8,
                 abits: int = 8, act_mode: str = "minmax", weight_mode: str = "minmax",
                 wbit_choices: Optional[Sequence[int]] = None, device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        self._init_quant(out_channels, wbits, abits, act_mode, weight_mode, wbit_choices)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, wbits: int, abits: int, act_mode: str = "minmax",
                   weight_mode: str = "minmax", wbit_choices: Optional[Sequence[int]] = None) -> "QuantConv2d":
        """A quantised copy of ``conv`` (weights and bias copied, same device and dtype)."""
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode, wbits=wbits, abits=abits, act_mode=act_mode,
                weight_mode=weight_mode, wbit_choices=wbit_choices,
                device=conv.weight.device, dtype=conv.weight.dtype)
        return q._copy_float(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quant(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, wbits={self.wbits}, abits={self.abits}"


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` whose input and weight are fake-quantised.

    Shapes: ``[B, ..., in_features] -> [B, ..., out_features]``.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        wbits, abits, act_mode: as :class:`QuantConv2d`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, wbits: int = 8, abits: int = 8,
                 act_mode: str = "minmax", weight_mode: str = "minmax", wbit_choices: Optional[Sequence[int]] = None,
                 device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(out_features, wbits, abits, act_mode, weight_mode, wbit_choices)

    @classmethod
    def from_float(cls, linear: nn.Linear, wbits: int, abits: int, act_mode: str = "minmax",
                   weight_mode: str = "minmax", wbit_choices: Optional[Sequence[int]] = None) -> "QuantLinear":
        """A quantised copy of ``linear``."""
        q = cls(linear.in_features, linear.out_features, linear.bias is not None, wbits=wbits, abits=abits,
                act_mode=act_mode, weight_mode=weight_mode, wbit_choices=wbit_choices,
                device=linear.weight.device, dtype=linear.weight.dtype)
        return q._copy_float(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quant(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, wbits={self.wbits}, abits={self.abits}"


QUANT_LAYERS = (QuantConv2d, QuantLinear)


# --------------------------------------------------------------------------------------------------
# Whole networks
# --------------------------------------------------------------------------------------------------


def quant_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every quantised layer of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QUANT_LAYERS)]


def quantize_model(model: nn.Module, wbits: int, abits: int, *, act_mode: str = "minmax",
                   first_input_bits: Optional[int] = 8, layer_bits: Optional[Mapping[str, Tuple[int, int]]] = None,
                   inplace: bool = False, weight_mode: str = "minmax", wbit_choices: Optional[Sequence[int]] = None,
                   auto_calibrate: bool = False) -> nn.Module:
    """Replace every ``nn.Conv2d`` / ``nn.Linear`` of ``model`` by its quantised wrapper.

    Args:
        model: a built network (e.g. from :func:`search_spaces.build_network`); copied unless
            ``inplace``.
        wbits: weight bits of every layer (2..8; 16/32 float).
        abits: input-activation bits of every layer.
        act_mode: one of :data:`ACT_MODES`.
        first_input_bits: the input bits of the first layer in module order, which sees the
            image (an 8-bit signal already; GDFQ and ZeroQ leave the image unquantised); ``None``
            uses ``abits`` there too.
        layer_bits: per-layer overrides ``{qualified name: (wbits, abits)}``; unknown names fail.
        inplace: modify ``model`` itself.
        weight_mode: one of :data:`WEIGHT_MODES` (``"lsq"`` for quantisation-aware training).
        wbit_choices: with ``"lsq"``, the weight bit widths every layer may later be set to.
        auto_calibrate: activation quantisers take their range from the first training batch
            (LSQ's and PACT's data-driven initialisation), so no separate calibration pass is needed.

    Returns:
        The quantised network (same forward signature); BatchNorm and other modules unchanged.

    Raises:
        ConfigError: bad bits or act_mode, a layer name in ``layer_bits`` that is not a
            Conv2d/Linear of the model, or a model without any Conv2d/Linear.
    """
    wbits, abits = check_bits(wbits, "wbits"), check_bits(abits, "abits")
    act_mode = check_act_mode(act_mode)
    weight_mode = check_weight_mode(weight_mode)
    if first_input_bits is not None:
        first_input_bits = check_bits(first_input_bits, "first_input_bits")
    net = model if inplace else copy.deepcopy(model)
    targets = [(n, m) for n, m in net.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, QUANT_LAYERS)]
    if not targets and not quant_layers(net):
        raise ConfigError("quantize_model: the model has no Conv2d or Linear layer to quantise")
    overrides = dict(layer_bits or {})
    names = [n for n, _ in targets]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"layer_bits: unknown layer(s) {unknown}; quantisable layers: {names}")
    for i, (name, mod) in enumerate(targets):
        wb, ab = overrides.get(name, (wbits, first_input_bits if i == 0 and first_input_bits else abits))
        wb, ab = check_bits(wb, f"layer_bits[{name!r}] wbits"), check_bits(ab, f"layer_bits[{name!r}] abits")
        cls = QuantConv2d if isinstance(mod, nn.Conv2d) else QuantLinear
        q = cls.from_float(mod, wb, ab, act_mode, weight_mode, wbit_choices)
        q.act_quant.auto_calibrate = bool(auto_calibrate)
        if not name:  # the model is itself one conv / linear layer: its replacement is the result
            return q
        _set_submodule(net, name, q)
    return net


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def layer_bits(model: nn.Module) -> Dict[str, Tuple[int, int]]:
    """``{qualified name: (wbits, abits)}`` of every quantised layer, in module order."""
    return {n: m.bits for n, m in quant_layers(model)}  # type: ignore[attr-defined]


def set_layer_bits(model: nn.Module, bits: Mapping[str, Tuple[Optional[int], Optional[int]]]) -> None:
    """Set the bits of named quantised layers (``None`` keeps a value); unknown names fail."""
    layers = dict(quant_layers(model))
    unknown = sorted(set(bits) - set(layers))
    if unknown:
        raise ConfigError(f"set_layer_bits: unknown layer(s) {unknown}; quantised layers: {list(layers)}")
    for name, (wb, ab) in bits.items():
        layers[name].set_bits(wb, ab)  # type: ignore[attr-defined]


@contextlib.contextmanager
def mixed_bits(layers: Sequence[nn.Module], weight_gates: Optional[Sequence[BitGate]] = None,
               act_gates: Optional[Sequence[BitGate]] = None) -> Iterator[None]:
    """Inside the block the quantised ``layers`` run gated mixtures of bit widths.

    A layer's weight becomes ``sum_k g_k Q_{b_k}(w)`` and its input ``sum_k h_k Q_{a_k}(x)``
    (EdMIPS' composite convolution, Cai and Vasconcelos, CVPR 2020): with straight-through
    gates of value one-hot the forward pass is exactly the chosen bit width, and every gate
    still gets its gradient.  ``None`` leaves that side at the layer's own bits.

    Args:
        layers: :class:`QuantConv2d` / :class:`QuantLinear` modules (e.g. ``quant_layers(op)``).
        weight_gates, act_gates: ``(bits, gate, probe)`` terms, gates scalar tensors.
    """
    saved = [(m._wmix, m.act_quant._mix) for m in layers]  # type: ignore[attr-defined]
    try:
        for m in layers:
            if weight_gates is not None:
                m._wmix = weight_gates  # type: ignore[attr-defined]
            if act_gates is not None:
                m.act_quant._mix = act_gates  # type: ignore[attr-defined]
        yield
    finally:
        for m, (w, a) in zip(layers, saved):
            m._wmix, m.act_quant._mix = w, a  # type: ignore[attr-defined]


def act_quantizers(model: nn.Module) -> List[ActQuantizer]:
    return [m for m in model.modules() if isinstance(m, ActQuantizer)]


@contextlib.contextmanager
def observing(model: nn.Module, momentum: Optional[float] = None) -> Iterator[nn.Module]:
    """Inside the block every activation quantiser updates its range from the batches that pass.

    Args:
        model: a quantised network.
        momentum: ``None``: cumulative mean of per-batch min/max (calibration); a number in
            (0, 1]: exponential moving average with that weight on each new batch (GDFQ tracks
            its ranges this way during fine-tuning, with 0.01).
    """
    qs = act_quantizers(model)
    saved = [(q.observe, q.momentum) for q in qs]
    try:
        for q in qs:
            q.observe, q.momentum = True, momentum
        yield model
    finally:
        for q, (o, m) in zip(qs, saved):
            q.observe, q.momentum = o, m


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], forward: Optional[Callable] = None,
              reset: bool = True) -> nn.Module:
    """Calibrate every activation range on ``batches`` (eval mode, no gradient).

    The range of each quantiser is the mean over batches of each batch's min and max; learnable
    parameters (LSQ, PACT) are then initialised from it.

    Args:
        model: a quantised network; its train/eval mode is restored afterwards.
        batches: iterable of input tensors ``[B, C, H, W]`` (or ``(x, y)`` pairs; ``y`` unused).
        forward: how to run a batch (default ``model(x)``).
        reset: forget earlier observations first.

    Returns:
        ``model``.
    """
    qs = act_quantizers(model)
    if reset:
        for q in qs:
            q.observed.zero_()
    was_training = model.training
    model.eval()
    run = forward or model
    seen = 0
    try:
        with observing(model, None):
            for b in batches:
                x = b[0] if isinstance(b, (tuple, list)) else b
                run(x)
                seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise ConfigError("calibrate: no calibration batches were given")
    for q in qs:
        q.init_from_range()
    return model


def bit_summary(model: nn.Module) -> Dict[str, object]:
    """Counts of layers per ``(wbits, abits)`` and the weight-bit-weighted parameter size (bits)."""
    counts: Dict[str, int] = {}
    total_bits = 0
    for _, m in quant_layers(model):
        key = f"w{m.wbits}a{m.abits}"  # type: ignore[attr-defined]
        counts[key] = counts.get(key, 0) + 1
        total_bits += m.weight.numel() * m.wbits  # type: ignore[attr-defined]
    return {"layers": counts, "weight_bits_total": int(total_bits)}


__all__: Sequence[str] = [
    "ACT_MODES", "ALLOWED_BITS", "ActQuantizer", "BitGate", "FLOAT_BITS", "INT_BITS", "LSQWeightQuantizer",
    "QuantConv2d", "QuantLinear", "WEIGHT_MODES", "act_quantizers", "check_weight_mode", "mixed_bits", "bit_summary", "calibrate", "check_bits", "fake_quant_weight", "is_float_bits", "layer_bits",
    "observing", "qmax_of", "quant_layers", "quantize_model", "set_layer_bits", "weight_codes", "weight_qparams",
]
