"""The search loop on the detection space: measured and analytical pricing, results, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from accelerators.measured import LatencyTable, MeasuredLatency
from coexplore.common import ConfigError
from coexplore.config import DataConfig, RunConfig, load_config
from coexplore.lut import LatencyCostTable, build_latency_table, default_table_path
from search_spaces.detection import get_detection_space

from .test_detection_lut import tiny_space


@pytest.fixture(scope="module")
def space():
    return tiny_space()


@pytest.fixture(scope="module")
def cache(tmp_path_factory, space):
    """A cache holding the table the configured ``measured-cpu`` source uses (default settings)."""
    d = tmp_path_factory.mktemp("cache")
    src = MeasuredLatency()
    build_latency_table(space, src).save(default_table_path(space, src, d))
    return d


def _cfg(space, **kw):
    base = dict(name="det", method="hdx-lut", search_space=space, cost_model="measured-cpu", objective="latency",
                search_epochs=1, warmup_epochs=1, steps_per_epoch=2, retrain_epochs=1, device="cpu", progress=False,
                data=DataConfig(name="mnist-det", limit=24, batch_size=8))
    base.update(kw)
    return RunConfig(**base)


def test_config_resolves_detection_spaces(tmp_path, space):
    from coexplore.config import resolve_search_space
    assert resolve_search_space("det-mnist") == get_detection_space("det-mnist")
    assert resolve_search_space(space.to_dict()) == space
    p = tmp_path / "s.yaml"
    space.to_yaml(p)
    assert resolve_search_space(str(p)) == space
    assert resolve_search_space("tiny-mnist").name == "tiny-mnist"  # classification spaces as before
    cfg = _cfg(space, constraints=["latency <= 5ms"])
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").resolve_search_space() == space


def test_hdx_on_measured_latency(tmp_path, space, cache, capsys):
    from coexplore.search import run_search
    src = MeasuredLatency()
    table = LatencyCostTable(space, LatencyTable.load(default_table_path(space, src, cache)), src)
    bound = 1.3 * table.least("latency")[0]
    cfg = _cfg(space, constraints=[f"latency <= {1e3 * bound:.5f}ms"])
    res = run_search(cfg, tmp_path / "run", cache_dir=cache)
    assert res.checked_by == "measured-cpu" and res.accelerator["device"] == "cpu"
    assert res.all_constraints_met and res.status == "ok"
    lat = float(table.metrics(space.encode(res.architecture))[0][0, 0])
    assert res.metrics["latency_s"] == pytest.approx(lat) and lat <= bound * (1 + 1e-9)
    written = json.loads((tmp_path / "run" / "result.json").read_text())["metrics"]
    assert written["energy_j"] is None and written["area_mm2"] is None and written["edap"] is None  # unknown, not 0
    assert "map" in res.metrics and res.retrain["test_map"] == res.metrics["map"]
    from coexplore.detection import model_stats
    st = model_stats(space, res.architecture)
    assert res.metrics["parameters"] == st["parameters"] == res.retrain["parameters"]
    assert res.metrics["gflops"] == pytest.approx(st["gflops"])
    assert res.feasibility["witness"]["latency_s"] <= bound * (1 + 1e-9)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 2 and "surrogate_latency_s" in rows[-1]
    again = run_search(cfg, tmp_path / "run", resume=True, cache_dir=cache)  # the saved config reads back
    assert again.architecture == res.architecture
    # the CLI on a run priced on a measured device: summary, plots, export
    from coexplore.cli import main
    capsys.readouterr()
    run = str(tmp_path / "run")
    assert main(["search", "--out", run, "--resume", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "device:       cpu" in out and "energy n/a mJ, area n/a mm2, EDAP n/a" in out
    assert main(["--quiet", "plot", run]) == 0
    assert (tmp_path / "run" / "plots").is_dir() and not (tmp_path / "run" / "plots" / "accelerator.png").exists()
    assert main(["export", run]) == 2
    assert "priced on a measured device" in capsys.readouterr().err


def test_measured_source_refuses_energy_objectives(tmp_path, space, cache):
    from coexplore.search import CoExplorer
    with pytest.raises(ConfigError, match=r"objective 'edap' needs \['energy', 'area'\]"):
        CoExplorer(_cfg(space, method="dance-lut", objective="edap"), tmp_path / "r", cache_dir=cache)
    with pytest.raises(ConfigError, match=r"bounds energy"):
        CoExplorer(_cfg(space, constraints=["energy <= 1mJ"]), tmp_path / "r2", cache_dir=cache)


def test_analytical_pricing_of_the_detection_space(tmp_path, space):
    from coexplore.search import run_search
    res = run_search(_cfg(space, method="nas-hw", cost_model="analytical", objective="edap", retrain_epochs=0),
                     tmp_path / "run")
    assert res.checked_by == "analytical" and "pe_x" in res.accelerator
    assert all(np.isfinite(res.metrics[k]) for k in ("latency_s", "energy_j", "area_mm2", "edap"))
    assert 0.0 <= res.metrics["map"] <= 1.0 and res.accuracy_source == "supernet-val"
