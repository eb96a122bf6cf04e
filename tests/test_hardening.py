"""Hardening: no code runs from a file, a diverged run is never a success, no lost or mixed
results, atomic writes that leave no debris."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from coexplore.cli import main
from coexplore.common import ConfigError, atomic_write_text
from coexplore.config import load_config
from coexplore.runfolder import FolderLock, read_result, run_lock
from coexplore.search import CoExplorer, run_search

TINY = ["search_space=tiny-mnist", "hardware_space=small", "data.limit=96", "data.batch_size=16",
        "steps_per_epoch=2", "warmup_epochs=1", "search_epochs=1", "progress=false", "evaluator.num_arch=200",
        "evaluator.pairs_per_arch=8", "evaluator.epochs_generator=2", "evaluator.epochs_estimator=1"]
MARKER = "coexplore-payload-ran"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def cfg(*extra):
    return load_config(None, TINY + list(extra))


class Payload:
    """Unpickling this object creates a marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------------------
# no code runs from a checkpoint
# ---------------------------------------------------------------------------------------

@pytest.fixture()
def interrupted_run(tmp_path, cache):
    """A run folder with a real checkpoint after one epoch (and no result)."""
    run = tmp_path / "run"
    c = cfg("method=dance", "search_epochs=2")
    ex = CoExplorer(c, run, cache_dir=cache)
    run.mkdir()
    c.save(run / "config.yaml")
    ex.run_epoch()
    ex.save_checkpoint()
    return run, c


def _plant(run: Path, marker: Path, extra_entry: bool) -> None:
    ck = run / "checkpoints" / "last.pt"
    if extra_entry:  # a real checkpoint with one more entry: the payload
        st = torch.load(ck, weights_only=True)
        st["payload"] = Payload(marker)
    else:
        st = {"format": 2, "payload": Payload(marker)}
    torch.save(st, ck)


