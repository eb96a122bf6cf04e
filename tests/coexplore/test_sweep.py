"""Tests of coexplore.sweep: spec validation, point ids, the local and Ray runners, resume and
interruption safety, summaries.

No real search runs here: the runners get a fake command, a tiny Python script that writes
marker files (when it started, with which --resume flag and thread count; when it ended),
a checkpoint and a fake result.json, then exits 0, 3 (violated) or 1 (failed).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from accelerators import ConfigError
from coexplore.config import load_config
from coexplore.sweep import (CHECKPOINT, LOCK_FILE, SPEC_FILE, STATUS_FILE, SUMMARY_FILE, VIOLATED_EXIT_CODE,
                             SearchCommand, Sweep, exit_code, run_sweep, summarize)

REPO = Path(__file__).resolve().parents[2]

FAKE = r'''
import json, os, sys, time
run_dir, mode, sleep, resume = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
pid = os.getpid()
with open(os.path.join(run_dir, f"started.{pid}"), "w") as fh:
    json.dump({"t": time.time(), "resume": resume, "omp": os.environ.get("OMP_NUM_THREADS")}, fh)
os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
open(os.path.join(run_dir, "checkpoints", "last.pt"), "w").close()
print("fake search", mode, flush=True)
time.sleep(sleep)
if mode == "fail":
    print("boom: something broke", flush=True)
    sys.exit(1)
met = mode != "violate"
result = {"schema_version": 2, "method": "dance", "name": "fake", "seed": 0, "search_space": "tiny-mnist",
          "hardware_space": "small", "objective": "edap", "lambda": 1.0,
          "status": "ok" if met else "constraints-violated", "all_constraints_met": met,
          "architecture": {"s0.b0": "mb3_e3"}, "accelerator": {"pe_x": 8, "pe_y": 8, "rf_bytes": 16,
                                                                "glb_bytes": 110592, "dataflow": "ws"},
          "metrics": {"accuracy": 0.9, "latency_s": 1e-4, "energy_j": 1e-6, "area_mm2": 1.0, "edap": 1e-10},
          "constraints": [{"spec": "latency <= 0.1ms", "metric": "latency", "bound": 1e-4, "g": 0.0,
                           "satisfied": met}]}
with open(os.path.join(run_dir, "result.json.tmp"), "w") as fh:
    json.dump(result, fh)
os.replace(os.path.join(run_dir, "result.json.tmp"), os.path.join(run_dir, "result.json"))
with open(os.path.join(run_dir, f"completed.{pid}"), "w") as fh:
    json.dump({"t": time.time()}, fh)
sys.exit(0 if met else 3)
'''


def fake_command(modes=None, sleep=0.0):
    """A command_fn running FAKE; ``modes`` maps a point's seed to ok / violate / fail."""
    modes = dict(modes or {})

    def command(point, run_dir, resume):
        mode = modes.get(point.as_dict().get("seed"), "ok")
        return [sys.executable, "-c", FAKE, str(run_dir), mode, str(sleep), "1" if resume else "0"]

    return command


def fake_result(met=True):
    """A valid result.json (schema 2) of a finished run."""
    return {"schema_version": 2, "method": "dance", "name": "fake", "seed": 0, "search_space": "tiny-mnist",
            "hardware_space": "small", "objective": "edap", "lambda": 1.0,
            "status": "ok" if met else "constraints-violated", "all_constraints_met": met,
            "architecture": {"s0.b0": "mb3_e3"},
            "accelerator": {"pe_x": 8, "pe_y": 8, "rf_bytes": 16, "glb_bytes": 110592, "dataflow": "ws"},
            "metrics": {"latency_s": 1.0},
            "constraints": [{"spec": "latency <= 0.1ms", "metric": "latency", "satisfied": met}]}


def markers(run_dir, kind):
    return [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob(f"{kind}.*"))]


