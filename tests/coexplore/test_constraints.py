"""Constraint parsing, the sign rule, and exact feasibility checks against brute force."""

import copy
import itertools
import json
import logging
import re

import numpy as np
import pytest
import torch
import yaml

from accelerators import ConfigError, get_hardware_space
from coexplore.constraints import (UNITS, Constraint, ConstraintSet, InfeasibleConstraintError, check_feasible,
                                   format_quantity)
from coexplore.pricing import CostTable

try:
    from search_spaces import get_search_space
except ImportError:  # the package __init__ may still be in progress
    from search_spaces.space import get_search_space


# ---- parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,metric,op,bound", [
    ("latency <= 16.6ms", "latency", "<=", 16.6e-3),
    ("latency<=16.6MS", "latency", "<=", 16.6e-3),
    ("latency <= 500 us", "latency", "<=", 500e-6),
    ("latency <= 0.5s", "latency", "<=", 0.5),
    ("LATENCY <= 2e-3 s", "latency", "<=", 2e-3),
    ("latency \u2264 1ms", "latency", "<=", 1e-3),
    ("fps >= 60", "fps", ">=", 60.0),
    ("fps>=30fps", "fps", ">=", 30.0),
    ("fps >= 25 Hz", "fps", ">=", 25.0),
    ("energy <= 2mJ", "energy", "<=", 2e-3),
    ("energy <= 150 uJ", "energy", "<=", 150e-6),
    ("energy<=5nJ", "energy", "<=", 5e-9),
    ("energy <= 1 J", "energy", "<=", 1.0),
    ("area <= 4mm2", "area", "<=", 4.0),
    ("area <= 4 mm^2", "area", "<=", 4.0),
    ("area<=.5MM2", "area", "<=", 0.5),
])
def test_parse_forms(text, metric, op, bound):
    c = Constraint.parse(text)
    assert (c.metric, c.op) == (metric, op)
    assert c.bound == pytest.approx(bound, rel=1e-12)
    assert c.spec == text.strip()
    again = Constraint.parse(str(c))  # the canonical text parses back to the same bound
    assert (again.metric, again.op) == (metric, op) and again.bound == pytest.approx(bound, rel=1e-5)
    assert Constraint.parse(c) is c


def test_direct_construction_gets_canonical_spec():
    c = Constraint("latency", "<=", 0.0166)
    assert c.spec == "latency <= 16.6 ms"
    assert Constraint("area", "<=", 4).bound == 4.0 and isinstance(Constraint("area", "<=", 4).bound, float)


