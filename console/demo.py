"""The demo's simulated cluster: ``tidectl sim serve`` as a child process, and its config.

The config is the server's ``cluster.toml`` with the demo's lifecycle added (``LIFECYCLE_TOML``):
the sim scheduler, a sim cloud pool to burst into, and the lifecycle store in the cluster's
folder. The console that opens it runs the control plane over all three in its own process
(the sim cloud's instances and the scheduler's queue live there), with ``DEMO_WORKLOAD``'s jobs.

The server runs as a subprocess rather than on the console's own event loop: the console then
reaches it exactly as it reaches a real cluster (its own process, real SSH on 127.0.0.1), and
a thousand simulated nodes do not take their CPU from the console's frames.

The child must never outlive the demo. ``DemoCluster`` stops it on every way out of its block
(a return, an exception, Ctrl-C): SIGTERM, then SIGKILL after a grace period. It runs in its
own session, so a Ctrl-C reaches the demo alone and the demo stops it in order; and on Linux
it is told to end with its parent (``PR_SET_PDEATHSIG``), so even a demo killed outright
takes its cluster with it. Its stderr goes to a file, never to the terminal, where it would
scribble over a full-screen console; the file's last line is what a failure reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tidectl.console.config.loader import ConfigError, load_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.scheduler.workload import Workload
from tidectl.console.sim.files import SimLayout, write_atomic
from tidectl.console.sim.injector import SimFaults

DEFAULT_NODES = 32
#: Random faults per node per hour: with the default 32 nodes, about one a minute.
DEFAULT_FAULT_RATE_PER_HOUR = 2.0
#: How long the server may take to print its ready line: interpreter start and imports,
#: plus key generation and a bind per node. Generous: a shared machine can be slow.
READY_BASE_S = 20.0
READY_PER_NODE_S = 0.03
#: How long a SIGTERMed server may take to close its sessions (it waits up to 2 x 5 s).
STOP_GRACE_S = 15.0

#: The demo's cloud pool: up to 32 sim nodes that boot in 5 s, at the sim's price.
BURST_POOL = "burst"
BURST_POOL_MAX_NODES = 32
BURST_BOOT_DELAY_S = 5.0
#: The lifecycle store, in the cluster's folder (kept with --out, removed with it otherwise).
STORE_FILE = "store.sqlite3"
LIFECYCLE_TOML = f"""
# Added by tidectl demo: the sim scheduler runs the demo's jobs, pool "{BURST_POOL}" is a sim
# cloud to burst into (key b in the console), and the lifecycle store lives in this folder.
[scheduler]
kind = "sim"

[store]
path = "{STORE_FILE}"

[[pools]]
name = "{BURST_POOL}"
provider = "sim"
max_nodes = {BURST_POOL_MAX_NODES}
boot_delay_s = {BURST_BOOT_DELAY_S!r}
"""
#: The sim scheduler's jobs in the demo: the default stream 60 times faster, so a job arrives
#: every 15 s or so and runs from 5 s to 6 min; drains finish while you watch.
DEMO_WORKLOAD = Workload(time_scale=1 / 60)

_SERVE_ERROR_PREFIX = "tidectl sim serve: error: "
_TAIL_CHARS = 4096
_LINE_CHARS = 300
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DemoError(Exception):
    """The demo's cluster cannot start or stopped; the message says why and what to do."""


