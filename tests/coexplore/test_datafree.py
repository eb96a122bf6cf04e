"""Data-free quantisation (coexplore.datafree): teachers, every method's key step, AIT, the loop, the CLI."""

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coexplore.common import ConfigError, UnknownNameError
from coexplore.datafree import (METHODS, GradientInundation, MethodConfig, QuantizeConfig, SyntheticData,
                                ait_loss, load_teacher, parse_bits, quantize, read_quant_result, spec_for_data,
                                train_teacher)
from coexplore.datafree.ait import code_change_fraction, snapshot_codes
from coexplore.datafree.base import BNStatistics, kd_kl
from coexplore.datafree.lrq import dkd_loss
from coexplore.datafree.teacher import Teacher, TeacherSpec
from search_spaces import get_data
from search_spaces.quant import QuantConv2d

DATA_FREE = ["gdfq", "zeroq", "qimera", "clusterq", "lrq"]
SMALL = {"generator_channels": 16, "zeroq_pool": 32, "zeroq_steps": 3}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def mnist():
    return get_data("mnist-embedded", batch_size=64, eval_batch_size=500, seed=0)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("teacher") / "bn-cnn.pt"
    train_teacher(spec_for_data("bn-cnn", mnist), mnist, path, epochs=2, lr=0.1, seed=0, progress=False)
    return path


@pytest.fixture()
def teacher(teacher_file):
    return load_teacher(teacher_file)


def _method(name, teacher, **cfg):
    return METHODS.get(name)(teacher, MethodConfig(**{**SMALL, **cfg}), _gen(1))


# ---- teachers ---------------------------------------------------------------------------------


def test_teacher_file_is_weights_only_and_records_its_data(teacher_file, mnist):
    st = torch.load(teacher_file, weights_only=True)
    assert st["kind"] == "coexplore-teacher"
    assert st["spec"]["arch"] == "bn-cnn" and st["spec"]["input_shape"] == [1, 28, 28]
    assert st["spec"]["classes"] == list(mnist.classes) and st["spec"]["num_classes"] == 10
    t = load_teacher(teacher_file)
    assert t.metrics["test_accuracy"] > 0.8  # a real teacher, not noise
    assert t.metrics["selection"].startswith("final epoch")


def test_resnet20_shape_and_size():
    spec = TeacherSpec("resnet20", 10, (3, 32, 32), tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3)
    net = spec.build(_gen())
    assert net(torch.randn(2, 3, 32, 32, generator=_gen())).shape == (2, 10)
    n_conv = sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in net.modules())
    assert n_conv == 19  # 1 stem + 9 blocks x 2: with the classifier, 20 weight layers
    params = sum(p.numel() for p in net.parameters())
    assert 0.26e6 < params < 0.28e6  # He et al.: 0.27M


def test_bad_teacher_files(tmp_path):
    with pytest.raises(ConfigError, match="no such teacher"):
        load_teacher(tmp_path / "none.pt")
    p = tmp_path / "x.pt"
    torch.save({"a": 1}, p)
    with pytest.raises(ConfigError, match="not a coexplore teacher"):
        load_teacher(p)
    p2 = tmp_path / "evil.pt"
    torch.save({"kind": "coexplore-teacher", "obj": argparse.Namespace(a=1)}, p2)
    with pytest.raises(ConfigError, match="refused"):
        load_teacher(p2)


# ---- the protocol, for every method ----------------------------------------------------------------


@pytest.mark.parametrize("name", DATA_FREE)
def test_sample_shapes_and_determinism(name, teacher):
    m = _method(name, teacher)
    m.prepare(_gen(2))
    x, y = m.sample(12, _gen(5))
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (12,) and y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < 10
    x2, y2 = m.sample(12, _gen(5))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = m.sample(12, _gen(6))
    assert not torch.equal(x, x3)
    imgs, labels, logits = SyntheticData(m, teacher.model).batch(6, _gen(7))
    assert imgs.shape == (6, 1, 28, 28) and labels.shape == (6,) and logits.shape == (6, 10)


def test_registry_lists_every_method():
    assert set(METHODS.names()) == set(DATA_FREE) | {"real-qat", "diffusion-mixup"}
    with pytest.raises(UnknownNameError, match="known data-free methods"):
        METHODS.get("gdqf")


