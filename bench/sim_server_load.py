"""What the simulated cluster costs: the sim server's CPU with N nodes streaming to clients.

The server runs as it does for a console (``python -m tidectl.console.sim.cli serve``) in
its own process; this script, in another, opens one asyncssh connection per node with the
key and known_hosts the server wrote (host keys verified), starts the agent's ``stream`` on
each, and counts the lines that arrive. The agent is **pre-placed** in every node's login
directory (one hard link per node) by default, so the figures are of streaming alone;
``--deploy sftp`` uploads it over each node's SFTP first, as a console's deploy would.

Server CPU is read from ``/proc/PID/task/*/schedstat`` (ns, every thread) at the start and
end of the window, after every stream has sent its first samples.

    python bench/sim_server_load.py                       # 1000 nodes, 1 Hz, 30 s
    python bench/sim_server_load.py --nodes 100 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tidectl.agents import protocol  # noqa: E402
from tidectl.agents.zipapp import archive_bytes  # noqa: E402

REMOTE_DIR = ".cache/tidectl"


def _family(pid: int) -> list[int]:
    """The server and its worker processes."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry.name))
    return pids


def _cpu_ns(pids: list[int]) -> int:
    """CPU time of every thread of ``pids`` so far, in ns (schedstat: not rounded to ticks)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):  # a thread that ended
                    total += int((task / "schedstat").read_text().split()[0])
    return total


def _user_system_s(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` (clock ticks: coarse, but splits the two)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


class Counter:
    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0
        self.hellos_ok = 0
        self.streaming = 0


async def _node(
    index: int,
    port: int,
    *,
    out: Path,
    path: str,
    data: bytes,
    args: argparse.Namespace,
    gate: asyncio.Semaphore,
    counter: Counter,
    stop: asyncio.Event,
) -> None:
    name = f"sim{index + 1:04d}"
    async with gate:
        conn = await asyncssh.connect(
            "127.0.0.1",
            port,
            username="tidectl",
            client_keys=[str(out / "client_key")],
            known_hosts=str(out / "known_hosts"),
            connect_timeout=60,
        )
        if args.deploy == "sftp":
            async with conn.start_sftp_client() as sftp:
                await sftp.makedirs(REMOTE_DIR, exist_ok=True)
                async with sftp.open(path + ".tmp", "wb") as handle:
                    await handle.write(data)
                await sftp.chmod(path + ".tmp", 0o755)
                await sftp.posix_rename(path + ".tmp", path)
    async with conn:
        process = await conn.create_process(
            f"exec python3 {path} stream --interval {args.interval}", encoding=None
        )
        hello = protocol.decode(await process.stdout.readline())
        if hello["facts"]["host"]["hostname"] == name:
            counter.hellos_ok += 1
        counter.streaming += 1
        while not stop.is_set():
            chunk = await process.stdout.read(1 << 16)
            if not chunk:
                break
            counter.lines += chunk.count(b"\n")
            counter.bytes += len(chunk)
        process.close()


async def _measure(
    args: argparse.Namespace, out: Path, pid: int, ports: list[int]
) -> dict[str, object]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.nodes + 256)), hard))
    data = archive_bytes()
    path = f"{REMOTE_DIR}/tidectl-agent-{hashlib.sha256(data).hexdigest()[:16]}.pyz"
    if args.deploy == "place":
        master = out / "agent.pyz"
        master.write_bytes(data)
        for index in range(args.nodes):
            target = out / "nodes" / f"sim{index + 1:04d}" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(master, target)
    pids = _family(pid)
    idle0, idle_t0 = _cpu_ns(pids), time.monotonic()
    await asyncio.sleep(2.0)
    idle_pct = (_cpu_ns(pids) - idle0) / 1e9 / (time.monotonic() - idle_t0) * 100

    counter, stop = Counter(), asyncio.Event()
    gate = asyncio.Semaphore(args.fanout)
    started = time.monotonic()
    cpu_before_connect = _cpu_ns(pids)
    tasks = [
        asyncio.ensure_future(
            _node(
                i,
                ports[i],
                out=out,
                path=path,
                data=data,
                args=args,
                gate=gate,
                counter=counter,
                stop=stop,
            )
        )
        for i in range(args.nodes)
    ]
    while counter.streaming < args.nodes:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise RuntimeError(f"a node failed: {failed[0].exception()!r}")
        await asyncio.sleep(0.1)
    connect_s = time.monotonic() - started
    connect_cpu_s = (_cpu_ns(pids) - cpu_before_connect) / 1e9
    await asyncio.sleep(2 * args.interval)  # every stream past its first samples

    lines0, bytes0 = counter.lines, counter.bytes
    cpu0, client0, t0 = _cpu_ns(pids), time.process_time(), time.monotonic()
    split0 = _user_system_s(pids)
    await asyncio.sleep(args.seconds)
    cpu1, client1, t1 = _cpu_ns(pids), time.process_time(), time.monotonic()
    split1 = _user_system_s(pids)
    lines1, bytes1 = counter.lines, counter.bytes
    rss = _rss_mb(pids)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    window = t1 - t0
    return {
        "nodes": args.nodes,
        "interval_s": args.interval,
        "deploy": args.deploy,
        "seconds": round(window, 2),
        "connect_s": round(connect_s, 2),
        "server_cpu_s_during_connect": round(connect_cpu_s, 2),
        "server_idle_cpu_pct": round(idle_pct, 2),
        "server_cpu_pct": round((cpu1 - cpu0) / 1e9 / window * 100, 1),
        "server_user_pct": round((split1[0] - split0[0]) / window * 100, 1),
        "server_system_pct": round((split1[1] - split0[1]) / window * 100, 1),
        "server_cpu_ms_per_sample": round((cpu1 - cpu0) / 1e6 / max(1, lines1 - lines0), 3),
        "server_processes": len(pids),
        "server_rss_mb": round(rss, 1),
        "client_cpu_pct": round((client1 - client0) / window * 100, 1),
        "samples_per_s": round((lines1 - lines0) / window, 1),
        "expected_samples_per_s": round(args.nodes / args.interval, 1),
        "mb_per_s": round((bytes1 - bytes0) / window / 1e6, 2),
        "hellos_with_right_hostname": counter.hellos_ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fanout", type=int, default=64, help="connects in flight at once")
    parser.add_argument("--deploy", choices=("place", "sftp"), default="place")
    parser.add_argument("--workers", type=int, default=0, help="server workers (0: automatic)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="tidectl-simbench-"))
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tidectl.console.sim.cli", "serve"),
            *("--nodes", str(args.nodes), "--base-port", "0", "--out", str(out)),
            *("--workers", str(args.workers)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, object] = {}
    try:
        assert server.stdout is not None
        started = time.monotonic()
        ready = server.stdout.readline()
        ready_s = time.monotonic() - started
        if not ready.startswith("tidectl sim:"):
            raise SystemExit(f"the server did not start: {ready!r}")
        span = ready.split(" on ", 1)[1].split(";", 1)[0].rsplit(":", 1)[1]
        first = int(span.split("-")[0])
        ports = [first + i for i in range(args.nodes)]
        result["server_ready_s"] = round(ready_s, 2)
        result.update(asyncio.run(_measure(args, out, server.pid, ports)))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            result_code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            result_code = server.wait()
        shutil.rmtree(out, ignore_errors=True)
    result["server_exit_status"] = result_code
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