@pytest.mark.parametrize("extra_entry", [True, False], ids=["real+payload", "payload-only"])
def test_search_resume_refuses_a_pickle_payload(interrupted_run, tmp_path, cache, capsys, extra_entry):
    run, _ = interrupted_run
    marker = tmp_path / MARKER
    _plant(run, marker, extra_entry)
    rc = main(["--quiet", "search", "--out", str(run), "--resume", "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and "refused" in err and "last.pt" in err
    assert not marker.exists()
    assert not (run / "result.json").exists()


def test_sweep_over_a_folder_holding_a_payload_does_not_run_it(tmp_path, cache):
    from coexplore.sweep import Sweep, run_sweep
    sweep = Sweep.from_dict({"name": "t", "set": {"method": "dance", **{k: v for k, v in
                                                                       (t.split("=", 1) for t in TINY)}},
                             "grid": {"seed": [0]}})
    (point,) = sweep.points()
    ck = tmp_path / "s" / point.id / "checkpoints" / "last.pt"
    ck.parent.mkdir(parents=True)
    marker = tmp_path / MARKER
    torch.save({"format": 2, "payload": Payload(marker)}, ck)
    df = run_sweep(sweep, tmp_path / "s", jobs=1, progress=False, cache_dir=cache)
    assert list(df["status"]) == ["failed"] and "refused" in df["note"].iloc[0]
    assert not marker.exists()


def test_demo_refuses_a_payload_in_its_folder(tmp_path, cache, capsys):
    ck = tmp_path / "demo" / "hdx" / "checkpoints" / "last.pt"
    ck.parent.mkdir(parents=True)
    marker = tmp_path / MARKER
    torch.save({"format": 2, "payload": Payload(marker)}, ck)
    rc = main(["--quiet", "demo", "--quick", "--out", str(tmp_path / "demo"), "-j", "1", "--cache-dir", str(cache)])
    assert rc != 0 and not marker.exists()
    assert "refused" in capsys.readouterr().err


def test_evaluator_checkpoints_stay_weights_only(tmp_path):
    from coexplore.evaluator import Evaluator
    marker = tmp_path / MARKER
    torch.save({"format": 1, "payload": Payload(marker)}, tmp_path / "ev.pt")
    with pytest.raises(ConfigError, match="not a loadable evaluator checkpoint"):
        Evaluator.load(tmp_path / "ev.pt")
    assert not marker.exists()


def test_yaml_tags_never_construct_objects(tmp_path):
    (tmp_path / "c.yaml").write_text(f"lam: !!python/object/apply:builtins.open ['{tmp_path / MARKER}', 'w']\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "c.yaml")
    assert not (tmp_path / MARKER).exists()


def test_run_names_are_names_not_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("../../../escape", "/tmp/abs", "a/b", ".hidden"):
        rc = main(["--quiet", "search", *TINY, "method=dance", f"name={name}"])
        assert rc == 2 and "name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# a failed or diverged run never reads as a success
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,where", [
    ("w_lr=1e9", "weight step"),
    ("retrain_lr=1e9", "retraining"),
])
def test_divergence_stops_the_run(override, where, tmp_path, cache, capsys):
    extra = ["retrain_epochs=1"] if override.startswith("retrain") else []
    rc = main(["--quiet", "search", "--out", str(tmp_path / "r"), "--cache-dir", str(cache), *TINY, "method=dance",
               override, *extra])
    assert rc == 4
    assert "DIVERGED" in capsys.readouterr().err
    r = read_result(tmp_path / "r")
    assert r.status == "diverged" and where in r.message
    assert r.architecture is None and r.accelerator is None and r.metrics == {}
    assert not (tmp_path / "r" / "plots" / "accelerator.png").exists()


def test_nan_architecture_parameters_stop_the_run(tmp_path, cache):
    ex = CoExplorer(cfg("method=dance"), tmp_path / "r", cache_dir=cache)
    with torch.no_grad():
        ex.supernet.arch_parameters()[0][0] = float("nan")
    res = ex.run()
    assert res.status == "diverged" and "architecture" in res.message and res.exit_code == 4


def test_a_chance_level_run_is_marked(tmp_path, cache):
    res = run_search(cfg("method=dance", "data.limit=20", "steps_per_epoch=1"), tmp_path / "r", cache_dir=cache)
    assert res.chance_level is True
    assert json.loads((tmp_path / "r" / "result.json").read_text())["chance_level"] is True
    from coexplore.pareto import load_runs
    assert bool(load_runs(tmp_path / "r")["chance_level"].iloc[0]) is True


# ---------------------------------------------------------------------------------------
# no lost or mixed results
# ---------------------------------------------------------------------------------------

def test_a_changed_hardware_space_is_refused_on_resume(tmp_path, cache):
    from accelerators import get_hardware_space
    hw = tmp_path / "hw.yaml"
    get_hardware_space("small").save(hw)
    c = load_config(None, [t for t in TINY if not t.startswith("hardware_space")] + ["method=dance",
                                                                                    f"hardware_space={hw}"])
    run = tmp_path / "run"
    ex = CoExplorer(c, run, cache_dir=cache)
    run.mkdir()
    ex.run_epoch()
    ex.save_checkpoint()
    text = hw.read_text().replace("clock_hz: 200000000.0", "clock_hz: 400000000.0")
    assert text != hw.read_text()
    hw.write_text(text)
    with pytest.raises(ConfigError, match=r"input\(s\) changed since the checkpoint was written: hardware_space"):
        run_search(c, run, resume=True, cache_dir=cache)


def test_a_resume_with_another_config_names_the_keys(interrupted_run, cache):
    run, c = interrupted_run
    with pytest.raises(ConfigError, match=r"another config \(lam: 1\.0 -> 0\.5\)"):
        run_search(c.replace(lam=0.5), run, resume=True, cache_dir=cache)
    # --quiet is not part of a run's identity
    res = run_search(c.replace(progress=not c.progress), run, resume=True, cache_dir=cache)
    assert res.status == "ok"


def test_two_searches_in_one_folder_at_once(tmp_path, cache):
    run = tmp_path / "run"
    run.mkdir()
    with run_lock(run):  # another search holds the folder
        with pytest.raises(ConfigError, match="another search is running in this run folder"):
            run_search(cfg("method=dance"), run, cache_dir=cache)
    assert not (run / "result.json").exists()


def test_a_second_search_process_is_refused_while_the_first_runs(tmp_path, cache):
    """Another process holds the run folder's lock (as a running search does): a second search
    on that folder is refused at once with exit 2; once the holder is gone the lock is free."""
    from coexplore.runfolder import run_lock

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from coexplore.runfolder import run_lock; lock = run_lock(sys.argv[1]); "
         "assert lock.try_acquire(); print('held', flush=True); sys.stdin.read()", str(run)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cmd = [sys.executable, "-m", "coexplore.cli", "--quiet", "search", "--out", str(run), "--cache-dir",
               str(cache), *TINY, "method=dance"]
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "another search is running" in second.stderr, second.stderr
        assert not (run / "checkpoints").exists()  # nothing of the holder's folder was touched
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    lock = run_lock(run)
    assert lock.try_acquire()  # released with its holder
    lock.release()


def test_demo_reuses_only_runs_of_its_own_config(tmp_path, cache, capsys):
    run = tmp_path / "demo" / "hdx"
    from coexplore.demo import demo_runs
    name, overrides = demo_runs(quick=True)[0]
    other = load_config(None, overrides).replace(lam=0.123)
    run_search(other.replace(search_epochs=1, warmup_epochs=0, retrain_epochs=0), run, cache_dir=cache)
    rc = main(["--quiet", "demo", "--quick", "--out", str(tmp_path / "demo"), "-j", "1", "--cache-dir", str(cache)])
    assert rc == 2 and "holds a finished run of another config" in capsys.readouterr().err


def test_an_early_error_leaves_no_empty_run_folder(tmp_path, cache):
    with pytest.raises(ConfigError):
        run_search(cfg("method=dance", "data.name=cifar10"), tmp_path / "new", cache_dir=cache)  # no path given
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------

def test_atomic_write_respects_the_umask_and_leaves_no_temp(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_stale_temp_of_a_killed_writer_is_cleaned(tmp_path):
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".last.pt.def456.tmp"  # maybe a writer at work: left alone
    fresh.write_bytes(b"x")
    atomic_write_text(tmp_path / "last.pt", "new")
    assert not stale.exists() and fresh.exists()


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    target.write_text("old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ConfigError, match="No space left on device"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_folder_lock_is_exclusive(tmp_path):
    a, b = FolderLock(tmp_path / "l"), FolderLock(tmp_path / "l")
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()
