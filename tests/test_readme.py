"""Every python snippet of the README's tutorial runs, in order, in a scratch folder."""

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snippets():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_tutorial_snippets():
    assert len(snippets()) >= 4


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
