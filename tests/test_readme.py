"""The README cannot drift: every python snippet of its tutorial and every shell line of its
command-line tour runs, in order, in a scratch folder; docs/config.md is what the typed config
generates.

Lines that would take minutes run with a smaller budget: :data:`SMALLER` rewrites them (and
fails when the line it rewrites is no longer in the README, so the rewrite cannot go stale).
"""

import re
import shlex
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"

_SEARCH_SMALL = ["warmup_epochs=1", "search_epochs=1", "steps_per_epoch=3", "data.limit=200", "retrain_epochs=1",
                 "evaluator.num_arch=300", "evaluator.epochs_generator=3", "evaluator.epochs_estimator=1"]

#: command-line prefix -> (argument replacements, arguments appended): a smaller budget, same command
SMALLER = {
    "coexplore evaluator build": ({"3000": "300"}, ["--epochs-generator", "3", "--epochs-estimator", "1",
                                                    "--report-arch", "200"]),
    "coexplore evaluator report": ({"1000": "200"}, []),
    "coexplore search -c experiments/configs/quickstart.yaml": ({}, _SEARCH_SMALL + ["data.generator_steps=5",
                                                                                    "data.synthetic_samples=300"]),
    "coexplore search -c experiments/configs/hdx-cifar10-60fps.yaml": (
        {"data.limit=5000": "data.limit=300", "steps_per_epoch=20": "steps_per_epoch=2",
         "search_epochs=2": "search_epochs=1", "warmup_epochs=2": "warmup_epochs=1", "retrain_epochs=2": "retrain_epochs=1"},
        []),
    "coexplore --plugin experiments/plugins/my_ops.py search": ({}, ["steps_per_epoch=3", "data.limit=300"]),
    "coexplore retrain": ({"2": "1"}, []),
    "coexplore teacher train": ({"2": "1"}, []),
    "coexplore quantize": ({"200": "10"}, ["--generator-warmup", "2"]),
}


def snippets():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def shell_lines():
    """Every command of the README's bash blocks, comments stripped, in order."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                lines.append(argv)
    return lines


def _tour():
    """The command lines of the tour: every shell line but the two setup commands."""
    return [argv for argv in shell_lines() if argv[0] == "coexplore"]


def _smaller(argv):
    line = " ".join(argv)
    for prefix, (replace, extra) in SMALLER.items():
        if line.startswith(prefix):
            return [replace.get(a, a) for a in argv] + list(extra)
    return list(argv)


def test_readme_has_tutorial_snippets():
    assert len(snippets()) >= 4


def test_every_budget_rewrite_matches_a_readme_line():
    lines = [" ".join(argv) for argv in _tour()]
    for prefix, (replace, _) in SMALLER.items():
        hits = [line for line in lines if line.startswith(prefix)]
        assert hits, f"SMALLER rewrites {prefix!r}, which no README line starts with any more"
        for old in replace:
            assert any(old in shlex.split(h) for h in hits), f"{prefix!r}: no argument {old!r} to rewrite"


def test_the_two_commands_are_the_readme_promise():
    setup = [line.strip() for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
             for line in block.splitlines() if line.strip() and not line.startswith("coexplore")]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_cmd = next(line for line in setup if "pytest" in line)
    assert test_cmd in ci, "the README's test command is not what CI runs"
    assert any(line.endswith("coexplore demo") for line in setup)


def test_readme_snippets_run(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COEXPLORE_CACHE", str(tmp_path / "cache"))
    scope = {"__name__": "__readme__"}
    for i, code in enumerate(snippets()):
        try:
            exec(compile(code, f"README.md snippet {i}", "exec"), scope)
        except Exception as exc:  # pragma: no cover - the message shows which snippet broke
            pytest.fail(f"README snippet {i} failed: {type(exc).__name__}: {exc}\n{code}")
    assert (tmp_path / "runs" / "tutorial" / "result.json").is_file()
    assert (tmp_path / "runs" / "tutorial-front").is_dir()


def test_readme_cli_tour_runs(tmp_path, monkeypatch, capsys):
    """Each shell line, in order, through the real entry point; each must exit 0."""
    from coexplore.cli import main

    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COEXPLORE_CACHE", str(tmp_path / "cache"))
    ran, took = 0, []
    for argv in _tour():
        line = " ".join(argv)
        if "../shared/data/" in line:
            continue  # the small CIFAR-10 run: test_readme_cifar10_line (slow; needs the archive)
        t0 = time.perf_counter()
        rc = main(_smaller(argv)[1:])
        out = capsys.readouterr()
        took.append((round(time.perf_counter() - t0, 1), line[:90]))
        assert rc == 0, f"README line `{line}` exited {rc}:\n{out.err[-2000:]}"
        ran += 1
    print("\n".join(f"{t:7.1f} s  {line}" for t, line in took))  # shown with -s or on failure
    assert ran >= 21
    assert (tmp_path / "runs" / "q-datafree" / "result.json").is_file()
    assert (tmp_path / "runs" / "q" / "result.json").is_file()
    assert (tmp_path / "runs" / "front").is_dir()
    assert (tmp_path / "runs" / "q" / "export").is_dir()
    assert (tmp_path / "runs" / "quant" / "result.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_file(), reason="the CIFAR-10 archive is not at ../shared/data/cifar10-jpg.tar.gz")
def test_readme_cifar10_line(tmp_path, monkeypatch, capsys):
    from coexplore.cli import main

    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COEXPLORE_CACHE", str(tmp_path / "cache"))
    lines = [argv for argv in _tour() if any("../shared/data/" in a for a in argv)]
    assert lines, "the README has no CIFAR-10 line any more"
    for argv in lines:
        argv = [a.replace("../shared/data/cifar10-jpg.tar.gz", str(CIFAR)) for a in argv]
        rc = main(_smaller(argv)[1:])
        assert rc == 0, capsys.readouterr().err[-2000:]
    assert (tmp_path / "runs" / "cifar-small" / "result.json").is_file()


def test_config_reference_is_generated_from_the_config():
    from coexplore.config import reference_markdown

    assert (ROOT / "docs" / "config.md").read_text() == reference_markdown(), (
        "docs/config.md drifted from the typed config: regenerate it with "
        "`coexplore config --defaults > docs/config.md`")
