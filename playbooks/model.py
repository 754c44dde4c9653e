"""What a playbook says, as typed values: selectors, conditions, steps, the playbook.

These are what ``schema.py`` builds from the YAML once it is valid, and what the Python API
(``tidectl.playbooks``) takes directly: ``await burst(session, "h100-east", ensure=4)`` makes
a :class:`Burst` and runs it exactly as the step of a playbook would be. Times are seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tidectl.console.lifecycle.states import State

__all__ = [
    "HEALTH_WORDS",
    "UNTIL",
    "Burst",
    "Check",
    "Condition",
    "Drain",
    "Expect",
    "Notify",
    "Playbook",
    "Resume",
    "Run",
    "Select",
    "Step",
    "StepAction",
    "Terminate",
    "Wait",
]

#: What ``health:`` in a selector may say: a severity, or ``healthy`` (ok or warn: the agent
#: reports and nothing is critical) and ``unhealthy`` (critical).
HEALTH_WORDS = ("ok", "warn", "critical", "unknown", "healthy", "unhealthy")
#: What ``wait: {until: …}`` may wait for nodes to be.
UNTIL = ("active", "healthy", "drained", "terminated")

Until = Literal["active", "healthy", "drained", "terminated"]


@dataclass(frozen=True, slots=True)
class Select:
    """Which nodes a step is about: every node that matches **every** key given.

    ``names`` a node set (``gpu[001-004]``); ``pool`` the cloud nodes of a pool (``"*"``: of
    any pool); ``onprem`` True for the configured machines, False for cloud nodes; ``state``
    lifecycle states; ``health`` words of :data:`HEALTH_WORDS`; ``idle`` True for nodes the
    scheduler shows no job on (False: some job); ``gpus`` True for nodes whose agent reports a
    GPU; ``launched`` True for the nodes this run's bursts launched; ``drained_by_playbook``
    True for nodes this playbook drained (its name in the drain's reason); ``all`` every node
    (nothing else given). Terminated nodes are left out unless ``state`` names them.
    """

    names: str | None = None
    pool: str | None = None
    onprem: bool | None = None
    state: tuple[State, ...] = ()
    health: tuple[str, ...] = ()
    idle: bool | None = None
    gpus: bool | None = None
    launched: bool | None = None
    drained_by_playbook: bool | None = None
    all: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", tuple(State(s) for s in self.state))
        object.__setattr__(self, "health", tuple(self.health))
        bad = [word for word in self.health if word not in HEALTH_WORDS]
        if bad:
            raise ValueError(f"health takes {', '.join(HEALTH_WORDS)}, not {', '.join(bad)}")

    @classmethod
    def of(cls, nodes: Select | str) -> Select:
        """A selector from a selector or a node set."""
        return nodes if isinstance(nodes, Select) else cls(names=nodes)

    def describe(self) -> str:
        """The selector in words, for plans and progress lines."""
        said = ["every node"] if self.all else []
        if self.names is not None:
            said.append(self.names)
        if self.pool is not None:
            said.append("cloud nodes" if self.pool == "*" else f"pool {self.pool}")
        if self.onprem is not None:
            said.append("on-prem nodes" if self.onprem else "cloud nodes")
        if self.launched:
            said.append("nodes this run launched")
        if self.state:
            said.append("/".join(str(s) for s in self.state))
        if self.health:
            said.append("/".join(self.health))
        if self.idle is not None:
            said.append("idle" if self.idle else "busy")
        if self.gpus:
            said.append("with GPUs")
        if self.drained_by_playbook:
            said.append("drained by this playbook")
        return ", ".join(said) or "no node"


@dataclass(frozen=True, slots=True)
class Condition:
    """What must hold, for ``check`` (else the step fails) and ``when`` (else the step is
    skipped). Every key given must hold.

    ``nodes`` the nodes the node keys are about; ``healthy`` True: every one is healthy (ok
    or warn), False: some one is not; ``min_nodes``/``max_nodes`` how many ``nodes`` selects;
    ``burn_below`` dollars an hour now, ``spend_below`` dollars spent since the UTC day began,
    both of ``pool`` or the whole cluster; ``job_active`` a job (id or name) is pending or
    running; ``queue_empty`` True: no job waits in the scheduler's queue (False: some does).
    """

    nodes: Select | None = None
    healthy: bool | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    burn_below: float | None = None
    spend_below: float | None = None
    pool: str | None = None
    job_active: str | None = None
    queue_empty: bool | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    """What a ``run`` must give on every node: an exit status among ``exit``, and its
    standard output containing ``stdout`` (text) and matching ``stdout_matches`` (a regular
    expression, searched), and likewise for standard error."""

    exit: tuple[int, ...] = (0,)
    stdout: str | None = None
    stdout_matches: str | None = None
    stderr: str | None = None
    stderr_matches: str | None = None


@dataclass(frozen=True, slots=True)
class Burst:
    """Bring ``pool`` to ``ensure`` live nodes (asking again adds nothing), carrying
    ``data_class``; with ``wait`` (seconds), follow the new nodes until active."""

    pool: str
    ensure: int
    data_class: str | None = None
    wait: float | None = None

    kind = "burst"


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait, at most ``timeout`` seconds, for one thing: ``nodes`` to be ``until``; the
    scheduler's queue to be empty (``queue_empty``); ``job`` (id or name) to be neither
    pending nor running; or ``seconds`` to pass."""

    nodes: Select | None = None
    until: Until | None = None
    queue_empty: bool = False
    job: str | None = None
    seconds: float | None = None
    timeout: float = 600.0

    kind = "wait"


@dataclass(frozen=True, slots=True)
class Run:
    """Run ``command`` on ``nodes`` over the control plane's connections, each within
    ``timeout`` seconds; the step fails unless every node's result is what ``expect`` says."""

    nodes: Select
    command: str
    timeout: float = 30.0
    expect: Expect = field(default_factory=Expect)

    kind = "run"


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop new jobs on ``nodes`` (their jobs finish first). With ``wait`` (seconds), until
    they are drained; ``one_at_a_time``: drain one node, wait until it is drained, then the
    next (``wait`` bounds each)."""

    nodes: Select
    reason: str
    wait: float | None = None
    one_at_a_time: bool = False

    kind = "drain"


@dataclass(frozen=True, slots=True)
class Resume:
    """Let draining or drained ``nodes`` take jobs again."""

    nodes: Select

    kind = "resume"


@dataclass(frozen=True, slots=True)
class Terminate:
    """End cloud ``nodes``. A node still serving is drained first (its jobs finish, within
    ``drain_timeout`` seconds); with ``wait`` (seconds), until the provider confirms."""

    nodes: Select
    reason: str
    wait: float | None = None
    drain_timeout: float = 1800.0

    kind = "terminate"


@dataclass(frozen=True, slots=True)
class Check:
    """Fail unless ``condition`` holds; ``message`` leads the failure's sentence."""

    condition: Condition
    message: str | None = None

    kind = "check"


@dataclass(frozen=True, slots=True)
class Notify:
    """Say ``message`` (with the run's facts: ``{{ burn_per_hour }}``, ``{{ spend_today }}``,
    ``{{ changed }}``…) as a JSON line appended to ``file`` and/or POSTed to ``webhook``."""

    message: str
    file: Path | None = None
    webhook: str | None = None

    kind = "notify"


StepAction = Burst | Wait | Run | Drain | Resume | Terminate | Check | Notify


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a playbook: its action, an optional name, the line it starts on, and a
    ``when`` condition that skips it when it does not hold."""

    action: StepAction
    name: str | None = None
    line: int = 0
    when: Condition | None = None

    @property
    def title(self) -> str:
        return self.name or self.action.kind


@dataclass(frozen=True, slots=True)
class Playbook:
    """A validated playbook: where it came from (``path`` and the SHA-256 of its bytes), its
    ``name``, the cluster config it names (resolved against its folder), its variables (after
    ``--var``), its steps and what to do when one fails."""

    name: str
    path: Path
    sha256: str
    steps: tuple[Step, ...]
    on_failure: tuple[Step, ...] = ()
    description: str | None = None
    cluster: Path | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """What the audit log records of the playbook: its path and content hash."""
        return f"playbook:{self.path} sha256:{self.sha256}"

    @staticmethod
    def digest(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()
