"""Every user mistake is one line naming the field and the allowed values, exit code 2, no
traceback, and nothing written or changed.

Table-driven over the command line (each case runs ``coexplore ...`` in-process in an empty
folder and compares the folder before and after); the side packages' own inputs
(accelerators, hardware spaces, workloads, datasets) have their tables in
``tests/accelerators/test_bad_inputs.py`` and ``tests/search_spaces/test_data.py``.
"""

import json
import os
import pickle
from pathlib import Path

import pytest

from coexplore.cli import main

TINY = ["search_space=tiny-mnist", "hardware_space=small", "data.limit=64", "data.batch_size=16", "steps_per_epoch=1",
        "warmup_epochs=0", "search_epochs=1", "progress=false", "evaluator.num_arch=100",
        "evaluator.epochs_generator=1", "evaluator.epochs_estimator=1"]


def _tree(root: Path):
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def run_cli(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COEXPLORE_CACHE", str(tmp_path / "cache"))
    before = _tree(tmp_path)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    after = _tree(tmp_path)
    return rc, err, before, after


def check(argv, words, tmp_path, capsys, monkeypatch, allow_cache=False):
    rc, err, before, after = run_cli(argv, tmp_path, capsys, monkeypatch)
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("INFO", "WARNING"))]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    if allow_cache:  # a cost table or evaluator cache may be warmed, nothing else
        after = {k: v for k, v in after.items() if not k.startswith("cache")}
        before = {k: v for k, v in before.items() if not k.startswith("cache")}
    assert after == before, sorted(set(after) ^ set(before))


# ---------------------------------------------------------------------------------------
# run-config values (coexplore search KEY=VALUE)
# ---------------------------------------------------------------------------------------

