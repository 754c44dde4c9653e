"""Every ``tidectl …`` command line the README shows parses with the real CLI: a renamed
option or command cannot leave the README telling people to type something that fails."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tidectl.console.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _command_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip().rstrip("&").strip()
            if command.startswith("tidectl "):
                lines.append(command)
    return lines


def test_the_readme_shows_the_lifecycle_commands() -> None:
    shown = {line.split()[1] for line in _command_lines()}
    assert {"burst", "drain", "resume", "terminate", "nodes", "demo", "status"} <= shown


@pytest.mark.parametrize("line", _command_lines())
def test_every_command_line_in_the_readme_parses(line: str) -> None:
    argv = shlex.split(line)[1:]
    remote: list[str] = []
    if "--" in argv:  # tidectl run's remote command, split off as the CLI does
        cut = argv.index("--")
        argv, remote = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]
    assert remote == [] or argv[0] == "run"
