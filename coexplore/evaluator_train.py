"""Training and scoring of the DANCE evaluator against the analytical model.

``build_evaluator`` generates (or loads from cache) the labelled data, trains the
hardware-generation network (cross-entropy per parameter) and then the cost-estimation
network (relative log error on latency, energy and area, with the generator frozen and
its features forwarded), each with train/validation/test splits by architecture and early
stopping on the validation loss.  ``score_evaluator`` reports, on held-out
architectures:

* hardware-generation accuracy per parameter (and the majority-class baseline, because
  a skewed label distribution makes accuracy alone flattering);
* cost-estimation error: MAPE per metric and DANCE's accuracy (100 % - MAPE);
* whole-evaluator error: the estimator's cost of the accelerator the generator picks,
  against the analytical cost of that same pair;
* regret: analytical objective of the generated accelerator over the true optimum of the
  space, median and 95th percentile.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .common import ConfigError

from .evaluator import Evaluator
from .constraints import ConstraintSet, constrained_argmin
from .evaluator_data import (EvaluatorDataset, generate_dataset, random_onehot_encodings,
                             random_soft_encodings)
from .objectives import Objective
from .pricing import CostTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Evaluator training hyper-parameters."""

    width: int = 128  # hidden width of both networks
    blocks: int = 2  # residual blocks of the generator trunk
    batch_size: int = 512  # samples per step
    lr: float = 2e-3  # Adam learning rate (cosine-decayed)
    max_epochs_generator: int = 60  # epochs over the architectures
    max_epochs_estimator: int = 12  # epochs over the (architecture, accelerator) pairs
    patience: int = 8  # early stopping: epochs without validation improvement
    val_fraction: float = 0.1  # share of architectures for validation
    test_fraction: float = 0.1  # share of architectures for the test report
    seed: int = 0  # seeds the split, the initialisation and the batches


def _split(n: int, cfg: TrainConfig) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(cfg.seed + 1)
    perm = rng.permutation(n)
    n_te = max(1, int(n * cfg.test_fraction))
    n_va = max(1, int(n * cfg.val_fraction))
    return {"test": perm[:n_te], "val": perm[n_te:n_te + n_va], "train": perm[n_te + n_va:]}


