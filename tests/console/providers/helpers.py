"""Launch requests and a raw EC2 client for the provider tests (the client checks what the
provider wrote, without going through the provider)."""

from __future__ import annotations

import functools
from typing import Any

from tests.fakes.aws_env import DUMMY, REGION
from tidectl.console.providers.base import LaunchRequest, ownership_tags

__all__ = ["DUMMY", "IMAGE", "REGION", "raw_ec2", "request", "tags_of"]

IMAGE = "ami-12c6146b"  # any id: moto accepts unknown AMIs unless told to validate


def request(
    *,
    cluster: str = "lab",
    pool: str = "h100",
    intent: str = "intent-1",
    count: int = 2,
    instance_type: str = "p5.48xlarge",
    **overrides: Any,
) -> LaunchRequest:
    fields: dict[str, Any] = {
        "pool": pool,
        "count": count,
        "instance_type": instance_type,
        "region": REGION,
        "image_id": IMAGE,
        "token": f"token-{intent}",
        "tags": ownership_tags(cluster, pool, intent),
    }
    return LaunchRequest(**(fields | overrides))


@functools.cache
def raw_ec2(url: str) -> Any:
    """A plain boto3 client at ``url`` (moto directly, or the proxy)."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=DUMMY.access_key_id,
        aws_secret_access_key=DUMMY.secret_access_key,
    )


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}
