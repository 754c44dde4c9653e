"""EC2's error codes, sorted into the provider errors that tell the engine what to do.

Only error codes and exception class names are looked at, so this module needs no botocore
import: it runs wherever the aws provider's calls ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tidectl.console.audit.redact import scrub
from tidectl.console.providers.base import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    ProviderError,
    QuotaError,
    ThrottledError,
    UnavailableError,
)

# "Try another zone or instance type": measured and listed in notes/cloud-moto.md.
CAPACITY_CODES: Final = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity",
        "UnfulfillableCapacity",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "Unsupported",  # the type is not offered in that zone
    }
)
QUOTA_CODES: Final = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded"})
AUTH_CODES: Final = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "RequestExpired",
        "OptInRequired",
    }
)
THROTTLE_CODES: Final = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
UNAVAILABLE_CODES: Final = frozenset(
    {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"}
)
# botocore exceptions raised before or instead of an answer, by class name.
NO_CREDENTIALS: Final = frozenset({"NoCredentialsError", "PartialCredentialsError"})
NO_ANSWER: Final = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProxyConnectionError",
    }
)
MAX_DETAIL_CHARS: Final = 300  # UnauthorizedOperation carries a long encoded blob


@dataclass(frozen=True, slots=True)
class CallContext:
    """What was being asked, for the sentence: the operation and, for launches, where."""

    operation: str  # "RunInstances"
    region: str
    instance_type: str | None = None
    zone: str | None = None

    @property
    def where(self) -> str:
        return self.zone or self.region


def _detail(code: str, message: str) -> str:
    # EC2 can quote the caller's access key id (AuthFailure, signature errors): never passed on.
    message = scrub(" ".join(message.split()))
    if len(message) > MAX_DETAIL_CHARS:
        message = message[:MAX_DETAIL_CHARS] + "…"
    return f"{code}: {message}" if message else code


def _launch_unknown(context: CallContext) -> str:
    if context.operation != "RunInstances":
        return "retry later"
    return (
        "it is unknown whether instances were started: retry with the same token "
        "(it will not start duplicates) or describe by the ownership tags"
    )


def error_code(exc: BaseException) -> str | None:
    """The cloud's error code of a botocore ClientError, or None for any other exception."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict) or not isinstance(response.get("Error"), dict):
        return None
    return str(response["Error"].get("Code", "") or "Unknown")


def classify(exc: BaseException, context: CallContext) -> ProviderError:
    """Turn what boto3 raised into the provider error whose class says what to do next."""
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    if name in NO_CREDENTIALS:
        return AuthError(
            f"no usable AWS credentials were found for {context.operation} in "
            f"{context.region} ({name}); configure them (environment, ~/.aws, or an instance "
            "role) or name a profile in the pool's settings."
        )
    if name in NO_ANSWER:
        return UnavailableError(
            f"EC2 in {context.region} did not answer {context.operation} ({name}: {exc}); "
            f"{_launch_unknown(context)}."
        )
    code = error_code(exc)
    if code is None:
        return ProviderError(
            f"{context.operation} in {context.region} failed unexpectedly ({name}: {exc}); "
            "report this with the log, and check the instances by their ownership tags."
        )
    response: Any = getattr(exc, "response", {})
    detail = _detail(code, str(response["Error"].get("Message", "") or ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return _from_code(code, detail, status, context)


def _from_code(  # noqa: PLR0911
    code: str, detail: str, status: int, context: CallContext
) -> ProviderError:
    op, region = context.operation, context.region
    if code in CAPACITY_CODES:
        what = context.instance_type or "this instance type"
        return CapacityError(
            f"EC2 has no capacity for {what} in {context.where} right now ({detail}); nothing "
            "was started: try another zone or instance type, and back this one off.",
            instance_type=context.instance_type or "",
            zone=context.zone,
            code=code,
        )
    if code in QUOTA_CODES:
        return QuotaError(
            f"an account quota in {region} stops {op} ({detail}); nothing was started: "
            "request a higher limit in the Service Quotas console or lower the pool's max nodes.",
            code=code,
        )
    if code in AUTH_CODES:
        return AuthError(
            f"AWS refused {op} in {region} ({detail}); check the credentials in use and that "
            "their IAM policy allows ec2:RunInstances, ec2:CreateTags, ec2:DescribeInstances "
            "and ec2:TerminateInstances (and that the region is enabled for the account).",
            code=code,
        )
    if code in THROTTLE_CODES:
        return ThrottledError(
            f"EC2 in {region} is throttling our requests ({detail}); back off and retry "
            f"{op} later (a launch with the same token).",
            code=code,
        )
    if code in UNAVAILABLE_CODES or status >= 500:
        return UnavailableError(
            f"EC2 in {region} failed on its side during {op} ({detail}); "
            f"{_launch_unknown(context)}.",
            code=code,
        )
    if code == "IdempotentParameterMismatch":
        return InvalidRequestError(
            f"the launch token was already used for a different request ({detail}); a new "
            "request needs a new intent and token.",
            code=code,
        )
    if 400 <= status < 500 or code.startswith(("Invalid", "Missing", "Unknown")):
        fix = (
            "fix the pool's configuration (image, subnet, security groups, instance type)"
            if op == "RunInstances"
            else "check the instance ids and the region they were launched in"
        )
        return InvalidRequestError(
            f"EC2 in {region} rejected {op} as invalid ({detail}); {fix}, then try again.",
            code=code,
        )
    return ProviderError(
        f"{op} in {region} failed ({detail}); check the instances by their ownership tags "
        "before retrying.",
        code=code,
    )
