"""Training helpers: supernet warm-up, training and evaluation of standalone networks.

The recipe is the one of ProxylessNAS (Cai et al., ICLR 2019, arXiv 1812.00332) and DANCE
(Choi et al., DAC 2021, arXiv 2009.06237): SGD with Nesterov momentum and a cosine
learning-rate schedule; the supernet is first warmed up on its weights only, with one
path per step drawn uniformly and the architecture logits frozen.

Loaders are plain iterables of ``(x, y)`` batches (``x``: ``[B, C, H, W]`` float,
``y``: ``[B]`` int64 class indices), e.g. a ``torch.utils.data.DataLoader``.  Devices are
an argument (default: CUDA when available, else CPU); seeds are scoped with
``torch.random.fork_rng`` so the caller's generator state is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from coexplore.common import ConfigError

from .supernet import Supernet

logger = logging.getLogger(__name__)

Loader = Iterable[Tuple[torch.Tensor, torch.Tensor]]
DeviceLike = Union[str, torch.device, None]
Callback = Callable[[Dict[str, float]], None]


def resolve_device(device: DeviceLike = None) -> torch.device:
    """``device`` as a ``torch.device``: ``None`` or ``"auto"`` mean CUDA when available, else CPU.

    Raises:
        ConfigError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or CUDA asked for but not
            available (or ``N`` out of range).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device; allowed values: auto, cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; allowed values: auto, cpu, cuda, cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but CUDA is not available; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


#: Layouts of the networks' 4-D tensors: ``channels_last`` (NHWC in memory; oneDNN's and
#: cuDNN's fast path -- a weight step of ``tiny-mnist`` in darts mode ran 1.9x and one of
#: ``proxyless-cifar10`` 2.3x faster than in ``contiguous`` NCHW on torch 2.13's CPU build,
#: ``experiments/bench/bench_search_step.py``) or ``contiguous``.  Only speed depends on it.
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def place(model: nn.Module, device: DeviceLike = None, memory_format: str = "channels_last") -> nn.Module:
    """Move ``model`` to ``device`` with its 4-D parameters and buffers in ``memory_format``
    (:data:`MEMORY_FORMATS`); convolutions then run, and hand on, that layout whatever the
    layout of their input.  Returns the model (moved in place)."""
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(f"memory_format {memory_format!r} is unknown; allowed values: {list(MEMORY_FORMATS)}")
    return model.to(device=resolve_device(device), memory_format=MEMORY_FORMATS[memory_format])


#: Mixed precision of the forward passes: ``auto`` (bfloat16 autocast on a CUDA device that
#: supports it, float32 elsewhere), ``bf16`` (bfloat16 autocast on any device, CPU included) or
#: ``off``.  bfloat16 keeps float32's exponent range, so no loss scaling is needed -- the
#: architecture step takes its gradients with ``torch.autograd.grad`` and HDX edits them, which a
#: float16 ``GradScaler`` would have to be threaded through; float16 is therefore not offered.
AMP_MODES = ("auto", "bf16", "off")


