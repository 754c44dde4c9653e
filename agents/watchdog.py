"""The node-side watchdog: a hard stop for a cloud node no control plane watches any more.

A cloud node bills until someone ends it, and the one who ends it is the control plane. If
the control plane dies, nothing would. So the lifecycle engine starts this watchdog on each
cloud node it links (``python3 agent.pyz watchdog ...``, detached from the SSH session): while
a control plane streams the agent, the agent touches the lease file every sample (see
``lease.py``); once the lease is older than ``lease_s``, the watchdog powers the node off —
but only a node that is idle:

* every GPU below ``idle_below_pct`` utilisation on the agent's own GPU probe (NVML or
  nvidia-smi; the ``sim`` probe in the simulator), on every check for ``idle_window_s``;
* and, where Slurm's tools are installed, no job on the node (``squeue -h -w NODE``) and
  the node ``idle``, ``drained`` or ``down`` (``sinfo -h -N -n NODE -o %T``).

Anything it cannot read counts as busy: a node is powered off only on evidence that it is
idle, never for want of evidence that it is busy. A busy node is left alone (and logged) and
checked again; a fresh lease (a control plane is back) resets everything. The poweroff
command runs once; if it fails it is tried again a lease later.

Before the first lease is seen, the watchdog's own start counts as the last touch: it is
started by a control plane that was there, so a control plane that dies before its agent
ever streamed is covered too; a lease file that disappears keeps the last time it was seen.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from tidectl.agents.lease import touched_at

#: Slurm node states (``sinfo -o %T``, flags stripped) in which a node takes no work.
IDLE_SLURM_STATES = frozenset({"idle", "drained", "down"})
#: The one-character flags sinfo appends to a state (``idle*``: not responding, ``idle~``:
#: powered down, ...).
_SLURM_STATE_FLAGS = "*~#!%$@^-+"
#: How long one Slurm command may take before the node counts as busy for this check.
SLURM_TIMEOUT_S = 20.0
#: A node that stays busy is logged again at most this often (a check every few seconds
#: would otherwise fill the log).
BUSY_LOG_EVERY_S = 600.0

Log = Callable[[str], None]
#: Runs a command: (argv, timeout) -> (exit status, stdout, stderr); raises OSError or
#: subprocess.TimeoutExpired when it cannot run or does not finish.
Runner = Callable[[Sequence[str], float], Tuple[int, str, str]]


def gpus_busy(section: Dict[str, Any], idle_below_pct: float) -> Optional[str]:
    """Why this gpu section shows a node that is not idle (or cannot tell); None when every
    GPU is below ``idle_below_pct``. A node without a GPU driver has no GPU to be busy."""
    if "error" in section:
        return "the GPU probe failed: %s" % section["error"]
    if section.get("no_driver"):
        return None
    gpus = section.get("gpus")
    if not isinstance(gpus, list):
        return "the GPU probe returned no list of GPUs"
    for gpu in gpus:
        index = gpu.get("index", "?") if isinstance(gpu, dict) else "?"
        util = gpu.get("util_pct") if isinstance(gpu, dict) else None
        if isinstance(util, bool) or not isinstance(util, (int, float)):
            return "GPU %s's utilisation could not be read" % index
        if util >= idle_below_pct:
            return "GPU %s is at %.0f %% utilisation (idle is below %g %%)" % (
                index,
                util,
                idle_below_pct,
            )
    return None


def _run(argv: Sequence[str], timeout: float) -> Tuple[int, str, str]:
    done = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, _text(done.stdout), _text(done.stderr)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()


def slurm_busy(
    node: str,
    run: Runner = _run,
    which: Callable[[str], Optional[str]] = shutil.which,
) -> Optional[str]:
    """Why Slurm says ``node`` is not idle (or cannot say); None when it runs no job there and
    the node is idle, drained or down, when Slurm does not know the node, or when Slurm's
    tools are not installed at all."""
    squeue, sinfo = which("squeue"), which("sinfo")
    if squeue is None and sinfo is None:
        return None
    if squeue is None or sinfo is None:
        return "Slurm is only half installed (%s is missing), so it cannot say the node is idle" % (
            "squeue" if squeue is None else "sinfo"
        )
    failed, jobs = _ask(run, [squeue, "-h", "-w", node, "-o", "%i"])
    if failed is None and jobs:
        failed = "Slurm runs job(s) %s on %s" % (", ".join(jobs.split()), node)
    if failed is None:
        failed, states = _ask(run, [sinfo, "-h", "-N", "-n", node, "-o", "%T"])
        busy = [
            state
            for state in states.split()
            if state.lower().rstrip(_SLURM_STATE_FLAGS) not in IDLE_SLURM_STATES
        ]
        if failed is None and busy:
            failed = "Slurm says %s is %s (idle, drained or down is needed)" % (node, busy[0])
    return failed


def _ask(run: Runner, argv: Sequence[str]) -> Tuple[Optional[str], str]:
    """(why it failed or None, stdout)."""
    shown = " ".join(argv)
    try:
        status, out, err = run(argv, SLURM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "`%s` did not answer within %g s" % (shown, SLURM_TIMEOUT_S), ""
    except OSError as exc:
        return "`%s` could not run: %s" % (shown, exc), ""
    if status != 0:
        said = err.splitlines()[-1:] or ["no message"]
        return "`%s` failed with status %d: %s" % (shown, status, said[0][:200]), ""
    return None, out


class Watchdog:
    """The watchdog's decision, one check at a time; the loop around it is the caller's.

    ``busy()`` says why the node is not idle now, or None when it is. ``clock`` is wall-clock
    epoch seconds, the clock of the lease file's modification time.
    """

    def __init__(
        self,
        lease_path: str,
        lease_s: float,
        busy: Callable[[], Optional[str]],
        log: Log,
        *,
        idle_window_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lease_s > 0:
            raise ValueError("the lease must be longer than 0 s, got %r" % lease_s)
        if not idle_window_s >= 0:
            raise ValueError("the idle window must be 0 s or longer, got %r" % idle_window_s)
        self.lease_path = lease_path
        self.lease_s = lease_s
        self.idle_window_s = idle_window_s
        self._busy = busy
        self.log = log
        self._clock = clock
        self._last_touch = clock()  # started by a control plane that was there
        self._stale = False
        self._idle_since: Optional[float] = None
        self._busy_logged_at: Optional[float] = None
        self._retry_at = 0.0

    def check(self) -> bool:
        """One look at the lease and, if it is stale, at the node. True when the node should
        be powered off now (the reason is logged)."""
        now = self._clock()
        touched = touched_at(self.lease_path)
        if touched is not None and touched > self._last_touch:
            self._last_touch = touched
        age = now - self._last_touch
        if age < self.lease_s:
            if self._stale:
                self.log("the lease was touched %.1f s ago: a control plane is back" % age)
            self._stale = False
            self._idle_since = self._busy_logged_at = None
            self._retry_at = 0.0
            return False
        if not self._stale:
            self._stale = True
            self.log(
                "the lease is %.1f s old (lease %g s): no control plane holds it; the node "
                "will be powered off once it is idle" % (age, self.lease_s)
            )
        why = self._busy()
        if why is not None:
            again = self._busy_logged_at is None or now - self._busy_logged_at >= BUSY_LOG_EVERY_S
            if self._idle_since is not None or again:
                self.log("not powering off: %s" % why)
                self._busy_logged_at = now
            self._idle_since = None
            return False
        if self._idle_since is None:
            self._idle_since = now
            self._busy_logged_at = None
            if self.idle_window_s > 0:
                window = self.idle_window_s
                self.log("the node is idle; it is powered off if it stays so %g s" % window)
        if now - self._idle_since < self.idle_window_s or now < self._retry_at:
            return False
        self.log(
            "powering off: the lease is %.1f s old (lease %g s) and the node has been idle "
            "for %.1f s" % (age, self.lease_s, now - self._idle_since)
        )
        return True

    def poweroff_failed(self, why: str) -> None:
        """The poweroff command did not work; it is tried again a lease from now."""
        self._retry_at = self._clock() + self.lease_s
        self.log("the poweroff command failed (%s); trying again in %g s" % (why, self.lease_s))


def run_poweroff(command: str, timeout_s: float = 120.0) -> Optional[str]:
    """Run the poweroff command through ``sh``; None when it exited 0, else why not. Its
    output goes where this process's goes (the watchdog's log)."""
    try:
        status = subprocess.run(
            ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, timeout=timeout_s, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        return "%r did not finish within %g s" % (command, timeout_s)
    except OSError as exc:
        return "%r could not run: %s" % (command, exc)
    if status != 0:
        return "%r exited with status %d" % (command, status)
    return None


def watch(
    dog: Watchdog,
    poweroff: Callable[[], Optional[str]],
    check_every_s: float,
    stop: threading.Event,
) -> bool:
    """Check every ``check_every_s`` until the node is powered off (True) or ``stop`` is set
    (False). The poweroff command runs once; a failed one again a lease later."""
    while not stop.is_set():
        if dog.check():
            failure = poweroff()
            if failure is None:
                dog.log("the poweroff command succeeded; the watchdog's work is done")
                return True
            dog.poweroff_failed(failure)
        stop.wait(check_every_s)
    return False


def log_to_stderr(message: str) -> None:
    """One timestamped line on stderr (the watchdog's log file, once it is detached)."""
    sys.stderr.write(
        "%s tidectl-agent watchdog[%d]: %s\n"
        % (time.strftime("%Y-%m-%dT%H:%M:%S%z"), os.getpid(), message)
    )
    sys.stderr.flush()


def default_slurm_node() -> str:
    """The name Slurm most likely knows this node by: the short host name."""
    return socket.gethostname().split(".")[0]
