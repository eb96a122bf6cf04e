"""Tests of the parts of the search loop, each written to fail when the part's key step is
removed: HDX's gradient manipulation in the architecture step, the per-epoch calibration,
``hw_encoding: argmax``, the repair's choice of move, BatchNorm recalibration, ``repair:
false``; plus the method registry, explicit random streams and the run-folder contract.
"""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coexplore.common import ConfigError
from coexplore.config import load_config
from coexplore.methods import METHODS, HDX, Method, get_method, register_method
from coexplore.runfolder import Result, read_result
from coexplore.search import CoExplorer, run_search

TINY = ["search_space=tiny-mnist", "hardware_space=small", "data.limit=192", "data.batch_size=32",
        "steps_per_epoch=3", "warmup_epochs=1", "search_epochs=2", "progress=false",
        "evaluator.num_arch=300", "evaluator.pairs_per_arch=8", "evaluator.epochs_generator=3",
        "evaluator.epochs_estimator=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def cfg(*extra):
    return load_config(None, TINY + list(extra))


# ---------------------------------------------------------------------------------------
# HDX's manipulation is applied in the architecture step
# ---------------------------------------------------------------------------------------

def test_hdx_step_applies_the_manipulated_gradient(tmp_path, cache):
    # darts mode: the forward pass is deterministic, so the plain gradient can be recomputed
    ex = CoExplorer(cfg("method=hdx", "lam=0.0", "path_mode=darts", "constraints=[latency <= 0.042ms]"),
                    tmp_path / "r", cache_dir=cache)
    tr = ex.trainer
    ex.targets.scales = [1e-3]  # a target far below the surrogate: every step is violated
    captured = {}
    real_step = tr.a_opt.step

    def spy():
        captured["params"] = [p.detach().clone() for p in ex.supernet.arch_parameters()]
        captured["applied"] = torch.cat([p.grad.detach().reshape(-1).clone() for p in ex.supernet.arch_parameters()])
        return real_step()

    tr.a_opt.step = spy
    xv, yv = next(iter(ex.data.val))
    tr._arch_step(xv, yv, {"ce_arch": 0.0, "cost_loss": 0.0, "arch_steps": 0}, 1, 0)
    # the plain gradient and the constraint gradient at the same parameters, recomputed
    net = copy.deepcopy(ex.supernet)
    with torch.no_grad():
        for p, v in zip(net.arch_parameters(), captured["params"]):
            p.copy_(v)
    params = net.arch_parameters()
    net.train()
    g = torch.autograd.grad(F.cross_entropy(net(xv), yv), params, allow_unused=True)
    g = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params)])
    out = tr.penalty.cost.evaluator(net.arch_encoding(), mode="argmax")
    gt = torch.autograd.grad(out["latency_s"] / ex.constraints[0].target_bound, params)
    gt = torch.cat([x.reshape(-1) for x in gt])
    applied = captured["applied"]
    m = applied - g
    assert float(m.norm()) > 1e-6 * float(g.norm() + gt.norm())  # a correction was applied ...
    cos = float(m @ gt) / float(m.norm() * gt.norm())
    assert cos == pytest.approx(1.0, abs=1e-4)  # ... along +grad t (m = alpha grad t, alpha > 0)
    kappa0 = ex.cfg.hdx.kappa0
    delta = kappa0 * float(g.norm()) * float(gt.norm())
    assert float(applied @ gt) >= delta * (1 - 1e-4)  # the margin of descent along grad t holds


class _HDXWithoutSteering(HDX):
    def steering(self, run):
        return None


