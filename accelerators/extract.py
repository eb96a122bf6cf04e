"""Extract a workload from a PyTorch module by tracing one forward pass.

Forward hooks on every ``nn.Conv2d`` and ``nn.Linear`` record the layers in the order
they execute (a module called twice appears twice), with output sizes read from the
actual output tensors, so any padding, pooling or reshaping in between is accounted
for.  The result is the list of :class:`~accelerators.workload.Layer` the cost model
prices; it can be saved with :func:`accelerators.workload.save_workload`.

The trace is cheap on the ``meta`` device: a model built under ``with torch.device("meta")``
(or moved there) yields its layers without allocating or computing anything.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from coexplore.common import ConfigError
from .workload import Layer

logger = logging.getLogger(__name__)

# Layers with weights that the cost model does not price (yet).  They are traced only to
# be named in a warning.  nn.MultiheadAttention is listed because it computes its
# projections functionally, so its in/out projections never reach an nn.Linear hook.
_UNSUPPORTED: Tuple[type, ...] = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                                  nn.ConvTranspose3d, nn.Bilinear, nn.MultiheadAttention)


def layers_from_module(module: nn.Module, input_shape: Sequence[int], name_prefix: str = "") -> List[Layer]:
    """Trace ``module`` on a zero input and return its conv/depthwise/linear layers.

    The module runs once under ``torch.no_grad()`` in eval mode (so batch-norm statistics
    are not updated); afterwards every submodule's training flag is restored and all
    hooks are removed, also when the forward pass fails.

    A ``Conv2d`` gives ``K = out_channels``, ``C = in_channels``, ``R x S`` = its kernel,
    ``P x Q`` = its output map, its stride and groups; its kind is ``"depthwise"`` when
    ``groups == C == K > 1``.  A ``Linear`` gives ``C = in_features``, ``K = out_features``
    and ``N`` = the product of all leading dimensions of its input, so the tokens of a
    ``b x t x d`` input count as batch.  Other weight layers (``Conv1d``,
    ``ConvTranspose2d``, ``MultiheadAttention``, ...) are skipped with one warning that
    names them.

    Args:
        module: the network.  The input is created on the device and with the dtype of its
            first parameter (CPU / float32 when it has none), so CUDA and ``meta`` modules
            work.
        input_shape: shape of the zero input, e.g. ``(N, C, H, W)`` for an image model or
            ``(N, features)`` / ``(N, T, features)`` for an MLP or transformer.
        name_prefix: prepended (with a dot) to every layer's qualified module name.

    Returns:
        The layers in execution order, named by their qualified name in
        ``module.named_modules()``; empty when no Conv2d or Linear ran (an identity op).

    Raises:
        ConfigError: ``input_shape`` is not a sequence of positive integers, a traced
            ``Conv2d`` has unequal strides or a dilation above 1 (the message names the
            module).
    """
    shape = _check_shape(input_shape)
    names: Dict[int, str] = {id(m): n for n, m in module.named_modules()}
    layers: List[Layer] = []
    skipped: List[str] = []

    def full_name(m: nn.Module) -> str:
        qual = names.get(id(m), "")
        return ".".join(p for p in (name_prefix, qual) if p)

    def on_conv(m: nn.Conv2d, args: Tuple[Any, ...], out: torch.Tensor) -> None:
        layers.append(_conv_layer(m, out, full_name(m)))

    def on_linear(m: nn.Linear, args: Tuple[Any, ...], out: torch.Tensor) -> None:
        # The output's leading dimensions are the input's, however the input was passed.
        n = math.prod(out.shape[:-1]) if out.dim() > 1 else 1
        layers.append(Layer("linear", n, m.out_features, m.in_features, 1, 1, 1, 1, name=full_name(m)))

    def on_unsupported(m: nn.Module, args: Tuple[Any, ...], out: Any) -> None:
        name = full_name(m) or type(m).__name__
        if name not in skipped:
            skipped.append(name)

    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    modes = {m: m.training for m in module.modules()}
    handles: List[torch.utils.hooks.RemovableHandle] = []
    try:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                handles.append(m.register_forward_hook(on_conv))
            elif isinstance(m, nn.Linear):
                handles.append(m.register_forward_hook(on_linear))
            elif isinstance(m, _UNSUPPORTED):
                handles.append(m.register_forward_hook(on_unsupported))
        module.eval()
        with torch.no_grad():
            module(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training

    if skipped:
        logger.warning("layers_from_module: skipped %d layer(s) of unsupported type (only Conv2d and Linear "
                       "are priced): %s", len(skipped), ", ".join(skipped))
    return layers


def _check_shape(input_shape: Sequence[int]) -> Tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(f"input_shape must be a sequence of positive integers, got {input_shape!r}")
    return shape


def _conv_layer(m: nn.Conv2d, out: torch.Tensor, name: str) -> Layer:
    """The Layer of one traced Conv2d call; ``out`` is ``N x K x P x Q`` (or unbatched ``K x P x Q``)."""
    label = name or type(m).__name__
    if any(d != 1 for d in m.dilation):
        raise ConfigError(f"{label}: dilated convolutions are not supported (dilation={tuple(m.dilation)})")
    sh, sw = m.stride
    if sh != sw:
        raise ConfigError(f"{label}: unequal strides are not supported (stride={tuple(m.stride)}); "
                          "Layer has one stride for both directions")
    n = out.shape[0] if out.dim() == 4 else 1
    c, k, g = m.in_channels, m.out_channels, m.groups
    kind = "depthwise" if g > 1 and g == c == k else "conv"
    r, s = m.kernel_size
    p, q = out.shape[-2:]
    return Layer(kind, int(n), k, c, r, s, int(p), int(q), sh, g, name)
