"""The playbook schema: an invalid playbook is refused before anything runs, naming the file,
the line and what to write instead; a valid one becomes typed steps, variables filled in with
their types; every example playbook is valid against the demo's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.playbooks.conftest import EXAMPLES
from tidectl.console.cli import main as tidectl
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.demo import BURST_POOL
from tidectl.console.lifecycle.states import State
from tidectl.playbooks import PlaybookError, SchemaError, load, parse
from tidectl.playbooks.model import Burst, Drain, Notify, Run, Select, Terminate, Wait
from tidectl.playbooks.schema import check_against, duration

PATH = Path("/srv/books/train.yaml")

GOOD = """\
name: train
cluster: ../cluster.toml
vars:
  pool: h100-east
  nodes: 4
steps:
  - name: capacity
    burst: {pool: "{{ pool }}", ensure: "{{ nodes }}", wait: 15m}
  - wait: {nodes: {pool: "{{ pool }}"}, until: healthy, timeout: 10m}
  - run:
      nodes: "gpu[001-002]"
      command: nvidia-smi -L
      expect: {exit: [0, 1], stdout_matches: "^GPU 0"}
  - drain: {nodes: {onprem: true, health: unhealthy}, reason: bad, one_at_a_time: true}
  - terminate: {nodes: {launched: true}, reason: "done with {{ pool }}"}
  - notify: {file: report.jsonl, message: "spent {{ spend_today }}"}
on_failure:
  - terminate: {nodes: {launched: true}, reason: cleanup, wait: 5m}
