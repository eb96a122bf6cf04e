"""Non-gradient baselines of the co-exploration: random search and NSGA-II, as ask/tell algorithms.

DANCE (Choi et al., DAC 2021) and HDX (Hong et al., DAC 2022) compare their differentiable
co-exploration with search baselines that see the same supernet and the same hardware
model.  This module provides two, under one budget and one interface:

* :class:`RandomSearch` (``"random"``): distinct architectures drawn uniformly;
* :class:`NSGA2Search` (``"nsga2"``): NSGA-II (Deb, Pratap, Agarwal and Meyarivan, "A Fast
  and Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE TEVC 2002) on (error, hardware
  cost) with Deb's constraint domination, run by pymoo (Blank and Deb, "pymoo: Multi-Objective
  Optimization in Python", IEEE Access 2020).

Both are registered in :data:`ALGORITHMS` with one constructor signature
``(problem, budget, rng, **options)`` and follow pymoo's ask/tell shape::

    alg = NSGA2Search(problem, budget=48, rng=np.random.default_rng(0), population=16)
    while not alg.done:
        genomes = alg.ask()              # the next designs
        rows = alg.evaluate(genomes)     # the exact, memoised scorer (spends the budget)
        alg.tell(genomes, rows)
    result = alg.result()

or ``alg.run(callback)``, which does the same and calls ``callback(alg, generation, new_rows)``
after every generation (logging, progress bars and checkpoints are callbacks).  Each algorithm
owns the ``numpy.random.Generator`` it is given; nothing seeds or draws from a global generator
(see :class:`_GlobalRandomScope` for the pymoo versions that do).

What a design is worth.  The problem (:class:`OneShotProblem`) holds a
:class:`~coexplore.verify.Verifier` and the supernet's inherited-weight validation accuracy.
Every design is scored exactly: its accuracy by ``problem.accuracy`` and its metrics, cost,
feasibility and violation by ``Verifier.check`` -- with ``accelerator_index=None`` the
accelerator is the best one of the hardware space under the constraints (the one rule of
:func:`~coexplore.constraints.constrained_argmin`, the exact inner optimisation of the bilevel
co-exploration); in NSGA-II's joint mode the accelerator index is a gene and the design is
checked on that accelerator.  The budget is the number of inherited-accuracy evaluations
(distinct architectures), the expensive step (~0.3 s each); hardware pricing is free, so in
joint mode a known architecture on a new accelerator costs no budget.

Selection rule (:func:`select_best`, the same for both methods).  Among the evaluated
designs, a feasible one (meets every constraint) always beats an infeasible one; among
feasible designs the scalarised fitness

    fitness = accuracy - lam * cost / cost_ref

is maximised, ``cost`` being the hardware objective on the design's accelerator, ties broken
by the lower cost.  ``cost_ref`` makes ``lam`` unit-free; by default it is
:func:`space_reference_cost`, the exact cost of the uniform architecture mixture on its best
accelerator -- the analytical counterpart of the reference the DANCE loss divides by.  It
depends on the spaces and the objective only, never on which designs a method happened to
evaluate, so ``lam`` weighs cost identically for every method and seed.  (A median over the
evaluated designs would not: random search evaluates mostly large, often infeasible designs,
evolution mostly front designs; on ``tiny-mnist`` x ``small`` under ``latency <= 0.1ms`` the
two medians differ by about 2x, which changes what ``lam`` means.)  When no evaluated design
is feasible, the one with the least total normalised violation ``sum_i max(0, g_i / bound_i)``
is taken (ties by fitness, then cost) and the result is flagged ``feasible_found = False``.
"""

from __future__ import annotations

import inspect
import logging
import math
import random as _pyrandom
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.ux import UX
from pymoo.problems.static import StaticProblem
from pymoo.termination.max_gen import MaximumGenerationTermination

from .common import ConfigError, Registry
from .pareto import pareto_mask
from .verify import Verifier

logger = logging.getLogger(__name__)

Genome = Tuple[int, ...]
Row = Dict[str, Any]
#: ``callback(algorithm, generation, new_rows)``: called by :meth:`OneShotSearch.run` after every generation.
GenerationCallback = Callable[["OneShotSearch", int, List[Row]], None]

SELECTION_RULE = ("feasible designs first; among them maximise accuracy - lam * cost / cost_ref, ties by "
                  "lower cost; when none is feasible, least total normalised violation, then fitness, then "
                  "cost (flagged feasible_found=False)")
#: Largest space size for which distinct architectures are drawn exactly by index.
_INDEX_LIMIT = 2 ** 62


# ---------------------------------------------------------------------------------------
# the problem
# ---------------------------------------------------------------------------------------