CONFIG_CASES = [
    ("lam=-1", ["lam", ">= 0"]), ("lam=.inf", ["lam", "finite"]), ("lam=.nan", ["lam", "finite"]),
    ("lam=abc", ["lam", "number"]), ("w_lr=0", ["w_lr", "> 0"]), ("w_lr=-1", ["w_lr"]), ("w_lr=.inf", ["w_lr"]),
    ("w_lr=1e400", ["w_lr"]), ("a_lr=0", ["a_lr"]), ("a_lr=.nan", ["a_lr"]), ("tau0=0", ["tau0"]),
    ("tau_min=9", ["tau_min", "tau0"]), ("tau_min=-1", ["tau_min"]), ("w_momentum=-1", ["w_momentum"]),
    ("w_momentum=0", ["w_momentum", "> 0"]), ("w_momentum=1", ["w_momentum", "< 1"]),
    ("w_weight_decay=-1", ["w_weight_decay", ">= 0"]), ("a_weight_decay=-0.1", ["a_weight_decay"]),
    ("seed=-1", ["seed"]), ("seed=4294967296", ["seed", "4294967295"]), ("seed=1.5", ["seed", "integer"]),
    ("seed=abc", ["seed", "integer"]), ("seed=true", ["seed"]), ("device=meta", ["device", "auto, cpu, cuda"]),
    ("device=tpu", ["device"]), ("device=cuda:x", ["device"]), ("search_epochs=0", ["search_epochs", ">= 1"]),
    ("search_epochs=-3", ["search_epochs"]), ("warmup_epochs=-1", ["warmup_epochs"]),
    ("steps_per_epoch=0", ["steps_per_epoch"]), ("retrain_epochs=-1", ["retrain_epochs"]),
    ("retrain_lr=0", ["retrain_lr"]), ("retrain_lr=.inf", ["retrain_lr"]), ("baseline_budget=0", ["baseline_budget"]),
    ("baseline_budget=-2", ["baseline_budget"]), ("population=0", ["population", ">= 2"]),
    ("population=1", ["population"]), ("data.limit=0", ["data.limit"]), ("data.limit=-5", ["data.limit"]),
    ("data.val_fraction=0", ["data.val_fraction"]), ("data.val_fraction=1", ["data.val_fraction"]),
    ("data.val_fraction=.nan", ["data.val_fraction"]), ("data.batch_size=0", ["data.batch_size"]),
    ("data.batch_size=100000000", ["data.batch_size"]), ("data.name=", ["data.name"]),
    ("data.name=imagenet", ["imagenet", "mnist-embedded"]), ("evaluator.num_arch=-1", ["evaluator.num_arch"]),
    ("evaluator.num_arch=5", ["evaluator.num_arch", ">= 10"]), ("evaluator.pairs_per_arch=0", ["pairs_per_arch"]),
    ("evaluator.epochs_generator=0", ["epochs_generator"]), ("evaluator.epochs_estimator=-1", ["epochs_estimator"]),
    ("evaluator.hw_mode=soft", ["evaluator.hw_mode", "argmax"]), ("hdx.decay=7", ["hdx.decay", "<= 1"]),
    ("hdx.decay=0", ["hdx.decay", "> 0"]), ("hdx.growth=0.5", ["hdx.growth", ">= 1"]),
    ("hdx.kappa0=-1", ["hdx.kappa0"]), ("hdx.kappa_max=0.01", ["hdx.kappa_max"]),
    ("hdx.calibrate_step=0.9", ["hdx.calibrate_step"]), ("hdx.calibrate=maybe", ["hdx.calibrate", "true or false"]),
    ("path_mode=magic", ["path_mode", "gumbel"]), ("hw_encoding=x", ["hw_encoding", "expected"]),
    ("memory_format=nhwc", ["memory_format", "channels_last", "contiguous"]),
    ("amp=fp16", ["amp", "'auto', 'bf16', 'off'"]),
    ("method=magic", ["unknown method 'magic'", "dance"]), ("method=hdx", ["needs at least one constraint"]),
    ("cost_model=timeloop", ["cost_model", "analytical"]), ("mapping_objective=speed", ["mapping_objective", "edp"]),
    ("objective=speed", ["objective 'speed'", "edap"]), ("objective={weighted: {latency: abc}}", ["weight of latency"]),
    ("objective={weighted: {latency: 0}}", ["weight of latency", "> 0"]),
    ("objective={weighted: {latency: .inf}}", ["weight of latency", "finite"]),
    ("objective={weighted: {speed: 1}}", ["unknown metric 'speed'"]), ("objective={weighted: {}}", ["weighted"]),
    ("constraints=[speed <= 3]", ["unknown metric", "speed"]), ("constraints=[latency >= 1ms]", ["latency >="]),
    ("constraints=[latency <= -1ms]", ["bound"]), ("constraints=[latency <= 1kg]", ["kg"]),
    ("constraints=[fps <= 60]", ["fps"]), ("constraints=[latency <= 1mJ]", ["mJ", "energy"]),
    ("constraints={a: b}", ["constraints"]), ("constraints=[latency < = 1ms]", ["latency"]),
    ("name=../../x", ["name", "no path separators"]), ("name=/abs/path", ["name"]), ("name=", ["name"]),
    ("name=a/b", ["name"]), ("name=" + "x" * 200, ["name", "128"]), ("repair=maybe", ["repair", "true or false"]),
    ("progress=2", ["progress", "true or false"]), ("joint_hw=yes please", ["joint_hw"]),
    ("bogus=1", ["unknown field(s) ['bogus']"]), ("data.bogus=1", ["data", "unknown field(s) ['bogus']"]),
    ("hdx.bogus=1", ["hdx", "bogus"]), ("lamda=1", ["lamda", "did you mean 'lam'"]),
    ("epochs=3", ["epochs was renamed", "search_epochs"]), ("search_space=nope", ["nope", "tiny-mnist"]),
    ("hardware_space=nope", ["nope", "default"]), ("search_space=missing.yaml", ["missing.yaml", "no such file"]),
    ("hardware_space=missing.yaml", ["missing.yaml"]), ("lam", ["expected key=value"]), ("=3", ["expected key=value"]),
    ("data=3", ["data", "mapping"]), ("hdx=[1, 2]", ["hdx", "mapping"]),
    ("constraints=[latency <= 1ns]", ["latency <=", "is unreachable", "fastest design"]),
    ("constraints=[area <= 0.001mm2]", ["area", "unreachable", "smallest accelerator"]),
]

# Bit widths of a search space (inline mapping), refused with the field and the allowed set.
_MP = ("search_space={resolution: 28, input_channels: 1, num_classes: 10, stem: {channels: 4}, "
       "candidates: [mb3_e3], %s}")
_ST = "stages: [{channels: 4, stride: 1, layers: 1}]"
CONFIG_CASES += [
    (_MP % f"{_ST}, wbits: [3.5]", ["wbits: 3.5 is not a supported bit width", "[2, 3, 4, 5, 6, 7, 8, 16, 32]"]),
    (_MP % f"{_ST}, abits: 4", ["abits must be a list of bit widths", "[2, 3, 4, 5, 6, 7, 8, 16, 32]"]),
    (_MP % f"{_ST}, fixed_bits: 12", ["fixed_bits 12", "[2, 3, 4, 5, 6, 7, 8, 16, 32]"]),
    (_MP % "stages: [{channels: 4, stride: 1, layers: 1, op: mb3_e3, wbits: [4]}]",
     ["stages[0]", "fixed stage", "takes no wbits or abits"]),
]