def test_without_the_manipulation_hdx_steers_the_surrogate_less(tmp_path, cache):
    register_method("hdx-nosteer-test")(_HDXWithoutSteering)
    try:
        args = ["lam=0.0", "path_mode=darts", "a_lr=0.05", "constraints=[latency <= 0.042ms]", "hdx.calibrate=false",
                "search_epochs=3", "repair=false"]
        with_ = CoExplorer(cfg("method=hdx", *args), tmp_path / "a", cache_dir=cache)
        without = CoExplorer(cfg("method=hdx-nosteer-test", *args), tmp_path / "b", cache_dir=cache)
        for ex in (with_, without):
            while ex.epoch < ex.total_epochs:
                ex.run_epoch()
        lat_with = with_.rows[-1]["surrogate_latency_s"]
        lat_without = without.rows[-1]["surrogate_latency_s"]
        assert with_.rows[0]["surrogate_latency_s"] == pytest.approx(without.rows[0]["surrogate_latency_s"])
        assert lat_with < lat_without * 0.99
    finally:
        METHODS.unregister("hdx-nosteer-test")


# ---------------------------------------------------------------------------------------
# calibration is a step of the loop
# ---------------------------------------------------------------------------------------

def test_calibration_runs_every_epoch_and_moves_the_target(tmp_path, cache):
    ex = CoExplorer(cfg("method=hdx", "lam=0.0", "constraints=[latency <= 0.06ms]"), tmp_path / "r", cache_dir=cache)
    assert ex.calibrator is not None
    ex.run_epoch()
    row = ex.rows[-1]
    expect = float(np.clip(row["surrogate_latency_s"] / row["argmax_latency_s"], 0.25, 4.0))
    assert ex.targets.scales[0] == pytest.approx(expect)
    assert expect != pytest.approx(1.0)  # the surrogate and the exact check disagree here
    assert row["scale_latency"] == 1.0 and row["margin_latency"] == 0.0  # the values this epoch used
    ex.run_epoch()
    assert ex.rows[-1]["scale_latency"] == pytest.approx(expect)


def test_calibration_off_leaves_the_target(tmp_path, cache):
    ex = CoExplorer(cfg("method=hdx", "lam=0.0", "constraints=[latency <= 0.06ms]", "hdx.calibrate=false"),
                    tmp_path / "r", cache_dir=cache)
    assert ex.calibrator is None
    ex.run_epoch()
    assert ex.targets.scales == [1.0] and ex.targets.margins == [0.0]


def test_calibrator_margin_follows_the_analytical_check():
    from coexplore.calibrate import Calibrator
    from coexplore.constraints import ConstraintSet
    from coexplore.penalty import ConstraintTargets
    t = ConstraintTargets(ConstraintSet.parse(["latency <= 1ms"]))
    c = Calibrator(t, step=0.1)
    logs = c.update({"latency_s": 0.5e-3}, {"latency_s": 2e-3}, [{"satisfied": False}])
    assert t.scales[0] == 0.25 and t.margins[0] == pytest.approx(0.1)  # surrogate inside, check outside
    assert logs["surrogate_g_latency"] == pytest.approx(0.5e-3 - 1e-3)
    # the surrogate sees the violation too: the gradient push alone did not suffice, aim further in
    c.update({"latency_s": 1.2e-3}, {"latency_s": 1.2e-3}, [{"satisfied": False}])
    assert t.margins[0] == pytest.approx(0.2) and t.scales[0] == pytest.approx(1.0)
    # met, near its target or far inside: the margin stays (it never relaxes)
    c.update({"latency_s": 0.75e-3}, {"latency_s": 0.75e-3}, [{"satisfied": True}])
    c.update({"latency_s": 0.1e-3}, {"latency_s": 0.1e-3}, [{"satisfied": True}])
    assert t.margins[0] == pytest.approx(0.2)
    # during the warm-up the architecture is not steered: scales move, margins do not
    c.update({"latency_s": 3e-3}, {"latency_s": 1.5e-3}, [{"satisfied": False}], margins=False)
    assert t.margins[0] == pytest.approx(0.2) and t.scales[0] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------
# hw_encoding: argmax is what the hardware cost sees
# ---------------------------------------------------------------------------------------

