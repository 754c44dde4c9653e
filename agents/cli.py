"""The agent's command line: ``stream``, ``once``, ``facts``, ``watchdog``, ``zipapp``.

The same parser serves ``python3 -m tidectl.agents``, ``python3 agent.pyz`` on a bare node,
and ``tidectl agent`` (the console mounts it with ``configure``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any, List, Optional

from tidectl.agents import AGENT_VERSION, protocol


class _Stop(BaseException):
    """Raised by a signal handler to leave whatever the main thread is blocked in.

    A BaseException so that no ``except Exception`` on the way swallows it.
    """


_stopping = threading.Event()


def _stop_on_signals() -> None:
    """SIGTERM, SIGHUP and SIGINT end the agent; SIGPIPE asks the loop to stop.

    SIGTERM and friends raise, so that even a write blocked on a full pipe is left. SIGPIPE
    only sets the flag: a write into a closed pipe raises BrokenPipeError by itself, and a
    second exception from the handler would land inside that one's handling.
    """

    def raise_stop(signum: int, frame: Any) -> None:
        if not _stopping.is_set():
            _stopping.set()
            raise _Stop()

    def note_stop(signum: int, frame: Any) -> None:
        _stopping.set()

    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), raise_stop)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, note_stop)


def _silence_stdout() -> None:
    """After the reader went away, make the interpreter's final flush a no-op.

    Without it Python prints "Exception ignored ... BrokenPipeError" at exit.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _add_source_options(parser: argparse.ArgumentParser, probes: bool = True) -> None:
    if probes:
        parser.add_argument(
            "--probes",
            default="all",
            help="comma-separated probes to run: host,gpu,ib,storage,net (default: all)",
        )
    parser.add_argument(
        "--sim",
        type=int,
        metavar="SEED",
        default=None,
        help="simulate a GPU node with this seed instead of reading the real one",
    )
    parser.add_argument(
        "--sysfs-root", default="/sys", metavar="DIR", help="where /sys is (default: /sys)"
    )
    parser.add_argument(
        "--proc-root", default="/proc", metavar="DIR", help="where /proc is (default: /proc)"
    )
    parser.add_argument(
        "--faults",
        metavar="FILE",
        default=None,
        help="with --sim: a fault file, re-read when it changes (see docs/agent-sim.md)",
    )
    parser.add_argument("--hostname", default=None, help="with --sim: the simulated node's name")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
    if not value > 0 or value > 86400:
        raise argparse.ArgumentTypeError("interval must be between 0 and 86400 s, got %s" % text)
    return value


