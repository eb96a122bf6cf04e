"""Tests of coexplore.baselines: random search and NSGA-II on a synthetic, exactly known problem.

The explorer is a fake: the real analytical CostTable of ``tiny-mnist`` x ``small`` and a
real ConstraintSet, an exhaustive ``verify`` written here, and a synthetic deterministic
inherited accuracy (costlier ops are more accurate, plus fixed seeded noise), so every
architecture's score is known and the optimum can be found by enumeration.
"""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from accelerators import ConfigError, get_hardware_space
from coexplore.baselines import (constrained_dominates, crowded_tournament, crowding_distance, domination_matrix,
                                 evolution_search,
                                 non_dominated_sort, pareto_front_indices, random_search, select_best,
                                 space_reference_cost)
from coexplore.constraints import ConstraintSet
from coexplore.objectives import Objective
from coexplore.pricing import CostTable
from search_spaces import get_search_space

LAM = 0.1


@pytest.fixture(scope="module")
def table():
    return CostTable(get_search_space("tiny-mnist"), get_hardware_space("small"))


class FakeExplorer:
    """The part of CoExplorer the baselines use, with a synthetic accuracy."""

    def __init__(self, table, constraints=("latency <= 0.1ms",), seed=0, lam=LAM):
        self.space = table.space
        self.table = table
        self.constraints = ConstraintSet.parse(list(constraints))
        self.objective = Objective.parse("edap")
        self.cfg = SimpleNamespace(seed=seed, lam=lam)
        self.radices = [len(b.candidates) for b in self.space.blocks]
        # accuracy gain of each candidate: proportional to its mean energy (costlier op, more accurate)
        self.gain = []
        for lo, hi in zip(self.space.offsets[:-1], self.space.offsets[1:]):
            e = table.cand_energy[lo:hi].mean(1)
            self.gain.append(0.05 * e / e.max())
        n = int(np.prod(self.radices))
        self.noise = 0.003 * np.random.default_rng(1234).standard_normal(n)
        self.calls = []

    def index(self, sample):
        i = 0
        for b, r in zip(self.space.blocks, self.radices):
            i = i * r + b.candidates.index(sample[b.label])
        return i

    def true_accuracy(self, sample):
        g = sum(self.gain[k][b.candidates.index(sample[b.label])] for k, b in enumerate(self.space.blocks))
        return float(0.7 + g + self.noise[self.index(sample)])

    def inherited_accuracy(self, sample):
        self.calls.append(dict(sample))
        return self.true_accuracy(sample)

    def verify(self, sample):
        lat, en, area = (np.asarray(v)[0] for v in self.table.metrics(self.space.encode(sample)))
        score = self.objective(lat, en, area)
        vals = {"latency": lat, "energy": en, "area": np.asarray(area), "fps": 1.0 / lat}
        viol = np.zeros_like(lat)
        for c in self.constraints:
            viol = viol + np.maximum(0.0, c.normalized_g(vals[c.metric]))
        feasible = viol <= 0
        idx = int(np.argmin(np.where(feasible, score, np.inf))) if feasible.any() else int(np.lexsort((score, viol))[0])
        m = {"latency_s": float(lat[idx]), "fps": float(1.0 / lat[idx]), "energy_j": float(en[idx]),
             "area_mm2": float(area[idx]), "edp": float(lat[idx] * en[idx]),
             "edap": float(lat[idx] * en[idx] * area[idx])}
        checks = self.constraints.check({"latency": m["latency_s"], "energy": m["energy_j"], "area": m["area_mm2"],
                                         "fps": m["fps"]})
        return {"accelerator_index": idx, "accelerator": self.table.accelerators[idx], "metrics": m,
                "cost": float(score[idx]), "constraints": checks, "feasible": bool(feasible[idx]),
                "any_feasible": bool(feasible.any())}


