"""The single-file agent: reproducible, self-contained, runs on a bare Python 3.8+."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tidectl.agents import AGENT_VERSION, protocol
from tidectl.agents.zipapp import archive_bytes, build

# Pythons older than the console's, as HPC nodes run them; used when this machine has them.
# (pyenv's shims on PATH are not interpreters: name the real binaries.)
OLD_PYTHONS = [
    path
    for path in ("/root/.pyenv/versions/3.8.18/bin/python3.8", "/usr/bin/python3.8")
    if os.access(path, os.X_OK)
][:1]


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zipapp") / "agent.pyz"
    digest = build(str(out))
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    return out


def test_build_is_reproducible(pyz: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyz"
    assert build(str(again)) == hashlib.sha256(pyz.read_bytes()).hexdigest()
    assert archive_bytes() == pyz.read_bytes()


def test_archive_holds_the_agent_and_nothing_else(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
    assert "__main__.py" in names
    assert "tidectl/agents/cli.py" in names
    assert "tidectl/agents/probes/ib.py" in names
    assert all(n == "__main__.py" or n.startswith("tidectl/") for n in names), names
    assert not any("__pycache__" in n or n.startswith("tidectl/console") for n in names)
    assert os.access(pyz, os.X_OK)


def _run_isolated(python: str, pyz: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: no user site, no PYTHON* variables, no current directory on sys.path: only what the
    # archive carries can be imported (and the standard library).
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        [python, "-I", str(pyz), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
        check=False,
    )


@pytest.mark.parametrize("python", [sys.executable, *OLD_PYTHONS])
def test_zipapp_streams_in_a_clean_interpreter(python: str, pyz: Path) -> None:
    result = _run_isolated(
        python, pyz, "stream", "--sim", "5", "--interval", "0.05", "--count", "3"
    )
    assert result.returncode == 0, result.stderr
    records = [protocol.decode(line.encode()) for line in result.stdout.splitlines()]
    assert [r["type"] for r in records] == ["hello", "sample", "sample", "sample"]
    assert records[0]["agent"] == AGENT_VERSION
    assert records[0]["sim"] == 5
    assert set(records[1]["probes"]) == {"host", "gpu", "ib", "storage", "net"}
    assert all("error" not in s for s in records[-1]["probes"].values()), records[-1]


@pytest.mark.parametrize("python", [sys.executable, *OLD_PYTHONS])
def test_zipapp_reads_the_real_host(python: str, pyz: Path) -> None:
    result = _run_isolated(python, pyz, "once", "--json", "--probes", "host,net,storage,gpu")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    host = record["probes"]["host"]
    assert host["cpu_count"] == os.cpu_count()
    assert 0.0 <= host["cpu_pct"] <= 100.0
    # No GPU on this machine: a clear sentence, not a crash.
    assert record["probes"]["gpu"]["gpus"] == []
    assert "NVIDIA" in record["probes"]["gpu"]["no_driver"]


def test_the_tests_ran_under_an_old_python_where_one_exists() -> None:
    """Report (not hide) whether the 3.8 run happened: vermin still checks statically."""
    if not OLD_PYTHONS:
        pytest.skip("no Python 3.8 on this machine; test_python38 checks the sources statically")
    version = subprocess.run(
        [OLD_PYTHONS[0], "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.strip() == "(3, 8)"
