"""The bilevel trainer: DANCE's alternating weight and architecture steps.

Each step of an epoch trains the supernet's weights on a training batch (one path drawn
from the architecture distribution, or during warm-up the path mode of
:func:`search_spaces.train.warmup_mode`), then -- after the warm-up, for methods that train
the architecture -- the architecture logits on a validation batch with

    loss = task loss + lambda * cost(hw_encoding)

(:class:`~coexplore.penalty.HardwarePenalty`), whose gradient a method may adjust before
the step (HDX's manipulation, :class:`~coexplore.hdx.HDXSteering`).

Randomness is explicit (:class:`~coexplore.seeds.RunSeeds`): paths are drawn from a
generator re-seeded from ``(seed, "paths", epoch)`` at the start of every epoch, and code
that can only use torch's global generator (dropout) runs with it forked and seeded from
``(seed, "steps", epoch)`` -- so an epoch is a pure function of the state at its start, and
resuming at an epoch boundary is exact.

A non-finite loss, gradient or parameter stops training with :class:`DivergedError`,
naming the epoch, the step and what diverged; so does a training loss that exploded to more
than :data:`EXPLOSION` times the run's first one (a cross-entropy of 1e23 is finite but
says the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from search_spaces.train import autocast, train_step, warmup_mode

from .common import ConfigError
from .penalty import HardwarePenalty
from .seeds import RunSeeds, isolated_torch_rng


#: A weight-step loss above this many times the run's first loss counts as diverged.
EXPLOSION = 1e4


class DivergedError(RuntimeError):
    """A non-finite loss or parameter; the message says where (epoch, step, what)."""


@dataclass(frozen=True)
class TrainerSettings:
    """What the trainer needs from the run config."""

    epochs: int  # search epochs
    warmup_epochs: int  # weights-only epochs first
    steps_per_epoch: int  # steps per epoch
    w_lr: float
    w_momentum: float
    w_weight_decay: float
    a_lr: float
    a_weight_decay: float
    hw_encoding: str  # "expected" | "argmax"
    grad_clip: float = 5.0
    amp: str = "off"  # forward passes' mixed precision: auto | bf16 | off (search_spaces.train.AMP_MODES)

    @property
    def total_epochs(self) -> int:
        return self.warmup_epochs + self.epochs


class BilevelTrainer:
    """Alternating weight / architecture steps on a supernet.

    Args:
        supernet: the supernet (on ``device``).
        data: a :class:`~search_spaces.data.DataBundle` (``train`` and ``val`` loaders with ``set_epoch``).
        settings: optimisation settings.
        seeds: the run's random streams.
        device: where everything runs.
        penalty: the hardware-aware loss (None: the architecture is trained on the task loss).
        steering: adjusts the architecture gradient (``adjust(grads, params, out)``), or None.
        trains_architecture: False for one-shot methods: every epoch trains weights only.
        task: the task (:mod:`search_spaces.tasks`): its ``loss(outputs, targets)`` trains
            both levels; default classification.
    """

    def __init__(self, supernet, data, settings: TrainerSettings, seeds: RunSeeds, device: torch.device,
                 penalty: Optional[HardwarePenalty] = None, steering: Any = None, trains_architecture: bool = True,
                 task: Any = None) -> None:
        self.net = supernet
        self.data = data
        self.s = settings
        self.seeds = seeds
        self.device = device
        self.penalty = penalty
        self.steering = steering
        self.trains_architecture = trains_architecture
        if task is None:
            from search_spaces.tasks import Classification
            task = Classification()
        self.task = task
        self.loss_fn = task.loss
        self._correct = getattr(task, "batch_correct", None)
        self.w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=settings.w_lr, momentum=settings.w_momentum,
                                     weight_decay=settings.w_weight_decay, nesterov=True)
        self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_opt, T_max=settings.total_epochs * settings.steps_per_epoch)
        self.a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=settings.a_lr, betas=(0.5, 0.999),
                                      weight_decay=settings.a_weight_decay)
        self.reference_loss: Optional[float] = None  # the first weight-step loss of the run

    # ---- the encoding the hardware cost sees ---------------------------------------------
    def hw_encoding(self) -> torch.Tensor:
        """``[D]``: the soft probabilities (DANCE's expected cost) or, with ``hw_encoding:
        argmax``, the argmax architecture with straight-through gradients, so that costs and
        constraints are those of the design that will be derived."""
        probs = self.net.arch_encoding()
        if self.s.hw_encoding == "expected":
            return probs
        space = self.net.space
        parts = []
        for lo, hi in zip(space.offsets[:-1], space.offsets[1:]):
            p = probs[lo:hi]
            hard = F.one_hot(p.detach().argmax(), hi - lo).to(p.dtype)
            parts.append(hard - p.detach() + p)
        return torch.cat(parts)

    def is_warm(self, epoch: int) -> bool:
        """Weights-only epoch: inside the warm-up, or any epoch of a one-shot method."""
        return epoch < self.s.warmup_epochs or not self.trains_architecture

    # ---- one epoch -------------------------------------------------------------------------
    def run_epoch(self, epoch: int, on_step=None) -> Dict[str, float]:
        """Train one epoch; returns sums for the epoch's log row.

        Args:
            epoch: the epoch index (warm-up epochs included).
            on_step: called as ``on_step(step, {"train_loss": float})`` after every step.

        Raises:
            DivergedError: a non-finite loss, gradient or parameter.
        """
        net, warm = self.net, self.is_warm(epoch)
        net.generator = self.seeds.torch("paths", epoch, device=self.device if self.device.type == "cuda" else "cpu")
        self.data.train.set_epoch(epoch)
        self.data.val.set_epoch(epoch)
        stats = {"train_loss": 0.0, "train_correct": 0.0, "ce_arch": 0.0, "cost_loss": 0.0, "n": 0, "arch_steps": 0}
        weights = net.weight_parameters()
        with isolated_torch_rng(self.seeds.entropy("steps", epoch), self.device):
            val_iter = iter(self.data.val)
            for step, (x, y) in enumerate(self.data.train):
                if step >= self.s.steps_per_epoch:
                    break
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                net.train()
                if warm:
                    with net.using_mode(warmup_mode(net)):
                        loss, logits = train_step(net, x, y, self.w_opt, self.w_sched, self.s.grad_clip, weights,
                                                  self.loss_fn, amp=self.s.amp)
                else:
                    loss, logits = train_step(net, x, y, self.w_opt, self.w_sched, self.s.grad_clip, weights,
                                              self.loss_fn, amp=self.s.amp)
                step_loss = float(loss)
                if self.reference_loss is None and math.isfinite(step_loss):
                    self.reference_loss = step_loss
                if not math.isfinite(step_loss) or step_loss > EXPLOSION * max(1.0, self.reference_loss or 1.0):
                    raise DivergedError(f"epoch {epoch + 1}, step {step + 1}: the weight step's training loss is "
                                        f"{step_loss:.4g} (the first was {self.reference_loss or float('nan'):.4g}); "
                                        f"lower w_lr, currently {self.s.w_lr:g}")
                stats["train_loss"] += step_loss * len(x)
                if self._correct is not None:
                    stats["train_correct"] += self._correct(logits, y)
                else:
                    stats["train_correct"] = None
                stats["n"] += len(x)
                if not warm:
                    try:
                        xv, yv = next(val_iter)
                    except StopIteration:
                        val_iter = iter(self.data.val)
                        xv, yv = next(val_iter)
                    self._arch_step(xv.to(self.device, non_blocking=True), yv.to(self.device, non_blocking=True),
                                    stats, epoch, step)
                if on_step is not None:
                    on_step(step, {"train_loss": step_loss})
        self._check_finite(epoch)
        return stats

    def _arch_step(self, xv: torch.Tensor, yv: torch.Tensor, stats: Dict[str, float], epoch: int, step: int) -> None:
        net = self.net
        net.train()
        with autocast(self.device, self.s.amp):  # the network's forward; the hardware cost stays float32
            ce = self.loss_fn(net(xv), yv).float()
        params = net.arch_parameters()
        self.a_opt.zero_grad(set_to_none=True)
        if self.penalty is not None:
            loss, out = self.penalty(ce, self.hw_encoding())
            cost = out["cost"]
        else:
            loss, out, cost = ce, {}, torch.zeros(())
        if not math.isfinite(float(loss.detach())):
            raise DivergedError(f"epoch {epoch + 1}, step {step + 1}: the architecture step's loss is "
                                f"{float(loss.detach())} (task loss {float(ce.detach())}, hardware cost "
                                f"{float(cost.detach())})")
        grads = torch.autograd.grad(loss, params, retain_graph=self.steering is not None, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
        if self.steering is not None:
            grads = self.steering.adjust(grads, params, out)
        for p, g in zip(params, grads):
            if not torch.isfinite(g).all():
                raise DivergedError(f"epoch {epoch + 1}, step {step + 1}: a non-finite architecture gradient")
            p.grad = g.detach()
        self.a_opt.step()
        stats["ce_arch"] += float(ce.detach())
        stats["cost_loss"] += float(cost.detach())
        stats["arch_steps"] += 1

    def _check_finite(self, epoch: int) -> None:
        for name, p in self.net.named_parameters():
            if not torch.isfinite(p.detach()).all():
                what = "architecture logits" if name.startswith("arch_logits") else f"weight {name}"
                raise DivergedError(f"epoch {epoch + 1}: non-finite values in the supernet's {what}")

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"supernet": self.net.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "w_sched": self.w_sched.state_dict(),
                "steering": self.steering.state_dict() if self.steering is not None else {},
                "reference_loss": self.reference_loss}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.net.load_state_dict(state["supernet"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.w_sched.load_state_dict(state["w_sched"])
        self.reference_loss = state.get("reference_loss")
        if self.steering is not None:
            self.steering.load_state_dict(state["steering"])
        elif state.get("steering"):
            raise ConfigError("checkpoint holds a gradient-steering state, but this run's method has none")
