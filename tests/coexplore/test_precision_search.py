"""Mixed-precision spaces through the co-exploration's parts: the cost table, the baselines'
genes, the feasibility check, the penalties and the QAT retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accelerators import get_hardware_space
from coexplore import baselines
from coexplore.constraints import Constraint, ConstraintSet, check_feasible
from coexplore.pricing import CostTable
from search_spaces import Supernet, get_data, get_search_space


@pytest.fixture(scope="module")
def mp_table():
    return CostTable(get_search_space("tiny-mnist-mp"), get_hardware_space("small"))


def test_cost_table_prices_each_sample_exactly(mp_table):
    sp = mp_table.space
    assert mp_table.cand_latency.shape[0] == sum(len(b.candidates) * len(b.wbits) * len(b.abits) for b in sp.blocks)
    for seed in range(4):
        s = sp.sample(seed)
        costs = mp_table.model.evaluate(sp.layers(s), mp_table.accelerators)
        lat, en, _ = mp_table.metrics(sp.encode(s))
        np.testing.assert_allclose(lat[0], costs.latency_s.sum(1), rtol=1e-9)
        np.testing.assert_allclose(en[0], costs.energy_j.sum(1), rtol=1e-9)


def test_least_latency_and_witness_are_mixed_precision_samples(mp_table):
    value, arch, a = mp_table.least("latency")
    sp = mp_table.space
    assert sp.check_sample(arch) == arch and "s0.b0.wbits" in arch
    assert mp_table.sample_costs(arch)["latency_s"][a] == pytest.approx(value, rel=1e-9)
    rep = check_feasible(ConstraintSet([Constraint("latency", "<=", value * 1.5)]), mp_table)
    assert rep["witness"]["latency_s"] <= value * 1.5 * (1 + 1e-9)


def test_baseline_genes_cover_every_choice(mp_table):
    sp = mp_table.space
    assert baselines._radices(sp) == sp.num_candidates and len(baselines._radices(sp)) == 18
    s = sp.sample(5)
    assert baselines._sample(sp, baselines._genome(sp, s)) == s


def test_penalties_read_the_joint_encoding(mp_table):
    from coexplore.penalty import MacsCost
    sp = mp_table.space
    net = Supernet(sp)
    cost = MacsCost.for_space(sp)
    enc = net.arch_encoding()
    out = cost.raw(enc)["macs"]
    out.backward()
    assert all(a.grad is not None for a in net.arch_parameters())
    s = sp.sample(2)
    exact = sum(l.macs for l in sp.layers(s))
    assert float(cost.raw(torch.as_tensor(sp.encode(s)))["macs"]) == pytest.approx(exact, rel=1e-6)


def test_retrain_is_qat_at_the_sample_bits_and_reports_float_beside_it():
    from coexplore.finalize import retrain
    sp = get_search_space("tiny-mnist-mp")
    data = get_data("mnist-embedded", batch_size=32, seed=0, limit=96)
    s = {**sp.sample_all("mb3_e3", wbits=2, abits=4), "s0.b1": "zero", "s1.b1": "zero", "s2.b1": "zero"}
    rt = retrain(sp, s, data, 1, 0.05, "cpu", 0, float_reference=True)
    assert rt["quantized"] is True and rt["quantized_test_accuracy"] == rt["test_accuracy"]
    assert 0.0 <= rt["float_test_accuracy"] <= 1.0
    assert rt["bits"]["layers"] == {"w8a8": 3, "w2a4": 9}  # stem, head, fc; three MBConvs of 3 convs
    plain = retrain(get_search_space("tiny-mnist"), {k: v for k, v in s.items() if "bits" not in k}, data, 1,
                    0.05, "cpu", 0)
    assert "quantized_test_accuracy" not in plain and "bits" not in plain


@pytest.mark.slow
def test_search_and_retrain_command_on_a_mixed_precision_space(tmp_path, capsys):
    """End to end: HDX on tiny-mnist-mp, a QAT retrain in the run and by `coexplore retrain`."""
    import json

    from coexplore.cli import main
    from coexplore.config import load_config
    from coexplore.search import run_search

    tiny = ["search_space=tiny-mnist-mp", "hardware_space=small", "data.limit=160", "data.batch_size=32",
            "steps_per_epoch=2", "warmup_epochs=1", "search_epochs=1", "progress=false", "evaluator.num_arch=300",
            "evaluator.pairs_per_arch=8", "evaluator.epochs_generator=3", "evaluator.epochs_estimator=1",
            "method=hdx", "constraints=[latency <= 1ms]", "retrain_epochs=1"]
    run_search(load_config(None, tiny), tmp_path / "run", cache_dir=tmp_path / "cache")
    r = json.loads((tmp_path / "run" / "result.json").read_text())
    sp = get_search_space("tiny-mnist-mp")
    assert sp.check_sample(r["architecture"]) == r["architecture"]
    assert {"quantized_test_accuracy", "float_test_accuracy", "bits"} <= set(r["retrain"])
    assert main(["retrain", str(tmp_path / "run"), "--epochs", "1", "--quiet", "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    r = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "float_test_accuracy" in r["retrains"][-1]


def test_the_evaluator_generates_the_precision_scheme_the_bits_call_for(tmp_path):
    """DANCE's generator on the joint space predicts the precision scheme too: bit-fused for
    networks at 2 and 4 bits, bit-serial for 8-bit ones, as the analytical model's argmin does."""
    from accelerators.space import DEFAULT_BASE, HardwareSpace
    from coexplore.evaluator_train import TrainConfig, build_evaluator
    from coexplore.objectives import Objective
    from coexplore.verify import Verifier

    hw = HardwareSpace({"pe_x": [8, 16], "pe_y": [8, 16], "rf_bytes": [16, 64], "dataflow": ["ws", "os"],
                        "precision": ["fixed", "bit-serial", "bit-fused"]}, DEFAULT_BASE, name="mp-test")
    sp = get_search_space("tiny-mnist-mp")
    res = build_evaluator(sp, hw, "edap", out=tmp_path / "ev.pt", num_arch=1500, pairs_per_arch=16,
                          cfg=TrainConfig(max_epochs_generator=25, max_epochs_estimator=5), cache_dir=tmp_path,
                          progress=False, report_arch=500)
    ev, rep = res["evaluator"], res["report"]
    assert "precision" in rep["hw_generation_accuracy_pct"]
    check = Verifier(CostTable(sp, hw), Objective.parse("edap"), ConstraintSet())
    truth = {}
    for bits in (2, 4, 8):
        for op in ("mb3_e3", "mb5_e6"):
            s = sp.sample_all(op, wbits=bits, abits=bits)
            best = check.check(s)["accelerator"].precision
            truth[bits] = best
            enc = torch.as_tensor(sp.encode(s), dtype=torch.float32)
            assert ev.predict_accelerator(enc).precision == best, (bits, op)
    assert truth[2] == truth[4] == "bit-fused" and truth[8] != "bit-fused"


