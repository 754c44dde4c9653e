"""The simulated cluster's SSH server: one listener, one host key and one login per node.

A node's agent is the real ``Stream`` over the node's simulated hardware, unthreaded
(``threaded=False``: the sim probes cannot block), driven by a task that samples on a
monotonic schedule and writes into the SSH channel. A client that stops reading costs a
bounded buffer, not memory without end: while the channel holds more than
``WRITE_BUFFER_BOUND`` bytes unsent the node skips ticks, as a real agent blocked on a full
pipe would, and resumes with the next sequence number. Each session's task is cancelled as
soon as its channel closes (the client closed it, disconnected, or the server is stopping),
so no node samples for nobody.

A node's simulated hardware (``SimNode``) lives as long as the server: a console that
reconnects sees counters go on from where they were, as a real node's would, and an event in
the fault file fires once per node, not once per agent started.

**Cost.** A sample costs the server about 0.8 ms of CPU with a thousand nodes streaming (the
sim probes about half, SSH framing and encryption most of the rest; ``bench/sim_server_load.py``),
so one process would run a thousand nodes at 1 Hz at about 80 % of a core, with no room for
a burst of logins. ``serve`` therefore splits more than ``NODES_PER_WORKER`` nodes over worker
processes (at most one per core, forked after the ports are bound), each running a
:class:`SimServer` for its share. Three choices keep the cost down without changing what a
client sees:

* records are encoded with msgspec, which writes the same JSON as ``protocol.encode`` (same
  keys, order and values, non-finite floats as null) about ten times faster;
* nodes offer AES-GCM and AES-CTR ciphers, not ChaCha20-Poly1305 (asyncssh builds three
  cipher contexts per packet for it), as FIPS-configured sshds at many HPC sites do;
* the five probes of a tick read the node's clock at one instant (``_TickClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import math
import os
import random
import resource
import signal
import socket
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO, NoReturn, cast

import asyncssh
import msgspec

from tidectl.agents import protocol
from tidectl.agents.lease import LOG_SUFFIX
from tidectl.agents.lease import touch as touch_lease
from tidectl.agents.pretty import render_facts, render_sample
from tidectl.agents.probes.sim import SimNode, probes_for
from tidectl.agents.runner import Stream
from tidectl.console.sim import files
from tidectl.console.sim import watchdog as sim_watchdog
from tidectl.console.sim.defaults import (
    DEFAULT_ADDRESS,
    DEFAULT_BASE_PORT,
    DEFAULT_USER,
    NODES_PER_WORKER,
)
from tidectl.console.sim.files import SimFilesError, SimLayout
from tidectl.console.sim.packets import send_no_ignore_packets
from tidectl.console.sim.shell import (
    Action,
    NodeView,
    PowerOff,
    Reply,
    RunAgent,
    Sleep,
    interpret,
    node_path,
)

#: Ports from here up are the kernel's ephemeral range, where outgoing connections (the
#: console's own, a thousand of them) take their local ports: listeners stay below it.
EPHEMERAL_PORT_START = 32768
#: Unsent bytes a channel may hold before its node skips ticks: about a pipe's worth.
WRITE_BUFFER_BOUND = 64 * 1024
#: What the nodes' sshd offers; see the module's docstring.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")

_PICK_LOW = 20000  # where --base-port 0 looks for a free run of ports
_PICK_ATTEMPTS = 64
_FDS_PER_NODE = 2  # its listener and one connection
_FDS_SPARE = 256
_CLOSE_TIMEOUT_S = 5.0
_PARENT_CHECK_S = 1.0

_log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class SimServerError(Exception):
    """The simulated cluster cannot start; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    """How to serve a simulated cluster."""

    out: Path
    nodes: int
    base_port: int = DEFAULT_BASE_PORT  # 0: pick a free run of ports below 32768
    seed: int = 0  # node i (from 0) has seed + i
    user: str = DEFAULT_USER
    python: str = "python3"
    interval_s: float = 1.0  # written into cluster.toml for the console
    address: str = DEFAULT_ADDRESS
    #: Random faults per node per hour (a seeded Poisson stream; each ends by itself).
    fault_rate_per_hour: float = 0.0
    #: The nodes' names, one per node in node-set order; empty: sim0001, sim0002, ...
    #: (The sim provider names each cloud instance's node after its pool.)
    names: tuple[str, ...] = ()


