"""The aws provider: EC2 through boto3, behind the provider interface.

boto3 is optional (``tidectl[aws]``) and heavy, so it is imported on first use, in a worker
thread: importing this module never needs it, and a missing boto3 is a sentence, not an
ImportError. boto3 blocks, so every call runs in ``asyncio.to_thread``; the event loop that
draws the console and runs the reconcile loop never waits on EC2.

Launches use their own client with ONE attempt: botocore would otherwise retry capacity errors
(HTTP 500) for seconds, while the engine wants them at once to fail over to another zone or
type. Launches stay safe to repeat because of ``ClientToken``. Other calls get a few retries
in botocore's standard mode (throttling, 5xx, dropped connections).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from tidectl.console.providers.aws_errors import CallContext, classify, error_code
from tidectl.console.providers.aws_prices import PriceTable
from tidectl.console.providers.base import (
    ConsoleOutput,
    Instance,
    InstanceState,
    InvalidRequestError,
    LaunchRequest,
    Provider,
    ProviderError,
)

__all__ = ["AwsCredentials", "AwsProvider"]

T = TypeVar("T")

SPOT_INTERRUPTED: Final = "Server.SpotInstanceTermination"  # StateReason.Code after a reclaim
TERMINATE_BATCH: Final = 1000  # ids per TerminateInstances call
DESCRIBE_PAGE: Final = 1000  # DescribeInstances' largest page
_INSTANCE_ID: Final = re.compile(r"\bi-[0-9a-f]+\b")
MISSING_BOTO3: Final = (
    "the aws provider needs boto3, which is not installed: install it with "
    "pip install 'tidectl[aws]' (or choose the sim provider for this pool)."
)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Explicit credentials (tests, or a caller with its own secret store). Without them the
    default chain is used: environment, ~/.aws, SSO, instance role. Secrets stay out of repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def _require_boto3() -> None:
    if importlib.util.find_spec("boto3") is None:
        raise ProviderError(MISSING_BOTO3)


class AwsProvider:
    """EC2 in one region. A pool in another region gets a provider of its own."""

    name: Final = "aws"

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        credentials: AwsCredentials | None = None,
        profile: str | None = None,
        prices: Mapping[str, float] | None = None,
        spot_prices: Mapping[str, float] | None = None,
        max_attempts: int = 3,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        """``endpoint_url`` points at another EC2 endpoint (the tests' local moto server);
        ``prices``/``spot_prices`` override the estimated table per instance type;
        ``max_attempts`` is for calls other than launch, which always get one attempt."""
        if not region:
            raise InvalidRequestError("the aws provider needs a region, e.g. us-east-1.")
        if max_attempts < 1:
            raise InvalidRequestError(f"max_attempts is {max_attempts}; it must be at least 1.")
        _require_boto3()  # cheap (no import): a missing boto3 is reported when the pool is set up
        self.region = region
        self._endpoint_url = endpoint_url
        self._credentials = credentials
        self._profile = profile
        self._prices = PriceTable(prices, spot_prices)
        self._max_attempts = max_attempts
        self._timeouts = {"connect_timeout": connect_timeout_s, "read_timeout": read_timeout_s}
        self._clients: tuple[Any, Any] | None = None  # (launch client, client for the rest)
        self._clients_lock = threading.Lock()

    # -- the interface ---------------------------------------------------------------------

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        if request.region != self.region:
            raise InvalidRequestError(
                f"the launch request for pool {request.pool!r} is for region {request.region} "
                f"but this aws provider serves {self.region}; use the provider of that region."
            )
        params = _run_instances_params(request)
        context = CallContext(
            "RunInstances", self.region, instance_type=request.instance_type, zone=request.zone
        )

        def run(launch_client: Any, _client: Any) -> list[Instance]:
            answer = launch_client.run_instances(**params)
            return [_to_instance(raw, request.tags) for raw in answer.get("Instances", [])]

        return await self._call(context, run)

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        if not tags:
            # An unfiltered describe would list every instance of the account, and the engine
            # adopts or terminates what it is given.
            raise InvalidRequestError(
                "describe needs at least one ownership tag; pass ownership tags such as "
                '{"tidectl:cluster": ...} so only this cluster\'s instances are listed.'
            )
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]

        def run(_launch_client: Any, client: Any) -> list[Instance]:
            pages = client.get_paginator("describe_instances").paginate(
                Filters=filters, PaginationConfig={"PageSize": DESCRIBE_PAGE}
            )
            return [_to_instance(raw, {}) for raw in _instances_in(pages)]

        return await self._call(CallContext("DescribeInstances", self.region), run)

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(instance_ids))  # once each, in order
        if not ids:
            return

        def run(_launch_client: Any, client: Any) -> None:
            for start in range(0, len(ids), TERMINATE_BATCH):
                _terminate_batch(client, ids[start : start + TERMINATE_BATCH])

        await self._call(CallContext("TerminateInstances", self.region), run)

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        return self._prices.per_hour(instance_type, spot=spot)

    # -- what proves an instance's identity --------------------------------------------------

    async def console_output(self, instance_id: str) -> ConsoleOutput | None:
        """The running instance's private address and console output (cloud-init prints its
        host keys there); None when it is not running or EC2 does not know it."""

        def run(_launch_client: Any, client: Any) -> ConsoleOutput | None:
            try:
                answer = client.describe_instances(InstanceIds=[instance_id])
            except Exception as exc:
                if error_code(exc) == "InvalidInstanceID.NotFound":
                    return None
                raise
            raw = next(_instances_in([answer]), None)
            if raw is None or raw["State"]["Name"] != InstanceState.RUNNING:
                return None
            # botocore decodes the base64 EC2 sends; absent until the console has output.
            shown = client.get_console_output(InstanceId=instance_id).get("Output") or ""
            return ConsoleOutput(instance_id, raw.get("PrivateIpAddress") or None, shown)

        return await self._call(CallContext("GetConsoleOutput", self.region), run)

    # -- plumbing --------------------------------------------------------------------------

    async def _call(self, context: CallContext, work: Callable[[Any, Any], T]) -> T:
        """Run ``work(launch_client, client)`` in a worker thread; errors come back typed."""

        def in_thread() -> T:
            try:
                launch_client, client = self._boto_clients()
                return work(launch_client, client)
            except ProviderError:
                raise
            except Exception as exc:
                raise classify(exc, context) from exc

        return await asyncio.to_thread(in_thread)

    def _boto_clients(self) -> tuple[Any, Any]:
        """Both clients, made on first use (in a worker thread: importing boto3 takes time)."""
        with self._clients_lock:
            if self._clients is None:
                self._clients = self._make_clients()
            return self._clients

    def _make_clients(self) -> tuple[Any, Any]:
        try:
            import boto3.session  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ProviderError(MISSING_BOTO3) from exc
        session_args: dict[str, Any] = {"region_name": self.region}
        if self._credentials is not None:
            session_args |= {
                "aws_access_key_id": self._credentials.access_key_id,
                "aws_secret_access_key": self._credentials.secret_access_key,
                "aws_session_token": self._credentials.session_token,
            }
        elif self._profile is not None:
            session_args["profile_name"] = self._profile
        session = boto3.session.Session(**session_args)
        once = Config(retries={"mode": "standard", "total_max_attempts": 1}, **self._timeouts)
        retried = Config(
            retries={"mode": "standard", "total_max_attempts": self._max_attempts},
            **self._timeouts,
        )
        make = session.client
        return (
            make("ec2", endpoint_url=self._endpoint_url, config=once),
            make("ec2", endpoint_url=self._endpoint_url, config=retried),
        )


def _run_instances_params(request: LaunchRequest) -> dict[str, Any]:
    tags = [{"Key": key, "Value": value} for key, value in request.tags.items()]
    # Tags go on everything the launch creates, atomically with it: an instance (or its disk)
    # can never exist untagged, even if we crash the moment the call returns.
    resources = ["instance", "volume"] + (["spot-instances-request"] if request.spot else [])
    params: dict[str, Any] = {
        "ImageId": request.image_id,
        "InstanceType": request.instance_type,
        "MinCount": request.count,  # == MaxCount: all or nothing, never a partial launch
        "MaxCount": request.count,
        "ClientToken": request.token,
        "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in resources],
        # A node that powers itself off (its watchdog, when no control plane is left) must
        # stop the bill, not leave a stopped instance and its volumes behind.
        "InstanceInitiatedShutdownBehavior": "terminate",
    }
    if request.zone:
        params["Placement"] = {"AvailabilityZone": request.zone}
    if request.subnet_id:
        params["SubnetId"] = request.subnet_id
    if request.security_group_ids:
        params["SecurityGroupIds"] = list(request.security_group_ids)
    if request.user_data is not None:
        params["UserData"] = request.user_data  # boto3 base64-encodes it
    if request.spot:
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
    return params


def _instances_in(pages: Any) -> Iterator[dict[str, Any]]:
    for page in pages:
        for reservation in page.get("Reservations", []):
            yield from reservation.get("Instances", [])


def _terminate_batch(client: Any, ids: list[str]) -> None:
    """Terminate ``ids``; ids EC2 no longer knows count as gone.

    EC2 refuses the whole call when one id is unknown, so those are dropped and the call
    repeated. Caveat: right after a launch EC2 can briefly not know a new id (eventual
    consistency); that is why the engine confirms termination with describe, never with this.
    """
    remaining = ids
    while remaining:
        try:
            client.terminate_instances(InstanceIds=remaining)
            return
        except Exception as exc:
            if error_code(exc) != "InvalidInstanceID.NotFound":
                raise
            unknown = set(_INSTANCE_ID.findall(str(exc)))
            left = [instance_id for instance_id in remaining if instance_id not in unknown]
            if len(left) == len(remaining):
                raise  # cannot tell which id it meant
            remaining = left


def _to_instance(raw: Mapping[str, Any], fallback_tags: Mapping[str, str]) -> Instance:
    tags = {tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])} or dict(fallback_tags)
    launched_at: datetime = raw["LaunchTime"]
    launched_at = (
        launched_at.replace(tzinfo=UTC)
        if launched_at.tzinfo is None
        else launched_at.astimezone(UTC)
    )
    reason = raw.get("StateReason") or {}
    return Instance(
        instance_id=raw["InstanceId"],
        state=InstanceState(raw["State"]["Name"]),
        instance_type=raw["InstanceType"],
        zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        launched_at=launched_at,
        tags=tags,
        private_ip=raw.get("PrivateIpAddress") or None,
        spot=raw.get("InstanceLifecycle") == "spot",
        interruption=reason.get("Code") == SPOT_INTERRUPTED,
    )


if TYPE_CHECKING:  # mypy checks here that the class keeps to the interface
    _keeps_to_the_interface: Provider = AwsProvider("us-east-1")
