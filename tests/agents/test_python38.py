"""The agent's sources must run on Python 3.8 (HPC nodes run old distributions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _vermin(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "vermin"),
            "-t=3.8-",
            "--no-tips",
            "--violations",
            "--eval-annotations",
            "--no-parse-comments",
            *paths,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_agent_sources_need_no_python_newer_than_3_8() -> None:
    result = _vermin(str(ROOT / "agents"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_does_flag_newer_syntax(tmp_path: Path) -> None:
    """The check above can fail: a 3.10 construct is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 'one'\n")
    result = _vermin(str(bad))
    assert result.returncode != 0
    assert "3.10" in result.stdout
