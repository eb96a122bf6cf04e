"""The generator protocol of data-free quantisation and the parts every method shares.

A *method* (GDFQ, ZeroQ, Qimera, ClusterQ, LRQ, ...) is a small class registered in
:data:`METHODS`, built as ``Method(teacher, cfg, generator)`` (one constructor signature), that

* owns a **synthetic source** -- :meth:`DataFreeMethod.sample` draws ``n`` images and their labels
  from an explicit ``torch.Generator``; :meth:`DataFreeMethod.sample_targets` gives the soft
  target distributions the generator was asked for (one-hot except for superposed samples);
* trains it against the frozen teacher (:meth:`DataFreeMethod.generator_loss`), usually with the
  teacher's BatchNorm statistics (:class:`BNStatistics`, GDFQ's BNS loss);
* supplies the student's loss (:meth:`DataFreeMethod.student_loss`; AIT replaces it, see
  :mod:`coexplore.datafree.ait`).

:class:`SyntheticData` wraps a method and the teacher into what a search needs (DANCE++):
``batch(n, generator) -> (images, labels, teacher_logits)``.

The generator network (:class:`ConditionalGenerator`) is GDFQ's (Xu et al., ECCV 2020): a
conditioning vector times Gaussian noise, a linear layer to ``128 x H/4 x W/4``, two
upsample + conv + BN + LeakyReLU stages, a conv to the image channels, tanh and a final
non-affine BatchNorm (the images live in the teacher's normalised input space).  LRQ adds
large-kernel attention to it (``lka=True``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..common import ConfigError, Registry
from .teacher import Teacher, bn_layers

#: Registered data-free methods: ``cls(teacher, cfg, generator)``.
METHODS: Registry[type] = Registry("data-free method")


def register_method(name: str):
    """Class decorator registering a :class:`DataFreeMethod` subclass under ``name``."""

    def deco(cls):
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return deco


def list_methods() -> List[str]:
    return METHODS.names()


class GeneratorStep(NamedTuple):
    """One generator batch: its loss and what the student may reuse."""

    loss: torch.Tensor  # scalar, with gradients to the generator
    info: Dict[str, float]  # the loss terms, for the metrics
    images: torch.Tensor  # [B, C, H, W], with gradients
    targets: torch.Tensor  # [B, K] target distributions
    teacher_logits: torch.Tensor  # [B, K], with gradients


@dataclass(frozen=True)
class MethodConfig:
    """Settings of the synthetic source and its training (one record for every method)."""

    latent_dim: int = 100  # noise dimension of the generator
    generator_channels: int = 128  # width of the generator's first stage (GDFQ: 128; the second has half)
    bns_weight: float = 0.1  # weight of the BN-statistics loss (GDFQ: 0.1)
    generator_lr: float = 1e-3  # Adam learning rate of the generator (GDFQ: 1e-3, betas 0.5/0.999)
    # Qimera
    mix_ratio: float = 0.4  # fraction of each batch drawn as superposed (boundary) samples
    mix_classes: int = 2  # classes superposed per boundary sample
    # ClusterQ
    cluster_layers: int = 2  # the deepest BN layers whose per-class statistics are clustered
    cluster_momentum: float = 0.2  # EMA weight of a new batch in the class centroids
    cluster_weight: float = 0.1  # weight of the centroid-alignment loss
    diversity_weight: float = 0.1  # weight of the intra-class variance (diversity) term
    diversity_target: float = 0.05  # wanted within-class variance, as a fraction of the BN running variance
    # LRQ
    ama_margin: float = 0.2  # additive cosine margin of AMA
    ama_scale: float = 10.0  # scale of the normalised logits in AMA
    dkd_alpha: float = 1.0  # DKD: weight of target-class KD
    dkd_beta: float = 2.0  # DKD: weight of non-target-class KD
    # ZeroQ
    zeroq_pool: int = 512  # distilled images
    zeroq_steps: int = 200  # optimisation steps per distilled batch
    zeroq_lr: float = 0.1  # Adam learning rate of the distilled images
    # diffusion-mixup (GenQ-style mixup-class prompts; needs a local diffusers pipeline)
    diffusion_path: Optional[str] = None  # a local diffusers pipeline folder; no weights ship with coexplore
    diffusion_pool: int = 64  # generated images
    diffusion_steps: int = 25  # denoising steps per image
    diffusion_guidance: float = 7.5  # classifier-free guidance scale
    diffusion_resolution: int = 256  # generated height = width, pixels (resized to the teacher's input)
    # the student's default loss
    kd_temperature: float = 1.0  # softmax temperature of KD
    ce_weight: float = 1.0  # weight of the CE on the generator's labels (GDFQ's student loss)

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with target distributions.

    Args:
        logits: ``B x K``.
        targets: ``B x K`` rows summing to 1.

    Returns:
        The mean over the batch, a scalar.
    """
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T)) * T^2``, batch mean (Hinton et al., 2015).

    Args:
        student_logits, teacher_logits: ``B x K``.
        temperature: T > 0.
    """
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


class BNStatistics:
    """Forward hooks on a network's BatchNorm layers that record each batch's input statistics.

    Inside :meth:`recording`, every BN layer's input ``[B, C, H, W]`` leaves its per-channel
    batch mean and (biased) variance ``C`` in :attr:`means` / :attr:`vars` (with gradients),
    and, when asked, the per-sample channel means ``[B, C]`` in :attr:`sample_means`.

    Args:
        model: the teacher (its BN layers keep their running statistics, the targets).
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = bn_layers(model)
        self.means: List[torch.Tensor] = []
        self.vars: List[torch.Tensor] = []
        self.sample_means: List[torch.Tensor] = []
        self._keep_samples = False

    def _hook(self, mod: nn.Module, inputs, output) -> None:
        x = inputs[0]
        self.means.append(x.mean(dim=(0, 2, 3)))
        self.vars.append(x.var(dim=(0, 2, 3), unbiased=False))
        if self._keep_samples:
            self.sample_means.append(x.mean(dim=(2, 3)))

    @contextlib.contextmanager
    def recording(self, sample_means: bool = False) -> Iterator["BNStatistics"]:
        self.means, self.vars, self.sample_means = [], [], []
        self._keep_samples = sample_means
        handles = [m.register_forward_hook(self._hook) for m in self.layers]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def loss(self) -> torch.Tensor:
        """GDFQ's BNS loss: the mean over layers of ``MSE(mu, running_mean) + MSE(var, running_var)``."""
        if not self.means:
            raise ConfigError("BN-statistics loss: no BatchNorm layer ran (does the teacher have BatchNorm?)")
        total = 0.0
        for m, v, bn in zip(self.means, self.vars, self.layers):
            total = total + F.mse_loss(m, bn.running_mean) + F.mse_loss(v, bn.running_var)
        return total / len(self.means)

    def zeroq_loss(self) -> torch.Tensor:
        """ZeroQ's statistic loss: the sum over layers of ``||mu - mu_bn||_2 + ||sigma - sigma_bn||_2``."""
        total = 0.0
        for m, v, bn in zip(self.means, self.vars, self.layers):
            total = total + torch.norm(m - bn.running_mean) + torch.norm((v + 1e-5).sqrt() -
                                                                         (bn.running_var + 1e-5).sqrt())
        return total / max(len(self.means), 1)


