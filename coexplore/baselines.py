"""Non-gradient baselines of the co-exploration: random search and NSGA-II.

DANCE (Choi et al., DAC 2021) and HDX (Hong et al., DAC 2022) compare their differentiable
co-exploration with search baselines that see the same supernet and the same hardware
model.  This module provides two, under one budget and one interface:

* :func:`random_search`: distinct architectures drawn uniformly;
* :func:`evolution_search`: NSGA-II (Deb, Pratap, Agarwal and Meyarivan, "A Fast and
  Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE TEVC 2002) on (error, hardware
  cost), with Deb's constrained domination for the hard constraints.  Regularized (aging)
  evolution (Real et al., "Regularized Evolution for Image Classifier Architecture
  Search", AAAI 2019) was the alternative; see :func:`evolution_search` for why NSGA-II.

Both work on a :class:`~coexplore.search.CoExplorer`-like object ``ex`` and use only
``ex.space`` (``blocks``, ``sample``, ``encode``), ``ex.table`` (``metrics``,
``accelerators``), ``ex.constraints``, ``ex.objective``, ``ex.verify``,
``ex.inherited_accuracy`` and ``ex.cfg`` (``seed``, ``lam``).  Every design is scored
exactly: its accuracy is the supernet's inherited-weight validation accuracy and its
hardware metrics come from the analytical model.  By default the accelerator of an
architecture is not searched blindly: ``ex.verify`` picks, exhaustively over the hardware
space, the best accelerator that meets every constraint -- the exact inner optimisation of
the bilevel co-exploration.  The budget is the number of inherited-accuracy evaluations
(distinct architectures), the expensive step (~0.3 s each); hardware pricing is free.

Selection rule (:func:`select_best`, the same for both methods).  Among the evaluated
designs, a feasible one (meets every constraint) always beats an infeasible one; among
feasible designs the scalarised fitness

    fitness = accuracy - lam * cost / cost_ref

is maximised, ``cost`` being the hardware objective (``ex.objective``) on the design's
accelerator, ties broken by the lower cost.  ``cost_ref`` makes ``lam`` unit-free; by
default it is :func:`space_reference_cost`, the exact cost of the uniform architecture
mixture on its best accelerator -- the analytical counterpart of the reference the DANCE
loss divides by.  It depends on the spaces and the objective only, never on which designs a
method happened to evaluate, so ``lam`` weighs cost identically for every method and seed.
(A median over the evaluated designs would not: random search evaluates mostly large,
often infeasible designs, evolution mostly front designs; on ``tiny-mnist`` x ``small``
under ``latency <= 0.1ms`` the two medians differ by about 2x, which changes what ``lam``
means.)  When no evaluated design is feasible, the one with the least total normalised
violation ``sum_i max(0, g_i / bound_i)`` is taken (ties by fitness, then cost) and the
result is flagged ``feasible_found = False``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import ConfigError

from .pareto import pareto_mask

logger = logging.getLogger(__name__)

Genome = Tuple[int, ...]
RowCallback = Callable[[Dict[str, Any]], None]

SELECTION_RULE = ("feasible designs first; among them maximise accuracy - lam * cost / cost_ref, ties by "
                  "lower cost; when none is feasible, least total normalised violation, then fitness, then "
                  "cost (flagged feasible_found=False)")
#: Largest space size for which distinct architectures are drawn exactly by index.
_INDEX_LIMIT = 2 ** 62


# ---------------------------------------------------------------------------------------
# pure multi-objective tools
# ---------------------------------------------------------------------------------------

def _objectives(F: Any) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.ndim == 1:
        F = F[:, None]
    if F.ndim != 2:
        raise ValueError(f"objectives must be an [n, m] array, got shape {F.shape}")
    if np.isnan(F).any():
        raise ValueError("objectives contain NaN")
    return F


def _violations(violation: Any, n: int) -> np.ndarray:
    if violation is None:
        return np.zeros(n)
    v = np.asarray(violation, dtype=np.float64).reshape(-1)
    if v.shape != (n,):
        raise ValueError(f"violation must have {n} entries, got {v.size}")
    if np.isnan(v).any():
        raise ValueError("violation contains NaN")
    return np.maximum(v, 0.0)


def constrained_dominates(f_a: Sequence[float], f_b: Sequence[float], viol_a: float = 0.0,
                          viol_b: float = 0.0) -> bool:
    """Deb's constrained domination (NSGA-II, Deb et al. 2002, Sec. V), all objectives minimised.

    ``a`` dominates ``b`` when ``a`` is feasible and ``b`` is not; or both are infeasible and
    ``a`` has the smaller total violation; or both are feasible and ``a`` Pareto-dominates
    ``b`` (no worse in every objective, better in one).

    Args:
        f_a, f_b: objective vectors of length ``m``.
        viol_a, viol_b: total normalised constraint violations (``<= 0``: feasible).

    Returns:
        Whether ``a`` constrained-dominates ``b``.
    """
    fa, fb = np.asarray(f_a, dtype=np.float64), np.asarray(f_b, dtype=np.float64)
    feas_a, feas_b = viol_a <= 0, viol_b <= 0
    if feas_a != feas_b:
        return bool(feas_a)
    if not feas_a:
        return bool(viol_a < viol_b)
    return bool(np.all(fa <= fb) and np.any(fa < fb))


def domination_matrix(F: Any, violation: Any = None) -> np.ndarray:
    """``D[i, j]``: whether point ``i`` constrained-dominates point ``j``.

    Args:
        F: ``[n, m]`` objectives, minimised.
        violation: optional ``[n]`` total normalised violations (``None``: all feasible).

    Returns:
        An ``[n, n]`` bool matrix (its diagonal is False).
    """
    F = _objectives(F)
    v = _violations(violation, len(F))
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    pareto = le & lt
    fi = v <= 0
    both_feas = fi[:, None] & fi[None, :]
    both_inf = ~fi[:, None] & ~fi[None, :]
    return ((fi[:, None] & ~fi[None, :]) | (both_inf & (v[:, None] < v[None, :])) | (both_feas & pareto))


def non_dominated_sort(F: Any, violation: Any = None) -> List[np.ndarray]:
    """NSGA-II's fast non-dominated sort under constrained domination.

    Front 0 holds the points no other point dominates; front ``k`` those dominated only by
    points of earlier fronts.  Feasible points therefore always come before infeasible
    ones, and infeasible ones are layered by increasing violation.

    Args:
        F: ``[n, m]`` objectives, minimised (no NaN).
        violation: optional ``[n]`` total normalised violations (``None``: all feasible).

    Returns:
        The fronts, best first, each an int array of point indices in increasing order;
        together they partition ``range(n)``.
    """
    F = _objectives(F)
    D = domination_matrix(F, violation)
    count = D.sum(axis=0).astype(np.int64)  # how many points dominate each one
    fronts: List[np.ndarray] = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current)
        count = count - D[current].sum(axis=0)
        count[current] = -1  # taken
        current = np.flatnonzero(count == 0)
    return fronts


def crowding_distance(F: Any) -> np.ndarray:
    """NSGA-II's crowding distance of the points of one front.

    Per objective the points are sorted (stably) and each interior point gains the gap
    between its two neighbours divided by the objective's range; the two extreme points of
    every objective get ``inf``.  An objective whose values are all equal adds nothing.

    Args:
        F: ``[n, m]`` objectives of one front.

    Returns:
        ``[n]`` distances (all ``inf`` when ``n <= 2``).
    """
    F = _objectives(F)
    n, m = F.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(F[:, k], kind="stable")
        f = F[order, k]
        d[order[0]] = d[order[-1]] = np.inf
        span = f[-1] - f[0]
        if span > 0:
            d[order[1:-1]] += (f[2:] - f[:-2]) / span
    return d


def scalarized_fitness(accuracy: Any, cost: Any, lam: float, cost_ref: float) -> np.ndarray:
    """``accuracy - lam * cost / cost_ref`` (elementwise; ``cost_ref > 0``)."""
    return np.asarray(accuracy, dtype=np.float64) - lam * np.asarray(cost, dtype=np.float64) / cost_ref


def space_reference_cost(ex) -> float:
    """The default cost unit: the exact cost of the uniform architecture mixture on its best accelerator.

    The expected latency and energy of the uniform distribution over each block's
    candidates (``ex.table.metrics`` of the soft encoding ``[D]``) give one objective
    value per accelerator; the least one is the unit.  It is what ``CoExplorer`` divides
    the DANCE loss by (there through the evaluator), and it is independent of any search.
    Falls back to 1.0, with a warning, if that cost is not a finite positive number.
    """
    enc = np.concatenate([np.full(len(b.candidates), 1.0 / len(b.candidates)) for b in ex.space.blocks])
    lat, en, area = ex.table.metrics(enc[None, :])
    ref = float(np.min(np.asarray(ex.objective(np.asarray(lat), np.asarray(en), np.asarray(area)), dtype=np.float64)))
    if not (math.isfinite(ref) and ref > 0):
        logger.warning("reference cost of the uniform architecture is %r; using 1.0", ref)
        return 1.0
    return ref


def select_best(rows: Sequence[Dict[str, Any]], lam: float, cost_ref: float) -> Dict[str, Any]:
    """The selection rule shared by every baseline (see the module docstring).

    Args:
        rows: evaluated designs, each with ``accuracy``, ``cost``, ``feasible`` and
            ``violation`` (total normalised violation, 0 when feasible).
        lam: weight of the normalised hardware cost.
        cost_ref: the cost unit (> 0), e.g. :func:`space_reference_cost`.

    Returns:
        ``{"index": int, "fitness": [n] array, "cost_ref": float, "feasible_found": bool}``.
    """
    if not rows:
        raise ValueError("select_best: no evaluated designs")
    acc = np.array([r["accuracy"] for r in rows], dtype=np.float64)
    acc = np.where(np.isfinite(acc), acc, -np.inf)
    cost = np.array([r["cost"] for r in rows], dtype=np.float64)
    feas = np.array([bool(r["feasible"]) for r in rows])
    viol = np.where(feas, 0.0, np.array([max(0.0, float(r["violation"])) for r in rows]))
    ref = float(cost_ref)
    if not (math.isfinite(ref) and ref > 0):
        raise ValueError(f"select_best: cost_ref must be a finite number > 0, got {cost_ref!r}")
    fit = scalarized_fitness(acc, cost, lam, ref)
    fit = np.where(np.isnan(fit), -np.inf, fit)
    # lexsort: the last key is the primary one; infeasible designs lose to every feasible one
    idx = int(np.lexsort((np.arange(len(rows)), cost, -fit, viol, ~feas))[0])
    return {"index": idx, "fitness": fit, "cost_ref": ref, "feasible_found": bool(feas.any())}


def pareto_front_indices(rows: Sequence[Dict[str, Any]]) -> List[int]:
    """Indices of the (accuracy, cost) Pareto front of ``rows``, by increasing cost.

    Only feasible designs compete when there is one (a design that breaks a hard
    constraint is no trade-off); otherwise all do.
    """
    if not rows:
        return []
    feas = np.array([bool(r["feasible"]) for r in rows])
    pool = np.flatnonzero(feas) if feas.any() else np.arange(len(rows))
    err = np.array([1.0 - rows[i]["accuracy"] for i in pool], dtype=np.float64)
    cost = np.array([rows[i]["cost"] for i in pool], dtype=np.float64)
    keep = pool[pareto_mask(cost, err)]
    return sorted((int(i) for i in keep), key=lambda i: (rows[i]["cost"], -rows[i]["accuracy"], i))


# ---------------------------------------------------------------------------------------
# genomes and scoring
# ---------------------------------------------------------------------------------------

def _radices(ex) -> List[int]:
    return [len(b.candidates) for b in ex.space.blocks]


def _space_size(radices: Sequence[int]) -> int:
    n = 1
    for r in radices:
        n *= int(r)
    return n


def _sample(ex, arch: Genome) -> Dict[str, str]:
    return {b.label: b.candidates[int(i)] for b, i in zip(ex.space.blocks, arch)}


def _genome(ex, sample: Dict[str, str]) -> Genome:
    return tuple(b.candidates.index(sample[b.label]) for b in ex.space.blocks)


def _decode_index(index: int, radices: Sequence[int]) -> Genome:
    out = []
    for r in reversed(radices):
        index, d = divmod(int(index), int(r))
        out.append(d)
    return tuple(reversed(out))


def _distinct_architectures(ex, k: int, rng: np.random.Generator) -> List[Genome]:
    """``min(k, |space|)`` distinct architectures, uniformly without replacement.

    Exact (by index, Floyd's algorithm inside ``Generator.choice``) when the space has
    fewer than 2^62 architectures; otherwise ``ex.space.sample`` with duplicates skipped
    (they are then astronomically rare) and a bounded number of draws.
    """
    radices = _radices(ex)
    n = _space_size(radices)
    if n < _INDEX_LIMIT:
        idx = rng.choice(n, size=min(k, n), replace=False, shuffle=True)
        return [_decode_index(int(i), radices) for i in idx]
    seen: Dict[Genome, None] = {}
    for _ in range(10 * k + 100):
        if len(seen) >= k:
            break
        seen.setdefault(_genome(ex, ex.space.sample(rng)), None)
    return list(seen)


class _Scorer:
    """Memoised exact scoring of designs; counts inherited-accuracy calls (the budget).

    A genome is the architecture (one candidate index per block), followed in joint mode
    by an accelerator index.
    """

    def __init__(self, ex, joint_hw: bool, callback: Optional[RowCallback]) -> None:
        self.ex = ex
        self.joint_hw = joint_hw
        self.callback = callback
        self.num_blocks = len(ex.space.blocks)
        self.rows: List[Dict[str, Any]] = []
        self.index: Dict[Genome, int] = {}  # genome -> row
        self.accuracy: Dict[Genome, float] = {}  # architecture -> inherited accuracy
        self.generation = 0

    @property
    def accuracy_calls(self) -> int:
        return len(self.accuracy)

    def knows(self, genome: Genome) -> bool:
        return genome in self.index

    def arch_is_new(self, genome: Genome) -> bool:
        return genome[:self.num_blocks] not in self.accuracy

    def __call__(self, genome: Genome) -> int:
        """Score a genome once; returns its row index."""
        if genome in self.index:
            return self.index[genome]
        ex = self.ex
        arch = genome[:self.num_blocks]
        sample = _sample(ex, arch)
        if self.joint_hw:
            a = int(genome[self.num_blocks])
            enc = ex.space.encode(sample)[None, :]
            lat, en, area = (np.asarray(v, dtype=np.float64)[0] for v in ex.table.metrics(enc))
            lat, en, area = float(lat[a]), float(en[a]), float(np.asarray(area)[a])
            metrics = {"latency_s": lat, "fps": 1.0 / lat, "energy_j": en, "area_mm2": area,
                       "edp": lat * en, "edap": lat * en * area}
            cost = float(ex.objective(lat, en, area))
            checks = ex.constraints.check({"latency": lat, "energy": en, "area": area, "fps": 1.0 / lat})
            feasible = all(c["satisfied"] for c in checks)
            accelerator = ex.table.accelerators[a]
        else:
            v = ex.verify(sample)
            a, metrics, cost = int(v["accelerator_index"]), dict(v["metrics"]), float(v["cost"])
            checks = v["constraints"]
            feasible, accelerator = bool(v["feasible"]), v["accelerator"]
        violation = float(sum(max(0.0, float(c["normalized_g"])) for c in checks))
        new_arch = arch not in self.accuracy
        if new_arch:
            acc = float(ex.inherited_accuracy(sample))
            if not math.isfinite(acc):
                logger.warning("inherited accuracy of %s is %r; ranked as accuracy 0", sample, acc)
            self.accuracy[arch] = acc
        acc = self.accuracy[arch]
        row = {"evaluation": len(self.rows), "generation": self.generation, "architecture": sample,
               "accelerator_index": a, "accelerator": accelerator, "accuracy": acc, "error": 1.0 - acc,
               "metrics": metrics, "cost": cost, "feasible": bool(feasible),
               "violation": 0.0 if feasible else violation,
               "constraints": checks, "new_architecture": new_arch}
        self.index[genome] = len(self.rows)
        self.rows.append(row)
        if self.callback is not None:
            self.callback(row)
        return self.index[genome]


def _check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"baseline budget must be an integer >= 1 (inherited-accuracy evaluations), got {budget!r}")
    return int(budget)


def _finish(method: str, scorer: _Scorer, lam: float, cost_ref: Optional[float], budget: int,
            stop_reason: str, extra: Dict[str, Any]) -> Dict[str, Any]:
    rows = scorer.rows
    source = "uniform-architecture" if cost_ref is None else "given"
    sel = select_best(rows, lam, space_reference_cost(scorer.ex) if cost_ref is None else cost_ref)
    for r, f in zip(rows, sel["fitness"]):
        r["fitness"] = float(f)
    best = rows[sel["index"]]
    front = pareto_front_indices(rows)
    if not sel["feasible_found"]:
        logger.warning("%s: none of the %d evaluated designs meets the constraints; returning the least "
                       "violating one (violation %.3g)", method, len(rows), best["violation"])
    logger.info("%s: %d architectures evaluated (budget %d, %s); best accuracy %.4f cost %.4g fitness %.4f%s",
                method, scorer.accuracy_calls, budget, stop_reason, best["accuracy"], best["cost"], best["fitness"],
                "" if best["feasible"] else " (INFEASIBLE)")
    return {"method": method, "best": dict(best["architecture"]), "best_index": sel["index"], "best_row": best,
            "accelerator_index": best["accelerator_index"], "feasible_found": sel["feasible_found"],
            "history": rows, "front": [rows[i] for i in front], "front_indices": front,
            "cost_ref": sel["cost_ref"], "cost_ref_source": source, "lam": float(lam), "selection": SELECTION_RULE,
            "evaluations": scorer.accuracy_calls, "budget": budget, "stop_reason": stop_reason, **extra}


# ---------------------------------------------------------------------------------------
# random search
# ---------------------------------------------------------------------------------------

def random_search(ex, budget: int, rng: Optional[np.random.Generator] = None, lam: Optional[float] = None,
                  cost_ref: Optional[float] = None, callback: Optional[RowCallback] = None) -> Dict[str, Any]:
    """Random search: ``budget`` distinct architectures drawn uniformly, each scored exactly.

    Each architecture gets its best accelerator under the constraints from ``ex.verify``
    (exhaustive over the hardware space) and its inherited-weight accuracy from
    ``ex.inherited_accuracy``; the design returned follows :func:`select_best`.

    Args:
        ex: a :class:`~coexplore.search.CoExplorer`-like object (see the module docstring).
        budget: number of distinct architectures to evaluate (inherited-accuracy calls);
            fewer when the space is smaller (``stop_reason == "space exhausted"``).
        rng: the generator; ``None``: ``np.random.default_rng(ex.cfg.seed)``.
        lam: weight of the normalised cost in the fitness; ``None``: ``ex.cfg.lam``.
        cost_ref: the cost unit of the fitness; ``None``: :func:`space_reference_cost`.
        callback: called with every new history row.

    Returns:
        ``best`` (the architecture, ``{label: op}``), ``best_row``, ``best_index``,
        ``accelerator_index``, ``feasible_found`` (False: nothing evaluated meets the
        constraints and ``best`` is the least violating design), ``history`` (one row per
        design in evaluation order: ``evaluation, generation, architecture,
        accelerator_index, accelerator, accuracy, error, metrics, cost, feasible,
        violation, constraints, new_architecture, fitness``), ``front`` (the rows of the
        accuracy/cost Pareto front, feasible designs only when there is one, by increasing
        cost) and ``front_indices``, ``cost_ref`` and ``cost_ref_source``
        ("uniform-architecture" or "given"), ``lam``, ``selection`` (the rule in
        words), ``evaluations``, ``budget``, ``stop_reason``.
    """
    budget = _check_budget(budget)
    rng = np.random.default_rng(ex.cfg.seed) if rng is None else rng
    lam = float(ex.cfg.lam if lam is None else lam)
    scorer = _Scorer(ex, joint_hw=False, callback=callback)
    archs = _distinct_architectures(ex, budget, rng)
    for g in archs:
        scorer(g)
    n = _space_size(_radices(ex))
    reason = "budget" if len(archs) >= budget else ("space exhausted" if len(archs) >= n else "sampler gave up")
    if reason != "budget":
        logger.info("random search: %s after %d of %d architectures", reason, len(archs), budget)
    return _finish("random", scorer, lam, cost_ref, budget, reason, {"space_size": n})


# ---------------------------------------------------------------------------------------
# NSGA-II
# ---------------------------------------------------------------------------------------

def _rank_and_crowd(F: np.ndarray, viol: np.ndarray, keep: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NSGA-II environmental selection: ``keep`` points by front, the last front by crowding.

    Returns:
        The kept positions, and their front ranks and crowding distances.
    """
    chosen, ranks, crowd = [], [], []
    for r, front in enumerate(non_dominated_sort(F, viol)):
        d = crowding_distance(F[front])
        if len(chosen) + len(front) <= keep:
            chosen += list(front)
            ranks += [r] * len(front)
            crowd += list(d)
        else:
            order = np.argsort(-d, kind="stable")[:keep - len(chosen)]
            chosen += list(front[order])
            ranks += [r] * len(order)
            crowd += list(d[order])
        if len(chosen) >= keep:
            break
    return np.asarray(chosen, dtype=np.int64), np.asarray(ranks), np.asarray(crowd)


def crowded_tournament(rank: Any, crowding: Any, size: int, rng: np.random.Generator) -> int:
    """One NSGA-II tournament: ``size`` distinct members drawn uniformly, the winner by the
    crowded-comparison operator (lower front rank, then larger crowding distance, then
    lower position).

    Args:
        rank: ``[n]`` front ranks (0 is best).
        crowding: ``[n]`` crowding distances.
        size: tournament size (capped at ``n``).
        rng: the generator.

    Returns:
        The winner's position in ``0 .. n-1``.
    """
    n = len(rank)
    cand = rng.choice(n, size=min(int(size), n), replace=False)
    return int(min(cand, key=lambda j: (rank[j], -crowding[j], j)))


def _mutate(genome: Genome, radices: Sequence[int], prob: float, rng: np.random.Generator) -> Genome:
    """Each mutable gene moves to another uniformly drawn value with ``prob``; at least one does."""
    mutable = np.flatnonzero(np.asarray(radices) > 1)
    if mutable.size == 0:
        return genome
    hit = mutable[rng.random(mutable.size) < prob]
    if hit.size == 0:
        hit = mutable[[int(rng.integers(mutable.size))]]
    g = list(genome)
    for i in hit:
        new = int(rng.integers(radices[i] - 1))
        g[i] = new + 1 if new >= g[i] else new
    return tuple(g)


def _crossover(a: Genome, b: Genome, rng: np.random.Generator) -> Genome:
    take_b = rng.random(len(a)) < 0.5
    return tuple(int(y) if t else int(x) for x, y, t in zip(a, b, take_b))


def evolution_search(ex, budget: int, rng: Optional[np.random.Generator] = None, population: int = 16,
                     tournament: int = 4, mutation_prob: Optional[float] = None, crossover_prob: float = 0.9,
                     joint_hw: bool = False, lam: Optional[float] = None, cost_ref: Optional[float] = None,
                     max_generations: Optional[int] = None, max_tries: int = 50, max_stall: int = 3,
                     callback: Optional[RowCallback] = None) -> Dict[str, Any]:
    """NSGA-II over the architectures, with Deb's constrained domination.

    Why NSGA-II rather than regularized evolution: the co-exploration is a two-objective
    problem (error vs hardware cost) with *hard* constraints.  Constrained domination
    (feasible beats infeasible; infeasible designs compare by total normalised violation;
    feasible ones by Pareto dominance on ``(error, log cost)``) enforces the constraints
    without a penalty weight to tune, and one run yields the whole front -- the curve
    DANCE draws by sweeping ``lam`` -- from which :func:`select_best` then picks, under
    the very rule random search uses.  Regularized evolution needs one scalar fitness, so
    ``lam``, a cost unit fixed before the search, and a penalty for violations.  (The log
    of the cost only shapes the crowding distance: EDAP spans orders of magnitude.)

    Genome.  One candidate index per choice block.  The accelerator is not a gene: every
    architecture gets, from ``ex.verify``, the best accelerator of the hardware space
    that meets the constraints -- an exhaustive, exact inner optimisation, cheap next to
    one accuracy evaluation.  With ``joint_hw=True`` the accelerator index is one more
    gene (mutated uniformly, crossed over like the others), the design is priced with
    ``ex.table.metrics`` on that accelerator only, and constraints are checked there:
    the blind joint search, for comparison.

    Loop (mu + lambda, mu = lambda = ``population``).  The initial population is
    ``population`` distinct uniformly drawn architectures (random accelerators in joint
    mode).  A child: two parents by ``tournament``-way crowded-comparison tournaments
    (lower front rank, then larger crowding distance), uniform crossover with
    ``crossover_prob``, then per-gene mutation with ``mutation_prob`` (at least one gene
    always changes).  Children equal to an evaluated genome are redrawn (up to
    ``max_tries`` times), so every evaluation is new and memoised; parents and children
    are then cut back to ``population`` by front and crowding distance.

    Budget and termination.  The budget counts inherited-accuracy calls, i.e. distinct
    architectures (in joint mode a known architecture on a new accelerator costs no
    budget, only a table look-up).  The search stops when the budget is spent, the
    architecture space is exhausted, ``max_generations`` is reached, or ``max_stall``
    generations in a row produced no new genome.

    Args:
        ex: a :class:`~coexplore.search.CoExplorer`-like object (see the module docstring).
        budget: number of distinct architectures to evaluate.
        rng: the generator; ``None``: ``np.random.default_rng(ex.cfg.seed)``.
        population: population size (>= 2).
        tournament: tournament size (1 .. population).
        mutation_prob: per-gene mutation probability in (0, 1]; ``None``: 1 / number of genes.
        crossover_prob: probability of uniform crossover, in [0, 1].
        joint_hw: make the accelerator index a gene instead of choosing it exactly.
        lam: weight of the normalised cost in the final selection; ``None``: ``ex.cfg.lam``.
        cost_ref: the cost unit of that fitness; ``None``: :func:`space_reference_cost`.
        max_generations: cap on generations; ``None``: ``20 * ceil(budget / population)``.
        max_tries: redraws per child before giving it up.
        max_stall: generations without any new genome before stopping.
        callback: called with every new history row.

    Returns:
        What :func:`random_search` returns, plus ``algorithm`` ("nsga2"), ``joint_hw``,
        ``generations``, ``hw_evaluations`` (designs priced), ``population`` (history
        indices of the final population) and ``space_size``.
    """
    budget = _check_budget(budget)
    if isinstance(population, bool) or not isinstance(population, (int, np.integer)) or population < 2:
        raise ConfigError(f"evolution: population must be an integer >= 2, got {population!r}")
    if (isinstance(tournament, bool) or not isinstance(tournament, (int, np.integer))
            or not 1 <= tournament <= population):
        raise ConfigError(f"evolution: tournament must be an integer in [1, population={population}], "
                          f"got {tournament!r}")
    if not 0.0 <= crossover_prob <= 1.0:
        raise ConfigError(f"evolution: crossover_prob must be in [0, 1], got {crossover_prob!r}")
    rng = np.random.default_rng(ex.cfg.seed) if rng is None else rng
    lam = float(ex.cfg.lam if lam is None else lam)
    arch_radices = _radices(ex)
    radices = arch_radices + ([len(ex.table.accelerators)] if joint_hw else [])
    prob = 1.0 / len(radices) if mutation_prob is None else float(mutation_prob)
    if not 0.0 < prob <= 1.0:
        raise ConfigError(f"evolution: mutation_prob must be in (0, 1], got {mutation_prob!r}")
    n_arch = _space_size(arch_radices)
    max_generations = 20 * math.ceil(budget / population) if max_generations is None else int(max_generations)
    scorer = _Scorer(ex, joint_hw=joint_hw, callback=callback)

    def objectives(idx: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        rows = [scorer.rows[i] for i in idx]
        acc = np.array([r["accuracy"] for r in rows], dtype=np.float64)
        err = np.where(np.isfinite(acc), 1.0 - acc, 1.0)
        cost = np.log(np.maximum(np.array([r["cost"] for r in rows], dtype=np.float64), 1e-300))
        return np.stack([err, cost], 1), np.array([r["violation"] for r in rows])

    # ---- initial population
    init = _distinct_architectures(ex, min(population, budget), rng)
    if joint_hw:
        init = [g + (int(rng.integers(radices[-1])),) for g in init]
    pop = np.asarray([scorer(g) for g in init], dtype=np.int64)
    F, V = objectives(pop)
    keep, rank, crowd = _rank_and_crowd(F, V, len(pop))
    pop = pop[keep]
    genomes: Dict[int, Genome] = {i: g for g, i in scorer.index.items()}

    def pick() -> Genome:
        return genomes[int(pop[crowded_tournament(rank, crowd, tournament, rng)])]

    reason, gen, stall = "max generations", 0, 0
    for _gen in range(max_generations + 1):
        if scorer.accuracy_calls >= budget:
            reason = "budget"
            break
        if not joint_hw and scorer.accuracy_calls >= n_arch:
            reason = "space exhausted"
            break
        if stall >= max_stall:
            reason = "stalled"
            break
        if gen >= max_generations:
            break
        gen += 1
        scorer.generation = gen
        children: List[int] = []
        for _ in range(population):
            if scorer.accuracy_calls >= budget:
                break
            child = None
            for _try in range(max_tries):
                g = pick()
                if rng.random() < crossover_prob:
                    g = _crossover(g, pick(), rng)
                g = _mutate(g, radices, prob, rng)
                if not scorer.knows(g):
                    child = g
                    break
            if child is None:
                continue
            i = scorer(child)
            genomes[i] = child
            children.append(i)
        stall = 0 if children else stall + 1
        merged = np.concatenate([pop, np.asarray(children, dtype=np.int64)])
        F, V = objectives(merged)
        keep, rank, crowd = _rank_and_crowd(F, V, population)
        pop = merged[keep]
        logger.debug("nsga2 generation %d: %d new designs, %d architectures evaluated, %d feasible in population",
                     gen, len(children), scorer.accuracy_calls, int(sum(scorer.rows[i]["feasible"] for i in pop)))
    if reason != "budget":
        logger.info("evolution: stopped (%s) after %d of %d architecture evaluations", reason,
                    scorer.accuracy_calls, budget)
    return _finish("evolution", scorer, lam, cost_ref, budget, reason,
                   {"algorithm": "nsga2", "joint_hw": bool(joint_hw), "generations": gen,
                    "hw_evaluations": len(scorer.rows), "population": [int(i) for i in pop],
                    "space_size": n_arch})
