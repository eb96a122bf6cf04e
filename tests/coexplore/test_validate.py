"""`coexplore validate` and `coexplore cost --cost-model`: statistics, outputs, and ZigZag end to end.

The statistics are checked against references whose answer is known (the analytical model
against itself, and against a reversed ranking); ZigZag runs only on tiny pairs, cached per test.
"""

import json

import numpy as np
import pytest

from accelerators import Accelerator, AnalyticalModel, Costs, save_accelerator, save_workload
from accelerators.technology import get_technology
from accelerators.workload import conv, depthwise, linear
from coexplore.cli import main
from coexplore.validate import sample_pairs, spearman, unique_layers, validate, write_outputs

TINY = [conv(4, 4, 1, 2, name="pw"), depthwise(4, 3, 4, name="dw"), linear(16, 8, N=2, name="fc")]


def tiny_accs():
    return [Accelerator(pe_x=4, pe_y=y, rf_bytes=rf, glb_bytes=8 * 1024, dataflow=df)
            for df in ("ws", "os") for y in (2, 4) for rf in (32, 64)]


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- statistics ----------------------------------------------------------------------------

def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])  # ties
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side has no ranking


class Reversed:
    """A reference that ranks accelerators backwards (energy and latency mirrored around their mean)."""

    name = "reversed"

    def __init__(self):
        self.m = AnalyticalModel("zigzag")

    def describe(self):
        return {"name": self.name, "version": "test"}

    def fingerprint(self):
        return "reversed"

    def evaluate(self, layers, accs):
        c = self.m.evaluate(layers, accs)
        flip = lambda x: x.max(0, keepdims=True) + x.min(0, keepdims=True) - x
        return Costs(flip(c.latency_s), flip(c.energy_j), c.utilization, c.area_mm2, c.cycles, c.dram_bytes,
                     c.memory_bound)


def test_validate_against_itself_and_against_a_reversed_ranking():
    accs = tiny_accs()
    same = validate(TINY, accs, reference=AnalyticalModel("zigzag"), tech="zigzag")
    for m in ("latency", "energy"):
        s = same.summaries[m]
        assert s.ratio_median == pytest.approx(1.0) and s.ratio_p10 == pytest.approx(1.0)
        assert all(v == pytest.approx(1.0) or np.isnan(v) for v in s.spearman_by_layer.values())
    rev = validate(TINY, accs, reference=Reversed(), tech="zigzag", worst=3)
    assert rev.summaries["energy"].spearman_median == pytest.approx(-1.0)
    assert len(rev.summaries["energy"].worst) == 3
    assert rev.summaries["energy"].worst[0]["ratio"] != pytest.approx(1.0)
    # another technology for ours changes the ratio, not necessarily the ranking
    other = validate(TINY, accs, reference=AnalyticalModel("default"), tech="zigzag")
    assert other.summaries["energy"].ratio_median < 0.9  # DRAM 175 vs 200 pJ, no static power


def test_sample_is_seeded_distinct_and_checked():
    layers = TINY + [TINY[0]]
    assert unique_layers(layers) == TINY
    a = sample_pairs(layers, tiny_accs(), 3, 2, seed=5)
    assert a == sample_pairs(layers, tiny_accs(), 3, 2, seed=5)
    assert len(set(a[1])) == 3 and len(a[0]) == 2
    from accelerators import ConfigError
    with pytest.raises(ConfigError, match="at least 2"):
        sample_pairs(layers, tiny_accs(), 1, 2, seed=0)
    with pytest.raises(ConfigError, match="only 8"):
        sample_pairs(layers, tiny_accs(), 9, 2, seed=0)


# ---- against ZigZag ------------------------------------------------------------------------



@pytest.fixture
def zz():
    return pytest.importorskip("zigzag", reason='the zigzag extra is not installed (pip install "coexplore[zigzag]")')


def test_validate_with_zigzag_writes_every_output(zz, tmp_path):
    accs = tiny_accs()[:4]
    v = validate(TINY, accs, against="zigzag", tech="zigzag", workers=1, cache_dir=tmp_path / "cache",
                 progress=False)
    assert set(v.summaries) == {"latency", "energy", "dram", "onchip"}
    assert v.ref_source["name"] == "zigzag" and v.ours_source["name"] == "analytical"
    w = v.summaries["energy"].worst[0]
    assert {"mac", "rf", "glb", "dram"} <= set(w["ref_energy_uJ"]) and "noc" in w["ours_energy_uJ"]
    paths = write_outputs(v, tmp_path / "out")
    import pandas as pd
    df = pd.read_csv(paths["csv"])
    assert len(df) == len(TINY) * len(accs) and {"energy_ours", "energy_ref", "energy_ratio"} <= set(df.columns)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads(paths["json"].read_text())
    assert rep["pairs"] == 12 and rep["reference"]["name"] == "zigzag"
    assert "Spearman" in paths["txt"].read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # atomic writes


