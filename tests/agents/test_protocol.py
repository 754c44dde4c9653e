"""The wire protocol: what encode writes, decode reads back, and what it refuses."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidectl.agents import protocol

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
sections = st.dictionaries(st.sampled_from(["host", "gpu", "ib", "storage", "net"]), json_values)


@given(
    seq=st.integers(min_value=1, max_value=2**53),
    ts=st.floats(min_value=0, max_value=4e9),
    mono=st.floats(min_value=0, max_value=1e9),
    probes=sections,
)
def test_sample_round_trips(seq: int, ts: float, mono: float, probes: dict[str, Any]) -> None:
    record = protocol.sample(seq=seq, ts=ts, mono=mono, agent={"cpu_ms": 0.5}, probes=probes)
    line = protocol.encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line) == record


@given(facts=st.dictionaries(st.text(min_size=1), json_values, max_size=5))
def test_hello_round_trips(facts: dict[str, Any]) -> None:
    record = protocol.hello("9.9.9", 1.5, 1.0, facts, sim_seed=None)
    assert protocol.decode(protocol.encode(record)) == record


def test_non_finite_floats_become_null() -> None:
    record = protocol.sample(
        seq=1, ts=1.0, mono=1.0, agent={}, probes={"gpu": {"power_w": math.nan, "x": [math.inf]}}
    )
    decoded = protocol.decode(protocol.encode(record))
    assert decoded["probes"]["gpu"] == {"power_w": None, "x": [None]}


def test_newer_minor_is_read_and_unknown_fields_kept() -> None:
    line = json.dumps(
        {"type": "sample", "schema": "1.7", "seq": 3, "probes": {}, "new_field": {"a": 1}}
    ).encode()
    assert protocol.decode(line)["new_field"] == {"a": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"type": "bye", "schema": "1.0"}', "unknown record type"),
        (b'{"type": "sample", "schema": "2.0", "seq": 1, "probes": {}}', "schema 2.0"),
        (b'{"type": "sample", "schema": 1, "seq": 1, "probes": {}}', "schema must be"),
        (b'{"type": "sample", "schema": "1.x", "seq": 1, "probes": {}}', "schema must look"),
        (b'{"type": "sample", "schema": "1.0", "seq": 0, "probes": {}}', "positive integer seq"),
        (b'{"type": "sample", "schema": "1.0", "seq": true, "probes": {}}', "positive integer"),
        (b'{"type": "sample", "schema": "1.0", "seq": 1, "probes": []}', "probes object"),
        (b'{"type": "hello", "schema": "1.0"}', "facts object"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_decode_refuses_with_a_reason(line: bytes, message: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.decode(line)


def test_overlong_line_is_refused_before_parsing() -> None:
    line = b'{"type":"sample","pad":"' + b"x" * protocol.MAX_LINE_BYTES + b'"}'
    with pytest.raises(protocol.ProtocolError, match="over the"):
        protocol.decode(line)


@given(st.binary(max_size=512))
def test_decode_of_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(protocol.ProtocolError):
        protocol.decode(data)


# A probe may hand over its section's JSON text ready-made (EncodedSection): the line is the
# same, byte for byte, as the generic encoder's.


def _generic(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


@given(probes=sections, wrapped=st.sets(st.sampled_from(["host", "gpu", "ib", "storage", "net"])))
def test_encoded_sections_give_the_generic_line(probes: dict[str, Any], wrapped: set[str]) -> None:
    mixed: dict[str, Any] = {}
    for name, section in probes.items():
        if name in wrapped and isinstance(section, dict):
            text = json.dumps(section, separators=(",", ":"), ensure_ascii=False)
            mixed[name] = protocol.EncodedSection(section, text)
        else:
            mixed[name] = section
    record = protocol.sample(seq=7, ts=1.5, mono=2.5, agent={"cpu_ms": 0.5}, probes=mixed)
    plain = protocol.sample(seq=7, ts=1.5, mono=2.5, agent={"cpu_ms": 0.5}, probes=probes)
    assert protocol.encode(record) == _generic(plain)
    assert protocol.decode(protocol.encode(record)) == plain


def test_an_encoded_section_is_used_as_written_and_is_a_dict() -> None:
    # The text is trusted, not re-encoded: here it differs from the dict on purpose.
    section = protocol.EncodedSection({"ports": []}, '{"ports":[{"hca":"x"}]}')
    assert isinstance(section, dict) and section == {"ports": []}
    assert json.dumps(section) == '{"ports": []}'  # to everyone else, a plain dict
    record = protocol.sample(
        seq=1, ts=1.0, mono=1.0, agent={}, probes={"host": {"a": "é"}, "ib": section}
    )
    line = protocol.encode(record)
    assert line.endswith(b',"probes":{"host":{"a":"\xc3\xa9"},"ib":{"ports":[{"hca":"x"}]}}}\n')


def test_a_nan_beside_an_encoded_section_is_null_and_the_section_kept() -> None:
    section = protocol.EncodedSection({"ports": [{"n": 1}]}, '{"ports":[{"n":1}]}')
    record = protocol.sample(
        seq=1, ts=1.0, mono=1.0, agent={}, probes={"gpu": {"power_w": math.nan}, "ib": section}
    )
    decoded = protocol.decode(protocol.encode(record))
    assert decoded["probes"] == {"gpu": {"power_w": None}, "ib": {"ports": [{"n": 1}]}}