@pytest.mark.parametrize("name", ["gdfq", "qimera", "clusterq", "lrq"])
def test_generator_loss_has_gradients(name, teacher):
    m = _method(name, teacher)
    step = m.generator_loss(8, _gen())
    step.loss.backward()
    grads = [p.grad for p in m.generator_parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in teacher.model.parameters())  # the teacher stays frozen


def _train_generator(teacher, bns_weight, steps=25):
    m = _method("gdfq", teacher, bns_weight=bns_weight)
    opt = torch.optim.Adam(m.generator_parameters(), lr=1e-2, betas=(0.5, 0.999))
    for i in range(steps):
        step = m.generator_loss(32, _gen(i))
        opt.zero_grad()
        step.loss.backward()
        opt.step()
    stats = BNStatistics(teacher.model)
    with torch.no_grad(), stats.recording():
        teacher.model(m.sample(64, _gen(99))[0])
    return float(stats.loss())


def test_bn_statistics_loss_pulls_samples_to_the_teachers_statistics(teacher):
    # removing GDFQ's BNS term from generator_loss turns this red
    assert _train_generator(teacher, 10.0) < 0.6 * _train_generator(teacher, 0.0)


def test_bn_methods_refuse_a_teacher_without_batchnorm(teacher):
    spec = TeacherSpec("bn-cnn", 10, (1, 28, 28), teacher.spec.classes, (0.1,), (0.3,))
    no_bn = Teacher(spec, nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)))
    for name in DATA_FREE:
        with pytest.raises(ConfigError, match="has no BatchNorm2d layer"):
            _method(name, no_bn)


def test_qimera_superposes_embeddings(teacher):
    m = _method("qimera", teacher, mix_ratio=0.5, mix_classes=2)
    labels, targets, _ = m.draw(40, _gen(3))
    nonzero = (targets > 0).sum(1)
    assert int((nonzero == 2).sum()) == 20 and int((nonzero == 1).sum()) == 20  # half boundary samples
    assert torch.allclose(targets.sum(1), torch.ones(40))
    mixed = targets[nonzero == 2]
    assert float(mixed.max(1).values.min()) < 0.999  # real mixtures, not one-hot
    # the embeddings start at the teacher's classifier rows
    fc = teacher.model.classifier.weight
    assert torch.allclose(F.cosine_similarity(m.embedding, fc, dim=1), torch.ones(10), atol=1e-5)
    # the DML maps the superposed embedding (affine, so a mixture's code is the mixture of codes)
    t = mixed[:1]
    i, j = t.nonzero()[:, 1].tolist()
    e = F.one_hot(torch.tensor([i, j]), 10).float()
    want = t[0, i] * m.conditioning(e[:1]) + t[0, j] * m.conditioning(e[1:])
    assert torch.allclose(m.conditioning(t), want, atol=1e-5)
    assert not torch.allclose(m.conditioning(t), m.conditioning(e[:1]))


def test_qimera_student_sees_soft_targets(teacher):
    m = _method("qimera", teacher, mix_ratio=1.0)
    x, targets = m.sample_targets(16, _gen())
    assert bool(((targets > 0).sum(1) == 2).all())
    logits = torch.randn(16, 10, generator=_gen(2))
    loss, _ = m.student_loss(logits, logits, targets)
    hard, _ = m.student_loss(logits, logits, F.one_hot(targets.argmax(1), 10).float())
    assert float(loss) != pytest.approx(float(hard))


def test_clusterq_diversity_term_has_a_gradient_and_centroids_follow(teacher):
    m = _method("clusterq", teacher, diversity_target=10.0, cluster_weight=1.0)
    labels, targets, extra = m.draw(32, _gen())
    x = m.generate(labels, targets, extra, _gen(1))
    with m.bn_stats.recording(sample_means=True):
        teacher.model(x)
    align, div = m.cluster_terms(labels)
    assert float(div) > 0
    div.backward()
    g = sum(float(p.grad.abs().sum()) for p in m.generator_parameters() if p.grad is not None)
    assert g > 0  # the public code's diversity term has zero gradient; this one must not
    first = [c.clone() for c in m.centroids()]
    assert bool(m.seen[labels.unique()].all())
    step = m.generator_loss(32, _gen(2))
    assert step.info["g_align"] > 0  # second batch: pulled towards the first batch's centroids
    moved = [not torch.equal(a, b) for a, b in zip(first, m.centroids())]
    assert all(moved)


