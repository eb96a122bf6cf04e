"""Tests of coexplore.pareto: fronts, hypervolume, reading run folders, writing plots."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import yaml

from accelerators import ConfigError
from coexplore.pareto import (hypervolume_2d, load_runs, pareto_mask, pareto_table, write_pareto)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def brute_force_mask(x, y):
    n = len(x)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if np.isnan(x[i]) or np.isnan(y[i]):
            keep[i] = False
            continue
        for j in range(n):
            if (x[j] <= x[i] and y[j] <= y[i]) and (x[j] < x[i] or y[j] < y[i]):
                keep[i] = False
                break
    return keep


# ---- pareto_mask ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_pareto_mask_matches_brute_force_with_ties_and_duplicates(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    # a small integer grid forces ties in x, ties in y and exact duplicates
    x = rng.integers(0, 8, n).astype(float)
    y = rng.integers(0, 8, n).astype(float)
    np.testing.assert_array_equal(pareto_mask(x, y), brute_force_mask(x, y))


def test_pareto_mask_continuous_points_and_nan():
    rng = np.random.default_rng(42)
    x, y = rng.random(300), rng.random(300)
    x[[3, 10]] = np.nan
    y[20] = np.nan
    mask = pareto_mask(x, y)
    np.testing.assert_array_equal(mask, brute_force_mask(x, y))
    assert not mask[[3, 10, 20]].any()


def test_pareto_mask_edge_cases():
    assert pareto_mask([], []).shape == (0,)
    assert pareto_mask([1.0], [2.0]).tolist() == [True]
    assert pareto_mask([1, 1, 1], [2, 2, 2]).tolist() == [True, True, True]  # duplicates all kept
    assert pareto_mask([1, 1, 2], [2, 3, 1]).tolist() == [True, False, True]  # tie in x
    assert pareto_mask([1, 2, 3], [5, 5, 5]).tolist() == [True, False, False]  # tie in y
    with pytest.raises(ValueError):
        pareto_mask([1, 2], [1])


# ---- hypervolume_2d ---------------------------------------------------------------------

def test_hypervolume_hand_computed():
    pts = [(1, 3), (2, 2), (3, 1)]
    # strips: (2-1)*(4-3) + (3-2)*(4-2) + (4-3)*(4-1) = 1 + 2 + 3
    assert hypervolume_2d(pts, (4, 4)) == pytest.approx(6.0)
    # a dominated point, a duplicate, points on or beyond the reference change nothing
    more = pts + [(3, 3), (2, 2), (5, 0), (0.5, 4.0), (4.0, 0.5)]
    assert hypervolume_2d(more, (4, 4)) == pytest.approx(6.0)
    assert hypervolume_2d([], (1, 1)) == 0.0
    assert hypervolume_2d([(2, 2)], (1, 1)) == 0.0
    assert hypervolume_2d([(0, 0)], (1, 2)) == pytest.approx(2.0)


def test_hypervolume_matches_monte_carlo():
    rng = np.random.default_rng(7)
    pts = rng.random((25, 2))
    ref = (1.1, 1.2)
    exact = hypervolume_2d(pts, ref)
    s = rng.random((200_000, 2)) * np.array(ref)
    dominated = ((pts[None, :, 0] <= s[:, None, 0]) & (pts[None, :, 1] <= s[:, None, 1])).any(axis=1)
    estimate = dominated.mean() * ref[0] * ref[1]
    assert exact == pytest.approx(estimate, abs=0.01)
    # invariant under shuffling and under adding dominated points
    assert hypervolume_2d(pts[::-1], ref) == pytest.approx(exact)
    assert hypervolume_2d(np.vstack([pts, pts + 0.05]), ref) == pytest.approx(exact)


# ---- run folders ------------------------------------------------------------------------

def make_run(folder, method="hdx", seed=0, latency=1.2e-3, error=0.09, met=True, bound=2e-3, energy=4e-4,
             pe_x=16):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": method, "seed": seed}))
    pd.DataFrame({"epoch": [0, 1], "loss": [2.0, 1.5], "val_acc": [0.5, 0.8]}).to_csv(folder / "metrics.csv",
                                                                                      index=False)
    result = {
        "schema_version": 2, "method": method, "name": f"{method}-{seed}", "seed": seed, "search_space": "tiny-mnist",
        "hardware_space": "small", "objective": "edap", "lambda": 1.0,
        "status": "ok" if met else "constraints-violated",
        "architecture": {"s1.b0": "mb3_e3"},
        "accelerator": {"pe_x": pe_x, "pe_y": 8, "rf_bytes": 32, "glb_bytes": 110592, "dataflow": "rs",
                        "clock_hz": 2e8, "dram_bw": 16.0, "glb_bw": 64.0, "word_bits": 16},
        "metrics": {"accuracy": 1 - error, "error": error, "latency_s": latency, "fps": 1 / latency,
                    "energy_j": energy, "area_mm2": 3.1, "edap": energy * latency * 3.1, "edp": energy * latency},
        "accuracy_source": "supernet-val",
        "constraints": [{"spec": "latency <= 2ms", "metric": "latency", "op": "<=", "bound": bound,
                         "value": latency, "g": latency - bound, "satisfied": latency <= bound}],
        "all_constraints_met": met, "checked_by": "analytical", "cost_model_version": "1.0",
    }
    (folder / "result.json").write_text(json.dumps(result))
    return folder


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    make_run(root / "hdx" / "s0", "hdx", 0, latency=1.0e-3, error=0.10)
    make_run(root / "hdx" / "s1", "hdx", 1, latency=1.5e-3, error=0.08)
    make_run(root / "dance" / "s0", "dance", 0, latency=2.5e-3, error=0.07, met=False)
    make_run(root / "dance" / "s1", "dance", 1, latency=2.6e-3, error=0.09, met=False)  # dominated
    make_run(root / "dance" / "s2", "dance", 2, latency=1.5e-3, error=0.08, met=True)  # duplicate point
    return root


def test_load_runs_from_parent_folder(sweep):
    df = load_runs(sweep)
    assert len(df) == 5
    for col in ("run", "method", "seed", "accuracy", "error", "latency_s", "fps", "energy_j", "area_mm2", "edap",
                "edp", "acc_pe_x", "acc_dataflow", "acc_word_bits", "all_constraints_met", "constraints",
                "bound_latency", "g_latency", "search_space", "checked_by"):
        assert col in df.columns, col
    assert "architecture" not in df.columns
    row = df[df["run"] == str(sweep / "hdx" / "s1")].iloc[0]
    assert row["method"] == "hdx" and row["seed"] == 1
    assert row["latency_s"] == pytest.approx(1.5e-3)
    assert row["acc_pe_x"] == 16 and row["acc_dataflow"] == "rs"
    assert row["constraints"] == "latency <= 2ms"
    assert row["bound_latency"] == pytest.approx(2e-3)
    assert bool(row["all_constraints_met"]) is True
    assert list(df["run"]) == sorted(df["run"])


def test_load_runs_run_folders_and_lists(sweep):
    one = load_runs(sweep / "hdx" / "s0")
    assert len(one) == 1 and one["method"].iloc[0] == "hdx"
    assert len(load_runs(sweep / "hdx" / "s0" / "result.json")) == 1
    both = load_runs([sweep / "hdx", sweep / "hdx" / "s0", str(sweep / "dance" / "s0")])
    assert len(both) == 3  # the folder given twice is read once


def test_load_runs_malformed_result_names_the_path(tmp_path):
    run = make_run(tmp_path / "bad")
    (run / "result.json").write_text("{not json")
    with pytest.raises(ConfigError, match=str(run / "result.json")):
        load_runs(run)
    (run / "result.json").write_text(json.dumps({"method": "hdx"}))  # no required fields
    with pytest.raises(ConfigError, match=r"missing required field\(s\) \['name', 'seed'"):
        load_runs(run)
    good = json.loads(json.dumps(make_run(tmp_path / "good") and
                                 json.loads((tmp_path / "good" / "result.json").read_text())))
    (run / "result.json").write_text(json.dumps({**good, "metrics": {"latency_s": "fast"}}))
    with pytest.raises(ConfigError, match="metrics.latency_s must be a number"):
        load_runs(run)
    (run / "result.json").write_text(json.dumps({**good, "status": "great"}))
    with pytest.raises(ConfigError, match="status must be one of"):
        load_runs(run)
    (run / "result.json").write_text(json.dumps({**good, "schema_version": 99}))
    with pytest.raises(ConfigError, match="schema_version 99"):
        load_runs(run)


def test_load_runs_skips_a_bad_run_inside_a_parent_with_a_warning(sweep, caplog):
    (sweep / "dance" / "s1" / "result.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger="coexplore.pareto"):
        df = load_runs(sweep)
    assert len(df) == 4
    assert any("s1" in r.getMessage() for r in caplog.records)


def test_load_runs_missing_or_empty(tmp_path):
    with pytest.raises(ConfigError, match="no such"):
        load_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no result.json"):
        load_runs(tmp_path / "empty")


# ---- tables and files -------------------------------------------------------------------

def test_pareto_table_front_and_directions(sweep):
    df = load_runs(sweep)
    front = pareto_table(df, "latency", "error")
    # 1.0 ms/10%, the two copies of 1.5 ms/8%, 2.5 ms/7%; 2.6 ms/9% is dominated
    assert front["latency_s"].tolist() == pytest.approx([1.0e-3, 1.5e-3, 1.5e-3, 2.5e-3])
    assert front["latency_ms"].tolist() == pytest.approx([1.0, 1.5, 1.5, 2.5])
    assert front["error_pct"].tolist() == pytest.approx([10.0, 8.0, 8.0, 7.0])
    # maximised metrics: high fps and high accuracy are better, so the same runs are on the front
    front2 = pareto_table(df, "fps", "accuracy")
    assert sorted(front2["run"]) == sorted(front["run"])
    with pytest.raises(ConfigError, match="unknown metric"):
        pareto_table(df, "speed", "error")
    with pytest.raises(ConfigError):
        pareto_table(df, "error", "error")


def test_write_pareto_files_and_hypervolume(sweep, tmp_path):
    out = tmp_path / "out"
    res = write_pareto(sweep, out, x="latency", y="error", constraints={"accuracy": 0.9})
    for key in ("csv", "png", "svg"):
        path = res["paths"][key]
        assert path.is_file() and path.stat().st_size > 0
        assert path.parent == out
    assert res["paths"]["png"].read_bytes()[:8] == PNG_MAGIC
    assert b"<svg" in res["paths"]["svg"].read_bytes()[:2000]
    csv = pd.read_csv(res["paths"]["csv"])
    assert len(csv) == len(res["front"]) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    df = load_runs(sweep)
    ref = (1.1 * df["latency_s"].max(), 1.1 * df["error"].max())
    assert res["reference_point"] == pytest.approx(list(ref))
    expected = hypervolume_2d(np.c_[df["latency_s"], df["error"]], ref)
    assert res["hypervolume"] == pytest.approx(expected) and res["hypervolume"] > 0
    assert res["n_runs"] == 5 and res["axes"] == {"x": "latency", "y": "error"}
    # an explicit reference point is used as given
    res2 = write_pareto(df, out, "energy", "error", ref=(1.0, 1.0), name="e")
    assert res2["reference_point"] == [1.0, 1.0]
    assert res2["paths"]["png"].name == "e_energy_error.png"
