"""Measured latency: BN folding, what is timed, the machine check, the table file, the cost-source protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from accelerators import CostSource, get_accelerator, get_cost_source
from accelerators.measured import (LatencyTable, MeasuredLatency, Stat, count_batchnorm, fuse_batchnorm,
                                   machine_identity)
from accelerators.workload import conv, linear
from coexplore.common import ConfigError
from search_spaces.detection import build_det_op, build_detector, get_detection_space, list_det_ops
from search_spaces.detection.ops import get_det_op

FAST = dict(min_run_time=0.002, rounds=1, warmup=1)


@pytest.fixture(scope="module")
def src():
    return MeasuredLatency(**FAST)


@pytest.mark.parametrize("op", [o for o in list_det_ops() if not get_det_op(o).skip])
def test_fuse_batchnorm_folds_every_pair_and_keeps_outputs(op):
    stride = 2 if 2 in get_det_op(op).strides else 1
    m = build_det_op(op, 8, 8 if stride == 1 else 12, stride)
    with torch.no_grad():  # non-trivial BN statistics
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    m.eval()
    x = torch.randn(2, 8, 9, 9)
    fused, n = fuse_batchnorm(m)
    assert n == count_batchnorm(m) > 0 and count_batchnorm(fused) == 0
    with torch.no_grad():
        assert torch.allclose(fused(x), m(x), atol=1e-4, rtol=1e-4)
    assert count_batchnorm(m) == n  # the original is untouched


def test_a_whole_detector_is_timed_without_batchnorm(src):
    sp = get_detection_space("det-mnist")
    net = build_detector(sp, sp.reference_sample()).eval()
    assert count_batchnorm(net) > 50
    prepared = src.prepare(net, (torch.zeros(1, 1, 96, 96),))
    timed = prepared.env["m"]  # the module the Timer runs
    assert count_batchnorm(timed) == 0
    assert prepared.no_grad  # timed under torch.no_grad: no autograd graph is built


def test_measurements_are_positive_ordered_and_restore_threads(src):
    before = torch.get_num_threads()
    small = src.measure(nn.Conv2d(4, 4, 1).eval(), (torch.zeros(1, 4, 8, 8),))
    big = src.measure(nn.Conv2d(64, 64, 3, padding=1).eval(), (torch.zeros(1, 64, 64, 64),))
    assert 0 < small.median_s < big.median_s and small.runs >= 1
    assert torch.get_num_threads() == before


def test_interleaved_rounds_take_the_median(src, monkeypatch):
    times = iter([(3.0, 0.1, 10), (1.0, 0.1, 10), (2.0, 0.1, 10)])
    from accelerators import measured
    monkeypatch.setattr(measured.Prepared, "time", lambda self, t: next(times))
    st = MeasuredLatency(min_run_time=0.002, rounds=3, warmup=0).measure_all([(nn.Identity(), (torch.zeros(1),))])[0]
    assert st == Stat(2.0, 2.0, 30)


# ---- the table and the machine check -------------------------------------------------------------

def _table(src, **changes):
    t = LatencyTable(machine=dict(src.machine), settings=src.settings(), space={"name": "x", "fingerprint": "f"},
                     fixed={"stem": Stat(1e-4, 1e-6, 10)}, entries={("s0.down", "conv3"): Stat(2e-4, 1e-6, 10)},
                     created="2024-01-01T00:00:00Z")
    d = t.to_dict()
    for k, v in changes.items():
        sect, key = k.split(".")
        d[sect][key] = v
    return LatencyTable.from_dict(d)


def test_table_round_trip(tmp_path, src):
    t = _table(src)
    t.save(tmp_path / "t.json")
    back = LatencyTable.load(tmp_path / "t.json")
    assert back == t and back.fixed_s == pytest.approx(1e-4)
    assert back.latency("s0.down", "conv3") == 2e-4 and back.latency("s0.b0", "skip") == 0.0
    t.check_machine(src)  # measured here, with these settings: accepted


@pytest.mark.parametrize("field,value", [
    ("machine.cpu_model", "Apple M2"), ("machine.logical_cpus", 128), ("machine.torch", "1.13.0"),
    ("machine.machine", "arm64"), ("machine.gpu", "NVIDIA RTX 2080 Ti"), ("settings.threads", 4),
    ("settings.runtime", "onnxruntime"), ("settings.min_run_time", 5.0), ("settings.fuse_bn", False),
])
def test_a_table_from_another_machine_or_setting_is_refused(src, field, value):
    with pytest.raises(ConfigError, match=rf"{field.replace('.', '[.]')} is|{field.replace('.', '[.]')} = ") as exc:
        _table(src, **{field: value}).check_machine(src, "t.json")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("t.json: ")


def test_the_host_name_alone_does_not_refuse(src):
    _table(src, **{"machine.hostname": "another-container"}).check_machine(src)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: {**d, "kind": "other"}, r"not a latency table"),
    (lambda d: {**d, "format": 99}, r"format 99 is not supported"),
    (lambda d: {**d, "entries": {}}, r"field 'entries' must be a list"),
    (lambda d: {**d, "fixed": [{"name": "stem", "median_s": -1.0, "spread_s": 0.0, "runs": 1}]},
     r"fixed\[0\].median_s must be a finite number >= 0"),
    (lambda d: {**d, "entries": d["entries"] * 2}, r"entries\[1\] repeats"),
    (lambda d: {**d, "entries": [{"label": "a"}]}, r"entries\[0\] must be an object with string 'label' and 'op'"),
])
def test_bad_table_files_are_one_line_errors(tmp_path, src, mutate, match):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(mutate(_table(src).to_dict())))
    with pytest.raises(ConfigError, match=match) as exc:
        LatencyTable.load(p)
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


# ---- the cost-source protocol ----------------------------------------------------------------------

def test_registered_and_a_cost_source(src):
    s = get_cost_source("measured-cpu", mapping_objective="edp", **FAST)
    assert isinstance(s, CostSource) and s.name == "measured-cpu"
    assert s.fingerprint() == MeasuredLatency(**FAST).fingerprint()
    assert s.fingerprint() != MeasuredLatency(**{**FAST, "threads": 2}).fingerprint()
    d = s.describe()
    json.dumps(d)
    assert d["machine"]["torch"] == torch.__version__ and d["threads"] == 1 and d["fuse_bn"] is True
    assert machine_identity()["logical_cpus"] >= 1


def test_evaluate_prices_layers_on_this_machine_only(src):
    layers = [conv(16, 32, 3, 16, stride=2), conv(32, 32, 3, 8, groups=32), linear(32, 10)]
    c = src.evaluate(layers, [src.device])
    assert c.latency_s.shape == (1, 3) and (c.latency_s > 0).all()
    assert np.isnan(c.energy_j).all() and np.isnan(c.area_mm2).all()
    with pytest.raises(ConfigError, match=r"prices layers on this machine only"):
        src.evaluate(layers, [get_accelerator("eyeriss")])


@pytest.mark.parametrize("kw,match", [
    ({"threads": 0}, r"threads must be an integer >= 1"),
    ({"device": "tpu"}, r"device 'tpu' is unknown; allowed values: \['cpu', 'cuda'\]"),
    ({"runtime": "tvm"}, r"runtime 'tvm' is unknown; allowed values"),
    ({"min_run_time": 0}, r"min_run_time must be a number of seconds in \(0, 60\]"),
    ({"rounds": 0}, r"rounds must be an integer >= 1"),
])
def test_bad_settings(kw, match):
    with pytest.raises(ConfigError, match=match):
        MeasuredLatency(**kw)


def test_onnxruntime_runtime():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    s = get_cost_source("measured-cpu-onnxruntime", **FAST)
    sp = get_detection_space("det-mnist")
    neck = build_det_op("csp1", 16, 16, 1).eval()
    st = s.measure(neck, (torch.zeros(1, 16, 24, 24),))
    assert st.median_s > 0 and s.machine["onnxruntime"] is not None
    net = build_detector(sp, sp.reference_sample()).eval()  # tuple inputs (the neck) export too
    assert s.measure(net, (torch.zeros(1, 1, 96, 96),)).median_s > st.median_s


@pytest.mark.gpu
def test_cuda_measurement_is_synchronised():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    s = get_cost_source("measured-cuda", **FAST)
    big = s.measure(nn.Conv2d(256, 256, 3, padding=1).eval(), (torch.zeros(1, 256, 128, 128),))
    small = s.measure(nn.Conv2d(8, 8, 1).eval(), (torch.zeros(1, 8, 8, 8),))
    assert big.median_s > small.median_s > 0 and s.device.device == "cuda" and s.machine["gpu"]


def test_cuda_source_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match=r"CUDA is not available; use device 'cpu'"):
        get_cost_source("measured-cuda")