@dataclass
class OneShotProblem:
    """What a one-shot baseline searches: the exact check of a design and its accuracy.

    Args:
        verifier: the exact analytical check (``space``, ``table``, ``objective``,
            ``constraints``, ``check(sample, accelerator_index=None)``).
        accuracy: the inherited-weight validation accuracy of an architecture ``{label: op}``
            (expensive, ~0.3 s); called once per distinct architecture.
        lam: weight of the normalised hardware cost in the final selection (unit-free).
        cost_ref: the cost unit of that fitness (> 0); ``None``: :func:`space_reference_cost`.
    """

    verifier: Verifier  # exact metrics, cost, feasibility and violation of a design
    accuracy: Callable[[Dict[str, str]], float]  # inherited-weight validation accuracy, in [0, 1]
    lam: float = 0.0  # weight of cost / cost_ref in the fitness (unit-free)
    cost_ref: Optional[float] = None  # objective units; None: the uniform architecture's exact cost

    def __post_init__(self) -> None:
        if not callable(getattr(self.verifier, "check", None)):
            raise ConfigError(f"problem: verifier must be a Verifier (with check(sample, accelerator_index)), "
                              f"got {type(self.verifier).__name__}")
        if not callable(self.accuracy):
            raise ConfigError(f"problem: accuracy must be a callable sample -> float, got {self.accuracy!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, Real) or not math.isfinite(self.lam):
            raise ConfigError(f"problem: lam must be a finite number, got {self.lam!r}")
        self.lam = float(self.lam)
        if self.cost_ref is not None:
            if (isinstance(self.cost_ref, bool) or not isinstance(self.cost_ref, Real)
                    or not (math.isfinite(self.cost_ref) and self.cost_ref > 0)):
                raise ConfigError(f"problem: cost_ref must be None or a finite number > 0, got {self.cost_ref!r}")
            self.cost_ref = float(self.cost_ref)

    @property
    def space(self):
        return self.verifier.space

    @property
    def table(self):
        return self.verifier.table

    @property
    def objective(self):
        return self.verifier.objective

    @property
    def constraints(self):
        return self.verifier.constraints

    def reference_cost(self) -> Tuple[float, str]:
        """``(cost_ref, source)``: the given unit (``"given"``) or :func:`space_reference_cost`
        (``"uniform-architecture"``)."""
        if self.cost_ref is not None:
            return self.cost_ref, "given"
        return space_reference_cost(self.verifier), "uniform-architecture"


# ---------------------------------------------------------------------------------------
# pure selection tools
# ---------------------------------------------------------------------------------------

def scalarized_fitness(accuracy: Any, cost: Any, lam: float, cost_ref: float) -> np.ndarray:
    """``accuracy - lam * cost / cost_ref`` (elementwise; ``cost_ref > 0``)."""
    return np.asarray(accuracy, dtype=np.float64) - lam * np.asarray(cost, dtype=np.float64) / cost_ref


def space_reference_cost(source) -> float:
    """The default cost unit: the exact cost of the uniform architecture mixture on its best accelerator.

    The expected latency and energy of the uniform distribution over each block's
    candidates (``table.metrics`` of the soft encoding ``[D]``) give one objective value per
    accelerator; the least one is the unit.  It is what ``CoExplorer`` divides the DANCE loss
    by (there through the evaluator), and it is independent of any search.  Falls back to
    1.0, with a warning, if that cost is not a finite positive number.

    Args:
        source: a :class:`~coexplore.verify.Verifier` or :class:`OneShotProblem` (anything
            with ``space``, ``table`` and ``objective``).
    """
    enc = np.concatenate([np.full(len(b.candidates), 1.0 / len(b.candidates)) for b in source.space.choices])
    lat, en, area = source.table.metrics(enc[None, :])
    ref = float(np.min(np.asarray(source.objective(np.asarray(lat), np.asarray(en), np.asarray(area)),
                                  dtype=np.float64)))
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

def _radices(space) -> List[int]:
    return [len(c.candidates) for c in space.choices]  # one gene per choice (op, and bits where offered)


def _space_size(radices: Sequence[int]) -> int:
    n = 1
    for r in radices:
        n *= int(r)
    return n


def _sample(space, arch: Sequence[int]) -> Dict[str, str]:
    return {c.label: c.candidates[int(i)] for c, i in zip(space.choices, arch)}


def _genome(space, sample: Mapping[str, str]) -> Genome:
    return tuple(c.candidates.index(sample[c.label]) for c in space.choices)


def _decode_index(index: int, radices: Sequence[int]) -> Genome:
    out = []
    for r in reversed(radices):
        index, d = divmod(int(index), int(r))
        out.append(d)
    return tuple(reversed(out))


def _distinct_architectures(space, k: int, rng: np.random.Generator) -> List[Genome]:
    """``min(k, |space|)`` distinct architectures, uniformly without replacement.

    Exact (by index, Floyd's algorithm inside ``Generator.choice``) when the space has
    fewer than 2^62 architectures; otherwise ``space.sample`` with duplicates skipped
    (they are then astronomically rare) and a bounded number of draws.
    """
    radices = _radices(space)
    n = _space_size(radices)
    if n < _INDEX_LIMIT:
        idx = rng.choice(n, size=min(k, n), replace=False, shuffle=True)
        return [_decode_index(int(i), radices) for i in idx]
    seen: Dict[Genome, None] = {}
    for _ in range(10 * k + 100):
        if len(seen) >= k:
            break
        seen.setdefault(_genome(space, space.sample(rng)), None)
    return list(seen)


def _as_genome(x: Any) -> Genome:
    return tuple(int(v) for v in np.asarray(x).reshape(-1))


class Scorer:
    """Memoised exact scoring of designs; counts inherited-accuracy calls (the budget).

    A genome is the architecture (one candidate index per block), followed in joint mode by
    an accelerator index.  Metrics, cost, feasibility and violation come from
    ``problem.verifier.check(sample, accelerator_index)`` (``None`` outside joint mode: the
    best accelerator under the constraints), the accuracy from ``problem.accuracy``, called
    once per architecture.  A new architecture beyond ``budget`` is refused.
    """

    def __init__(self, problem: OneShotProblem, joint_hw: bool, budget: int) -> None:
        self.problem = problem
        self.joint_hw = bool(joint_hw)
        self.budget = int(budget)
        self.num_blocks = len(problem.space.choices)  # architecture genes: one per choice
        self.radices = _radices(problem.space) + ([problem.table.num_accelerators] if self.joint_hw else [])
        self.rows: List[Row] = []
        self.index: Dict[Genome, int] = {}  # genome -> row
        self.accuracy: Dict[Genome, float] = {}  # architecture -> inherited accuracy

    @property
    def accuracy_calls(self) -> int:
        return len(self.accuracy)

    def knows(self, genome: Genome) -> bool:
        return genome in self.index

    def arch_is_new(self, genome: Genome) -> bool:
        return tuple(genome[:self.num_blocks]) not in self.accuracy

    def row(self, genome: Genome) -> Row:
        return self.rows[self.index[genome]]

    def __call__(self, genome: Genome, generation: int = 0) -> Row:
        """Score a genome once (later calls return the same row)."""
        genome = _as_genome(genome)
        if genome in self.index:
            return self.row(genome)
        if len(genome) != len(self.radices) or any(not 0 <= x < r for x, r in zip(genome, self.radices)):
            raise ValueError(f"genome {genome} is outside the space: {len(self.radices)} genes, each in "
                             f"[0, radix) with radices {self.radices}")
        arch = genome[:self.num_blocks]
        new_arch = arch not in self.accuracy
        if new_arch and self.accuracy_calls >= self.budget:
            raise ValueError(f"the budget of {self.budget} architectures is spent; {arch} is new")
        sample = _sample(self.problem.space, arch)
        v = self.problem.verifier.check(sample, int(genome[self.num_blocks]) if self.joint_hw else None)
        if new_arch:
            acc = float(self.problem.accuracy(sample))
            if not math.isfinite(acc):
                logger.warning("inherited accuracy of %s is %r; ranked as accuracy 0", sample, acc)
            self.accuracy[arch] = acc
        acc = self.accuracy[arch]
        feasible = bool(v["feasible"])
        row = {"evaluation": len(self.rows), "generation": int(generation), "architecture": sample,
               "accelerator_index": int(v["accelerator_index"]), "accelerator": v["accelerator"],
               "accuracy": acc, "error": 1.0 - acc, "metrics": dict(v["metrics"]), "cost": float(v["cost"]),
               "feasible": feasible, "violation": 0.0 if feasible else float(v["violation"]),
               "constraints": v["constraints"], "new_architecture": new_arch}
        self.index[genome] = len(self.rows)
        self.rows.append(row)
        return row


# ---------------------------------------------------------------------------------------
# argument checks (one line, naming the field and what is allowed)
# ---------------------------------------------------------------------------------------

def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_budget(budget: Any) -> int:
    if not _is_int(budget) or budget < 1:
        raise ConfigError(f"baseline budget must be an integer >= 1 (inherited-accuracy evaluations), got {budget!r}")
    return int(budget)


def _check_int(owner: str, field: str, value: Any, low: int, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < low:
        extra = " or None" if allow_none else ""
        raise ConfigError(f"{owner}: {field} must be an integer >= {low}{extra}, got {value!r}")
    return int(value)


def _check_prob(owner: str, field: str, value: Any, open_low: bool) -> float:
    ok = isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    ok = ok and ((0.0 < value <= 1.0) if open_low else (0.0 <= value <= 1.0))
    if not ok:
        raise ConfigError(f"{owner}: {field} must be a number in {'(0, 1]' if open_low else '[0, 1]'}, got {value!r}")
    return float(value)


def _check_rng(owner: str, rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"{owner}: rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
                          f"got {type(rng).__name__}")
    return rng


# ---------------------------------------------------------------------------------------
# the algorithm protocol
# ---------------------------------------------------------------------------------------

#: The one-shot algorithms, each ``cls(problem, budget, rng, **options)``.
ALGORITHMS: Registry[Type["OneShotSearch"]] = Registry("one-shot algorithm")


class OneShotSearch:
    """Base of the one-shot baselines: ask/tell over genomes, the memoised scorer, the budget.

    Subclasses implement ``_propose()`` (the next genomes, none of them scored yet, within
    the budget) and ``_update(genomes, rows)`` (learn from them; return a stop reason or
    ``None``) and may add ``_extras()`` to the result.

    Args:
        problem: what is searched and how a design is scored.
        budget: distinct architectures to evaluate (inherited-accuracy calls), >= 1.
        rng: the generator every random choice of the search is drawn from.
        joint_hw: the genome ends with an accelerator index.

    Attributes:
        done: whether the search has stopped; ``stop_reason`` then says why
            (``budget``, ``space exhausted``, ``sampler gave up``, ``max generations``,
            ``stalled``).
        generation: number of completed ask/tell rounds.
        scorer: the memoised :class:`Scorer`; ``history`` is its rows in evaluation order.
    """

    name: ClassVar[str] = ""
    method: ClassVar[str] = ""

    def __init__(self, problem: OneShotProblem, budget: int, rng: np.random.Generator,
                 joint_hw: bool = False) -> None:
        if not isinstance(problem, OneShotProblem):
            raise ConfigError(f"{self.name}: problem must be a OneShotProblem, got {type(problem).__name__}")
        if not isinstance(joint_hw, (bool, np.bool_)):
            raise ConfigError(f"{self.name}: joint_hw must be true or false, got {joint_hw!r}")
        self.problem = problem
        self.budget = _check_budget(budget)
        self.rng = _check_rng(self.name, rng)
        self.joint_hw = bool(joint_hw)
        self.scorer = Scorer(problem, self.joint_hw, self.budget)
        self.arch_radices = _radices(problem.space)
        self.space_size = _space_size(self.arch_radices)
        self.generation = 0
        self.done = False
        self.stop_reason = ""
        self._pending: Optional[List[Genome]] = None

    # ---- state ----------------------------------------------------------------------
    @property
    def history(self) -> List[Row]:
        return self.scorer.rows

    @property
    def evaluations(self) -> int:
        """Inherited-accuracy calls so far (the budget spent)."""
        return self.scorer.accuracy_calls

    # ---- ask / evaluate / tell ------------------------------------------------------
    def ask(self) -> List[Genome]:
        """The next designs to score (empty once ``done``).  Asking again before
        :meth:`tell` returns the same designs."""
        if self.done:
            return []
        if self._pending is None:
            self._pending = [_as_genome(g) for g in self._propose()]
        return list(self._pending)

    def evaluate(self, genomes: Sequence[Genome]) -> List[Row]:
        """Score designs exactly with the memoised scorer (spends budget on new architectures)."""
        return [self.scorer(g, self.generation) for g in genomes]

    def tell(self, genomes: Sequence[Genome], rows: Sequence[Row]) -> None:
        """Hand back the designs of the last :meth:`ask` with their :meth:`evaluate` rows."""
        if self._pending is None:
            raise ValueError(f"{self.name}: tell() without a pending ask()")
        genomes = [_as_genome(g) for g in genomes]
        if genomes != self._pending:
            raise ValueError(f"{self.name}: tell() got other designs than the last ask() returned")
        if len(rows) != len(genomes):
            raise ValueError(f"{self.name}: tell() got {len(rows)} rows for {len(genomes)} designs")
        for g, r in zip(genomes, rows):
            if not self.scorer.knows(g) or self.scorer.row(g) is not r:
                raise ValueError(f"{self.name}: tell() needs the rows evaluate() returned; {g} has none")
        self._pending = None
        reason = self._update(genomes, list(rows))
        self.generation += 1
        if self.evaluations >= self.budget:
            reason = "budget"
        if reason is not None:
            self.done, self.stop_reason = True, reason
            level = logging.DEBUG if reason == "budget" else logging.INFO
            logger.log(level, "%s: stopped (%s) after %d of %d architecture evaluations in %d generations",
                       self.name, reason, self.evaluations, self.budget, self.generation)

    def step(self) -> List[Row]:
        """One generation: ask, evaluate, tell.  Returns the rows it added to the history."""
        before = len(self.history)
        genomes = self.ask()
        self.tell(genomes, self.evaluate(genomes))
        return self.history[before:]

    def run(self, callback: Optional[GenerationCallback] = None) -> Dict[str, Any]:
        """Run to the end; ``callback(self, generation, new_rows)`` after every generation
        (``generation`` counts from 0, and every new row carries it)."""
        while not self.done:
            g = self.generation
            new = self.step()
            if callback is not None:
                callback(self, g, new)
        return self.result()

    # ---- result ---------------------------------------------------------------------
    def result(self) -> Dict[str, Any]:
        """The selected design and the record of the search (see :func:`random_search`)."""
        rows = self.history
        if not rows:
            raise ValueError(f"{self.name}: result() before any design was evaluated")
        ref, source = self.problem.reference_cost()
        sel = select_best(rows, self.problem.lam, ref)
        for r, f in zip(rows, sel["fitness"]):
            r["fitness"] = float(f)
        best = rows[sel["index"]]
        front = pareto_front_indices(rows)
        if not sel["feasible_found"]:
            logger.warning("%s: none of the %d evaluated designs meets the constraints; returning the least "
                           "violating one (violation %.3g)", self.name, len(rows), best["violation"])
        logger.info("%s: %d architectures evaluated (budget %d, %s); best accuracy %.4f cost %.4g fitness %.4f%s",
                    self.name, self.evaluations, self.budget, self.stop_reason or "running", best["accuracy"],
                    best["cost"], best["fitness"], "" if best["feasible"] else " (INFEASIBLE)")
        return {"method": self.method, "algorithm": self.name, "best": dict(best["architecture"]),
                "best_index": sel["index"], "best_row": best, "accelerator_index": best["accelerator_index"],
                "feasible_found": sel["feasible_found"], "history": rows, "front": [rows[i] for i in front],
                "front_indices": front, "cost_ref": sel["cost_ref"], "cost_ref_source": source,
                "lam": self.problem.lam, "selection": SELECTION_RULE, "evaluations": self.evaluations,
                "budget": self.budget, "stop_reason": self.stop_reason, "generations": self.generation,
                "space_size": self.space_size, **self._extras()}

    # ---- for subclasses -------------------------------------------------------------
    def _propose(self) -> List[Genome]:
        raise NotImplementedError

    def _update(self, genomes: List[Genome], rows: List[Row]) -> Optional[str]:
        raise NotImplementedError

    def _extras(self) -> Dict[str, Any]:
        return {}


def make_search(name: str, problem: OneShotProblem, budget: int, rng: np.random.Generator,
                options: Optional[Mapping[str, Any]] = None) -> OneShotSearch:
    """Build a registered algorithm; an option it does not take is a :class:`ConfigError`."""
    cls = ALGORITHMS.get(name)
    options = dict(options or {})
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "problem", "budget", "rng")]
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{name}: unknown option {key!r}; allowed: {', '.join(allowed)}")
    return cls(problem, budget, rng, **options)