def oracle(ex):
    """Every architecture's exact (accuracy, best feasible cost, feasible), by enumeration."""
    space = ex.space
    G = np.array(list(itertools.product(*[range(r) for r in ex.radices])))
    E = np.zeros((len(G), space.encoding_size))
    for k, lo in enumerate(space.offsets[:-1]):
        E[np.arange(len(G)), lo + G[:, k]] = 1.0
    lat, en, area = ex.table.metrics(E)
    score = ex.objective(lat, en, area)
    feas = np.ones_like(lat, dtype=bool)
    for c in ex.constraints:
        feas &= c.normalized_g({"latency": lat, "fps": 1.0 / lat, "energy": en, "area": area}[c.metric]) <= 0
    cost = np.where(feas, score, np.inf).min(1)
    acc = 0.7 + sum(ex.gain[k][G[:, k]] for k in range(len(ex.radices))) + ex.noise
    return acc, cost, np.isfinite(cost)


@pytest.fixture(scope="module")
def truth(table):
    ex = FakeExplorer(table)
    acc, cost, feas = oracle(ex)
    ref = space_reference_cost(ex)
    fit = np.where(feas, acc - LAM * cost / ref, -np.inf)
    return {"ref": ref, "best_fitness": float(fit.max()), "feasible_fraction": float(feas.mean())}


def true_fitness(ex, sample, ref):
    v = ex.verify(sample)
    return ex.true_accuracy(sample) - LAM * v["cost"] / ref if v["feasible"] else -math.inf


# ---- pure functions --------------------------------------------------------------------

