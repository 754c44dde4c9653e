"""The ``/`` filter over the rows of a real fleet: fields, node sets, free text, ``!``, errors."""

from __future__ import annotations

import pytest

from tests.console.view.sim_fleets import MIXED, mixed_fleet
from tidectl.console.view.filter import FilterError, parse_filter
from tidectl.console.view.rows import NodeRow


@pytest.fixture(scope="module")
def rows() -> list[NodeRow]:
    sim = mixed_fleet()
    return [sim.row(name) for name in sim.fleet.nodes]


def matching(rows: list[NodeRow], text: str) -> set[str]:
    flt = parse_filter(text)
    return {row.name for row in rows if flt.matches(row)}


ALL = set(MIXED)


def test_the_fleet_is_what_the_tests_expect(rows: list[NodeRow]) -> None:
    assert {row.name for row in rows} == ALL


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_an_empty_filter_matches_everything(rows: list[NodeRow], text: str) -> None:
    assert parse_filter(text).empty
    assert matching(rows, text) == ALL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("health:critical", {"a2", "h1"}),
        ("health:crit", {"a2", "h1"}),
        ("h:c", {"a2", "h1"}),
        ("H:CRIT", {"a2", "h1"}),
        ("h:warn", {"a3"}),
        ("health:ok", {"a1", "h2"}),
        ("h:u", {"c1"}),
    ],
)
def test_health_by_prefix(rows: list[NodeRow], text: str, expected: set[str]) -> None:
    assert matching(rows, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site:dc2", {"h1", "h2"}),
        ("site:dc", {"a1", "a2", "a3", "h1", "h2"}),  # a prefix
        ("site:AWS", {"c1"}),
        ("site:c1", set()),  # a name is not a site
        ("pool:a1", {"a1", "a2", "a3"}),
        ("pool:h100", {"h1", "h2"}),
        ("pool:-", {"c1"}),  # no pool label
        ("link:unr", {"c1"}),
        ("link:streaming", {"a1", "a2", "a3", "h1", "h2"}),
        ("code:ib", {"a2"}),  # every ib.* code
        ("code:ib.link_downed", {"a2"}),
        ("code:gpu.xid", {"h1"}),
        ("code:storage", {"a3"}),
        ("code:agent", {"c1"}),
        ("code:xid", set()),  # a prefix of the code, not a substring
    ],
)
def test_fields(rows: list[NodeRow], text: str, expected: set[str]) -> None:
    assert matching(rows, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a[1-2]", {"a1", "a2"}),
        ("a[1-3],h2", {"a1", "a2", "a3", "h2"}),
        ("a1,c1", {"a1", "c1"}),
        ("x[1-9]", set()),
    ],
)
def test_node_sets(rows: list[NodeRow], text: str, expected: set[str]) -> None:
    assert matching(rows, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a3", {"a3"}),  # a name
        ("H2", {"h2"}),  # case-insensitive
        ("port_down", {"a2"}),  # a finding code
        ("fallen off the bus", {"h1"}),  # three words of the XID sentence, AND-ed
        ("FALLEN", {"h1"}),
        ("clean", {"a3"}),  # the full disk's sentence
        ("refused", {"c1"}),  # the link error, as the worst finding
        ("jobs", {"a2", "a3"}),  # in two sentences
        ("22", {"c1"}),  # "port 22" of the link error
        ("x:y", set()),  # not a field: plain text, matching nothing
    ],
)
def test_free_text(rows: list[NodeRow], text: str, expected: set[str]) -> None:
    assert matching(rows, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!health:ok", {"a2", "a3", "h1", "c1"}),
        ("!site:dc1", {"h1", "h2", "c1"}),
        ("!a[1-3]", {"h1", "h2", "c1"}),
        ("!jobs", {"a1", "h1", "h2", "c1"}),
        ("!!h:ok", {"a1", "h2"}),
    ],
)
def test_negation(rows: list[NodeRow], text: str, expected: set[str]) -> None:
    assert matching(rows, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site:dc1 health:crit", {"a2"}),
        ("pool:h100 !h:ok", {"h1"}),
        ("jobs !code:ib", {"a3"}),
        ("a[1-3] !code:ib h:c", set()),
        ("site:dc1 site:dc2", set()),  # AND, never OR
    ],
)
def test_words_are_and_ed(rows: list[NodeRow], text: str, expected: set[str]) -> None:
    assert matching(rows, text) == expected


@pytest.mark.parametrize(
    ("text", "bad", "says"),
    [
        ("health:purple", "health:purple", "ok, unknown, warn, critical"),
        ("site:dc1 h:purple", "h:purple", "no health starts with 'purple'"),
        ("!health:purple", "health:purple", "no health starts with"),
        ("link:sideways", "link:sideways", "streaming"),
        ("gpu[001-", "gpu[001-", "is not a node set"),
        ("a[3-1]", "a[3-1]", "is not a node set"),
        ("site:", "site:", "needs a value after the colon"),
        ("h:", "h:", "needs a value after the colon"),
        ("ok code:", "code:", "e.g. code:x"),
    ],
)
def test_bad_words_raise_a_sentence_naming_the_word(text: str, bad: str, says: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    message = str(caught.value)
    assert repr(bad) in message
    assert says in message
    assert "\n" not in message
