"""The transition table, checked move by move against expectations written out here.

The expectations are a second copy of the table on purpose: changing what a node may do must
be a deliberate change in two places, never a side effect of editing one dict.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections import deque
from pathlib import Path

import pytest

from tidectl.console.lifecycle.states import (
    DEFAULT_TIMEOUTS,
    ENTRY,
    TRANSITIONS,
    WAITING,
    Expiry,
    IllegalTransition,
    NodeKind,
    State,
    Transition,
    allowed,
    bills,
    check,
    check_entry,
    is_terminal,
    timeouts,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "lifecycle.md"

EXPECTED_MOVES = {
    NodeKind.CLOUD: """
        requested     -> provisioning failed terminating terminated
        provisioning  -> bootstrapping failed terminating
        bootstrapping -> joining failed terminating
        joining       -> active failed draining
        active        -> draining failed
        draining      -> drained active failed
        drained       -> terminating active failed
        terminating   -> terminated
        failed        -> terminating terminated
        terminated    -> requested
    """,
    NodeKind.ONPREM: """
        active        -> draining
        draining      -> drained active
        drained       -> active
    """,
}


def _pairs(spec: str) -> set[tuple[State, State]]:
    pairs = set()
    for line in spec.strip().splitlines():
        before, _, afters = line.partition("->")
        pairs |= {(State(before.strip()), State(a)) for a in afters.split()}
    return pairs


EXPECTED = {kind: _pairs(spec) for kind, spec in EXPECTED_MOVES.items()}
EXPECTED_STATES = {
    kind: {State(line.split()[0]) for line in spec.strip().splitlines()}
    for kind, spec in EXPECTED_MOVES.items()
}
CROSS = [
    pytest.param(kind, before, after, id=f"{kind}-{before}-{after}")
    for kind, before, after in itertools.product(NodeKind, State, State)
]


@pytest.mark.parametrize(("kind", "before", "after"), CROSS)
def test_each_move_of_the_cross_product_is_allowed_exactly_when_expected(
    kind: NodeKind, before: State, after: State
) -> None:
    expected = (before, after) in EXPECTED[kind]
    assert (after in allowed(kind, before)) is expected
    if expected:
        check(kind, "n1", before, after)  # does not raise
        assert TRANSITIONS[kind][before][after].strip()  # every move says why
    else:
        with pytest.raises(IllegalTransition) as refused:
            check(kind, "n1", before, after)
        error = refused.value
        assert (error.node, error.kind, error.before, error.after) == ("n1", kind, before, after)
        assert str(error).startswith("n1 (")


def test_each_kind_has_exactly_the_expected_states() -> None:
    for kind in NodeKind:
        assert set(TRANSITIONS[kind]) == EXPECTED_STATES[kind]


def test_a_refusal_says_what_is_allowed_and_the_way_there() -> None:
    with pytest.raises(IllegalTransition) as refused:
        check(NodeKind.CLOUD, "aws-7", State.ACTIVE, State.TERMINATING)
    message = str(refused.value)
    assert "from active it can go to draining or failed" in message
    # The way round never goes through failed: that would be advice to break the node.
    assert "active → draining → drained → terminating" in message


def test_a_refusal_from_the_end_or_a_foreign_state_says_so() -> None:
    with pytest.raises(IllegalTransition, match="only a new launch under its name"):
        check(NodeKind.CLOUD, "aws-7", State.TERMINATED, State.ACTIVE)
    with pytest.raises(IllegalTransition, match="onprem nodes have no such state"):
        check(NodeKind.ONPREM, "gpu001", State.REQUESTED, State.PROVISIONING)


@pytest.mark.parametrize(("kind", "state"), list(itertools.product(NodeKind, State)))
def test_entry_states(kind: NodeKind, state: State) -> None:
    expected = {
        NodeKind.CLOUD: {State.REQUESTED, State.PROVISIONING},
        NodeKind.ONPREM: {State.ACTIVE, State.DRAINING, State.DRAINED},
    }[kind]
    if state in expected:
        check_entry(kind, "n1", state)
        assert ENTRY[kind][state].strip()
    else:
        with pytest.raises(IllegalTransition, match="starts as") as refused:
            check_entry(kind, "n1", state)
        assert refused.value.before is None


def _reachable(kind: NodeKind, start: State) -> set[State]:
    seen, queue = {start}, deque([start])
    while queue:
        for there in allowed(kind, queue.popleft()):
            if there not in seen:
                seen.add(there)
                queue.append(there)
    return seen


def test_terminated_is_the_only_terminal_state_and_only_a_relaunch_follows_it() -> None:
    assert {s for s in State if is_terminal(s)} == {State.TERMINATED}
    for kind in NodeKind:
        for before in TRANSITIONS[kind]:
            if not is_terminal(before):
                assert allowed(kind, before), (kind, before)
    # A Slurm CLOUD node lives again under its name; nothing else leaves terminated.
    assert set(allowed(NodeKind.CLOUD, State.TERMINATED)) == {State.REQUESTED}


def test_every_state_is_reachable_from_an_entry_and_every_cloud_node_can_be_cleaned_up() -> None:
    for kind in NodeKind:
        reachable = set().union(*(_reachable(kind, s) for s in ENTRY[kind]))
        assert reachable == set(TRANSITIONS[kind]), kind
    # No billing dead end: from anywhere a cloud node can still reach terminated.
    for state in TRANSITIONS[NodeKind.CLOUD]:
        assert State.TERMINATED in _reachable(NodeKind.CLOUD, state), state


def test_billing_states() -> None:
    expected = {
        State.PROVISIONING,
        State.BOOTSTRAPPING,
        State.JOINING,
        State.ACTIVE,
        State.DRAINING,
        State.DRAINED,
        State.TERMINATING,
        State.FAILED,
    }
    assert {s for s in State if bills(s)} == expected


def test_leaving_a_billing_state_for_a_non_billing_one_goes_only_to_terminated() -> None:
    # The provider's confirmation is what closes a billing instance: no other way out.
    for before, after in EXPECTED[NodeKind.CLOUD]:
        if bills(before) and not bills(after):
            assert after is State.TERMINATED, (before, after)
    assert (State.PROVISIONING, State.TERMINATED) not in EXPECTED[NodeKind.CLOUD]


def test_every_waiting_state_has_a_timeout_and_an_outcome() -> None:
    waiting = {
        State.REQUESTED,
        State.PROVISIONING,
        State.BOOTSTRAPPING,
        State.JOINING,
        State.DRAINING,
        State.TERMINATING,
    }
    assert waiting == WAITING == set(DEFAULT_TIMEOUTS)
    for state, timeout in DEFAULT_TIMEOUTS.items():
        assert timeout.seconds > 0 and timeout.why.strip()
        if timeout.expiry is Expiry.FAIL:
            assert timeout.then is State.FAILED
            assert State.FAILED in allowed(NodeKind.CLOUD, state)
        else:
            assert timeout.then is state


def test_a_drain_that_takes_too_long_is_reported_never_acted_on() -> None:
    assert DEFAULT_TIMEOUTS[State.DRAINING].expiry is Expiry.STUCK
    assert DEFAULT_TIMEOUTS[State.TERMINATING].expiry is Expiry.RETRY


def test_timeouts_can_be_overridden_in_seconds_only() -> None:
    table = timeouts({"provisioning": 1200, "draining": 60.5})
    assert table[State.PROVISIONING].seconds == 1200.0
    assert table[State.DRAINING].seconds == 60.5
    assert table[State.DRAINING].expiry is Expiry.STUCK  # the outcome is not overridable
    assert table[State.JOINING] == DEFAULT_TIMEOUTS[State.JOINING]
    assert DEFAULT_TIMEOUTS[State.PROVISIONING].seconds == 900.0  # defaults untouched
    assert timeouts() == DEFAULT_TIMEOUTS


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"active": 10}, 'no timeout can be set for "active": it is not a waiting state'),
        ({"provisionin": 10}, "the waiting states are requested, provisioning"),
        ({"draining": 0}, "must be a positive number of seconds, got 0"),
        ({"draining": -5}, "must be a positive number of seconds, got -5"),
        ({"draining": math.inf}, "must be a positive number of seconds"),
        ({"draining": True}, "must be a number of seconds, not True"),
    ],
)
def test_bad_timeout_overrides_are_refused_with_a_sentence(
    overrides: dict[str, float], words: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        timeouts(overrides)


def test_a_transition_record_is_frozen() -> None:
    move = Transition("n1", State.ACTIVE, State.DRAINING, 1.0, "why", "ada", "r1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        move.after = State.ACTIVE  # type: ignore[misc]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


@pytest.mark.parametrize(
    ("kind", "heading"),
    [(NodeKind.CLOUD, "### Cloud nodes"), (NodeKind.ONPREM, "### On-prem nodes")],
)
def test_the_docs_list_every_move_with_its_reason(kind: NodeKind, heading: str) -> None:
    section = _section(DOCS.read_text(encoding="utf-8"), heading)
    rows = {line for line in section.splitlines() if line.startswith("| `")}
    expected = {
        f"| `{before}` | `{after}` | {reason} |"
        for before, moves in TRANSITIONS[kind].items()
        for after, reason in moves.items()
    }
    assert rows == expected


def test_the_docs_list_every_timeout() -> None:
    section = _section(DOCS.read_text(encoding="utf-8"), "## Timeouts")
    for state, timeout in DEFAULT_TIMEOUTS.items():
        row = f"| `{state}` | {timeout.seconds:g} s |"
        assert any(line.startswith(row) for line in section.splitlines()), row
