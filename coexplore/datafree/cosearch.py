"""Data-free co-exploration (DANCE++): search the network and its accelerator without the
training data.

With ``data: {name: synthetic, teacher: T.pt, generator: gdfq}`` in a run config, the search
never sees a real training image.  Before the search:

1. the teacher (a full-precision network from ``coexplore teacher train``, or any teacher
   file) is loaded and frozen;
2. the data-free method's generator (GDFQ, Qimera, ClusterQ, LRQ; ZeroQ optimises noise
   images instead) is trained against the teacher for ``generator_steps`` steps -- the same
   losses as in ``coexplore quantize`` (the teacher classifies the samples as their label,
   their BatchNorm statistics match the teacher's stored ones);
3. ``synthetic_samples`` images are drawn from it, each labelled with the teacher's
   probabilities (soft labels); a seeded ``val_fraction`` of them is held out for the
   architecture step.

The weight and architecture steps then train on these samples with cross-entropy to the
teacher's distribution (whose gradient is the KL divergence's: knowledge distillation, as
DANCE++ and the data-free quantisation line do), and the final design is retrained from
scratch the same way.  Only the *test* split is real: the teacher's own dataset's test
images, used for nothing but the reported accuracy, so a data-free design's accuracy is
comparable with a real-data search's.

What this is not: the generator is trained once, before the search, and the search draws
from a fixed pool of its samples (a synthetic dataset), not a fresh batch per step; the pool
makes epochs, resumption and the data fingerprint exact.  DANCE++ also adapts its generator
during the search; that is left out.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from ..common import ConfigError, PathLike
from ..seeds import RunSeeds, isolated_torch_rng

logger = logging.getLogger(__name__)

#: The ``data.name`` of a data-free search.
SYNTHETIC = "synthetic"


class SoftLoader:
    """A re-iterable loader over float images and soft labels (``[N, K]`` probabilities).

    It has the interface of :class:`search_spaces.data.ArrayLoader` that the search uses
    (``images``, ``labels``, ``set_epoch``, ``num_samples``, ``len``); epoch ``e`` draws its
    permutation from a generator seeded by ``(seed, e)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> None:
        self.images = images.contiguous()
        self.labels = labels.contiguous()
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        n = self.num_samples
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2 ** 63))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.images[idx], self.labels[idx]


def train_source(teacher, generator: str, steps: int, batch_size: int, seed: int, progress: bool = False):
    """A data-free method's synthetic source, trained against ``teacher`` for ``steps`` steps.

    Returns:
        The trained :class:`~coexplore.datafree.base.DataFreeMethod` (its ``sample`` draws images).
    """
    from tqdm.auto import tqdm

    from . import load_methods
    from .base import METHODS, MethodConfig

    load_methods()
    cls = METHODS.get(generator)
    if not cls.data_free:
        raise ConfigError(f"config: data.generator {generator!r} trains on real data; a data-free search needs one "
                          f"of {', '.join(n for n in METHODS.names() if METHODS.get(n).data_free)}")
    seeds = RunSeeds(seed)
    for p in teacher.model.parameters():
        p.requires_grad_(False)
    teacher.model.eval()
    with isolated_torch_rng(seeds.entropy("datafree-source")):
        method = cls(teacher, MethodConfig(), seeds.torch("method-init"))
        method.prepare(seeds.torch("prepare"), progress=progress)
        params = method.generator_parameters() if method.trains_generator else []
        if params:
            opt = torch.optim.Adam(params, lr=method.cfg.generator_lr, betas=(0.5, 0.999))
            for s in tqdm(range(steps), desc=f"{generator} generator", leave=False, disable=not progress):
                step = method.generator_loss(batch_size, seeds.torch("generator", s))
                if not torch.isfinite(step.loss):
                    from ..trainer import DivergedError
                    raise DivergedError(f"data-free source: the {generator} generator loss is not finite at step {s}")
                opt.zero_grad(set_to_none=True)
                step.loss.backward()
                opt.step()
    return method


@torch.no_grad()
def draw(method, teacher, n: int, batch_size: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic images and the teacher's probabilities for them (float32, CPU)."""
    xs, ps = [], []
    for i in range(0, n, batch_size):
        x, _ = method.sample(min(batch_size, n - i), generator)
        xs.append(x.detach().float().cpu())
        ps.append(F.softmax(teacher.model(x).float(), dim=1).cpu())
    return torch.cat(xs), torch.cat(ps)


def synthetic_data(d, seed: int, cache_dir: Optional[PathLike] = None, progress: bool = False):
    """The :class:`~search_spaces.data.DataBundle` of a data-free search (see the module docstring).

    Args:
        d: the run's :class:`~coexplore.config.DataConfig` (``name: synthetic``).
        seed: the run's seed (the generator's training, the samples and the split).
        cache_dir: the decode cache for the real test split.
    """
    from search_spaces.data import DataBundle, get_data

    from .teacher import load_teacher

    if not d.teacher:
        raise ConfigError("config: data.teacher is required with data.name: synthetic (a teacher file from "
                          "`coexplore teacher train`)")
    teacher = load_teacher(d.teacher)
    spec = teacher.spec
    if not spec.dataset:
        raise ConfigError(f"config: data.teacher {d.teacher}: the teacher does not record its dataset, so there is "
                          "no real test split to report accuracy on")
    real = get_data(spec.dataset, path=d.path, val_fraction=d.val_fraction, seed=seed, batch_size=d.batch_size,
                    augment=False, limit=d.limit, cache_dir=cache_dir)
    from .run import check_data_matches
    check_data_matches(teacher, real)
    method = train_source(teacher, d.generator, d.generator_steps, d.batch_size, seed, progress=progress)
    seeds = RunSeeds(seed)
    n_val = max(1, int(round(d.synthetic_samples * d.val_fraction)))
    n_train = d.synthetic_samples - n_val
    if n_train < 1:
        raise ConfigError(f"config: data.synthetic_samples={d.synthetic_samples} leaves no training samples at "
                          f"val_fraction {d.val_fraction}")
    with isolated_torch_rng(seeds.entropy("datafree-draw")):
        xt, pt = draw(method, teacher, n_train, 256, seeds.torch("draw-train"))
        xv, pv = draw(method, teacher, n_val, 256, seeds.torch("draw-val"))
    for name, t in (("images", xt), ("teacher probabilities", pt)):
        if not bool(torch.isfinite(t).all()):
            from ..trainer import DivergedError
            raise DivergedError(f"data-free source: the synthetic {name} are not finite")
    entropy = float(-(pt * pt.clamp_min(1e-12).log()).sum(1).mean() / math.log(pt.shape[1]))
    counts = torch.bincount(pt.argmax(1), minlength=pt.shape[1])
    logger.info("data-free source %s: %d train + %d val synthetic samples; teacher's classes on them %s; mean "
                "normalised entropy of its probabilities %.3f", d.generator, n_train, n_val, counts.tolist(), entropy)
    return DataBundle(name=SYNTHETIC, train=SoftLoader(xt, pt, d.batch_size, shuffle=True, seed=seed),
                      val=SoftLoader(xv, pv, d.batch_size, shuffle=True, seed=seed + 1), test=real.test,
                      classes=tuple(spec.classes), input_shape=tuple(spec.input_shape), mean=tuple(spec.mean),
                      std=tuple(spec.std))


__all__ = ["SYNTHETIC", "SoftLoader", "draw", "synthetic_data", "train_source"]