def resolve_amp(amp: str, device: DeviceLike = None) -> str:
    """``amp`` (:data:`AMP_MODES`) on ``device`` as what runs: ``"bf16"`` or ``"off"``.

    Raises:
        ConfigError: an unknown mode.
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"amp {amp!r} is unknown; allowed values: {list(AMP_MODES)}")
    if amp != "auto":
        return amp
    dev = resolve_device(device)
    return "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "off"


def autocast(device: torch.device, amp: str = "off"):
    """The context a forward pass runs in: ``torch.autocast`` to bfloat16 on ``device``'s type
    when :func:`resolve_amp` says ``bf16``, else a no-op.  Backward passes run outside it."""
    if resolve_amp(amp, device) == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warmup_mode(supernet: Supernet) -> str:
    """The path mode a warm-up trains in: one uniformly drawn path per step for the
    single-path modes (ProxylessNAS, single-path one-shot NAS), the uniform mixture for
    ``darts`` (every op runs, with equal weights while the logits are still zero)."""
    return "darts" if supernet.mode == "darts" else "uniform"


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               scheduler: Any = None, grad_clip: Optional[float] = None,
               clip_params: Optional[Sequence[nn.Parameter]] = None,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
               amp: str = "off") -> Tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step of the weights: forward, loss, backward, clip, step, schedule.

    Args:
        model: maps ``x`` (``[B, C, H, W]``) to logits ``[B, K]``.
        x, y: a batch.
        optimizer, scheduler: stepped once (the scheduler per batch, if given).
        grad_clip: max gradient norm over ``clip_params`` (default: all parameters); None: no clipping.
        loss_fn: ``(logits, y) -> scalar``.
        amp: the forward pass's mixed precision (:data:`AMP_MODES`, on ``x``'s device).

    Returns:
        ``(loss, logits)``, both detached.
    """
    with autocast(x.device, amp):
        logits = model(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(clip_params if clip_params is not None else model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach(), logits.detach()


@contextlib.contextmanager
def seeded(seed: Optional[int], device: DeviceLike = None) -> Iterator[None]:
    """Seed torch inside the block only (no-op for ``seed=None``); the outer RNG state is restored."""
    if seed is None:
        yield
        return
    dev = resolve_device(device)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _sgd_cosine(params: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float,
                nesterov: bool, epochs: int, loader: Loader) -> Tuple[torch.optim.Optimizer, Any, bool]:
    """SGD and a cosine schedule to zero, stepped per batch when the loader has a length."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be an integer >= 0, got {epochs!r}")
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          nesterov=nesterov and momentum > 0)
    try:
        steps, per_batch = max(1, epochs * len(loader)), True  # type: ignore[arg-type]
    except TypeError:
        steps, per_batch = max(1, epochs), False
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps)))
    return opt, sched, per_batch


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices of ``y``: itself for ``[B]`` labels, the argmax of ``[B, K]`` soft labels
    (a teacher's probabilities, as data-free training gives; ``F.cross_entropy`` takes both)."""
    return y.argmax(dim=1) if y.ndim == 2 else y


def _run_epoch(model: nn.Module, loader: Loader, device: torch.device, desc: str, progress: bool,
               optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None,
               per_batch: bool = True, grad_clip: Optional[float] = None,
               clip_params: Optional[Sequence[nn.Parameter]] = None, amp: str = "off") -> Dict[str, float]:
    """One pass over ``loader``: trains when ``optimizer`` is given, else evaluates under no_grad
    (forward passes in ``amp``'s precision, :data:`AMP_MODES`)."""
    train = optimizer is not None
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    with torch.set_grad_enabled(train):
        for step, (x, y) in enumerate(bar):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if train:
                loss, logits = train_step(model, x, y, optimizer, scheduler if per_batch else None, grad_clip,
                                          clip_params, amp=amp)
            else:
                with autocast(device, amp):
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
            n = y.shape[0]
            seen += n
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(dim=1) == hard_labels(y)).sum()
            if progress and step % 20 == 0:  # .item() syncs the device, so only now and then
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
    if train and not per_batch and scheduler is not None:
        scheduler.step()
    if seen == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "samples": 0}
    return {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen, "samples": seen}


def _fit(model: nn.Module, params: Sequence[nn.Parameter], train_loader: Loader, epochs: int, lr: float,
         device: torch.device, momentum: float, weight_decay: float, nesterov: bool, grad_clip: Optional[float],
         val_loader: Optional[Loader], progress: bool, callback: Optional[Callback], desc: str,
         amp: str = "off") -> List[Dict[str, float]]:
    opt, sched, per_batch = _sgd_cosine(params, lr, momentum, weight_decay, nesterov, epochs, train_loader)
    history: List[Dict[str, float]] = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        model.train()
        rec: Dict[str, float] = {"epoch": epoch, "lr": lr_now}
        rec.update(_run_epoch(model, train_loader, device, f"{desc} {epoch + 1}/{epochs}", progress, opt, sched,
                              per_batch, grad_clip, params, amp))
        if val_loader is not None:
            val = evaluate_network(model, val_loader, device, progress=progress, amp=amp)
            rec.update({"val_loss": val["loss"], "val_accuracy": val["accuracy"]})
        rec["time_s"] = time.perf_counter() - t0
        logger.info("%s epoch %d/%d: %s", desc, epoch + 1, epochs,
                    ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "epoch"))
        history.append(rec)
        if callback is not None:
            callback(rec)
    return history