def _seconds(low: float, high: float, low_allowed: bool) -> Any:
    """An argparse type: a number of seconds above (or from) ``low`` up to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
        if not (value > low or (low_allowed and value == low)) or not value <= high:
            raise argparse.ArgumentTypeError(
                "%s s is out of range: give %s %g s, at most %g s"
                % (text, "at least" if low_allowed else "more than", low, high)
            )
        return value

    return parse


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a percentage" % text) from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("give a percentage from 0 to 100, not %s" % text)
    return value


def _add_watchdog(commands: Any) -> None:
    watchdog = commands.add_parser(
        "watchdog",
        help="power this node off once no control plane holds its lease and it is idle",
        description="Detaches from the session and, once LEASE_FILE is older than the lease, "
        "powers the node off if every GPU is idle and (where Slurm is installed) Slurm runs "
        "no job on it and has it idle, drained or down. One watchdog per lease file: a "
        "second start is a no-op. Logs to LEASE_FILE.watchdog.log.",
    )
    watchdog.add_argument(
        "--lease-file", required=True, metavar="FILE", help="the file the agent's stream touches"
    )
    watchdog.add_argument(
        "--lease-s",
        type=_seconds(0.0, 1e9, False),
        required=True,
        metavar="S",
        help="how old the lease may grow before the node counts as abandoned",
    )
    watchdog.add_argument(
        "--idle-gpu-util-below",
        type=_percent,
        default=5.0,
        metavar="PCT",
        help="a GPU is idle below this utilisation (default 5)",
    )
    watchdog.add_argument(
        "--idle-window",
        type=_seconds(0.0, 86400.0, True),
        default=60.0,
        metavar="S",
        help="the node must read idle on every check for this long (default 60)",
    )
    watchdog.add_argument(
        "--check-every",
        type=_seconds(0.0, 3600.0, False),
        default=10.0,
        metavar="S",
        help="seconds between checks (default 10)",
    )
    watchdog.add_argument(
        "--poweroff",
        default="sudo systemctl poweroff",
        metavar="CMD",
        help="the shell command that powers the node off (default: sudo systemctl poweroff)",
    )
    watchdog.add_argument(
        "--slurm-node",
        default=None,
        metavar="NAME",
        help="the node's name in Slurm (default: the short host name)",
    )
    watchdog.add_argument(
        "--foreground", action="store_true", help="do not detach; log to stderr (for a unit)"
    )
    _add_source_options(watchdog, probes=False)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the agent's subcommands to ``parser`` (the top level or ``tidectl agent``)."""
    parser.add_argument("--version", action="version", version="tidectl-agent " + AGENT_VERSION)
    commands = parser.add_subparsers(dest="agent_command", metavar="COMMAND")
    commands.required = True

    stream = commands.add_parser("stream", help="stream a hello, then one sample per tick")
    stream.add_argument(
        "--interval", type=_positive_float, default=1.0, metavar="S", help="seconds per tick"
    )
    stream.add_argument("--count", type=int, default=None, metavar="N", help="stop after N samples")
    stream.add_argument(
        "--lease-file",
        default=None,
        metavar="FILE",
        help="touch FILE every sample: the lease a node's watchdog reads (see watchdog)",
    )
    _add_source_options(stream)

    once = commands.add_parser("once", help="take one sample and print it")
    once.add_argument("--json", action="store_true", help="print the sample record as JSON")
    once.add_argument(
        "--settle",
        type=_positive_float,
        default=0.5,
        metavar="S",
        help="seconds between a priming sample and the one shown, so rates exist (0.5)",
    )
    _add_source_options(once)

    facts = commands.add_parser("facts", help="print the node's inventory (the hello record)")
    facts.add_argument("--json", action="store_true", help="print the hello record as JSON")
    _add_source_options(facts)

    _add_watchdog(commands)

    zipapp = commands.add_parser("zipapp", help="build a single-file agent for bare nodes")
    zipapp.add_argument("out", metavar="OUT.pyz", help="where to write the zipapp")


def _make_stream(
    args: argparse.Namespace, out: Any, interval: float, stop: Optional[threading.Event] = None
) -> Any:
    from tidectl.agents.probes.registry import build_probes, parse_probe_list
    from tidectl.agents.runner import Stream

    names = parse_probe_list(args.probes)
    probes = build_probes(
        names,
        sysfs_root=args.sysfs_root,
        proc_root=args.proc_root,
        sim_seed=args.sim,
        faults_path=args.faults,
        hostname=args.hostname,
        interval_s=interval,
    )
    lease = getattr(args, "lease_file", None)
    return Stream(probes, out, interval_s=interval, sim_seed=args.sim, stop=stop, lease_path=lease)


def _cmd_stream(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise ValueError("--count must be at least 1, got %d" % args.count)
    _stop_on_signals()
    stream = None
    try:
        stream = _make_stream(args, sys.stdout.buffer, args.interval, stop=_stopping)
        stream.run(count=args.count)
    except (_Stop, BrokenPipeError):
        _stopping.set()
        _silence_stdout()
    finally:
        if stream is not None:
            stream.close()
    return 0


def _cmd_once(args: argparse.Namespace) -> int:
    from tidectl.agents.pretty import render_sample

    # The tick's budget is a second's, however short the settle time.
    stream = _make_stream(args, sys.stdout.buffer, max(1.0, args.settle))
    try:
        hello = stream.hello()
        stream.tick()  # primes deltas (CPU %) and drains old events
        time.sleep(args.settle)
        record = stream.tick()
    finally:
        stream.close()
    if args.json:
        sys.stdout.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_sample(hello, record))
    return 0