def test_argmax_encoding_is_one_hot_with_softmax_gradients(tmp_path, cache):
    ex = CoExplorer(cfg("method=dance", "hw_encoding=argmax"), tmp_path / "r", cache_dir=cache)
    with torch.no_grad():
        for p in ex.supernet.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    enc = ex.trainer.hw_encoding()
    probs = ex.supernet.arch_encoding()
    for lo, hi in zip(ex.space.offsets[:-1], ex.space.offsets[1:]):
        block = enc[lo:hi].detach()
        assert sorted(block.tolist()) == [0.0] * (hi - lo - 1) + [1.0]
        assert int(block.argmax()) == int(probs[lo:hi].argmax())
    w = torch.arange(enc.numel(), dtype=enc.dtype)
    ga = torch.autograd.grad(enc @ w, ex.supernet.arch_parameters())
    gs = torch.autograd.grad(probs @ w, ex.supernet.arch_parameters())
    for a, b in zip(ga, gs):
        torch.testing.assert_close(a, b)


def test_the_loop_feeds_the_cost_the_configured_encoding(tmp_path, cache):
    for mode in ("argmax", "expected"):
        ex = CoExplorer(cfg("method=dance", f"hw_encoding={mode}", "search_epochs=1"), tmp_path / mode, cache_dir=cache)
        seen = []
        cost = ex.trainer.penalty.cost
        real = cost.forward

        def spy(enc, real=real):
            seen.append(enc.detach().clone())
            return real(enc)

        cost.forward = spy
        while ex.epoch < ex.total_epochs:
            ex.run_epoch()
        assert seen, "the architecture step never priced an encoding"
        onehot = [bool(torch.all((e == 0) | (e == 1))) for e in seen]
        assert all(onehot) if mode == "argmax" else not any(onehot)


# ---------------------------------------------------------------------------------------
# the repair takes the best move
# ---------------------------------------------------------------------------------------

def test_repair_takes_the_move_with_the_best_gain_per_log_probability(tmp_path, cache):
    from coexplore.verify import Verifier
    ex = CoExplorer(cfg("method=nas-hw", "constraints=[latency <= 0.045ms]"), tmp_path / "r", cache_dir=cache)
    v: Verifier = ex.verifier
    space = ex.space
    start = {b.label: b.candidates[0] if b.label != "s0.b0" else "mb5_e6" for b in space.blocks}
    start = {b.label: ("mb5_e6" if "mb5_e6" in b.candidates else b.candidates[0]) for b in space.blocks}
    rng = np.random.default_rng(0)
    logp = {b.label: np.log(rng.dirichlet(np.ones(len(b.candidates)))) for b in space.blocks}
    assert v.violation(start).min() > 0
    fixed, check, moves = v.repair(start, logp)
    assert check["feasible"] and moves
    # replay: every move is the argmax of gain / log-probability lost among all single changes
    cur = dict(start)
    for mv in moves:
        cur_v = v.violation(cur).min()
        best, best_score = None, -np.inf
        for b in space.blocks:
            i_now = b.candidates.index(cur[b.label])
            for j, op in enumerate(b.candidates):
                if j == i_now:
                    continue
                gain = cur_v - v.violation({**cur, b.label: op}).min()
                if gain <= 1e-12:
                    continue
                score = gain / max(1e-6, logp[b.label][i_now] - logp[b.label][j])
                if score > best_score:
                    best, best_score = (b.label, op), score
        assert (mv["block"], mv["to"]) == best
        cur[mv["block"]] = mv["to"]
    assert cur == fixed


def test_repair_false_is_honoured_by_every_method(tmp_path, cache):
    for method in ("hdx", "dance", "nas-hw"):
        ex = CoExplorer(cfg(f"method={method}", "constraints=[latency <= 0.045ms]", "repair=false"),
                        tmp_path / method, cache_dir=cache)
        ex.epoch = ex.total_epochs  # no training needed: the design is forced below
        with torch.no_grad():  # the most expensive architecture: it violates the bound
            for b, p in zip(ex.space.blocks, ex.supernet.arch_parameters()):
                p.zero_()
                p[b.candidates.index("mb5_e6" if "mb5_e6" in b.candidates else b.candidates[-1])] = 5.0

        def no_repair(*a, **k):
            raise AssertionError("repair ran although repair=false")

        ex.verifier.repair = no_repair
        res = ex.run()
        assert res.status == "constraints-violated" and res.repairs == [] and not res.all_constraints_met


