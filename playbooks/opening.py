"""Opening a cluster for a playbook or a script: :func:`open_cluster` (async) and
:func:`connect` (synchronous, for scripts and notebooks).

Like the CLI's commands, it attaches to ``tidectl serve`` when ``server`` (or ``[server]
socket`` in cluster.toml) names a socket that answers; otherwise it assembles the control
plane in this process and runs it for as long as the session is open (a socket named in
cluster.toml that does not answer is said, then the plane is assembled; one passed as
``server`` must answer). Sim pools and the sim scheduler live inside the process that runs
them, so a config with them is refused here unless ``in_process_sim`` (the demo) says this
process is theirs. A plan (``check``) starts none of the plane's loops — nothing is reconciled
or launched — and watches the agents only to read their health.

Either way, health comes from the agents: the session opens once every node has been heard
from (or found unreachable), within the SSH timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from tidectl.console.config.loader import load_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState, Severity
from tidectl.console.scheduler.workload import Workload
from tidectl.playbooks.backend import LocalBackend, RemoteBackend
from tidectl.playbooks.errors import PlaybookError
from tidectl.playbooks.model import Condition, Expect, Playbook
from tidectl.playbooks.progress import Reporter
from tidectl.playbooks.report import RunReport, StepReport
from tidectl.playbooks.session import Session
from tidectl.playbooks.world import NodeFacts

__all__ = ["SyncSession", "connect", "open_cluster"]

_T = TypeVar("_T")
#: How often a plane assembled here reconciles: a playbook waits on what it moves.
PLAY_INTERVAL_S = 1.0
_GONE = frozenset({LinkState.UNREACHABLE, LinkState.AUTH_FAILED, LinkState.HOST_KEY_MISMATCH})


@contextlib.asynccontextmanager
async def open_cluster(
    config: str | Path | ClusterConfig,
    *,
    server: str | Path | None = None,
    store: Path | None = None,
    playbook: Playbook | None = None,
    reporter: Reporter | None = None,
    check: bool = False,
    in_process_sim: bool = False,
    workload: Workload | None = None,
    note: Reporter | None = None,
) -> AsyncIterator[Session]:
    """A :class:`Session` on the cluster ``config`` describes, as the person running this
    process through the ``playbook`` front end (with ``playbook``'s path and hash as the
    origin the audit log records). Raises ``PlaybookError`` when it cannot be opened.

    >>> async with open_cluster("cluster.toml") as cluster:
    ...     await cluster.burst("h100-east", ensure=2, wait="15m")
    """
    cfg = config if isinstance(config, ClusterConfig) else load_config(config)
    origin = playbook.origin if playbook is not None else None
    caller = Caller.local(Frontend.PLAYBOOK, origin)
    name = playbook.name if playbook is not None else "script"
    socket = Path(server) if server is not None else cfg.server.socket
    if socket is not None:
        remote = RemoteBackend(cfg, socket, origin=origin)
        try:
            await remote.__aenter__()
        except ControlError as error:
            if server is not None:
                raise PlaybookError(str(error)) from None
            if note is not None:
                note.note(f"{error}; running the control plane in this process instead")
        else:
            try:
                await remote.ready()
                await _heard(remote.attached.fleet, cfg)
                yield Session(remote, caller, playbook=name, reporter=reporter)
            finally:
                await remote.__aexit__(None, None, None)
            return
    async with _local(cfg, store, check, in_process_sim, workload) as backend:
        yield Session(backend, caller, playbook=name, reporter=reporter)


@contextlib.asynccontextmanager
async def _local(
    config: ClusterConfig,
    store: Path | None,
    check: bool,
    in_process_sim: bool,
    workload: Workload | None,
) -> AsyncIterator[LocalBackend]:
    from tidectl.console.collectors import make_collector
    from tidectl.console.control.assemble import AssemblyError, assemble

    fleet = Fleet(config.nodes, config.health)
    watcher = make_collector(config, fleet) if check else None
    try:
        plane = await assemble(
            config,
            store=store,
            collect=not check,
            fleet=fleet,
            in_process_sim=in_process_sim,
            workload=workload,
            interval_s=PLAY_INTERVAL_S,
            who="tidectl play" + (" --check" if check else ""),
        )
    except AssemblyError as error:
        raise PlaybookError(str(error)) from None
    try:
        if watcher is not None:
            await watcher.start()
        else:
            await plane.start()
        await _heard(fleet, config)
        yield LocalBackend(plane)
    finally:
        if watcher is not None:
            await watcher.stop()
        await plane.aclose()


async def _heard(fleet: Fleet, config: ClusterConfig) -> None:
    """Until every configured node has been heard from or found unreachable, within the time
    SSH may take (a node still connecting after that shows as unknown)."""
    ssh = config.ssh
    limit = ssh.connect_timeout_s + ssh.login_timeout_s + 3 * config.agent.interval_s
    deadline = time.monotonic() + limit
    names = [spec.name for spec in config.nodes]
    while time.monotonic() < deadline:
        nodes = [fleet.nodes.get(name) for name in names]
        if all(
            n is not None and (n.health is not Severity.UNKNOWN or n.link in _GONE) for n in nodes
        ):
            return
        await asyncio.sleep(0.1)


class SyncSession:
    """A :class:`Session` for code without an event loop of its own, or with one it may not
    block (a notebook): the session runs on a private loop in a background thread, and each
    method waits for its step there. Use :func:`connect`."""

    def __init__(self, config: str | Path | ClusterConfig, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tidectl-playbooks", daemon=True
        )
        self._thread.start()
        self._opened = open_cluster(config, **options)
        try:
            self.session: Session = self._call(self._opened.__aenter__())
        except BaseException:
            self._stop()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Close the session (the plane's loops stop; a service is detached from)."""
        if self._thread.is_alive():
            try:
                self._call(self._opened.__aexit__(None, None, None))
            finally:
                self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps --------------------------------------------------------------------------

    def nodes(self, nodes: Any = None) -> list[NodeFacts]:
        """The nodes a selector matches now (every node without one)."""
        return self._call(self.session.nodes(nodes))

    def burst(
        self, pool: str, *, ensure: int, data_class: str | None = None, wait: Any = None
    ) -> StepReport:
        """See :func:`tidectl.playbooks.burst`."""
        return self._call(self.session.burst(pool, ensure=ensure, data_class=data_class, wait=wait))

    def wait(self, nodes: Any = None, **options: Any) -> StepReport:
        """See :func:`tidectl.playbooks.wait`."""
        return self._call(self.session.wait(nodes, **options))

    def run(
        self,
        nodes: Any,
        command: str,
        *,
        timeout: Any = 30.0,
        expect: Expect | Mapping[str, Any] | None = None,
    ) -> StepReport:
        """See :func:`tidectl.playbooks.run`."""
        return self._call(self.session.run(nodes, command, timeout=timeout, expect=expect))

    def drain(
        self, nodes: Any, *, reason: str, wait: Any = None, one_at_a_time: bool = False
    ) -> StepReport:
        """See :func:`tidectl.playbooks.drain`."""
        return self._call(
            self.session.drain(nodes, reason=reason, wait=wait, one_at_a_time=one_at_a_time)
        )

    def resume(self, nodes: Any) -> StepReport:
        """See :func:`tidectl.playbooks.resume`."""
        return self._call(self.session.resume(nodes))

    def terminate(
        self, nodes: Any, *, reason: str, wait: Any = None, drain_timeout: Any = 1800.0
    ) -> StepReport:
        """See :func:`tidectl.playbooks.terminate`."""
        return self._call(
            self.session.terminate(nodes, reason=reason, wait=wait, drain_timeout=drain_timeout)
        )

    def check(self, condition: Condition | None = None, **keys: Any) -> StepReport:
        """See :func:`tidectl.playbooks.check`."""
        return self._call(self.session.check(condition, **keys))

    def notify(
        self, message: str, *, file: str | None = None, webhook: str | None = None
    ) -> StepReport:
        """See :func:`tidectl.playbooks.notify`."""
        return self._call(self.session.notify(message, file=file, webhook=webhook))

    def play(self, playbook: Playbook, *, check: bool = False) -> RunReport:
        """Run a loaded playbook (:func:`tidectl.playbooks.load`), or plan it."""
        return self._call(self.session.play(playbook, check=check))


def connect(config: str | Path | ClusterConfig, **options: Any) -> SyncSession:
    """A synchronous session on the cluster, for scripts and notebooks; ``options`` are
    :func:`open_cluster`'s.

    >>> with tidectl.playbooks.connect("cluster.toml") as cp:
    ...     cp.burst("h100-east", ensure=2, wait="15m")
    ...     cp.run({"pool": "h100-east"}, "nvidia-smi -L")
    ...     cp.terminate({"launched": True}, reason="done", wait="10m")
    """
    return SyncSession(config, **options)
