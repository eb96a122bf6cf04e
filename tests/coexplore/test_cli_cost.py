"""End-to-end tests of `coexplore cost` and `coexplore list` (through main(), and once as a process)."""

import json
import subprocess
import sys

import pytest

from accelerators import get_accelerator, save_accelerator, save_workload
from accelerators.workload import conv, linear
from coexplore.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cost_table_and_totals(capsys):
    rc, out, _ = run(capsys, "cost", "--workload", "resnet18", "--accelerator", "eyeriss")
    assert rc == 0
    for word in ("layer1.0.conv1", "latency_ms", "energy_mJ", "area_mm2", "utilization", "compute"):
        assert word in out


def test_cost_json_matches_the_api(capsys):
    from accelerators import evaluate, get_workload
    rc, out, _ = run(capsys, "cost", "-w", "alexnet", "-a", "eyeriss", "--format", "json")
    data = json.loads(out)
    c = evaluate(get_workload("alexnet"), [get_accelerator("eyeriss")])
    assert data["totals"]["latency_ms"] == pytest.approx(c.latency_total_s[0] * 1e3)
    assert len(data["rows"]) == 8 and data["rows"][5]["bound"] == "memory"


def test_cost_csv(capsys):
    rc, out, _ = run(capsys, "cost", "-w", "alexnet", "-a", "tpu-like", "-f", "csv")
    assert rc == 0 and out.splitlines()[0].startswith("layer,kind,MACs")


def test_cost_space_top(capsys):
    rc, out, _ = run(capsys, "cost", "-w", "mobilenetv2-cifar", "--space", "small", "--top", "3", "-f", "json",
                     "--objective", "latency")
    rows = json.loads(out)["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    lat = [r["latency_ms"] for r in rows]
    assert lat == sorted(lat)


def test_cost_yaml_inputs_and_explain(capsys, tmp_path):
    save_workload(tmp_path / "w.yaml", [conv(3, 16, 3, 32, name="c1"), linear(16, 10, name="fc")])
    save_accelerator(tmp_path / "a.yaml", get_accelerator("dance-rs"))
    rc, out, _ = run(capsys, "cost", "-w", str(tmp_path / "w.yaml"), "-a", str(tmp_path / "a.yaml"), "--explain", "c1")
    assert rc == 0 and "spatial" in out and "bound" in out


@pytest.mark.parametrize("argv,needle", [
    (["cost", "-w", "resnet19"], "known workloads"),
    (["cost", "-w", "resnet18", "-a", "eyeris"], "Did you mean 'eyeriss'"),
    (["cost", "-w", "resnet18", "-a", "eyeriss", "--space", "default"], "not both"),
    (["cost", "-w", "resnet18", "--explain", "nope"], "no such layer"),
    (["cost", "-w", "missing.yaml"], "no such file"),
])
def test_user_errors_have_no_traceback(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and needle in err and "Traceback" not in err


def test_list(capsys):
    rc, out, _ = run(capsys, "list")
    assert "eyeriss" in out and "resnet18" in out and "default" in out
    assert "det-mnist" in out and "yolox-tiny-search" in out  # the detection spaces
    assert "hdx-lut" in out and "dance-lut" in out and "measured-cpu" in out  # and what prices them
    assert "row-stationary" in out and "bit-fused" in out and "Stripes" in out  # dataflows, precision schemes
    rc, out, _ = run(capsys, "list", "precision-schemes")
    assert rc == 0 and out.split()[0] == "precision-schemes:" and "loom" in out and "eyeriss" not in out


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "coexplore.cli", "cost", "-w", "alexnet", "-a", "eyeriss", "-f", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["layers"] == 8
