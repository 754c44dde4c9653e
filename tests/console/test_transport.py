"""The SSH transport against an in-process asyncssh server: deploy, stream, and every failure."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncssh
import pytest

from tests.fakes.ssh_node import FakeNode, make_fake_node
from tidectl.agents import protocol
from tidectl.console.config.model import AgentSettings, NodeSpec, SshSettings
from tidectl.console.fanout import group, run_on
from tidectl.console.model import LinkState
from tidectl.console.transport.backoff import Backoff
from tidectl.console.transport.deploy import AgentPackage, deploy
from tidectl.console.transport.errors import AgentFailed
from tidectl.console.transport.link import NodeLink
from tidectl.console.transport.ssh import SshConnector

AGENT = AgentSettings(interval_s=0.1)
PACKAGE = AgentPackage.build()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[FakeNode]:
    fake = await make_fake_node(tmp_path).start()
    yield fake
    await fake.stop()


def settings(node: FakeNode, **overrides: object) -> SshSettings:
    values: dict[str, object] = {
        "user": "tidectl",
        "identity_file": node.client_key_path,
        "known_hosts": node.known_hosts,
        "connect_timeout_s": 2.0,
        "login_timeout_s": 2.0,
        "keepalive_interval_s": 1.0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    values.update(overrides)
    return SshSettings(**values)  # type: ignore[arg-type]


def spec(node: FakeNode, name: str = "n1") -> NodeSpec:
    return NodeSpec(name=name, address="127.0.0.1", port=node.port, site="lab", user="tidectl")


class Recorder:
    def __init__(self) -> None:
        self.states: list[tuple[LinkState, str | None]] = []
        self.lines: list[bytes] = []
        self.changed = asyncio.Event()

    def on_state(self, name: str, state: LinkState, error: str | None) -> None:
        self.states.append((state, error))
        self.changed.set()

    def on_line(self, name: str, line: bytes) -> None:
        self.lines.append(line)
        self.changed.set()

    async def wait_for(self, check: object, timeout: float = 10.0) -> None:
        assert callable(check)
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    def seen(self, state: LinkState) -> bool:
        return any(s == state for s, _ in self.states)

    def error_for(self, state: LinkState) -> str:
        return next(e or "" for s, e in self.states if s == state)


async def run_until(link: NodeLink, recorder: Recorder, check: Callable[[], bool]) -> None:
    """Run ``link`` until ``check()`` holds, then stop it."""
    task = asyncio.create_task(link.run())
    try:
        await recorder.wait_for(check)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def link_for(node: FakeNode, recorder: Recorder, **ssh: object) -> NodeLink:
    return NodeLink(
        spec(node),
        SshConnector(settings(node, **ssh)),
        on_state=recorder.on_state,
        on_line=recorder.on_line,
        package=PACKAGE,
        agent=AGENT,
        backoff=Backoff(0.05, 0.2),
    )


async def test_deploy_uploads_once_by_content_hash(node: FakeNode) -> None:
    connector = SshConnector(settings(node))
    conn = await connector.connect(spec(node))
    async with conn:
        first = await deploy(conn, "n1", PACKAGE, AGENT)
        second = await deploy(conn, "n1", PACKAGE, AGENT)
    assert first.uploaded and not second.uploaded
    assert first.python_version == (3, 11, 2)
    stored = node.root / first.path
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == PACKAGE.sha256
    assert first.path == f".cache/tidectl/tidectl-agent-{PACKAGE.sha256[:16]}.pyz"
    assert not list(stored.parent.glob("*.tmp-*"))


async def test_deploy_refuses_a_node_without_usable_python(node: FakeNode) -> None:
    node.python_version = "3.6.15"
    conn = await SshConnector(settings(node)).connect(spec(node))
    async with conn:
        with pytest.raises(
            AgentFailed, match=r"python3 on the node is 3\.6\.15; the agent needs 3\.8"
        ):
            await deploy(conn, "n1", PACKAGE, AGENT)
        with pytest.raises(AgentFailed, match="no usable python9 on the node"):
            await deploy(conn, "n1", PACKAGE, AgentSettings(python="python9"))


async def test_link_streams_the_agent_and_lines_decode(node: FakeNode) -> None:
    recorder = Recorder()
    await run_until(link_for(node, recorder), recorder, lambda: len(recorder.lines) >= 3)
    records = [protocol.decode(line) for line in recorder.lines]
    assert records[0]["type"] == "hello"
    assert [r["seq"] for r in records[1:3]] == [1, 2]
    states = [s for s, _ in recorder.states]
    assert states[:3] == [LinkState.CONNECTING, LinkState.DEPLOYING, LinkState.STREAMING]
    assert states[-1] == LinkState.STOPPED


async def test_host_key_mismatch_sends_no_command(node: FakeNode, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    node.known_hosts.write_text(
        f"[127.0.0.1]:{node.port} {other.export_public_key().decode().strip()}\n"
    )
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.HOST_KEY_MISMATCH)
    )
    assert node.commands == []
    message = recorder.error_for(LinkState.HOST_KEY_MISMATCH)
    assert "does not match" in message and "no command was sent" in message


async def test_unknown_host_is_refused_too(node: FakeNode) -> None:
    node.known_hosts.write_text("")
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.HOST_KEY_MISMATCH)
    )
    assert node.commands == []


async def test_a_deleted_known_hosts_is_named_not_called_unreachable(node: FakeNode) -> None:
    node.known_hosts.unlink()
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.HOST_KEY_MISMATCH)
    )
    assert node.commands == []
    message = recorder.error_for(LinkState.HOST_KEY_MISMATCH)
    assert f"cannot read known_hosts {node.known_hosts}" in message
    assert "No such file" in message and "no command was sent" in message


async def test_refused_user_key_is_auth_failed(node: FakeNode, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    recorder = Recorder()
    await run_until(
        link_for(node, recorder, identity_file=stranger),
        recorder,
        lambda: recorder.seen(LinkState.AUTH_FAILED),
    )
    assert "refused our key" in recorder.error_for(LinkState.AUTH_FAILED)
    assert node.commands == []


async def test_node_that_comes_back_streams_again_without_help(node: FakeNode) -> None:
    port = node.port
    await node.stop()
    recorder = Recorder()
    task = asyncio.create_task(link_for(node, recorder).run())
    try:
        await recorder.wait_for(lambda: recorder.seen(LinkState.UNREACHABLE))
        assert "refused" in recorder.error_for(LinkState.UNREACHABLE)
        await node.start(port)
        await recorder.wait_for(lambda: recorder.seen(LinkState.STREAMING))
        await node.stop()  # and away again while streaming
        recorder.states.clear()
        await recorder.wait_for(lambda: recorder.seen(LinkState.UNREACHABLE))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _scenario_link(node: FakeNode, recorder: Recorder) -> asyncio.Task[None]:
    return asyncio.create_task(link_for(node, recorder).run())


async def test_endless_line_is_refused_and_the_stream_recycled(node: FakeNode) -> None:
    async def endless(process: asyncssh.SSHServerProcess[bytes]) -> None:
        chunk = b"x" * 65536
        for _ in range(40):  # 2.5 MiB without a newline
            process.stdout.write(chunk)
            await process.stdout.drain()

    node.stream = endless
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.AGENT_FAILED)
    )
    assert "without a newline" in recorder.error_for(LinkState.AGENT_FAILED)
    assert recorder.lines == []


async def test_flood_is_cut_before_decoding(node: FakeNode) -> None:
    async def flood(process: asyncssh.SSHServerProcess[bytes]) -> None:
        process.stdout.write(b'{"n": 1}\n' * 5000)
        await process.stdout.drain()
        await asyncio.sleep(30)

    node.stream = flood
    recorder = Recorder()
    task = await _scenario_link(node, recorder)
    try:
        await recorder.wait_for(lambda: len(recorder.lines) >= 5)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(recorder.lines) <= 5 * 4  # at most the allowance of the few windows that passed


async def test_agent_that_exits_says_why(node: FakeNode) -> None:
    async def crash(process: asyncssh.SSHServerProcess[bytes]) -> None:
        process.stderr.write(b"Traceback (most recent call last):\nMemoryError: out of memory\n")
        process.exit(1)

    node.stream = crash
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.AGENT_FAILED)
    )
    assert recorder.error_for(LinkState.AGENT_FAILED) == (
        "agent exited with status 1: MemoryError: out of memory"
    )


async def test_silent_agent_goes_stale_then_is_recycled(node: FakeNode) -> None:
    async def silent(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await asyncio.sleep(30)

    node.stream = silent
    recorder = Recorder()
    task = await _scenario_link(node, recorder)
    try:
        await recorder.wait_for(lambda: recorder.seen(LinkState.STALE))
        await recorder.wait_for(lambda: recorder.seen(LinkState.UNREACHABLE))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "no data from the agent" in recorder.error_for(LinkState.UNREACHABLE)


async def test_the_last_line_of_a_long_stderr_says_why(node: FakeNode) -> None:
    async def noisy_crash(process: asyncssh.SSHServerProcess[bytes]) -> None:
        process.stderr.write(b"warning: something chatty\n" * 2000)  # ~50 kB
        process.stderr.write(b"OSError: [Errno 28] No space left on device\n")
        process.exit(3)

    node.stream = noisy_crash
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.AGENT_FAILED)
    )
    assert recorder.error_for(LinkState.AGENT_FAILED) == (
        "agent exited with status 3: OSError: [Errno 28] No space left on device"
    )


async def test_an_agent_silent_for_a_while_streams_again_on_the_same_connection(
    node: FakeNode,
) -> None:
    # AGENT's interval is 0.1 s: stale after 0.3 s of silence, recycled after 1 s.
    async def pause(process: asyncssh.SSHServerProcess[bytes]) -> None:
        process.stdout.write(b'{"n": 1}\n')
        await asyncio.sleep(0.6)
        for n in range(2, 6):
            process.stdout.write(b'{"n": %d}\n' % n)
            await asyncio.sleep(0.05)
        await asyncio.sleep(30)

    node.stream = pause
    recorder = Recorder()
    await run_until(link_for(node, recorder), recorder, lambda: len(recorder.lines) >= 5)
    states = [state for state, _ in recorder.states]
    assert states[-4:] == [
        LinkState.STREAMING,
        LinkState.STALE,
        LinkState.STREAMING,
        LinkState.STOPPED,  # run_until's cancel
    ]
    assert states.count(LinkState.CONNECTING) == 1  # never reconnected
    assert "no data from the agent" in recorder.error_for(LinkState.STALE)


async def test_a_consumer_that_raises_ends_the_stream_and_the_link_recovers(
    node: FakeNode,
) -> None:
    async def steady(process: asyncssh.SSHServerProcess[bytes]) -> None:
        while True:
            process.stdout.write(b'{"n": 1}\n')
            await asyncio.sleep(0.05)

    node.stream = steady
    recorder = Recorder()
    raised: list[bytes] = []

    def on_line(name: str, line: bytes) -> None:
        if not raised:  # a bug downstream, once
            raised.append(line)
            raise KeyError("n")
        recorder.on_line(name, line)

    link = link_for(node, recorder)
    link._on_line = on_line
    await run_until(link, recorder, lambda: len(recorder.lines) >= 3)
    states = [state for state, _ in recorder.states]
    assert LinkState.UNREACHABLE in states
    assert "KeyError" in recorder.error_for(LinkState.UNREACHABLE)
    assert states.count(LinkState.CONNECTING) == 2  # the stream ended, the link came back
    assert states[-2:] == [LinkState.STREAMING, LinkState.STOPPED]  # STOPPED: run_until


async def test_fanout_runs_over_open_connections_and_groups(tmp_path: Path) -> None:
    nodes = [await make_fake_node(tmp_path / f"n{i}").start() for i in range(3)]
    try:
        # One known_hosts for all three, as a cluster has.
        shared = tmp_path / "known_hosts"
        shared.write_text("".join(n.known_hosts.read_text() for n in nodes))
        for n in nodes[1:]:
            n.client_key = nodes[0].client_key
        connector = SshConnector(settings(nodes[0], known_hosts=shared))
        links = [
            NodeLink(spec(n, f"gpu{i:02d}"), connector, on_state=lambda *a: None)
            for i, n in enumerate(nodes)
        ]
        tasks = [asyncio.create_task(link.run()) for link in links]
        await asyncio.wait_for(asyncio.gather(*(link.connected.wait() for link in links[:1])), 5)
        await asyncio.sleep(0.3)
        results = await run_on(links, "hostname", timeout_s=5)
        results += await run_on(links[:1], "frobnicate", timeout_s=5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for n in nodes:
            await n.stop()
    groups = group(results)
    rendered = [
        (g.nodes, g.outcome.exit_status, g.outcome.stdout, g.outcome.stderr) for g in groups
    ]
    # Nodes 1 and 2 were started with a different authorized key than node 0's client key
    # (each fake generates its own); only gpu00 is reachable with the shared key.
    assert ("gpu00", 127, "", "sh: 1: frobnicate: not found\n") in rendered
    assert ("gpu00", 0, "fake\n", "") in rendered
    failed = {g.nodes: g.outcome.error or "" for g in groups if g.outcome.error is not None}
    assert sorted(failed) == ["gpu01", "gpu02"]  # each error names its own port: not grouped
    assert all("refused our key" in error for error in failed.values())
    assert groups[-1].outcome.ok  # failures sort first


async def test_host_certificate_signed_by_a_known_ca_is_accepted(node: FakeNode) -> None:
    """known_hosts may trust a host CA (@cert-authority) instead of listing every key."""
    await node.stop()
    ca = asyncssh.generate_private_key("ssh-ed25519")
    cert = ca.generate_host_certificate(node.host_key, "n1", principals=["127.0.0.1"])
    node.host_key_and_cert = (node.host_key, cert)
    await node.start()
    node.known_hosts.write_text(
        f"@cert-authority 127.0.0.1 {ca.export_public_key().decode().strip()}\n"
    )
    recorder = Recorder()
    await run_until(link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.STREAMING))

    # A certificate from another CA is refused like a wrong key.
    await node.stop()
    other_ca = asyncssh.generate_private_key("ssh-ed25519")
    node.host_key_and_cert = (
        node.host_key,
        other_ca.generate_host_certificate(node.host_key, "n1", principals=["127.0.0.1"]),
    )
    await node.start(node.port)
    node.known_hosts.write_text(
        f"@cert-authority 127.0.0.1 {ca.export_public_key().decode().strip()}\n"
    )
    node.commands.clear()
    recorder = Recorder()
    await run_until(
        link_for(node, recorder), recorder, lambda: recorder.seen(LinkState.HOST_KEY_MISMATCH)
    )
    assert node.commands == []


async def test_connects_in_flight_are_bounded_by_fanout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never more than [ssh].fanout connects at once (sshd's MaxStartups drops bursts)."""
    node = await make_fake_node(tmp_path).start()
    in_flight = peak = 0
    real_connect = asyncssh.connect

    async def counting_connect(*args: object, **kwargs: object) -> asyncssh.SSHClientConnection:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.05)
            return await real_connect(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    connector = SshConnector(settings(node, fanout=3))
    monkeypatch.setattr(asyncssh, "connect", counting_connect)
    try:
        conns = await asyncio.gather(*(connector.connect(spec(node)) for _ in range(10)))
        for conn in conns:
            conn.close()
    finally:
        await node.stop()
    assert len(conns) == 10
    assert peak == 3


async def test_a_cancel_that_meets_a_recycle_still_stops_the_link(
    node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node removed (its task cancelled) just as its stream is recycled must stop, not
    read the cancel as the recycle and reconnect."""
    recorder = Recorder()
    link = link_for(node, recorder)
    in_session = asyncio.Event()

    async def session() -> None:
        in_session.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(link, "_session", session)
    task = asyncio.create_task(link.run())
    await in_session.wait()
    link.recycle("3 unreadable lines")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert link.state is LinkState.STOPPED