def brute_fronts(F, viol):
    """Peel fronts by the plain definition: a front is what nothing left dominates."""
    left = list(range(len(F)))
    fronts = []
    while left:
        front = [i for i in left if not any(constrained_dominates(F[j], F[i], viol[j], viol[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


@pytest.mark.parametrize("seed", range(6))
def test_non_dominated_sort_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    F = rng.integers(0, 6, size=(n, 2)).astype(float)  # ties and duplicates
    viol = np.where(rng.random(n) < 0.3, rng.integers(1, 4, n) / 4.0, 0.0)
    fronts = non_dominated_sort(F, viol)
    assert [list(f) for f in fronts] == brute_fronts(F, viol)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(n))
    # feasible points all rank before infeasible ones
    rank = np.empty(n, int)
    for r, f in enumerate(fronts):
        rank[f] = r
    if (viol <= 0).any() and (viol > 0).any():
        assert rank[viol <= 0].max() < rank[viol > 0].min()


def test_non_dominated_sort_without_constraints_and_three_objectives():
    rng = np.random.default_rng(7)
    F = rng.random((30, 3))
    fronts = non_dominated_sort(F)
    assert [list(f) for f in fronts] == brute_fronts(F, np.zeros(30))
    D = domination_matrix(F)
    assert not D.diagonal().any()


def brute_crowding(F):
    n, m = F.shape
    d = np.zeros(n)
    for k in range(m):
        lo, hi = F[:, k].min(), F[:, k].max()
        for i in range(n):
            below = [F[j, k] for j in range(n) if F[j, k] < F[i, k]]
            above = [F[j, k] for j in range(n) if F[j, k] > F[i, k]]
            if not below or not above:
                d[i] = np.inf
            else:
                d[i] += (min(above) - max(below)) / (hi - lo)
    return d


@pytest.mark.parametrize("seed", range(4))
def test_crowding_distance_matches_brute_force(seed):
    F = np.random.default_rng(seed).random((int(3 + 5 * seed), 2))  # continuous: no ties
    np.testing.assert_allclose(crowding_distance(F), brute_crowding(F))


def test_crowding_distance_edge_cases():
    assert np.isinf(crowding_distance(np.zeros((2, 2)))).all()
    d = crowding_distance(np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]))  # second objective constant
    assert np.isinf(d[[0, 2]]).all() and d[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        crowding_distance(np.array([[np.nan, 1.0]]))


def test_constrained_dominates():
    assert constrained_dominates([5, 5], [0, 0], 0.0, 0.1)  # feasible beats infeasible, however good
    assert not constrained_dominates([0, 0], [5, 5], 0.1, 0.0)
    assert constrained_dominates([5, 5], [0, 0], 0.1, 0.2)  # less violation wins
    assert constrained_dominates([0, 1], [1, 1]) and not constrained_dominates([1, 1], [1, 1])
    assert not constrained_dominates([0, 2], [1, 1])


def test_crowded_tournament():
    rank = np.array([2, 0, 0, 1, 0])
    crowd = np.array([np.inf, 0.5, np.inf, 9.0, 0.2])
    rng = np.random.default_rng(0)
    assert all(crowded_tournament(rank, crowd, 5, rng) == 2 for _ in range(5))  # everyone in: the best wins
    wins = [crowded_tournament(rank, crowd, 2, rng) for _ in range(400)]
    assert 0 not in wins  # the worst member never wins a tournament of two
    assert set(wins) <= {1, 2, 3, 4} and wins.count(2) > wins.count(4)
    assert all(crowded_tournament(rank, crowd, 1, rng) in range(5) for _ in range(5))


def row(acc, cost, feasible, violation=0.0):
    return {"accuracy": acc, "cost": cost, "feasible": feasible, "violation": 0.0 if feasible else violation}


def test_select_best_rule():
    rows = [row(0.99, 1.0, False, 0.5), row(0.80, 2.0, True), row(0.90, 2.0, True), row(0.90, 1.0, True)]
    sel = select_best(rows, lam=0.1, cost_ref=1.5)
    assert sel["index"] == 3 and sel["feasible_found"]  # infeasible 0.99 is never preferred
    np.testing.assert_allclose(sel["fitness"], [0.99 - 0.1 / 1.5, 0.8 - 0.2 / 1.5, 0.9 - 0.2 / 1.5, 0.9 - 0.1 / 1.5])
    # a large lam trades accuracy for cost
    assert select_best(rows, lam=10.0, cost_ref=1.0)["index"] == 3
    assert select_best(rows[:3], lam=0.0, cost_ref=1.0)["index"] == 2
    # ties in fitness go to the lower cost (lam = 0: fitness = accuracy)
    assert select_best([row(0.9, 2.0, True), row(0.9, 1.0, True)], lam=0.0, cost_ref=1.0)["index"] == 1
    # nothing feasible: least violation first, flagged
    sel = select_best([row(0.99, 1.0, False, 0.5), row(0.5, 3.0, False, 0.1)], lam=0.1, cost_ref=1.0)
    assert sel["index"] == 1 and not sel["feasible_found"]
    with pytest.raises(ValueError):
        select_best([], lam=0.1, cost_ref=1.0)
    with pytest.raises(ValueError):
        select_best(rows, lam=0.1, cost_ref=0.0)


def test_pareto_front_indices_feasible_only():
    rows = [row(0.99, 0.5, False, 0.2), row(0.9, 1.0, True), row(0.8, 2.0, True), row(0.95, 3.0, True)]
    assert pareto_front_indices(rows) == [1, 3]
    assert pareto_front_indices([row(0.9, 1.0, False, 1), row(0.8, 2.0, False, 1)]) == [0]


# ---- random search -----------------------------------------------------------------------

def test_random_search_budget_feasibility_and_rule(table):
    ex = FakeExplorer(table)
    res = random_search(ex, 60, np.random.default_rng(0))
    assert len(ex.calls) == 60 == res["evaluations"] == len(res["history"])
    assert len({tuple(c.values()) for c in ex.calls}) == 60  # distinct architectures
    assert res["stop_reason"] == "budget" and res["method"] == "random"
    assert any(r["feasible"] for r in res["history"])
    best = res["best_row"]
    assert res["feasible_found"] and best["feasible"] and res["best"] == best["architecture"]
    # the exact verification agrees, and the rule holds over the history
    assert ex.verify(res["best"])["cost"] == pytest.approx(best["cost"])
    assert ex.true_accuracy(res["best"]) == best["accuracy"]
    feas = [r for r in res["history"] if r["feasible"]]
    assert best["fitness"] == max(r["fitness"] for r in feas)
    # the cost unit is the uniform mixture's exact cost on its best accelerator, whatever was evaluated
    u = np.concatenate([np.full(r, 1.0 / r) for r in ex.radices])
    assert res["cost_ref"] == pytest.approx(float((np.prod(table.metrics(u), axis=0)).min()))
    assert res["cost_ref_source"] == "uniform-architecture"
    assert random_search(FakeExplorer(table), 5, np.random.default_rng(9))["cost_ref"] == res["cost_ref"]
    for r in res["history"]:
        assert r["fitness"] == pytest.approx(r["accuracy"] - LAM * r["cost"] / res["cost_ref"])
    # the front holds feasible designs only, non-dominated, by increasing cost
    front = res["front"]
    assert front and all(r["feasible"] for r in front)
    assert [r["cost"] for r in front] == sorted(r["cost"] for r in front)
    assert [r["accuracy"] for r in front] == sorted(r["accuracy"] for r in front)


def test_random_search_reproducible(table):
    a = random_search(FakeExplorer(table), 25, np.random.default_rng(3))
    b = random_search(FakeExplorer(table), 25, np.random.default_rng(3))
    c = random_search(FakeExplorer(table), 25, np.random.default_rng(4))
    assert [r["architecture"] for r in a["history"]] == [r["architecture"] for r in b["history"]]
    assert a["best"] == b["best"]
    assert [r["architecture"] for r in a["history"]] != [r["architecture"] for r in c["history"]]
    # rng=None falls back to ex.cfg.seed
    d = random_search(FakeExplorer(table, seed=3), 25)
    assert [r["architecture"] for r in d["history"]] == [r["architecture"] for r in a["history"]]


def test_random_search_flags_infeasible(table):
    ex = FakeExplorer(table, constraints=("latency <= 0.001ms",))  # below the least reachable latency
    res = random_search(ex, 20, np.random.default_rng(0))
    assert not res["feasible_found"] and not res["best_row"]["feasible"]
    least = min(r["violation"] for r in res["history"])
    assert res["best_row"]["violation"] == least > 0


class TinySpace:
    """Two blocks of two candidates: 4 architectures."""

    def __init__(self, space):
        self.blocks = [b for b in space.blocks if len(b.candidates) == 4][:2]
        self.blocks = [SimpleNamespace(label=b.label, candidates=b.candidates[:2]) for b in self.blocks]
        self._full = space

    def sample(self, rng):
        return {b.label: b.candidates[int(rng.integers(len(b.candidates)))] for b in self.blocks}

    def encode(self, sample):
        full = {b.label: b.candidates[0] for b in self._full.blocks}
        full.update(sample)
        return self._full.encode(full)


def test_budget_larger_than_space_stops(table):
    ex = FakeExplorer(table)
    ex.space = TinySpace(table.space)
    ex.radices = [2, 2]
    res = random_search(ex, 10, np.random.default_rng(0), cost_ref=1.0)
    assert res["evaluations"] == 4 and res["stop_reason"] == "space exhausted"
    assert res["cost_ref_source"] == "given"
    ev = evolution_search(ex, 10, np.random.default_rng(0), population=2, tournament=2, cost_ref=1.0)
    assert ev["evaluations"] == 4 and ev["stop_reason"] == "space exhausted"


# ---- evolution ----------------------------------------------------------------------------

def test_evolution_budget_memo_and_reproducible(table):
    ex = FakeExplorer(table)
    res = evolution_search(ex, 48, np.random.default_rng(1), population=8, tournament=3)
    assert len(ex.calls) == 48 == res["evaluations"]
    assert len({tuple(c.values()) for c in ex.calls}) == 48  # every architecture scored once
    assert res["algorithm"] == "nsga2" and not res["joint_hw"] and res["generations"] >= 5
    assert res["feasible_found"] and res["best_row"]["feasible"]
    assert len(res["population"]) == 8
    again = evolution_search(FakeExplorer(table), 48, np.random.default_rng(1), population=8, tournament=3)
    assert [r["architecture"] for r in again["history"]] == [r["architecture"] for r in res["history"]]
    assert again["best"] == res["best"]


def test_evolution_beats_random_on_average(table, truth):
    """Same budget and cost unit; the true fitness of the returned designs."""
    ev, rs = [], []
    for seed in range(4):
        kw = dict(rng=np.random.default_rng(seed))
        e = evolution_search(FakeExplorer(table), 96, population=12, **kw)
        r = random_search(FakeExplorer(table), 96, **kw)
        ev.append(true_fitness(FakeExplorer(table), e["best"], truth["ref"]))
        rs.append(true_fitness(FakeExplorer(table), r["best"], truth["ref"]))
    assert all(math.isfinite(x) for x in ev)
    assert np.mean(ev) >= np.mean(rs)
    assert max(ev) <= truth["best_fitness"] + 1e-12


def test_evolution_never_prefers_infeasible(table):
    ex = FakeExplorer(table)
    res = evolution_search(ex, 32, np.random.default_rng(5), population=8)
    feas = [r for r in res["history"] if r["feasible"]]
    assert feas and res["best_row"]["feasible"]
    assert res["best_row"]["fitness"] == max(r["fitness"] for r in feas)
    # the final population is constrained-sorted: no infeasible member while feasible ones were left out
    pop = [res["history"][i] for i in res["population"]]
    if not all(r["feasible"] for r in pop):
        assert sum(r["feasible"] for r in pop) == len(feas)


def test_evolution_flags_infeasible(table):
    ex = FakeExplorer(table, constraints=("latency <= 0.001ms",))
    res = evolution_search(ex, 24, np.random.default_rng(0), population=8)
    assert not res["feasible_found"] and not res["best_row"]["feasible"]
    assert res["best_row"]["violation"] == min(r["violation"] for r in res["history"])


def test_evolution_joint_hw(table):
    ex = FakeExplorer(table)
    res = evolution_search(ex, 40, np.random.default_rng(2), population=8, joint_hw=True)
    assert res["joint_hw"] and res["evaluations"] == len(ex.calls) <= 40
    assert len({tuple(c.values()) for c in ex.calls}) == len(ex.calls)  # accuracy memoised per architecture
    assert res["hw_evaluations"] == len(res["history"]) >= res["evaluations"]
    for r in res["history"][:10]:  # priced on the genome's accelerator, not the exact best one
        enc = table.space.encode(r["architecture"])
        lat, en, area = (np.asarray(v)[0, r["accelerator_index"]] for v in table.metrics(enc))
        assert r["metrics"]["latency_s"] == pytest.approx(lat) and r["cost"] == pytest.approx(lat * en * area)
        assert r["feasible"] == (lat <= 1e-4)
    keys = [(tuple(r["architecture"].values()), r["accelerator_index"]) for r in res["history"]]
    assert len(set(keys)) == len(keys)


def test_argument_checks(table):
    ex = FakeExplorer(table)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            random_search(ex, bad, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        evolution_search(ex, 10, np.random.default_rng(0), population=1)
    with pytest.raises(ConfigError):
        evolution_search(ex, 10, np.random.default_rng(0), population=4, tournament=5)
    with pytest.raises(ConfigError):
        evolution_search(ex, 10, np.random.default_rng(0), mutation_prob=0.0)
    assert not ex.calls
