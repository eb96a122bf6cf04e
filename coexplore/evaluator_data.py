"""Training data for the DANCE evaluator, generated with the analytical cost model.

DANCE (Choi et al., DAC 2021, Sec. 4) pre-trains its evaluator on Timeloop labels: 50k
sampled networks, each with its best accelerator (hardware-generation labels), and about
1.8M (network, accelerator) pairs with their latency, energy and area (cost-estimation
labels).  Here the labels come from :class:`~coexplore.pricing.CostTable`, which prices
any architecture on every accelerator of the hardware space exactly and in one matrix
product, so DANCE's scale takes seconds (the BLAS product uses all cores).

Architectures are drawn both as discrete one-hot samples and as soft per-block
distributions, because the search feeds the evaluator soft probabilities; a soft
architecture is labelled by its expected latency and energy (exact, costs are additive).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from .common import ConfigError, atomic_write_bytes, default_cache_dir


from .constraints import ConstraintSet, constrained_argmin
from .objectives import Objective
from .pricing import CostTable

logger = logging.getLogger(__name__)

DATASET_FORMAT = 2  # 2: labels may be constraint-aware; meta holds the constraints


@dataclass
class EvaluatorDataset:
    """Architecture encodings with their analytical labels.

    Attributes:
        enc: ``[n, D]`` float32 architecture encodings (one-hot or soft).
        soft: ``[n]`` bool, True for soft distributions.
        best: ``[n]`` int, flat index of the best accelerator for the objective.
        best_params: ``[n, P]`` int, per-parameter category indices of ``best``.
        best_score: ``[n]`` the objective at ``best``.
        pair_arch, pair_acc: ``[m]`` int, (architecture row, accelerator flat index) pairs.
        pair_latency, pair_energy, pair_area: ``[m]`` seconds, joules, mm^2.
        meta: what the data depends on (search space, hardware space, cost-model version,
            objective) and how it was drawn.
    """

    enc: np.ndarray
    soft: np.ndarray
    best: np.ndarray
    best_params: np.ndarray
    best_score: np.ndarray
    pair_arch: np.ndarray
    pair_acc: np.ndarray
    pair_latency: np.ndarray
    pair_energy: np.ndarray
    pair_area: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def num_arch(self) -> int:
        return int(self.enc.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.pair_arch.shape[0])

    def save(self, path: Union[str, Path]) -> None:
        buf = io.BytesIO()
        arrays = {k: getattr(self, k) for k in ("enc", "soft", "best", "best_params", "best_score", "pair_arch",
                                                "pair_acc", "pair_latency", "pair_energy", "pair_area")}
        np.savez_compressed(buf, meta=np.array(json.dumps(self.meta)), **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @staticmethod
    def load(path: Union[str, Path]) -> "EvaluatorDataset":
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path}: not a readable evaluator dataset ({exc})") from None
        return EvaluatorDataset(meta=meta, **arrays)


def random_soft_encodings(space, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, D]`` soft architecture distributions: per-block softmax of random logits.

    The logit scale is drawn per row (log-uniform over 0.1..10), so rows range from nearly
    uniform (the start of a search) to nearly one-hot (its end).
    """
    scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(n, 1)))
    logits = rng.normal(size=(n, space.encoding_size)) * scale
    out = np.empty_like(logits)
    for lo, hi in zip(space.offsets[:-1], space.offsets[1:]):
        z = logits[:, lo:hi] - logits[:, lo:hi].max(axis=1, keepdims=True)
        e = np.exp(z)
        out[:, lo:hi] = e / e.sum(axis=1, keepdims=True)
    return out.astype(np.float32)