# ---------------------------------------------------------------------------------------
# random search
# ---------------------------------------------------------------------------------------

@ALGORITHMS.register("random")
class RandomSearch(OneShotSearch):
    """Random search: ``budget`` distinct architectures drawn uniformly, each scored exactly.

    The architectures are drawn once, without replacement (:func:`_distinct_architectures`),
    and handed out ``batch`` per generation; each gets its best accelerator under the
    constraints from ``Verifier.check``.

    Args:
        problem, budget, rng: see :class:`OneShotSearch`.
        batch: architectures per generation (>= 1); only the granularity of ``ask`` and of
            the callbacks, not what is drawn.
    """

    name = "random"
    method = "random"

    def __init__(self, problem: OneShotProblem, budget: int, rng: np.random.Generator, batch: int = 16) -> None:
        super().__init__(problem, budget, rng)
        self.batch = _check_int(self.name, "batch", batch, 1)
        self._queue = _distinct_architectures(problem.space, self.budget, self.rng)
        self._next = 0

    def _propose(self) -> List[Genome]:
        return self._queue[self._next:self._next + self.batch]

    def _update(self, genomes: List[Genome], rows: List[Row]) -> Optional[str]:
        self._next += len(genomes)
        if self._next < len(self._queue):
            return None
        if len(self._queue) >= self.budget:
            return "budget"
        return "space exhausted" if len(self._queue) >= self.space_size else "sampler gave up"