class DemoCluster:
    """A simulated cluster served by a child process for as long as the ``with`` block runs.

    ``out``: the cluster's folder, kept afterwards; without it, a fresh temporary folder that
    is removed on exit. Enter it from a thread that outlives the block (on Linux the server
    ends with the thread that started it).
    """

    def __init__(
        self,
        nodes: int = DEFAULT_NODES,
        *,
        seed: int = 0,
        fault_rate_per_hour: float = 0.0,
        out: Path | None = None,
        ready_timeout_s: float | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.nodes = nodes
        self.seed = seed
        self.fault_rate_per_hour = fault_rate_per_hour
        self.ready_timeout_s = (
            ready_timeout_s
            if ready_timeout_s is not None
            else READY_BASE_S + READY_PER_NODE_S * max(nodes, 0)
        )
        self.stop_grace_s = stop_grace_s
        self.ready_line = ""
        self._given_out = out
        self._owns_out = out is None  # a folder we made is ours to remove
        self._out: Path | None = None
        self._config: ClusterConfig | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- what a started cluster exposes ------------------------------------------------------

    @property
    def out(self) -> Path:
        """The cluster's folder (``cluster.toml``, ``faults.txt``, keys)."""
        if self._out is None:
            raise RuntimeError("the demo cluster is not started: use it in a with block")
        return self._out

    @property
    def config(self) -> ClusterConfig:
        if self._config is None:
            raise RuntimeError("the demo cluster is not started: use it in a with block")
        return self._config

    @property
    def faults(self) -> SimFaults:
        """Injects and clears faults on the running cluster."""
        return SimFaults(self.out)

    @property
    def pid(self) -> int | None:
        """The server's process id while one was started, else None."""
        return self._process.pid if self._process is not None else None

    # -- starting and stopping ---------------------------------------------------------------

    def __enter__(self) -> DemoCluster:
        if self._process is not None:
            raise RuntimeError("the demo cluster is already started")
        self._out = (
            Path(tempfile.mkdtemp(prefix="tidectl-demo-"))
            if self._given_out is None
            else self._given_out.resolve()
        )
        try:
            self._spawn()
            self.ready_line = self._await_ready()
            self._add_lifecycle()
            self._config = self._load_config()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check(self) -> None:
        """Raise ``DemoError`` if the server has ended (it should run until ``close``)."""
        if self._process is not None and self._process.poll() is not None:
            raise DemoError(
                f"the simulated cluster stopped during the demo ({self._ended()}); "
                "run it again, and report it if it happens again"
            )

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL), then remove a temporary folder."""
        process, self._process = self._process, None
        try:
            if process is not None:
                _stop(process, self.stop_grace_s)
        finally:
            if process is not None and process.stdout is not None:
                process.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            if self._out is not None and self._owns_out:
                shutil.rmtree(self._out, ignore_errors=True)

    def _spawn(self) -> None:
        command = [
            *(sys.executable, "-m", "tidectl.console.sim.cli", "serve"),
            *("--nodes", str(self.nodes), "--seed", str(self.seed), "--base-port", "0"),
            *("--out", str(self.out), "--fault-rate", repr(float(self.fault_rate_per_hour))),
        ]
        # Open for as long as the server runs; close() closes it.
        self._stderr = tempfile.TemporaryFile(prefix="tidectl-demo-server-")  # noqa: SIM115
        options: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            options["preexec_fn"] = _ending_with_parent(os.getpid())
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                bufsize=0,
                start_new_session=True,
                **options,
            )
        except OSError as exc:
            raise DemoError(
                f"cannot start the simulated cluster ({sys.executable}: {exc.strerror}); "
                "check that this Python can run tidectl"
            ) from exc

    def _await_ready(self) -> str:
        """The server's ready line, read within the timeout; ``DemoError`` otherwise."""
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + self.ready_timeout_s
        received = b""
        while b"\n" not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(
                    f"the simulated cluster was not ready after {self.ready_timeout_s:g} s "
                    f"({self._stderr_tail()}); the machine may be busy: try fewer --nodes"
                )
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # the server closed its stdout: it has ended
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=self.stop_grace_s)
                raise DemoError(
                    f"the simulated cluster did not start ({self._ended()}); fix what it "
                    f"names, or run tidectl sim serve --nodes {self.nodes} --out DIR to see "
                    "all it says"
                )
            received += chunk
        return received.split(b"\n", 1)[0].decode(errors="replace")

    def _add_lifecycle(self) -> None:
        """Append the demo's scheduler, pool and store to the server's cluster.toml (written
        afresh at each start, so this happens once per file)."""
        path = SimLayout(self.out).cluster_toml
        try:
            text = path.read_text()
            write_atomic(path, (text + LIFECYCLE_TOML).encode())
        except OSError as exc:
            raise DemoError(
                f"cannot add the demo's pool to {path} ({exc.strerror}); check the folder's "
                "permissions and free space"
            ) from exc

    def _load_config(self) -> ClusterConfig:
        try:
            return load_config(SimLayout(self.out).cluster_toml)
        except ConfigError as exc:
            raise DemoError(
                f"the simulated cluster wrote a config the console cannot load ({exc}); "
                "this is a bug in tidectl: please report it"
            ) from exc

    def _ended(self) -> str:
        process = self._process
        code = process.returncode if process is not None else None
        status = "the server is still running" if code is None else f"exit status {code}"
        return f"{status}: {self._stderr_tail()}"

    def _stderr_tail(self) -> str:
        """The last line the server wrote on stderr: its error sentence, or a traceback's."""
        if self._stderr is None:
            return "it said nothing"
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _TAIL_CHARS))
        text = self._stderr.read().decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return "it said nothing"
        last = lines[-1].removeprefix(_SERVE_ERROR_PREFIX)
        return last if len(last) <= _LINE_CHARS else last[: _LINE_CHARS - 3] + "..."


def _stop(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns only once it has ended."""
    try:
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
    finally:
        # Also on a second Ctrl-C during the wait: never leave the server behind.
        if process.poll() is None:
            process.kill()
            process.wait()


def _ending_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when this process ends.

    libc is loaded here, in the parent: loading a library between fork and exec can deadlock.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent ended before the request took effect
            os._exit(1)

    return preexec
