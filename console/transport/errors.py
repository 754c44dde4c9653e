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


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a node's expected host key came from, and what a person does when it differs."""

    name: str  # "/etc/tidectl/known_hosts", "the key its provider handed over"
    remedy: str

    @classmethod
    def file(cls, path: Path | str) -> KeySource:
        return cls(
            str(path),
            "If the node was reinstalled, check its new key's fingerprint out of band and "
            "replace its line in known_hosts.",
        )


#: A cloud node's key, handed over by the provider that started it (``NodeSpec.known_hosts``).
HANDED_OVER = KeySource(
    "the key its provider handed over",
    "Something other than the instance answers at that address (the instance was replaced, "
    "or its address reused): terminate the instance and launch another; tidectl trusts no "
    "other key.",
)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


class KnownHostsUnreadable(Exception):
    """The configured known_hosts file cannot be read (deleted, unreadable)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(f"{path}: {exc.strerror or exc}")
        self.path = path
        self.reason = _reason(exc)


class HandedOverKeyUnreadable(Exception):
    """The known_hosts text a provider handed over for one node does not parse."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(_reason(exc))
        self.reason = _reason(exc)


class IdentityUnreadable(Exception):
    """A node's own identity file (``NodeSpec.identity_file``) cannot be read or parsed."""

    def __init__(self, path: Path, exc: Exception) -> None:
        super().__init__(f"{path}: {_reason(exc)}")
        self.path = path
        self.reason = _reason(exc)


def classify(  # noqa: PLR0911
    target: Target, exc: BaseException, known_hosts: KeySource | str
) -> TransportError:
    """Turn whatever asyncssh or the socket raised into one of our errors.

    ``known_hosts`` says where the node's expected host key came from (a path is taken as
    the cluster's known_hosts file), so that a mismatch names it and says what to do.
    """
    source = known_hosts if isinstance(known_hosts, KeySource) else KeySource.file(known_hosts)
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, KnownHostsUnreadable):
        return HostKeyMismatch(
            target.node,
            f"cannot read known_hosts {exc.path} ({exc.reason}), so the host key of "
            f"{target.address}:{target.port} cannot be checked; no command was sent. Restore "
            "the file, or point [ssh] known_hosts at the right one.",
        )
    if isinstance(exc, HandedOverKeyUnreadable):
        return HostKeyMismatch(
            target.node,
            f"the host key its provider handed over cannot be read ({exc.reason}), so the "
            f"host key of {target.address}:{target.port} cannot be checked; no command was "
            "sent. Terminate the instance and launch another (and report the provider's fault).",
        )
    if isinstance(exc, IdentityUnreadable):
        return AuthFailed(
            target.node,
            f"cannot read the node's identity file {exc.path} ({exc.reason}), so there is no "
            f"key to log in to {target} with; no command was sent. Restore the file, or "
            "terminate the instance.",
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyMismatch(
            target.node,
            f"the host key of {target.address}:{target.port} does not match {source.name} "
            f"({exc.reason}); no command was sent. {source.remedy}",
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
