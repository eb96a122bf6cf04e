"""Tests of coexplore.plots: trajectory plots from metrics.csv and accelerator figures."""

import numpy as np
import pandas as pd
import pytest

from accelerators import ConfigError, evaluate, get_accelerator, get_workload
from accelerators.workload import conv, depthwise, linear
from coexplore.plots import energy_breakdown_pj, plot_accelerator, plot_trajectories

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def full_metrics(n=6):
    e = np.arange(n)
    return pd.DataFrame({
        "epoch": e, "loss": 2.0 - 0.1 * e, "ce": 1.5 - 0.1 * e, "cost_loss": 0.5 - 0.01 * e,
        "val_acc": 0.5 + 0.05 * e, "surrogate_latency_s": 2e-3 - 1e-4 * e, "surrogate_energy_j": 5e-4 - 1e-5 * e,
        "surrogate_area_mm2": 3.0 + 0 * e, "argmax_latency_s": 2.1e-3 - 1e-4 * e, "argmax_energy_j": 5.2e-4 - 1e-5 * e,
        "argmax_area_mm2": 3.1 + 0 * e, "argmax_edap": 3e-6 - 1e-7 * e, "entropy": 1.5 - 0.2 * e,
        "tau": 5.0 * 0.9 ** e, "g_latency": 1e-4 - 1e-4 * e, "g_area": -0.5 + 0 * e,
    })


def check_figures(paths):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0
    assert paths[0].read_bytes()[:8] == PNG_MAGIC
    assert b"<svg" in paths[1].read_bytes()[:2000]


def test_trajectory_from_full_metrics(tmp_path):
    full_metrics().to_csv(tmp_path / "metrics.csv", index=False)
    paths = plot_trajectories(tmp_path)
    assert paths[0] == tmp_path / "plots" / "trajectory.png"
    check_figures(paths)


def test_trajectory_tolerates_missing_columns_and_rows(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"val_acc": [0.3, 0.4, float("nan")], "g_fps": [1.0, None, -2.0]}).to_csv(run / "metrics.csv",
                                                                                          index=False)
    check_figures(plot_trajectories(run, out_dir=tmp_path / "elsewhere"))
    (run / "metrics.csv").write_text("epoch,loss\n")  # a run that has not finished an epoch
    check_figures(plot_trajectories(run))
    (run / "metrics.csv").write_text("")
    check_figures(plot_trajectories(run))


def test_trajectory_needs_metrics_csv(tmp_path):
    with pytest.raises(ConfigError, match="metrics.csv"):
        plot_trajectories(tmp_path)


def test_accelerator_figure_eyeriss_alexnet(tmp_path):
    acc, layers = get_accelerator("eyeriss"), get_workload("alexnet")
    paths = plot_accelerator(acc, layers, tmp_path / "eyeriss.png", formats=("png", "svg"))
    check_figures(paths)
    assert plot_accelerator(acc, layers, tmp_path / "only.svg") == [tmp_path / "only.svg"]


def test_energy_breakdown_sums_to_the_cost_model_energy():
    acc = get_accelerator("tpu-like")
    layers = [conv(3, 16, 3, 32, name="c0"), depthwise(16, 3, 32, name="dw"), conv(16, 32, 1, 32, name="pw"),
              depthwise(16, 3, 32, name="dw_again"), linear(32, 10, N=4, name="fc")]
    breakdown = energy_breakdown_pj(acc, layers)
    assert set(breakdown) == {"mac", "rf", "noc", "glb", "dram", "static"}
    total_j = float(evaluate(layers, [acc]).energy_total_j[0])
    assert sum(breakdown.values()) * 1e-12 == pytest.approx(total_j, rel=1e-6)


def test_accelerator_figure_rejects_empty_workload(tmp_path):
    with pytest.raises(ConfigError):
        plot_accelerator(get_accelerator("eyeriss"), [], tmp_path / "x.png")