def _fit(step_loss: Callable[[np.ndarray], torch.Tensor], val_loss: Callable[[], float], params, n_train: int,
         epochs: int, cfg: TrainConfig, module: torch.nn.Module, what: str, progress: bool) -> Dict[str, Any]:
    """Adam + cosine schedule + early stopping; restores the best validation weights."""
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps_per_epoch = max(1, int(np.ceil(n_train / cfg.batch_size)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    rng = np.random.default_rng(cfg.seed + 2)
    best, best_state, bad, history = float("inf"), None, 0, []
    it = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"training {what}", leave=False)
    for epoch in it:
        module.train()
        perm = rng.permutation(n_train)
        for lo in range(0, n_train, cfg.batch_size):
            loss = step_loss(perm[lo:lo + cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        module.eval()
        v = val_loss()
        history.append(v)
        if v < best - 1e-7:
            best, best_state, bad = v, copy.deepcopy(module.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    return {"epochs": len(history), "best_val_loss": best}


def train_evaluator(ds: EvaluatorDataset, table: CostTable, cfg: TrainConfig = TrainConfig(),
                    progress: bool = True) -> Evaluator:
    """Train both networks of the evaluator on ``ds``; returns it in eval mode.

    Its randomness (initialisation; the batches are drawn by numpy generators seeded from
    ``cfg.seed``) comes from torch's global generator forked and seeded inside the call, so
    the caller's random streams are untouched -- building an evaluator, or finding it in the
    cache, never changes what the rest of a run draws.
    """
    if ds.meta.get("search_space") != table.space.fingerprint():
        raise ConfigError("evaluator dataset was generated for another search space")
    from .seeds import isolated_torch_rng
    with isolated_torch_rng(cfg.seed):
        return _train_evaluator(ds, table, cfg, progress)


def _train_evaluator(ds: EvaluatorDataset, table: CostTable, cfg: TrainConfig, progress: bool) -> Evaluator:
    hw = table.hardware
    meta = {k: ds.meta[k] for k in ("search_space", "hardware_space", "cost_source", "batch", "objective",
                                    "objective_spec", "search_space_name", "hardware_space_name")}
    meta["constraints"] = list(ds.meta.get("constraints") or [])
    ev = Evaluator(ds.enc.shape[1], hw, cfg.width, cfg.blocks, meta=meta)
    split = _split(ds.num_arch, cfg)
    enc = torch.as_tensor(ds.enc, dtype=torch.float32)
    labels = torch.as_tensor(ds.best_params, dtype=torch.long)
    cards = hw.cardinalities

    # ---- hardware-generation network ------------------------------------------------------
    def gen_loss(idx: np.ndarray) -> torch.Tensor:
        logits, _ = ev.generator(enc[idx])
        parts = ev.split_logits(logits)
        return sum(F.cross_entropy(p, labels[idx, i]) for i, p in enumerate(parts))

    def gen_val() -> float:
        with torch.no_grad():
            return float(gen_loss(split["val"]))

    tr = split["train"]
    gen_info = _fit(lambda b: gen_loss(tr[b]), gen_val, ev.generator.parameters(), len(tr),
                    cfg.max_epochs_generator, cfg, ev.generator, "hardware generator", progress)

    # ---- cost-estimation network (generator frozen, features forwarded) -------------------
    for p in ev.generator.parameters():
        p.requires_grad_(False)
    grid = torch.as_tensor(hw.index_grid(), dtype=torch.long)  # [A, P]
    offsets = torch.as_tensor(np.cumsum([0] + cards[:-1]), dtype=torch.long)
    hw_onehot_all = torch.zeros(grid.shape[0], sum(cards))
    hw_onehot_all.scatter_(1, grid + offsets, 1.0)
    targets = torch.as_tensor(np.log(np.stack([ds.pair_latency, ds.pair_energy, ds.pair_area], 1)),
                              dtype=torch.float32)
    mu, sigma = targets.mean(0), targets.std(0).clamp_min(1e-6)
    ev.log_mu.copy_(mu)
    ev.log_sigma.copy_(sigma)
    with torch.no_grad():
        _, feats = ev.generator(enc)
    arch_of_pair = ds.pair_arch
    in_split = {k: np.isin(arch_of_pair, v) for k, v in split.items()}
    pair_idx = {k: np.nonzero(m)[0] for k, m in in_split.items()}
    pa = torch.as_tensor(ds.pair_arch, dtype=torch.long)
    pc = torch.as_tensor(ds.pair_acc, dtype=torch.long)

    def est_loss(idx: np.ndarray) -> torch.Tensor:
        a, c = pa[idx], pc[idx]
        pred = ev.estimator(enc[a], hw_onehot_all[c], feats[a])
        return F.mse_loss(pred, (targets[idx] - mu) / sigma)

    val_sub = pair_idx["val"][: 200_000]

    def est_val() -> float:
        with torch.no_grad():
            return float(est_loss(val_sub))

    trp = pair_idx["train"]
    est_info = _fit(lambda b: est_loss(trp[b]), est_val, ev.estimator.parameters(), len(trp),
                    cfg.max_epochs_estimator, cfg, ev.estimator, "cost estimator", progress)
    for p in ev.parameters():
        p.requires_grad_(False)
    ev.eval()
    ev.meta["training"] = {"generator": gen_info, "estimator": est_info, "num_arch": ds.num_arch,
                           "num_pairs": ds.num_pairs, "config": cfg.__dict__}
    return ev


def _mape(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / np.abs(true)) * 100.0)


def score_evaluator(ev: Evaluator, table: CostTable, enc: np.ndarray, objective: Objective,
                    pair_acc: Optional[np.ndarray] = None, soft: Optional[np.ndarray] = None,
                    constraints: Optional[ConstraintSet] = None) -> Dict[str, Any]:
    """Score an evaluator on architectures ``enc [n, D]`` against the analytical model.

    Args:
        pair_acc: ``[n, k]`` accelerator indices for the cost-estimation error (default: 8
            random ones per architecture).
        soft: ``[n]`` bool marking soft encodings (reported separately).
    """
    hw = table.hardware
    n = enc.shape[0]
    constraints = constraints if constraints is not None else ConstraintSet()
    lat, en, area = table.metrics(enc)  # [n, A]
    raw = np.asarray(objective(lat, en, area), dtype=np.float64)
    best, score = constrained_argmin(raw, constraints.violation(lat, en, area))
    truth = hw.index_grid()[best]  # [n, P]
    x = torch.as_tensor(enc, dtype=torch.float32)
    with torch.no_grad():
        logits, feats = ev.generator(x)
        pred = np.stack([p.argmax(-1).numpy() for p in ev.split_logits(logits)], 1)
    cards = hw.cardinalities
    report: Dict[str, Any] = {"num_arch": n, "objective": objective.key()}
    acc = {lab: float((pred[:, i] == truth[:, i]).mean() * 100) for i, lab in enumerate(hw.labels)}
    majority = {lab: float(np.bincount(truth[:, i], minlength=cards[i]).max() / n * 100)
                for i, lab in enumerate(hw.labels)}
    report["hw_generation_accuracy_pct"] = acc
    report["hw_generation_joint_accuracy_pct"] = float((pred == truth).all(1).mean() * 100)
    report["hw_generation_majority_baseline_pct"] = majority
    report["distinct_best_accelerators"] = int(np.unique(best).size)
    if soft is not None and soft.any() and (~soft).any():
        report["hw_generation_joint_accuracy_pct_discrete"] = float((pred[~soft] == truth[~soft]).all(1).mean() * 100)
        report["hw_generation_joint_accuracy_pct_soft"] = float((pred[soft] == truth[soft]).all(1).mean() * 100)

    # the generator's accelerator (flat index) per architecture
    gen_idx = np.ravel_multi_index(tuple(pred.T), cards)
    rows = np.arange(n)
    regret = score[rows, gen_idx] / score[rows, best] - 1.0
    report["regret_median_pct"] = float(np.median(regret) * 100)
    report["regret_p95_pct"] = float(np.percentile(regret, 95) * 100)
    report["regret_mean_pct"] = float(regret.mean() * 100)
    # the harder measure: architectures whose best accelerator is not the most common one
    # (a generator that always answers the majority scores its majority share above, and
    # an infinite regret here)
    winners, counts = np.unique(best, return_counts=True)
    common = int(winners[np.argmax(counts)])
    other = best != common
    report["majority_best_share_pct"] = float(counts.max() / n * 100)
    report["non_majority_architectures"] = int(other.sum())
    if other.any():
        r = regret[other]
        report["regret_non_majority_median_pct"] = float(np.median(r) * 100)
        report["regret_non_majority_p95_pct"] = float(np.percentile(r, 95) * 100)
        report["hw_generation_joint_accuracy_non_majority_pct"] = float((pred[other] == truth[other]).all(1).mean() * 100)
    # what one accelerator for every architecture would cost: the regret of the best single one
    ratio = score / score[rows, best][:, None]  # inf where an accelerator is not eligible
    med = np.array([np.median(c) if np.isfinite(c).all() else np.inf for c in ratio.T])
    single = int(np.argmin(med)) if np.isfinite(med).any() else int(common)
    one = score[rows, single] / score[rows, best] - 1.0
    report["one_accelerator_for_all"] = {"accelerator": table.accelerators[single].short(),
                                         "regret_median_pct": float(np.median(one) * 100),
                                         "regret_p95_pct": float(np.percentile(one, 95) * 100),
                                         "within_5pct_share_pct": float(np.mean(one <= 0.05) * 100)}
    report["hardware_barely_matters"] = bool(np.mean(one <= 0.05) >= 0.99)
    report["constraints"] = constraints.to_list()

    # cost estimation on given or random accelerators (true hardware one-hot)
    rng = np.random.default_rng(123)
    if pair_acc is None:
        pair_acc = rng.integers(0, table.num_accelerators, size=(n, 8))
    k = pair_acc.shape[1]
    ar = np.repeat(rows, k)
    ac = pair_acc.reshape(-1)
    grid = hw.index_grid()
    offs = np.cumsum([0] + cards[:-1])
    oh = np.zeros((ar.size, sum(cards)), np.float32)
    oh[np.arange(ar.size)[:, None], grid[ac] + offs] = 1.0
    with torch.no_grad():
        est = ev.estimate(x[ar], torch.as_tensor(oh), feats[ar]).exp().numpy()
    true = np.stack([lat[ar, ac], en[ar, ac], np.asarray(area)[ar, ac]], 1)
    mape = {m: _mape(est[:, i], true[:, i]) for i, m in enumerate(("latency", "energy", "area"))}
    report["cost_estimation_mape_pct"] = mape
    report["cost_estimation_accuracy_pct"] = {m: 100.0 - v for m, v in mape.items()}

    # whole evaluator: generator + estimator as the search uses them (argmax straight-through)
    with torch.no_grad():
        out = ev(x, mode="argmax")
    whole = np.stack([out["latency_s"].numpy(), out["energy_j"].numpy(), out["area_mm2"].numpy()], 1)
    true_g = np.stack([lat[rows, gen_idx], en[rows, gen_idx], np.asarray(area)[rows, gen_idx]], 1)
    wm = {m: _mape(whole[:, i], true_g[:, i]) for i, m in enumerate(("latency", "energy", "area"))}
    report["whole_evaluator_mape_pct"] = wm
    report["whole_evaluator_accuracy_pct"] = {m: 100.0 - v for m, v in wm.items()}
    return report


def fresh_encodings(space, n: int, seed: int, soft_fraction: float = 0.5):
    """``(enc [n, D], soft [n])``: new architectures drawn like the training data."""
    rng = np.random.default_rng(seed)
    n_soft = int(round(n * soft_fraction))
    enc = np.concatenate([random_onehot_encodings(space, n - n_soft, rng), random_soft_encodings(space, n_soft, rng)])
    soft = np.concatenate([np.zeros(n - n_soft, bool), np.ones(n_soft, bool)])
    return enc, soft


def time_search_step(ev: Evaluator, objective: Objective, repeats: int = 300) -> float:
    """Median-of-5 milliseconds of one forward + backward of the evaluator on one encoding."""
    enc = torch.rand(ev.enc_dim, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    times = []
    for _ in range(5):
        for _ in range(20):
            out = ev(enc)
            objective(out["latency_s"], out["energy_j"], out["area_mm2"]).backward()
        t = time.perf_counter()
        for _ in range(repeats):
            out = ev(enc)
            objective(out["latency_s"], out["energy_j"], out["area_mm2"]).backward()
        times.append((time.perf_counter() - t) / repeats * 1e3)
    return float(np.median(times))


def build_evaluator(space, hardware, objective: Union[str, Objective] = "edap", out=None, num_arch: int = 50_000,
                    pairs_per_arch: int = 36, soft_fraction: float = 0.5, cfg: TrainConfig = TrainConfig(),
                    cache_dir=None, progress: bool = True, report_arch: int = 5000,
                    constraints: Union[None, Sequence[str], ConstraintSet] = None,
                    table: Optional[CostTable] = None) -> Dict[str, Any]:
    """Generate data, train, score on fresh architectures and (optionally) save.

    ``table`` (the analytical cost table of ``space`` x ``hardware``) is built when not given.

    Returns:
        ``{"evaluator": Evaluator, "report": dict}``; the report holds the scores of
        :func:`score_evaluator` plus the data-generation rate, training sizes and the
        per-step timing of the search's forward + backward.
    """
    objective = Objective.parse(objective)  # the Python API's boundary: names and objects alike
    constraints = ConstraintSet.parse(constraints)
    t0 = time.perf_counter()
    table = table if table is not None else CostTable(space, hardware)
    t_table = time.perf_counter() - t0
    ds = generate_dataset(
        table, objective, num_arch=num_arch, soft_fraction=soft_fraction, pairs_per_arch=pairs_per_arch,
        seed=cfg.seed, cache_dir=cache_dir, progress=progress, constraints=constraints)
    t1 = time.perf_counter()
    ev = train_evaluator(ds, table, cfg, progress=progress)
    t_train = time.perf_counter() - t1
    enc, soft = fresh_encodings(space, report_arch, seed=cfg.seed + 1000, soft_fraction=soft_fraction)
    report = score_evaluator(ev, table, enc, objective, soft=soft, constraints=constraints)
    report.update({
        "search_space": space.name, "hardware_space": hardware.name, "hardware_space_size": hardware.size,
        "cost_table_seconds": t_table, "cost_table_layers": table.num_layers_priced,
        "dataset": {k: ds.meta[k] for k in ("num_arch", "pairs_per_arch", "soft_fraction", "seconds", "arch_per_s",
                                            "pairs_priced_per_s")},
        "num_pairs": ds.num_pairs, "train_seconds": t_train, "training": ev.meta["training"],
        "search_step_ms": time_search_step(ev, objective),
    })
    ev.report = report
    if out is not None:
        ev.save(out, report=report)
    return {"evaluator": ev, "report": report, "table": table}


def report_to_markdown(r: Dict[str, Any]) -> str:
    """A human-readable summary of an evaluator report, with DANCE's published figures."""
    hw = r["hw_generation_accuracy_pct"]
    maj = r["hw_generation_majority_baseline_pct"]
    lines = [f"# Evaluator report: {r.get('search_space', '?')} on {r.get('hardware_space', '?')} ({r['objective']})", "",
             f"Scored on {r['num_arch']} fresh architectures (half discrete, half soft) against the analytical model.", "",
             "| figure | ours | DANCE (published) |", "|---|---|---|",
             "| hardware-generation accuracy (" + " / ".join(hw) + ") | "
             + " / ".join(f"{v:.2f}%" for v in hw.values()) + " | 98.9 / 98.3 / 98.3 / 98.8% |",
             "| majority-class baseline for the same | " + " / ".join(f"{v:.2f}%" for v in maj.values()) + " | n/a |",
             f"| distinct best accelerators among them | {r['distinct_best_accelerators']} | n/a |"]
    ce, we = r["cost_estimation_mape_pct"], r["whole_evaluator_mape_pct"]
    lines += [
        "| cost-estimation MAPE (latency / energy / area) | " + " / ".join(f"{v:.3f}%" for v in ce.values())
        + " | 0.4 / 0.3 / 0.1% (99.6 / 99.7 / 99.9% accuracy) |",
        "| whole-evaluator MAPE (latency / energy / area) | " + " / ".join(f"{v:.3f}%" for v in we.values())
        + " | 1.7 / 1.7 / 0.8% vs Timeloop |",
        f"| regret of the generated accelerator (median / p95) | {r['regret_median_pct']:.3f}% / "
        f"{r['regret_p95_pct']:.3f}% | n/a |"]
    if "majority_best_share_pct" in r:
        lines.append(f"| share of architectures whose best accelerator is the most common one | "
                     f"{r['majority_best_share_pct']:.1f}% | n/a |")
        if r.get("non_majority_architectures"):
            lines.append(f"| on the other {r['non_majority_architectures']}: joint accuracy / regret (median / p95) | "
                         f"{r['hw_generation_joint_accuracy_non_majority_pct']:.1f}% / "
                         f"{r['regret_non_majority_median_pct']:.3f}% / {r['regret_non_majority_p95_pct']:.3f}% | n/a |")
        one = r["one_accelerator_for_all"]
        lines.append(f"| regret of one accelerator for all ({one['accelerator']}): median / p95 | "
                     f"{one['regret_median_pct']:.3f}% / {one['regret_p95_pct']:.3f}% | n/a |")
    if "search_step_ms" in r:
        lines.append(f"| forward + backward per search step (CPU) | {r['search_step_ms']:.3f} ms | 0.5 ms (GPU) |")
    if "dataset" in r:
        d = r["dataset"]
        lines.append(f"| training data | {d['num_arch']} architectures, {r['num_pairs']} pairs | 50k / 1.8M |")
        lines.append(f"| data generation | {d['seconds']:.2f} s ({d['pairs_priced_per_s']:.3g} pairs priced/s) | "
                     f"112 s per network (Timeloop, 48 threads) |")
    if r.get("constraints"):
        lines.append(f"| constraints the labels honour | {'; '.join(r['constraints'])} | n/a |")
    if r.get("hardware_barely_matters"):
        one = r["one_accelerator_for_all"]
        lines += ["", f"**The best hardware barely depends on the architecture here**: one accelerator "
                      f"({one['accelerator']}) is within 5% of the best for {one['within_5pct_share_pct']:.1f}% of "
                      "the architectures, so a high hardware-generation accuracy says little about the evaluator; "
                      "compare the regrets instead."]
    return "\n".join(lines) + "\n"
