"""Putting the agent on a node and the command line that runs it.

The agent travels as one reproducible zipapp, named by its content hash, so a node that has
this exact agent already is not sent it again (one SFTP ``stat``), and two console versions
never overwrite each other's agent. Uploads go to a temporary name and are renamed into
place, so a node never runs half an agent.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from dataclasses import dataclass, field

import asyncssh

from tidectl.agents.zipapp import archive_bytes
from tidectl.console.config.model import AgentSettings
from tidectl.console.transport.errors import AgentFailed

#: The oldest Python the agent runs on (checked by vermin and by a real 3.8 in the tests).
MIN_PYTHON = (3, 8)
VERSION_COMMAND = "-c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'"
_VERSION = re.compile(rb"^(\d+)\.(\d+)\.(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class AgentPackage:
    """The zipapp's bytes and where it lives on a node."""

    data: bytes
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @classmethod
    def build(cls) -> AgentPackage:
        return cls(archive_bytes())

    def remote_path(self, remote_dir: str) -> str:
        return f"{remote_dir.rstrip('/')}/tidectl-agent-{self.sha256[:16]}.pyz"


@dataclass(frozen=True, slots=True)
class Deployed:
    path: str
    python_version: tuple[int, int, int]
    uploaded: bool  # False when the node had this agent already


async def deploy(
    conn: asyncssh.SSHClientConnection, node: str, package: AgentPackage, agent: AgentSettings
) -> Deployed:
    """Check the node's Python, and upload the agent unless it is there already."""
    version = await _python_version(conn, node, agent.python)
    path = package.remote_path(agent.remote_dir)
    try:
        async with conn.start_sftp_client() as sftp:
            try:
                attrs = await sftp.stat(path)
                if attrs.size == len(package.data):
                    return Deployed(path, version, uploaded=False)
            except asyncssh.SFTPNoSuchFile:
                pass
            await sftp.makedirs(agent.remote_dir, exist_ok=True)
            temporary = f"{path}.tmp-{secrets.token_hex(4)}"
            async with sftp.open(temporary, "wb") as handle:
                await handle.write(package.data)
            await sftp.chmod(temporary, 0o755)
            await sftp.posix_rename(temporary, path)
    except asyncssh.SFTPError as exc:
        raise AgentFailed(
            node,
            f"could not upload the agent to {path}: {exc.reason} (check disk space and "
            f"permissions of {agent.remote_dir} in the login directory)",
        ) from exc
    return Deployed(path, version, uploaded=True)


async def _python_version(
    conn: asyncssh.SSHClientConnection, node: str, python: str
) -> tuple[int, int, int]:
    result = await conn.run(f"{shlex.quote(python)} {VERSION_COMMAND}", encoding=None)
    out = result.stdout if isinstance(result.stdout, bytes) else b""
    match = _VERSION.match(out)
    if result.exit_status != 0 or match is None:
        err = result.stderr if isinstance(result.stderr, bytes) else b""
        said = err.decode("utf-8", "replace").strip()[:200] or f"exit status {result.exit_status}"
        raise AgentFailed(
            node,
            f"no usable {python} on the node ({said}); install Python 3.8 or newer, or "
            "set [agent].python to its path",
        )
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version[:2] < MIN_PYTHON:
        raise AgentFailed(
            node,
            f"{python} on the node is {'.'.join(map(str, version))}; the agent needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer ([agent].python can name another)",
        )
    return version


def lease_path(agent: AgentSettings) -> str:
    """The lease file on a node, next to the agent: the stream touches it every sample, and
    the node's watchdog powers an idle node off once it is stale (``agents/watchdog.py``)."""
    return f"{agent.remote_dir.rstrip('/')}/lease"


def stream_command(deployed: Deployed, agent: AgentSettings) -> str:
    """The command that runs the deployed agent's stream on the node."""
    return " ".join(
        [
            "exec",
            shlex.quote(agent.python),
            shlex.quote(deployed.path),
            "stream",
            "--interval",
            repr(float(agent.interval_s)),
            "--probes",
            shlex.quote(agent.probes),
            "--lease-file",
            shlex.quote(lease_path(agent)),
        ]
    )


#: The watchdog checks at least this many times a lease, and at most every ``_CHECK_MAX_S``.
_CHECKS_PER_LEASE = 4
_CHECK_MAX_S = 10.0
#: A node must read idle for this share of a lease (at most ``_IDLE_WINDOW_MAX_S``) before
#: it is powered off: one idle reading between two training steps is not an idle node.
_IDLE_WINDOW_SHARE = 0.5
_IDLE_WINDOW_MAX_S = 60.0


def watchdog_command(
    package: AgentPackage,
    agent: AgentSettings,
    *,
    node: str,
    lease_s: float,
    poweroff: str,
    idle_gpu_util_below: float,
) -> str:
    """The command that starts the node's watchdog (detached; a no-op while one runs) over
    the agent ``package`` deployed per ``agent``. ``node`` is its name in Slurm."""
    check_every = min(_CHECK_MAX_S, lease_s / _CHECKS_PER_LEASE)
    idle_window = min(_IDLE_WINDOW_MAX_S, lease_s * _IDLE_WINDOW_SHARE)
    return " ".join(
        [
            "exec",
            shlex.quote(agent.python),
            shlex.quote(package.remote_path(agent.remote_dir)),
            "watchdog",
            "--lease-file",
            shlex.quote(lease_path(agent)),
            "--lease-s",
            repr(float(lease_s)),
            "--idle-gpu-util-below",
            repr(float(idle_gpu_util_below)),
            "--idle-window",
            repr(float(idle_window)),
            "--check-every",
            repr(float(check_every)),
            "--slurm-node",
            shlex.quote(node),
            "--poweroff",
            shlex.quote(poweroff),
        ]
    )
