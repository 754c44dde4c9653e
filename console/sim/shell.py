"""The few commands a simulated node answers, the way a real node's shell would.

A command line is split with :mod:`shlex`, as ``sh`` would split a simple command. A leading
``exec`` is dropped (``exec python3 agent.pyz stream`` is how the console starts the agent).
Understood, with the output a real Ubuntu node gives:

* the node's one Python (``[agent].python``, ``python3`` by default; also as
  ``/usr/bin/python3``): ``-V``/``--version``; ``-c`` with exactly the console's version probe
  (``import sys; print("%d.%d.%d" % sys.version_info[:3])``: spacing may differ), which prints
  the server's own Python version; ``PYTHON SCRIPT ARGS...`` runs the tidectl agent when
  SCRIPT is a zipapp in the node's login directory (see below). Other ``-c`` code is refused
  with a sentence: the simulated Python runs no arbitrary code.
* ``hostname``, ``true``, ``false``, ``echo [-n] ARGS``, ``uname [-a|-r|-n|-s|-m]``,
  ``cat /etc/hostname``, ``uptime``, ``nvidia-smi -L`` (the node's 8 GPUs, with UUIDs),
  ``sleep N[smhd]...`` (at most ``MAX_SLEEP_S``), ``which NAME``, ``command -v NAME``.
* ``sudo CMD`` (runs CMD); ``sudo systemctl poweroff``, ``poweroff`` and ``shutdown -h now``
  power the node off (what that does is the server's: see :class:`PowerOff`).
* ``sh -c 'CMD'`` / ``bash -c 'CMD'`` when CMD is one simple command of the above: no
  pipes, lists, redirections, substitutions or variables (those are refused, exit 2).

Anything else is ``sh: 1: NAME: not found`` on stderr with exit status 127, as dash says it.

The agent: the script path is looked up in the node's login directory (the root of its
SFTP); a missing file gives Python's own "can't open file" error (exit 2), a file that is not
a zipapp Python's "can't find '__main__' module" (exit 1). The arguments are parsed by the
agent's own parser (:func:`tidectl.agents.cli.configure`), so the same options work and the
same errors come out. What runs is the server's copy of the agent code over this node's
simulated hardware, not the uploaded bytes: ``--sim``, ``--hostname``, ``--faults``,
``--sysfs-root`` and ``--proc-root`` are accepted and ignored, because the node's identity
and fault file are the server's. ``watchdog`` runs inside the server, outliving the session
as the real one outlives its SSH session (see ``server.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import math
import platform
import posixpath
import re
import shlex
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidectl.agents import cli as agent_cli
from tidectl.agents import protocol
from tidectl.agents.probes.registry import UnknownProbeError, parse_probe_list
from tidectl.agents.probes.sim import GPU_NAME, SimNode

#: The longest ``sleep`` a simulated node does; fan-out tests need seconds, not hours.
MAX_SLEEP_S = 600.0
#: Where ``which`` says the node's programs live.
_BIN = "/usr/bin"
_KNOWN_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
#: What ``sh -c`` refuses: anything that makes more than one simple command.
_SHELL_SYNTAX = re.compile(r"[|;&<>`$()\n*?{}\[\]~]")
_VERSION_PROBES = frozenset(
    {
        'importsys;print("%d.%d.%d"%sys.version_info[:3])',
        "importsys;print('%d.%d.%d'%sys.version_info[:3])",
    }
)
_SLEEP_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_KERNEL_BUILD = "#123-Ubuntu SMP Mon Jun 10 08:16:17 UTC 2024"


@dataclass(frozen=True, slots=True)
class NodeView:
    """What a command can see of its node."""

    name: str
    root: Path  # the login directory, which is also the root of the node's SFTP
    python: str  # the one interpreter name this node has
    sim: Callable[[], SimNode]  # the node's simulated hardware, built on first use
    python_version: str = platform.python_version()


@dataclass(frozen=True, slots=True)
class Reply:
    """A command that has finished: what it printed and its exit status."""

    stdout: bytes = b""
    stderr: bytes = b""
    status: int = 0


@dataclass(frozen=True, slots=True)
class Sleep:
    """``sleep``: the server waits (and stops waiting when the channel closes)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class RunAgent:
    """The tidectl agent, started on this node with arguments its parser accepted."""

    script: str  # as the node sees it, absolute in the login directory
    args: argparse.Namespace
    probes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PowerOff:
    """``sudo systemctl poweroff`` and friends: the node powers itself off (the server decides
    what that means: a sim cloud instance ends, as EC2's do with
    ``InstanceInitiatedShutdownBehavior=terminate``)."""