def _cmd_facts(args: argparse.Namespace) -> int:
    from tidectl.agents.pretty import render_facts

    stream = _make_stream(args, sys.stdout.buffer, 1.0)
    try:
        hello = stream.hello()
    finally:
        stream.close()
    if args.json:
        sys.stdout.write(json.dumps(hello, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_facts(hello))
    return 0


def _cmd_zipapp(args: argparse.Namespace) -> int:
    from tidectl.agents.zipapp import build

    digest = build(args.out)
    sys.stdout.write("%s  %s\n" % (digest, args.out))
    return 0


def _cmd_watchdog(args: argparse.Namespace) -> int:
    from tidectl.agents.detach import detach, take_pid_lock, write_pid
    from tidectl.agents.lease import LOG_SUFFIX, PID_SUFFIX

    # Absolute before detaching: the daemon leaves the login directory for /.
    lease = os.path.abspath(args.lease_file)
    folder = os.path.dirname(lease)
    os.makedirs(folder, exist_ok=True)
    lock, holder = take_pid_lock(lease + PID_SUFFIX)
    if lock is None:
        sys.stdout.write(
            "tidectl agent watchdog: already watching %s (pid %s); nothing started\n"
            % (lease, holder)
        )
        return 0
    if args.foreground:
        write_pid(lock, os.getpid())
        return _watchdog_main(args, lease)
    pid = detach(lock, lease + LOG_SUFFIX, lambda: _watchdog_main(args, lease))
    sys.stdout.write(
        "tidectl agent watchdog: watching %s (pid %d); log %s\n" % (lease, pid, lease + LOG_SUFFIX)
    )
    return 0


#: How long one GPU reading may take before it counts as "cannot tell" (a wedged driver).
_WATCHDOG_GPU_BUDGET_S = 10.0


def _watchdog_main(args: argparse.Namespace, lease: str) -> int:
    """The watchdog itself (in the daemon, or in the foreground)."""
    from tidectl.agents import watchdog
    from tidectl.agents.probes.registry import build_probes
    from tidectl.agents.runner import Sampler

    stop = threading.Event()
    for name in ("SIGTERM", "SIGINT"):
        signal.signal(getattr(signal, name), lambda signum, frame: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    node = args.slurm_node or watchdog.default_slurm_node()
    probes = build_probes(
        ["gpu"],
        sysfs_root=args.sysfs_root,
        proc_root=args.proc_root,
        sim_seed=args.sim,
        faults_path=args.faults,
        hostname=args.hostname,
    )
    sampler = Sampler(probes)

    def busy() -> Optional[str]:
        gpu = sampler.run("sample", _WATCHDOG_GPU_BUDGET_S)["gpu"]
        return watchdog.gpus_busy(gpu, args.idle_gpu_util_below) or watchdog.slurm_busy(node)

    dog = watchdog.Watchdog(
        lease, args.lease_s, busy, watchdog.log_to_stderr, idle_window_s=args.idle_window
    )
    dog.log(
        "watching %s: lease %g s; idle means every GPU below %g %% (and Slurm node %s without "
        "jobs, where Slurm is installed) for %g s; a check every %g s; poweroff: %s"
        % (
            lease,
            args.lease_s,
            args.idle_gpu_util_below,
            node,
            args.idle_window,
            args.check_every,
            args.poweroff,
        )
    )
    try:
        done = watchdog.watch(
            dog, lambda: watchdog.run_poweroff(args.poweroff), args.check_every, stop
        )
    finally:
        sampler.close()
    if not done:
        dog.log("stopped by a signal")
    return 0


COMMANDS = {
    "stream": _cmd_stream,
    "once": _cmd_once,
    "facts": _cmd_facts,
    "watchdog": _cmd_watchdog,
    "zipapp": _cmd_zipapp,
}


def run(args: argparse.Namespace) -> int:
    """Run a parsed agent command; bad input is one line on stderr and exit status 2."""
    from tidectl.agents.probes.registry import UnknownProbeError

    try:
        return COMMANDS[args.agent_command](args)
    except (UnknownProbeError, ValueError, OSError) as exc:
        sys.stderr.write("tidectl agent %s: error: %s\n" % (args.agent_command, exc))
        return 2


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tidectl-agent",
        description="The tidectl node agent: GPU, InfiniBand, storage, network and host health "
        "as JSON lines (protocol %s)." % protocol.SCHEMA,
    )
    configure(parser)
    return run(parser.parse_args(argv))
