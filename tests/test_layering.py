"""The import rule of the packages (docs/architecture.md), checked on the source.

* ``coexplore.common`` imports nothing of the project;
* ``accelerators`` imports only ``coexplore.common`` of the rest;
* ``search_spaces`` imports ``coexplore.common`` and, of ``accelerators``, only the workload
  record and the module tracer that produces it (``accelerators.workload``, ``accelerators.extract``);
* nothing below imports any other part of ``coexplore``.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod
            for a in node.names:  # "from coexplore import x" imports coexplore.x
                yield f"{mod}.{a.name}"


def _project(mod: str) -> bool:
    return mod.split(".")[0] in ("coexplore", "accelerators", "search_spaces")


def _violations(package: str, allowed):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for mod in _imports(path):
            if _project(mod) and not any(mod == a or mod.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    return bad


@pytest.mark.parametrize("package,allowed", [
    ("coexplore/common", ["coexplore.common"]),
    ("accelerators", ["accelerators", "coexplore.common"]),
    ("search_spaces", ["search_spaces", "coexplore.common", "accelerators.workload", "accelerators.extract"]),
])
def test_import_rule(package, allowed):
    assert _violations(package, allowed) == []


def test_the_rule_checker_sees_a_violation(tmp_path, monkeypatch):
    # the checker itself must be able to fail
    bad = list(_imports(ROOT / "coexplore" / "cli.py"))
    assert any(m.startswith("accelerators") for m in bad)
