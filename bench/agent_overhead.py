"""What the agent costs a node: CPU time per sample and peak RSS of ``agent stream``.

The agent runs as it does on a bare node: the zipapp under ``python3 -S`` (no site-packages,
so neither psutil nor pynvml), all probes on, ``ib`` over a fake sysfs tree of N HCAs
(``/sys/class/net`` is linked in from the real one, so ``net`` does its full work).

CPU per sample is measured from outside, without the start-up: the agent is run twice, for
``--warmup`` and for ``--warmup + --samples`` samples, and the difference of the two runs'
CPU time (getrusage of the child, microsecond resolution) is divided by ``--samples``. The
agent's own per-tick figure (``agent.cpu_ms`` in each sample) is shown beside it.

    python bench/agent_overhead.py                  # 1 Hz, 30 samples, 8 HCAs (~40 s)
    python bench/agent_overhead.py --interval 0.1 --samples 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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


def _run_agent(
    python: str, pyz: Path, sysfs: Path, count: int, interval: float
) -> tuple[float, list[dict[str, object]], int]:
    """(CPU seconds of the child, its sample records, its peak RSS in bytes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [
            python, "-S", "-I", str(pyz), "stream",
            "--interval", str(interval), "--count", str(count), "--sysfs-root", str(sysfs),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak_rss = 0
    samples = []
    assert proc.stdout is not None
    for line in proc.stdout:
        record = json.loads(line)
        if record["type"] == "sample":
            samples.append(record)
        status = Path(f"/proc/{proc.pid}/status")
        try:
            for field in status.read_text().splitlines():
                if field.startswith("VmHWM:"):
                    peak_rss = max(peak_rss, int(field.split()[1]) * 1024)
        except OSError:
            pass
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"agent failed ({proc.returncode}): {stderr.decode()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, samples, peak_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--hcas", type=int, default=8)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sysfs = Path(tmp) / "sys"
        fake_ib_fleet(str(sysfs), n_hcas=args.hcas)
        (sysfs / "class" / "net").symlink_to("/sys/class/net")
        pyz = Path(tmp) / "agent.pyz"
        build(str(pyz))
        short_cpu, _, _ = _run_agent(args.python, pyz, sysfs, args.warmup, args.interval)
        started = time.monotonic()
        long_cpu, samples, peak_rss = _run_agent(
            args.python, pyz, sysfs, args.warmup + args.samples, args.interval
        )
        wall = time.monotonic() - started

    per_sample_ms = (long_cpu - short_cpu) / args.samples * 1000.0
    own = [float(s["agent"]["cpu_ms"]) for s in samples[args.warmup :]]  # type: ignore[index]
    ports = len(samples[-1]["probes"]["ib"]["ports"])  # type: ignore[index]
    errors = {
        name: section["error"]
        for name, section in samples[-1]["probes"].items()  # type: ignore[attr-defined]
        if "error" in section
    }
    result = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()} (agent run with -S)",
        "interval_s": args.interval,
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