def test_lrq_generator_has_large_kernel_attention_and_margin(teacher):
    from coexplore.datafree.base import LKA
    m = _method("lrq", teacher)
    assert sum(isinstance(x, LKA) for x in m.modules()) == 2
    assert sum(isinstance(x, LKA) for x in _method("gdfq", teacher).modules()) == 0
    x, targets = m.sample_targets(8, _gen())
    margin_logits, _ = m.ama_logits(x, targets)
    m0 = _method("lrq", teacher, ama_margin=0.0)
    plain, _ = m0.ama_logits(x, targets)
    diff = plain - margin_logits
    assert torch.allclose(diff, m.cfg.ama_scale * m.cfg.ama_margin * targets, atol=1e-4)


def test_dkd():
    s = torch.randn(6, 10, generator=_gen())
    y = torch.arange(6)
    tckd, nckd = dkd_loss(s, s.clone(), y)
    assert float(tckd) == pytest.approx(0, abs=1e-6) and float(nckd) == pytest.approx(0, abs=1e-6)
    t = torch.randn(6, 10, generator=_gen(1))
    tckd, nckd = dkd_loss(s, t, y)
    assert float(tckd) > 0 and float(nckd) > 0


def test_zeroq_distils_towards_the_bn_statistics(teacher):
    m = _method("zeroq", teacher, zeroq_steps=30, zeroq_pool=32, zeroq_lr=0.1)
    stats = BNStatistics(teacher.model)
    noise = torch.randn(32, 1, 28, 28, generator=_gen(4))
    with torch.no_grad(), stats.recording():
        teacher.model(noise)
    before = float(stats.zeroq_loss())
    m.prepare(_gen(4))
    with torch.no_grad(), stats.recording():
        teacher.model(m.pool)
    assert float(stats.zeroq_loss()) < 0.5 * before
    assert torch.equal(m.pool_labels, teacher.model(m.pool).argmax(1))


# ---- AIT ------------------------------------------------------------------------------------------


def test_ait_loss_is_kl_only():
    s, t = torch.randn(5, 10, generator=_gen()), torch.randn(5, 10, generator=_gen(1))
    assert torch.equal(ait_loss(s, t), kd_kl(s, t))


@pytest.mark.parametrize("bits", [2, 4])
def test_gradient_inundation_makes_the_set_fraction_cross_a_threshold(bits):
    conv = QuantConv2d(16, 32, 3, wbits=bits, abits=8)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=_gen()) * 0.1)
    model = nn.Sequential(conv)
    grad = torch.randn(conv.weight.shape, generator=_gen(1)) * 1e-3
    lr, ratio = 0.01, 0.02

    def flips(manipulate):
        w0 = conv.weight.detach().clone()
        conv.weight.grad = grad.clone()
        if manipulate:
            GradientInundation(ratio, max_scale=1e6).manipulate(model, lr)
        before = snapshot_codes(model)
        with torch.no_grad():
            conv.weight.sub_(lr * conv.weight.grad)
        f = code_change_fraction(before, model)
        with torch.no_grad():
            conv.weight.copy_(w0)
        return f

    plain = flips(False)
    inundated = flips(True)
    assert plain < ratio / 4  # tiny gradients barely move any code ...
    assert ratio * 0.8 <= inundated <= ratio * 2.5  # ... the manipulation makes ~ratio of them cross


def test_gradient_inundation_never_shrinks_a_gradient():
    conv = QuantConv2d(4, 4, 3, wbits=4, abits=8)
    conv.weight.grad = torch.ones_like(conv.weight) * 100.0  # already far past every threshold
    before = conv.weight.grad.clone()
    GradientInundation(0.01).manipulate(nn.Sequential(conv), lr=1.0)
    assert torch.equal(conv.weight.grad, before)


# ---- the loop and the run folder ------------------------------------------------------------------


def _cfg(teacher_file, **kw):
    base = dict(teacher=str(teacher_file), method="gdfq", wbits=4, abits=4, iterations=8, generator_warmup=2,
                batch_size=16, log_every=2, checkpoint_every=2, progress=False, val_samples=16, calib_batches=1,
                method_cfg=dict(SMALL))
    base.update(kw)
    return QuantizeConfig(**base)