def small_sweep(seeds=(0, 1, 2)):
    return Sweep.from_dict({"name": "t", "set": {"method": "dance", "search_epochs": 1}, "grid": {"seed": list(seeds)}})


# ---- spec ------------------------------------------------------------------------------

def test_example_spec_resolves_base_relative_to_the_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(
        (REPO / "experiments" / "configs" / "quickstart.yaml").read_text())
    spec = tmp_path / "sweeps" / "dance.yaml"
    spec.parent.mkdir()
    spec.write_text(textwrap.dedent("""\
        name: dance-lambda
        base: ../configs/base.yaml
        set: {search_epochs: 4, hdx.growth: 2}
        grid:
          lam: [0.1, 0.5, 1.0]
          constraints: [["latency <= 0.1ms"], ["latency <= 0.2ms"]]
          objective: [edap, latency]
          seed: [0, 1]
        """))
    sweep = Sweep.load(spec)
    assert sweep.name == "dance-lambda"
    assert sweep.base == (tmp_path / "configs" / "base.yaml").resolve()
    points = sweep.points()
    assert len(points) == 3 * 2 * 2 * 2
    assert len({p.id for p in points}) == len(points)
    p = points[-1]
    assert p.overrides == ("search_epochs=4", "hdx.growth=2", "lam=1.0", "constraints=[latency <= 0.2ms]",
                           "objective=latency", "seed=1", "name=lam1.0_latency_le_0.2ms_latency_s1")
    cfg = load_config(sweep.base, p.overrides)
    assert (cfg.search_epochs, cfg.hdx.growth, cfg.lam, cfg.constraints.to_list(), cfg.seed) == (4, 2.0, 1.0,
                                                                                         ["latency <= 0.2ms"], 1)
    assert cfg.data.batch_size == 64  # from the base
    assert len(sweep.validate()) == 24
    # the resolved spec loads again from anywhere
    again = Sweep.from_dict(sweep.to_dict(), base_dir="/")
    assert [q.id for q in again.points()] == [q.id for q in points]


@pytest.mark.parametrize("spec, words", [
    ({"grid": {"seed": [0]}, "grdi": {}}, ["grdi", "allowed fields"]),
    ({"name": "x"}, ["grid"]),
    ({"grid": {}}, ["grid", "non-empty"]),
    ({"grid": {"seed": []}}, ["grid.seed", "empty"]),
    ({"grid": {"seed": 3}}, ["grid.seed", "list"]),
    ({"grid": {"seed": [1, 1]}}, ["grid.seed", "twice"]),
    ({"grid": {"lamda": [0.1]}}, ["grid.lamda", "unknown RunConfig field", "'lam'"]),
    ({"grid": {"hdx.grwth": [1.5]}}, ["grid.hdx.grwth", "growth"]),
    ({"grid": {"lam.x": [1]}}, ["grid.lam.x", "lam is not a section"]),
    ({"set": {"epohcs": 3}, "grid": {"seed": [0]}}, ["set.epohcs"]),
    ({"set": {"seed": 3}, "grid": {"seed": [0]}}, ["set.seed", "grid.seed"]),
    ({"set": [1], "grid": {"seed": [0]}}, ["set must be a mapping"]),
    ({"base": "nope.yaml", "grid": {"seed": [0]}}, ["base", "nope.yaml", "no such file"]),
    ({"name": "", "grid": {"seed": [0]}}, ["name"]),
])
def test_spec_errors_name_the_field(spec, words, tmp_path):
    with pytest.raises(ConfigError) as info:
        Sweep.from_dict(spec, base_dir=tmp_path, where="s.yaml")
    msg = str(info.value)
    assert msg.startswith("s.yaml")
    for w in words:
        assert w in msg


