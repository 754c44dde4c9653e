"""Fan-out: ``hostname`` on N real OpenSSH sshd hosts, clush -b beside ``tidectl run``.

The hosts are the test harness's (tests/harness/sshd.py): one sshd per host on 127.0.0.1,
its own port and host key, strict known_hosts. It needs root (sshd switches to the test user).

* ``clush -b`` through an ssh_config with one ``Host nodeNNN`` entry per host: with
  OpenSSH's defaults (sntrup761x25519 key exchange, ~50 ms of client CPU a connection) and
  with ``-oKexAlgorithms=curve25519-sha256``. Every run opens N new connections.
* ``tidectl run -c cluster.toml --json NODESET -- hostname``: a fresh process that opens its
  N connections (bounded fan-out) and runs the command over them; the figures include both.
* ``fanout.run_on`` over open connections: the transport's fan-out as a long-running console
  uses it — N persistent connections opened once (not timed), then ``hostname`` over them,
  timed. This is the figure the issue's goal is about ("over the persistent connections").

Each method runs ``--repeat`` times; the table shows medians of wall time and of client CPU
(the CPU of the command and every process it waited for: clush's ssh children included), and
the speed-up against the best clush wall time. The issue's goal: tidectl ≥ 5x the best clush.

    .venv/bin/python bench/fanout.py                  # 256 hosts, 3 runs each (~1 min)
    .venv/bin/python bench/fanout.py --hosts 64 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.sshd import SshdHosts, free_port_block, unavailable_reason  # noqa: E402

GOAL_SPEEDUP = 5.0
FAST_KEX_OPTION = "-oKexAlgorithms=curve25519-sha256"
RUN_TIMEOUT_S = 300


@dataclass
class Measurement:
    method: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # runs that did not reach every host

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def _timed(argv: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall s, CPU s of the command and all it waited for, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result


def _tool(name: str) -> str | None:
    """The tool from this interpreter's environment (.venv/bin), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def measure_clush(
    hosts: SshdHosts, ssh_config: Path, method: str, ssh_options: str, repeat: int
) -> Measurement | str:
    clush = _tool("clush")
    if clush is None:
        return "clush: not available (pip install ClusterShell)"
    options = f"-F {shlex.quote(str(ssh_config))} {ssh_options}".strip()
    argv = [clush, "-b", "-w", hosts.nodeset, "-o", options, "hostname"]
    everyone = f"{hosts.nodeset} ({len(hosts)})"  # clush -b's header when all agree
    measured = Measurement(method)
    for _ in range(repeat):
        wall, cpu, result = _timed(argv)
        measured.walls.append(wall)
        measured.cpus.append(cpu)
        if result.returncode != 0 or everyone not in result.stdout:
            measured.problems.append(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
    return measured


def measure_tidectl_run(
    cluster_toml: Path, nodeset: str, hosts: int, repeat: int
) -> Measurement | str:
    """``tidectl run`` over the SSH transport. A fresh process: it opens its connections
    (bounded fan-out) and then runs the command over them, and the figures include both."""
    tidectl = _tool("tidectl")
    if tidectl is None:
        return "tidectl run: not available (tidectl is not installed)"
    probe = subprocess.run(
        [tidectl, "run", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        return "tidectl run: not available (this tidectl has no run command yet)"
    argv = [tidectl, "run", "-c", str(cluster_toml), "--json", nodeset, "--", "hostname"]
    measured = Measurement("tidectl run")
    for _ in range(repeat):
        wall, cpu, result = _timed(argv)
        measured.walls.append(wall)
        measured.cpus.append(cpu)
        try:
            report = json.loads(result.stdout)
        except ValueError:
            measured.problems.append(f"exit {result.returncode}, output is not JSON")
            continue
        succeeded = _succeeded(report)
        if result.returncode != 0 or succeeded != hosts:
            measured.problems.append(
                f"exit {result.returncode}, {succeeded} of {hosts} nodes succeeded: "
                + result.stderr.strip()[-300:]
            )
    return measured


def measure_persistent(cluster_toml: Path, hosts: int, repeat: int) -> Measurement:
    """``hostname`` over N already-open connections, through the transport's own API."""
    import asyncio

    from tidectl.console.config.loader import load_config
    from tidectl.console.fanout import run_on
    from tidectl.console.model import LinkState
    from tidectl.console.transport.link import NodeLink
    from tidectl.console.transport.ssh import SshConnector

    async def measure() -> Measurement:
        config = load_config(cluster_toml)
        connector = SshConnector(config.ssh)
        links = [NodeLink(spec, connector, on_state=lambda *a: None) for spec in config.nodes]
        tasks = [asyncio.create_task(link.run()) for link in links]
        measured = Measurement("tidectl fan-out, open connections")
        try:
            async with asyncio.timeout(120):
                while not all(link.state is LinkState.CONNECTED for link in links):
                    await asyncio.sleep(0.1)
            for _ in range(repeat):
                cpu0 = time.process_time()
                wall0 = time.perf_counter()
                results = await run_on(links, "hostname", timeout_s=60)
                measured.walls.append(time.perf_counter() - wall0)
                measured.cpus.append(time.process_time() - cpu0)
                ok = sum(r.exit_status == 0 for r in results)
                if ok != hosts:
                    measured.problems.append(f"{ok} of {hosts} nodes succeeded")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return measured

    return asyncio.run(measure())


def _succeeded(report: object) -> int | None:
    """Nodes with exit status 0 in ``tidectl run --json`` output (None: not that shape)."""
    if not isinstance(report, dict) or not isinstance(report.get("groups"), list):
        return None
    return sum(
        int(group.get("count", 0))
        for group in report["groups"]
        if isinstance(group, dict) and group.get("exit_status") == 0
    )


def _table(results: list[Measurement | str], hosts: int) -> str:
    measured = [r for r in results if isinstance(r, Measurement)]
    clush_walls = [m.wall for m in measured if m.method.startswith("clush")]
    best_clush = min(clush_walls) if clush_walls else None
    lines = [
        f"hostname on {hosts} hosts, medians",
        f"{'method':<48} {'wall':>8} {'CPU':>8} {'runs':>5} {'vs best clush':>14}",
    ]
    for result in results:
        if isinstance(result, str):
            lines.append(result)
            continue
        speedup = f"{best_clush / result.wall:.1f}x" if best_clush else "-"
        lines.append(
            f"{result.method:<48} {result.wall:>7.2f}s {result.cpu:>7.2f}s "
            f"{len(result.walls):>5} {speedup:>14}"
        )
        lines.extend(f"    problem: {problem}" for problem in result.problems)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--first-port", type=int, default=24001, help="search free ports from")
    parser.add_argument("--skip-clush", action="store_true")
    parser.add_argument("--skip-tidectl", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    reason = unavailable_reason()
    if reason:
        print(f"fanout: {reason}", file=sys.stderr)
        return 2
    # One descriptor per connection for the transport; Debian's soft limit is 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    base_dir = Path(tempfile.mkdtemp(prefix="tidectl-fanout-"))
    results: list[Measurement | str] = []
    try:
        first_port = free_port_block(args.hosts, args.first_port)
        with SshdHosts(base_dir, args.hosts, first_port=first_port) as hosts:
            assert hosts.startup_s is not None
            print(f"{args.hosts} sshd hosts started in {hosts.startup_s:.2f} s", file=sys.stderr)
            if not args.skip_clush:
                ssh_config = hosts.write_ssh_config(base_dir / "ssh_config")
                for method, options in [
                    ("clush -b (defaults)", ""),
                    (f"clush -b -o '{FAST_KEX_OPTION}'", FAST_KEX_OPTION),
                ]:
                    results.append(measure_clush(hosts, ssh_config, method, options, args.repeat))
            if not args.skip_tidectl:
                cluster_toml = hosts.write_cluster_toml(base_dir / "cluster.toml")
                results.append(
                    measure_tidectl_run(cluster_toml, hosts.nodeset, len(hosts), args.repeat)
                )
                results.append(measure_persistent(cluster_toml, len(hosts), args.repeat))
            startup_s = hosts.startup_s
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)

    if args.json:
        figures = [
            {"method": r.method, "walls": r.walls, "cpus": r.cpus, "problems": r.problems}
            if isinstance(r, Measurement)
            else {"unavailable": r}
            for r in results
        ]
        print(json.dumps({"hosts": args.hosts, "startup_s": startup_s, "results": figures}))
    else:
        print(_table(results, args.hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