# ---------------------------------------------------------------------------------------
# NSGA-II through pymoo
# ---------------------------------------------------------------------------------------

class _GlobalRandomScope:
    """A private copy of numpy's and Python's global random state, swapped in around pymoo calls.

    pymoo 0.6.1 to 0.6.1.5 seed and draw from ``np.random`` and ``random`` (``setup``
    calls ``np.random.seed``; the operators call ``np.random.random``); 0.6.1.6 and later draw
    from a ``Generator`` made from the algorithm's ``seed``.  For both to be reproducible from
    the search's own Generator and to leave the caller's global streams untouched, every
    pymoo call runs inside :meth:`active`, which installs this private state (seeded from the
    search's Generator) and restores the caller's afterwards.  Not thread-safe: do not run
    another user of the global generators concurrently with a pymoo call.
    """

    def __init__(self, seed: int) -> None:
        self._np = np.random.RandomState(seed).get_state()
        self._py = _pyrandom.Random(seed).getstate()

    @contextmanager
    def active(self) -> Iterator[None]:
        saved_np, saved_py = np.random.get_state(), _pyrandom.getstate()
        np.random.set_state(self._np)
        _pyrandom.setstate(self._py)
        try:
            yield
        finally:
            self._np, self._py = np.random.get_state(), _pyrandom.getstate()
            np.random.set_state(saved_np)
            _pyrandom.setstate(saved_py)