@pytest.mark.parametrize("text,needles", [
    ("speed <= 3ms", ["unknown metric", "'speed'", "latency", "fps", "energy", "area"]),
    ("latency >= 1ms", ["'latency >='", "upper bound"]),
    ("area >= 1mm2", ["'area >='", "upper bound"]),
    ("fps <= 60", ["fps >= 60"]),
    ("latency < 1ms", ["operator '<'", "'<='", "'>='"]),
    ("latency = 1ms", ["operator '='"]),
    ("latency <= ms", ["missing or malformed bound", "s, ms, us, ns"]),
    ("latency <=", ["missing or malformed bound"]),
    ("latency <= -1ms", ["> 0"]),
    ("latency <= 0ms", ["> 0"]),
    ("fps >= 0", ["> 0"]),
    ("latency <= 3 parsecs", ["unknown unit 'parsecs'", "s, ms, us, ns"]),
    ("latency <= 3mJ", ["unit of energy, not of latency", "s, ms, us, ns"]),
    ("area <= 2ms", ["unit of latency, not of area", "mm2"]),
    ("energy <= 4mm2", ["unit of area, not of energy", "mJ"]),
    ("latency <= 3", ["a unit is required", "ms"]),
    ("latency 3ms", ["expected '<metric> <op> <bound><unit>'", "latency <= 16.6ms"]),
    ("", ["expected"]),
])
def test_parse_errors_name_the_text_and_the_allowed_values(text, needles):
    with pytest.raises(ConfigError) as e:
        Constraint.parse(text)
    msg = str(e.value)
    assert repr(text) in msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(metric="delay", op="<=", bound=1.0), "unknown metric 'delay'"),
    (dict(metric="latency", op="<", bound=1.0), "operator '<'"),
    (dict(metric="energy", op=">=", bound=1.0), "upper bound"),
    (dict(metric="latency", op="<=", bound=float("nan")), "finite number > 0"),
    (dict(metric="latency", op="<=", bound=float("inf")), "finite number > 0"),
    (dict(metric="latency", op="<=", bound=-1.0), "finite number > 0"),
    (dict(metric="latency", op="<=", bound="1ms"), "finite number > 0"),
])
def test_direct_construction_is_validated(kwargs, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Constraint(**kwargs)


def test_non_text_is_rejected():
    with pytest.raises(ConfigError, match="expected text"):
        Constraint.parse(42)
    with pytest.raises(ConfigError, match="expected a list"):
        ConstraintSet.parse({"latency": "1ms"})


# ---- sign rule ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["latency <= 2ms", "energy <= 3mJ", "area <= 4mm2", "fps >= 60"])
def test_sign_rule_g_nonpositive_iff_satisfied(text):
    c = Constraint.parse(text)
    values = c.bound * np.array([0.5, 0.999, 1.0, 1.001, 2.0])
    for v in values:
        assert (c.g(v) <= 0) == c.satisfied(v)
        assert c.normalized_g(v) == pytest.approx(c.g(v) / c.bound)
    if c.op == "<=":
        assert c.g(values[-1]) > 0 and c.g(values[0]) < 0
    else:
        assert c.g(values[-1]) < 0 and c.g(values[0]) > 0
    assert c.satisfied(c.bound) and isinstance(c.satisfied(c.bound), bool)
    assert c.satisfied(values).tolist() == [bool(x) for x in (c.g(values) <= 0)]
    over = c.bound * (1.0005 if c.op == "<=" else 0.9995)
    assert not c.satisfied(over) and c.satisfied(over, rtol=1e-3)
    t = torch.tensor(values)
    assert torch.equal(c.g(t) <= 0, torch.as_tensor(c.satisfied(values)))


def test_fps_is_steered_as_latency():
    c = Constraint.parse("fps >= 60")
    assert c.target_metric == "latency" and c.target_bound == pytest.approx(1 / 60)
    lat = c.as_target()
    assert (lat.metric, lat.op) == ("latency", "<=") and lat.bound == pytest.approx(16.6667e-3, rel=1e-4)
    for f in (30.0, 59.9, 60.0, 61.0, 120.0):
        assert c.satisfied(f) == lat.satisfied(1.0 / f, rtol=1e-12)
    e = Constraint.parse("energy <= 2mJ")
    assert (e.target_metric, e.target_bound) == ("energy", pytest.approx(2e-3)) and e.as_target() is e


# ---- sets -------------------------------------------------------------------------------------
def test_constraint_set_round_trip_and_check():
    texts = ["latency <= 16.6ms", "fps >= 30", "energy <= 2 mJ", "area <= 4mm^2"]
    cs = ConstraintSet.parse(texts)
    assert len(cs) == 4 and cs[0].metric == "latency" and [c.metric for c in cs] == ["latency", "fps", "energy", "area"]
    assert cs.to_list() == texts
    assert ConstraintSet.from_list(yaml.safe_load(yaml.safe_dump(cs.to_list()))) == cs
    assert ConstraintSet.parse(json.loads(json.dumps(cs.to_list()))) == cs
    assert ConstraintSet.parse(None) == ConstraintSet() and len(ConstraintSet.parse("fps >= 60")) == 1
    assert cs.target_bounds() == {"latency": pytest.approx(16.6e-3), "energy": pytest.approx(2e-3),
                                  "area": pytest.approx(4.0)}

    good = {"latency_s": 10e-3, "energy_j": 1e-3, "area_mm2": 3.0}
    rows = cs.check(good)
    assert [r["satisfied"] for r in rows] == [True] * 4 and cs.all_satisfied(good)
    assert set(rows[0]) == {"spec", "metric", "op", "bound", "value", "g", "normalized_g", "satisfied"}
    assert rows[1]["value"] == pytest.approx(100.0)  # fps derived from latency
    assert rows[1]["g"] == pytest.approx(30.0 - 100.0)
    json.dumps(rows)

    bad = {"latency": 20e-3, "energy": 1e-3, "area": 5.0, "fps": 50.0}  # plain keys work too
    rows = cs.check(bad)
    assert [r["satisfied"] for r in rows] == [False, True, True, False] and not cs.all_satisfied(bad)
    assert all((r["g"] <= 0) == r["satisfied"] for r in rows)
    assert rows[0]["normalized_g"] == pytest.approx(20 / 16.6 - 1)
    with pytest.raises(ConfigError, match="no value for 'energy'"):
        cs.check({"latency_s": 1e-3, "area_mm2": 1.0})
    assert ConstraintSet().all_satisfied({})


def test_format_quantity_picks_readable_units():
    assert format_quantity("latency", 0.00083) == "0.83 ms"
    assert format_quantity("latency", 3.2e-5) == "32 us"
    assert format_quantity("energy", 2e-3) == "2 mJ"
    assert format_quantity("energy", 4.5e-7) == "0.45 uJ"
    assert format_quantity("energy", 4.5e-8) == "45 nJ"
    assert format_quantity("latency", 2.5) == "2.5 s"
    assert format_quantity("area", 4) == "4 mm^2"
    assert format_quantity("fps", 60) == "60 fps"


# ---- feasibility on a real cost table --------------------------------------------------------------
@pytest.fixture(scope="module")
def table():
    return CostTable(get_search_space("tiny-mnist"), get_hardware_space("small"))


@pytest.fixture(scope="module")
def all_encodings(table):
    """Every architecture of tiny-mnist (10,000) as one-hot rows."""
    sp = table.space
    rows = []
    for combo in itertools.product(*[range(n) for n in sp.num_candidates]):
        v = np.zeros(sp.encoding_size)
        v[np.asarray(sp.offsets[:-1]) + np.asarray(combo)] = 1.0
        rows.append(v)
    return np.asarray(rows)


_NUM_UNIT = re.compile(r"([0-9.]+(?:e[+-]?\d+)?) ?(ms|us|ns|s|mJ|uJ|nJ|pJ|J|mm\^2|fps)\b")


def _numbers_si(msg):
    """Every '<number> <unit>' in a message, converted to SI."""
    out = []
    for num, unit in _NUM_UNIT.findall(msg):
        u = unit.lower()
        factor = next(t[u] for t in UNITS.values() if u in t)
        out.append(float(num) * factor)
    return out


def _mentions(msg, value, rel=2e-3):
    return any(abs(v - value) <= rel * abs(value) for v in _numbers_si(msg))


@pytest.mark.parametrize("metric", ["latency", "fps", "energy", "area"])
def test_too_tight_raises_with_both_numbers(table, metric):
    least = table.least(metric)[0]
    bound = least * (2.0 if metric == "fps" else 0.5)
    c = Constraint(metric, ">=" if metric == "fps" else "<=", bound)
    with pytest.raises(InfeasibleConstraintError) as e:
        check_feasible([c], table)
    msg = str(e.value)
    assert isinstance(e.value, ConfigError) and "unreachable" in msg and metric in msg
    assert _mentions(msg, bound) and _mentions(msg, least), msg


def test_several_unreachable_constraints_are_all_reported(table):
    lat, en = table.least("latency")[0], table.least("energy")[0]
    with pytest.raises(InfeasibleConstraintError) as e:
        check_feasible([Constraint("latency", "<=", lat / 3), Constraint("energy", "<=", en / 3)], table)
    assert "latency" in str(e.value) and "energy" in str(e.value)


def test_message_reads_well(table):
    least = table.least("latency")[0]  # 38.6 us on tiny-mnist x small
    with pytest.raises(InfeasibleConstraintError,
                       match=r"^latency <= 20 us is unreachable: the fastest design in this space takes 38\.6\d* us"):
        check_feasible(["latency <= 20us"], table)
    assert least == pytest.approx(38.6e-6, rel=1e-2)


def test_loose_constraints_pass_with_a_witness(table):
    cs = ConstraintSet(["latency <= 1ms", "fps >= 100", "energy <= 1mJ", "area <= 4mm2"])
    rep = check_feasible(cs, table)
    assert rep["proven"] and rep["witness"] is not None
    w = rep["witness"]
    assert cs.all_satisfied(w)
    lat, en, area = table.metrics(table.space.encode(w["architecture"]), np.array([w["accelerator"]]))
    assert (w["latency_s"], w["energy_j"], w["area_mm2"]) == (pytest.approx(lat[0]), pytest.approx(en[0]),
                                                              pytest.approx(area[0]))
    json.dumps(rep)
    assert check_feasible([], table)["proven"]


def test_least_values_match_brute_force(table, all_encodings):
    rep = check_feasible(["latency <= 1s", "fps >= 1", "energy <= 1J", "area <= 100mm2"], table)
    lat, en, area = table.metrics(all_encodings)
    brute = {"latency": lat.min(), "fps": 1.0 / lat.min(), "energy": en.min(), "area": area.min()}
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = table.space.sample(rng)
        costs = table.sample_costs(s)
        assert rep["least"]["latency"]["value"] <= costs["latency_s"].min()
        assert rep["least"]["energy"]["value"] <= costs["energy_j"].min()
    for m, info in rep["least"].items():
        assert info["value"] == pytest.approx(brute[m], rel=1e-12), m
        c = table.sample_costs(info["architecture"])
        attained = {"latency": c["latency_s"], "fps": 1.0 / c["latency_s"], "energy": c["energy_j"],
                    "area": c["area_mm2"]}[m][info["accelerator"]]
        assert attained == pytest.approx(info["value"], rel=1e-12), m


def test_area_and_latency_are_checked_jointly(table):
    lat_all = table.fixed_latency + sum(table.cand_latency[lo:hi].min(0) for lo, hi in
                                        zip(table.space.offsets[:-1], table.space.offsets[1:]))  # [A]
    fastest = int(np.argmin(lat_all))
    area_b = float(np.sort(np.unique(table.area))[0])  # only the smallest accelerators
    small = table.area <= area_b
    assert not small[fastest], "fixture assumption: the fastest accelerator is not among the smallest"
    lat_small = float(lat_all[small].min())
    mid = 0.5 * (lat_all[fastest] + lat_small)  # reachable alone, not within the area
    check_feasible([Constraint("latency", "<=", mid)], table)
    check_feasible([Constraint("area", "<=", area_b)], table)
    with pytest.raises(InfeasibleConstraintError) as e:
        check_feasible([Constraint("latency", "<=", mid), Constraint("area", "<=", area_b)], table)
    msg = str(e.value)
    assert "area" in msg and _mentions(msg, mid) and _mentions(msg, lat_small), msg
    rep = check_feasible([Constraint("latency", "<=", lat_small * 1.01), Constraint("area", "<=", area_b)], table)
    w = rep["witness"]
    assert w["area_mm2"] <= area_b and w["latency_s"] <= lat_small * 1.01 and rep["method"] == "exact"
    assert rep["accelerators_within_area"] == int(small.sum())


@pytest.fixture(scope="module")
def anticorrelated(table, all_encodings):
    """The tiny-mnist table with synthetic costs where latency and energy trade off."""
    t = copy.copy(table)
    rng = np.random.default_rng(1)
    t.cand_latency = rng.uniform(1e-5, 3e-5, size=table.cand_latency.shape)
    t.cand_energy = 4e-5 - t.cand_latency + rng.uniform(0, 5e-6, size=table.cand_latency.shape)
    lat, en, area = t.metrics(all_encodings)
    return t, lat, en, area


def test_latency_and_energy_jointly_match_brute_force(anticorrelated):
    t, lat, en, area = anticorrelated
    fl, fe = lat.ravel(), en.ravel()
    order = np.lexsort((fe, fl))
    prev = np.concatenate([[np.inf], np.minimum.accumulate(fe[order])[:-1]])
    front = order[fe[order] < prev]
    assert len(front) > 20  # a real trade-off
    rng = np.random.default_rng(2)
    methods = set()
    for _ in range(40):
        i = rng.choice(front)
        T, E = fl[i] * rng.uniform(0.995, 1.005), fe[i] * rng.uniform(0.995, 1.005)
        A = float(rng.choice([np.inf, 2.5]))
        truth = bool(np.any((lat <= T) & (en <= E) & (area <= A)))
        cs = [Constraint("latency", "<=", T), Constraint("energy", "<=", E)]
        if np.isfinite(A):
            cs.append(Constraint("area", "<=", A))
        try:
            rep = check_feasible(cs, t)
        except InfeasibleConstraintError as e:
            assert not truth, (T, E, A)
            methods.add("infeasible")
            assert ("cannot be met together" in str(e) or "unreachable" in str(e)) and _mentions(str(e), E), str(e)
            continue
        assert truth, (T, E, A)
        w = rep["witness"]
        assert w["latency_s"] <= T * (1 + 1e-9) and w["energy_j"] <= E * (1 + 1e-9) and w["area_mm2"] <= A
        methods.add(rep["method"])
    assert {"pareto", "infeasible"} <= methods


def test_unproven_joint_feasibility_warns_and_does_not_raise(anticorrelated, caplog):
    t, lat, en, area = anticorrelated
    rng = np.random.default_rng(3)
    fl, fe = lat.ravel(), en.ravel()
    for _ in range(50):
        j = rng.integers(fl.size)
        cs = [Constraint("latency", "<=", fl[j] * 0.999), Constraint("energy", "<=", fe[j] * 1.001)]
        try:
            if check_feasible(cs, t)["method"] != "pareto":
                continue
        except InfeasibleConstraintError:
            continue
        with caplog.at_level(logging.WARNING, logger="coexplore.constraints"):
            rep = check_feasible(cs, t, max_front=1)
        if rep["method"] == "unproven":
            assert not rep["proven"] and rep["witness"] is None
            assert "not proven" in caplog.text
            return
    pytest.fail("no case exercised the unproven path")