Action = Reply | Sleep | RunAgent | PowerOff
_Command = Callable[[list[str], NodeView], Action]


def interpret(command: str | None, node: NodeView) -> Action:
    """What ``node`` does with an exec request's command line (None: a login shell)."""
    if command is None:
        return _fail(
            "tidectl sim: a simulated node has no interactive shell; run a command, "
            "e.g. ssh NODE hostname",
            1,
        )
    try:
        argv = shlex.split(command)
    except ValueError:
        return _fail("sh: 1: Syntax error: Unterminated quoted string", 2)
    return run_argv(argv, node)


def run_argv(argv: list[str], node: NodeView) -> Action:
    """One simple command, already split into words."""
    while argv and argv[0] == "exec":
        argv = argv[1:]
    if not argv:
        return Reply()
    name = argv[0]
    if posixpath.dirname(name) in _KNOWN_DIRS:
        name = posixpath.basename(name)
    if name == node.python:
        return _python(argv[1:], node)
    handler = _COMMANDS.get(name)
    if handler is None:
        return _fail(f"sh: 1: {argv[0]}: not found", 127)
    return handler(argv[1:], node)


def _out(text: str, status: int = 0) -> Reply:
    return Reply(stdout=text.encode("utf-8"), status=status)


def _fail(message: str, status: int) -> Reply:
    return Reply(stderr=f"{message}\n".encode(), status=status)


# -- the shell's own commands -------------------------------------------------------------


def _sh(args: list[str], node: NodeView) -> Action:
    if len(args) < 2 or args[0] != "-c":
        return _fail("tidectl sim: sh here only runs `sh -c 'COMMAND'`", 2)
    script = args[1]
    if _SHELL_SYNTAX.search(script):
        return _fail(
            "tidectl sim: sh -c on a simulated node runs one simple command "
            "(no pipes, lists, redirections, substitutions or variables)",
            2,
        )
    try:
        words = shlex.split(script)
    except ValueError:
        return _fail("sh: 1: Syntax error: Unterminated quoted string", 2)
    return run_argv(words, node)


def _hostname(args: list[str], node: NodeView) -> Action:
    return _out(f"{node.name}\n")


def _true(args: list[str], node: NodeView) -> Action:
    return Reply()


def _false(args: list[str], node: NodeView) -> Action:
    return Reply(status=1)


def _echo(args: list[str], node: NodeView) -> Action:
    if args[:1] == ["-n"]:
        return _out(" ".join(args[1:]))
    return _out(" ".join(args) + "\n")


def _uname(args: list[str], node: NodeView) -> Action:
    kernel = str(node.sim().host_facts()["kernel"])
    fields = {
        "-s": "Linux",
        "-n": node.name,
        "-r": kernel,
        "-v": _KERNEL_BUILD,
        "-m": "x86_64",
        "-o": "GNU/Linux",
    }
    if not args:
        return _out("Linux\n")
    if args in (["-a"], ["--all"]):
        return _out(f"Linux {node.name} {kernel} {_KERNEL_BUILD} x86_64 x86_64 x86_64 GNU/Linux\n")
    unknown = [arg for arg in args if arg not in fields]
    if unknown:
        return _fail(
            f"uname: invalid option -- '{unknown[0].lstrip('-')}'\n"
            "Try 'uname --help' for more information.",
            1,
        )
    return _out(" ".join(fields[arg] for arg in fields if arg in args) + "\n")


