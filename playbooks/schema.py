"""The playbook schema: YAML in, a typed :class:`~tidectl.playbooks.model.Playbook` out, or a
``SchemaError`` naming the file, the line and what to write instead.

Everything is checked before anything runs: the keys of the playbook and of every step (an
unknown key is a typo until proven otherwise), each value's type and range, the variables each
template names, node sets, durations, regular expressions, and — once the cluster's config is
known (:func:`check_against`) — that every pool a step names is one of its pools. The schema
itself, key by key, is in docs/playbooks.md.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from tidectl.console.config.model import ClusterConfig
from tidectl.console.lifecycle.states import State
from tidectl.console.nodesets import NodeSetError, expand
from tidectl.playbooks.errors import PlaybookError, SchemaError
from tidectl.playbooks.model import (
    HEALTH_WORDS,
    UNTIL,
    Burst,
    Check,
    Condition,
    Drain,
    Expect,
    Notify,
    Playbook,
    Resume,
    Run,
    Select,
    Step,
    StepAction,
    Terminate,
    Wait,
)
from tidectl.playbooks.source import Y, compose
from tidectl.playbooks.templates import fill

__all__ = ["RUN_FACTS", "STEP_KINDS", "check_against", "load", "parse"]

#: The run's own facts a ``notify`` message may use, filled in when the step runs.
RUN_FACTS = ("playbook", "burn_per_hour", "spend_today", "changed", "launched", "failed_step")
STEP_KINDS = ("burst", "wait", "run", "drain", "resume", "terminate", "check", "notify")
#: How long a ``wait: true`` waits, and an ``one_at_a_time`` drain waits for each node.
DEFAULT_WAIT_S = 1800.0
_TOP_KEYS = ("name", "description", "cluster", "vars", "steps", "on_failure")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)\s*([smhd]))")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_T = TypeVar("_T")


def load(path: Path | str, variables: Mapping[str, Any] | None = None) -> Playbook:
    """Read and validate the playbook at ``path``; ``variables`` override its ``vars:``
    (``--var``). Raises ``SchemaError`` (file, line, sentence) or ``PlaybookError``."""
    path = Path(path).absolute()
    try:
        content = path.read_bytes()
    except OSError as error:
        raise PlaybookError(f"cannot read playbook {path}: {error.strerror}") from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise SchemaError(path, line, "this is not UTF-8 text; save the file as UTF-8") from None
    return parse(text, path, variables, sha256=Playbook.digest(content))


def parse(
    text: str,
    path: Path,
    variables: Mapping[str, Any] | None = None,
    *,
    sha256: str | None = None,
) -> Playbook:
    """The playbook in ``text``, as if read from ``path`` (named in errors)."""
    reader = _Reader(path)
    root = compose(text, path)
    top = reader.mapping(root, "a playbook", _TOP_KEYS, required=("name", "steps"))
    name = reader.text(top["name"], "name")
    declared = reader.variables(top.get("vars"))
    merged = dict(declared)
    for key, value in (variables or {}).items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise PlaybookError(
                f"--var {key}: {path.name} declares no variable {key!r} (it declares: {known}); "
                "add it under vars: or check the spelling"
            )
        merged[key] = value
    cluster = None
    if "cluster" in top:
        where = reader.text(fill(top["cluster"], merged, path), "cluster")
        cluster = (path.parent / Path(where).expanduser()).resolve()
    steps = reader.steps(top["steps"], merged, "steps", required=True)
    on_failure = (
        reader.steps(top["on_failure"], merged, "on_failure") if "on_failure" in top else ()
    )
    description = reader.text(top["description"], "description") if "description" in top else None
    return Playbook(
        name=name,
        path=path,
        sha256=sha256 or Playbook.digest(text.encode()),
        steps=steps,
        on_failure=on_failure,
        description=description,
        cluster=cluster,
        variables=merged,
    )


def check_against(playbook: Playbook, config: ClusterConfig) -> None:
    """Refuse a playbook whose steps name a pool ``config`` does not have (``SchemaError`` on
    the step's line), before anything runs."""
    pools = {pool.name for pool in config.pools}
    known = ", ".join(sorted(pools)) or "none"
    for step in (*playbook.steps, *playbook.on_failure):
        for pool in _pools_named(step):
            if pool not in pools:
                raise SchemaError(
                    playbook.path,
                    step.line,
                    f"step {step.title!r} names pool {pool!r}, which {config.path.name} does not "
                    f"have (pools: {known}); fix the name or pass --var",
                )


def _pools_named(step: Step) -> list[str]:
    named: list[str] = []
    action = step.action
    conditions = [step.when] if step.when else []
    if isinstance(action, Burst):
        named.append(action.pool)
    if isinstance(action, Check):
        conditions.append(action.condition)
    selects = [getattr(action, "nodes", None)]
    for condition in conditions:
        assert condition is not None
        selects.append(condition.nodes)
        if condition.pool is not None:
            named.append(condition.pool)
    for select in selects:
        if isinstance(select, Select) and select.pool not in (None, "*"):
            assert select.pool is not None
            named.append(select.pool)
    return named


def duration(text: str | float) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1h30m"``; raises ``ValueError``."""
    if isinstance(text, bool):
        raise ValueError("a duration is a number of seconds or text like 10m")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        compact = text.strip()
        if re.fullmatch(r"\d+(\.\d+)?", compact):
            seconds = float(compact)
        elif compact and _DURATION.sub("", compact).strip() == "":
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
        else:
            raise ValueError(f"{text!r} is not a duration (like 90s, 10m, 1h30m)")
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a duration of 0 or more seconds")
    return seconds


class _Reader:
    """Reads values out of ``Y``s, raising ``SchemaError`` with the line and a sentence."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, y: Y | int, sentence: str) -> SchemaError:
        return SchemaError(self.path, y if isinstance(y, int) else y.line, sentence)

    # -- shapes -----------------------------------------------------------------------------

    def mapping(
        self,
        y: Y,
        what: str,
        allowed: tuple[str, ...],
        required: tuple[str, ...] = (),
    ) -> dict[str, Y]:
        if not isinstance(y.value, dict):
            raise self.fail(y, f"{what} must be a mapping of keys ({', '.join(allowed)})")
        for key in y.value:
            if key not in allowed:
                hint = _closest(key, allowed)
                raise self.fail(
                    y.key_lines.get(key, y.line),
                    f"{what} has no key {key!r}{hint}; it takes {', '.join(allowed)}",
                )
        for key in required:
            if key not in y.value:
                raise self.fail(y, f"{what} needs {key}:")
        return dict(y.value)

    def text(self, y: Y, what: str, *, empty: bool = False) -> str:
        if isinstance(y.value, bool) or not isinstance(y.value, str | int | float):
            raise self.fail(y, f"{what} must be text, not {_shown(y)}")
        value = str(y.value)
        if not empty and not value.strip():
            raise self.fail(y, f"{what} must not be empty")
        return value

    def integer(self, y: Y, what: str, *, least: int = 0) -> int:
        value = y.value
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.fail(y, f"{what} must be a whole number of {least} or more, not {_shown(y)}")
        return value

    def number(self, y: Y, what: str) -> float:
        value = y.value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise self.fail(y, f"{what} must be a number of 0 or more, not {_shown(y)}")
        return float(value)

    def boolean(self, y: Y, what: str) -> bool:
        if not isinstance(y.value, bool):
            raise self.fail(y, f"{what} must be true or false, not {_shown(y)}")
        return y.value

    def seconds(self, y: Y, what: str, *, positive: bool = True) -> float:
        try:
            value = duration(y.value)
        except ValueError as error:
            raise self.fail(y, f"{what}: {error}") from None
        if positive and value <= 0:
            raise self.fail(y, f"{what} must be more than 0 seconds")
        return value

    def optional_wait(self, y: Y | None, what: str) -> float | None:
        """``wait:``: a duration, true (the default time), or false (do not wait)."""
        if y is None or y.value is False:
            return None
        if y.value is True:
            return DEFAULT_WAIT_S
        return self.seconds(y, what)

    def one_or_list(self, y: Y, what: str, read: Callable[[Y, str], _T]) -> tuple[_T, ...]:
        items = y.value if isinstance(y.value, list) else [y]
        if not items:
            raise self.fail(y, f"{what} must name at least one value")
        return tuple(read(item, what) for item in items)

    # -- variables --------------------------------------------------------------------------

    def variables(self, y: Y | None) -> dict[str, Any]:
        if y is None or y.value is None:
            return {}
        if not isinstance(y.value, dict):
            raise self.fail(y, "vars must be a mapping of names to values, like pool: h100-east")
        out: dict[str, Any] = {}
        for key, value in y.value.items():
            line = y.key_lines.get(key, y.line)
            if not _VAR_NAME.fullmatch(key) or key in RUN_FACTS:
                raise self.fail(
                    line,
                    f"{key!r} cannot be a variable's name: use letters, digits and _, and none "
                    f"of the run's own facts ({', '.join(RUN_FACTS)})",
                )
            if isinstance(value.value, dict | list):
                raise self.fail(
                    value, f"variable {key} must be a single value, not a list or mapping"
                )
            out[key] = "" if value.value is None else value.value
        return out

    # -- steps ------------------------------------------------------------------------------

    def steps(
        self, y: Y, variables: Mapping[str, Any], what: str, *, required: bool = False
    ) -> tuple[Step, ...]:
        if y.value is None and not required:
            return ()
        if not isinstance(y.value, list) or (required and not y.value):
            raise self.fail(y, f"{what} must be a list of steps, each starting with '- '")
        return tuple(
            self.step(item, variables, f"{what}[{index}]")
            for index, item in enumerate(y.value, start=1)
        )

    def step(self, y: Y, variables: Mapping[str, Any], where: str) -> Step:
        if not isinstance(y.value, dict):
            raise self.fail(
                y, f"{where} must be a mapping with one action ({', '.join(STEP_KINDS)})"
            )
        kinds = [key for key in y.value if key in STEP_KINDS]
        if not kinds:
            raise self.fail(y, f"{where} has no action; give one of {', '.join(STEP_KINDS)}")
        if len(kinds) > 1:
            raise self.fail(
                y.key_lines[kinds[1]],
                f"{where} has two actions ({kinds[0]} and {kinds[1]}); one action per step",
            )
        kind = kinds[0]
        body = self.mapping(y, f"{where} ({kind})", (kind, "name", "when"))
        name = (
            self.text(fill(body["name"], variables, self.path), f"{where} name")
            if "name" in body
            else None
        )
        label = f"step {name!r}" if name else f"{where} ({kind})"
        when = None
        if "when" in body:
            when = self.condition(fill(body["when"], variables, self.path), f"{label} when")
        later = RUN_FACTS if kind == "notify" else ()
        action_y = fill(body[kind], variables, self.path, later)
        action = _READERS[kind](self, action_y, f"{label}: {kind}")
        return Step(action=action, name=name, line=y.line, when=when)

    # -- the pieces steps are made of -------------------------------------------------------

    def select(self, y: Y, what: str) -> Select:
        if isinstance(y.value, str):
            return Select(names=self.nodeset(y, what))
        keys = (
            "names",
            "pool",
            "onprem",
            "state",
            "health",
            "idle",
            "gpus",
            "launched",
            "drained_by_playbook",
            "all",
        )
        if not isinstance(y.value, dict) or not y.value:
            raise self.fail(
                y,
                f"{what} must be a node set (like gpu[001-004]) or a mapping of {', '.join(keys)}",
            )
        given = self.mapping(y, what, keys)
        states: tuple[State, ...] = ()
        if "state" in given:
            states = self.one_or_list(given["state"], f"{what}.state", self.state)
        health: tuple[str, ...] = ()
        if "health" in given:
            health = self.one_or_list(given["health"], f"{what}.health", self.health_word)
        flags = {
            key: self.boolean(given[key], f"{what}.{key}")
            for key in ("onprem", "idle", "gpus", "launched", "drained_by_playbook", "all")
            if key in given
        }
        if flags.get("all") and len(given) > 1:
            raise self.fail(y, f"{what}: all: true selects every node; give it alone")
        return Select(
            names=self.nodeset(given["names"], f"{what}.names") if "names" in given else None,
            pool=self.text(given["pool"], f"{what}.pool") if "pool" in given else None,
            onprem=flags.get("onprem"),
            state=states,
            health=health,
            idle=flags.get("idle"),
            gpus=flags.get("gpus"),
            launched=flags.get("launched"),
            drained_by_playbook=flags.get("drained_by_playbook"),
            all=flags.get("all", False),
        )

    def nodeset(self, y: Y, what: str) -> str:
        pattern = self.text(y, what)
        try:
            expand(pattern)
        except NodeSetError as error:
            raise self.fail(y, f"{what}: {error}") from None
        return pattern

    def state(self, y: Y, what: str) -> State:
        try:
            return State(self.text(y, what))
        except ValueError:
            states = ", ".join(s.value for s in State)
            raise self.fail(y, f"{what}: {_shown(y)} is not a lifecycle state ({states})") from None

    def health_word(self, y: Y, what: str) -> str:
        word = self.text(y, what)
        if word not in HEALTH_WORDS:
            raise self.fail(y, f"{what}: {word!r} is not one of {', '.join(HEALTH_WORDS)}")
        return word

    def condition(self, y: Y, what: str, *, message: bool = False) -> Condition:
        keys = (
            "nodes",
            "healthy",
            "min_nodes",
            "max_nodes",
            "burn_below",
            "spend_below",
            "pool",
            "job_active",
            "queue_empty",
        )
        given = self.mapping(y, what, (*keys, "message") if message else keys)
        if not set(given) - {"message", "pool", "nodes"}:
            raise self.fail(
                y,
                f"{what} says nothing to test; give healthy, min_nodes, max_nodes, burn_below, "
                "spend_below, job_active or queue_empty",
            )
        needs_nodes = {"healthy", "min_nodes", "max_nodes"} & set(given)
        if needs_nodes and "nodes" not in given:
            raise self.fail(y, f"{what}: {sorted(needs_nodes)[0]} is about nodes; add nodes:")
        return Condition(
            nodes=self.select(given["nodes"], f"{what}.nodes") if "nodes" in given else None,
            healthy=self.boolean(given["healthy"], f"{what}.healthy")
            if "healthy" in given
            else None,
            min_nodes=self.integer(given["min_nodes"], f"{what}.min_nodes")
            if "min_nodes" in given
            else None,
            max_nodes=self.integer(given["max_nodes"], f"{what}.max_nodes")
            if "max_nodes" in given
            else None,
            burn_below=self.number(given["burn_below"], f"{what}.burn_below")
            if "burn_below" in given
            else None,
            spend_below=self.number(given["spend_below"], f"{what}.spend_below")
            if "spend_below" in given
            else None,
            pool=self.text(given["pool"], f"{what}.pool") if "pool" in given else None,
            job_active=self.text(given["job_active"], f"{what}.job_active")
            if "job_active" in given
            else None,
            queue_empty=self.boolean(given["queue_empty"], f"{what}.queue_empty")
            if "queue_empty" in given
            else None,
        )

    def regex(self, y: Y, what: str) -> str:
        pattern = self.text(y, what)
        try:
            re.compile(pattern)
        except re.error as error:
            raise self.fail(
                y, f"{what}: {pattern!r} is not a regular expression ({error})"
            ) from None
        return pattern

    # -- one reader per action --------------------------------------------------------------

    def burst(self, y: Y, what: str) -> Burst:
        given = self.mapping(y, what, ("pool", "ensure", "data_class", "wait"), ("pool", "ensure"))
        return Burst(
            pool=self.text(given["pool"], f"{what}.pool"),
            ensure=self.integer(given["ensure"], f"{what}.ensure"),
            # Empty (a variable left ""): the pool's own class, as when the key is absent.
            data_class=(self.text(given["data_class"], f"{what}.data_class", empty=True) or None)
            if "data_class" in given and given["data_class"].value is not None
            else None,
            wait=self.optional_wait(given.get("wait"), f"{what}.wait"),
        )

    def wait(self, y: Y, what: str) -> Wait:
        given = self.mapping(y, what, ("nodes", "until", "queue_empty", "job", "for", "timeout"))
        forms = [key for key in ("until", "queue_empty", "job", "for") if key in given]
        if len(forms) != 1:
            given_forms = f" (not {' and '.join(forms)})" if forms else ""
            raise self.fail(
                y,
                f"{what} waits for one thing: give exactly one of until (with nodes), "
                f"queue_empty, job or for{given_forms}",
            )
        form = forms[0]
        timeout = self.seconds(given["timeout"], f"{what}.timeout") if "timeout" in given else 600.0
        if form == "until":
            if "nodes" not in given:
                raise self.fail(y, f"{what}: until needs nodes: (which nodes to wait for)")
            until = self.text(given["until"], f"{what}.until")
            if until not in UNTIL:
                raise self.fail(
                    given["until"], f"{what}.until: {until!r} is not one of {', '.join(UNTIL)}"
                )
            return Wait(
                nodes=self.select(given["nodes"], f"{what}.nodes"),
                until=until,  # type: ignore[arg-type]  # checked against UNTIL above
                timeout=timeout,
            )
        if "nodes" in given:
            raise self.fail(given["nodes"], f"{what}: nodes goes with until, not with {form}")
        if form == "queue_empty":
            if not self.boolean(given["queue_empty"], f"{what}.queue_empty"):
                raise self.fail(given["queue_empty"], f"{what}.queue_empty can only be true")
            return Wait(queue_empty=True, timeout=timeout)
        if form == "job":
            return Wait(job=self.text(given["job"], f"{what}.job"), timeout=timeout)
        seconds = self.seconds(given["for"], f"{what}.for", positive=False)
        return Wait(seconds=seconds, timeout=max(timeout, seconds))

    def run(self, y: Y, what: str) -> Run:
        given = self.mapping(
            y, what, ("nodes", "command", "timeout", "expect"), ("nodes", "command")
        )
        expect = Expect()
        if "expect" in given:
            expect = self.expect(given["expect"], f"{what}.expect")
        return Run(
            nodes=self.select(given["nodes"], f"{what}.nodes"),
            command=self.text(given["command"], f"{what}.command"),
            timeout=self.seconds(given["timeout"], f"{what}.timeout")
            if "timeout" in given
            else 30.0,
            expect=expect,
        )

    def expect(self, y: Y, what: str) -> Expect:
        keys = ("exit", "stdout", "stdout_matches", "stderr", "stderr_matches")
        given = self.mapping(y, what, keys)
        exits: tuple[int, ...] = (0,)
        if "exit" in given:
            exits = self.one_or_list(given["exit"], f"{what}.exit", self.integer)
        return Expect(
            exit=exits,
            stdout=self.text(given["stdout"], f"{what}.stdout") if "stdout" in given else None,
            stdout_matches=self.regex(given["stdout_matches"], f"{what}.stdout_matches")
            if "stdout_matches" in given
            else None,
            stderr=self.text(given["stderr"], f"{what}.stderr") if "stderr" in given else None,
            stderr_matches=self.regex(given["stderr_matches"], f"{what}.stderr_matches")
            if "stderr_matches" in given
            else None,
        )

    def drain(self, y: Y, what: str) -> Drain:
        given = self.mapping(
            y, what, ("nodes", "reason", "wait", "one_at_a_time"), ("nodes", "reason")
        )
        one = (
            self.boolean(given["one_at_a_time"], f"{what}.one_at_a_time")
            if "one_at_a_time" in given
            else False
        )
        wait = self.optional_wait(given.get("wait"), f"{what}.wait")
        if one and wait is None:
            wait = DEFAULT_WAIT_S  # one at a time means: the next once this one is drained
        return Drain(
            nodes=self.select(given["nodes"], f"{what}.nodes"),
            reason=self.text(given["reason"], f"{what}.reason"),
            wait=wait,
            one_at_a_time=one,
        )

    def resume(self, y: Y, what: str) -> Resume:
        given = self.mapping(y, what, ("nodes",), ("nodes",))
        return Resume(nodes=self.select(given["nodes"], f"{what}.nodes"))

    def terminate(self, y: Y, what: str) -> Terminate:
        given = self.mapping(
            y, what, ("nodes", "reason", "wait", "drain_timeout"), ("nodes", "reason")
        )
        return Terminate(
            nodes=self.select(given["nodes"], f"{what}.nodes"),
            reason=self.text(given["reason"], f"{what}.reason"),
            wait=self.optional_wait(given.get("wait"), f"{what}.wait"),
            drain_timeout=(
                self.seconds(given["drain_timeout"], f"{what}.drain_timeout")
                if "drain_timeout" in given
                else DEFAULT_WAIT_S
            ),
        )

    def check(self, y: Y, what: str) -> Check:
        condition = self.condition(y, what, message=True)
        assert isinstance(y.value, dict)
        message = y.value.get("message")
        return Check(condition, self.text(message, f"{what}.message") if message else None)

    def notify(self, y: Y, what: str) -> Notify:
        given = self.mapping(y, what, ("message", "file", "webhook"), ("message",))
        if "file" not in given and "webhook" not in given:
            raise self.fail(y, f"{what} needs file: (a path) or webhook: (a URL), or both")
        webhook = None
        if "webhook" in given:
            webhook = self.text(given["webhook"], f"{what}.webhook")
            if not re.match(r"https?://[^/\s]+", webhook):
                raise self.fail(
                    given["webhook"], f"{what}.webhook must be an http:// or https:// URL"
                )
        file = None
        if "file" in given:
            file = (
                self.path.parent / Path(self.text(given["file"], f"{what}.file")).expanduser()
            ).resolve()
        return Notify(
            message=self.text(given["message"], f"{what}.message"), file=file, webhook=webhook
        )


_READERS: dict[str, Callable[[_Reader, Y, str], StepAction]] = {
    "burst": _Reader.burst,
    "wait": _Reader.wait,
    "run": _Reader.run,
    "drain": _Reader.drain,
    "resume": _Reader.resume,
    "terminate": _Reader.terminate,
    "check": _Reader.check,
    "notify": _Reader.notify,
}


def _shown(y: Y) -> str:
    if isinstance(y.value, dict):
        return "a mapping"
    if isinstance(y.value, list):
        return "a list"
    if y.value is None:
        return "nothing"
    return repr(y.value)


def _closest(key: str, allowed: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
