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
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .supernet import Supernet

logger = logging.getLogger(__name__)

Loader = Iterable[Tuple[torch.Tensor, torch.Tensor]]
DeviceLike = Union[str, torch.device, None]
Callback = Callable[[Dict[str, float]], None]


def resolve_device(device: DeviceLike = None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs!r}")
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          nesterov=nesterov and momentum > 0)
    try:
        steps, per_batch = max(1, epochs * len(loader)), True  # type: ignore[arg-type]
    except TypeError:
        steps, per_batch = max(1, epochs), False
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps)))
    return opt, sched, per_batch


def _run_epoch(model: nn.Module, loader: Loader, device: torch.device, desc: str, progress: bool,
               optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None,
               per_batch: bool = True, grad_clip: Optional[float] = None,
               clip_params: Optional[Sequence[nn.Parameter]] = None) -> Dict[str, float]:
    """One pass over ``loader``: trains when ``optimizer`` is given, else evaluates under no_grad."""
    train = optimizer is not None
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    with torch.set_grad_enabled(train):
        for step, (x, y) in enumerate(bar):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(clip_params if clip_params is not None else model.parameters(), grad_clip)
                optimizer.step()
                if per_batch and scheduler is not None:
                    scheduler.step()
            n = y.shape[0]
            seen += n
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(dim=1) == y).sum()
            if progress and step % 20 == 0:  # .item() syncs the device, so only now and then
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
    if train and not per_batch and scheduler is not None:
        scheduler.step()
    if seen == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "samples": 0}
    return {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen, "samples": seen}


def _fit(model: nn.Module, params: Sequence[nn.Parameter], train_loader: Loader, epochs: int, lr: float,
         device: torch.device, momentum: float, weight_decay: float, nesterov: bool, grad_clip: Optional[float],
         val_loader: Optional[Loader], progress: bool, callback: Optional[Callback], desc: str) -> List[Dict[str, float]]:
    opt, sched, per_batch = _sgd_cosine(params, lr, momentum, weight_decay, nesterov, epochs, train_loader)
    history: List[Dict[str, float]] = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        model.train()
        rec: Dict[str, float] = {"epoch": epoch, "lr": lr_now}
        rec.update(_run_epoch(model, train_loader, device, f"{desc} {epoch + 1}/{epochs}", progress, opt, sched,
                              per_batch, grad_clip, params))
        if val_loader is not None:
            val = evaluate_network(model, val_loader, device, progress=progress)
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
                    progress: bool = True, callback: Optional[Callback] = None) -> List[Dict[str, float]]:
    """Train the supernet's weights only, one uniformly drawn path per step.

    The architecture logits are frozen (``requires_grad`` off, restored afterwards) and the
    path mode is ``"uniform"`` for the duration; the supernet is moved to ``device``.

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

    Returns:
        One record per epoch: ``epoch, lr, loss, accuracy, samples, time_s``.
    """
    dev = resolve_device(device)
    supernet.to(dev)
    arch = supernet.arch_parameters()
    flags = [p.requires_grad for p in arch]
    with seeded(seed, dev), supernet.using_mode("uniform"):
        try:
            for p in arch:
                p.requires_grad_(False)
            return _fit(supernet, supernet.weight_parameters(), train_loader, epochs, lr, dev, momentum,
                        weight_decay, nesterov, grad_clip, None, progress, callback, "warmup")
        finally:
            for p, f in zip(arch, flags):
                p.requires_grad_(f)


def train_network(model: nn.Module, train_loader: Loader, epochs: int, lr: float, device: DeviceLike = None, *,
                  momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True,
                  grad_clip: Optional[float] = None, val_loader: Optional[Loader] = None,
                  seed: Optional[int] = None, progress: bool = True,
                  callback: Optional[Callback] = None) -> List[Dict[str, float]]:
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

    Returns:
        One record per epoch: ``epoch, lr, loss, accuracy, samples, time_s`` (plus
        ``val_loss, val_accuracy`` with a ``val_loader``).
    """
    dev = resolve_device(device)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    with seeded(seed, dev):
        return _fit(model, params, train_loader, epochs, lr, dev, momentum, weight_decay, nesterov, grad_clip,
                    val_loader, progress, callback, "train")


def evaluate_network(model: nn.Module, loader: Loader, device: DeviceLike = None, *,
                     progress: bool = False) -> Dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``loader`` (eval mode, no grad).

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
        return _run_epoch(model, loader, dev, "eval", progress)
    finally:
        model.train(was_training)
