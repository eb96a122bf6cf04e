"""Extract a workload from a PyTorch module by tracing one forward pass.

Forward hooks on the modules that do matrix work record the layers in the order they
execute (a module called twice appears twice), with sizes read from the actual tensors, so
any padding, pooling or reshaping in between is accounted for.  Matrix products written as
functions (``x @ w``, ``torch.matmul``, ``torch.bmm``, ``F.linear``,
``F.scaled_dot_product_attention``, ...) are seen through a
:class:`~torch.overrides.TorchFunctionMode` while the forward pass runs.  The result is the
list of :class:`~accelerators.workload.Layer` the cost model prices; it can be saved with
:func:`accelerators.workload.save_workload`.

What is priced, and as what (``docs/cost_model.md`` has the table):

* ``nn.Conv2d`` -- a ``conv`` (``depthwise`` when ``groups == C == K > 1``).  A dilated
  convolution is priced as the convolutions it is made of: output rows (columns) whose input
  taps share a residue modulo the dilation form an undilated convolution over that residue
  class of the input ("space to batch", as TensorFlow runs atrous convolutions), so a
  dilation-``d`` layer is at most four ``conv`` layers (phases of equal size stacked in the
  batch) with exactly the MACs of the original.
* ``nn.Conv1d`` -- a ``conv`` on a one-row map.
* ``nn.ConvTranspose2d`` / ``nn.ConvTranspose1d`` -- the stride-``s`` transposed convolution
  split into its ``s x s`` output phases: each phase is an ordinary stride-1 convolution of
  the input with the taps that reach it (the zero-free decomposition of GANAX, Yazdanbakhsh et
  al., ISCA 2018), phases of equal shape stacked in the batch; no MAC on an inserted zero.
* ``nn.Linear`` and functional ``F.linear`` outside any traced module -- a ``linear`` whose
  ``N`` is the product of all leading dimensions (tokens count as batch).
* ``nn.MultiheadAttention`` -- its Q, K and V projections and its output projection
  (``linear``), and its two matrix products ``Q K^T`` and ``softmax(.) V`` as ``matmul`` layers
  with one group per (batch, head).
* ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` -- per layer and direction, the input projection of all
  time steps as one ``linear`` (``N`` = batch x steps: it does not depend on the recurrence),
  and the recurrent projection once per time step (``N`` = batch: step ``t`` needs ``h_{t-1}``);
  an LSTM's ``proj_size`` projection likewise once per step.
* functional matrix products -- ``matmul`` layers (batch dimensions become groups);
  ``F.scaled_dot_product_attention`` is its two products.

Elementwise work (activations, normalisation, softmax, gates, pooling, residual additions)
and lookups (embeddings) are not priced: they are not MACs on the PE array.  Every module
kind that holds weights and is not priced (``Conv3d``, ``Bilinear``, an LSTM fed a packed
sequence, functional ``einsum`` ...) is named in one warning.

The trace is cheap on the ``meta`` device: a model built under ``with torch.device("meta")``
(or moved there) yields its layers without allocating or computing anything.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from coexplore.common import ConfigError
from .workload import Layer, matmul

logger = logging.getLogger(__name__)

# Modules that hold weights and need no MACs on the array (lookups, elementwise scaling).
_NO_MATRIX_WORK: Tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
                                     nn.Embedding, nn.EmbeddingBag, nn.PReLU)
_RNNS: Tuple[type, ...] = (nn.LSTM, nn.GRU, nn.RNN)
_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def layers_from_module(module: nn.Module, input_shape: Sequence[int], name_prefix: str = "") -> List[Layer]:
    """Trace ``module`` on a zero input and return the layers it runs (see the module docstring).

    The module runs once under ``torch.no_grad()`` in eval mode (so batch-norm statistics
    are not updated) with PyTorch's fused attention fast path off (it would bypass the
    submodules); afterwards every submodule's training flag is restored and all hooks are
    removed, also when the forward pass fails.

    Args:
        module: the network.  The input is created on the device and with the dtype of its
            first parameter (CPU / float32 when it has none), so CUDA and ``meta`` modules
            work.
        input_shape: shape of the zero input, e.g. ``(N, C, H, W)`` for an image model or
            ``(N, features)`` / ``(N, T, features)`` for an MLP or transformer.
        name_prefix: prepended (with a dot) to every layer's qualified module name.

    Returns:
        The layers in execution order, named by their qualified name in
        ``module.named_modules()`` (decomposed layers get a suffix such as ``[phase 0,1]`` or
        ``.qk``); empty when nothing priced ran (an identity op).

    Raises:
        ConfigError: ``input_shape`` is not a sequence of positive integers, or a traced
            convolution has unequal strides in its two directions (the message names the module).
    """
    shape = _check_shape(input_shape)
    names: Dict[int, str] = {id(m): n for n, m in module.named_modules()}
    layers: List[Layer] = []
    skipped: "OrderedDict[str, List[str]]" = OrderedDict()  # kind -> names
    depth = [0]  # > 0 while a module priced as a whole runs (its functional calls are not counted again)
    counts: Counter = Counter()

    def full_name(m: nn.Module) -> str:
        qual = names.get(id(m), "")
        return ".".join(p for p in (name_prefix, qual) if p)

    def skip(kind: str, name: str) -> None:
        lst = skipped.setdefault(kind, [])
        if name not in lst:
            lst.append(name)

    def functional_name(kind: str) -> str:
        counts[kind] += 1
        base = f"{kind}#{counts[kind]}"
        return ".".join(p for p in (name_prefix, base) if p)

    def enter(m: nn.Module, args: Tuple[Any, ...]) -> None:
        depth[0] += 1

    def leave_with(fn: Callable[[nn.Module, Tuple[Any, ...], Any], None]):
        def hook(m: nn.Module, args: Tuple[Any, ...], out: Any) -> None:
            depth[0] -= 1
            fn(m, args, out)
        return hook

    def on_conv(m: nn.Module, args: Tuple[Any, ...], out: torch.Tensor) -> None:
        layers.extend(_conv_layers(m, out, full_name(m)))

    def on_conv_t(m: nn.Module, args: Tuple[Any, ...], out: torch.Tensor) -> None:
        layers.extend(_conv_transpose_layers(m, args, out, full_name(m)))

    def on_linear(m: nn.Linear, args: Tuple[Any, ...], out: torch.Tensor) -> None:
        # The output's leading dimensions are the input's, however the input was passed.
        n = math.prod(out.shape[:-1]) if out.dim() > 1 else 1
        layers.append(Layer("linear", n, m.out_features, m.in_features, 1, 1, 1, 1, name=full_name(m)))

    def on_mha(m: nn.MultiheadAttention, args: Tuple[Any, ...], out: Any) -> None:
        got = _mha_layers(m, args, full_name(m))
        if got is None:
            skip(type(m).__name__, full_name(m) or type(m).__name__)
        else:
            layers.extend(got)

    def on_rnn(m: nn.RNNBase, args: Tuple[Any, ...], out: Any) -> None:
        got = _rnn_layers(m, args, full_name(m))
        if got is None:
            skip(f"{type(m).__name__} (packed sequence)", full_name(m) or type(m).__name__)
        else:
            layers.extend(got)

    marks: List[int] = []

    def mark(m: nn.Module, args: Tuple[Any, ...]) -> None:
        marks.append(len(layers))

    def on_other(m: nn.Module, args: Tuple[Any, ...], out: Any) -> None:
        # A module with weights of its own that no hook prices: it is priced through the
        # matrix products it calls as functions, if any (x @ self.weight); otherwise named.
        if len(layers) == marks.pop():
            skip(type(m).__name__, full_name(m) or type(m).__name__)

    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    modes = {m: m.training for m in module.modules()}
    handles: List[torch.utils.hooks.RemovableHandle] = []
    fast_path = torch.backends.mha.get_fastpath_enabled()
    try:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv1d)):
                hook = on_conv
            elif isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose1d)):
                hook = on_conv_t
            elif isinstance(m, nn.Linear):
                hook = on_linear
            elif isinstance(m, nn.MultiheadAttention):
                hook = on_mha
            elif isinstance(m, _RNNS):
                hook = on_rnn
            elif isinstance(m, _NO_MATRIX_WORK) or not any(True for _ in m.parameters(recurse=False)):
                continue
            else:  # weights of its own and no layer record (Conv3d, Bilinear, a user's module, ...)
                handles.append(m.register_forward_pre_hook(mark))
                handles.append(m.register_forward_hook(on_other))
                continue
            handles.append(m.register_forward_pre_hook(enter))
            handles.append(m.register_forward_hook(leave_with(hook)))
        module.eval()
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), _Functional(layers, skip, depth, functional_name):
            module(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training

    if skipped:
        parts = [f"{kind} ({len(v)}: {', '.join(v)})" for kind, v in skipped.items()]
        logger.warning("layers_from_module: not priced, %d module kind(s) that the cost model has no layer for: %s",
                       len(skipped), "; ".join(parts))
    return layers


# ---------------------------------------------------------------------------------------
# functional matrix products
# ---------------------------------------------------------------------------------------

class _Functional(TorchFunctionMode):
    """Records matrix products called as functions while no traced module is running."""

    def __init__(self, layers: List[Layer], skip: Callable[[str, str], None], depth: List[int],
                 name: Callable[[str], str]) -> None:
        super().__init__()
        self.layers, self.skip, self.depth, self.name = layers, skip, depth, name
        self.products = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm,
                         torch.bmm, torch.Tensor.bmm}
        self.added = {torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}  # bias + a @ b

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth[0] > 0:
            return out
        try:
            if func in self.products or func is torch.Tensor.__rmatmul__:
                a, b = args[0], args[1]
                if func is torch.Tensor.__rmatmul__:
                    a, b = b, a
                self._product(a, b, "matmul")
            elif func in self.added:
                self._product(args[1], args[2], "matmul")
            elif func is F.linear:
                x, w = args[0], (args[1] if len(args) > 1 else kwargs["weight"])
                n = math.prod(x.shape[:-1]) if x.dim() > 1 else 1
                self.layers.append(Layer("linear", int(n), int(w.shape[0]), int(w.shape[1]), 1, 1, 1, 1,
                                         name=self.name("linear")))
            elif func is F.scaled_dot_product_attention:
                q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(("query", "key", "value")))
                kt = k.transpose(-2, -1)
                self._product(q, kt, "attention.qk")
                self._product(q.new_empty(q.shape[:-1] + (k.shape[-2],)), v, "attention.av")
            elif func is torch.einsum:
                self.skip("einsum (functional)", self.name("einsum"))
        except (IndexError, KeyError, AttributeError, TypeError):  # an unusual call: its result stands, unpriced
            self.skip(f"{getattr(func, '__name__', func)} (functional)", self.name("call"))
        return out

    def _product(self, a: Any, b: Any, label: str) -> None:
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() == 0 or b.dim() == 0:
            return
        a2 = a.unsqueeze(0) if a.dim() == 1 else a
        b2 = b.unsqueeze(-1) if b.dim() == 1 else b
        m, k, n = a2.shape[-2], a2.shape[-1], b2.shape[-1]
        g = math.prod(torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
        self.layers.append(matmul(int(m), int(k), int(n), groups=int(g), name=self.name(label)))


# ---------------------------------------------------------------------------------------
# attention and recurrent layers
# ---------------------------------------------------------------------------------------

def _mha_layers(m: nn.MultiheadAttention, args: Tuple[Any, ...], name: str) -> Optional[List[Layer]]:
    """The projections and the two matrix products of one ``nn.MultiheadAttention`` call."""
    if len(args) < 3 or not all(isinstance(t, torch.Tensor) for t in args[:3]):
        return None
    q, k, v = args[:3]
    unbatched = q.dim() == 2
    if unbatched:
        B, L, S = 1, q.shape[0], k.shape[0]
    elif m.batch_first:
        B, L, S = q.shape[0], q.shape[1], k.shape[1]
    else:
        L, B, S = q.shape[0], q.shape[1], k.shape[0]
    E, h = m.embed_dim, m.num_heads
    d = E // h
    p = lambda s: f"{name}.{s}" if name else s
    return [Layer("linear", B * L, E, E, 1, 1, 1, 1, name=p("q_proj")),
            Layer("linear", B * S, E, m.kdim, 1, 1, 1, 1, name=p("k_proj")),
            Layer("linear", B * S, E, m.vdim, 1, 1, 1, 1, name=p("v_proj")),
            matmul(L, d, S, groups=B * h, name=p("qk")),
            matmul(L, S, d, groups=B * h, name=p("av")),
            Layer("linear", B * L, E, E, 1, 1, 1, 1, name=p("out_proj"))]


def _rnn_layers(m: nn.RNNBase, args: Tuple[Any, ...], name: str) -> Optional[List[Layer]]:
    """The input and recurrent projections of one ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` call."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):  # a PackedSequence: its steps are not one tensor shape
        return None
    if x.dim() == 2:
        T, B = x.shape[0], 1
    elif m.batch_first:
        B, T = x.shape[0], x.shape[1]
    else:
        T, B = x.shape[0], x.shape[1]
    gates = next(g for cls, g in _GATES.items() if isinstance(m, cls))
    H = m.hidden_size
    proj = getattr(m, "proj_size", 0) or 0
    out_h = proj or H
    dirs = 2 if m.bidirectional else 1
    p = lambda s: f"{name}.{s}" if name else s
    out: List[Layer] = []
    for layer in range(m.num_layers):
        c_in = m.input_size if layer == 0 else out_h * dirs
        for dr in range(dirs):
            tag = f"l{layer}" + ("_reverse" if dr else "")
            out.append(Layer("linear", B * T, gates * H, c_in, 1, 1, 1, 1, name=p(f"{tag}.ih")))
            for t in range(T):
                out.append(Layer("linear", B, gates * H, out_h, 1, 1, 1, 1, name=p(f"{tag}.hh[{t}]")))
                if proj:
                    out.append(Layer("linear", B, proj, H, 1, 1, 1, 1, name=p(f"{tag}.hr[{t}]")))
    return out


# ---------------------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------------------

def _check_shape(input_shape: Sequence[int]) -> Tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(f"input_shape must be a sequence of positive integers, got {input_shape!r}")
    return shape


def dilated_phases(out: int, kernel: int, stride: int, dilation: int) -> List[Tuple[int, int, int]]:
    """An output axis of a dilated convolution as undilated ones: ``[(count, out', stride'), ...]``.

    Output ``y`` reads inputs ``y * stride + r * dilation``; with ``g = gcd(stride, dilation)``
    the outputs fall into ``dilation / g`` classes that read disjoint input residues modulo
    ``dilation``, and each class is an undilated convolution (same ``kernel``) with stride
    ``stride / g``.  Classes of equal size are counted together, so at most two entries are
    returned, and ``sum(count * out') == out``.
    """
    g = math.gcd(stride, dilation)
    classes = dilation // g
    if classes == 1:
        return [(1, out, stride // g)]
    base, extra = divmod(out, classes)
    return [(c, n, stride // g) for c, n in ((extra, base + 1), (classes - extra, base)) if c and n]


def _conv_geometry(m: nn.Module, out: torch.Tensor) -> Tuple[int, int, int, int, int, int, int, int, int]:
    """``(n, P, Q, R, S, stride_h, stride_w, dil_h, dil_w)`` of a traced Conv1d/Conv2d call."""
    if isinstance(m, nn.Conv1d):
        n = out.shape[0] if out.dim() == 3 else 1
        return (int(n), 1, int(out.shape[-1]), 1, m.kernel_size[0], 1, m.stride[0], 1, m.dilation[0])
    n = out.shape[0] if out.dim() == 4 else 1
    p, q = out.shape[-2:]
    r, s = m.kernel_size
    return (int(n), int(p), int(q), r, s, m.stride[0], m.stride[1], m.dilation[0], m.dilation[1])


def _conv_layers(m: nn.Module, out: torch.Tensor, name: str) -> List[Layer]:
    """The layer(s) of one traced Conv2d / Conv1d call; ``out`` is ``N x K x P x Q`` (or unbatched)."""
    label = name or type(m).__name__
    n, P, Q, R, S, sh, sw, dh, dw = _conv_geometry(m, out)
    c, k, g = m.in_channels, m.out_channels, m.groups
    kind = "depthwise" if g > 1 and g == c == k else "conv"
    rows = dilated_phases(P, R, sh, dh) if R > 1 else [(1, P, sh)]
    cols = dilated_phases(Q, S, sw, dw) if S > 1 else [(1, Q, sw)]
    if isinstance(m, nn.Conv1d):
        rows = [(1, 1, cols[0][2])]  # one row: its stride is the columns'
    out_layers = []
    for cr, pr, st_r in rows:
        for cc, qc, st_c in cols:
            if st_r != st_c:
                raise ConfigError(f"{label}: unequal strides are not supported (stride={tuple(m.stride)}, "
                                  f"dilation={tuple(m.dilation)}); Layer has one stride for both directions")
            split = len(rows) * len(cols) > 1 or cr * cc > 1
            suffix = f"[dilation phase {len(out_layers)}]" if split else ""
            out_layers.append(Layer(kind, n * cr * cc, k, c, R, S, pr, qc, st_r, g, name + suffix))
    return out_layers


def transposed_phases(out: int, kernel: int, stride: int, padding: int, dilation: int
                      ) -> List[Tuple[int, int, int, int]]:
    """An output axis of a transposed convolution as stride-1 convolutions.

    Output ``y`` receives tap ``r`` from input ``i`` where ``i * stride = y + padding - r * dilation``,
    so the outputs with ``(y + padding) mod stride = a`` (phase ``a``) see only the taps with
    ``r * dilation = a (mod stride)``: a stride-1 convolution of the input with those taps, whose
    spacing in the input is ``dilation / gcd(stride, dilation)``.

    Returns:
        ``[(count, out', taps, tap_dilation), ...]`` grouped over phases of equal shape;
        phases no tap reaches are left out.
    """
    groups: Dict[Tuple[int, int, int], int] = {}
    g = math.gcd(stride, dilation)
    for a in range(stride):
        n_out = len(range((a - padding) % stride, out, stride))
        taps = sum(1 for r in range(kernel) if (r * dilation) % stride == a)
        if n_out and taps:
            key = (n_out, taps, dilation // g if taps > 1 else 1)
            groups[key] = groups.get(key, 0) + 1
    return [(c, n, t, d) for (n, t, d), c in groups.items()]


def _conv_transpose_layers(m: nn.Module, args: Tuple[Any, ...], out: torch.Tensor, name: str) -> List[Layer]:
    """The layers of one traced ConvTranspose2d / ConvTranspose1d call (see :func:`transposed_phases`)."""
    label = name or type(m).__name__
    one_d = isinstance(m, nn.ConvTranspose1d)
    batched = out.dim() == (3 if one_d else 4)
    n = int(out.shape[0]) if batched else 1
    if one_d:
        H, W = 1, int(out.shape[-1])
        R, S = 1, m.kernel_size[0]
        axes = [(1, 1, 0, 1), (m.stride[0], S, m.padding[0], m.dilation[0])]
    else:
        H, W = (int(v) for v in out.shape[-2:])
        R, S = m.kernel_size
        axes = [(m.stride[0], R, m.padding[0], m.dilation[0]), (m.stride[1], S, m.padding[1], m.dilation[1])]
    rows = transposed_phases(H, axes[0][1], axes[0][0], axes[0][2], axes[0][3])
    cols = transposed_phases(W, axes[1][1], axes[1][0], axes[1][2], axes[1][3])
    c, k, g = m.in_channels, m.out_channels, m.groups
    kind = "depthwise" if g > 1 and g == c == k else "conv"
    layers: List[Layer] = []
    for cr, pr, tr, dr in rows:
        for cc, qc, tc, dc in cols:
            # a phase whose taps are spaced (dilation > 1) is itself a dilated conv: split it as such
            for er, pr2, _ in (dilated_phases(pr, tr, 1, dr) if tr > 1 else [(1, pr, 1)]):
                for ec, qc2, _ in (dilated_phases(qc, tc, 1, dc) if tc > 1 else [(1, qc, 1)]):
                    layers.append(Layer(kind, n * cr * cc * er * ec, k, c, tr, tc, pr2, qc2, 1, g,
                                        f"{name}[phase {len(layers)}]"))
    if not layers:
        logger.debug("%s: no tap reaches any output", label)
    return layers
