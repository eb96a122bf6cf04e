"""End-to-end tests of the co-exploration search: config, results checked by the analytical
model, HDX constraints, repair, and bit-exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from accelerators import ConfigError
from coexplore.config import load_config
from coexplore.constraints import InfeasibleConstraintError
from coexplore.search import CoExplorer, run_search

TINY = ["search_space=tiny-mnist", "hardware_space=small", "data.limit=192", "data.batch_size=32",
        "steps_per_epoch=3", "warmup_epochs=1", "search_epochs=2", "progress=false",
        "evaluator.num_arch=300", "evaluator.pairs_per_arch=8", "evaluator.epochs_generator=3",
        "evaluator.epochs_estimator=1", "path_mode=gumbel"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def cfg(*extra):
    return load_config(None, TINY + list(extra))


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------

def test_config_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: dance\nlam: 0.3\ndata: {batch_size: 16}\n")
    c = load_config(p, ["lam=0.7", "data.limit=100", "constraints=[latency <= 1ms]"])
    assert c.method == "dance" and c.lam == 0.7 and c.data.batch_size == 16 and c.data.limit == 100
    assert c.constraints.to_list() == ["latency <= 1ms"]


@pytest.mark.parametrize("overrides,match", [
    (["bogus=1"], r"unknown field\(s\) \['bogus'\]"),
    (["data.bogus=1"], r"data: unknown field"),
    (["method=magic"], r"unknown method 'magic'; known methods: dance, dance-lut, evolution, hdx, hdx-lut, nas-hw, random"),
    (["method=hdx"], "needs at least one constraint"),
    (["search_epochs=zero"], "search_epochs must be an integer"),
    (["epochs=3"], "epochs was renamed"),
    (["constraints=[speed <= 3]"], "unknown metric"),
    (["objective=speed"], "objective 'speed' is unknown"),
    (["tau_min=9"], "tau_min"),
    (["lam"], "expected key=value"),
])
def test_bad_configs_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, ["method=dance"] + overrides if overrides[0].split("=")[0] != "method" else overrides)


def test_impossible_constraint_is_refused_with_both_numbers(tmp_path, cache):
    with pytest.raises(InfeasibleConstraintError, match=r"latency <= 1 ?us is unreachable: .*takes"):
        CoExplorer(cfg("method=hdx", "constraints=[latency <= 1us]"), tmp_path / "r", cache_dir=cache)


# ---------------------------------------------------------------------------------------
# a whole run
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hdx_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("runs") / "hdx"
    c = cfg("method=hdx", "constraints=[latency <= 0.06ms]", "lam=0.0")
    return out, run_search(c, out, cache_dir=cache)


def test_run_folder_contents(hdx_run):
    out, res = hdx_run
    for f in ("config.yaml", "metrics.csv", "result.json", "checkpoints/last.pt"):
        assert (out / f).is_file(), f
    import pandas as pd
    m = pd.read_csv(out / "metrics.csv")
    assert list(m["epoch"]) == [0, 1, 2] and list(m["phase"]) == ["warmup", "search", "search"]
    for col in ("loss", "ce", "cost_loss", "val_acc", "surrogate_latency_s", "argmax_latency_s", "argmax_edap",
                "g_latency", "entropy", "tau"):
        assert col in m.columns, col
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["constraints"] == ["latency <= 0.06ms"] and saved["method"] == "hdx"


def test_result_is_checked_by_the_analytical_model(hdx_run):
    out, res = hdx_run
    from accelerators import Accelerator, evaluate
    from search_spaces import get_search_space
    r = json.loads((out / "result.json").read_text())
    assert r["checked_by"] == "analytical" and r["all_constraints_met"] is True and r["status"] == "ok"
    layers = get_search_space("tiny-mnist").layers(r["architecture"])
    c = evaluate(layers, [Accelerator.from_dict(r["accelerator"])])
    assert r["metrics"]["latency_s"] == pytest.approx(float(c.latency_total_s[0]), rel=1e-9)
    assert r["metrics"]["energy_j"] == pytest.approx(float(c.energy_total_j[0]), rel=1e-9)
    assert r["metrics"]["latency_s"] <= 0.06e-3
    (chk,) = r["constraints"]
    assert chk["g"] <= 0 and chk["satisfied"] and chk["value"] == pytest.approx(r["metrics"]["latency_s"])


def test_refused_to_overwrite_a_finished_run(hdx_run, cache):
    out, _ = hdx_run
    with pytest.raises(ConfigError, match="finished run"):
        run_search(cfg("method=hdx", "constraints=[latency <= 0.06ms]", "lam=0.0"), out, cache_dir=cache)


def _just_reachable(cache):
    """A latency bound only the single fastest design of tiny-mnist x small meets."""
    from accelerators import get_hardware_space
    from coexplore.pricing import CostTable
    from search_spaces import get_search_space
    t = CostTable(get_search_space("tiny-mnist"), get_hardware_space("small"))
    best, arch, _ = t.least("latency")
    import itertools
    every = np.stack([t.space.encode(dict(zip(t.space.labels, ops)))
                      for ops in itertools.product(*[b.candidates for b in t.space.blocks])])
    meets = t.metrics(every)[0].min(axis=1) <= best * 1.0005
    assert meets.sum() == 1  # one architecture of the 10,000 can meet it
    return best * 1.0005, arch


def test_violating_design_is_repaired_or_flagged(tmp_path, cache):
    # a bound only the single fastest design meets; an accuracy-only search (lam = 0) never
    # ends there: with repair the result meets it by repair, without repair it says so
    bound, fastest = _just_reachable(cache)
    tight = f"constraints=[latency <= {bound * 1e6:.6f}us]"
    r1 = run_search(cfg("method=dance", "lam=0.0", tight, "repair=true"), tmp_path / "a", cache_dir=cache)
    assert r1["all_constraints_met"] and r1["status"] == "ok" and r1["repairs"]
    assert r1["metrics"]["latency_s"] <= bound
    r2 = run_search(cfg("method=dance", "lam=0.0", tight, "repair=false"), tmp_path / "b", cache_dir=cache)
    assert r2["architecture"] != fastest and r2["repairs"] == []
    assert r2["status"] == "constraints-violated" and not r2["all_constraints_met"]
    assert [c["satisfied"] for c in r2["constraints"]] == [False] and r2["constraints"][0]["g"] > 0


def test_cli_exit_code_flags_violation(tmp_path, cache):
    from coexplore.cli import main
    bound, _ = _just_reachable(cache)
    rc = main(["--quiet", "search", "--out", str(tmp_path / "r"), "--cache-dir", str(cache), *TINY, "method=dance",
               "lam=0.0", f"constraints=[latency <= {bound * 1e6:.6f}us]", "repair=false", "--format", "json"])
    r = json.loads((tmp_path / "r" / "result.json").read_text())
    assert rc == 3 and r["status"] == "constraints-violated"
    rc = main(["--quiet", "search", "--out", str(tmp_path / "ok"), "--cache-dir", str(cache), *TINY, "method=dance",
               "lam=0.0", "constraints=[latency <= 1ms]", "repair=false"])
    assert rc == 0 and json.loads((tmp_path / "ok" / "result.json").read_text())["status"] == "ok"


def test_run_seconds_count_the_retraining_once(tmp_path, cache, monkeypatch):
    """result.seconds is the run's own clock (from the session's start to its result): the
    retraining (here a stub that takes 3 s) is in it once, not added again on top."""
    import coexplore.finalize as fin

    def slow_retrain(space, sample, data, epochs, lr, device, seed, **kw):
        time.sleep(3.0)
        return {"epochs": epochs, "lr": lr, "test_accuracy": 0.5, "test_loss": 1.0, "test_samples": 10,
                "final_train_accuracy": 0.5, "parameters": 1, "seconds": 3.0}

    clock = []
    finalize = fin.Finalizer.finalize

    def spy(self):
        out = finalize(self)
        clock.append(time.perf_counter() - self.run._t_start)  # the run's clock when its result is made
        return out

    monkeypatch.setattr(fin, "retrain", slow_retrain)
    monkeypatch.setattr(fin.Finalizer, "finalize", spy)
    r = run_search(cfg("method=hdx", "surrogate=exact", "constraints=[latency <= 1s]", "retrain_epochs=1"), tmp_path / "run",
                   cache_dir=cache)
    assert r.retrain["seconds"] == 3.0
    assert 3.0 <= r.seconds <= clock[0]


# ---------------------------------------------------------------------------------------
# resume after SIGKILL gives the same result as an uninterrupted run
# ---------------------------------------------------------------------------------------

def _search_cmd(out, cache, extra=()):
    return [sys.executable, "-m", "coexplore.cli", "--quiet", "search", "--out", str(out), "--cache-dir", str(cache),
            *TINY, "search_epochs=3", "method=hdx", "constraints=[latency <= 0.06ms]", "lam=0.1", *extra]


def _strip(r):
    r = dict(r)
    r.pop("feasibility", None)
    r.pop("seconds", None)  # wall time
    return r


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, cache):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(_search_cmd(a, cache), check=True, env=env, timeout=600, capture_output=True)
    ra = json.loads((a / "result.json").read_text())

    proc = subprocess.Popen(_search_cmd(b, cache), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = b / "checkpoints" / "last.pt"
    t0 = time.time()
    while not ck.exists() and time.time() - t0 < 300 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "result.json").exists()
    r = subprocess.run(_search_cmd(b, cache, ["--resume"]), env=env, timeout=600, capture_output=True, text=True)
    assert r.returncode == {"ok": 0, "constraints-violated": 3}[ra["status"]], r.stderr
    rb = json.loads((b / "result.json").read_text())
    assert _strip(ra) == _strip(rb)
    import pandas as pd
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    pd.testing.assert_frame_equal(ma.drop(columns=["seconds"]), mb.drop(columns=["seconds"]))


@pytest.mark.parametrize("method", ["random", "evolution"])
def test_one_shot_baselines_run_through_the_same_interface(tmp_path, cache, method):
    r = run_search(cfg(f"method={method}", "baseline_budget=6", "population=4", "constraints=[latency <= 0.08ms]"),
                   tmp_path / method, cache_dir=cache)
    assert r["method"] == method and r["baseline"]["evaluations"] <= 6
    assert r["all_constraints_met"] and r["checked_by"] == "analytical"
    assert (tmp_path / method / "baseline_history.csv").is_file()