class _TickClock:
    """``time.monotonic``, held still while a tick samples.

    Each of the five sim probes reads the node's clock; reading one instant, they share the
    node's state computed for it (``SimNode`` keeps the last) instead of computing it five
    times, about a fifth of a tick's cost. A loop runs one tick at a time: holding is safe.
    """

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: float | None = None

    def __call__(self) -> float:
        return time.monotonic() if self.held is None else self.held


class _Node:
    """One simulated node: its name, port, keys, login directory and hardware."""

    def __init__(
        self,
        name: str,
        seed: int,
        port: int,
        host_key: asyncssh.SSHKey,
        layout: SimLayout,
        *,
        fault_rate_per_hour: float = 0.0,
    ) -> None:
        self.name = name
        self.seed = seed
        self.port = port
        self.host_key = host_key
        self.root = layout.node_root(name)
        self.faults_path = layout.faults
        self.fault_rate_per_hour = fault_rate_per_hour
        self.clock = _TickClock()
        self._hardware: SimNode | None = None

    def hardware(self) -> SimNode:
        # Built on first use: a thousand idle nodes cost nothing until something asks.
        if self._hardware is None:
            self._hardware = SimNode(
                self.seed,
                self.name,
                self.clock,
                fault_rate_per_hour=self.fault_rate_per_hour,
                faults_path=str(self.faults_path),
            )
        return self._hardware


# -- preparing the folder and the ports ---------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """A prepared cluster: its files written, its keys loaded, one bound socket per node."""

    options: SimOptions
    layout: SimLayout
    client_key: asyncssh.SSHKey
    nodes: list[_Node]
    sockets: list[socket.socket]

    def ready_line(self) -> str:
        first, last = self.nodes[0].port, self.nodes[-1].port
        return (
            f"tidectl sim: {len(self.nodes)} nodes on {self.options.address}:{first}-{last}; "
            f"config {self.layout.cluster_toml}"
        )

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def release(self) -> None:
        """Remove the pid file if this process wrote it."""
        with contextlib.suppress(OSError):
            if self.layout.pid.read_text().strip() == str(os.getpid()):
                self.layout.pid.unlink()


def prepare(options: SimOptions) -> Plan:
    """Check the options, make the folder's keys and files, and bind every node's port."""
    _check_options(options)
    layout = SimLayout(options.out.resolve())
    try:
        layout.out.mkdir(parents=True, exist_ok=True)
        _refuse_second_server(layout)
        _raise_fd_limit(options.nodes * _FDS_PER_NODE + _FDS_SPARE)
        names = list(options.names) or files.node_names(options.nodes)
        client_key = files.ensure_client_key(layout)
        host_keys = files.ensure_host_keys(layout, names)
        for name in names:
            layout.node_root(name).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimServerError(f"cannot prepare {layout.out}: {exc}") from exc
    except SimFilesError as exc:
        raise SimServerError(str(exc)) from exc
    sockets = _bind_ports(options.address, options.base_port, options.nodes)
    nodes = [
        _Node(
            name,
            options.seed + index,
            sock.getsockname()[1],
            host_keys[name],
            layout,
            fault_rate_per_hour=options.fault_rate_per_hour,
        )
        for index, (name, sock) in enumerate(zip(names, sockets, strict=True))
    ]
    plan = Plan(options, layout, client_key, nodes, sockets)
    try:
        _write_files(plan)
    except OSError as exc:
        plan.close_sockets()
        plan.release()
        raise SimServerError(f"cannot write into {layout.out}: {exc}") from exc
    return plan


