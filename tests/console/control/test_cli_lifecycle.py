"""``tidectl burst | drain | resume | terminate | cancel`` end to end: the real CLI in this
process, a real store on disk, and the aws provider against the local moto EC2 (started by the
suite, behind the fault proxy; nothing leaves loopback). Scheduler ``none``: on-prem nodes
drain at once, since nothing places jobs."""

from __future__ import annotations

import json
import logging
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from tests.console.providers.helpers import IMAGE, raw_ec2, tags_of
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.audit import read, verify
from tidectl.console.cli import main
from tidectl.console.providers.base import CLUSTER_TAG, INTENT_TAG

ME = pwd.getpwuid(os.getuid()).pw_name
CONFIG = f"""\
[cluster]
name = "lab"
[ssh]
user = "tidectl"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu[1-2]"
[[pools]]
name = "h100"
provider = "aws"
region = "us-east-1"
instance_types = ["p5.48xlarge"]
image_id = "{IMAGE}"
max_nodes = 8
price_per_hour = 98.32
[store]
path = "lab.sqlite3"
"""


@pytest.fixture
def config(tmp_path: Path, ec2: Ec2FaultProxy) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    status, out, err = run(capsys, *argv, "--json")
    assert out, err
    return status, json.loads(out)


def instances(ec2: Ec2FaultProxy) -> list[dict[str, Any]]:
    reservations = raw_ec2(ec2.url).describe_instances()["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_a_burst_launches_tagged_instances_once_and_lists_them(
    config: Path, ec2: Ec2FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    status, burst = run_json(capsys, "burst", "-c", str(config), "h100", "3")
    assert status == 0, burst
    assert (burst["wanted"], burst["launched"], len(burst["nodes"])) == (3, 3, 3)
    assert burst["price_per_node_hour"] == 98.32
    launched = instances(ec2)
    assert len(launched) == 3
    assert {tags_of(i)[CLUSTER_TAG] for i in launched} == {"lab"}
    assert {tags_of(i)[INTENT_TAG] for i in launched} == {burst["intent_id"]}
    status, again = run_json(capsys, "burst", "-c", str(config), "h100", "3", "--ensure")
    assert (status, again["launched"]) == (0, 0) and "nothing to do" in again["sentence"]
    assert len(instances(ec2)) == 3
    status, listed = run_json(capsys, "nodes", "-c", str(config))
    assert sorted(n["name"] for n in listed["nodes"]) == sorted(burst["nodes"])
    assert {n["state"] for n in listed["nodes"]} == {"provisioning"}
    status, out, _ = run(capsys, "burst", "-c", str(config), "h100", "1")
    assert status == 0
    assert "launched 1 of 1 node(s) in pool h100" in out and "adds about $98.32/h" in out


def test_a_wait_on_aws_nodes_says_why_they_cannot_be_admitted_and_terminate_ends_them(
    config: Path, ec2: Ec2FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("burst", "-c", str(config), "h100", "2", "--wait", "--timeout", "4")
    status, out, _ = run(capsys, *argv)
    assert status == 1, out
    assert "gave up after" in out and "0 of 2 node(s) active" in out
    # moto's console shows no host keys: refused, never trusted blindly.
    assert "has not shown its SSH host keys on its console yet" in out
    _, listed = run_json(capsys, "nodes", "-c", str(config))
    names = [n["name"] for n in listed["nodes"]]
    assert {n["state"] for n in listed["nodes"]} == {"bootstrapping"}
    nodeset = ",".join(names)
    # Destructive: without --yes, only what it would do; nothing is asked of EC2.
    ec2.reset()
    status, preview = run_json(capsys, "terminate", "-c", str(config), nodeset, "--reason", "x")
    assert (status, preview["preview"]) == (1, True) and "add --yes" in preview["sentence"]
    assert ec2.requests("TerminateInstances") == []
    status, ended = run_json(
        capsys,
        "terminate",
        "-c",
        str(config),
        nodeset,
        "--reason",
        "they never came up",
        "--yes",
        "--wait",
        "--timeout",
        "20",
    )
    assert status == 0, ended
    assert set(ended["wait"]["states"].values()) == {"terminated"}
    assert {i["State"]["Name"] for i in instances(ec2)} == {"terminated"}
    _, listed = run_json(capsys, "nodes", "-c", str(config))
    assert all(n["cost_usd"] >= 0 for n in listed["nodes"])


def test_on_prem_nodes_drain_and_resume_but_are_never_terminated(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "drain", "-c", str(config), "gpu[1-2]", "--reason", "firmware", "--wait"
    )
    assert status == 0, out
    assert "drain set on 2 node(s): firmware" in out and "all 2 node(s) drained" in out
    status, resumed = run_json(capsys, "resume", "-c", str(config), "gpu[1-2]")
    assert status == 0 and [n["after"] for n in resumed["nodes"]] == ["active", "active"]
    status, out, err = run(capsys, "terminate", "-c", str(config), "gpu1", "--reason", "x", "--yes")
    assert status == 1 and "never terminates a machine it did not launch" in err
    assert "(request " in err


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    [
        (("cancel", "nope"), 1, "no burst with intent id 'nope'"),
        (("drain", "gpu[1-"), 1, "is not a node set"),
        (("drain", "gpu9"), 1, "no node named gpu9"),
        (("burst", "tpu", "1"), 1, "no pool named 'tpu'"),
        (("burst", "h100", "0"), 2, "COUNT must be at least 1"),
        (("burst", "h100", "99"), 1, "allows at most 8"),
        (("terminate", "h100-x", "--reason", " ", "--yes"), 1, "terminate needs a reason"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    status: int,
    words: str,
) -> None:
    command, *rest = argv
    got, _, err = run(capsys, command, "-c", str(config), *rest)
    assert (got, words in err) == (status, True), err


def test_a_sim_pool_is_refused_by_a_one_shot_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(
        CONFIG.split("[[pools]]", maxsplit=1)[0]
        + '[[pools]]\nname = "burst"\nprovider = "sim"\nmax_nodes = 4\n'
    )
    status, _, err = run(capsys, "burst", "-c", str(path), "burst", "1")
    assert status == 2 and "is a sim pool" in err and "tidectl demo" in err


def test_slurms_programs_work_without_a_service_against_aws(
    tmp_path: Path, ec2: Ec2FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tidectl slurm`` with no service: the control plane is assembled in the program, the
    named CLOUD nodes are launched in EC2 (tagged, once however often Slurm asks), and
    resume-fail ends them."""
    (tmp_path / "known_hosts").write_text("")
    config = tmp_path / "cluster.toml"
    config.write_text(CONFIG.replace("max_nodes = 8\n", 'slurm_nodes = "cloud[1-4]"\n'))
    status, out, err = run(capsys, "slurm", "resume", "cloud[1-2]", "-c", str(config))
    assert status == 0, err
    assert out.splitlines() == ["launched 2 of 2 node(s) in pool h100: cloud1 cloud2"]
    assert len(instances(ec2)) == 2
    status, out, _ = run(capsys, "slurm", "resume", "cloud[1-2]", "-c", str(config))
    assert status == 0 and "nothing to do" in out and len(instances(ec2)) == 2
    status, out, err = run(capsys, "slurm", "resume-fail", "cloud2", "-c", str(config))
    assert status == 0, err
    assert "cloud2: requested -> terminating" in out or "cloud2: provisioning -> terminating" in out
    ending = [i for i in instances(ec2) if i["State"]["Name"] in ("shutting-down", "terminated")]
    assert len(ending) == 1
    status, out, err = run(capsys, "slurm", "suspend", "cloud9", "-c", str(config))
    assert status == 0 and "nothing to end" in out
    *_, decided, ended = read(tmp_path / "lab.sqlite3.audit.jsonl")
    assert (decided.action, decided.outcome) == ("slurm-powered-down", "started")
    assert ended.outcome.startswith("done: none of 1 node(s) is a live cloud node")


def test_a_burst_its_data_class_may_not_go_to_makes_no_ec2_call(
    tmp_path: Path, ec2: Ec2FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "known_hosts").write_text("")
    config = tmp_path / "cluster.toml"
    classes = '[[data_classes]]\nname = "pii"\nregions = ["eu-west-1", "eu-central-1"]\n'
    config.write_text(CONFIG + classes)
    ec2.reset()
    status, out, err = run(capsys, "burst", "-c", str(config), "h100", "2", "--data-class", "pii")
    assert status == 1 and out == ""
    assert "data of class pii may not be processed in us-east-1 (pool h100)" in err
    assert ec2.requests() == []  # refused before any provider call: not even a price
    status, said = run_json(capsys, "burst", "-c", str(config), "h100", "1")
    assert status == 1 and "names no data class and pool h100 has none" in said["error"]
    assert ec2.requests("RunInstances") == []


def test_every_action_leaves_its_decision_and_outcome_in_a_log_that_verifies(
    config: Path, ec2: Ec2FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    status, burst = run_json(capsys, "burst", "-c", str(config), "h100", "1")
    assert status == 0, burst
    status, _, _ = run(capsys, "drain", "-c", str(config), "gpu[1-", "--reason", "x")
    assert status == 1  # not a node set: refused after the decision, and recorded so
    log = config.parent / "lab.sqlite3.audit.jsonl"
    records = list(read(log))
    assert [(r.action, r.decision, r.outcome.split(":")[0]) for r in records] == [
        ("burst", "allowed", "started"),
        ("burst", "allowed", "done"),
        ("drain", "allowed", "started"),
        ("drain", "allowed", "refused"),
    ]
    started = records[0]
    assert (started.actor, started.frontend, started.targets) == (ME, "cli", ("h100",))
    assert started.params["count"] == 1 and started.request_id == records[1].request_id
    assert records[1].outcome == f"done: {burst['sentence']}"
    assert verify(log).ok
    status, out, _ = run(capsys, "audit", "verify", "-c", str(config))
    assert status == 0 and "ok: 4 records verify" in out


def test_a_denied_action_is_audited_and_an_unwritable_log_refuses_every_change(
    tmp_path: Path, ec2: Ec2FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "known_hosts").write_text("")
    config = tmp_path / "cluster.toml"
    config.write_text(CONFIG + '[roles]\nviewer = ["' + ME + '"]\n')
    status, _, err = run(capsys, "terminate", "-c", str(config), "h100-x", "--reason", "r", "--yes")
    assert status == 1 and f"{ME} may not terminate: that needs the admin role" in err
    (denied,) = list(read(tmp_path / "lab.sqlite3.audit.jsonl"))
    assert (denied.decision, denied.action, denied.rule) == (
        "denied",
        "terminate",
        f"[roles] viewer lists {ME}",
    )
    assert denied.outcome.startswith(f"denied: {ME} may not terminate")
    # The log becomes unwritable (here: its path is taken by a folder): nothing changes.
    config.write_text(CONFIG + '[audit]\npath = "gone/audit.jsonl"\n')
    (tmp_path / "gone").write_text("a file where the log's folder should be")
    ec2.reset()
    status, _, err = run(capsys, "burst", "-c", str(config), "h100", "1")
    assert status == 2 and "audit" in err and "nothing can be done without an audit trail" in err
    assert ec2.requests("RunInstances") == []


KEY_ID = "AKIAFAKEFAKEFAKE2345"
SECRET = "tidectl-fake-secret-Zq8rT2"
SESSION = "tidectl-fake-session-Lm4pX9"


def test_no_secret_reaches_any_output_even_when_the_cloud_quotes_one(
    config: Path,
    ec2: Ec2FaultProxy,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whole burst with recognisable fake credentials, logging at INFO, plus a refusal
    whose message quotes the access key id (EC2's AuthFailure does): not one of them in the
    output, the logs, the audit log or the store."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    caplog.set_level(logging.INFO)  # what tidectl -v logs
    said: list[str] = []
    for argv in (
        ["-v", "burst", "-c", str(config), "h100", "1", "--json"],
        ["-v", "nodes", "-c", str(config), "--json"],
    ):
        status, out, err = run(capsys, *argv)
        assert status == 0, err
        said += [out, err]
    ec2.fail(
        "RunInstances",
        "AuthFailure",
        status=401,
        message=f"AWS was not able to validate the provided access credentials ({KEY_ID})",
    )
    status, out, err = run(capsys, "-v", "burst", "-c", str(config), "h100", "1")
    assert status == 1 and "credentials ([redacted])" in out + err  # said, the key id out
    said += [out, err, caplog.text]
    folder = config.parent
    files = [folder / "lab.sqlite3", folder / "lab.sqlite3.audit.jsonl"]
    said += [path.read_bytes().decode(errors="replace") for path in files]
    for secret in (KEY_ID, SECRET, SESSION):
        leaks = [text[max(0, i - 60) : i + 60] for text in said if (i := text.find(secret)) >= 0]
        assert leaks == [], f"{secret} leaked: {leaks}"
