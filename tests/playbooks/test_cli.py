"""``tidectl play`` as a person types it: on a simulated cluster of its own (``--demo``), and
against ``tidectl serve`` on the demo's config (the service runs the sim cloud and scheduler;
the playbook attaches through ``[server] socket``), where the service's audit log records the
playbook's path and hash. Output without a terminal is plain lines."""

from __future__ import annotations

import json
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.playbooks.conftest import EXAMPLES
from tidectl.console.audit import read
from tidectl.console.demo import DemoCluster
from tidectl.playbooks import load


def tidectl(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidectl.console", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_check_on_a_demo_cluster_prints_the_plan_and_exits_0() -> None:
    done = tidectl("play", str(EXAMPLES / "rolling-health-check.yaml"), "--demo", "--check")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"playbook rolling-health-check ({EXAMPLES}/rolling-health-check")
    assert lines[1] == "plan (--check): nothing is changed"
    assert lines[-1] == "would change nothing"


@pytest.fixture
def served() -> Iterator[tuple[Path, Path]]:
    """``tidectl serve`` on the demo's cluster (its pool booting at once): the config and
    the service's audit log."""
    folder = Path(tempfile.mkdtemp(prefix="tpb-", dir="/tmp"))  # a socket path is short
    with DemoCluster(2, seed=2, out=folder / "demo") as demo:
        config = demo.out / "cluster.toml"
        text = config.read_text().replace("boot_delay_s = 5.0", "boot_delay_s = 0.0")
        config.write_text(
            text + f'\n[server]\nsocket = "{folder}/s.sock"\nreconcile_interval_s = 0.5\n'
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "tidectl.console", "serve", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            ready, _, _ = select.select([server.stdout], [], [], 60)
            line = server.stdout.readline() if ready else ""
            assert line.startswith("tidectl serve: listening on"), line
            yield config, demo.out / "store.sqlite3.audit.jsonl"
        finally:
            server.send_signal(signal.SIGTERM)  # our own child, by its PID
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    shutil.rmtree(folder, ignore_errors=True)


BOOK = """\
name: remote-smoke
cluster: {config}
steps:
  - burst: {{pool: burst, ensure: 1}}
  - wait: {{nodes: {{pool: burst}}, until: healthy, timeout: 1m}}
  - run:
      nodes: {{launched: true}}
      command: nvidia-smi -L
      expect: {{stdout_matches: "^GPU 7: "}}
  - check: {{nodes: {{onprem: true}}, healthy: true, burn_below: 100}}
  - terminate: {{nodes: {{launched: true}}, reason: remote smoke done, wait: 1m}}
"""


@pytest.mark.slow  # the service reconciles every 5 s: a burst takes 15 s to join
def test_a_playbook_attaches_to_tidectl_serve_and_the_service_audits_its_file(
    served: tuple[Path, Path], tmp_path: Path
) -> None:
    config, audit = served
    path = tmp_path / "remote-smoke.yaml"
    path.write_text(BOOK.format(config=config))

    plan = tidectl("play", str(path), "--check", "--json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["check"] and planned["per_hour"] == 0.0 and planned["peak_per_hour"] == 24.0
    assert not [r for r in read(audit) if r.frontend == "playbook"]  # a plan asks nothing

    done = tidectl("play", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout  # no terminal: plain lines
    lines = done.stdout.splitlines()
    assert lines[0] == "[1/5] burst (burst)"
    assert lines[-1].startswith("done: 5 step(s); changed 1 node(s) (")
    book = load(path)
    asked = [r for r in read(audit) if r.frontend == "playbook" and r.rule != "outcome"]
    assert [r.action for r in asked] == ["burst", "run", "drain", "terminate"]
    assert {r.params["origin"] for r in asked} == {book.origin}