def _write_files(plan: Plan) -> None:
    layout, opts = plan.layout, plan.options
    entries = [(n.name, opts.address, n.port, n.host_key) for n in plan.nodes]
    files.write_atomic(layout.known_hosts, files.known_hosts_text(entries).encode())
    toml = files.cluster_toml_text(
        names=[n.name for n in plan.nodes],
        address=opts.address,
        port_base=plan.nodes[0].port,
        user=opts.user,
        python=opts.python,
        interval_s=opts.interval_s,
    )
    files.write_atomic(layout.cluster_toml, toml.encode())
    # A new run starts without faults; nodes treat a missing or empty file alike.
    files.write_atomic(layout.faults, b"")
    files.write_atomic(layout.pid, f"{os.getpid()}\n".encode())


def _check_options(opts: SimOptions) -> None:
    if opts.nodes < 1:
        raise SimServerError(f"--nodes must be at least 1, got {opts.nodes}")
    if opts.base_port != 0:
        last = opts.base_port + opts.nodes - 1
        if opts.base_port < 1024:
            raise SimServerError(
                f"--base-port {opts.base_port} is a privileged port; pick one from 1024 up "
                "(or 0 to have free ports picked)"
            )
        if last >= EPHEMERAL_PORT_START:
            raise SimServerError(
                f"ports {opts.base_port}-{last} reach {EPHEMERAL_PORT_START} or above, where "
                "outgoing connections take their ports; pick a base port so that the last "
                f"node's is below {EPHEMERAL_PORT_START} (or 0 to have free ports picked)"
            )
    elif opts.nodes > EPHEMERAL_PORT_START - 1024:
        raise SimServerError(f"{opts.nodes} nodes do not fit below port {EPHEMERAL_PORT_START}")
    if opts.names:
        if len(opts.names) != opts.nodes:
            raise SimServerError(
                f"{len(opts.names)} node names given for {opts.nodes} nodes; give one per node"
            )
        problem = files.names_problem(opts.names)
        if problem is not None:
            raise SimServerError(problem)
    rate = opts.fault_rate_per_hour
    if not (math.isfinite(rate) and rate >= 0):
        raise SimServerError(
            f"--fault-rate must be a number of faults per node per hour, 0 or more, got {rate}"
        )
    if not opts.address.startswith("127."):
        raise SimServerError(
            f"the simulated cluster listens on loopback only (127.0.0.0/8), not {opts.address}"
        )


def _refuse_second_server(layout: SimLayout) -> None:
    try:
        pid = int(layout.pid.read_text().strip())
    except (OSError, ValueError):
        return  # no pid file, or not ours to read: nothing is serving from here
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # a server that did not clean up after itself
    except PermissionError:
        pass  # alive, but someone else's
    raise SimServerError(
        f"a simulated cluster (pid {pid}) is already serving {layout.out}; stop it "
        f"(kill {pid}) or pass another --out"
    )