def _cat(args: list[str], node: NodeView) -> Action:
    out: list[str] = []
    errors: list[str] = []
    for path in args:
        if posixpath.normpath(path) == "/etc/hostname":
            out.append(f"{node.name}\n")
        else:
            errors.append(f"cat: {path}: No such file or directory\n")
    return Reply("".join(out).encode(), "".join(errors).encode(), 1 if errors else 0)


def _uptime(args: list[str], node: NodeView) -> Action:
    host = node.sim().host_sample()
    up = int(float(host["uptime_s"]))
    days, rest = divmod(up, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    since = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    since += f"{hours:2d}:{minutes:02d}" if hours else f"{minutes} min"
    loads = ", ".join(f"{float(host[key]):.2f}" for key in ("load1", "load5", "load15"))
    return _out(f" {time.strftime('%H:%M:%S')} up {since},  0 users,  load average: {loads}\n")


def _nvidia_smi(args: list[str], node: NodeView) -> Action:
    if args not in (["-L"], ["--list-gpus"]):
        return _fail("tidectl sim: nvidia-smi on a simulated node supports only -L", 2)
    gpus = node.sim().gpu_facts()["gpus"]
    lines = [f"GPU {gpu['index']}: {GPU_NAME} (UUID: {gpu['uuid']})\n" for gpu in gpus]
    return _out("".join(lines))


def _sleep(args: list[str], node: NodeView) -> Action:
    if not args:
        return _fail("sleep: missing operand\nTry 'sleep --help' for more information.", 1)
    total = 0.0
    for arg in args:
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", arg)
        if match is None:
            return _fail(
                f"sleep: invalid time interval '{arg}'\nTry 'sleep --help' for more information.",
                1,
            )
        total += float(match[1]) * _SLEEP_UNITS[match[2]]
    if not math.isfinite(total) or total > MAX_SLEEP_S:
        return _fail(f"tidectl sim: a simulated node sleeps at most {MAX_SLEEP_S:g} s", 1)
    return Sleep(total)


def _sudo(args: list[str], node: NodeView) -> Action:
    # The login may do anything as root here: options that only change how sudo asks for a
    # password (-n, -E, ...) are passed over.
    while args and args[0].startswith("-"):
        if args[0] == "--":
            args = args[1:]
            break
        args = args[2:] if args[0] in ("-u", "-g") else args[1:]
    return run_argv(args, node)


def _poweroff(args: list[str], node: NodeView) -> Action:
    if any(arg not in ("-f", "--force", "-p", "--no-wall") for arg in args):
        return _fail("tidectl sim: poweroff on a simulated node takes no options but -f", 2)
    return PowerOff()


def _systemctl(args: list[str], node: NodeView) -> Action:
    words = [arg for arg in args if arg not in ("-i", "--no-block", "--no-wall", "-q")]
    if words == ["poweroff"]:
        return PowerOff()
    return _fail("tidectl sim: systemctl on a simulated node only powers it off (poweroff)", 2)


def _shutdown(args: list[str], node: NodeView) -> Action:
    if set(args) <= {"-h", "-P", "--poweroff", "now", "+0"}:
        return PowerOff()
    return _fail("tidectl sim: shutdown on a simulated node only powers it off now (-h now)", 2)


def _which(args: list[str], node: NodeView) -> Action:
    found = [f"{_BIN}/{name}" for name in args if name in _COMMANDS or name == node.python]
    return _out("".join(f"{path}\n" for path in found), 0 if len(found) == len(args) else 1)


def _command(args: list[str], node: NodeView) -> Action:
    if args[:1] != ["-v"]:
        return run_argv(args, node)  # `command CMD` runs CMD, bypassing functions
    return _which(args[1:], node)


_COMMANDS: dict[str, _Command] = {
    "sh": _sh,
    "bash": _sh,
    "hostname": _hostname,
    "true": _true,
    "false": _false,
    "echo": _echo,
    "uname": _uname,
    "cat": _cat,
    "uptime": _uptime,
    "nvidia-smi": _nvidia_smi,
    "sleep": _sleep,
    "which": _which,
    "command": _command,
    "sudo": _sudo,
    "poweroff": _poweroff,
    "systemctl": _systemctl,
    "shutdown": _shutdown,
}


# -- python and the agent ---------------------------------------------------------------------

_PYTHON_FLAGS = frozenset({"-I", "-u", "-S", "-E", "-s", "-B", "-O", "-OO"})


def _python(args: list[str], node: NodeView) -> Action:
    while args and args[0] in _PYTHON_FLAGS:
        args = args[1:]  # flags that change nothing a simulated node could show
    if not args:
        return _fail(f"tidectl sim: {node.python} on a simulated node has no interactive mode", 1)
    first = args[0]
    if first in ("-V", "--version"):
        return _out(f"Python {node.python_version}\n")
    if first == "-c":
        code = "".join(args[1:2]).replace(" ", "").replace("\t", "").strip()
        if code in _VERSION_PROBES:
            return _out(f"{node.python_version}\n")
        return _fail(
            f"tidectl sim: {node.python} on a simulated node runs only the version probe "
            "and the tidectl agent, not arbitrary -c code",
            1,
        )
    if first.startswith("-"):
        return _fail(f"tidectl sim: {node.python} option {first} is not simulated", 2)
    return _script(first, args[1:], node)


def node_path(node: NodeView, path: str) -> tuple[str, Path]:
    """``path`` as the node shows it (absolute in its login directory) and on this machine.

    The login directory is the node's SFTP root, so what the console uploaded to a relative
    path is found at the same relative path here; ``..`` never leaves the node's folder.
    """
    shown = posixpath.normpath(posixpath.join("/", path))
    return shown, node.root / shown.lstrip("/")


def _script(path: str, argv: list[str], node: NodeView) -> Action:
    shown, local = node_path(node, path)
    if not local.exists():
        return _fail(
            f"{node.python}: can't open file '{shown}': [Errno 2] No such file or directory", 2
        )
    if not _is_zipapp(local):
        return _fail(f"{node.python}: can't find '__main__' module in '{shown}'", 1)
    return parse_agent_args(shown, argv)


def _is_zipapp(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "__main__.py" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


@functools.cache
def _agent_parser() -> argparse.ArgumentParser:
    # The same parser as the agent's main(), so --help and errors read the same. Built once:
    # building it costs more than a parse, and a parser can parse any number of times.
    parser = argparse.ArgumentParser(
        prog="tidectl-agent",
        description="The tidectl node agent: GPU, InfiniBand, storage, network and host health "
        f"as JSON lines (protocol {protocol.SCHEMA}).",
    )
    agent_cli.configure(parser)
    return parser


def parse_agent_args(script: str, argv: list[str]) -> Action:
    """The agent's arguments through its own parser; its output and exit status if it quits.

    argparse prints to ``sys.stdout``/``sys.stderr`` and exits: both are captured here.
    Swapping the process's streams is safe because parsing is synchronous and the server
    runs no other threads, so nothing else can print meanwhile.
    """
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = _agent_parser().parse_args(argv)
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        return Reply(out.getvalue().encode(), err.getvalue().encode(), status)
    command = args.agent_command
    try:
        if command == "zipapp":
            raise ValueError("a simulated node does not build zipapps; run it on the console")
        if command == "stream" and args.count is not None and args.count < 1:
            raise ValueError(f"--count must be at least 1, got {args.count}")
        # The watchdog reads the GPUs only, and has no --probes.
        probes = tuple(parse_probe_list(args.probes)) if command != "watchdog" else ("gpu",)
    except (UnknownProbeError, ValueError) as exc:
        return _fail(f"tidectl agent {command}: error: {exc}", 2)
    return RunAgent(script, args, probes)
