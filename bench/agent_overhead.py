"""What the agent costs a node: CPU time per sample and peak RSS of ``agent stream``.

The agent runs as it does on a bare node: the zipapp under ``python3 -S`` (no site-packages,
so neither psutil nor pynvml), all probes on, ``ib`` over a fake sysfs tree of N HCAs
(``/sys/class/net`` is linked in from the real one, so ``net`` does its full work).

CPU per sample is measured from outside, without the start-up: the CPU time of all the
agent's threads (``/proc/PID/task/*/schedstat``, in nanoseconds) is read after the
``--warmup``-th sample and after the last, and the difference divided by ``--samples``: it
includes everything, waking up, encoding and writing too. The agent's own figure for the
probes alone (``agent.cpu_ms`` in each sample) is shown beside it.

    python bench/agent_overhead.py                  # 1 Hz, 30 samples, 8 HCAs (~40 s)
    python bench/agent_overhead.py --interval 0.1 --samples 200 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.sysfs_ib import fake_ib_fleet  # noqa: E402
from tidectl.agents.zipapp import build  # noqa: E402

GOAL_CPU_MS = 2.0
GOAL_RSS_MB = 25.0


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns (schedstat: not rounded to ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def _run_agent(
    python: str, pyz: Path, sysfs: Path, args: argparse.Namespace
) -> tuple[float, list[dict[str, object]], int]:
    """(CPU seconds per sample after the warm-up, the sample records, peak RSS in bytes)."""
    count = args.warmup + args.samples
    # Two samples past the measured ones, so the process (and its probe threads) is still
    # alive when the second CPU reading is taken.
    proc = subprocess.Popen(
        [
            python,
            "-S",
            "-I",
            str(pyz),
            "stream",
            "--interval",
            str(args.interval),
            "--count",
            str(count + 2),
            "--sysfs-root",
            str(sysfs),
            "--probes",
            args.probes,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    samples: list[dict[str, object]] = []
    start_ns = end_ns = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        record = json.loads(line)
        if record["type"] != "sample":
            continue
        samples.append(record)
        # Read between a sample's line and the next tick: the interval of CPU between two
        # such reads is exactly the cost of the samples taken in it, start-up excluded.
        if len(samples) == args.warmup:
            start_ns = _cpu_ns(proc.pid)
        elif len(samples) == count:
            end_ns = _cpu_ns(proc.pid)
            peak_rss = _peak_rss(proc.pid)
    _, stderr = proc.communicate()
    if proc.returncode != 0 or not end_ns:
        raise SystemExit(f"agent failed ({proc.returncode}): {stderr.decode()}")
    return (end_ns - start_ns) / 1e9 / args.samples, samples, peak_rss


def _peak_rss(pid: int) -> int:
    for field in Path(f"/proc/{pid}/status").read_text().splitlines():
        if field.startswith("VmHWM:"):
            return int(field.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--hcas", type=int, default=8)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--probes", default="all", help="as the agent's --probes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sysfs = Path(tmp) / "sys"
        fake_ib_fleet(str(sysfs), n_hcas=args.hcas)
        (sysfs / "class" / "net").symlink_to("/sys/class/net")
        pyz = Path(tmp) / "agent.pyz"
        build(str(pyz))
        started = time.monotonic()
        per_sample_s, samples, peak_rss = _run_agent(args.python, pyz, sysfs, args)
        wall = time.monotonic() - started

    per_sample_ms = per_sample_s * 1000.0
    own = [float(s["agent"]["cpu_ms"]) for s in samples[args.warmup :]]  # type: ignore[index]
    ib = samples[-1]["probes"].get("ib", {})  # type: ignore[attr-defined]
    ports = len(ib.get("ports", []))
    errors = {
        name: section["error"]
        for name, section in samples[-1]["probes"].items()  # type: ignore[attr-defined]
        if "error" in section
    }
    result = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()} (agent run with -S)",
        "interval_s": args.interval,
        "probes": args.probes,
        "samples": args.samples,
        "ib_ports": ports,
        "cpu_ms_per_sample": round(per_sample_ms, 3),
        "agent_cpu_ms_median": round(statistics.median(own), 3),
        "agent_cpu_ms_p95": round(sorted(own)[int(0.95 * (len(own) - 1))], 3),
        "peak_rss_mb": round(peak_rss / 1e6, 2),
        "wall_s": round(wall, 1),
        "probe_errors": errors,
        "goal": f"<= {GOAL_CPU_MS} ms CPU per sample, <= {GOAL_RSS_MB} MB RSS",
        "met": per_sample_ms <= GOAL_CPU_MS and peak_rss / 1e6 <= GOAL_RSS_MB,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