@pytest.mark.parametrize("override,words", CONFIG_CASES, ids=[c[0][:40] for c in CONFIG_CASES])
def test_bad_config_value(override, words, tmp_path, capsys, monkeypatch):
    method = [] if override.startswith("method=") else ["method=dance"]
    check(["search", "--out", str(tmp_path / "run"), *TINY, *method, override], words, tmp_path, capsys,
          monkeypatch, allow_cache=True)


# ---------------------------------------------------------------------------------------
# command-line arguments
# ---------------------------------------------------------------------------------------

ARG_CASES = [
    (["cost", "-w", "resnet18", "--top", "0"], ["--top", ">= 1"]),
    (["cost", "-w", "resnet18", "--space", "small", "--top", "-1"], ["--top", ">= 1"]),
    (["cost", "-w", "resnet18", "--top", "x"], ["--top", "integer"]),
    (["cost", "-w", "resnet18", "--explain", "-1"], ["--explain", "0..20"]),
    (["cost", "-w", "resnet18", "--explain", "999"], ["--explain", "no such layer"]),
    (["cost", "-w", "resnet18", "--explain", "nope"], ["--explain", "no such layer"]),
    (["cost", "-w", "resnet18", "--batch", "0"], ["--batch", ">= 1"]),
    (["cost", "-w", "nope"], ["unknown workload 'nope'", "resnet18"]),
    (["cost", "-w", "resnet18", "-a", "nope"], ["unknown accelerator 'nope'", "eyeriss"]),
    (["cost", "-w", "resnet18", "--space", "nope"], ["unknown hardware space", "default"]),
    (["cost", "-w", "resnet18", "--space", "small", "--objective", "speed"], ["--objective", "edap"]),
    (["cost", "-w", "resnet18", "--mapping-objective", "speed"], ["--mapping-objective", "dram"]),
    (["cost", "-w", "resnet18", "-a", "eyeriss", "--space", "small"], ["either --accelerator or --space"]),
    (["cost", "-w", "resnet18", "--top", "3"], ["--top", "needs --space"]),
    (["cost"], ["--workload"]),
    (["cost", "-w", "missing.yaml"], ["missing.yaml", "no such file"]),
    (["evaluator", "build", "--out", "e.pt", "--width", "0"], ["--width", ">= 1"]),
    (["evaluator", "build", "--out", "e.pt", "--blocks", "-1"], ["--blocks", ">= 0"]),
    (["evaluator", "build", "--out", "e.pt", "--epochs-generator", "0"], ["--epochs-generator"]),
    (["evaluator", "build", "--out", "e.pt", "--epochs-estimator", "0"], ["--epochs-estimator"]),
    (["evaluator", "build", "--out", "e.pt", "--num-arch", "0"], ["--num-arch", ">= 10"]),
    (["evaluator", "build", "--out", "e.pt", "--pairs-per-arch", "0"], ["--pairs-per-arch"]),
    (["evaluator", "build", "--out", "e.pt", "--report-arch", "0"], ["--report-arch"]),
    (["evaluator", "build", "--out", "e.pt", "--seed", "-1"], ["--seed"]),
    (["evaluator", "build", "--out", "e.bin"], ["--out", ".pt"]),
    (["evaluator", "build", "--out", "e.pt", "--space", "nope"], ["unknown search space"]),
    (["evaluator", "build", "--out", "e.pt", "--objective", "speed"], ["objective 'speed'"]),
    (["evaluator", "build", "--out", "e.pt", "--space", "tiny-mnist", "--hardware", "small", "--constraint",
      "latency <= 1ns"], ["unreachable", "fastest design"]),
    (["evaluator", "build", "--out", "e.pt", "--constraint", "speed <= 1"], ["unknown metric"]),
    (["evaluator", "report", "missing.pt"], ["missing.pt", "no such evaluator checkpoint"]),
    (["evaluator", "report", "x.pt", "--num-arch", "0"], ["--num-arch"]),
    (["demo", "-j", "0"], ["--jobs", ">= 1"]), (["demo", "-j", "x"], ["--jobs"]),
    (["sweep", "missing.yaml", "--out", "s"], ["missing.yaml", "no such file"]),
    (["sweep", "s.yaml", "--out", "s", "-j", "0"], ["--jobs"]),
    (["sweep", "s.yaml", "--out", "s", "--threads", "0"], ["--threads"]),
    (["sweep", "s.yaml"], ["--out"]),
    (["retrain", "run", "--epochs", "-1"], ["--epochs", ">= 1"]), (["retrain", "run", "--epochs", "0"], ["--epochs"]),
    (["retrain", "run", "--lr", "nan"], ["--lr", "finite"]), (["retrain", "run", "--lr", "-1"], ["--lr"]),
    (["retrain", "run", "--lr", "0"], ["--lr"]), (["retrain", "run", "--lr", "inf"], ["--lr"]),
    (["retrain", "missing"], ["missing", "no result.json"]),
    (["pareto", "missing"], ["missing", "no such file or folder"]),
    (["plot", "missing"], ["missing", "no result.json"]),
    (["export"], ["RUN folder", "--accelerator"]), (["export", "--to", "nope"], ["--to", "timeloop"]),
    (["export", "--accelerator", "eyeriss", "--workload", "alexnet"], ["--out is required"]),
    (["export", "missing"], ["missing", "no result.json"]),
    (["list", "bogus"], ["bogus", "workloads"]),
    (["cache", "bogus"], ["bogus", "info"]), (["cache", "clear", "--part", "nope"], ["--part"]),
    (["config"], ["--defaults"]),
    (["search", "--config", "missing.yaml"], ["missing.yaml", "no such file"]),
    (["search", "--plugin", "nope.py"], ["--plugin", "nope.py"]),
    (["search", "--plugin", "notpython.txt"], ["--plugin", ".py"]),
    (["--format", "xml", "list"], ["--format", "table"]),
    (["bogus-command"], ["bogus-command", "choose from"]),
    (["search", "--resume"], []),  # resume with no folder: a fresh run would start; see below
]
ARG_CASES = [c for c in ARG_CASES if c[1]]


