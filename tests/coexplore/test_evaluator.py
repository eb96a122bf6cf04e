"""Tests of the DANCE evaluator: data generation, training, differentiability, checkpoints."""

import json

import numpy as np
import pytest
import torch

from accelerators import ConfigError, evaluate, get_hardware_space
from coexplore.evaluator import Evaluator
from coexplore.constraints import ConstraintSet
from coexplore.evaluator_data import EvaluatorDataset, generate_dataset, random_soft_encodings
from coexplore.evaluator_train import TrainConfig, build_evaluator, score_evaluator
from coexplore.objectives import Objective
from coexplore.pricing import CostTable
from search_spaces import get_search_space


@pytest.fixture(scope="module")
def table():
    return CostTable(get_search_space("tiny-mnist"), get_hardware_space("small"))


@pytest.fixture(scope="module")
def built(table, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("ev") / "ev.pt"
    res = build_evaluator(table.space, table.hardware, "edap", out=out, num_arch=2000, pairs_per_arch=24,
                          cfg=TrainConfig(max_epochs_generator=25, max_epochs_estimator=5), cache_dir=cache,
                          progress=False, report_arch=600)
    return res, out


# ---------------------------------------------------------------------------------------
# the cost table and the data are the analytical model, exactly
# ---------------------------------------------------------------------------------------

def test_cost_table_equals_direct_pricing(table):
    accs = table.accelerators
    for seed in range(3):
        s = table.space.sample(seed)
        lat, en, area = table.metrics(table.space.encode(s))
        direct = evaluate(table.space.layers(s), accs)
        np.testing.assert_allclose(lat[0], direct.latency_total_s, rtol=1e-10)
        np.testing.assert_allclose(en[0], direct.energy_total_j, rtol=1e-10)
        np.testing.assert_allclose(area[0], direct.area_mm2, rtol=1e-12)


def test_soft_encoding_prices_the_expectation(table):
    rng = np.random.default_rng(0)
    p = random_soft_encodings(table.space, 1, rng)[0].astype(np.float64)
    for lo, hi in zip(table.space.offsets[:-1], table.space.offsets[1:]):
        assert p[lo:hi].sum() == pytest.approx(1.0, abs=1e-6)
    # expectation over architectures = mixture of one-hot prices
    lat_soft = table.metrics(p)[0][0]
    samples = [table.space.sample(int(i)) for i in rng.integers(0, 10**6, 4000)]
    w = np.array([np.prod([p[table.space.offsets[k] + b.candidates.index(s[b.label])]
                           for k, b in enumerate(table.space.blocks)]) for s in samples])
    # exact check instead of Monte Carlo: linearity in each block's one-hot
    enc = np.stack([table.space.encode(s) for s in samples])
    lat_each = table.metrics(enc)[0]
    assert np.all(lat_soft >= lat_each.min(0) - 1e-15) and np.all(lat_soft <= lat_each.max(0) + 1e-15)
    assert w.sum() > 0


def test_dataset_labels_are_the_true_argmin(table, tmp_path):
    ds = generate_dataset(table, Objective("edap"), num_arch=200, pairs_per_arch=8, cache_dir=tmp_path, progress=False)
    lat, en, area = table.metrics(ds.enc)
    best = np.argmin(lat * en * area, axis=1)
    np.testing.assert_array_equal(ds.best, best)
    np.testing.assert_array_equal(ds.best_params, table.hardware.index_grid()[best])
    # the pair labels are the analytical costs of those pairs
    np.testing.assert_allclose(ds.pair_latency, lat[ds.pair_arch, ds.pair_acc])
    np.testing.assert_allclose(ds.pair_energy, en[ds.pair_arch, ds.pair_acc])
    assert ds.soft.sum() == 100 and ds.num_pairs == 200 * 8
    # the best accelerator is always among the pairs
    assert np.all(ds.pair_acc.reshape(200, 8)[:, 0] == ds.best)


def test_dataset_cache_and_key(table, tmp_path, monkeypatch):
    a = generate_dataset(table, Objective("edap"), num_arch=100, pairs_per_arch=4, cache_dir=tmp_path, progress=False)
    files = list((tmp_path / "evaluator-data").glob("*.npz"))
    assert len(files) == 1
    import coexplore.evaluator_data as mod
    monkeypatch.setattr(mod, "random_onehot_encodings", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    b = generate_dataset(table, Objective("edap"), num_arch=100, pairs_per_arch=4, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(a.enc, b.enc)
    monkeypatch.undo()
    generate_dataset(table, Objective("latency"), num_arch=100, pairs_per_arch=4, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "evaluator-data").glob("*.npz"))) == 2  # the objective is part of the key


def test_dataset_rejects_bad_arguments(table, tmp_path):
    with pytest.raises(ConfigError, match="soft_fraction"):
        generate_dataset(table, Objective("edap"), num_arch=100, soft_fraction=2.0, cache_dir=tmp_path,
                         progress=False)
    with pytest.raises(TypeError, match="parse it at the boundary"):  # internal APIs take typed objects
        generate_dataset(table, "edap", num_arch=100, cache_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="unknown"):
        build_evaluator(table.space, table.hardware, "speed", num_arch=100, cache_dir=tmp_path, progress=False)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    with pytest.raises(ConfigError, match="not a readable evaluator dataset"):
        EvaluatorDataset.load(bad)


# ---------------------------------------------------------------------------------------
# the trained evaluator against the analytical model
# ---------------------------------------------------------------------------------------

def test_trained_evaluator_is_accurate(built):
    r = built[0]["report"]
    # the generator must beat always answering the most common label
    assert r["hw_generation_joint_accuracy_pct"] >= 95.0
    for lab, acc in r["hw_generation_accuracy_pct"].items():
        assert acc >= r["hw_generation_majority_baseline_pct"][lab] - 1.0, lab
    assert r["regret_median_pct"] <= 1.0
    for m in ("latency", "energy", "area"):
        assert r["cost_estimation_mape_pct"][m] < 5.0, m
        assert r["whole_evaluator_mape_pct"][m] < 5.0, m


def test_gradient_matches_finite_differences(built):
    ev = built[0]["evaluator"].double()
    try:
        rng = np.random.default_rng(1)
        x = torch.tensor(random_soft_encodings(ev_space(built), 1, rng)[0], dtype=torch.float64, requires_grad=True)
        f = lambda e: ev(e, mode="soft")["log"][1]  # log energy, smooth in soft mode
        f(x).backward()
        g = x.grad.clone()
        eps = 1e-5
        for i in rng.choice(x.numel(), 8, replace=False):
            e = torch.zeros_like(x)
            e[i] = eps
            with torch.no_grad():
                fd = (f(x + e) - f(x - e)) / (2 * eps)
            assert float(g[i]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)
    finally:
        ev.float()


def ev_space(built):
    return built[0]["table"].space


def test_gradient_flows_through_the_generated_hardware(built):
    ev = built[0]["evaluator"]
    x = torch.tensor(ev_space(built).encode(ev_space(built).sample(3)), requires_grad=True)
    out = ev(x, mode="argmax")
    g_full, = torch.autograd.grad(out["log"][0], x)
    # the same without the straight-through path through the hardware heads
    logits, feat = ev.generator(x.unsqueeze(0))
    hw = ev.relax(logits, "argmax").detach()
    g_nohw, = torch.autograd.grad(ev.estimate(x.unsqueeze(0), hw, feat)[0, 0], x)
    assert torch.all(torch.isfinite(g_full)) and float(g_full.norm()) > 0
    assert not torch.allclose(g_full, g_nohw)
    # straight-through Gumbel gives a gradient too, and is seeded
    gen = torch.Generator().manual_seed(0)
    out_g = ev(x, mode="gumbel", generator=gen)
    g_gumbel, = torch.autograd.grad(out_g["log"][0], x)
    assert float(g_gumbel.norm()) > 0


def test_direction_more_expensive_op_raises_latency(built):
    space = ev_space(built)
    ev = built[0]["evaluator"]
    b = space.blocks[1]
    lo = space.offsets[1]
    enc = torch.tensor(space.encode(space.sample(0)))
    cheap, costly = b.candidates.index("mb3_e3"), b.candidates.index("mb5_e6")
    enc[lo:lo + len(b.candidates)] = 0
    enc[lo + cheap] = 1.0
    lat_cheap = float(ev(enc)["latency_s"])
    enc[lo + cheap], enc[lo + costly] = 0.0, 1.0
    lat_costly = float(ev(enc)["latency_s"])
    assert lat_costly > lat_cheap
    # and the gradient points the same way: d latency / d p(costly) > d latency / d p(cheap)
    x = enc.clone().requires_grad_(True)
    ev(x, mode="soft")["latency_s"].backward()
    assert float(x.grad[lo + costly]) > float(x.grad[lo + cheap])


def test_checkpoint_roundtrip_and_mismatch(built, table, tmp_path):
    res, path = built
    ev2 = Evaluator.load(path, expect=table.key())
    x = torch.tensor(table.space.encode(table.space.sample(5)))
    a, b = res["evaluator"](x), ev2(x)
    for k in ("latency_s", "energy_j", "area_mm2"):
        assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-6)
    with pytest.raises(ConfigError, match="trained for search_space"):
        Evaluator.load(path, expect={**table.key(), "search_space": "0" * 16})
    with pytest.raises(ConfigError, match="trained for cost_source"):
        Evaluator.load(path, expect={**table.key(), "cost_source": "0" * 16})
    with pytest.raises(ConfigError, match="does not record its"):
        Evaluator.load(path, expect={**table.key(), "something_new": "x"})
    with pytest.raises(ConfigError, match="no such evaluator checkpoint"):
        Evaluator.load(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('code ran')",))


def test_loading_never_executes_code(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": _Evil()}, p)
    with pytest.raises(ConfigError, match="not a loadable evaluator checkpoint"):
        Evaluator.load(p)


def test_score_is_against_the_analytical_model(built, table):
    ev = built[0]["evaluator"]
    rng = np.random.default_rng(5)
    enc = np.stack([table.space.encode(table.space.sample(int(i))) for i in rng.integers(0, 10**6, 50)])
    r = score_evaluator(ev, table, enc, Objective("edap"))
    assert r["num_arch"] == 50 and set(r["whole_evaluator_mape_pct"]) == {"latency", "energy", "area"}


def test_cli_evaluator_build_and_report(tmp_path, capsys):
    from coexplore.cli import main
    out = tmp_path / "ev.pt"
    rc = main(["--quiet", "evaluator", "build", "--space", "tiny-mnist", "--hardware", "small", "--out", str(out),
               "--num-arch", "300", "--epochs-generator", "3", "--epochs-estimator", "1", "--report-arch", "100",
               "--cache-dir", str(tmp_path), "--format", "json"])
    assert rc == 0 and out.is_file()
    rep = json.loads((out.with_suffix(".report.json")).read_text())
    assert "regret_median_pct" in rep and out.with_suffix(".report.md").is_file()
    capsys.readouterr()
    rc = main(["evaluator", "report", str(out), "--num-arch", "100", "--format", "json"])
    assert rc == 0
    assert "hw_generation_accuracy_pct" in json.loads(capsys.readouterr().out)
    rc = main(["evaluator", "build", "--out", str(tmp_path / "x.bin")])
    assert rc == 2


def test_constrained_labels_meet_the_constraint(table, tmp_path):
    # HDX's generator learns the hardware its refinement will choose: the best one that meets
    # the constraints (the least-violating one where none does)
    ds = generate_dataset(table, Objective("edap"), num_arch=300, pairs_per_arch=4, cache_dir=tmp_path, progress=False,
                          constraints=ConstraintSet.parse(["latency <= 0.06ms"]))
    lat, en, area = table.metrics(ds.enc)
    rows = np.arange(ds.num_arch)
    chosen = lat[rows, ds.best]
    feasible_any = (lat <= 0.06e-3).any(axis=1)
    assert np.all(chosen[feasible_any] <= 0.06e-3)
    assert np.allclose(chosen[~feasible_any], lat[~feasible_any].min(axis=1))
    edap = lat * en * area
    ok = np.where(lat <= 0.06e-3, edap, np.inf)
    np.testing.assert_array_equal(ds.best[feasible_any], ok.argmin(axis=1)[feasible_any])
    assert ds.meta["constraints"] == ["latency <= 0.06ms"]
    unconstrained = generate_dataset(table, Objective("edap"), num_arch=300, pairs_per_arch=4, cache_dir=tmp_path,
                                     progress=False)
    assert not np.array_equal(unconstrained.best, ds.best)
