"""The workload record: one layer of a network, as the cost model sees it.

A ``Layer`` is the meeting point of the two sides of coexplore: ``search_spaces``
describes networks as lists of layers, ``accelerators`` prices them.  The loop nest it
stands for is the usual seven-dimensional convolution (Eyeriss / Timeloop notation)::

    for n in N, g in G, k in K/G, c in C/G, p in P, q in Q, r in R, s in S:
        O[n, g, k, p, q] += W[g, k, c, r, s] * I[n, g, c, p*stride + r, q*stride + s]

Depthwise convolution is ``groups == C == K``; a linear layer is a 1x1 convolution on a
1x1 map (``R = S = P = Q = 1``).  A ``matmul`` is a product of two activations (attention's
``Q K^T`` and ``A V``): ``groups`` independent ``P x (C/G)`` by ``(C/G) x (K/G)`` products, the
loop nest of a grouped 1x1 convolution over ``P`` rows (``R = S = Q = stride = 1``) whose
"weights" are the second operand.

Bounds, and why they make the cost model's int64 arithmetic safe
----------------------------------------------------------------

A layer is accepted when ``N, K, C, P, Q <= 2^24``, ``R, S <= 128``, ``stride <= 32``, and
its MACs ``M`` and its padded input ``I = N C H W`` are at most ``2^40`` each (weights and
outputs never exceed ``M``).  Together with the accelerator bounds (PEs per axis <= 4096,
RF <= 2^20 bytes, GLB <= 2^34 bytes; :data:`accelerators.hardware.FIELD_RANGES`) every
integer the analytical model computes stays below ``2^62`` (int64 holds ``2^63 - 1``).
Every factor in those products is >= 1, so a partial product never exceeds the whole,
and it suffices to bound the largest totals.  With ``st`` the stride, the DRAM-level tile
counts are at most 2^12 (2^8 for rows), so ``n_p * t_p < 2 N P``, and every spatial factor
of the built-in dataflows is at most the dimension it unrolls (a user dataflow's own
arithmetic is covered only by the model's check that every result is physical):

* DRAM level: weights x row tiles <= 2^8 M; outputs x (2 x channel tiles) <= 2^13 M;
  inputs with halo <= 257 I, times at most 2^12 refetches <= 2^60.1.  (A batched 1x1 layer
  on a 1x1 map is priced with the batch as rows, which can widen its input by the stride:
  <= 32 I x 2^12 = 2^57.)
* WS: inputs x K' unrolling <= 2 M; partial sums <= 2 M; inter-PE ``M x R S`` <= 2^54.
* OS: inputs delivered ``<= 1032 M (1 + st/R)(1 + st/S) <= 1032 x 33^2 x 2^40 < 2^60.2``
  (each fold reads a window of ``(s_p - 1) st + R`` rows; over all folds that is at most
  ``258 N P (st + R)`` rows, and likewise ``2 Q (st + S)`` columns).
* RS: inputs delivered to ``s_r <= R`` filter rows ``<= 516 M (st + R)(1 + st/S)
  <= 516 x 160 x 33 x 2^40 < 2^61.4``, the largest product in the model.

Values outside the bounds are refused with a :class:`ConfigError` naming the field and the
bound, so a shape such as ``K = C = 2^32`` never reaches the model.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from coexplore.common import ConfigError, PathLike, check_keys, read_yaml, write_yaml

LAYER_KINDS = ("conv", "depthwise", "linear", "matmul")

#: Largest accepted value of each dimension (see the module docstring for why).
MAX_DIM = {"N": 2 ** 24, "K": 2 ** 24, "C": 2 ** 24, "R": 128, "S": 128, "P": 2 ** 24, "Q": 2 ** 24,
           "stride": 32, "groups": 2 ** 24}
#: Largest accepted MAC count and padded input size of one layer.
MAX_MACS = 2 ** 40
MAX_INPUT_ELEMS = 2 ** 40
#: The per-layer precision fields (bits); ``None`` means the accelerator's own word width, so a
#: layer without them is priced exactly as before they existed, and is written without them.
PRECISION_FIELDS = ("weight_bits", "act_bits", "out_bits")
#: Widest accepted bit width of a precision field.
MAX_BITS = 32


@dataclass(frozen=True)
class Layer:
    """One convolution-like layer.  All sizes are element counts, not bytes."""

    kind: str  # one of LAYER_KINDS
    N: int  # batch size
    K: int  # output channels (all groups together)
    C: int  # input channels (all groups together)
    R: int  # filter height
    S: int  # filter width
    P: int  # output height
    Q: int  # output width
    stride: int = 1  # spatial stride (same in both directions)
    groups: int = 1  # number of channel groups; C and K are divisible by it
    name: str = field(default="", compare=False)  # label for tables; not part of identity
    weight_bits: Optional[int] = None  # bits per weight; None: the accelerator's word (today's pricing)
    act_bits: Optional[int] = None  # bits per input activation; None: the accelerator's word
    out_bits: Optional[int] = None  # bits per output / partial sum; None: the accelerator's word

    def __post_init__(self) -> None:
        where = f"layer {self.name!r}" if self.name else "layer"
        for f in PRECISION_FIELDS:
            v = getattr(self, f)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= MAX_BITS:
                raise ConfigError(f"{where}: field {f} must be an integer in 1..{MAX_BITS} bits or null "
                                  f"(the accelerator's word), got {v!r}")
            object.__setattr__(self, f, int(v))
        if self.kind not in LAYER_KINDS:
            raise ConfigError(f"{where}: kind {self.kind!r} is unknown; allowed kinds: {list(LAYER_KINDS)}")
        for f in ("N", "K", "C", "R", "S", "P", "Q", "stride", "groups"):
            v = getattr(self, f)
            if isinstance(v, bool):
                raise ConfigError(f"{where}: field {f} must be a positive integer, got {v!r}")
            if not isinstance(v, int):
                try:
                    iv = int(v)
                except (TypeError, ValueError, OverflowError):
                    raise ConfigError(f"{where}: field {f} must be a positive integer, got {v!r}") from None
                if iv != v:
                    raise ConfigError(f"{where}: field {f} must be a positive integer, got {v!r}")
                object.__setattr__(self, f, iv)
                v = iv
            if not 1 <= v <= MAX_DIM[f]:
                raise ConfigError(f"{where}: field {f} must be a positive integer in 1..{MAX_DIM[f]}, got {v}")
        if not isinstance(self.name, str):
            raise ConfigError(f"{where}: field name must be a string, got {self.name!r}")
        if self.C % self.groups or self.K % self.groups:
            raise ConfigError(f"{where}: groups={self.groups} must divide C={self.C} and K={self.K}")
        if self.kind == "depthwise" and not (self.groups == self.C == self.K):
            raise ConfigError(f"{where}: a depthwise layer needs groups == C == K (got groups={self.groups}, "
                              f"C={self.C}, K={self.K}); use kind 'conv' with groups for other grouped convs")
        if self.kind == "linear" and (self.R, self.S, self.P, self.Q, self.stride, self.groups) != (1, 1, 1, 1, 1, 1):
            raise ConfigError(f"{where}: a linear layer has R = S = P = Q = stride = groups = 1")
        if self.kind == "matmul" and (self.R, self.S, self.Q, self.stride) != (1, 1, 1, 1):
            raise ConfigError(f"{where}: a matmul layer has R = S = Q = stride = 1 (rows are P, products are groups)")
        if self.macs > MAX_MACS:
            raise ConfigError(f"{where}: macs = N K C/groups R S P Q = {self.macs} exceeds the bound of "
                              f"{MAX_MACS} (2^40) per layer")
        if self.input_elems > MAX_INPUT_ELEMS:
            raise ConfigError(f"{where}: input_elems = N C H W (H = (P-1) stride + R) = {self.input_elems} exceeds "
                              f"the bound of {MAX_INPUT_ELEMS} (2^40) per layer")

    # ---- derived sizes -------------------------------------------------------------
    @property
    def H(self) -> int:
        """Input height touched by the layer (padding included)."""
        return (self.P - 1) * self.stride + self.R

    @property
    def W(self) -> int:
        """Input width touched by the layer (padding included)."""
        return (self.Q - 1) * self.stride + self.S

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer."""
        return self.N * self.K * (self.C // self.groups) * self.R * self.S * self.P * self.Q

    @property
    def weight_elems(self) -> int:
        """Weights of the layer (no bias)."""
        return self.K * (self.C // self.groups) * self.R * self.S

    @property
    def input_elems(self) -> int:
        """Input activations the layer touches, padding included."""
        return self.N * self.C * self.H * self.W

    @property
    def output_elems(self) -> int:
        """Output activations."""
        return self.N * self.K * self.P * self.Q

    @property
    def has_precision(self) -> bool:
        """True when any precision field is set (the layer asks for its own bit widths)."""
        return any(getattr(self, f) is not None for f in PRECISION_FIELDS)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if not d["name"]:
            d.pop("name")
        for f in PRECISION_FIELDS:  # unset precision is left out: old files and fingerprints are unchanged
            if d[f] is None:
                d.pop(f)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "layer") -> "Layer":
        allowed = {"kind", "N", "K", "C", "R", "S", "P", "Q", "stride", "groups", "name", *PRECISION_FIELDS}
        check_keys(d, allowed, where, required=("kind", "K", "C"))
        d = dict(d)
        d.setdefault("N", 1)
        if d["kind"] == "linear":
            for f in ("R", "S", "P", "Q"):
                d.setdefault(f, 1)
        elif d["kind"] == "matmul":
            for f in ("R", "S", "Q"):
                d.setdefault(f, 1)
            if "P" not in d:
                raise ConfigError(f"{where}: missing required field(s) ['P']")
        else:
            missing = [f for f in ("R", "S", "P", "Q") if f not in d]
            if missing:
                raise ConfigError(f"{where}: missing required field(s) {missing}")
        try:
            return Layer(**d)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


# ---- output size -----------------------------------------------------------------------

def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output size of a convolution or pooling window along one axis (PyTorch's floor mode).

    ``floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1``.  A 'same'-padded
    odd kernel (``padding = kernel // 2``) gives ``ceil(size / stride)``; an even one gives
    one more where ``stride`` divides ``size``.

    Args:
        size: input size, pixels (>= 1).
        kernel: window size (>= 1).
        stride: step (>= 1).
        padding: zeros added on each side (>= 0).
        dilation: spacing of the window taps (>= 1).

    Raises:
        ConfigError: an argument is not an integer in its range, or the window does not fit
            the padded input.
    """
    args = {"size": (size, 1), "kernel": (kernel, 1), "stride": (stride, 1), "padding": (padding, 0),
            "dilation": (dilation, 1)}
    for name, (v, lo) in args.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ConfigError(f"conv_output_size: {name} must be an integer >= {lo}, got {v!r}")
    size, kernel, stride, padding, dilation = (int(args[k][0]) for k in args)
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ConfigError(f"conv_output_size: a kernel of {kernel} (dilation {dilation}) does not fit an input of "
                          f"{size} with padding {padding}")
    return (size + 2 * padding - span) // stride + 1


# ---- constructors that read like a network definition --------------------------------

def conv(C: int, K: int, kernel: int, out_hw: Tuple[int, int] | int, stride: int = 1,
         groups: int = 1, N: int = 1, name: str = "") -> Layer:
    """A (grouped) convolution with a square kernel producing an ``out_hw`` map."""
    P, Q = (out_hw, out_hw) if isinstance(out_hw, int) else out_hw
    kind = "depthwise" if groups > 1 and groups == C == K else "conv"
    return Layer(kind, N, K, C, kernel, kernel, P, Q, stride, groups, name)


def depthwise(C: int, kernel: int, out_hw: Tuple[int, int] | int, stride: int = 1, N: int = 1,
              name: str = "") -> Layer:
    P, Q = (out_hw, out_hw) if isinstance(out_hw, int) else out_hw
    return Layer("depthwise", N, C, C, kernel, kernel, P, Q, stride, C, name)


def linear(C: int, K: int, N: int = 1, name: str = "") -> Layer:
    return Layer("linear", N, K, C, 1, 1, 1, 1, 1, 1, name)


def matmul(M: int, K: int, N: int, groups: int = 1, name: str = "") -> Layer:
    """``groups`` independent products of an ``M x K`` by a ``K x N`` matrix (two activations).

    Stored as ``Layer("matmul", N=1, K=groups*N, C=groups*K, R=S=Q=1, P=M, groups=groups)``, so
    its MACs are ``groups * M * K * N``.
    """
    return Layer("matmul", 1, groups * N, groups * K, 1, 1, M, 1, 1, groups, name)


# ---- YAML workload format --------------------------------------------------------------

def workload_to_dict(layers: Sequence[Layer], name: str = "") -> Dict[str, Any]:
    return {"name": name, "layers": [l.to_dict() for l in layers]}


def save_workload(path: PathLike, layers: Sequence[Layer], name: str = "") -> None:
    """Save a workload as YAML: ``{name: ..., layers: [{kind, N, K, C, R, S, P, Q, stride, groups}, ...]}``."""
    write_yaml(path, workload_to_dict(layers, name or Path(path).stem))


def workload_from_dict(data: Any, where: str = "workload") -> List[Layer]:
    if isinstance(data, Mapping):
        check_keys(data, {"name", "layers"}, where, required=("layers",))
        items = data["layers"]
    else:
        items = data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: 'layers' must be a non-empty list of layer mappings")
    return [Layer.from_dict(item, where=f"{where}: layers[{i}]") for i, item in enumerate(items)]


def load_workload(path: PathLike) -> List[Layer]:
    """Load a YAML workload written by :func:`save_workload` (or by hand)."""
    return workload_from_dict(read_yaml(path), where=str(path))


def total_macs(layers: Iterable[Layer]) -> int:
    return sum(l.macs for l in layers)