"""


def _error(text: str, variables: dict[str, object] | None = None) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        parse(text, PATH, variables)
    return caught.value


def test_a_valid_playbook_becomes_typed_steps_with_its_variables_filled_in() -> None:
    book = parse(GOOD, PATH, {"nodes": 8})
    assert book.name == "train" and book.cluster == Path("/srv/cluster.toml")
    assert book.variables == {"pool": "h100-east", "nodes": 8}
    burst, wait, run, drain, terminate, notify = (step.action for step in book.steps)
    assert burst == Burst("h100-east", 8, None, 900.0)  # "{{ nodes }}" keeps its type
    assert book.steps[0].name == "capacity" and book.steps[0].line == 7
    assert wait == Wait(nodes=Select(pool="h100-east"), until="healthy", timeout=600.0)
    assert isinstance(run, Run) and run.expect.exit == (0, 1) and run.timeout == 30.0
    assert isinstance(drain, Drain) and drain.one_at_a_time and drain.wait == 1800.0
    assert drain.nodes == Select(onprem=True, health=("unhealthy",))
    assert isinstance(terminate, Terminate) and terminate.reason == "done with h100-east"
    # The run's facts are left for the step to fill in; the file is beside the playbook.
    assert notify == Notify("spent {{ spend_today }}", Path("/srv/books/report.jsonl"), None)
    assert [s.action for s in book.on_failure] == [
        Terminate(Select(launched=True), "cleanup", 300.0)
    ]
    assert book.origin == f"playbook:{PATH} sha256:{book.sha256}"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("name: x\nsteps: [\n", 3, "not valid YAML"),
        ("name: x\nsteps:\n  - burst: {pool: a, ensure: {{ n }}}\n", 3, "must be quoted, like"),
        ("name: x\nstep:\n  - wait: {for: 1s}\n", 2, "has no key 'step' (did you mean steps?)"),
        ("steps:\n  - wait: {for: 1s}\n", 1, "a playbook needs name:"),
        ("name: x\nsteps: []\n", 2, "steps must be a list of steps"),
        ("name: x\nsteps:\n  - wiat: {for: 1s}\n", 3, "has no action; give one of burst, wait"),
        (
            "name: x\nsteps:\n  - drain: {nodes: a1, reason: r}\n    terminate: {nodes: a1}\n",
            4,
            "has two actions (drain and terminate); one action per step",
        ),
        (
            "name: x\nsteps:\n  - burst:\n      pool: a\n      ensure: four\n",
            5,
            "steps[1] (burst): burst.ensure must be a whole number of 0 or more, not 'four'",
        ),
        (
            "name: x\nsteps:\n  - burst:\n      pool: a\n      ensure: 2\n      count: 2\n",
            6,
            "has no key 'count'",
        ),
        (
            "name: x\nsteps:\n  - burst: {pool: '{{ pol }}', ensure: 1}\n",
            3,
            "{{ pol }} names no variable; declare it under vars:",
        ),
        ("name: x\nsteps:\n  - wait:\n      for: 5 minutes\n", 4, "is not a duration"),
        (
            "name: x\nsteps:\n  - wait: {job: j, for: 1m}\n",
            3,
            "waits for one thing: give exactly one of until (with nodes), queue_empty, job or "
            "for (not job and for)",
        ),
        ("name: x\nsteps:\n  - wait: {until: active}\n", 3, "until needs nodes:"),
        (
            "name: x\nsteps:\n  - run:\n      nodes: 'gpu[1-'\n      command: x\n",
            4,
            "cannot read node set",
        ),
        (
            "name: x\nsteps:\n  - run:\n      nodes: a1\n      command: x\n"
            "      expect: {stdout_matches: '('}\n",
            6,
            "is not a regular expression",
        ),
        (
            "name: x\nsteps:\n  - drain: {nodes: {health: sick}, reason: r}\n",
            3,
            "'sick' is not one of ok, warn, critical, unknown, healthy, unhealthy",
        ),
        (
            "name: x\nsteps:\n  - resume:\n      nodes: {state: asleep}\n",
            4,
            "'asleep' is not a lifecycle state",
        ),
        ("name: x\nname: y\nsteps: []\n", 2, "'name' is given twice here (also on line 1)"),
        ("name: x\nsteps:\n  - check: {message: hi}\n", 3, "says nothing to test"),
        ("name: x\nsteps:\n  - notify: {message: hi}\n", 3, "needs file: (a path) or webhook:"),
        ("name: x\nvars: {changed: 1}\nsteps: []\n", 2, "'changed' cannot be a variable's name"),
        ("name: x\nsteps:\n  - wait: {for: 1s}\n    when: {healthy: true}\n", 4, "add nodes:"),
    ],
)
def test_an_invalid_playbook_names_its_line_and_what_to_do(
    text: str, line: int, words: str
) -> None:
    error = _error(text)
    assert error.line == line, str(error)
    assert str(error).startswith(f"{PATH}:{line}: ")
    assert words in str(error)


def test_a_var_the_playbook_does_not_declare_is_refused_by_name() -> None:
    with pytest.raises(PlaybookError, match=r"--var nodez: train.yaml declares no variable"):
        parse(GOOD, PATH, {"nodez": 3})


def _config(folder: Path, pool: str) -> ClusterConfig:
    (folder / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "sim[0001-0003]"\n'
        f'[[pools]]\nname = "{pool}"\nprovider = "sim"\nmax_nodes = 4\n'
    )
    return parse_config(text, folder / "cluster.toml")


def test_a_pool_the_cluster_lacks_is_refused_on_the_step_line(tmp_path: Path) -> None:
    config = _config(tmp_path, "a100")
    with pytest.raises(SchemaError) as caught:
        check_against(parse(GOOD, PATH), config)
    assert caught.value.line == 7
    assert "names pool 'h100-east', which cluster.toml does not have (pools: a100)" in str(
        caught.value
    )


def test_durations_read_like_people_write_them() -> None:
    assert [duration(x) for x in (90, "90", "90s", "10m", "1h30m", "2d")] == [
        90.0,
        90.0,
        90.0,
        600.0,
        5400.0,
        172800.0,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        duration("soon")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_playbook_is_valid_against_the_demos_config(
    example: Path, tmp_path: Path
) -> None:
    book = load(example)
    assert book.steps and book.description
    check_against(book, _config(tmp_path, BURST_POOL))


def test_the_cli_refuses_an_invalid_playbook_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nsteps:\n  - drain:\n      nodes: {onprem: yes please}\n      reason: r\n"
    )
    assert tidectl(["play", str(bad), "--check"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"tidectl play: {bad}:4: steps[1] (drain): drain.nodes.onprem must be true or false, "
        "not 'yes please'\n"
    )
    assert tidectl(["play", str(EXAMPLES / "nightly-cleanup.yaml")]) == 2
    assert "names no cluster: pass -c cluster.toml" in capsys.readouterr().err


def test_state_words_are_the_lifecycle_states() -> None:
    book = parse(
        "name: x\nsteps:\n  - terminate:\n      nodes: {pool: '*', state: [drained, failed]}\n"
        "      reason: r\n",
        PATH,
    )
    action = book.steps[0].action
    assert isinstance(action, Terminate)
    assert action.nodes.state == (State.DRAINED, State.FAILED)
