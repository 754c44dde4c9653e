"""The console's cost per agent line, without SSH: msgspec decode + ``Fleet.on_sample``.

N simulated nodes (the real sim probes and the real agent ``Stream``) produce a few ticks of
real lines; the console side decodes and applies them, as the collector does, with CPU time
measured per line (``time.process_time``, after one warm-up tick). At 1,000 nodes and 1 Hz,
``us_per_line / 10_000`` is the share of one core this part costs.

    python bench/console_apply.py --nodes 200 --ticks 6
"""

from __future__ import annotations

import argparse
import time

import msgspec
from sim_lines import lines_for  # bench/, on the path when run as a script

from tidectl.console import schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet
from tidectl.console.thresholds import HealthThresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the apply")
    args = parser.parse_args()

    clock = [1000.0]
    specs = [
        NodeSpec(name=f"n{i:04d}", address="127.0.0.1", port=1, site="s", user="u")
        for i in range(args.nodes)
    ]
    fleet = Fleet(specs, HealthThresholds(), clock=lambda: clock[0])
    decoder = msgspec.json.Decoder(schema.Record)
    hellos, ticks = lines_for(specs, args.ticks)
    for spec, hello in zip(specs, hellos, strict=True):
        fleet.on_hello(spec.name, decoder.decode(hello))

    def apply(batch: list[list[bytes]]) -> None:
        for lines in batch:
            clock[0] += 1.0
            for spec, line in zip(specs, lines, strict=True):
                fleet.on_sample(spec.name, decoder.decode(line))

    apply(ticks[:1])
    measured = ticks[1:]
    count = len(measured) * args.nodes
    start = time.process_time()
    for lines in measured:
        for line in lines:
            decoder.decode(line)
    decode_us = (time.process_time() - start) / count * 1e6
    start = time.process_time()
    apply(measured)
    total_us = (time.process_time() - start) / count * 1e6
    print(f"line size: {len(ticks[0][0])} bytes")
    print(f"decode: {decode_us:.1f} us/line; decode + apply: {total_us:.1f} us/line")
    print(f"at 1,000 nodes x 1 Hz: {total_us / 10:.1f} % of one core (SSH not included)")
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        apply(measured)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