def warmup_supernet(supernet: Supernet, train_loader: Loader, epochs: int, lr: float,
                    device: DeviceLike = None, *, momentum: float = 0.9, weight_decay: float = 4e-5,
                    nesterov: bool = True, grad_clip: Optional[float] = 5.0, seed: Optional[int] = None,
                    progress: bool = True, callback: Optional[Callback] = None,
                    memory_format: str = "channels_last", amp: str = "off") -> List[Dict[str, float]]:
    """Train the supernet's weights only, one uniformly drawn path per step.

    The architecture logits are frozen (``requires_grad`` off, restored afterwards) and the
    path mode is :func:`warmup_mode`'s for the duration; the supernet is moved to ``device``.

    Args:
        supernet: the supernet to warm up.
        train_loader: iterable of ``(x [B, C, H, W], y [B])`` batches.
        epochs: passes over ``train_loader``.
        lr: initial learning rate of SGD (cosine-annealed to 0).
        device: where to train; None picks CUDA when available, else CPU.
        momentum, weight_decay, nesterov: SGD settings.
        grad_clip: max gradient norm (None: no clipping).
        seed: seeds path sampling (and any other torch randomness) inside the call.
        progress: show tqdm progress bars.
        callback: called with each epoch's record.
        memory_format: the layout the supernet is moved to (:func:`place`).
        amp: the forward passes' mixed precision (:data:`AMP_MODES`).

    Returns:
        One record per epoch: ``epoch, lr, loss, accuracy, samples, time_s``.
    """
    dev = resolve_device(device)
    place(supernet, dev, memory_format)
    arch = supernet.arch_parameters()
    flags = [p.requires_grad for p in arch]
    with seeded(seed, dev), supernet.using_mode(warmup_mode(supernet)):
        try:
            for p in arch:
                p.requires_grad_(False)
            return _fit(supernet, supernet.weight_parameters(), train_loader, epochs, lr, dev, momentum,
                        weight_decay, nesterov, grad_clip, None, progress, callback, "warmup", amp)
        finally:
            for p, f in zip(arch, flags):
                p.requires_grad_(f)


def train_network(model: nn.Module, train_loader: Loader, epochs: int, lr: float, device: DeviceLike = None, *,
                  momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True,
                  grad_clip: Optional[float] = None, val_loader: Optional[Loader] = None,
                  seed: Optional[int] = None, progress: bool = True,
                  callback: Optional[Callback] = None, memory_format: str = "channels_last",
                  amp: str = "off") -> List[Dict[str, float]]:
    """Train a standalone network (e.g. ``supernet.freeze(sample)``) with SGD and a cosine schedule.

    Args:
        model: maps ``[B, C, H, W]`` images to ``[B, num_classes]`` logits; moved to ``device``.
        train_loader: iterable of ``(x, y)`` batches.
        epochs: passes over ``train_loader``.
        lr: initial learning rate (cosine-annealed to 0).
        device: None picks CUDA when available, else CPU.
        momentum, weight_decay, nesterov: SGD settings.
        grad_clip: max gradient norm (None: no clipping).
        val_loader: evaluated after every epoch when given.
        seed: seeds torch inside the call (dropout, any sampling).
        progress: show tqdm progress bars.
        callback: called with each epoch's record.
        memory_format: the layout the model is moved to (:func:`place`).
        amp: the forward passes' mixed precision (:data:`AMP_MODES`; ``val_loader`` too).

    Returns:
        One record per epoch: ``epoch, lr, loss, accuracy, samples, time_s`` (plus
        ``val_loss, val_accuracy`` with a ``val_loader``).
    """
    dev = resolve_device(device)
    place(model, dev, memory_format)
    params = [p for p in model.parameters() if p.requires_grad]
    with seeded(seed, dev):
        return _fit(model, params, train_loader, epochs, lr, dev, momentum, weight_decay, nesterov, grad_clip,
                    val_loader, progress, callback, "train", amp)


