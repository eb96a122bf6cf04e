"""Latency lookup tables in the search: the table, its cache and checks, its cost, and steering by it."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from accelerators.measured import LatencyTable, MeasuredLatency
from coexplore.common import ConfigError
from coexplore.constraints import ConstraintSet
from coexplore.lut import (LatencyCostTable, LUTCost, additivity_check, build_latency_table, check_latency_only,
                           default_table_path, make_cost_table, measurement_units)
from coexplore.objectives import Objective
from coexplore.verify import Verifier
from search_spaces import get_search_space
from search_spaces.detection import DetectionSpace, DetectionSupernet, get_detection_space

FAST = dict(min_run_time=0.002, rounds=1, warmup=1)


def tiny_space() -> DetectionSpace:
    d = get_detection_space("det-mnist").to_dict()
    d.pop("reference")
    d.update(name="det-tiny", resolution=64, down=["conv3", "dw3"], candidates=["csp1", "mb3_e3", "skip"],
             stages=[{"channels": 128, "layers": 3, "first_candidates": ["csp1", "mb3_e3"]},
                     {"channels": 256, "layers": 3}, {"channels": 512, "layers": 3}],
             neck={"candidates": ["pan", "lite"], "depth": 3})
    return DetectionSpace.from_dict(d)


@pytest.fixture(scope="module")
def space():
    return tiny_space()


@pytest.fixture(scope="module")
def source():
    return MeasuredLatency(**FAST)


@pytest.fixture(scope="module")
def table(space, source):
    return LatencyCostTable(space, build_latency_table(space, source), source)


def _all(space):
    for combo in itertools.product(*[b.candidates for b in space.blocks]):
        yield dict(zip(space.labels, combo))


def test_table_answers_like_a_cost_table(space, table):
    t = table.latency_table
    assert table.num_accelerators == 1 and table.cand_latency.shape == (space.encoding_size, 1)
    # in encoding order; skip costs nothing; the fixed part is the stem and the head
    i = 0
    for b in space.blocks:
        for op in b.candidates:
            assert table.cand_latency[i, 0] == (0.0 if op == "skip" else t.entries[(b.label, op)].median_s)
            i += 1
    assert set(t.fixed) == {"stem", "head"} and table.fixed_latency[0] == pytest.approx(t.fixed_s)
    s = space.sample(0)
    lat, en, area = table.metrics(space.encode(s))
    exp = t.fixed_s + sum(t.latency(b, s[b]) for b in space.labels)
    assert lat[0, 0] == pytest.approx(exp) and np.isnan(en).all() and np.isnan(area).all()


def test_least_latency_is_exact(space, table):
    value, arch, acc = table.least("latency")
    brute = min(float(table.metrics(space.encode(s))[0][0, 0]) for s in _all(space))
    assert value == pytest.approx(brute) and acc == 0
    assert float(table.metrics(space.encode(arch))[0][0, 0]) == pytest.approx(brute)
    with pytest.raises(ConfigError, match="energy is unknown for a measured latency table"):
        table.least("energy")


def test_the_verifier_checks_designs_on_it(space, table):
    value, arch, _ = table.least("latency")
    cs = ConstraintSet.parse([f"latency <= {1e3 * value * 1.5:.6f}ms"])
    v = Verifier(table, Objective("latency"), cs).check(arch)
    assert v["feasible"] and v["accelerator"].device == "cpu" and np.isnan(v["metrics"]["energy_j"])
    assert v["metrics"]["latency_s"] == pytest.approx(value)
    slow = max(_all(space), key=lambda s: float(table.metrics(space.encode(s))[0][0, 0]))
    tight = Verifier(table, Objective("latency"), ConstraintSet.parse([f"latency <= {1e3 * value * 1.01:.6f}ms"]))
    assert not tight.check(slow)["feasible"]


@pytest.mark.parametrize("objective,constraints,match", [
    ("edap", [], r"objective 'edap' needs \['energy', 'area'\]"),
    ("energy", [], r"objective 'energy' needs \['energy'\]"),
    ({"weighted": {"latency": 1, "area": 1}}, [], r"needs \['area'\]"),
    ("latency", ["energy <= 1mJ"], r"constraint 'energy <= 1mJ' bounds energy, .* allowed constraint metrics: latency, fps"),
    ("latency", ["area <= 4mm2"], r"bounds area"),
])
def test_energy_and_area_are_refused_for_a_measured_table(objective, constraints, match):
    with pytest.raises(ConfigError, match=match) as exc:
        check_latency_only(Objective.parse(objective), ConstraintSet.parse(constraints))
    assert "\n" not in str(exc.value)
    check_latency_only(Objective("latency"), ConstraintSet.parse(["latency <= 2ms", "fps >= 30"]))
    check_latency_only(Objective.parse({"weighted": {"latency": 2.0}}))


def test_make_cost_table_caches_and_checks(tmp_path, space, source, monkeypatch):
    t1 = make_cost_table(space, None, source, Objective("latency"), cache_dir=tmp_path)
    path = default_table_path(space, source, tmp_path)
    assert path.is_file()
    monkeypatch.setattr(MeasuredLatency, "measure_all", lambda *a, **k: pytest.fail("measured again"))
    t2 = make_cost_table(space, None, source, Objective("latency"), cache_dir=tmp_path)
    assert np.array_equal(t1.cand_latency, t2.cand_latency)
    with pytest.raises(ConfigError, match="objective 'edap'"):
        make_cost_table(space, None, source, Objective("edap"), cache_dir=tmp_path)
    # an explicit table file: from another machine, or for another space, is refused
    d = json.loads(path.read_text())
    d["machine"]["cpu_model"] = "ARM Cortex-A76"
    other = tmp_path / "phone.json"
    other.write_text(json.dumps(d))
    explicit = MeasuredLatency(**FAST, table=other)
    with pytest.raises(ConfigError, match=r"phone.json: measured on another machine: machine.cpu_model is "
                                          r"'ARM Cortex-A76' there"):
        make_cost_table(space, None, explicit, Objective("latency"))
    with pytest.raises(ConfigError, match=r"measured for search space 'det-tiny' .* measure this space"):
        LatencyCostTable(DetectionSpace.from_dict({**space.to_dict(), "num_classes": 3}), t1.latency_table, source)


def test_a_stale_cache_is_measured_again(tmp_path, space, source):
    path = default_table_path(space, source, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    t = make_cost_table(space, None, source, Objective("latency"), cache_dir=tmp_path)
    assert LatencyTable.load(path) == t.latency_table


def test_additivity_check_reports_the_error(space, table):
    rep = additivity_check(space, table, [space.sample(i) for i in range(3)])
    assert len(rep["rows"]) == 3
    for r in rep["rows"]:
        assert r["measured_s"] > 0 and r["table_s"] == pytest.approx(float(table.metrics(space.encode(r["architecture"]))[0][0, 0]))
        assert r["rel_error"] == pytest.approx((r["table_s"] - r["measured_s"]) / r["measured_s"])
    assert rep["max_abs_rel_error"] >= rep["mean_abs_rel_error"] >= 0
    for r in rep["rows"]:  # the blocks measured again beside the networks
        assert r["fresh_s"] > 0 and r["drift"] == pytest.approx((r["table_s"] - r["fresh_s"]) / r["fresh_s"])
        assert r["rel_error_fresh"] == pytest.approx((r["fresh_s"] - r["measured_s"]) / r["measured_s"])
    assert rep["max_abs_rel_error_fresh"] >= rep["mean_abs_rel_error_fresh"] >= 0
    assert set(additivity_check(space, table, [space.sample(0)], remeasure_blocks=False)) == \
        {"rows", "mean_abs_rel_error", "max_abs_rel_error", "mean_rel_error"}


def test_classification_spaces_are_measured_too(source):
    sp = get_search_space("tiny-mnist")
    fixed, cands = measurement_units(sp)
    assert [n for n, _, _ in fixed] == ["stem", "head"]
    assert len(cands) == sum(op != "zero" for b in sp.blocks for op in b.candidates)
    t = LatencyCostTable(sp, build_latency_table(sp, source), source)
    assert t.cand_latency.shape == (sp.encoding_size, 1)


def test_lut_cost_is_the_differentiable_expected_latency(space, table):
    cost = LUTCost(table, Objective("latency"))
    assert cost.metrics == ("latency_s",)
    enc = torch.full((space.encoding_size,), 0.5, dtype=torch.float32, requires_grad=True)
    out = cost.raw(enc)
    expected = table.fixed_latency[0] + 0.5 * table.cand_latency[:, 0].sum()
    assert float(out["latency_s"].detach()) == pytest.approx(expected, rel=1e-6)
    out["objective"].backward()
    assert torch.allclose(enc.grad.double(), torch.as_tensor(table.cand_latency[:, 0]), rtol=1e-5)
    one = torch.as_tensor(space.encode(space.sample(1)))
    assert float(cost.raw(one)["latency_s"]) == pytest.approx(float(table.metrics(one.numpy())[0][0, 0]), rel=1e-6)
    with pytest.raises(ConfigError, match="objective 'edap'"):
        LUTCost(table, Objective("edap"))


def test_lut_methods_registered_and_build_their_cost(table):
    from coexplore.methods import get_method
    run = SimpleNamespace(table=table, objective=Objective("latency"), constraints=ConstraintSet.parse(["fps >= 30"]))
    for name in ("dance-lut", "hdx-lut"):
        m = get_method(name)
        assert not m.needs_evaluator and isinstance(m.hardware_cost(run), LUTCost)
    assert get_method("hdx-lut").needs_constraints
    bad = SimpleNamespace(table=table, objective=Objective("latency"), constraints=ConstraintSet.parse(["area <= 1mm2"]))
    with pytest.raises(ConfigError, match="bounds area"):
        get_method("hdx-lut").hardware_cost(bad)


def test_the_dance_loss_on_measured_latency_steers_a_detection_supernet(space, table):
    # DANCE's architecture step (task loss + lambda * LUT latency) through the search's own trainer.
    from coexplore.penalty import HardwarePenalty
    from coexplore.seeds import RunSeeds
    from coexplore.trainer import BilevelTrainer, TrainerSettings
    from search_spaces.detection.data import get_detection_data
    from search_spaces.detection.task import Detection

    data = get_detection_data("mnist-det", resolution=64, seed=0, batch_size=8, limit=16, augment=False)
    sn = DetectionSupernet(space, init_generator=torch.Generator().manual_seed(0))
    cost = LUTCost(table, Objective("latency"))
    cost.set_reference(sn.arch_encoding().detach())
    settings = TrainerSettings(epochs=3, warmup_epochs=0, steps_per_epoch=2, w_lr=0.01, w_momentum=0.9,
                               w_weight_decay=0.0, a_lr=0.1, a_weight_decay=0.0, hw_encoding="expected")
    trainer = BilevelTrainer(sn, data, settings, RunSeeds(0), torch.device("cpu"),
                             penalty=HardwarePenalty(cost, 50.0), task=Detection())
    before = float(cost.raw(sn.arch_encoding().detach())["latency_s"])
    for epoch in range(3):
        stats = trainer.run_epoch(epoch)
        assert stats["arch_steps"] == 2 and np.isfinite(stats["ce_arch"])
    after = float(cost.raw(sn.arch_encoding().detach())["latency_s"])
    assert after < before