@pytest.mark.parametrize("scheme,shown", [("bit-fused", ", bit-fused MACs"), ("fixed", "")])
def test_the_run_summary_names_a_precision_scalable_scheme(capsys, scheme, shown):
    from types import SimpleNamespace

    from accelerators import Accelerator
    from coexplore.cli import _print_result

    acc = Accelerator(pe_x=8, pe_y=6, rf_bytes=16, glb_bytes=108 * 1024, dataflow="os", precision=scheme).to_dict()
    m = {"accuracy": 0.95, "latency_s": 3e-5, "fps": 33333.0, "energy_j": 1e-5, "area_mm2": 1.7, "edap": 5e-10}
    res = SimpleNamespace(status="ok", metrics=m, accelerator=acc, architecture={"s0.b0": "mb3_e3"}, chance_level=False,
                          accuracy_source="retrained-test", checked_by="analytical", constraints=[],
                          all_constraints_met=True)
    _print_result(res, "run", "table")
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("accelerator:"))
    assert line.endswith("GLB 108 KB" + shown)


def _experiment(name: str):
    """An experiments/ launcher as a module (they are scripts, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "experiments"
    spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    sys.path.insert(0, str(root))  # the CIFAR-10 launcher imports precision_mnist
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
        sys.path.remove(str(root))
    return mod


@pytest.mark.parametrize("launcher, setting", [("precision_mnist", "MNIST"), ("precision_cifar10_reduced", "CIFAR10")])
def test_the_sequential_flows_fixed_op_space_prices_as_the_joint_space(launcher, setting):
    """The precision experiments' mixed-precision step searches bits with the NAS ops fixed, in a
    space of its own; mapped back to the joint space's labels a sample must cost exactly the same
    (on MNIST and on CIFAR-10, whose first block is fixed)."""
    from coexplore.objectives import Objective
    from coexplore.verify import Verifier

    mod = _experiment(launcher)
    pm = mod if launcher == "precision_mnist" else mod.pm
    st = getattr(mod, setting)
    nas = get_search_space(st.nas_space)
    rng = np.random.default_rng(1)
    ops = {c.label: c.candidates[int(rng.integers(len(c.candidates)))] for c in nas.choices}
    assert "zero" in ops.values() and len(set(ops.values())) > 2  # the draw exercises zero and real blocks
    sp, mapping = pm.mp_space(ops, st)
    assert [c.label for c in sp.choices if c.kind == "op"] == list(mapping.values())  # zero blocks are fixed
    from accelerators.space import DEFAULT_BASE, HardwareSpace
    hw = HardwareSpace({"pe_x": [8, 16], "pe_y": [8], "rf_bytes": [16], "dataflow": ["ws", "os"],
                        "precision": ["fixed", "loom", "bit-fused"]}, DEFAULT_BASE, name="mp-test")
    own, joint = CostTable(sp, hw), CostTable(get_search_space(st.mp_space), hw)
    for _ in range(3):
        s = {c.label: c.candidates[int(rng.integers(len(c.candidates)))] for c in sp.choices}
        a = Verifier(own, Objective.parse("edap"), ConstraintSet()).check(s)["metrics"]
        b = Verifier(joint, Objective.parse("edap"), ConstraintSet()).check(pm.joint_sample(s, ops, st))["metrics"]
        for m in ("latency_s", "energy_j", "edap"):
            assert a[m] == pytest.approx(b[m], rel=1e-12), m
