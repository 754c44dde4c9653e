"""The provider interface: what the lifecycle engine may ask of a cloud, and what comes back.

One small async interface (launch, describe by tag, terminate, price), frozen dataclass
results, and typed errors whose class tells the engine what to do next. Nothing here imports
a cloud SDK: each provider module imports its own, lazily.

Ownership tags are the safety net of the whole lifecycle: every instance carries the cluster,
the pool and the intent that launched it, set in the launch request itself, so no instance
can ever exist untagged and the reconcile loop can always find what it owns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Final, Protocol, runtime_checkable

__all__ = [
    "CLUSTER_TAG",
    "DATA_CLASS_TAG",
    "INTENT_TAG",
    "OWNERSHIP_TAG_KEYS",
    "POOL_TAG",
    "AuthError",
    "CapacityError",
    "ConsoleOutput",
    "Endpoint",
    "HandsOverHostKeys",
    "Instance",
    "InstanceState",
    "InvalidRequestError",
    "LaunchRequest",
    "PrintsConsoleOutput",
    "Provider",
    "ProviderError",
    "QuotaError",
    "ThrottledError",
    "UnavailableError",
    "ownership_tags",
]

# The ownership tag keys. "tidectl:" keeps them apart from an account's own tags; AWS allows
# ":" in keys and reserves only the "aws:" prefix.
CLUSTER_TAG: Final = "tidectl:cluster"  # the cluster's id from cluster.toml
POOL_TAG: Final = "tidectl:pool"  # the cloud pool the instance belongs to
INTENT_TAG: Final = "tidectl:intent"  # the store's intent id that asked for the launch
#: The data class of the burst that launched it (data sovereignty; not an ownership tag).
DATA_CLASS_TAG: Final = "tidectl:data-class"
OWNERSHIP_TAG_KEYS: Final = (CLUSTER_TAG, POOL_TAG, INTENT_TAG)

MAX_TOKEN_CHARS: Final = 64  # EC2's ClientToken limit; the strictest of the clouds we target
MAX_TAG_VALUE_CHARS: Final = 256  # EC2's tag value limit


class ProviderError(Exception):
    """A provider call failed. ``str()`` is a sentence saying what happened and what to do.

    ``title`` names the kind of failure for a notification's heading; ``code`` is the cloud's
    own error code when there was one (``"InsufficientInstanceCapacity"``), for logs and tests.
    """

    title: ClassVar[str] = "Cloud provider error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CapacityError(ProviderError):
    """The cloud has no capacity for this type in this zone right now: try another zone or
    instance type, and back this one off for a while. Nothing was launched."""

    title: ClassVar[str] = "No capacity"

    def __init__(
        self, message: str, *, instance_type: str, zone: str | None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.instance_type = instance_type
        self.zone = zone


class QuotaError(ProviderError):
    """An account limit (instances, vCPUs) stops the launch: another zone will not help; a
    person must raise the quota or lower the pool's size. Nothing was launched."""

    title: ClassVar[str] = "Quota reached"


class AuthError(ProviderError):
    """The credentials are missing, wrong, expired or lack a permission: retrying will not help
    until a person fixes them."""

    title: ClassVar[str] = "Not authorized"


class ThrottledError(ProviderError):
    """The cloud is rate-limiting our calls: back off and retry later, with the same token."""

    title: ClassVar[str] = "Throttled"


class InvalidRequestError(ProviderError):
    """The request itself is wrong (bad image, subnet, type, parameters): fix the pool's
    configuration; retrying the same request will fail the same way."""

    title: ClassVar[str] = "Invalid request"


class UnavailableError(ProviderError):
    """The cloud could not be reached or failed on its side. For a launch it is unknown whether
    instances were started: retry with the same token (idempotent) or describe by tags."""

    title: ClassVar[str] = "Provider unavailable"