def test_repair_true_fixes_the_same_design(tmp_path, cache):
    ex = CoExplorer(cfg("method=hdx", "constraints=[latency <= 0.045ms]", "repair=true"), tmp_path / "r",
                    cache_dir=cache)
    ex.epoch = ex.total_epochs
    with torch.no_grad():
        for b, p in zip(ex.space.blocks, ex.supernet.arch_parameters()):
            p.zero_()
            p[b.candidates.index("mb5_e6" if "mb5_e6" in b.candidates else b.candidates[-1])] = 5.0
    res = ex.run()
    assert res.status == "ok" and res.repairs and res.all_constraints_met


# ---------------------------------------------------------------------------------------
# BatchNorm recalibration
# ---------------------------------------------------------------------------------------

def test_inherited_accuracy_recalibrates_batchnorm(tmp_path, cache):
    from search_spaces import evaluate_network
    ex = CoExplorer(cfg("method=dance", "search_epochs=1"), tmp_path / "r", cache_dir=cache)
    while ex.epoch < ex.total_epochs:
        ex.run_epoch()
    sample = ex.space.sample(np.random.default_rng(7))
    got = ex.evaluate_architecture(sample)
    # independently: the architecture's modules, fresh BN statistics from the calibration batches
    net = ex.supernet.freeze(sample)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    ex.data.train.set_epoch(ex.epoch)
    with torch.no_grad():
        for i, (x, _) in enumerate(ex.data.train):
            if i >= ex.bn_batches:
                break
            net(x)
    want = evaluate_network(net, ex.data.val)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5) and got["accuracy"] == want["accuracy"]
    # and the supernet's own (mixed) statistics give another answer
    with ex.supernet.fixed(sample):
        mixed = evaluate_network(ex.supernet, ex.data.val)
    assert mixed["loss"] != pytest.approx(want["loss"], rel=1e-5)


# ---------------------------------------------------------------------------------------
# registry, random streams, results
# ---------------------------------------------------------------------------------------

def test_methods_are_registered_with_their_needs():
    assert {"dance", "hdx", "nas-hw", "random", "evolution"} <= set(METHODS.names())
    assert get_method("hdx").needs_constraints and get_method("hdx").needs_evaluator
    assert not get_method("random").trains_architecture
    with pytest.raises(ConfigError, match="unknown method 'magic'"):
        get_method("magic")


def test_a_user_method_runs_through_the_same_loop(tmp_path, cache):
    @register_method("macs-only-test")
    class MacsOnly(Method):
        description = "test"

        def hardware_cost(self, run):
            from coexplore.penalty import MacsCost
            return MacsCost.for_space(run.space)

    try:
        res = run_search(cfg("method=macs-only-test", "lam=1.0"), tmp_path / "u", cache_dir=cache)
        assert res.method == "macs-only-test" and res.status == "ok"
        assert read_result(tmp_path / "u").architecture == res.architecture
    finally:
        METHODS.unregister("macs-only-test")


def test_same_result_with_a_cold_and_a_warm_evaluator_cache(tmp_path):
    c = cfg("method=hdx", "constraints=[latency <= 0.06ms]", "path_mode=gumbel", "lam=0.1")
    cold = run_search(c, tmp_path / "cold", cache_dir=tmp_path / "cache").to_dict()
    assert list((tmp_path / "cache" / "evaluators").glob("*.pt"))
    warm = run_search(c, tmp_path / "warm", cache_dir=tmp_path / "cache").to_dict()
    for r in (cold, warm):
        r.pop("seconds")
    assert cold == warm