@pytest.mark.parametrize("argv,words", ARG_CASES, ids=[" ".join(a)[:48] for a, _ in ARG_CASES])
def test_bad_argument(argv, words, tmp_path, capsys, monkeypatch):
    check(argv, words, tmp_path, capsys, monkeypatch)


# ---------------------------------------------------------------------------------------
# files: configs, sweeps, run folders, checkpoints
# ---------------------------------------------------------------------------------------

def _config(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


FILE_CASES = [
    ("binary.yaml", b"\x89PNG\r\n\x1a\n\x00\xff", "wb", ["binary.yaml", "not a text file"]),
    ("empty.yaml", "", "w", ["empty.yaml", "empty"]),
    ("list.yaml", "- 1\n- 2\n", "w", ["list.yaml", "mapping"]),
    ("dup.yaml", "search_epochs: 1\nsearch_epochs: 1000000\n", "w", ["dup.yaml", "duplicate key 'search_epochs'"]),
    ("alias.yaml", "a: &x 1\nlam: *x\n", "w", ["alias.yaml", "not allowed"]),
    ("tags.yaml", "lam: !!python/object/apply:os.system ['touch pwned']\n", "w", ["tags.yaml"]),
    ("malformed.yaml", "lam: [1, 2\n", "w", ["malformed.yaml", "malformed YAML"]),
    ("unknown.yaml", "lamda: 1\n", "w", ["unknown.yaml", "lamda"]),
    ("badvalue.yaml", "lam: -3\n", "w", ["badvalue.yaml", "lam"]),
    ("nested.yaml", "data: {limit: [1, 2]}\n", "w", ["nested.yaml", "data.limit"]),
]


@pytest.mark.parametrize("name,text,mode,words", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_file(name, text, mode, words, tmp_path, capsys, monkeypatch):
    p = _config(tmp_path, name, text, mode)
    check(["search", "-c", str(p), "--out", str(tmp_path / "run")], words, tmp_path, capsys, monkeypatch)
    assert not (tmp_path / "pwned").exists()


SWEEP_CASES = [
    ("laughs.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\ngrid: {seed: *c}\n", ["laughs.yaml", "not allowed"]),
    ("dupgrid.yaml", "grid: {seed: [0]}\ngrid: {seed: [1]}\n", ["dupgrid.yaml", "duplicate key 'grid'"]),
    ("emptygrid.yaml", "grid: {}\n", ["grid", "non-empty"]),
    ("badkey.yaml", "grid: {lamda: [1]}\n", ["grid.lamda", "unknown RunConfig field"]),
    ("badpoint.yaml", "set: {method: dance}\ngrid: {lam: [0.1, -1]}\n", ["grid point", "lam"]),
    ("binary.yaml", None, ["binary.yaml", "not a text file"]),
]


@pytest.mark.parametrize("name,text,words", SWEEP_CASES, ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_file(name, text, words, tmp_path, capsys, monkeypatch):
    p = tmp_path / name
    if text is None:
        p.write_bytes(b"\x00\x01\xfe\xff" * 10)
    else:
        p.write_text(text)
    check(["sweep", str(p), "--out", str(tmp_path / "s")], words, tmp_path, capsys, monkeypatch)


def _finished_run(tmp_path):
    """A run folder with a valid result.json and config.yaml (no training)."""
    from coexplore.config import load_config
    run = tmp_path / "run"
    run.mkdir()
    load_config(None, TINY + ["method=dance"]).save(run / "config.yaml")
    r = {"schema_version": 2, "method": "dance", "name": "x", "seed": 0, "search_space": "tiny-mnist",
         "hardware_space": "small", "objective": "edap", "lambda": 1.0, "status": "ok", "all_constraints_met": True,
         "architecture": {"s0.b0": "mb3_e3"}, "accelerator": {"pe_x": 8, "pe_y": 8, "rf_bytes": 16,
                                                               "glb_bytes": 110592, "dataflow": "ws"}}
    (run / "result.json").write_text(json.dumps(r))
    return run


RESULT_CASES = [
    ({"metrics": {"latency_s": "fast"}}, ["metrics.latency_s", "number"]),
    ({"status": "great"}, ["status", "one of"]),
    ({"schema_version": 7}, ["schema_version 7"]),
    ({"bogus": 1}, ["bogus"]),
    ({"architecture": None}, ["architecture"]),
    ({"lambda": "x"}, ["lambda"]),
]


@pytest.mark.parametrize("change,words", RESULT_CASES, ids=[str(c[0])[:30] for c in RESULT_CASES])
@pytest.mark.parametrize("command", ["plot", "export", "retrain"])
def test_bad_result_file(change, words, command, tmp_path, capsys, monkeypatch):
    run = _finished_run(tmp_path)
    r = json.loads((run / "result.json").read_text())
    r.update(change)
    (run / "result.json").write_text(json.dumps(r))
    check([command, str(run)], ["result.json", *words], tmp_path, capsys, monkeypatch)


def test_result_missing_required_fields(tmp_path, capsys, monkeypatch):
    run = _finished_run(tmp_path)
    (run / "result.json").write_text(json.dumps({"metrics": {}}))
    check(["plot", str(run)], ["missing required field(s)", "method"], tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("content,words", [
    (b"", ["last.pt", "not a readable checkpoint"]),
    (b"garbage" * 100, ["last.pt", "not a readable checkpoint"]),
])
def test_truncated_or_garbage_checkpoint_on_resume(content, words, tmp_path, capsys, monkeypatch):
    from coexplore.config import load_config
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    load_config(None, TINY + ["method=dance"]).save(run / "config.yaml")
    (run / "checkpoints" / "last.pt").write_bytes(content)
    check(["search", "--out", str(run), "--resume"], words, tmp_path, capsys, monkeypatch, allow_cache=True)


@pytest.mark.parametrize("setup,words", [
    ("file", ["is a file"]),
    ("under-file", ["a file of that name is in the way"]),
])
def test_output_path_that_cannot_be_a_folder(setup, words, tmp_path, capsys, monkeypatch):
    (tmp_path / "blocker").write_text("x")
    out = tmp_path / "blocker" if setup == "file" else tmp_path / "blocker" / "run"
    check(["search", "--out", str(out), *TINY, "method=dance"], words, tmp_path, capsys, monkeypatch,
          allow_cache=True)


def test_read_only_output_folder(tmp_path, capsys, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        check(["search", "--out", str(ro / "run"), *TINY, "method=dance"], ["ro"], tmp_path, capsys, monkeypatch,
              allow_cache=True)
    finally:
        ro.chmod(0o700)


def test_a_plugin_that_fails_to_import(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken.py").write_text("raise RuntimeError('my bug')\n")
    check(["--plugin", str(tmp_path / "broken.py"), "list"], ["--plugin", "my bug"], tmp_path, capsys, monkeypatch)


def test_the_suite_has_at_least_150_cases():
    n = len(CONFIG_CASES) + len(ARG_CASES) + len(FILE_CASES) + len(SWEEP_CASES) + 3 * len(RESULT_CASES) + 1 + 2 + 2 + 2
    assert n >= 150, n