class InstanceState(enum.StrEnum):
    """An instance's state as the cloud reports it (EC2's names, which the others map onto)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"


def ownership_tags(cluster: str, pool: str, intent_id: str) -> dict[str, str]:
    """The tags that mark an instance as ours: which cluster, which pool, which intent."""
    tags = {CLUSTER_TAG: cluster, POOL_TAG: pool, INTENT_TAG: intent_id}
    _check_ownership_tags(tags)
    return tags


def _check_ownership_tags(tags: Mapping[str, str]) -> None:
    for key in OWNERSHIP_TAG_KEYS:
        value = tags.get(key, "")
        if not value:
            raise InvalidRequestError(
                f'the ownership tag "{key}" is missing or empty; build the tags with '
                "ownership_tags(cluster, pool, intent_id) so no instance is ever launched "
                "untagged."
            )
        if len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidRequestError(
                f'the ownership tag "{key}" is {len(value)} characters long; clouds accept at '
                f"most {MAX_TAG_VALUE_CHARS}: use a shorter cluster, pool or intent id."
            )


def _frozen_tags(tags: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(tags))


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Start ``count`` identical instances, all or none (EC2: MinCount == MaxCount).

    ``token`` makes the launch idempotent: the same token with the same request returns the
    instances the first call started instead of starting more, so a launch whose answer was lost
    (timeout, crash) is retried safely with the intent's token. ``tags`` must hold the ownership
    tags (see :func:`ownership_tags`); more tags may be added.
    """

    pool: str
    count: int
    instance_type: str
    region: str
    image_id: str
    token: str
    tags: Mapping[str, str]
    zone: str | None = None
    subnet_id: str | None = None
    security_group_ids: Sequence[str] = ()
    spot: bool = False
    user_data: str | None = None

    def __post_init__(self) -> None:
        for name in ("pool", "instance_type", "region", "image_id"):
            if not getattr(self, name):
                raise InvalidRequestError(
                    f"the launch request for pool {self.pool!r} has an empty {name}; set it "
                    "in the pool's configuration."
                )
        if self.count < 1:
            raise InvalidRequestError(
                f"the launch request for pool {self.pool!r} asks for {self.count} instances; "
                "ask for at least 1."
            )
        if not self.token or len(self.token) > MAX_TOKEN_CHARS or not self.token.isascii():
            raise InvalidRequestError(
                f"the launch token {self.token!r} must be 1 to {MAX_TOKEN_CHARS} ASCII "
                "characters; use the intent's idempotency token."
            )
        _check_ownership_tags(self.tags)
        if self.tags[POOL_TAG] != self.pool:
            raise InvalidRequestError(
                f'the launch request is for pool {self.pool!r} but its "{POOL_TAG}" tag says '
                f"{self.tags[POOL_TAG]!r}; build both from the same pool."
            )
        object.__setattr__(self, "tags", _frozen_tags(self.tags))
        object.__setattr__(self, "security_group_ids", tuple(self.security_group_ids))


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance as the cloud reported it at the time of the call."""

    instance_id: str
    state: InstanceState
    instance_type: str
    zone: str
    launched_at: datetime  # timezone-aware
    tags: Mapping[str, str] = field(default_factory=dict)
    private_ip: str | None = None  # none before the network is attached or after termination
    spot: bool = False
    interruption: bool = False  # the cloud reclaimed this spot instance (or is about to)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _frozen_tags(self.tags))


class Provider(Protocol):
    """What the lifecycle engine needs of a cloud. Every method is async and never blocks the
    event loop; every failure is a :class:`ProviderError` subclass."""

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        """Start ``request.count`` instances tagged with ``request.tags``, all or none.

        Idempotent by ``request.token``. Raises :class:`CapacityError` (nothing started: try
        elsewhere), :class:`QuotaError`, :class:`AuthError`, :class:`ThrottledError`,
        :class:`InvalidRequestError` or :class:`UnavailableError` (outcome unknown).
        """
        ...

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        """Every instance carrying ALL of ``tags`` (non-empty), in any state, terminated too
        while the cloud still lists it."""
        ...

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        """Ask for these instances to be terminated. Idempotent: ids already terminated or gone
        are fine. Returning is not confirmation: the engine confirms with :meth:`describe`."""
        ...

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        """An estimated price in USD per instance-hour, or None when unknown."""
        ...


class Endpoint(Protocol):
    """How to reach a running instance over SSH, and the host key that proves it is it.

    Read-only: a provider's own endpoint type (the sim's ``SimEndpoint``) fits as it is.
    """

    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def user(self) -> str:
        """The login the instance accepts."""
        ...

    @property
    def known_hosts_line(self) -> str:
        """known_hosts text naming the instance's host key, to verify it against."""
        ...

    @property
    def client_key(self) -> Path | None:
        """The private key the instance accepts; None: the cluster's ``[ssh] identity_file``."""
        ...


@runtime_checkable
class HandsOverHostKeys(Protocol):
    """A provider that hands over each running instance's host key (the sim cloud does).

    Without one, a new cloud node's key could only be trusted on first use, which tidectl
    never does: such a provider's nodes are not bootstrapped.
    """

    def endpoint(self, instance_id: str) -> Endpoint | None:
        """The instance's address, login and host key; None unless it is running."""
        ...


@dataclass(frozen=True, slots=True)
class ConsoleOutput:
    """A running instance's address and what it has printed to its serial console so far."""

    instance_id: str
    address: str | None  # the private address; None before the network is attached
    text: str  # decoded; "" while the cloud has none to show yet


@runtime_checkable
class PrintsConsoleOutput(Protocol):
    """A provider that shows each instance's console (EC2 ``GetConsoleOutput``), where
    cloud-init prints the host keys that prove the instance is it
    (``transport/printed_keys.py``)."""

    async def console_output(self, instance_id: str) -> ConsoleOutput | None:
        """The instance's address and console; None unless it is running."""
        ...
