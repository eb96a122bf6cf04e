"""End-to-end tests of the commands that work on run folders: pareto, plot, retrain, export, demo."""

import json

import pytest

from coexplore.cli import main
from coexplore.config import load_config
from coexplore.search import run_search

TINY = ["search_space=tiny-mnist", "hardware_space=small", "data.limit=160", "data.batch_size=32",
        "steps_per_epoch=2", "warmup_epochs=1", "search_epochs=1", "progress=false", "evaluator.num_arch=300",
        "evaluator.pairs_per_arch=8", "evaluator.epochs_generator=3", "evaluator.epochs_estimator=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("cache")
    out = {}
    for name, extra in (("hdx", ["method=hdx", "constraints=[latency <= 0.08ms]", "lam=0", "hw_encoding=argmax"]),
                        ("dance", ["method=dance", "lam=1.0", "constraints=[latency <= 0.08ms]", "repair=false"])):
        run_search(load_config(None, TINY + extra + [f"name={name}"]), root / name, cache_dir=cache)
        out[name] = root / name
    return root, out, cache


def test_search_writes_plots(runs):
    _, out, _ = runs
    for f in ("trajectory.png", "trajectory.svg", "accelerator.png", "accelerator.svg"):
        assert (out["hdx"] / "plots" / f).stat().st_size > 1000, f


def test_pareto_command(runs, capsys, tmp_path):
    root, _, _ = runs
    rc = main(["pareto", str(root), "--x", "latency", "--y", "error", "--constraint", "latency <= 0.08ms",
               "--out", str(tmp_path), "--format", "json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_runs"] == 2 and res["hypervolume"] >= 0
    for k in ("csv", "png", "svg"):
        assert (tmp_path / res["paths"][k].split("/")[-1]).is_file()


def test_plot_command(runs, capsys):
    _, out, _ = runs
    assert main(["plot", str(out["dance"])]) == 0
    assert "trajectory.png" in capsys.readouterr().out


def test_retrain_command_updates_result(runs, capsys):
    _, out, cache = runs
    before = json.loads((out["hdx"] / "result.json").read_text())
    assert main(["--quiet", "retrain", str(out["hdx"]), "--epochs", "1", "--cache-dir", str(cache), "--format",
                 "json"]) == 0
    r = json.loads((out["hdx"] / "result.json").read_text())
    # the search's result stays; each retrain is added beside it, with its wall time
    assert len(r["retrains"]) == len(before["retrains"]) + 1
    rt = r["retrains"][-1]
    assert rt["epochs"] == 1 and rt["seconds"] > 0 and rt["test_samples"] > 0
    assert r["accuracy_source"] == "retrained-test (coexplore retrain)"
    assert r["metrics"]["accuracy"] == rt["test_accuracy"]
    assert r["search_accuracy"] == before["search_accuracy"] and r["architecture"] == before["architecture"]
    assert r["seconds"] == before["seconds"]


def test_export_command(runs, tmp_path, capsys):
    _, out, _ = runs
    assert main(["export", str(out["hdx"]), "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "timeloop" / "arch.yaml").is_file()
    assert (tmp_path / "x" / "zigzag" / "accelerator.yaml").is_file()
    assert main(["export", "--accelerator", "eyeriss", "--workload", "alexnet", "--to", "timeloop", "--out",
                 str(tmp_path / "y")]) == 0
    assert main(["export"]) == 2  # neither a run nor accelerator + workload


def test_run_folder_errors(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    (tmp_path / "result.json").write_text("{not json")
    assert main(["plot", str(tmp_path)]) == 2
    assert "malformed" in capsys.readouterr().err


def test_demo_quick(tmp_path, capsys):
    rc = main(["--quiet", "demo", "--quick", "--jobs", "1", "--out", str(tmp_path / "demo"), "--cache-dir",
               str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert rc in (0, 3)
    assert (tmp_path / "demo" / "results.csv").is_file()
    assert (tmp_path / "demo" / "pareto_latency_error.png").is_file()
    for name in ("hdx", "dance-lam0.1", "dance-lam1", "nas-hw"):
        assert (tmp_path / "demo" / name / "result.json").is_file()
    r = json.loads((tmp_path / "demo" / "hdx" / "result.json").read_text())
    assert r["all_constraints_met"], "HDX must meet its constraint (checked by the analytical model)"
    assert "hdx" in out


def test_sweep_command_dry_run_and_errors(tmp_path, capsys):
    from pathlib import Path
    spec = Path(__file__).resolve().parents[2] / "experiments" / "sweeps" / "quickstart-lambda.yaml"
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sw"), "--dry-run", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and {r["action"] for r in rows} == {"would run"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {lam: [-1]}\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "sw2")]) == 2
    assert "lam must be >= 0" in capsys.readouterr().err


def test_overrides_on_both_sides_of_an_option_all_count(monkeypatch):
    """`search -c C a=1 --out D b=2`: argparse alone would reject b=2 as unrecognised."""
    import coexplore.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_search", lambda args: seen.setdefault("o", list(args.overrides)) and 0)
    build = cli.build_parser

    def patched():  # the search subcommand calls the recording stand-in
        p = build()
        p._subparsers._group_actions[0].choices["search"].set_defaults(func=cli.cmd_search)
        return p

    monkeypatch.setattr(cli, "build_parser", patched)
    assert main(["search", "seed=1", "--out", "x", "lam=0.5", "--quiet"]) == 0
    assert seen["o"] == ["seed=1", "lam=0.5"]
    assert main(["search", "--out", "x", "--bogus"]) == 2  # still an error when it is not an override
