"""A real Slurm on loopback, for the slurm scheduler's integration tests.

One private ``munged`` (its own key and socket in the cluster's folder, so no system munged is
needed or touched), one ``slurmctld`` and one ``slurmd`` per node, all in the foreground as our
children, all on 127.0.0.1 with their own ports. Debian's slurmd is built with
``--enable-multiple-slurmd``: every node is ``NodeHostname=localhost NodeAddr=127.0.0.1`` with
its own ``Port=``, and ``%n`` in the spool, pid and log paths keeps them apart. Without systemd
and cgroups: ``proctrack/linuxproc``, ``task/none``, ``config_overrides`` (the nodes share the
host's CPUs), accounting off (so no ``sacct``: a finished job is read with ``scontrol show
job`` while slurmctld still remembers it, five minutes by default). Facts and gotchas:
``../shared/notes/slurm.md``.

**CLOUD nodes** (``cloud_nodes=N``: ``cloud1..N``, ``State=CLOUD``, their own ports, in the same
partition) come with power saving (:class:`PowerSaving`): they start powered down, their
slurmd is not started with the cluster, and Slurm's ``ResumeProgram`` / ``SuspendProgram``
start and stop it. By default those are the harness's test programs (``tests/harness/
slurm_node.py`` behind small wrappers written into ``power/``), which log every call
(:meth:`SlurmCluster.power_calls`) and start or stop the named nodes' slurmd.
:meth:`SlurmCluster.start_cloud_node` and :meth:`SlurmCluster.stop_cloud_node` do the same from a
test (a simulated cloud booting an instance).

**Needs root** (slurmd runs jobs as their user) and ``slurm-wlm`` + ``munge`` (``scripts/test``
installs them): :func:`unavailable_reason` says why not, and the fixtures skip with it.

Everything started is stopped by PID: the daemons get SIGTERM together (each takes about 2 s to
go), then SIGKILL after a bound; then every process still carrying this cluster's token in its
environment (slurmstepd and job processes inherit it: the daemons get it from us, jobs from
:meth:`SlurmCluster.run`'s ``sbatch``) is killed. Nothing is killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness import slurm_node
from tests.harness.sshd import free_port_block

LOOPBACK = "127.0.0.1"
DEFAULT_FIRST_PORT = 17001
TOKEN_ENV = slurm_node.TOKEN_ENV  # marks every process of one SlurmCluster
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "squeue", "scontrol", "sbatch", "scancel", "srun")
POWER_PROGRAMS = ("resume", "suspend", "resume-fail")


@dataclass(frozen=True, slots=True)
class PowerSaving:
    """slurm.conf's power-saving settings for the CLOUD nodes (whole seconds, as Slurm takes them).

    A node idle for ``suspend_time_s`` is powered down (``SuspendProgram``), and counts as
    powered down ``suspend_timeout_s`` later; a node powering up that has not registered after
    ``resume_timeout_s`` is set DOWN and ``ResumeFailProgram`` is called. A program left None
    is the harness's test program (see the module's docstring).
    """

    suspend_time_s: int = 10
    suspend_timeout_s: int = 5
    #: Launch + boot + join of a sim node takes ~3 s alone; on a 2-core runner also running
    #: other tests it took over 15 (the boot failed): room, at no cost when it is fast.
    resume_timeout_s: int = 30
    resume_program: Path | None = None
    suspend_program: Path | None = None
    resume_fail_program: Path | None = None


@dataclass(frozen=True, slots=True)
class PowerCall:
    """One call of a harness test power program, as it logged it."""

    program: str  # resume, suspend or resume-fail
    nodes: tuple[str, ...]  # the host list Slurm passed, expanded
    argv: tuple[str, ...]
    at: float  # unix time


class HarnessError(Exception):
    """The Slurm cluster could not be started or stopped; the message says what to do."""


def unavailable_reason() -> str | None:
    """Why a real Slurm cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a real Slurm needs root (slurmd runs jobs as their user); run as root, as CI does"
    missing = [tool for tool in (*DAEMONS, "mungekey", *CLIENTS) if shutil.which(tool) is None]
    if missing:
        return (
            f"Slurm is not installed ({', '.join(missing)} missing): install slurm-wlm and munge "
            "(bash scripts/test does)"
        )
    return None