@pytest.fixture(scope="module")
def small_test(mnist):
    return get_data("mnist-embedded", batch_size=16, eval_batch_size=500, seed=0, limit=200)


def test_quantize_writes_a_complete_run_folder(teacher_file, small_test, tmp_path):
    state = torch.random.get_rng_state()
    r = quantize(_cfg(teacher_file, ait=True), tmp_path / "run", data=small_test)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global seeding or drawing
    out = tmp_path / "run"
    for f in ("config.yaml", "metrics.csv", "result.json", "student.pt", "checkpoints/last.pt", "plots/samples.png"):
        assert (out / f).is_file(), f
    assert (out / "plots/samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert torch.load(out / "checkpoints/last.pt", weights_only=True)["iteration"] == 8
    student = torch.load(out / "student.pt", weights_only=True)
    assert student["wbits"] == 4 and student["layer_bits"]
    res = json.loads((out / "result.json").read_text())
    assert res["kind"] == "coexplore-datafree-result" and res["ait"] is True
    assert read_quant_result(out) == r
    assert r.accuracy_source == "real-test" and r.test_samples == 200 and r.selection == "last"
    assert 0 <= r.metrics["accuracy"] <= 1 and r.metrics["teacher_accuracy"] > 0.5
    first = next(iter(r.layer_bits))
    assert r.layer_bits[first] == [4, 8] and all(v == [4, 4] for k, v in r.layer_bits.items() if k != first)
    import pandas as pd
    rows = pd.read_csv(out / "metrics.csv")
    assert list(rows["iteration"]) == [2, 4, 6, 8] and "ait_scale" in rows and "s_kl" in rows


def test_result_is_readable_without_torch(teacher_file, small_test, tmp_path):
    quantize(_cfg(teacher_file, iterations=2), tmp_path / "r", data=small_test)
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "from coexplore.datafree.result import read_quant_result\n"
            f"print(read_quant_result({str(tmp_path / 'r')!r}).method)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "gdfq"


@pytest.mark.parametrize("method", ["qimera", "zeroq"])
def test_resume_repeats_the_uninterrupted_run(teacher_file, small_test, tmp_path, method):
    cfg = _cfg(teacher_file, method=method)
    whole = quantize(cfg, tmp_path / "whole", data=small_test)
    with pytest.raises(KeyboardInterrupt):
        quantize(cfg, tmp_path / "resumed", data=small_test, stop_after=4)
    assert not (tmp_path / "resumed" / "result.json").exists()
    resumed = quantize(cfg, tmp_path / "resumed", data=small_test)
    a = torch.load(tmp_path / "whole" / "student.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "student.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    assert whole.metrics["accuracy"] == resumed.metrics["accuracy"]


def test_resume_refuses_changed_settings(teacher_file, small_test, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        quantize(_cfg(teacher_file), tmp_path / "r", data=small_test, stop_after=2)
    with pytest.raises(ConfigError, match=r"cannot resume: setting\(s\) \['wbits'\]"):
        quantize(_cfg(teacher_file, wbits=2), tmp_path / "r", data=small_test)


def test_synthetic_val_selection_never_reads_the_test_split(teacher_file, small_test, tmp_path, monkeypatch):
    import coexplore.datafree.run as run_mod
    calls = []
    real = run_mod.evaluate
    monkeypatch.setattr(run_mod, "evaluate", lambda model, loader, dev: calls.append(loader) or real(model, loader, dev))
    r = quantize(_cfg(teacher_file, select="synthetic-val", val_every=2), tmp_path / "s", data=small_test)
    assert r.selection.startswith("synthetic-val@")
    assert len(calls) == 2  # teacher and student, once each, after the selection


def test_real_qat_needs_data_and_uses_it(teacher_file, small_test, tmp_path):
    r = quantize(_cfg(teacher_file, method="real-qat"), tmp_path / "q", data=small_test)
    assert r.data_free is False and r.metrics["accuracy"] is not None


def test_mismatched_teacher_and_data(teacher_file, tmp_path):
    folder = tmp_path / "imgs"
    from PIL import Image
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (folder / split / c).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(np.full((28, 28, 3), 40 * i, np.uint8)).save(folder / split / c / f"{i}.png")
    data = get_data("image-folder", path=folder, batch_size=4, val_fraction=0.5)
    with pytest.raises(ConfigError, match=r"teacher input_shape \[1, 28, 28\] does not match data 'image-folder' "
                                          r"input_shape \[3, 28, 28\]"):
        quantize(_cfg(teacher_file), tmp_path / "m", data=data)


@pytest.mark.parametrize("bits,match", [("w9a4", r"bits \(weights\) must be one of \[2, 3, 4, 5, 6, 7, 8, 16, 32\]"),
                                        ("w4a1", r"bits \(activations\) must be one of"),
                                        ("4/4", "bits must look like w<bits>a<bits>")])
def test_bad_bits(bits, match):
    with pytest.raises(ConfigError, match=match):
        parse_bits(bits)


def test_bad_config_fields(teacher_file):
    with pytest.raises(ConfigError, match=r"method must be one of \["):
        _cfg(teacher_file, method="nope")
    with pytest.raises(ConfigError, match="select must be one of"):
        _cfg(teacher_file, select="test")
    with pytest.raises(ConfigError, match=r"method_cfg: unknown field\(s\) \['nope'\]"):
        _cfg(teacher_file, method_cfg={"nope": 1})


# ---- the CLI --------------------------------------------------------------------------------------


def _main(argv, capsys):
    """The coexplore command line (the data-free commands are wired into it)."""
    from coexplore.cli import main
    return main(["--quiet", *argv])


def test_cli_teacher_train_and_quantize(tmp_path, capsys, teacher_file):
    t = tmp_path / "t.pt"
    assert _main(["teacher", "train", "--arch", "bn-cnn", "--epochs", "1", "--out", str(t), "--format", "json"],
                 capsys) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["arch"] == "bn-cnn"
    rc = _main(["quantize", "--teacher", str(teacher_file), "--method", "qimera", "--bits", "w2a4", "--ait",
                "--iterations", "3", "--generator-warmup", "1", "--batch-size", "8", "--generator-channels", "8",
                "--eval-limit", "100", "--out", str(tmp_path / "q"), "--format", "json"], capsys)
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["method"] == "qimera" and res["wbits"] == 2 and res["abits"] == 4 and res["ait"] is True


@pytest.mark.parametrize("argv,match", [
    (["--method", "nope"], r"--method must be one of \["),
    (["--bits", "w1a4"], r"bits \(weights\) must be one of"),
    (["--select", "test"], "select must be one of"),
])
def test_cli_errors_are_one_line_exit_2(argv, match, tmp_path, capsys, teacher_file):
    rc = _main(["quantize", "--teacher", str(teacher_file), "--out", str(tmp_path / "e"), *argv], capsys)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert __import__("re").search(match, err), err


def test_cli_teacher_arch_error(tmp_path, capsys):
    rc = _main(["teacher", "train", "--arch", "vgg", "--out", str(tmp_path / "t.pt")], capsys)
    assert rc == 2 and "--arch must be one of ['bn-cnn', 'resnet20']" in capsys.readouterr().err


def test_cli_quantizes_the_network_of_a_run_folder(tmp_path, capsys):
    from coexplore.config import DataConfig, RunConfig
    from coexplore.runfolder import Result, write_result
    from search_spaces import get_search_space
    run = tmp_path / "search"
    run.mkdir()
    RunConfig(method="dance", search_space="tiny-mnist", data=DataConfig(limit=200, batch_size=32)).save(
        run / "config.yaml")
    space = get_search_space("tiny-mnist")
    arch = {b.label: b.candidates[0] for b in space.blocks}
    write_result(run, Result(method="dance", name="s", seed=0, search_space="tiny-mnist", hardware_space="small",
                             objective="edap", lam=1.0, status="ok", architecture=arch, accelerator={"pe_x": 8},
                             all_constraints_met=True))
    out = tmp_path / "q"
    rc = _main(["quantize", "--run", str(run), "--method", "gdfq", "--bits", "w4a4", "--iterations", "2",
                "--generator-warmup", "1", "--batch-size", "8", "--generator-channels", "8", "--teacher-epochs",
                "1", "--out", str(out), "--format", "json"], capsys)
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["teacher_arch"] == "space" and res["dataset"] == "mnist-embedded"
    t = load_teacher(out / "teacher.pt")
    assert t.spec.architecture == arch and t.spec.space["name"] == "tiny-mnist"