def _raise_fd_limit(needed: int) -> None:
    """Raise the soft limit on open files to what N listeners and N connections need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            raise SimServerError(
                f"serving this many nodes needs about {needed} open files, but the hard "
                f"limit is {hard}; raise it (ulimit -Hn, or LimitNOFILE= in a unit) or "
                "serve fewer nodes"
            )


class _PortTaken(Exception):
    def __init__(self, port: int, exc: OSError) -> None:
        super().__init__(port)
        self.port = port
        self.exc = exc


def _bind_ports(address: str, base_port: int, count: int) -> list[socket.socket]:
    """Listening sockets on ``count`` consecutive ports (from ``base_port``, or a free run).

    Consecutive, so that cluster.toml can say ``port_base`` for the whole node set.
    """
    if base_port != 0:
        try:
            return _bind_run(address, base_port, count)
        except _PortTaken as taken:
            if taken.exc.errno == errno.EADDRINUSE:
                raise SimServerError(
                    f"port {taken.port} on {address} is in use; pass --base-port "
                    "(another base, or 0 to have free ports picked)"
                ) from taken.exc
            raise SimServerError(
                f"cannot listen on {address}:{taken.port}: {taken.exc.strerror}"
            ) from taken.exc
    highest = EPHEMERAL_PORT_START - count
    low = _PICK_LOW if highest > _PICK_LOW else 1024
    for _ in range(_PICK_ATTEMPTS):
        start = random.randint(low, highest)
        with contextlib.suppress(_PortTaken):
            return _bind_run(address, start, count)
    raise SimServerError(
        f"found no {count} free consecutive ports on {address} below "
        f"{EPHEMERAL_PORT_START} in {_PICK_ATTEMPTS} tries; pass --base-port"
    )


def _bind_run(address: str, start: int, count: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for port in range(start, start + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            # A restarted server must get its ports back while old connections linger in
            # TIME_WAIT; two live listeners still cannot share a port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise _PortTaken(port, exc) from exc
            sock.listen(128)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# -- the nodes' SSH server ---------------------------------------------------------------------


class _Login(asyncssh.SSHServer):
    """One connection's authentication: public key only, one user, one key."""

    def __init__(self, server: SimServer) -> None:
        self._server = server
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        send_no_ignore_packets(conn)
        self._server.track(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._server.untrack(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._server.options.user and (
            key.public_data == self._server.client_key.public_data
        )


class SimServer:
    """Simulated nodes on one asyncio loop: all of a plan's nodes, or one worker's share.

    ``await start()`` prepares the folder and ports (unless given a ``plan``) and opens the
    listeners; ``await close()`` ends every session and listener. In-process users (tests,
    a demo) use it directly; ``serve`` runs one per worker process.

    ``on_poweroff(node)`` is called when a node powers itself off (``sudo systemctl
    poweroff`` on its shell, or its watchdog); without it a node refuses to, with a sentence
    (``tidectl sim serve``'s nodes have no power to cut).
    """

    def __init__(
        self,
        options: SimOptions,
        *,
        plan: Plan | None = None,
        share: slice | None = None,
        on_poweroff: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.layout = SimLayout(options.out.resolve())
        self.nodes: list[_Node] = []
        self.client_key: asyncssh.SSHKey
        self._plan = plan
        self._share = share if share is not None else slice(None)
        self._listeners: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[asyncio.Task[None]] = set()
        self._on_poweroff = on_poweroff
        #: Watchdogs running in the server, by node and lease file (as the node shows it).
        self._watchdogs: dict[tuple[str, str], asyncio.Task[None]] = {}

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def sessions(self) -> int:
        """Sessions (exec channels) running now, agent streams included."""
        return len(self._sessions)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def ready_line(self) -> str:
        assert self._plan is not None, "start() first"
        return self._plan.ready_line()

    def track(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.add(conn)

    def untrack(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._plan is None:
            self._plan = prepare(self.options)
        plan = self._plan
        self.client_key = plan.client_key
        self.nodes = plan.nodes[self._share]
        served = set(range(len(plan.nodes))[self._share])
        try:
            for index, (node, sock) in enumerate(zip(plan.nodes, plan.sockets, strict=True)):
                if index in served:
                    self._listeners.append(await self._listen(node, sock))
                else:
                    sock.close()  # another worker's port: its copy is the one that listens
        except BaseException:
            plan.close_sockets()
            await self.close()
            raise

    async def _listen(self, node: _Node, sock: socket.socket) -> asyncssh.SSHAcceptor:
        root = os.fsencode(node.root)

        def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(chan, chroot=root)

        return await asyncssh.listen(
            sock=sock,
            server_host_keys=[node.host_key],
            server_factory=functools.partial(_Login, self),
            process_factory=functools.partial(self._session, node),
            sftp_factory=sftp_factory,
            allow_scp=False,
            encoding=None,
            encryption_algs=list(CIPHERS),
            x11_forwarding=False,
            agent_forwarding=False,
        )

    async def close(self) -> None:
        """Stop listening, end every session and connection, remove the pid file."""
        for listener in self._listeners:
            listener.close()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        waits = [listener.wait_closed() for listener in self._listeners]
        waits += [conn.wait_closed() for conn in connections]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*waits, return_exceptions=True), _CLOSE_TIMEOUT_S
                )
        watchdogs = list(self._watchdogs.values())
        for task in [*self._sessions, *watchdogs]:
            task.cancel()
        if self._sessions or watchdogs:
            await asyncio.wait([*self._sessions, *watchdogs], timeout=_CLOSE_TIMEOUT_S)
        self._watchdogs = {}
        self._listeners = []
        if self._plan is not None:
            self._plan.release()

    # -- sessions -------------------------------------------------------------------------

    async def _session(self, node: _Node, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncssh runs every session handler as a task
        self._sessions.add(task)

        def on_channel_closed(closed: asyncio.Future[None]) -> None:
            if not closed.cancelled():
                task.cancel()  # nobody is listening any more: stop sampling for them

        watcher = asyncio.ensure_future(process.wait_closed())
        watcher.add_done_callback(on_channel_closed)
        try:
            action = interpret(process.command, self._view(node))
            status = await self._perform(action, node, process)
            process.exit(status)
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            pass  # the client went away mid-write; the channel is already closing
        except Exception as exc:
            # A bug in one command must not take the connection down with it (asyncssh
            # closes a connection whose session task raises): report it, as a crash would.
            _log.exception("%s: %r failed", node.name, process.command)
            with contextlib.suppress(BrokenPipeError, ConnectionError, asyncssh.Error):
                process.stderr.write(f"tidectl sim: internal error: {exc!r}\n".encode())
                process.exit(1)
        finally:
            watcher.cancel()
            self._sessions.discard(task)

    def _view(self, node: _Node) -> NodeView:
        return NodeView(node.name, node.root, self.options.python, node.hardware)

    async def _perform(
        self, action: Action, node: _Node, process: asyncssh.SSHServerProcess[bytes]
    ) -> int:
        if isinstance(action, Reply):
            if action.stdout:
                process.stdout.write(action.stdout)
            if action.stderr:
                process.stderr.write(action.stderr)
            return action.status
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
            return 0
        if isinstance(action, PowerOff):
            refused = self._power_off(node)
            if refused is not None:
                process.stderr.write(f"{refused}\n".encode())
                return 1
            return 0
        if action.args.agent_command == "watchdog":
            return self._start_watchdog(action, node, process)
        return await self._agent(action, node, process)

    def _power_off(self, node: _Node) -> str | None:
        """Power ``node`` off; None when it goes, else why it cannot."""
        if self._on_poweroff is None:
            return (
                f"tidectl sim: {node.name} cannot power off: the nodes of `tidectl sim serve` "
                "have no power to cut (sim cloud instances do)"
            )
        _log.info("%s: powered off from its shell", node.name)
        self._on_poweroff(node.name)
        return None

    def _run_poweroff(self, command: str, node: _Node) -> str | None:
        """A watchdog's poweroff command, through the node's shell; None when it worked."""
        action = interpret(command, self._view(node))
        if isinstance(action, PowerOff):
            return self._power_off(node)
        if isinstance(action, Reply):
            said = action.stderr.decode("utf-8", "replace").strip()[-200:]
            return None if action.status == 0 else f"exit status {action.status}: {said}"
        return f"{command!r} is not a command a simulated node runs from its watchdog"

    def _start_watchdog(
        self, run: RunAgent, node: _Node, process: asyncssh.SSHServerProcess[bytes]
    ) -> int:
        """Start the node's watchdog for this lease as a task of the server (it outlives the
        session, as the real daemon does); a second start while one runs starts nothing."""
        shown, lease = node_path(self._view(node), run.args.lease_file)
        running = self._watchdogs.get((node.name, shown))
        if running is not None and not running.done():
            process.stdout.write(
                f"tidectl agent watchdog: already watching {shown} (pid sim); nothing "
                "started\n".encode()
            )
            return 0
        lease.parent.mkdir(parents=True, exist_ok=True)
        task = asyncio.get_running_loop().create_task(
            sim_watchdog.watch(
                run.args, lease, node.hardware, lambda: self._run_poweroff(run.args.poweroff, node)
            ),
            name=f"watchdog-{node.name}",
        )
        self._watchdogs[(node.name, shown)] = task
        said = f"tidectl agent watchdog: watching {shown} (pid sim); log {shown}{LOG_SUFFIX}\n"
        process.stdout.write(said.encode())
        return 0

    async def _agent(
        self, run: RunAgent, node: _Node, process: asyncssh.SSHServerProcess[bytes]
    ) -> int:
        args = run.args
        probes = [probe for probe in probes_for(node.hardware()) if probe.name in run.probes]
        interval = float(args.interval) if args.agent_command == "stream" else 1.0
        # Stream's own run() blocks on its output; here hello() and tick() are driven from
        # the loop below, which writes to the channel itself.
        out = cast(BinaryIO, process.stdout)
        stream = Stream(probes, out, interval_s=interval, sim_seed=node.seed, threaded=False)
        try:
            if args.agent_command == "facts":
                hello = stream.hello()
                text = _json_text(hello) if args.json else render_facts(hello)
                process.stdout.write(text.encode())
                return 0
            if args.agent_command == "once":
                hello = stream.hello()
                stream.tick()  # primes the deltas, as the real `once` does
                await asyncio.sleep(args.settle)
                record = stream.tick()
                text = _json_text(record) if args.json else render_sample(hello, record)
                process.stdout.write(text.encode())
                return 0
            lease = None
            if args.lease_file is not None:
                lease = node_path(self._view(node), args.lease_file)[1]
            return await _stream(stream, node.clock, process.channel, args.count, lease)
        finally:
            stream.close()


def encode(record: protocol.Record) -> bytes:
    """One record as one JSON line: what ``protocol.encode`` writes, about ten times faster.

    msgspec writes the same keys in the same order and non-finite floats as null, as
    ``protocol.encode`` does; only exponents may be spelled differently (``1e16`` for
    ``1e+16``), which JSON readers take as the same number.
    """
    try:
        return _encoder.encode(record) + b"\n"
    except (TypeError, ValueError, OverflowError):  # what msgspec cannot write, json can
        return protocol.encode(record)


async def _stream(
    stream: Stream,
    clock: _TickClock,
    channel: asyncssh.SSHServerChannel[bytes],
    count: int | None,
    lease: Path | None = None,
) -> int:
    """A hello, then one sample per interval on a schedule that does not drift; ``lease``
    (``--lease-file``) is touched after each, as the real agent does.

    A tick that finds the channel's buffer over the bound is skipped, not queued; ticks
    missed because the loop was late are skipped too, never sent in a burst.
    """
    loop = asyncio.get_running_loop()
    interval = stream.interval_s
    channel.write(encode(stream.hello()))
    if lease is not None:
        touch_lease(str(lease))
    next_tick = loop.time()  # the loop's clock is monotonic
    while True:
        if channel.get_write_buffer_size() <= WRITE_BUFFER_BOUND:
            clock.held = time.monotonic()
            try:
                record = stream.tick()
            finally:
                clock.held = None
            channel.write(encode(record))
            if lease is not None:
                touch_lease(str(lease))
            if count is not None and stream.seq >= count:
                return 0
        next_tick += interval
        now = loop.time()
        if next_tick < now:
            next_tick += (int((now - next_tick) // interval) + 1) * interval
        await asyncio.sleep(next_tick - now)


def _json_text(record: protocol.Record) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


# -- serving: one process, or one worker per core -----------------------------------------------


def default_workers(nodes: int) -> int:
    """One worker per ``NODES_PER_WORKER`` nodes, at most one per core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, math.ceil(nodes / NODES_PER_WORKER)))


def serve(options: SimOptions, announce: Callable[[str], None], workers: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT; ``announce`` gets the ready line once every node listens.

    ``workers`` processes share the nodes (default: ``default_workers``); with one, the
    nodes are served in this process.
    """
    count = default_workers(options.nodes) if workers is None else workers
    count = max(1, min(count, options.nodes))
    if count == 1:
        asyncio.run(_serve_here(options, announce))
    else:
        _serve_forked(options, announce, count)


async def _serve_here(options: SimOptions, announce: Callable[[str], None]) -> None:
    async with _stop_signals() as stop, SimServer(options) as server:
        announce(server.ready_line())
        await stop.wait()


@contextlib.asynccontextmanager
async def _stop_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT, for as long as the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _serve_forked(options: SimOptions, announce: Callable[[str], None], count: int) -> None:
    """Bind every port here, then fork ``count`` workers that each serve a share of them.

    This process stays single-threaded and loop-free, so forking is safe; it only waits,
    passes SIGTERM/SIGINT on to the workers, and removes the pid file at the end. A worker
    that dies takes the others down with it: half a cluster is not what was asked for.
    """
    plan = prepare(options)
    size = math.ceil(options.nodes / count)
    shares = [slice(start, start + size) for start in range(0, options.nodes, size)]
    workers: list[int] = []
    stopping = False

    def stop_workers(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_workers) for sig in (signal.SIGTERM, signal.SIGINT)}
    ready_read, ready_write = os.pipe()
    failed: list[str] = []
    try:
        try:
            for share in shares:
                pid = os.fork()
                if pid == 0:  # the worker
                    os.close(ready_read)
                    _worker_main(options, plan, share, ready_write)
                workers.append(pid)
        finally:
            # Only the workers keep the write end: when all have written or ended, the
            # read end sees everything or end-of-file, never waits forever.
            os.close(ready_write)
            plan.close_sockets()  # the workers hold them now
        if _await_ready(ready_read, len(shares)):
            announce(plan.ready_line())
        elif not stopping:
            failed.append("a worker could not start (its error is above)")
            stop_workers()
        while workers:
            # Any child: this process (the CLI's) has no children but its workers.
            pid, status = os.waitpid(-1, 0)
            if pid not in workers:
                continue
            workers.remove(pid)
            code = os.waitstatus_to_exitcode(status)
            # Stopped before it set up its own handler, a worker dies of the SIGTERM itself.
            if not stopping or code not in (0, -signal.SIGTERM):
                failed.append(f"worker {pid} ended with status {code}")
                stop_workers()
    finally:
        os.close(ready_read)
        stop_workers()
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        plan.release()
    if failed:
        raise SimServerError("; ".join(failed))


def _await_ready(fd: int, count: int) -> bool:
    """Whether every worker said it listens (one byte each) before any of them ended."""
    got = 0
    while got < count:
        data = os.read(fd, count - got)  # a signal in between is retried (PEP 475)
        if not data:
            return False
        got += len(data)
    return True


def _worker_main(options: SimOptions, plan: Plan, share: slice, ready_fd: int) -> NoReturn:
    """A forked worker: serve ``share`` of the nodes until told to stop; never returns."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # the parent's handler forwards; ours stops
    status = 0
    try:
        asyncio.run(_worker(options, plan, share, ready_fd))
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.stderr.flush()
        os._exit(status)  # never run the parent's cleanup (atexit, finally blocks) here


async def _worker(options: SimOptions, plan: Plan, share: slice, ready_fd: int) -> None:
    parent = os.getppid()
    async with _stop_signals() as stop, SimServer(options, plan=plan, share=share):
        os.write(ready_fd, b"+")
        os.close(ready_fd)
        # An orphan would serve forever: leave when the parent is gone.
        while os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _PARENT_CHECK_S)
            if stop.is_set():
                return