class _GenomeProblem(Problem):
    """pymoo's view of the search: integer genes in ``[0, radix)``, two objectives
    (error, log cost), one inequality constraint (the total normalised violation, <= 0 is
    feasible).  It never evaluates anything itself: the scorer does, and the values reach
    pymoo through ``StaticProblem``."""

    def __init__(self, radices: Sequence[int]) -> None:
        n = len(radices)
        super().__init__(n_var=n, n_obj=2, n_ieq_constr=1, xl=np.zeros(n, dtype=np.int64),
                         xu=np.asarray(radices, dtype=np.int64) - 1, vtype=int)

    def _evaluate(self, x, out, *args, **kwargs):
        raise RuntimeError("one-shot designs are scored by the baselines' Scorer, not by pymoo")


class CategoricalMutation(Mutation):
    """Each gene moves with ``gene_prob`` to another of its values, drawn uniformly; at least
    one gene (of those with more than one value) always moves.

    The genes are categorical -- candidate ops such as ``mb3_e6`` and ``zero``, or accelerator
    indices -- so pymoo's polynomial mutation, which moves an integer by a distance, does not
    fit them.

    Args:
        gene_prob: per-gene probability in (0, 1].
    """

    def __init__(self, gene_prob: float) -> None:
        super().__init__(prob=1.0)
        self.gene_prob = float(gene_prob)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        # pymoo < 0.6.1.6 passes no generator: draw from the global one (scoped by _GlobalRandomScope)
        draw = random_state.random if random_state is not None else np.random.random
        X = np.asarray(X).astype(np.int64)
        radix = np.asarray(problem.xu, dtype=np.int64) - np.asarray(problem.xl, dtype=np.int64) + 1
        cols = np.flatnonzero(radix > 1)
        n = len(X)
        if n == 0 or cols.size == 0:
            return X
        hit = draw((n, cols.size)) < self.gene_prob
        forced = draw(n)
        none = ~hit.any(axis=1)
        pick = np.minimum((forced * cols.size).astype(np.int64), cols.size - 1)
        hit[np.flatnonzero(none), pick[none]] = True
        r = np.broadcast_to(radix[cols], (n, cols.size))
        shift = 1 + np.minimum((draw((n, cols.size)) * (r - 1)).astype(np.int64), r - 2)  # uniform in 1 .. r-1
        sub = X[:, cols]
        X[:, cols] = np.where(hit, (sub + shift) % r, sub)
        return X


