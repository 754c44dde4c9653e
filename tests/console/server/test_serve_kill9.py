"""``tidectl serve`` killed outright (SIGKILL, at the worst moment: its instances launched and
not yet recorded) in the middle of a burst a CLI asked of it, then started again: every
instance the burst launched is found by its tags and accounted for, none twice, none lost."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.providers.helpers import IMAGE, raw_ec2, tags_of
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.audit import read, verify
from tidectl.console.lifecycle.failpoints import ENV
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import CLUSTER_TAG

CONFIG = f"""\
[cluster]
name = "lab"
[ssh]
user = "t"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu1"
address = "127.0.0.1"
port = 9
[[pools]]
name = "h100"
provider = "aws"
region = "us-east-1"
instance_types = ["p5.48xlarge"]
image_id = "{IMAGE}"
max_nodes = 8
[store]
path = "lab.sqlite3"
[server]
socket = "lab.sock"
"""


@pytest.fixture
def folder(ec2: Ec2FaultProxy) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tk9-", dir="/tmp"))
    (path / "known_hosts").write_text("")
    (path / "cluster.toml").write_text(CONFIG)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(folder: Path, failpoint: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ}
    env.pop(ENV, None)
    if failpoint is not None:
        env[ENV] = failpoint
    server = subprocess.Popen(
        [sys.executable, "-m", "tidectl.console", "serve", "-c", str(folder / "cluster.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 30)
    assert ready and "listening on" in server.stdout.readline()
    return server


def instances(ec2: Ec2FaultProxy) -> list[dict[str, Any]]:
    reservations = raw_ec2(ec2.url).describe_instances()["Reservations"]
    return [i for r in reservations for i in r["Instances"] if tags_of(i).get(CLUSTER_TAG)]


def test_a_service_killed_mid_burst_accounts_for_every_instance_after_a_restart(
    folder: Path, ec2: Ec2FaultProxy
) -> None:
    config = str(folder / "cluster.toml")
    first = serve(folder, failpoint="burst.after-launch")
    try:
        asked = subprocess.run(
            [sys.executable, "-m", "tidectl.console", "burst", "-c", config, "h100", "4"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert first.wait(30) == -9  # killed itself at the failpoint, as armed
        assert asked.returncode == 1 and "closed the connection" in asked.stderr
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    launched = instances(ec2)
    assert len(launched) == 4  # launched, never recorded: the crash came between
    second = serve(folder)
    try:
        # Its first pass adopts them by their tags: watch through the CLI, as a person would.
        deadline = time.monotonic() + 30
        listed: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listing = subprocess.run(
                [sys.executable, "-m", "tidectl.console", "nodes", "-c", config, "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            listed = [n for n in json.loads(listing.stdout)["nodes"] if n["instance_id"]]
            if len(listed) == 4:
                break
            time.sleep(0.3)
        assert len(listed) == 4, listed
    finally:
        second.terminate()  # our own child, by its PID
        assert second.wait(30) == 0
    with Store.open(folder / "lab.sqlite3") as store:
        nodes = store.nodes(pool="h100")
        owners = [n.instance_id for n in nodes if n.instance_id and n.state is not State.TERMINATED]
        assert sorted(owners) == sorted(i["InstanceId"] for i in launched)  # none lost, none twice
        assert len(instances(ec2)) == 4  # nothing launched again
        assert all(n.kind.value == "cloud" for n in nodes)
    # The audit log verifies after the kill: the burst's decision is there (written before
    # the launch), its outcome never came (the process died), and nothing is torn or broken.
    log = folder / "lab.sqlite3.audit.jsonl"
    checked = verify(log)
    assert checked.ok, checked.why
    burst = [r for r in read(log) if r.action == "burst"]
    assert [(r.decision, r.outcome) for r in burst] == [("allowed", "started")]
