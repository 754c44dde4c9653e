"""The collector's cost at scale: N simulated nodes at 1 Hz, the sim server in another process.

Starts ``tidectl sim serve --nodes N`` as a subprocess, then runs the real Collector and Fleet
in this process against it (real SSH, real agent deploy over SFTP, real decoding) — or, with
``--workers N``, the real ``ShardedCollector``: N worker processes receive and judge, and this
process's fleet takes their digests. After a warm-up it measures, over ``--seconds``:

* this process's CPU (user + system) as a share of one core; the workers' CPU, and the two
  together;
* the latency from each sample's timestamp (taken on the simulated node when the tick
  started) to the moment this process's fleet has it: median, p99, max (with workers, one
  sample in five);
* samples applied per second, and nodes streaming.

    python bench/collector_load.py --nodes 1000 --seconds 60 [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import msgspec

from tidectl.console import gc_tuning, schema
from tidectl.console.collector import Collector
from tidectl.console.config.loader import load_config
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState
from tidectl.console.shard.collector import ShardedCollector
from tidectl.console.shard.digest import NodeDigest

GOAL_CPU_PCT = 15.0
#: With collector workers, one sample in this many is timed (see ``TimedFleet.take``).
LATENCY_EVERY = 5


class _Ts(msgspec.Struct):
    ts: float


_TS = msgspec.json.Decoder(_Ts)
GOAL_P99_MS = 200.0


class TimedFleet(Fleet):
    """The real fleet, noting how old each sample is when it is applied."""

    latencies: list[float]
    recording = False
    _taken = 0

    def on_sample(self, name: str, sample: schema.Sample, line: bytes | None = None) -> None:
        super().on_sample(name, sample, line)
        if self.recording:
            self.latencies.append(time.time() - float(sample.ts))

    def take(self, name: str, digest: NodeDigest) -> bool:
        """With collector workers: one digest in ``LATENCY_EVERY`` is timed (reading a line's
        ``ts`` parses the line: timing every one would add ~1.5 points to what is measured)."""
        moved = super().take(name, digest)
        if self.recording and digest.line is not None:
            self._taken += 1
            if self._taken % LATENCY_EVERY == 0:
                ts = _TS.decode(digest.line).ts
                self.latencies.append(time.time() - float(ts))
        return moved


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    config_path: Path,
    *,
    nodes: int,
    warmup_s: float,
    seconds: float,
    tune_gc: bool,
    workers: int = 0,
) -> dict[str, object]:
    if tune_gc:  # as tidectl console does (console/gc_tuning.py)
        gc_tuning.tune_for_streaming()
    config = load_config(config_path)
    fleet = TimedFleet(config.nodes, config.health)
    fleet.latencies = []
    started = time.monotonic()
    collector: Collector | ShardedCollector = (
        ShardedCollector(config, fleet, workers=workers) if workers else Collector(config, fleet)
    )
    async with collector:
        deadline = started + warmup_s + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            streaming = sum(n.link is LinkState.STREAMING for n in fleet.nodes.values())
            if streaming == nodes and time.monotonic() - started >= warmup_s:
                break
            if int(time.monotonic() - started) % 10 == 0:
                links = Counter(n.link.value for n in fleet.nodes.values())
                print(f"{time.monotonic() - started:.0f} s: {dict(links)}", file=sys.stderr)
        connect_s = time.monotonic() - started
        if tune_gc:
            gc_tuning.freeze_long_lived()
        fleet.recording = True
        pids = collector.worker_pids if isinstance(collector, ShardedCollector) else []
        workers0 = sum(_proc_cpu_s(pid) for pid in pids)
        cpu0, wall0, decoded0 = _cpu_s(), time.monotonic(), collector.lines_decoded
        await asyncio.sleep(seconds)
        cpu1, wall1, decoded1 = _cpu_s(), time.monotonic(), collector.lines_decoded
        workers1 = sum(_proc_cpu_s(pid) for pid in pids)
        fleet.recording = False
        streaming = sum(n.link is LinkState.STREAMING for n in fleet.nodes.values())
    lat = sorted(fleet.latencies)
    return {
        "nodes": nodes,
        "streaming_at_end": streaming,
        "all_streaming_after_s": round(connect_s, 1),
        "console_cpu_pct_of_one_core": round(100.0 * (cpu1 - cpu0) / (wall1 - wall0), 2),
        "collector_workers": workers,
        # The workers' share (receiving, decoding, judging), and the whole collection's.
        "workers_cpu_pct_of_one_core": round(100.0 * (workers1 - workers0) / (wall1 - wall0), 2),
        "collection_cpu_pct_of_one_core": round(
            100.0 * (cpu1 - cpu0 + workers1 - workers0) / (wall1 - wall0), 2
        ),
        "lines_per_s": round((decoded1 - decoded0) / (wall1 - wall0), 1),
        "latency_ms_median": round(1000 * statistics.median(lat), 1) if lat else None,
        "latency_ms_p99": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
        "latency_ms_max": round(1000 * lat[-1], 1) if lat else None,
        "samples_measured": len(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--base-port", type=int, default=24001)
    parser.add_argument(
        "--workers", type=int, default=0, help="[collector] workers (0: in the console process)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-gc-tuning", action="store_true", help="leave Python's collector as it comes"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidectl.console",
                "sim",
                "serve",
                "--nodes",
                str(args.nodes),
                "--base-port",
                str(args.base_port),
                "--out",
                tmp,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            ready = server.stdout.readline()
            if "config" not in ready:
                raise SystemExit(f"sim server did not start: {ready!r}")
            server_cpu0 = _proc_cpu_s(server.pid)
            t0 = time.monotonic()
            result = asyncio.run(
                measure(
                    Path(tmp) / "cluster.toml",
                    nodes=args.nodes,
                    warmup_s=args.warmup,
                    seconds=args.seconds,
                    tune_gc=not args.no_gc_tuning,
                    workers=args.workers,
                )
            )
            result["sim_server_cpu_pct_avg"] = round(
                100.0 * (_proc_cpu_s(server.pid) - server_cpu0) / (time.monotonic() - t0), 1
            )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    result["machine"] = (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    result["goal"] = f"console CPU <= {GOAL_CPU_PCT} % of one core, p99 <= {GOAL_P99_MS} ms"
    cpu = result["console_cpu_pct_of_one_core"]
    p99 = result["latency_ms_p99"]
    result["met"] = (
        isinstance(cpu, float)
        and isinstance(p99, float)
        and cpu <= GOAL_CPU_PCT
        and p99 <= GOAL_P99_MS
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value}")


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (the server forks a worker per 500
    nodes; the parent only waits)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(FileNotFoundError):  # a worker that just ended
            total += _proc_cpu_s(int(child))
    return total


if __name__ == "__main__":
    main()