def random_onehot_encodings(space, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, D]`` uniformly drawn discrete architectures, one-hot per block."""
    out = np.zeros((n, space.encoding_size), dtype=np.float32)
    for lo, hi in zip(space.offsets[:-1], space.offsets[1:]):
        out[np.arange(n), lo + rng.integers(0, hi - lo, size=n)] = 1.0
    return out


def dataset_key(table: CostTable, objective: Objective, num_arch: int, soft_fraction: float,
                pairs_per_arch: int, seed: int, constraints: Optional[ConstraintSet] = None) -> str:
    blob = json.dumps({"format": DATASET_FORMAT, **table.key(), "objective": objective.key(), "n": num_arch,
                       "soft": soft_fraction, "pairs": pairs_per_arch, "seed": seed,
                       **({"constraints": sorted(constraints.to_list())} if constraints else {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def generate_dataset(table: CostTable, objective: Objective, num_arch: int = 50_000,
                     soft_fraction: float = 0.5, pairs_per_arch: int = 36, seed: int = 0,
                     cache_dir: Optional[Union[str, Path]] = None, use_cache: bool = True,
                     progress: bool = True, chunk: int = 4096,
                     constraints: Optional[ConstraintSet] = None) -> EvaluatorDataset:
    """Sample architectures, price them on the whole hardware space, label, and cache.

    Args:
        table: the analytical cost table of (search space, hardware space).
        objective: what "best accelerator" means (DANCE: EDAP).
        num_arch: architectures to draw (DANCE: 50k).
        soft_fraction: share of soft distributions among them.
        pairs_per_arch: (architecture, accelerator) pairs kept per architecture for the
            cost-estimation network: the best accelerator plus random others (DANCE: ~1.8M
            pairs in all = 36 per architecture at 50k).
        seed: seeds the draw.
        cache_dir: where to cache (default :func:`default_cache_dir`); keyed by search
            space, hardware space, cost-model version, objective and the arguments above.
        use_cache: read and write the cache.
        progress: show a progress bar.
        chunk: architectures priced per matrix product.
        constraints: hard constraints (a :class:`ConstraintSet`): the label is then the best
            accelerator *among those meeting them* (the least-violating one when none does), as
            HDX's final refinement chooses, so that the generator predicts the hardware a
            constrained search will really get.
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (parse it at the boundary), got {type(objective).__name__}")
    if table.hardware is None:
        raise ConfigError("generate_dataset needs a CostTable built on a HardwareSpace (for the per-parameter labels)")
    if num_arch < 10:
        raise ConfigError(f"num_arch must be >= 10, got {num_arch}")
    if not 0.0 <= soft_fraction <= 1.0:
        raise ConfigError(f"soft_fraction must be in [0, 1], got {soft_fraction}")
    if pairs_per_arch < 1:
        raise ConfigError(f"pairs_per_arch must be >= 1, got {pairs_per_arch}")
    cons = constraints if constraints is not None else ConstraintSet()
    key = dataset_key(table, objective, num_arch, soft_fraction, pairs_per_arch, seed, cons)
    path = default_cache_dir(cache_dir) / "evaluator-data" / f"{key}.npz"
    if use_cache and path.is_file():
        logger.info("evaluator dataset: cache hit %s", path)
        return EvaluatorDataset.load(path)

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    space, hw = table.space, table.hardware
    n_soft = int(round(num_arch * soft_fraction))
    enc = np.concatenate([random_onehot_encodings(space, num_arch - n_soft, rng),
                          random_soft_encodings(space, n_soft, rng)])
    soft = np.concatenate([np.zeros(num_arch - n_soft, bool), np.ones(n_soft, bool)])
    perm = rng.permutation(num_arch)
    enc, soft = enc[perm], soft[perm]

    A = table.num_accelerators
    k = min(pairs_per_arch, A)
    best = np.empty(num_arch, np.int64)
    best_score = np.empty(num_arch)
    pa, pc, pl, pe, par = [], [], [], [], []
    bar = _progress(num_arch, "pricing architectures on the hardware space", progress)
    for lo in range(0, num_arch, chunk):
        hi = min(num_arch, lo + chunk)
        lat, en, area = table.metrics(enc[lo:hi])
        score = np.asarray(objective(lat, en, area), dtype=np.float64)
        b, _ = constrained_argmin(score, cons.violation(lat, en, area))
        best[lo:hi] = b
        best_score[lo:hi] = score[np.arange(hi - lo), b]
        # pairs: the best accelerator plus k-1 random others per architecture
        others = rng.integers(0, A, size=(hi - lo, k - 1))
        acc = np.concatenate([b[:, None], others], axis=1)
        rows = np.repeat(np.arange(hi - lo), k)
        acc = acc.reshape(-1)
        pa.append(rows + lo)
        pc.append(acc)
        pl.append(lat[rows, acc])
        pe.append(en[rows, acc])
        par.append(np.asarray(area)[rows, acc])
        bar.update(hi - lo)
    bar.close()
    grid = hw.index_grid()
    elapsed = time.perf_counter() - t0
    n_pairs_priced = num_arch * A
    meta = {"format": DATASET_FORMAT, **table.key(), "search_space_name": space.name, "hardware_space_name": hw.name,
            "objective": objective.key(), "objective_spec": objective.to_spec(), "constraints": cons.to_list(),
            "num_arch": num_arch, "soft_fraction": soft_fraction,
            "pairs_per_arch": k, "seed": seed, "seconds": elapsed,
            "arch_per_s": num_arch / max(elapsed, 1e-9), "pairs_priced_per_s": n_pairs_priced / max(elapsed, 1e-9)}
    ds = EvaluatorDataset(enc=enc, soft=soft, best=best, best_params=grid[best].astype(np.int64),
                          best_score=best_score, pair_arch=np.concatenate(pa), pair_acc=np.concatenate(pc),
                          pair_latency=np.concatenate(pl), pair_energy=np.concatenate(pe),
                          pair_area=np.concatenate(par), meta=meta)
    logger.info("evaluator dataset: %d architectures x %d accelerators priced in %.2f s (%.0f arch/s, %.3g pairs/s)",
                num_arch, A, elapsed, meta["arch_per_s"], meta["pairs_priced_per_s"])
    if use_cache:
        ds.save(path)
    return ds


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="arch", leave=False)