class _UnseenGenomes(DuplicateElimination):
    """pymoo's duplicate elimination, extended to every genome the scorer already knows: the
    offspring pymoo hands out are distinct and all new, so no generation is spent on designs
    whose score is already in the history."""

    def __init__(self, known: Callable[[Genome], bool]) -> None:
        super().__init__()
        self.known = known

    def _do(self, pop, other, is_duplicate):
        seen = set() if other is None else {_as_genome(x) for x in other.get("X")}
        for i, x in enumerate(pop.get("X")):
            g = _as_genome(x)
            if g in seen or (other is None and self.known(g)):
                is_duplicate[i] = True
            else:
                seen.add(g)
        return is_duplicate


class PymooSearch(OneShotSearch):
    """A pymoo algorithm over genomes, driven by its ask/tell loop.

    ``algorithm.setup(problem, ...)``, then per generation ``pop = algorithm.ask()``, the
    scorer's rows turned into ``F = [error, log cost]`` and ``G = [violation]``, and
    ``algorithm.tell(infills=pop)``.  Subclasses build the pymoo algorithm
    (:meth:`_build`); pymoo's NSGA-III, MOEA/D and the others fit the same way.

    The offspring pymoo proposes are distinct and new (:class:`_UnseenGenomes`); those whose
    architecture would exceed the budget are dropped before scoring (in joint mode a known
    architecture on a new accelerator is free and kept), and pymoo is told only what was
    scored.  A generation in which pymoo finds no new genome counts towards ``max_stall``.

    Args:
        problem, budget, rng: see :class:`OneShotSearch`.
        population: population size (>= 2); also the number of offspring per generation.
        joint_hw: make the accelerator index a gene instead of choosing it exactly.
        max_generations: cap on offspring generations; ``None``: ``20 * ceil(budget / population)``.
        max_stall: generations in a row without a new genome before stopping (>= 1).
    """

    def __init__(self, problem: OneShotProblem, budget: int, rng: np.random.Generator, population: int = 16,
                 joint_hw: bool = False, max_generations: Optional[int] = None, max_stall: int = 3) -> None:
        super().__init__(problem, budget, rng, joint_hw=joint_hw)
        self.population = _check_int(self.name, "population", population, 2)
        self.max_generations = _check_int(self.name, "max_generations", max_generations, 1, allow_none=True)
        if self.max_generations is None:
            self.max_generations = 20 * math.ceil(self.budget / self.population)
        self.max_stall = _check_int(self.name, "max_stall", max_stall, 1)
        self.radices = self.arch_radices + ([self.problem.table.num_accelerators] if self.joint_hw else [])
        self.stall = 0
        # the initial population: distinct uniform architectures (random accelerators in joint mode), as
        # random search draws them from the same generator
        init = _distinct_architectures(problem.space, min(self.population, self.budget), self.rng)
        if self.joint_hw:
            init = [g + (int(a),) for g, a in zip(init, self.rng.integers(self.radices[-1], size=len(init)))]
        seed = int(self.rng.integers(2 ** 32))
        self._scope = _GlobalRandomScope(seed)
        self._pymoo_problem = _GenomeProblem(self.radices)
        with self._scope.active():
            self.algorithm = self._build(np.asarray(init, dtype=np.int64).reshape(len(init), len(self.radices)), seed)
            # pymoo never terminates on its own: the budget and the stop rules of tell() decide
            self.algorithm.setup(self._pymoo_problem, termination=MaximumGenerationTermination(10 ** 12),
                                 verbose=False)
        self._pending_pop: Optional[Population] = None

    def _build(self, initial: np.ndarray, seed: int):
        raise NotImplementedError

    def _propose(self) -> List[Genome]:
        with self._scope.active():
            pop = self.algorithm.ask()
            if pop is None or len(pop) == 0:
                # pymoo found no new genome and asks to terminate; the stall rule decides instead
                self.algorithm.termination.force_termination = False
                pop = Population.empty()
        genomes = [_as_genome(x) for x in pop.get("X")] if len(pop) else []
        keep, new_archs = [], set()
        left = self.budget - self.evaluations
        for i, g in enumerate(genomes):
            arch = g[:self.scorer.num_blocks]
            if self.scorer.arch_is_new(arch) and arch not in new_archs:
                if len(new_archs) >= left:
                    continue
                new_archs.add(arch)
            keep.append(i)
        self._pending_pop = pop[keep] if len(keep) < len(pop) else pop
        return [genomes[i] for i in keep]

    def _update(self, genomes: List[Genome], rows: List[Row]) -> Optional[str]:
        pop, self._pending_pop = self._pending_pop, None
        if genomes:
            acc = np.array([r["accuracy"] for r in rows], dtype=np.float64)
            err = np.where(np.isfinite(acc), 1.0 - acc, 1.0)
            # the log only shapes the crowding distance: EDAP spans orders of magnitude
            cost = np.log(np.maximum(np.array([r["cost"] for r in rows], dtype=np.float64), 1e-300))
            F = np.stack([err, cost], axis=1)
            G = np.array([[r["violation"]] for r in rows], dtype=np.float64)
            with self._scope.active():
                self.algorithm.evaluator.eval(StaticProblem(self._pymoo_problem, F=F, G=G), pop)
                self.algorithm.tell(infills=pop)
            self.stall = 0
        else:
            self.stall += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s generation %d: %d new designs, %d architectures evaluated, %d feasible in population",
                         self.name, self.generation, len(genomes), self.evaluations,
                         sum(self.scorer.row(g)["feasible"] for g in self._population_genomes()))
        if len(self.history) >= _space_size(self.radices):  # every genome scored
            return "space exhausted"
        if not self.joint_hw and self.evaluations >= self.space_size:
            return "space exhausted"
        if self.stall >= self.max_stall:
            return "stalled"
        if self.generation >= self.max_generations:  # offspring generations done after this one
            return "max generations"
        return None

    def _population_genomes(self) -> List[Genome]:
        pop = self.algorithm.pop
        return [] if pop is None else [_as_genome(x) for x in pop.get("X")]

    def _extras(self) -> Dict[str, Any]:
        opt = self.algorithm.opt
        front = [] if opt is None else [_as_genome(x) for x in opt.get("X")]
        return {"joint_hw": self.joint_hw, "generations": max(0, self.generation - 1),
                "hw_evaluations": len(self.history),
                "population": [self.scorer.index[g] for g in self._population_genomes()],
                "population_front": [self.scorer.index[g] for g in front]}


