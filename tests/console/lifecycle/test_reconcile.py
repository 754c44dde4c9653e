"""The reconcile planner: seeded nodes and a made-up world in, the actions out.

Table-driven per rule, plus properties over random worlds: every move the plan makes is one
the transition table allows, and no plan ever terminates a node the scheduler shows a job on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidectl.console.lifecycle.reconcile import (
    GHOST_GRACE_S,
    ZOMBIE_AFTER_S,
    Action,
    Adopt,
    ConfirmTerminated,
    Join,
    Move,
    NodeSeen,
    Observation,
    Report,
    Terminate,
    orphan_name,
    plan,
)
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import DEFAULT_TIMEOUTS, NodeKind, State, check
from tidectl.console.providers.base import Instance, InstanceState

NOW = 1_800_000_000.0
S = State
I = InstanceState  # noqa: E741 (short, for the tables)


def node(
    state: State,
    age: float = 10.0,
    *,
    name: str = "burst-1",
    instance_id: str | None = "i-0001",
    kind: NodeKind = NodeKind.CLOUD,
) -> NodeRecord:
    return NodeRecord(
        name=name,
        kind=kind,
        pool="burst" if kind is NodeKind.CLOUD else None,
        state=state,
        state_since=NOW - age,
        instance_id=instance_id,
        intent_id="intent-1",
        created_at=NOW - 1000,
        updated_at=NOW - age,
    )


def instance(
    state: InstanceState = I.RUNNING,
    *,
    instance_id: str = "i-0001",
    interruption: bool = False,
    pool: str = "burst",
) -> Instance:
    return Instance(
        instance_id=instance_id,
        state=state,
        instance_type="sim.gpu8",
        zone="sim-local-a",
        launched_at=datetime.fromtimestamp(NOW - 100, UTC),
        tags={"tidectl:cluster": "lab", "tidectl:pool": pool, "tidectl:intent": "intent-1"},
        interruption=interruption,
    )


def world(*instances: Instance, **views: NodeSeen) -> Observation:
    return Observation(
        at=NOW,
        instances={i.instance_id: i for i in instances},
        nodes={name.replace("_", "-"): view for name, view in views.items()},
    )


def kinds(actions: list[Action]) -> list[tuple[str, object]]:
    """Each action as (its kind, its state or node), for compact expectations."""
    out: list[tuple[str, object]] = []
    for action in actions:
        if isinstance(action, Move):
            out.append(("move", action.after))
        else:
            out.append((type(action).__name__.lower(), getattr(action, "node", None)))
    return out


T = DEFAULT_TIMEOUTS
HEALTHY = NodeSeen(healthy=True)
SCHEDULED = NodeSeen(scheduled=True, healthy=True)
DRAINED_EMPTY = NodeSeen(drained=True, jobs=0)
DRAINED_BUSY = NodeSeen(drained=True, jobs=1)
BUSY = NodeSeen(scheduled=True, jobs=2)
LONG = 10 * 24 * 3600.0  # past every timeout


@pytest.mark.parametrize(
    ("record", "seen", "expected"),
    [
        # the way up
        (node(S.PROVISIONING), world(instance(I.RUNNING)), [("move", S.BOOTSTRAPPING)]),
        (node(S.PROVISIONING), world(instance(I.PENDING)), []),
        (
            node(S.BOOTSTRAPPING),
            world(instance(), burst_1=HEALTHY),
            [("move", S.JOINING), ("join", "burst-1")],
        ),
        (node(S.BOOTSTRAPPING), world(instance(), burst_1=NodeSeen(healthy=False)), []),
        (node(S.JOINING), world(instance(), burst_1=SCHEDULED), [("move", S.ACTIVE)]),
        (node(S.ACTIVE), world(instance(), burst_1=BUSY), []),
        # timeouts: fail on the way up, report when draining, retry when terminating
        (node(S.REQUESTED, LONG, instance_id=None), world(), [("move", S.FAILED)]),
        (
            node(S.PROVISIONING, T[S.PROVISIONING].seconds + 1),
            world(instance(I.PENDING)),
            [("move", S.FAILED)],
        ),
        (node(S.BOOTSTRAPPING, LONG), world(instance()), [("move", S.FAILED)]),
        (node(S.JOINING, LONG), world(instance()), [("move", S.FAILED)]),
        (node(S.DRAINING, LONG), world(instance(), burst_1=BUSY), [("report", "burst-1")]),
        # ghosts: the instance is gone (after the describe grace for a new launch)
        (node(S.PROVISIONING, GHOST_GRACE_S - 1), world(), []),
        (node(S.PROVISIONING, GHOST_GRACE_S + 1), world(), [("move", S.FAILED)]),
        (node(S.ACTIVE), world(instance(I.TERMINATED)), [("move", S.FAILED)]),
        (node(S.ACTIVE), world(), [("move", S.FAILED)]),
        (node(S.ACTIVE), world(instance(interruption=True)), [("move", S.FAILED)]),
        # drains: only a drained, empty node moves on; a busy one is never touched
        (node(S.DRAINING), world(instance(), burst_1=DRAINED_EMPTY), [("move", S.DRAINED)]),
        (node(S.DRAINING), world(instance(), burst_1=DRAINED_BUSY), []),
        (
            node(S.DRAINED, ZOMBIE_AFTER_S + 1),
            world(instance(), burst_1=DRAINED_EMPTY),
            [("move", S.TERMINATING), ("terminate", "burst-1")],
        ),
        (node(S.DRAINED, ZOMBIE_AFTER_S + 1), world(instance(), burst_1=DRAINED_BUSY), []),
        (node(S.DRAINED, ZOMBIE_AFTER_S - 1), world(instance(), burst_1=DRAINED_EMPTY), []),
        # zombies and clean-up
        (node(S.FAILED), world(instance()), [("move", S.TERMINATING), ("terminate", "burst-1")]),
        (node(S.FAILED), world(instance(), burst_1=BUSY), [("report", "burst-1")]),
        (node(S.FAILED), world(), [("confirmterminated", "burst-1"), ("move", S.TERMINATED)]),
        (node(S.FAILED, instance_id=None), world(), [("move", S.TERMINATED)]),
        # termination is confirmed by the provider, and retried until it is
        # shutting down is on its way, not gone: wait for the provider's final word
        (node(S.TERMINATING), world(instance(I.SHUTTING_DOWN)), []),
        (
            node(S.TERMINATING, LONG),
            world(instance(I.SHUTTING_DOWN)),
            [("terminate", "burst-1"), ("report", "burst-1")],
        ),
        (
            node(S.TERMINATING),
            world(instance(I.TERMINATED)),
            [("confirmterminated", "burst-1"), ("move", S.TERMINATED)],
        ),
        (node(S.TERMINATING), world(), [("confirmterminated", "burst-1"), ("move", S.TERMINATED)]),
        (node(S.TERMINATING), world(instance()), [("terminate", "burst-1")]),
        (
            node(S.TERMINATING, LONG),
            world(instance()),
            [("terminate", "burst-1"), ("report", "burst-1")],
        ),
        (node(S.TERMINATING), world(instance(), burst_1=BUSY), [("report", "burst-1")]),
        (node(S.TERMINATED), world(), []),
        # on-prem
        (
            node(S.DRAINING, kind=NodeKind.ONPREM, instance_id=None),
            world(burst_1=DRAINED_EMPTY),
            [("move", S.DRAINED)],
        ),
        (
            node(S.DRAINING, LONG, kind=NodeKind.ONPREM, instance_id=None),
            world(burst_1=BUSY),
            [("report", "burst-1")],
        ),
        (node(S.ACTIVE, LONG, kind=NodeKind.ONPREM, instance_id=None), world(), []),
    ],
)
def test_one_rule_per_row(
    record: NodeRecord, seen: Observation, expected: list[tuple[str, object]]
) -> None:
    actions = plan([record], [], seen)
    assert kinds(actions) == expected
    for action in actions:
        if isinstance(action, Move):
            check(record.kind, record.name, record.state, action.after)


def test_orphans_are_adopted_not_killed() -> None:
    ours = node(S.ACTIVE)
    orphan = instance(instance_id="i-00ff", pool="burst")
    gone = instance(I.TERMINATED, instance_id="i-dead")
    actions = plan([ours], [], world(instance(), orphan, gone))
    adopted = [a for a in actions if isinstance(a, Adopt)]
    assert [a.instance.instance_id for a in adopted] == ["i-00ff"]
    assert adopted[0].node == orphan_name("burst", "i-00ff") == "burst-00ff"
    assert adopted[0].pool == "burst"
    assert not any(isinstance(a, Terminate) for a in actions)


def test_an_instance_the_store_knows_is_not_an_orphan() -> None:
    from tidectl.console.lifecycle.records import InstanceRecord

    record = InstanceRecord(
        instance_id="i-0002",
        provider="sim",
        pool="burst",
        region="sim-local",
        zone=None,
        instance_type="sim.gpu8",
        intent_id="intent-1",
        node=None,
        launched_at=NOW,
        terminated_at=None,
        confirmed_terminated=False,
        tags={},
        last_seen_state=None,
        last_seen_at=None,
    )
    actions = plan([], [record.instance_id], world(instance(instance_id="i-0002")))
    assert actions == []


# -- properties over random worlds ---------------------------------------------------------------

states = st.sampled_from(list(State))
views = st.builds(
    NodeSeen,
    scheduled=st.booleans(),
    drained=st.booleans(),
    jobs=st.integers(0, 3),
    healthy=st.none() | st.booleans(),
)
instance_states = st.none() | st.sampled_from(list(InstanceState))


@given(
    st.lists(
        st.tuples(states, st.floats(0, 3 * 24 * 3600), views, instance_states, st.booleans()),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(list(NodeKind)),
)
def test_every_move_is_legal_and_no_busy_node_is_terminated(
    rows: list[tuple[State, float, NodeSeen, InstanceState | None, bool]], kind: NodeKind
) -> None:
    records, instances, views_by_name = [], [], {}
    for i, (state, age, view, inst_state, interrupted) in enumerate(rows):
        if kind is NodeKind.ONPREM and state not in (S.ACTIVE, S.DRAINING, S.DRAINED):
            continue
        name, iid = f"n{i}", f"i-{i:04x}"
        records.append(
            node(
                state,
                age,
                name=name,
                instance_id=iid if kind is NodeKind.CLOUD else None,
                kind=kind,
            )
        )
        views_by_name[name] = view
        if inst_state is not None and kind is NodeKind.CLOUD:
            instances.append(instance(inst_state, instance_id=iid, interruption=interrupted))
    seen = Observation(at=NOW, instances={i.instance_id: i for i in instances}, nodes=views_by_name)
    by_name = {r.name: r for r in records}
    for action in plan(records, [], seen):
        if isinstance(action, Move):
            record = by_name[action.node]
            check(record.kind, record.name, record.state, action.after)
        if isinstance(action, Terminate):
            assert views_by_name[action.node].jobs == 0, "terminated a node with a job on it"
        if isinstance(action, (Join, ConfirmTerminated, Report)):
            assert action.node in by_name
