"""The Textual console at scale: first frame, apply per tick, and key-to-repaint latency.

N simulated nodes (the real sim probes and agent ``Stream``) produce real wire lines ahead
of time; during the run a feeder replays them at 1 Hz per node, spread evenly over each
second, decoding each line and applying it to the fleet exactly as the collector does. The
console runs headless (Textual's ``run_test``) on the same event loop, so every figure
includes the feeder's own load. SSH is left out on purpose: on this 2-core machine a
1,000-node sim server plus its SSH would starve the UI being measured (bench/collector_load.py
measures the transport).

    python bench/console_tui.py --nodes 1000 --seconds 10

Figures:
* first frame: from creating the app to the first full screen with every node in the table
  (plus, separately, the import time of the console in a fresh interpreter);
* apply: the table's work per fleet flush (every 0.1 s), and summed per second of streaming
  (one tick of every node);
* key to repaint: ``down`` pressed while streaming, until the app is idle again (key handled,
  screen composed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import msgspec
from sim_lines import lines_for  # bench/, on the path when run as a script
from textual import events
from textual.strip import Strip

from tidectl.console import schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.tui.app import ConsoleApp


def import_seconds() -> float:
    code = (
        "import time; t = time.perf_counter(); import tidectl.console.tui.app; "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def key_latencies(app: ConsoleApp, stop: asyncio.Event) -> list[float]:
    """Until ``stop``: a cursor key every 0.25 s, timed until the new cursor line is drawn."""
    keys: list[float] = []
    table = app.fleet_screen.table
    drawn: dict[int, float] = {}  # cursor line → when it was first drawn as the cursor
    draw_line = table.render_line

    def render_line(y: int) -> Strip:
        strip = draw_line(y)
        if int(table.scroll_y) + y == table.cursor:
            drawn.setdefault(table.cursor, time.perf_counter())
        return strip

    table.render_line = render_line  # type: ignore[method-assign]
    while not stop.is_set():
        step = 1 if len(keys) % 40 < 20 else -1
        target = table.cursor + step
        drawn.pop(target, None)
        pressed = time.perf_counter()
        # As the terminal driver does: a Key event to the app, routed by focus and bindings.
        app.post_message(events.Key("down" if step > 0 else "up", None))
        while target not in drawn:
            await asyncio.sleep(0.0005)
        keys.append(drawn[target] - pressed)
        await asyncio.sleep(0.25)
    return keys


def report(
    args: argparse.Namespace,
    *,
    first_frame: float,
    applies: list[tuple[float, float]],
    since: float,
    keys: list[float],
    cpu: float,
) -> None:
    per_flush = [seconds for _, seconds in applies]
    per_second: dict[int, float] = {}
    for when, seconds in applies:
        per_second[int(when - since)] = per_second.get(int(when - since), 0.0) + seconds
    full_seconds = [v for k, v in per_second.items() if k < max(per_second)]
    print(f"console import in a fresh interpreter: {import_seconds() * 1000:.0f} ms")
    print(f"first full frame ({args.nodes} nodes in the table): {first_frame * 1000:.0f} ms")
    print(
        f"apply per flush: median {statistics.median(per_flush) * 1000:.1f} ms, "
        f"p95 {pct(per_flush, 0.95) * 1000:.1f} ms ({len(per_flush)} flushes)"
    )
    print(
        f"apply per tick (all nodes, summed per second): median "
        f"{statistics.median(full_seconds) * 1000:.1f} ms, max {max(full_seconds) * 1000:.1f} ms"
    )
    print(
        f"key to repaint while streaming: median {statistics.median(keys) * 1000:.1f} ms, "
        f"p95 {pct(keys, 0.95) * 1000:.1f} ms ({len(keys)} presses)"
    )
    print(f"process CPU while streaming (feeder + console): {cpu * 100:.0f} % of one core")


async def run(args: argparse.Namespace) -> None:
    specs = [
        NodeSpec(name=f"sim{i:04d}", address="127.0.0.1", port=1, site="sim", user="u")
        for i in range(1, args.nodes + 1)
    ]
    started = time.perf_counter()
    hellos, ticks = lines_for(specs, args.seconds + 2)
    print(
        f"{args.nodes} nodes, {len(ticks)} ticks of real lines made in "
        f"{time.perf_counter() - started:.1f} s ({len(ticks[0][0])} bytes a line)"
    )
    decoder = msgspec.json.Decoder(schema.Record)

    fleet = Fleet(specs, HealthThresholds())
    t0 = time.perf_counter()
    app = ConsoleApp(fleet, "bench")
    applies: list[tuple[float, float]] = []  # (when, seconds)
    screen = app.fleet_screen
    original = screen.apply_pending

    def timed_apply() -> None:
        original()
        applies.append((time.perf_counter(), screen.last_apply_s))

    screen.apply_pending = timed_apply  # type: ignore[method-assign]
    async with app.run_test(size=(200, 60)) as pilot:
        while len(screen.table.lines) < args.nodes:
            await asyncio.sleep(0.005)
        await pilot.pause()
        first_frame = time.perf_counter() - t0

        for spec, hello in zip(specs, hellos, strict=True):
            fleet.on_link(spec.name, LinkState.STREAMING)
            fleet.on_hello(spec.name, decoder.decode(hello))

        stop = asyncio.Event()

        async def feed() -> None:
            slices = 100  # every 10 ms, a hundredth of the nodes
            per = max(1, args.nodes // slices)
            for lines in ticks:
                second = time.perf_counter()
                for start in range(0, args.nodes, per):
                    for spec, line in zip(
                        specs[start : start + per], lines[start : start + per], strict=True
                    ):
                        fleet.on_sample(spec.name, decoder.decode(line))
                    due = second + (start + per) / args.nodes
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
            stop.set()

        feeder = asyncio.create_task(feed())
        await asyncio.sleep(2.0)  # one tick of warm-up: rates, history, sparklines
        applies.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        keys = await key_latencies(app, stop)
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        await feeder

    report(args, first_frame=first_frame, applies=applies, since=wall0, keys=keys, cpu=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
