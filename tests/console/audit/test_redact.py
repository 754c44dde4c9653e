"""redact(): which keys and values are hidden, at any depth, and what stays readable."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from tidectl.console.audit import REDACTED, redact
from tidectl.console.audit.redact import scrub, secret_key

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def test_secret_keys_and_secret_looking_values_are_hidden_at_any_depth() -> None:
    params: dict[str, Any] = {
        "reason": "firmware",
        "nodes": ["gpu1", "gpu2"],
        "aws": {
            "region": "us-east-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "session": {"token": "FwoGZXIvYXdzE", "expires": 3600},
        },
        "hosts": [{"name": "gpu1", "password": "hunter2"}, "plain", "ASIAABCDEFGHIJKLMNOP"],
        "bootstrap": {"join": "kubeadm join", "identity": PEM},
        "note": "rotate AKIAIOSFODNN7EXAMPLE today",
    }
    assert redact(params) == {
        "reason": "firmware",
        "nodes": ["gpu1", "gpu2"],
        "aws": {
            "region": "us-east-1",
            "access_key_id": REDACTED,  # by value: key ids are kept out too
            "AWS_SECRET_ACCESS_KEY": REDACTED,
            "session": {"token": REDACTED, "expires": 3600},
        },
        "hosts": [{"name": "gpu1", "password": REDACTED}, "plain", REDACTED],
        "bootstrap": {"join": "kubeadm join", "identity": REDACTED},
        "note": REDACTED,  # the whole string: a key id may travel with its secret
    }
    assert params["hosts"][0] == {"name": "gpu1", "password": "hunter2"}  # not changed in place


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "client_secret",
        "Secrets",
        "token",
        "accessToken",
        "max_tokens",
        "password",
        "db-passwords",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
        "Authorization",
        "key",
        "KEY",
        "keys",
        "api_key",
        "apiKey",
        "ssh-keys",
        "private_key",
        "apikey",
        "privatekey",
        "accesskey",
    ],
)
def test_secret_keys(key: str) -> None:
    assert secret_key(key)
    assert redact({key: {"anything": 1}}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "key_name",
        "keyName",
        "key_id",
        "key_path",
        "key_pair",
        "public_key",
        "sshPublicKey",
        "monkey",
        "hotkeys",
        "keyring",
        "reason",
        "nodes",
        "author",
    ],
)
def test_keys_about_a_key_or_not_secret_are_kept(key: str) -> None:
    assert not secret_key(key)
    assert redact({key: "lab"}) == {key: "lab"}


def test_strings_that_only_resemble_aws_key_ids_are_kept() -> None:
    kept = {
        "short": "AKIA1234",
        "lower": "akiaiosfodnn7example",
        "longer": "XAKIAIOSFODNN7EXAMPLE",
        "word": "AKIAIOSFODNN7EXAMPLEX",
        "public": "-----BEGIN PUBLIC KEY-----",
    }
    assert redact(kept) == kept


class Frontend(StrEnum):
    CLI = "cli"


def test_values_are_made_storable_as_json() -> None:
    # Keys that are not strings too: redact() takes what callers hand it.
    mixed: dict[Any, Any] = {
        "path": Path("/srv/x"),
        "tags": {"b", "a"},
        "pair": (1, 2.5),
        "nan": math.nan,
        "frontend": Frontend.CLI,
        3: "numbered",
        "surrogate": "bad\udcffbyte",
    }
    stored = redact(mixed)
    assert stored == {
        "path": "/srv/x",
        "tags": ["a", "b"],
        "pair": [1, 2.5],
        "nan": "nan",
        "frontend": "cli",
        "3": "numbered",
        "surrogate": "bad?byte",
    }
    assert type(stored["frontend"]) is str
    json.dumps(stored, allow_nan=False).encode("utf-8")


def test_very_deep_params_are_cut_off() -> None:
    deep: dict[str, object] = {"password": "x"}
    for _ in range(40):
        deep = {"d": deep}
    assert "[too deep]" in json.dumps(redact(deep))
    assert "password" not in json.dumps(redact(deep))


def test_scrub_keeps_the_sentence_and_hides_the_key() -> None:
    said = "failed: SignatureDoesNotMatch for Credential=AKIAIOSFODNN7EXAMPLE/20251129/us-east-1"
    assert (
        scrub(said) == "failed: SignatureDoesNotMatch for Credential=[redacted]/20251129/us-east-1"
    )
    assert scrub(f"failed: got {PEM} back") == "failed: got [redacted] back"
    assert scrub(f"failed: got {PEM[:60]}") == "failed: got [redacted]"
