"""What went wrong reaching a node, as a link state and a sentence an operator can act on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from tidectl.console.model import LinkState


class TransportError(Exception):
    """A node could not be reached or used. ``state`` says how; str() says what to do."""

    state = LinkState.UNREACHABLE

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node
        self.message = message


class Unreachable(TransportError):
    state = LinkState.UNREACHABLE


class AuthFailed(TransportError):
    state = LinkState.AUTH_FAILED


class HostKeyMismatch(TransportError):
    state = LinkState.HOST_KEY_MISMATCH


class AgentFailed(TransportError):
    state = LinkState.AGENT_FAILED


@dataclass(frozen=True, slots=True)
class Target:
    """Where a node is, for error sentences."""

    node: str
    address: str
    port: int
    user: str

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


class KnownHostsUnreadable(Exception):
    """The configured known_hosts file cannot be read (deleted, unreadable)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(f"{path}: {exc.strerror or exc}")
        self.path = path
        self.reason = exc.strerror or str(exc) or type(exc).__name__


def classify(target: Target, exc: BaseException, known_hosts: str) -> TransportError:  # noqa: PLR0911
    """Turn whatever asyncssh or the socket raised into one of our errors."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, KnownHostsUnreadable):
        return HostKeyMismatch(
            target.node,
            f"cannot read known_hosts {exc.path} ({exc.reason}), so the host key of "
            f"{target.address}:{target.port} cannot be checked; no command was sent. Restore "
            "the file, or point [ssh] known_hosts at the right one.",
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyMismatch(
            target.node,
            f"the host key of {target.address}:{target.port} does not match {known_hosts} "
            f"({exc.reason}); no command was sent. If the node was reinstalled, check its new "
            "key's fingerprint out of band and replace its line in known_hosts.",
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthFailed(
            target.node,
            f"{target} refused our key ({exc.reason}); check that the identity file's public "
            "key is in that user's authorized_keys.",
        )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Unreachable(target.node, f"no answer from {target.address}:{target.port} in time")
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(
            target.node, f"connection to {target.address}:{target.port} refused (sshd not running?)"
        )
    if isinstance(exc, asyncssh.ConnectionLost):
        return Unreachable(target.node, f"connection to {target} lost: {exc.reason}")
    if isinstance(exc, asyncssh.DisconnectError):
        return Unreachable(target.node, f"{target} disconnected: {exc.reason}")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Unreachable(target.node, f"cannot reach {target.address}:{target.port}: {reason}")
    if isinstance(exc, asyncssh.Error):
        return Unreachable(target.node, f"SSH error with {target}: {exc.reason}")
    return Unreachable(target.node, f"{type(exc).__name__}: {exc}")
