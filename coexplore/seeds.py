"""Explicit random streams for every part of a run; no global seeding.

A run's seed is split, with numpy's :class:`~numpy.random.SeedSequence`, into independent
streams named by role (``"init"``, ``"paths"``, ``"steps"``, ``"baseline"`` ...) and, where
a stream restarts every epoch, by epoch.  So:

* no part consumes another's numbers: building (or loading from cache) the evaluator, or
  running more epochs, cannot change what an unrelated part draws;
* resuming at an epoch boundary needs no saved generator state -- the stream of epoch
  ``e`` is a pure function of ``(seed, role, e)``;
* the process-wide generators of torch, numpy and ``random`` are never seeded or advanced
  by coexplore (torch code that can only use the global generator, such as dropout, runs
  inside :func:`isolated_torch_rng`, which forks and restores it).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator, Optional

import numpy as np
import torch


def _role_key(role: str) -> int:
    return int.from_bytes(hashlib.sha256(role.encode()).digest()[:4], "little")


class RunSeeds:
    """Independent random streams of one run, derived from its seed.

    Args:
        seed: the run's seed (0 .. 2^32 - 1).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def entropy(self, role: str, epoch: Optional[int] = None) -> int:
        """A 63-bit integer for ``(seed, role[, epoch])``."""
        key = [self.seed, _role_key(role)] + ([] if epoch is None else [int(epoch)])
        return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> np.uint64(1))

    def numpy(self, role: str, epoch: Optional[int] = None) -> np.random.Generator:
        """A numpy Generator for the role."""
        return np.random.default_rng(self.entropy(role, epoch))

    def torch(self, role: str, epoch: Optional[int] = None, device: torch.device | str = "cpu") -> torch.Generator:
        """A torch Generator on ``device`` for the role."""
        g = torch.Generator(device=torch.device(device))
        g.manual_seed(self.entropy(role, epoch))
        return g


@contextlib.contextmanager
def isolated_torch_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with torch's global generators seeded by ``seed`` and restored afterwards.

    For code that can only draw from the global generator (module construction,
    ``nn.Dropout``); the caller's global stream is left exactly as it was.
    """
    dev = torch.device(device)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) % (2 ** 63))
        yield