def test_bad_values_fail_up_front_naming_point_and_field():
    with pytest.raises(ConfigError, match=r"grid point seed=0,lam=-1\.0: .*lam must be >= 0"):
        Sweep.from_dict({"set": {"method": "dance"}, "grid": {"seed": [0, 1], "lam": [0.5, -1.0]}})
    with pytest.raises(ConfigError, match=r"grid point constraints=latency <== 1ms: .*latency <== 1ms"):
        Sweep.from_dict({"grid": {"constraints": [["latency <= 1ms"], ["latency <== 1ms"]]}})
    with pytest.raises(ConfigError, match=r"grid point method=hdx: .*needs at least one constraint"):
        Sweep.from_dict({"grid": {"method": ["dance", "hdx"]}})
    with pytest.raises(ConfigError, match="no such file"):
        Sweep.load("/nonexistent/sweep.yaml")


def test_point_ids_are_stable_readable_unique_and_safe():
    spec = {"set": {"method": "dance"},
            "grid": {"lam": [0.5, 1], "objective": ["edap", {"weighted": {"latency": 1.0, "energy": 2.0}}],
                     "constraints": [[], ["latency <= 0.1ms", "area <= 4mm2"]], "seed": [1]}}
    a, b = Sweep.from_dict(spec).points(), Sweep.from_dict(spec).points()
    assert [p.id for p in a] == [p.id for p in b]
    assert len({p.id for p in a}) == len(a) == 8
    # pinned: a folder name must not change between versions, or sweeps would stop resuming
    # short names of the varied values; the hash is that of coexplore < 0.2, whose folder
    # names (legacy_id) are still found and resumed
    assert a[0].id == "lam0.5_edap_unconstrained_s1__f74c1d14"
    assert a[0].legacy_id == "lam=0.5,objective=edap,constraints=none,seed=1__f74c1d14"
    assert a[-1].id.startswith("lam1_weighted-latency-1.0+energy-2.0_latency_le_0.1ms+area_le_4mm2_s1__")
    for p in a:
        assert all(c.isalnum() or c in "._+-" for c in p.id), p.id
        assert p.overrides[-1] == f"name={p.id.split('__')[0]}"  # each run is named after its point
        assert len(p.id) <= 130
    # the hash covers `set`, so another fixed setting gets another folder
    other = Sweep.from_dict({**spec, "set": {"method": "dance", "search_epochs": 2}}).points()
    assert [p.id.split("__")[0] for p in other] == [p.id.split("__")[0] for p in a]
    assert not {p.id for p in other} & {p.id for p in a}
    # the overrides round-trip through load_config
    cfg = load_config(None, a[-1].overrides)
    assert cfg.constraints.to_list() == ["latency <= 0.1ms", "area <= 4mm2"]
    assert cfg.objective.to_spec() == {"weighted": {"latency": 1.0, "energy": 2.0}}
    assert cfg.lam == 1.0


def test_search_command_parses_with_the_cli(tmp_path):
    from coexplore.cli import build_parser

    sweep = Sweep.from_dict({"grid": {"method": ["dance"], "lam": [0.5], "constraints": [["latency <= 0.2ms"]]}})
    p = sweep.points()[0]
    cmd = SearchCommand(base=str(REPO / "experiments/configs/quickstart.yaml"), cache_dir=str(tmp_path / "c"))
    argv = cmd(p, tmp_path / p.id, True)
    assert argv[:3] == [sys.executable, "-m", "coexplore.cli"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.quiet, args.resume) == ("search", True, True)
    assert args.out == str(tmp_path / p.id) and args.cache_dir == str(tmp_path / "c")
    assert args.overrides == list(p.overrides)
    assert "--resume" not in cmd(p, tmp_path / p.id, False)
    assert load_config(args.config, args.overrides).constraints.to_list() == ["latency <= 0.2ms"]


def test_constants_come_from_the_run_folder_contract():
    from coexplore import runfolder

    assert CHECKPOINT == Path(runfolder.CHECKPOINT_DIR) / runfolder.CHECKPOINT_FILE
    assert VIOLATED_EXIT_CODE == runfolder.ExitCode.CONSTRAINTS_VIOLATED == 3


