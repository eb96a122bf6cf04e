"""ZeroQ-style distilled data: "ZeroQ: A Novel Zero Shot Quantization Framework",
Cai et al., CVPR 2020 (arXiv 2001.00281).

No generator: a pool of ``zeroq_pool`` images starts as Gaussian noise and is optimised
(Adam, ``zeroq_steps`` steps per batch) so that the statistics of every BatchNorm layer's
input match the teacher's running statistics (ZeroQ's loss: the L2 distance of means and of
standard deviations, summed over layers).  The images carry no label; the student is
distilled on batches drawn from the pool, and their labels are the teacher's argmax.  ZeroQ
itself only calibrates; here the pool feeds the same student loop as every other method, so
the comparison isolates the data.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F

from .base import DataFreeMethod, register_method

logger = logging.getLogger(__name__)


@register_method("zeroq")
class ZeroQ(DataFreeMethod):
    """ZeroQ's distilled images (see the module docstring)."""

    trains_generator = False

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        self.register_buffer("pool", torch.zeros(cfg.zeroq_pool, *self.image_shape))
        self.register_buffer("pool_labels", torch.zeros(cfg.zeroq_pool, dtype=torch.long))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def prepare(self, generator: torch.Generator, progress: bool = False, batch_size: int = 128) -> Dict[str, float]:
        if bool(self.ready):
            return {}
        from tqdm.auto import tqdm
        n = self.cfg.zeroq_pool
        last = float("nan")
        for start in tqdm(range(0, n, batch_size), desc="zeroq distil", leave=False, disable=not progress):
            b = min(batch_size, n - start)
            x = torch.randn(b, *self.image_shape, generator=generator).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=self.cfg.zeroq_lr)
            for _ in range(self.cfg.zeroq_steps):
                with self.bn_stats.recording():
                    self.teacher(x)
                loss = self.bn_stats.zeroq_loss()
                opt.zero_grad()
                loss.backward()
                opt.step()
            last = float(loss.detach())
            with torch.no_grad():
                self.pool[start:start + b] = x.detach()
                self.pool_labels[start:start + b] = self.teacher(x.detach()).argmax(dim=1)
        self.ready.fill_(True)
        logger.info("zeroq: distilled %d images, final BN loss %.4f", n, last)
        return {"zeroq_bn_loss": last}

    def draw(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        idx = torch.randint(0, self.pool.shape[0], (n,), generator=generator)
        y = self.pool_labels[idx]
        return y, F.one_hot(y, self.num_classes).float(), {"index": idx}

    def generate(self, labels, targets, extra: Mapping[str, Any], generator) -> torch.Tensor:
        return self.pool[extra["index"]]

    def generator_loss(self, n, generator):
        raise RuntimeError("zeroq has no generator to train")
