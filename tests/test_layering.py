"""The layering rules of DESIGN.md §1, checked on every module.

* ``tidectl.agents`` is shipped alone to bare nodes: standard library only (plus the optional
  ``psutil`` and ``pynvml``), and nothing else of tidectl.
* The console core never imports Textual; only ``tidectl.console.tui`` may.
* ``widgets`` and ``playbooks`` never reach into ``console.tui``.

Each module is imported in a fresh interpreter and its ``sys.modules`` inspected, so a rule
broken through an indirect import is caught too; the agent is also checked statically, so an
import inside a function that a test never runs is caught as well.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "agents": "tidectl.agents",
    "console": "tidectl.console",
    "widgets": "tidectl.widgets",
    "playbooks": "tidectl.playbooks",
}
AGENT_OPTIONAL = {"psutil", "pynvml"}


def _modules(folder: str) -> list[str]:
    base = FOLDERS[folder]
    names = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts[-1] == "__main__":
            continue
        names.append(".".join([base, *parts]))
    return names


def _loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


@pytest.mark.parametrize("module", _modules("agents"))
def test_agent_module_loads_only_stdlib_and_itself(module: str) -> None:
    loaded = _loaded_after_import(module)
    ours = {m for m in loaded if m.startswith("tidectl.") and not m.startswith("tidectl.agents")}
    assert not ours, f"{module} pulls in {sorted(ours)}"
    foreign = {
        _top(m)
        for m in loaded
        if _top(m) not in sys.stdlib_module_names
        and _top(m) not in AGENT_OPTIONAL
        and _top(m)
        not in {"tidectl", "__main__", "_distutils_hack", "__editable___tidectl_0_1_0_finder"}
        and not _top(m).startswith("_")
    }
    assert not foreign, f"{module} pulls in non-stdlib {sorted(foreign)}"


def _forbidden_agent_imports(source: str, filename: str) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            allowed = (
                _top(name) in sys.stdlib_module_names
                or _top(name) in AGENT_OPTIONAL
                or name == "tidectl.agents"
                or name.startswith("tidectl.agents.")
            )
            if not allowed:
                bad.append(f"{filename}:{node.lineno} imports {name}")
    return bad


def test_agent_sources_import_only_stdlib_statically() -> None:
    bad = []
    for path in sorted((ROOT / "agents").rglob("*.py")):
        bad += _forbidden_agent_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert not bad, "\n".join(bad)


def test_the_static_check_catches_forbidden_imports() -> None:
    source = (
        "import json\nimport pynvml\nimport requests\n"
        "def f():\n    from tidectl.console import cli\n"
    )
    assert _forbidden_agent_imports(source, "x.py") == [
        "x.py:3 imports requests",
        "x.py:5 imports tidectl.console",
    ]


@pytest.mark.parametrize(
    "module",
    [m for m in _modules("console") if not m.startswith("tidectl.console.tui")]
    + _modules("widgets")
    + _modules("playbooks"),
)
def test_core_and_front_ends_never_load_textual_or_the_tui(module: str) -> None:
    loaded = _loaded_after_import(module)
    assert "textual" not in loaded, f"{module} imports Textual"
    if not module.startswith("tidectl.console"):
        assert not any(m.startswith("tidectl.console.tui") for m in loaded), module