def require_bn(teacher: Teacher, method: str) -> None:
    if not bn_layers(teacher.model):
        raise ConfigError(f"method {method!r} matches the teacher's BatchNorm statistics, but the teacher "
                          f"(arch {teacher.spec.arch!r}) has no BatchNorm2d layer; use a teacher with BatchNorm "
                          f"or method real-qat")


# --------------------------------------------------------------------------------------------------
# Generator networks
# --------------------------------------------------------------------------------------------------


class LKA(nn.Module):
    """Large-kernel attention (Guo et al., Visual Attention Network, 2022), as LRQ's generator uses it.

    A 5x5 depthwise conv, a 7x7 depthwise conv with dilation 3 and a 1x1 conv give an attention
    map with a 21x21 receptive field that multiplies the input.
    Shapes: ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.dilated = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mix(self.dilated(self.local(x)))


class ConditionalGenerator(nn.Module):
    """GDFQ's generator, optionally with LRQ's large-kernel attention.

    Shapes: ``z [B, latent_dim]``, ``cond [B, latent_dim] -> [B, C, H, W]`` (``H``, ``W``
    divisible by 4), in the teacher's normalised input space.

    Args:
        image_shape: ``(C, H, W)``.
        latent_dim: noise (and conditioning) dimension.
        lka: add a residual large-kernel attention block after each upsampling stage (LRQ).
        channels: width of the first stage (GDFQ: 128); the second stage has half.
    """

    def __init__(self, image_shape: Sequence[int], latent_dim: int = 100, lka: bool = False,
                 channels: int = 128) -> None:
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        if h % 4 or w % 4:
            raise ConfigError(f"the generator needs an input height and width divisible by 4, got {h}x{w}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
            raise ConfigError(f"generator_channels must be an integer >= 2, got {channels!r}")
        self.init_hw = (h // 4, w // 4)
        self.channels = channels
        half = channels // 2
        self.fc = nn.Linear(latent_dim, channels * self.init_hw[0] * self.init_hw[1])
        self.bn0 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels),
                                   nn.LeakyReLU(0.2))
        self.lka1 = LKA(channels) if lka else None
        self.conv2 = nn.Sequential(nn.Conv2d(channels, half, 3, 1, 1), nn.BatchNorm2d(half), nn.LeakyReLU(0.2))
        self.lka2 = LKA(half) if lka else None
        self.out = nn.Sequential(nn.Conv2d(half, c, 3, 1, 1), nn.Tanh(), nn.BatchNorm2d(c, affine=False))

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.fc(z * cond).view(z.shape[0], self.channels, *self.init_hw)
        h = F.interpolate(self.bn0(h), scale_factor=2)
        h = self.conv1(h)
        if self.lka1 is not None:
            h = h + self.lka1(h)
        h = self.conv2(F.interpolate(h, scale_factor=2))
        if self.lka2 is not None:
            h = h + self.lka2(h)
        return self.out(h)


def init_module(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Initialise every conv / linear / embedding weight of ``module`` from ``generator``
    (PyTorch's default uniform fan-in bounds, drawn from the explicit stream)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            bound = 1.0 / fan_in ** 0.5
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * 2 * bound - bound)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) * 2 * bound - bound)
        elif isinstance(m, nn.Embedding):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
    return module


# --------------------------------------------------------------------------------------------------
# The method protocol
# --------------------------------------------------------------------------------------------------


class DataFreeMethod(nn.Module):
    """Base class of a data-free method; see the module docstring.

    Subclasses set :attr:`needs_bn` / :attr:`trains_generator` and override :meth:`generate`,
    :meth:`generator_loss` and, where they differ from GDFQ, :meth:`student_loss`.  Everything
    learnable or stateful (generator, embeddings, centroids, a distilled pool) is a submodule,
    parameter or buffer, so ``state_dict`` checkpoints it.

    Args:
        teacher: the frozen full-precision teacher.
        cfg: the :class:`MethodConfig`.
        generator: draws the initial weights.
    """

    name = ""
    needs_bn = True  # matches BN statistics (refuses a teacher without BatchNorm)
    trains_generator = True  # has a generator trained alongside the student
    data_free = True  # False only for the real-data upper bound

    def __init__(self, teacher: Teacher, cfg: MethodConfig, generator: torch.Generator) -> None:
        super().__init__()
        if self.needs_bn:
            require_bn(teacher, self.name)
        self.cfg = cfg
        self.image_shape = tuple(teacher.spec.input_shape)
        self.num_classes = teacher.spec.num_classes
        # The teacher is not a submodule: it is frozen (eval mode, no gradients of its own) and never
        # checkpointed with the method.
        teacher.model.eval()
        for p in teacher.model.parameters():
            p.requires_grad_(False)
        self.__dict__["teacher"] = teacher.model
        self.__dict__["bn_stats"] = BNStatistics(teacher.model)

    # ---- the synthetic source -------------------------------------------------------------
    def draw(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        """Draw ``n`` conditioning requests: ``(labels [n] int64, targets [n, K], extra)``.

        The default draws uniform hard labels (one-hot targets)."""
        y = torch.randint(0, self.num_classes, (n,), generator=generator)
        return y, F.one_hot(y, self.num_classes).float(), {}

    def generate(self, labels: torch.Tensor, targets: torch.Tensor, extra: Mapping[str, Any],
                 generator: torch.Generator) -> torch.Tensor:
        """Images ``[n, C, H, W]`` for the drawn requests (with gradients to the generator)."""
        raise NotImplementedError

    def sample_targets(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n`` synthetic images and the target distributions they were generated for.

        Args:
            n: batch size.
            generator: the explicit random stream (CPU ``torch.Generator``).

        Returns:
            ``(images [n, C, H, W] float32, targets [n, K] float32 rows summing to 1)``, detached.
        """
        with torch.no_grad():
            labels, targets, extra = self.draw(n, generator)
            return self.generate(labels, targets, extra, generator).detach(), targets

    def sample(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n`` synthetic images and their labels (the class each was generated for; for a
        superposed sample, its dominant class).

        Returns:
            ``(images [n, C, H, W] float32, labels [n] int64)``, detached.
        """
        x, t = self.sample_targets(n, generator)
        return x, t.argmax(dim=1)

    # ---- training --------------------------------------------------------------------------
    def generator_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def generator_loss(self, n: int, generator: torch.Generator) -> GeneratorStep:
        """GDFQ's generator loss on a fresh batch: ``CE(teacher(x), targets) + bns_weight * BNS``."""
        labels, targets, extra = self.draw(n, generator)
        x = self.generate(labels, targets, extra, generator)
        with self.bn_stats.recording():
            logits = self.teacher(x)
        ce = soft_cross_entropy(logits, targets)
        bns = self.bn_stats.loss()
        return GeneratorStep(ce + self.cfg.bns_weight * bns, {"g_ce": float(ce.detach()), "g_bns": float(bns.detach())},
                             x, targets, logits)

    def student_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     targets: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """GDFQ's student loss: ``ce_weight * CE(student, targets) + KL(teacher || student)``.

        Args:
            student_logits, teacher_logits: ``B x K``.
            targets: ``B x K`` target distributions of the synthetic batch.
        """
        ce = soft_cross_entropy(student_logits, targets)
        kd = kd_kl(student_logits, teacher_logits, self.cfg.kd_temperature)
        return self.cfg.ce_weight * ce + kd, {"s_ce": float(ce.detach()), "s_kd": float(kd.detach())}

    def prepare(self, generator: torch.Generator, progress: bool = False) -> Dict[str, float]:
        """Work done once before the student loop (ZeroQ distils its images here)."""
        return {}


class SyntheticData:
    """Batches of synthetic images with the teacher's soft labels, for a search (DANCE++).

    Args:
        method: a (trained) :class:`DataFreeMethod`.
        teacher: the teacher network (eval mode).
    """

    def __init__(self, method: DataFreeMethod, teacher: nn.Module) -> None:
        self.method = method
        self.teacher = teacher

    @torch.no_grad()
    def batch(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images [n, C, H, W], labels [n] int64, teacher_logits [n, K])``."""
        x, y = self.method.sample(n, generator)
        return x, y, self.teacher(x)


__all__: Sequence[str] = ["BNStatistics", "ConditionalGenerator", "DataFreeMethod", "GeneratorStep", "LKA", "METHODS",
                          "MethodConfig", "SyntheticData", "init_module", "kd_kl", "list_methods",
                          "register_method", "require_bn", "soft_cross_entropy"]