def evaluate_network(model: nn.Module, loader: Loader, device: DeviceLike = None, *,
                     progress: bool = False, amp: str = "off") -> Dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``loader`` (eval mode, no grad;
    forward passes in ``amp``'s precision, :data:`AMP_MODES`).

    The model is moved to ``device`` and its train/eval mode is restored afterwards.  A
    :class:`~search_spaces.supernet.Supernet` runs its path mode; evaluate one architecture
    inside ``with supernet.fixed(sample):`` (or evaluate ``supernet.freeze(sample)``).

    Returns:
        ``{"accuracy": fraction in [0, 1], "loss": mean cross-entropy, "samples": count}``.
    """
    dev = resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        return _run_epoch(model, loader, dev, "eval", progress, amp=amp)
    finally:
        model.train(was_training)


@contextlib.contextmanager
def recalibrated_bn(model: nn.Module, loader: Loader, batches: int, device: DeviceLike = None,
                    forward: Optional[Callable[[torch.Tensor], Any]] = None) -> Iterator[nn.Module]:
    """Re-estimate every BatchNorm's running statistics inside the block; restore them after.

    A supernet's BN statistics mix every path it trained, so an architecture evaluated with
    inherited weights needs statistics of its own (as in single-path one-shot NAS, Guo et
    al., ECCV 2020): they are reset and accumulated as a plain average (``momentum=None``)
    over the first ``batches`` batches of ``loader`` in train mode, without gradients.

    Args:
        model: the module whose BN layers are recalibrated (a supernet inside
            ``with supernet.fixed(sample):``, or a standalone network).
        loader: iterable of ``(x, y)`` batches (the labels are not used).
        batches: how many batches to average over (>= 1).
        device: where ``model`` runs.
        forward: how to run a batch (default: ``model(x)``).

    Yields:
        ``model``, its BN layers holding the recalibrated statistics.
    """
    dev = resolve_device(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in bns]
    was_training = model.training
    run = forward or model
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for i, (x, _) in enumerate(loader):
                if i >= batches:
                    break
                run(x.to(dev))
        model.eval()
        yield model
    finally:
        for m, (mean, var, n, mom) in zip(bns, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)
            m.momentum = mom
        model.train(was_training)


def inherited_accuracy(supernet: Supernet, sample: Mapping[str, str], calib_loader: Loader, eval_loader: Loader,
                       device: DeviceLike = None, bn_batches: int = 20,
                       evaluate: Optional[Callable[..., Dict[str, float]]] = None) -> Dict[str, float]:
    """Accuracy of one architecture with the supernet's weights (its BN statistics recalibrated).

    Args:
        supernet: the trained supernet.
        sample: the architecture, ``{label: op}``.
        calib_loader: training batches for :func:`recalibrated_bn`.
        eval_loader: the batches to score on (the validation split).
        device: where the supernet runs.
        bn_batches: calibration batches.
        evaluate: ``(model, loader, device) -> record`` (default :func:`evaluate_network`;
            a task's ``evaluate`` for other tasks).

    Returns:
        ``evaluate``'s record (``accuracy``, ``loss``, ``samples`` for classification).
    """
    with supernet.fixed(sample), recalibrated_bn(supernet, calib_loader, bn_batches, device):
        if evaluate is None:
            return _run_epoch(supernet, eval_loader, resolve_device(device), "eval", False)
        return evaluate(supernet, eval_loader, resolve_device(device))