@ALGORITHMS.register("nsga2")
class NSGA2Search(PymooSearch):
    """NSGA-II over the architectures (pymoo's ``NSGA2``), with Deb's constraint domination.

    Why NSGA-II rather than regularized evolution (Real et al., AAAI 2019): the
    co-exploration is a two-objective problem (error vs hardware cost) with *hard*
    constraints.  Constraint domination (feasible beats infeasible; infeasible designs compare
    by total normalised violation; feasible ones by Pareto dominance on ``(error, log cost)``)
    enforces the constraints without a penalty weight to tune, and one run yields the whole
    front -- the curve DANCE draws by sweeping ``lam`` -- from which :func:`select_best` then
    picks, under the very rule random search uses.

    Genome.  One candidate index per choice block.  The accelerator is not a gene: every
    architecture gets the best accelerator of the hardware space under the constraints from
    ``Verifier.check(sample)``.  With ``joint_hw=True`` the accelerator index is one more gene
    and the design is checked on that accelerator only (``Verifier.check(sample, a)``): the
    blind joint search, for comparison.

    Operators (pymoo's NSGA-II otherwise): the initial population is ``population`` distinct
    uniformly drawn architectures; parents by binary tournaments (constraint violation, then
    Pareto dominance, then crowding distance); pymoo's uniform crossover with
    ``crossover_prob``; :class:`CategoricalMutation` with ``mutation_prob`` per gene; survival
    by rank and crowding, feasible designs first.

    Args:
        problem, budget, rng, population, joint_hw, max_generations, max_stall: see
            :class:`PymooSearch`.
        crossover_prob: probability of uniform crossover per mating, in [0, 1].
        mutation_prob: per-gene mutation probability in (0, 1]; ``None``: 1 / number of genes.
    """

    name = "nsga2"
    method = "evolution"

    def __init__(self, problem: OneShotProblem, budget: int, rng: np.random.Generator, population: int = 16,
                 crossover_prob: float = 0.9, mutation_prob: Optional[float] = None, joint_hw: bool = False,
                 max_generations: Optional[int] = None, max_stall: int = 3) -> None:
        self.crossover_prob = _check_prob(self.name, "crossover_prob", crossover_prob, open_low=False)
        n_genes = len(problem.space.choices) + int(bool(joint_hw)) if isinstance(problem, OneShotProblem) else 1
        self.mutation_prob = (1.0 / n_genes if mutation_prob is None
                              else _check_prob(self.name, "mutation_prob", mutation_prob, open_low=True))
        super().__init__(problem, budget, rng, population=population, joint_hw=joint_hw,
                         max_generations=max_generations, max_stall=max_stall)

    def _build(self, initial: np.ndarray, seed: int):
        return NSGA2(pop_size=self.population, sampling=initial, crossover=UX(prob=self.crossover_prob),
                     mutation=CategoricalMutation(self.mutation_prob),
                     eliminate_duplicates=_UnseenGenomes(self.scorer.knows), seed=seed)


