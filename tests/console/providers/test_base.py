"""The provider interface's values: launch requests refuse what would launch untagged or
ambiguous instances, results are frozen, errors are one hierarchy with sentences."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.console.providers.helpers import request
from tidectl.console.providers.base import (
    CLUSTER_TAG,
    INTENT_TAG,
    POOL_TAG,
    AuthError,
    CapacityError,
    Instance,
    InstanceState,
    InvalidRequestError,
    ProviderError,
    QuotaError,
    ThrottledError,
    UnavailableError,
    ownership_tags,
)


def test_ownership_tags_name_cluster_pool_and_intent() -> None:
    assert ownership_tags("lab", "h100", "i-7") == {
        "tidectl:cluster": "lab",
        "tidectl:pool": "h100",
        "tidectl:intent": "i-7",
    }
    assert tuple(ownership_tags("a", "b", "c")) == (CLUSTER_TAG, POOL_TAG, INTENT_TAG)


@pytest.mark.parametrize("missing", [CLUSTER_TAG, POOL_TAG, INTENT_TAG])
def test_a_launch_without_an_ownership_tag_is_refused(missing: str) -> None:
    tags = ownership_tags("lab", "h100", "intent-1")
    del tags[missing]
    with pytest.raises(InvalidRequestError, match=missing):
        request(tags=tags)


def test_empty_ownership_values_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="tidectl:intent"):
        ownership_tags("lab", "h100", "")


def test_the_pool_tag_must_match_the_pool() -> None:
    with pytest.raises(InvalidRequestError, match="'a100'"):
        request(tags=ownership_tags("lab", "a100", "intent-1"))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("count", 0, "at least 1"),
        ("token", "", "token"),
        ("token", "x" * 65, "64"),
        ("token", "jeton-é", "ASCII"),
        ("image_id", "", "image_id"),
    ],
)
def test_bad_launch_fields_are_refused_with_a_sentence(field: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        request(**{field: value})


def test_requests_and_instances_are_frozen_with_read_only_tags() -> None:
    tags = ownership_tags("lab", "h100", "intent-1")
    launch = request(tags=tags, security_group_ids=["sg-1"])
    tags[CLUSTER_TAG] = "changed after the fact"
    assert launch.tags[CLUSTER_TAG] == "lab"
    assert launch.security_group_ids == ("sg-1",)
    with pytest.raises(TypeError):
        launch.tags[CLUSTER_TAG] = "x"  # type: ignore[index]
    instance = Instance(
        "i-1",
        InstanceState.RUNNING,
        "p5.48xlarge",
        "us-east-1a",
        datetime.now(UTC),
        tags={"k": "v"},
    )
    with pytest.raises(AttributeError):
        instance.state = InstanceState.TERMINATED  # type: ignore[misc]


def test_instance_states_are_ec2s_names() -> None:
    assert InstanceState("shutting-down") is InstanceState.SHUTTING_DOWN
    assert [s.value for s in InstanceState] == [
        "pending",
        "running",
        "stopping",
        "stopped",
        "shutting-down",
        "terminated",
    ]


def test_every_error_is_a_provider_error_with_its_own_title() -> None:
    classes: list[type[ProviderError]] = [
        CapacityError,
        QuotaError,
        AuthError,
        ThrottledError,
        InvalidRequestError,
        UnavailableError,
    ]
    assert all(issubclass(cls, ProviderError) for cls in classes)
    every: list[type[ProviderError]] = [*classes, ProviderError]
    assert len({cls.title for cls in every}) == len(every)  # each tells a different story
    capacity = CapacityError("no room", instance_type="p5.48xlarge", zone="us-east-1a")
    assert (capacity.instance_type, capacity.zone, str(capacity)) == (
        "p5.48xlarge",
        "us-east-1a",
        "no room",
    )