def test_the_global_random_streams_are_left_alone(tmp_path, cache):
    import random
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    run_search(cfg("method=dance", "search_epochs=1"), tmp_path / "r", cache_dir=cache)
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_a_python_defined_search_space_runs_without_registering(tmp_path, cache):
    from search_spaces import Head, SearchSpace, Stage, Stem
    space = SearchSpace(stem=Stem(8, 3, 2), stages=(Stage(8, 1, 1), Stage(16, 2, 1, first_candidates=("mb3_e3",))),
                        head=Head(32), candidates=("mb3_e3", "zero"), resolution=28, input_channels=1,
                        num_classes=10, name="inline-test")
    c = load_config(None, [t for t in TINY if not t.startswith("search_space")] + ["method=nas-hw"])
    c = c.replace(search_space=space)
    res = run_search(c, tmp_path / "py", cache_dir=cache)
    assert res.search_space == "inline-test"
    saved = load_config(tmp_path / "py" / "config.yaml")  # written inline, loads back
    assert saved.resolve_search_space().fingerprint() == space.fingerprint()


def test_result_record_validates_on_write_and_read(tmp_path):
    base = dict(method="dance", name="x", seed=0, search_space="s", hardware_space="h", objective="edap", lam=1.0)
    with pytest.raises(ConfigError, match="status must be one of"):
        Result(**base, status="fine")
    with pytest.raises(ConfigError, match="architecture must be a non-empty object"):
        Result(**base, status="ok", all_constraints_met=True)
    with pytest.raises(ConfigError, match="null for a diverged run"):
        Result(**base, status="diverged", architecture={"a": "b"}, accelerator={"x": 1})
    with pytest.raises(ConfigError, match="true when status is 'ok'"):
        Result(**base, status="ok", architecture={"a": "b"}, accelerator={"x": 1}, all_constraints_met=False)
    r = Result(**base, status="diverged", message="epoch 1: loss nan")
    (tmp_path / "result.json").write_text(json.dumps(r.to_dict()))
    assert read_result(tmp_path) == r and r.exit_code == 4
    d = r.to_dict()
    d["bogus"] = 1
    (tmp_path / "result.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['bogus'\]"):
        read_result(tmp_path)


def test_tensorboard_scalars_beside_the_csv(tmp_path, cache):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    res = run_search(cfg("method=dance", "tensorboard=true"), tmp_path / "r", cache_dir=cache)
    assert res.status == "ok"
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "step/train_loss" in tags and "epoch/val_acc" in tags
    assert len(acc.Scalars("step/train_loss")) == 3 * 3  # 3 epochs x 3 steps
    assert [e.step for e in acc.Scalars("epoch/val_acc")] == [1, 2, 3]


# ---------------------------------------------------------------------------------------
# the exact cost source, and the interplay of architecture and hardware
# ---------------------------------------------------------------------------------------

def test_exact_table_cost_is_what_the_verifier_measures(tmp_path, cache):
    from coexplore.constraints import ConstraintSet
    from coexplore.penalty import ExactTableCost
    ex = CoExplorer(cfg("method=hdx", "surrogate=exact", "constraints=[latency <= 0.06ms]"), tmp_path / "r",
                    cache_dir=cache)
    cost = ex.trainer.penalty.cost
    assert isinstance(cost, ExactTableCost) and not ex.has_evaluator
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample = ex.space.sample(rng)
        enc = torch.tensor(ex.space.encode(sample), requires_grad=True)
        out = cost.raw(enc)
        v = ex.verifier.check(sample)
        assert cost.last_choice == v["accelerator_index"]
        assert float(out["latency_s"]) == pytest.approx(v["metrics"]["latency_s"], rel=1e-5)
        assert float(out["energy_j"]) == pytest.approx(v["metrics"]["energy_j"], rel=1e-5)
        (g,) = torch.autograd.grad(out["latency_s"], enc)
        np.testing.assert_allclose(g.numpy(), ex.table.cand_latency[:, v["accelerator_index"]], rtol=1e-5)