# ---------------------------------------------------------------------------------------
# functional wrappers
# ---------------------------------------------------------------------------------------

def random_search(problem: OneShotProblem, budget: int, rng: np.random.Generator, batch: int = 16,
                  callback: Optional[GenerationCallback] = None) -> Dict[str, Any]:
    """Random search (:class:`RandomSearch`) run to the end.

    Returns:
        ``method`` ("random"), ``algorithm`` ("random"), ``best`` (the architecture,
        ``{label: op}``), ``best_row``, ``best_index``, ``accelerator_index``,
        ``feasible_found`` (False: nothing evaluated meets the constraints and ``best`` is the
        least violating design), ``history`` (one row per design in evaluation order:
        ``evaluation, generation, architecture, accelerator_index, accelerator, accuracy,
        error, metrics, cost, feasible, violation, constraints, new_architecture, fitness``),
        ``front`` (the rows of the accuracy/cost Pareto front, feasible designs only when there
        is one, by increasing cost) and ``front_indices``, ``cost_ref`` and ``cost_ref_source``
        ("uniform-architecture" or "given"), ``lam``, ``selection`` (the rule in words),
        ``evaluations``, ``budget``, ``stop_reason``, ``generations`` and ``space_size``.
    """
    return RandomSearch(problem, budget, rng, batch=batch).run(callback)


def evolution_search(problem: OneShotProblem, budget: int, rng: np.random.Generator, population: int = 16,
                     joint_hw: bool = False, crossover_prob: float = 0.9, mutation_prob: Optional[float] = None,
                     max_generations: Optional[int] = None, max_stall: int = 3,
                     callback: Optional[GenerationCallback] = None) -> Dict[str, Any]:
    """NSGA-II (:class:`NSGA2Search`) run to the end.

    Returns:
        What :func:`random_search` returns (``method`` "evolution", ``algorithm`` "nsga2",
        ``generations`` counting offspring generations after the initial population), plus
        ``joint_hw``, ``hw_evaluations`` (designs priced), ``population`` (history indices of
        pymoo's final population) and ``population_front`` (those of its first front, or its
        least violating member when none is feasible).
    """
    return NSGA2Search(problem, budget, rng, population=population, crossover_prob=crossover_prob,
                       mutation_prob=mutation_prob, joint_hw=joint_hw, max_generations=max_generations,
                       max_stall=max_stall).run(callback)
