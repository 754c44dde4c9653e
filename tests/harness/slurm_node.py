"""One Slurm CLOUD node's slurmd, started and stopped the way power saving needs it.

Used two ways, so it imports nothing but the standard library:

* from Python (tests, and a simulated cloud whose "instance boot" is a slurmd start):
  :func:`start_slurmd` and :func:`stop_slurmd`;
* run by path as the harness's test ``ResumeProgram``, ``SuspendProgram`` and
  ``ResumeFailProgram`` (:func:`main`): Slurm runs those with an empty environment and its own
  blocked signal mask, so the small shell wrappers that :class:`tests.harness.slurm.SlurmCluster`
  writes set ``PATH``, ``SLURM_CONF`` and the cluster's token, then exec this file.

How a CLOUD node's slurmd must start (``../shared/notes/slurm.md``, gotchas 1 and 2):

* ``slurmd -b``: without it slurmctld ignores the registration of a node it is powering up
  ("Still waiting for boot of node ..."), and the resume fails after ``ResumeTimeout``;
* with an empty signal mask: a ResumeProgram inherits slurmctld's blocked signals, SIGTERM
  among them, and a slurmd that inherited them would ignore SIGTERM. The mask is cleared by a
  tiny ``python -c`` that then execs slurmd (thread-safe, unlike ``preexec_fn``);
* in its own session (not in the ResumeProgram's process group, which slurmctld may kill), in
  the foreground (``-D``) so the PID we hold is slurmd's, with the cluster's token in its
  environment so the harness's cleanup finds it (and its jobs) by token, never by name.

The test programs' record: every call appends one JSON line to ``calls.log`` in the cluster's
power folder: ``{"program": "resume", "argv": [...], "nodes": [...], "at": <unix time>}``.
A node with a ``no-boot-NAME`` marker file in that folder is resumed in name only: the call is
logged, no slurmd starts (a cloud instance that never boots), so the resume fails after
``ResumeTimeout``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TOKEN_ENV = "TIDECTL_TEST_SLURM"  # the same variable as tests/harness/slurm.py's
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Slurm gives its power programs no PATH
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this; slurmd takes about 2 s to go
CALLS_LOG = "calls.log"
NO_BOOT_MARKER = "no-boot-{}"
_CLEAR_MASK_AND_EXEC = (
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def pid_file(power_dir: Path, name: str) -> Path:
    """Where the PID of ``name``'s slurmd, started by :func:`start_slurmd`, is kept."""
    return Path(power_dir) / f"slurmd-{name}.pid"


def start_slurmd(name: str, *, conf: Path, token: str, power_dir: Path, log_dir: Path) -> int:
    """Start CLOUD node ``name``'s slurmd (``slurmd -D -b -N name``) and return its PID.

    A slurmd of ``name`` still running from an earlier start is stopped first (two cannot
    share the node's port). Returns at once: slurmd registers with slurmctld about a second
    later, which ``sinfo`` shows as the node losing its power flags.
    """
    previous = running_slurmd(power_dir, name)
    if previous is not None:
        stop_slurmd(previous)
    slurmd = ["slurmd", "-D", "-b", "-N", name, "-f", str(conf)]
    with open(Path(log_dir) / f"{name}.out", "ab") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _CLEAR_MASK_AND_EXEC, *slurmd],
            env={"PATH": SAFE_PATH, "SLURM_CONF": str(conf), TOKEN_ENV: token},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=power_dir,
            start_new_session=True,
        )
    pid_file(power_dir, name).write_text(f"{process.pid}\n")
    return process.pid


def running_slurmd(power_dir: Path, name: str) -> int | None:
    """The PID of ``name``'s slurmd started by :func:`start_slurmd`, if it still runs."""
    try:
        pid = int(pid_file(power_dir, name).read_text())
    except (OSError, ValueError):
        return None
    return pid if _is_slurmd_of(pid, name) else None


def stop_slurmd(pid: int, timeout_s: float = STOP_GRACE_S) -> None:
    """SIGTERM ``pid`` and wait until it has gone; SIGKILL after ``timeout_s``. Reaps it when
    it is our own child (started by :func:`start_slurmd` in this process)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout_s
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    """``slurm_node.py {resume|suspend|resume-fail} CONF POWER_DIR LOG_DIR HOSTLIST``: the test
    power programs. The wrappers pass the first four; Slurm appends the node list."""
    if len(argv) != 5 or argv[0] not in ("resume", "suspend", "resume-fail"):
        print(
            f"usage: {Path(__file__).name} resume|suspend|resume-fail CONF POWER_DIR "
            "LOG_DIR HOSTLIST",
            file=sys.stderr,
        )
        return 2
    program, conf, power_dir, log_dir, hostlist = argv
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # slurmctld's blocked signals end here
    names = _hostnames(hostlist)
    record = {"program": program, "argv": argv, "nodes": names, "at": time.time()}
    with open(Path(power_dir) / CALLS_LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
    token = os.environ.get(TOKEN_ENV, "")
    for name in names:
        if program == "resume" and not (Path(power_dir) / NO_BOOT_MARKER.format(name)).exists():
            start_slurmd(
                name, conf=Path(conf), token=token, power_dir=Path(power_dir), log_dir=Path(log_dir)
            )
        elif program == "suspend":
            pid = running_slurmd(Path(power_dir), name)
            if pid is not None:
                stop_slurmd(pid)
    return 0


def _hostnames(hostlist: str) -> list[str]:
    """Slurm's host list (``cloud[1-2]``) expanded by Slurm itself."""
    done = subprocess.run(
        ["scontrol", "show", "hostnames", hostlist],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.split()


def _is_slurmd_of(pid: int, name: str) -> bool:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"slurmd" in words and name.encode() in words and _alive(pid)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; our own child's is reaped here)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: read its state instead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