# ---- the local runner --------------------------------------------------------------------

def test_local_runner_statuses_logs_and_files(tmp_path):
    sweep = small_sweep()
    out = tmp_path / "out"
    df = run_sweep(sweep, out, jobs=2, progress=False, threads=3,
                   command_fn=fake_command({1: "violate", 2: "fail"}))
    assert list(df["status"]) == ["done", "violated", "failed"]
    assert list(df["action"]) == ["ran", "ran", "ran"]
    assert list(df["returncode"]) == [0, 3, 1]
    assert list(df["seed"]) == [0, 1, 2]
    assert "boom: something broke" in df["note"][2]
    assert exit_code(df) == 1
    status = pd.read_csv(out / STATUS_FILE)
    assert list(status["status"]) == ["done", "violated", "failed"]
    assert Sweep.load(out / SPEC_FILE).points() == sweep.points()
    for p in sweep.points():
        log = (out / p.id / "sweep.log").read_text()
        assert "fake search" in log and "sweep: exit code" in log
        assert markers(out / p.id, "started")[0]["omp"] == "3"


def test_threads_default_to_cores_per_job(tmp_path):
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    sweep = small_sweep(seeds=(0,))
    run_sweep(sweep, tmp_path, jobs=2, progress=False, command_fn=fake_command())
    assert markers(tmp_path / sweep.points()[0].id, "started")[0]["omp"] == str(max(1, cores // 2))


@pytest.mark.parametrize("jobs", [1, 2])
def test_jobs_bounds_the_points_running_at_once(tmp_path, jobs):
    sweep = small_sweep(seeds=(0, 1))
    run_sweep(sweep, tmp_path, jobs=jobs, progress=False, command_fn=fake_command(sleep=0.8))
    a, b = ([(markers(tmp_path / p.id, "started")[0]["t"], markers(tmp_path / p.id, "completed")[0]["t"])
             for p in sweep.points()])
    overlap = max(a[0], b[0]) < min(a[1], b[1])
    assert overlap == (jobs == 2)


def test_finished_points_are_skipped_checkpoints_resumed_failures_retried(tmp_path):
    sweep = small_sweep(seeds=(0, 1, 2, 3))
    p0, p1, p2, p3 = sweep.points()
    (tmp_path / p0.id).mkdir(parents=True)
    (tmp_path / p0.id / "result.json").write_text(json.dumps(fake_result(met=False)))
    (tmp_path / p1.id / CHECKPOINT).parent.mkdir(parents=True)
    (tmp_path / p1.id / CHECKPOINT).write_bytes(b"x")
    df = run_sweep(sweep, tmp_path, jobs=2, progress=False, command_fn=fake_command({3: "fail"}))
    assert list(df["status"]) == ["violated", "done", "done", "failed"]
    assert list(df["action"]) == ["skipped", "resumed", "ran", "ran"]
    assert markers(tmp_path / p0.id, "started") == []
    assert [m["resume"] for m in markers(tmp_path / p1.id, "started")] == [True]
    assert [m["resume"] for m in markers(tmp_path / p2.id, "started")] == [False]

    # a second call reruns only the failure, resuming it from the checkpoint it left
    df = run_sweep(sweep, tmp_path, jobs=2, progress=False, command_fn=fake_command())
    assert list(df["status"]) == ["violated", "done", "done", "done"]
    assert list(df["action"]) == ["skipped", "skipped", "skipped", "resumed"]
    assert [m["resume"] for m in markers(tmp_path / p3.id, "started")] == [False, True]
    for p in (p1, p2):
        assert len(markers(tmp_path / p.id, "started")) == 1
    assert df["seconds"][1:].notna().all()
    assert exit_code(df) == VIOLATED_EXIT_CODE


def test_dry_run_writes_nothing_and_resume_false_refuses_a_used_folder(tmp_path):
    sweep = small_sweep(seeds=(0, 1))
    df = run_sweep(sweep, tmp_path / "out", dry_run=True, progress=False, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists()
    assert list(df["action"]) == ["would run", "would run"]
    assert "--cache-dir" in df["note"][0] and "coexplore.cli --quiet search" in df["note"][0]

    run_sweep(sweep, tmp_path / "out", progress=False, command_fn=fake_command())
    with pytest.raises(ConfigError, match="already holds runs"):
        run_sweep(sweep, tmp_path / "out", resume=False, progress=False, command_fn=fake_command())
    with pytest.raises(ConfigError, match="jobs"):
        run_sweep(sweep, tmp_path / "out", jobs=0, progress=False)
    with pytest.raises(ConfigError, match="backend"):
        run_sweep(sweep, tmp_path / "out", backend="slurm", progress=False)


def test_a_second_sweep_in_the_same_folder_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": "elsewhere"}))
    with open(tmp_path / LOCK_FILE, "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another sweep is running.*4242"):
            run_sweep(small_sweep(), tmp_path, progress=False, command_fn=fake_command())


def test_summarize_joins_grid_status_and_metrics(tmp_path):
    sweep = small_sweep()
    run_sweep(sweep, tmp_path, progress=False, command_fn=fake_command({1: "violate", 2: "fail"}))
    df = summarize(tmp_path)
    assert list(df["seed"]) == [0, 1, 2]
    assert list(df["status"]) == ["done", "violated", "failed"]
    assert df["latency_s"].tolist()[:2] == [1e-4, 1e-4] and pd.isna(df["latency_s"][2])
    assert df["all_constraints_met"].tolist()[:2] == [True, False]
    assert "boom" in df["note"][2]
    assert (tmp_path / SUMMARY_FILE).is_file()
    assert len(pd.read_csv(tmp_path / SUMMARY_FILE)) == 3

    # a point left "running" by a sweep that died, with nobody holding its lock
    status = pd.read_csv(tmp_path / STATUS_FILE)
    status.loc[2, "status"] = "running"
    status.to_csv(tmp_path / STATUS_FILE, index=False)
    assert summarize(tmp_path, write=False)["status"][2] == "interrupted"
    with pytest.raises(ConfigError, match="sweep.yaml"):
        summarize(tmp_path / sweep.points()[0].id)


# ---- interruption ----------------------------------------------------------------------

DRIVER = textwrap.dedent('''
    import signal
    import sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job may start with SIGINT ignored
    sys.path.insert(0, {repo!r})
    from coexplore.sweep import Sweep, run_sweep
    FAKE = {fake!r}
    def command(point, run_dir, resume):
        return [sys.executable, "-c", FAKE, str(run_dir), "ok", {sleep!r}, "1" if resume else "0"]
    sweep = Sweep.from_dict({{"name": "t", "set": {{"method": "dance"}}, "grid": {{"seed": [0, 1, 2, 3]}}}})
    try:
        run_sweep(sweep, sys.argv[1], jobs=2, progress=False, command_fn=command, grace_s=2,
                  backend=sys.argv[2] if len(sys.argv) > 2 else "local")
    except KeyboardInterrupt:
        sys.exit(130)
''')


def start_driver(tmp_path, out, sleep):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(repo=str(REPO), fake=FAKE, sleep=str(sleep)))
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    def both_running():
        if len(list(out.glob("*/started.*"))) < 2 or not (out / STATUS_FILE).is_file():
            return False
        return (pd.read_csv(out / STATUS_FILE)["status"] == "running").sum() == 2

    while not both_running():  # both workers busy
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "the sweep did not start its points"
        time.sleep(0.05)
    return proc


def test_ctrl_c_stops_the_points_writes_status_and_a_rerun_completes_each_once(tmp_path):
    out = tmp_path / "out"
    sweep = Sweep.from_dict({"name": "t", "set": {"method": "dance"}, "grid": {"seed": [0, 1, 2, 3]}})
    proc = start_driver(tmp_path, out, sleep=30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130, proc.stdout.read().decode()
    status = pd.read_csv(out / STATUS_FILE)
    assert sorted(status["status"]) == ["interrupted", "interrupted", "pending", "pending"]
    assert not list(out.glob("*/completed.*"))

    df = run_sweep(sweep, out, jobs=2, progress=False, command_fn=fake_command(sleep=0.1))
    assert set(df["status"]) == {"done"}
    for p in sweep.points():
        assert len(markers(out / p.id, "completed")) == 1
        starts = markers(out / p.id, "started")
        # the interrupted points restart from their checkpoint, the others from scratch
        assert [s["resume"] for s in starts] in ([False], [False, True])
    assert sorted(df["action"]) == ["ran", "ran", "resumed", "resumed"]


def test_sigkill_of_the_sweep_then_rerun_runs_every_point_exactly_once(tmp_path):
    out = tmp_path / "out"
    sweep = Sweep.from_dict({"name": "t", "set": {"method": "dance"}, "grid": {"seed": [0, 1, 2, 3]}})
    proc = start_driver(tmp_path, out, sleep=1.5)
    proc.kill()
    proc.wait(timeout=10)
    assert sorted(pd.read_csv(out / STATUS_FILE)["status"]) == ["pending", "pending", "running", "running"]

    # the orphaned points keep their folder locks; the rerun waits for them instead of starting them again
    df = run_sweep(sweep, out, jobs=2, progress=False, command_fn=fake_command(sleep=0.1))
    assert set(df["status"]) == {"done"}
    assert sorted(df["action"]) == ["ran", "ran", "skipped", "skipped"]
    for p in sweep.points():
        assert len(markers(out / p.id, "started")) == 1
        assert len(markers(out / p.id, "completed")) == 1


# ---- the Ray backend ---------------------------------------------------------------------

def test_ray_backend_missing_gives_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r'pip install "coexplore\[ray\]"'):
        run_sweep(small_sweep(), tmp_path, backend="ray", progress=False, command_fn=fake_command())


def test_ray_backend_local_mode(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install "coexplore[ray]"')
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sweep = small_sweep()
    p0 = sweep.points()[0]
    (tmp_path / p0.id).mkdir()
    (tmp_path / p0.id / "result.json").write_text(json.dumps(fake_result(met=True)))
    (tmp_path / sweep.points()[1].id / CHECKPOINT).parent.mkdir(parents=True)
    (tmp_path / sweep.points()[1].id / CHECKPOINT).write_bytes(b"x")
    df = run_sweep(sweep, tmp_path, jobs=2, backend="ray", threads=1, progress=False,
                   command_fn=fake_command({2: "violate"}))
    assert list(df["status"]) == ["done", "done", "violated"]
    assert list(df["action"]) == ["skipped", "resumed", "ran"]
    assert [m["resume"] for m in markers(tmp_path / sweep.points()[1].id, "started")] == [True]
    assert list(pd.read_csv(tmp_path / STATUS_FILE)["status"]) == ["done", "done", "violated"]


def test_a_sweep_folder_of_the_old_naming_is_resumed(tmp_path):
    sweep = small_sweep(seeds=(0, 1))
    p0, p1 = sweep.points()
    (tmp_path / p0.legacy_id).mkdir(parents=True)  # finished under the old folder name
    (tmp_path / p0.legacy_id / "result.json").write_text(json.dumps(fake_result(met=True)))
    df = run_sweep(sweep, tmp_path, jobs=1, progress=False, command_fn=fake_command())
    assert list(df["point"]) == [p0.legacy_id, p1.id]
    assert list(df["status"]) == ["done", "done"] and list(df["action"]) == ["skipped", "ran"]
    assert not (tmp_path / p0.id).exists()