class SlurmCluster:
    """``count`` on-prem nodes named ``node_name.format(1..count)`` and ``cloud_nodes`` CLOUD
    nodes named ``cloud_node_name.format(1..cloud_nodes)``, all in one partition ``gpu``.

    ``base_dir`` receives the munge key and socket, slurm.conf, state, spool and logs; it is
    made traversable (0755) because munged refuses a socket whose folders others cannot pass
    through. Use as a context manager or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        base_dir: Path,
        count: int,
        *,
        first_port: int = DEFAULT_FIRST_PORT,
        node_name: str = "onprem{}",
        cloud_nodes: int = 0,
        cloud_node_name: str = "cloud{}",
        power: PowerSaving | None = None,
        partition: str = "gpu",
        ready_timeout_s: float = 20.0,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if cloud_nodes < 0:
            raise ValueError(f"cloud_nodes must be 0 or more, not {cloud_nodes}")
        self.base_dir = Path(base_dir).resolve()
        if re.search(r"\s", str(self.base_dir)):
            raise HarnessError(f"{self.base_dir}: slurm.conf paths may not contain whitespace")
        self.names: tuple[str, ...] = tuple(node_name.format(i) for i in range(1, count + 1))
        self.cloud_names: tuple[str, ...] = tuple(
            cloud_node_name.format(i) for i in range(1, cloud_nodes + 1)
        )
        self.power = power or PowerSaving()
        self.partition = partition
        self.first_port = first_port
        self.ready_timeout_s = ready_timeout_s
        self.token = secrets.token_hex(8)
        self.conf_path = self.base_dir / "slurm.conf"
        self.munge_socket = self.base_dir / "munge" / "munge.socket"
        self.log_dir = self.base_dir / "log"
        self.power_dir = self.base_dir / "power"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- what tests use -----------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Variables that point Slurm's tools at this cluster (give them to SlurmScheduler)."""
        return {"SLURM_CONF": str(self.conf_path), TOKEN_ENV: self.token}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster (``sbatch``, ``scontrol``...), as text."""
        done = subprocess.run(
            argv,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            cwd=self.base_dir,
        )
        if check and done.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
        return done

    def submit(self, command: str, *options: str) -> str:
        """``sbatch --parsable --wrap COMMAND``; returns the job id."""
        output = self.run("sbatch", "--parsable", "-o", "/dev/null", *options, "--wrap", command)
        return output.stdout.strip().split(";")[0]

    def job_fields(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, ExitCode, RunTime, NodeList...)."""
        text = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def reset(self) -> None:
        """Back to a quiet cluster: every job cancelled, every on-prem node resumed and idle,
        every CLOUD node powered down (and booting again: no ``no-boot`` marker left)."""
        self.run("scancel", f"--partition={self.partition}", check=False)
        for name in self.cloud_names:
            self.boot_fails(name, False)
        states = self._states()
        for name, state in states.items():
            if "drain" in state or "down" in state or state.startswith("drng"):
                self.run("scontrol", "update", f"NodeName={name}", "State=RESUME", check=False)
        self.wait_until(lambda: not self._jobs_left(), "no job left")
        power = self.power
        self.wait_until(
            self._settle_cloud,
            "every on-prem node idle, every CLOUD node powered down, no job left",
            timeout_s=self.ready_timeout_s + power.resume_timeout_s + power.suspend_timeout_s,
        )

    # -- CLOUD nodes --------------------------------------------------------------------------

    def start_cloud_node(self, name: str) -> int:
        """Start CLOUD node ``name``'s slurmd as an instance boot would (``slurmd -b``, signal
        mask cleared, tagged with the cluster's token); returns its PID. Slurm takes it as the
        node's boot only while it is powering up (after a resume request)."""
        self._check_cloud(name)
        return slurm_node.start_slurmd(
            name,
            conf=self.conf_path,
            token=self.token,
            power_dir=self.power_dir,
            log_dir=self.log_dir,
        )

    def stop_cloud_node(self, name: str) -> None:
        """Stop CLOUD node ``name``'s slurmd by its PID, if one runs (SIGTERM, then SIGKILL)."""
        self._check_cloud(name)
        pid = slurm_node.running_slurmd(self.power_dir, name)
        if pid is not None:
            slurm_node.stop_slurmd(pid)

    def cloud_slurmd(self, name: str) -> int | None:
        """The PID of CLOUD node ``name``'s slurmd while it runs, else None."""
        self._check_cloud(name)
        return slurm_node.running_slurmd(self.power_dir, name)

    def boot_fails(self, name: str, fails: bool = True) -> None:
        """Make the test ResumeProgram log ``name``'s resumes but start no slurmd (an instance
        that never boots), or, with ``fails=False``, boot it again."""
        self._check_cloud(name)
        marker = self.power_dir / slurm_node.NO_BOOT_MARKER.format(name)
        if fails:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def power_calls(self, program: str | None = None, since: float = 0.0) -> list[PowerCall]:
        """Calls of the harness's test power programs logged at or after ``since`` (unix time),
        oldest first; only ``program``'s (resume, suspend, resume-fail) when given."""
        try:
            lines = (self.power_dir / slurm_node.CALLS_LOG).read_text().splitlines()
        except FileNotFoundError:
            return []
        calls = []
        for line in lines:
            if not line.strip():
                continue
            raw = json.loads(line)
            call = PowerCall(raw["program"], tuple(raw["nodes"]), tuple(raw["argv"]), raw["at"])
            if call.at >= since and program in (None, call.program):
                calls.append(call)
        return calls

    def node_states(self) -> dict[str, str]:
        """Every node's compact state as ``sinfo -o %t`` prints it (``idle``, ``idle~``,
        ``mix#``, ``down~``...), by name."""
        return self._states()

    def wait_until(
        self, done: Callable[[], bool], what: str, timeout_s: float | None = None
    ) -> None:
        """Poll ``done()`` (Slurm offers no event to await) every 0.1 s until true."""
        deadline = time.monotonic() + (timeout_s or self.ready_timeout_s)
        while not done():
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"Slurm did not reach '{what}' in time: {self._states()}; logs in "
                    f"{self.log_dir}"
                )
            time.sleep(0.1)

    # -- starting and stopping ----------------------------------------------------------------

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise HarnessError(reason)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every daemon (SIGTERM together, SIGKILL after a bound) and every process that
        carries our token, all by PID."""
        procs = list(self._procs.values())
        self._procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        cloud = [
            pid
            for name in self.cloud_names
            if (pid := slurm_node.running_slurmd(self.power_dir, name)) is not None
        ]
        for pid in cloud:  # not our children: started by the ResumeProgram, or by a test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for pid in cloud:
            slurm_node.stop_slurmd(pid, timeout_s=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for _ in range(3):  # slurmstepd and jobs leave the tree; their environment says whose
            tagged = self.tagged_pids()
            if not tagged:
                break
            for pid in tagged:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        for sub in ("munge", "state", "spool", "log", "power"):
            (self.base_dir / sub).mkdir(mode=0o755, exist_ok=True)
        for name in self.names + self.cloud_names:
            (self.base_dir / "spool" / name).mkdir(exist_ok=True)
        if self.cloud_names:
            self._write_power_programs()
        count = 1 + len(self.names) + len(self.cloud_names)
        ports = free_port_block(count, self.first_port, address=LOOPBACK)
        self._start_munged()
        self.conf_path.write_text(self._slurm_conf(ports))
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf_path)])
        for name in self.names:
            self._spawn(name, ["slurmd", "-D", "-N", name, "-f", str(self.conf_path)])
        self.wait_until(self._quiet, "every node idle")

    def _start_munged(self) -> None:
        key = self.base_dir / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, timeout=10)
        munge = self.base_dir / "munge"
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--log-file={self.log_dir / 'munged.log'}",
            ],
        )
        self.wait_until(self.munge_socket.exists, "munged's socket", timeout_s=10)

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        with open(self.log_dir / f"{name}.out", "wb") as log:  # the child keeps its own copy
            self._procs[name] = subprocess.Popen(
                argv,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,  # a Ctrl-C on pytest reaches pytest, not the daemons
            )

    def _write_power_programs(self) -> None:
        """The harness's test power programs: one shell wrapper each, which gives Python's
        slurm_node.py what Slurm does not give (PATH, SLURM_CONF, the token), in ``power/``."""
        script = Path(slurm_node.__file__).resolve()
        for program in POWER_PROGRAMS:
            path = self.power_dir / program
            command = [sys.executable, "-I", "-S", str(script), program, str(self.conf_path)]
            command += [str(self.power_dir), str(self.log_dir)]
            path.write_text(
                "#!/bin/sh\n"
                "# Slurm runs this with an empty environment: set what slurm_node.py needs.\n"
                f"PATH={slurm_node.SAFE_PATH}; export PATH\n"
                f"SLURM_CONF={self.conf_path}; export SLURM_CONF\n"
                f"{TOKEN_ENV}={self.token}; export {TOKEN_ENV}\n"
                f'exec {shlex.join(command)} "$@"\n'
            )
            path.chmod(0o755)

    def _power_conf(self) -> list[str]:
        """slurm.conf's power-saving lines (only with CLOUD nodes)."""
        power, folder = self.power, self.power_dir
        resume = power.resume_program or folder / "resume"
        suspend = power.suspend_program or folder / "suspend"
        resume_fail = power.resume_fail_program or folder / "resume-fail"
        return [
            "PrivateData=cloud",  # else powered-down CLOUD nodes are invisible to sinfo
            f"ResumeProgram={resume}",
            f"SuspendProgram={suspend}",
            f"ResumeFailProgram={resume_fail}",
            f"SuspendTime={power.suspend_time_s}",
            f"SuspendTimeout={power.suspend_timeout_s}",
            f"ResumeTimeout={power.resume_timeout_s}",
            "ResumeRate=0",  # no limit on nodes resumed or suspended per minute
            "SuspendRate=0",
            f"SuspendExcNodes={','.join(self.names)}",  # the on-prem nodes stay up
            # idle_on_node_suspend: a node suspended is marked idle (even if it was down or
            # drained), so jobs can resume it later; power_save_interval=1: the power-save
            # thread looks every second, not every 10.
            "SlurmctldParameters=idle_on_node_suspend,power_save_interval=1,"
            "power_save_min_interval=0",
        ]

    def _slurm_conf(self, first_port: int) -> str:
        d = self.base_dir
        last = first_port + len(self.names)
        nodes = ",".join(self.names)
        cloud = []
        if self.cloud_names:
            cloud = [
                f"NodeName={','.join(self.cloud_names)} NodeHostname=localhost "
                f"NodeAddr={LOOPBACK} Port=[{last + 1}-{last + len(self.cloud_names)}] CPUs=2 "
                "RealMemory=1000 State=CLOUD",
                *self._power_conf(),
            ]
        return "\n".join(
            [
                "ClusterName=tidectltest",
                f"SlurmctldHost=localhost({LOOPBACK})",
                f"SlurmctldPort={first_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.munge_socket}",
                f"StateSaveLocation={d / 'state'}",
                f"SlurmdSpoolDir={d / 'spool' / '%n'}",
                f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                f"SlurmdPidFile={d / 'spool' / 'slurmd-%n.pid'}",
                f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
                f"SlurmdLogFile={self.log_dir / 'slurmd-%n.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SlurmdParameters=config_overrides",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "MpiDefault=none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                # Jobs start on the next scheduling pass; keep passes frequent for quick tests.
                "SchedulerParameters=sched_interval=1",
                f"NodeName={nodes} NodeHostname=localhost NodeAddr={LOOPBACK} "
                f"Port=[{first_port + 1}-{last}] CPUs=2 RealMemory=1000 State=UNKNOWN",
                *cloud,
                f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def _states(self) -> dict[str, str]:
        done = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%N %t", check=False)
        return dict(line.split() for line in done.stdout.splitlines() if line.strip())

    def _quiet(self) -> bool:
        """On-prem nodes idle, CLOUD nodes powered down (``idle~``), no job left."""
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise HarnessError(
                    f"{name} exited with code {proc.returncode}; see {self.log_dir}/{name}.out"
                )
        states = self._states()
        if sorted(states) != sorted(self.names + self.cloud_names):
            return False
        if any(states[name] != "idle" for name in self.names):
            return False
        if any(states[name] != "idle~" for name in self.cloud_names):
            return False
        return not self._jobs_left()

    def _settle_cloud(self) -> bool:
        """One step of putting every CLOUD node back to powered down; True once quiet. A node up
        is powered down; a down one (a boot that never registered) is resumed, which leaves it
        powered down; one powering up or down is left to finish."""
        for name, state in self._states().items():
            if name not in self.cloud_names:
                continue
            if state.startswith("down") and not state.endswith("#"):
                self.run("scontrol", "update", f"NodeName={name}", "State=RESUME", check=False)
            elif not state.endswith(("~", "%", "!", "#")):
                self.run("scontrol", "update", f"NodeName={name}", "State=POWER_DOWN", check=False)
        return self._quiet()

    def _jobs_left(self) -> bool:
        return bool(self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip())

    def _check_cloud(self, name: str) -> None:
        if name not in self.cloud_names:
            raise HarnessError(f"{name} is not a CLOUD node of this cluster: {self.cloud_names}")

    def tagged_pids(self) -> set[int]:
        """PIDs of processes whose environment carries this cluster's token."""
        wanted = f"{TOKEN_ENV}={self.token}".encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # it just ended, or is not ours to read
                continue
            if wanted in environ:
                found.add(int(entry.name))
        return found