def test_cli_validate_end_to_end(zz, capsys, tmp_path):
    save_workload(tmp_path / "w.yaml", TINY)
    space = {"name": "tiny", "choices": {"pe_y": [2, 4], "rf_bytes": [32, 64], "dataflow": ["ws", "os"]},
             "fixed": {"pe_x": 4, "glb_bytes": 8192}}
    (tmp_path / "s.yaml").write_text(json.dumps(space))
    out = tmp_path / "val"
    rc, text, err = run(capsys, "validate", "--workload", tmp_path / "w.yaml", "--space", tmp_path / "s.yaml",
                        "--sample", 3, "--layers", 2, "--seed", 1, "--out", out, "--cache-dir", tmp_path / "c",
                        "--format", "json", "-q", "--workers", 1)
    assert rc == 0, err
    rep = json.loads(text)
    assert rep["pairs"] == 6 and set(rep["metrics"]) == {"latency", "energy", "dram", "onchip"}
    assert {p.name for p in out.iterdir()} == {"validate.csv", "validate.json", "validate.txt", "validate.png"}
    rc, text, _ = run(capsys, "validate", "-w", tmp_path / "w.yaml", "-s", tmp_path / "s.yaml", "--sample", 3,
                      "--layers", 2, "--seed", 1, "-o", out, "--cache-dir", tmp_path / "c", "-q")
    assert rc == 0 and "rho median" in text and "largest energy disagreements" in text  # the cache answers


@pytest.mark.parametrize("argv, needle", [
    (["validate", "-w", "resnet18", "--against", "analytical"], "--against 'analytical': allowed values"),
    (["validate", "-w", "resnet18", "--sample", "1"], "expected an integer >= 2"),
    (["validate", "-w", "resnet18", "--tech", "7nm"], "invalid choice"),
])
def test_cli_validate_bad_input(capsys, argv, needle):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


# ---- coexplore cost --cost-model -------------------------------------------------------------

def test_cli_cost_with_zigzag(zz, capsys, tmp_path):
    save_workload(tmp_path / "w.yaml", TINY[:2])
    save_accelerator(tmp_path / "a.yaml", tiny_accs()[0])
    rc, out, err = run(capsys, "cost", "-w", tmp_path / "w.yaml", "-a", tmp_path / "a.yaml", "--cost-model", "zigzag",
                       "--tech", "zigzag", "--cache-dir", tmp_path / "c", "-f", "json", "-q", "-j", 1)
    assert rc == 0, err
    data = json.loads(out)
    assert data["totals"]["cost_model"] == "zigzag" and len(data["rows"]) == 2
    from accelerators import ZigZagBackend
    ref = ZigZagBackend(tech="zigzag", cache_dir=tmp_path / "c", workers=1, progress=False)
    c = ref.evaluate(TINY[:2], tiny_accs()[:1])
    assert ref.last_run == 0  # the command cached both pairs
    assert data["totals"]["energy_mJ"] == pytest.approx(c.energy_total_j[0] * 1e3)


def test_cli_cost_tech_preset_changes_the_numbers(capsys):
    _, a, _ = run(capsys, "cost", "-w", "alexnet", "-a", "eyeriss", "-f", "json")
    _, b, _ = run(capsys, "cost", "-w", "alexnet", "-a", "eyeriss", "-f", "json", "--tech", "zigzag")
    ea, eb = json.loads(a)["totals"]["energy_mJ"], json.loads(b)["totals"]["energy_mJ"]
    assert eb < ea and json.loads(a)["totals"]["latency_ms"] == json.loads(b)["totals"]["latency_ms"]


@pytest.mark.parametrize("argv, needle", [
    (["cost", "-w", "alexnet", "--cost-model", "timeloop"], "unknown cost source 'timeloop'"),
    (["cost", "-w", "alexnet", "--cost-model", "zigzag", "--mapping-objective", "dram"], "mapping_objective 'dram'"),
    (["cost", "-w", "alexnet", "--cost-model", "zigzag", "--explain", "conv1"], "--explain"),
    (["cost", "-w", "alexnet", "--workers", "2"], "--workers"),
    (["cost", "-w", "alexnet", "--executor", "ray"], "--executor sets how an external cost model runs"),
    (["cost", "-w", "alexnet", "--cost-model", "zigzag", "--executor", "dask"], "invalid choice: 'dask'"),
    (["validate", "-w", "alexnet", "--executor", "dask"], "invalid choice: 'dask'"),
])
def test_cli_cost_model_errors(capsys, argv, needle):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_cli_cost_without_the_extra_names_the_fix(capsys, monkeypatch):
    from accelerators import zigzag_backend
    monkeypatch.setattr(zigzag_backend, "zigzag_version", lambda: None)
    rc, _, err = run(capsys, "cost", "-w", "alexnet", "--cost-model", "zigzag")
    assert rc == 2 and 'pip install "coexplore[zigzag]"' in err and len(err.strip().splitlines()) == 1
