"""The real-sshd harness itself, checked with the real OpenSSH client (root only)."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness.sshd import (
    FAST_KEX,
    TOKEN_ENV,
    HarnessUnavailable,
    PortInUseError,
    SshdHosts,
    free_port_block,
    unavailable_reason,
)

MakeHosts = Callable[..., SshdHosts]


def _ssh(
    hosts: SshdHosts, name: str, command: str, *, identity: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hosts.ssh_argv(name, command, identity=identity),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


@contextmanager
def _session(
    hosts: SshdHosts, name: str, command: str
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A running ssh session whose remote command printed its PID first; the client is ended
    on the way out whatever happened."""
    client = subprocess.Popen(
        hosts.ssh_argv(name, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None
        ready, _, _ = select.select([client.stdout], [], [], 10)
        assert ready, f"no output from {name} within 10 s"
        yield client, int(client.stdout.readline())
    finally:
        client.kill()
        client.communicate(timeout=5)


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def test_every_host_answers_with_its_own_name_and_finds_python3(sshd_hosts: SshdHosts) -> None:
    command = "echo $TIDECTL_TEST_HOST; command -v python3"
    clients = {
        host.name: subprocess.Popen(
            sshd_hosts.ssh_argv(host.name, command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in sshd_hosts
    }
    answers = {}
    for name, client in clients.items():
        out, err = client.communicate(timeout=15)
        assert client.returncode == 0, err
        answers[name] = out.split()
    assert answers == {f"node{i:03d}": [f"node{i:03d}", "/usr/bin/python3"] for i in range(1, 9)}


def test_known_hosts_names_each_host_by_name_and_address(sshd_hosts: SshdHosts) -> None:
    lines = sshd_hosts.known_hosts.read_text().splitlines()
    expected = [
        f"{h.name},[127.0.0.1]:{h.port} {sshd_hosts.host_public_key(h.name)}" for h in sshd_hosts
    ]
    assert lines == expected
    assert [h.port for h in sshd_hosts] == list(
        range(sshd_hosts.first_port, sshd_hosts.first_port + 8)
    )
    assert len({sshd_hosts.host_public_key(h.name) for h in sshd_hosts}) == 8  # one key each
    assert all(h.running and h.pid for h in sshd_hosts)


def test_stop_refuses_connections_and_ends_open_sessions(sshd_hosts_factory: MakeHosts) -> None:
    hosts = sshd_hosts_factory(1)
    with _session(hosts, "node001", "echo $$; exec sleep 30") as (client, remote_pid):
        assert _alive(remote_pid)

        hosts.stop("node001")

        assert client.wait(timeout=5) != 0  # the connection dropped under it
        assert not _alive(remote_pid)
    assert hosts["node001"].pid is None
    refused = _ssh(hosts, "node001", "true")
    assert refused.returncode == 255
    assert "Connection refused" in refused.stderr

    hosts.start("node001")

    assert _ssh(hosts, "node001", "echo $TIDECTL_TEST_HOST").stdout == "node001\n"


def test_restart_serves_again_with_a_new_listener(sshd_hosts_factory: MakeHosts) -> None:
    hosts = sshd_hosts_factory(1)
    before = hosts["node001"].pid
    hosts.restart("node001")
    assert hosts["node001"].pid not in (None, before)
    assert before is not None and not _alive(before)
    assert _ssh(hosts, "node001", "echo $TIDECTL_TEST_HOST").stdout == "node001\n"


def test_a_rotated_host_key_fails_verification(sshd_hosts_factory: MakeHosts) -> None:
    hosts = sshd_hosts_factory(2)
    known_hosts = hosts.known_hosts.read_text()
    old_key = hosts.host_public_key("node002")

    hosts.rotate_host_key("node002")

    assert hosts.host_public_key("node002") != old_key
    assert hosts.known_hosts.read_text() == known_hosts
    refused = _ssh(hosts, "node002", "echo ran")
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr
    assert refused.stdout == ""
    assert _ssh(hosts, "node001", "echo ran").stdout == "ran\n"  # the other host is untouched


def test_a_wrong_client_key_is_denied(sshd_hosts: SshdHosts) -> None:
    wrong = sshd_hosts.wrong_client_key()
    assert wrong.is_file()
    assert wrong != sshd_hosts.client_key
    denied = _ssh(sshd_hosts, "node001", "echo ran", identity=wrong)
    assert denied.returncode == 255
    assert "Permission denied (publickey)" in denied.stderr
    assert denied.stdout == ""


def test_a_garbage_host_prints_non_json_to_stream_commands_only(
    sshd_hosts_factory: MakeHosts,
) -> None:
    hosts = sshd_hosts_factory(1)
    hosts.garbage("node001", lines=2, interval_s=0.01)

    stream = _ssh(hosts, "node001", "python3 .cache/tidectl/agent.pyz stream --interval 1")
    assert stream.returncode == 0
    lines = stream.stdout.splitlines()
    assert len(lines) == 4
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    assert _ssh(hosts, "node001", "echo $TIDECTL_TEST_HOST").stdout == "node001\n"
    # SFTP still works, so an agent upload succeeds and only its output is bad.
    sftp = subprocess.run(
        ["sftp", "-b", "-", *_sftp_options(hosts), f"{hosts.user}@127.0.0.1"],
        input="pwd\n",
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert sftp.returncode == 0, sftp.stderr
    assert "Remote working directory: /var/lib/" in sftp.stdout

    hosts.restore("node001")

    assert _ssh(hosts, "node001", "echo a stream").stdout == "a stream\n"


def _sftp_options(hosts: SshdHosts) -> list[str]:
    ssh = hosts.ssh_argv("node001", "")
    options = ssh[1 : ssh.index("-p")]  # the ssh options before "-p PORT user@host CMD"
    return [*options, "-o", FAST_KEX, "-P", str(hosts["node001"].port)]


def test_close_ends_listeners_sessions_and_daemonised_leftovers(
    sshd_hosts_factory: MakeHosts,
) -> None:
    hosts = sshd_hosts_factory(2)
    listeners = [h.pid for h in hosts]
    # A process that left the session's tree (setsid, parent gone): only its environment says
    # it came from our hosts.
    escaped = _ssh(hosts, "node002", "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $!")
    escaped_pid = int(escaped.stdout)
    with _session(hosts, "node001", "echo $$; exec sleep 30") as (client, session_pid):
        assert all(
            pid is not None and _alive(pid) for pid in [*listeners, session_pid, escaped_pid]
        )

        hosts.close()

        assert client.wait(timeout=5) != 0
    survivors = [pid for pid in [*listeners, session_pid, escaped_pid] if pid and _alive(pid)]
    assert survivors == []
    assert all(h.pid is None for h in hosts)
    token = f"{TOKEN_ENV}={hosts.token}".encode()
    tagged = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and token in (proc / "environ").read_bytes():
                tagged.append(proc.name)
        except OSError:
            continue
    assert tagged == []


def test_ssh_config_reaches_each_host_by_name(sshd_hosts: SshdHosts) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = sshd_hosts.write_ssh_config(Path(folder) / "ssh_config")
        ran = subprocess.run(
            ["ssh", "-F", str(config), "-o", FAST_KEX, "node003", "echo $TIDECTL_TEST_HOST"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    assert (ran.returncode, ran.stdout) == (0, "node003\n"), ran.stderr


def test_cluster_toml_points_at_these_hosts(sshd_hosts: SshdHosts) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = sshd_hosts.write_cluster_toml(Path(folder) / "cluster.toml", interval_s=0.5)
        config = tomllib.loads(path.read_text())
        identity = (path.parent / config["ssh"]["identity_file"]).resolve()
        known_hosts = (path.parent / config["ssh"]["known_hosts"]).resolve()
    assert identity == sshd_hosts.client_key
    assert known_hosts == sshd_hosts.known_hosts
    assert config["ssh"]["user"] == "tidectl-test"
    assert config["agent"] == {"python": "python3", "interval_s": 0.5}
    assert config["sites"] == [{"name": "lab"}]
    assert config["nodes"] == [
        {
            "names": "node[001-008]",
            "site": "lab",
            "address": "127.0.0.1",
            "port_base": sshd_hosts.first_port,
        }
    ]


def test_a_taken_port_is_reported_as_such() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    port = free_port_block(1, 23501)
    with socket.socket() as squatter, tempfile.TemporaryDirectory() as folder:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert free_port_block(1, port) != port
        hosts = SshdHosts(Path(folder), 1, first_port=port)
        with pytest.raises(PortInUseError, match=f"{port}"):
            hosts.start_all()
        assert all(h.pid is None for h in hosts)


def test_without_root_the_harness_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    reason = unavailable_reason()
    assert reason is not None and "need root" in reason
    with tempfile.TemporaryDirectory() as folder:
        hosts = SshdHosts(Path(folder), 1)
        with pytest.raises(HarnessUnavailable, match="need root"):
            hosts.start_all()
        assert list(Path(folder).iterdir()) == []  # nothing written, nothing started