def test_an_exact_surrogate_run_builds_no_evaluator(tmp_path):
    res = run_search(cfg("method=hdx", "surrogate=exact", "constraints=[latency <= 0.08ms]"), tmp_path / "r",
                     cache_dir=tmp_path / "cache")
    assert res.status in ("ok", "constraints-violated") and res.generated_accelerator is None
    assert not (tmp_path / "cache" / "evaluators").exists()


def test_interplay_counts_the_winners(tmp_path, capsys):
    from accelerators import get_hardware_space
    from coexplore.cli import main
    from coexplore.constraints import ConstraintSet, constrained_argmin
    from coexplore.evaluator_data import random_onehot_encodings
    from coexplore.interplay import interplay
    from coexplore.objectives import Objective
    from coexplore.pricing import CostTable
    from search_spaces import get_search_space
    table = CostTable(get_search_space("tiny-mnist"), get_hardware_space("small"))
    cons = ConstraintSet.parse(["latency <= 0.07ms"])
    rep = interplay(table, Objective("edap"), cons, n=400, seed=3)
    enc = random_onehot_encodings(table.space, 400, np.random.default_rng(3))
    lat, en, area = table.metrics(enc)
    best, _ = constrained_argmin(lat * en * area, cons.violation(lat, en, area))
    assert rep["distinct_best_accelerators"] == len(np.unique(best))
    assert rep["top_share_pct"] == pytest.approx(100 * np.bincount(best).max() / 400)
    assert rep["best_single_accelerator"]["median_pct"] >= 0
    assert main(["--format", "json", "interplay", "--space", "tiny-mnist", "--hardware", "small", "--num-arch", "400",
                 "--seed", "3", "--constraint", "latency <= 0.07ms"]) == 0
    assert json.loads(capsys.readouterr().out)["distinct_best_accelerators"] == rep["distinct_best_accelerators"]


def _nhwc_strides(w):
    """Whether ``w`` ([N, C, H, W]) is laid out channels-last, by its exact strides."""
    _, c, h, k = w.shape
    return w.stride() == (c * h * k, 1, k * c, c)


def test_the_supernet_trains_in_the_configured_layout(tmp_path, cache):
    def layouts(ex):
        return {_nhwc_strides(m.weight) for m in ex.supernet.modules() if isinstance(m, torch.nn.Conv2d)}

    assert layouts(CoExplorer(cfg("method=dance"), tmp_path / "a", cache_dir=cache)) == {True}  # the default
    assert layouts(CoExplorer(cfg("method=dance", "memory_format=contiguous"), tmp_path / "b",
                              cache_dir=cache)) == {False}


@pytest.mark.parametrize("amp,dtype", [("bf16", torch.bfloat16), ("auto", torch.float32)])  # auto: float32 on CPU
def test_both_steps_of_a_search_run_in_the_configured_precision(tmp_path, cache, amp, dtype):
    ex = CoExplorer(cfg("method=dance", f"amp={amp}", "warmup_epochs=0"), tmp_path / "r", cache_dir=cache)
    assert ex.data.train.pin_memory is False  # page-locked batches only on CUDA
    convs = [m for m in ex.supernet.modules() if isinstance(m, torch.nn.Conv2d)]
    seen = {"weight": set(), "arch": set()}
    step = {"now": "weight"}
    arch_step = ex.trainer._arch_step

    def spy(*a, **k):  # tag the forwards of the architecture step
        step["now"] = "arch"
        try:
            return arch_step(*a, **k)
        finally:
            step["now"] = "weight"
    ex.trainer._arch_step = spy
    for m in convs:
        m.register_forward_hook(lambda mod, inp, out: seen[step["now"]].add(out.dtype))
    stats = ex.trainer.run_epoch(0)
    assert stats["arch_steps"] == ex.steps_per_epoch > 0
    assert seen == {"weight": {dtype}, "arch": {dtype}}
    assert all(p.dtype == torch.float32 for p in ex.supernet.parameters())
    assert np.isfinite(stats["train_loss"]) and np.isfinite(stats["cost_loss"])
