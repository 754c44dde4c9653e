"""A fake ``nvidia-smi`` executable that answers CSV queries the way the real one does.

``FakeNvidiaSmi(directory)`` writes ``directory/nvidia-smi`` (a Python script) next to a JSON
file it reads on every run, so a test changes its answers with :meth:`FakeNvidiaSmi.configure`
between calls. It answers ``--query-gpu=...`` and ``--query-remapped-rows=...`` with
``--format=csv[,noheader][,nounits]`` in nvidia-smi's format: values joined by ``", "``, units
(``MiB``, ``W``, ``%``, ``MHz``) after numbers unless ``nounits``, a header unless ``noheader``,
``[N/A]`` for what a GPU lacks, ``Field "x" is not a valid field to query.`` (exit status 2)
for a field this driver does not know, ``Invalid combination of input arguments`` for an
option it does not know. Modes: ``ok``, ``hang`` (sleeps, as when the driver is wedged),
``fail`` (the message and exit status 9 of a node whose driver is not loaded).
Every run appends its arguments to ``calls.jsonl`` and its pid to ``pids``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: A healthy H100 as nvidia-smi 550 shows it, keyed by query field name.
H100: dict[str, str] = {
    "index": "0",
    "uuid": "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e80",
    "name": "NVIDIA H100 80GB HBM3",
    "serial": "1654922001230",
    "pci.bus_id": "00000000:18:00.0",
    "driver_version": "550.54.15",
    "utilization.gpu": "87",
    "utilization.memory": "41",
    "memory.used": "61234",
    "memory.total": "81559",
    "temperature.gpu": "54",
    "power.draw": "412.35",
    "power.limit": "700.00",
    "clocks.sm": "1980",
    "ecc.errors.corrected.volatile.total": "3",
    "ecc.errors.uncorrected.volatile.total": "0",
    "ecc.errors.corrected.aggregate.total": "17",
    "ecc.errors.uncorrected.aggregate.total": "0",
    # Hopper retires no pages (it remaps rows): nvidia-smi prints [N/A].
    "retired_pages.sbe": "[N/A]",
    "retired_pages.dbe": "[N/A]",
    "retired_pages.pending": "[N/A]",
    "pcie.link.gen.current": "5",
    "pcie.link.gen.max": "5",
    "pcie.link.width.current": "16",
    "pcie.link.width.max": "16",
    "remapped_rows.correctable": "2",
    "remapped_rows.uncorrectable": "0",
    "remapped_rows.pending": "0",
    "remapped_rows.failure": "0",
}

#: Units nvidia-smi prints after a number (and in the header) unless ``nounits``.
UNITS: dict[str, str] = {
    "utilization.gpu": "%",
    "utilization.memory": "%",
    "memory.used": "MiB",
    "memory.total": "MiB",
    "power.draw": "W",
    "power.limit": "W",
    "clocks.sm": "MHz",
}

#: Other names nvidia-smi accepts for the same field.
ALIASES: dict[str, str] = {
    "clocks.current.sm": "clocks.sm",
    "retired_pages.single_bit_ecc.count": "retired_pages.sbe",
    "retired_pages.double_bit.count": "retired_pages.dbe",
    "gpu_uuid": "uuid",
    "gpu_bus_id": "pci.bus_id",
    "gpu_name": "name",
}

REMAP_FIELDS = {
    "gpu_uuid",
    "gpu_bus_id",
    "gpu_name",
    "remapped_rows.correctable",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
}

DRIVER_NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


def h100(index: int) -> dict[str, str]:
    """The H100 above as GPU ``index`` (its own index, UUID, serial and bus id)."""
    gpu = dict(H100)
    gpu.update(
        {
            "index": str(index),
            "uuid": H100["uuid"][:-1] + str(index),
            "serial": H100["serial"][:-1] + str(index),
            "pci.bus_id": "00000000:%02X:00.0" % (0x18 + 0x10 * index),
        }
    )
    return gpu


_SCRIPT = r"""
import json, os, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "config.json")) as handle:
    CONFIG = json.load(handle)
with open(os.path.join(HERE, "calls.jsonl"), "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\n")
with open(os.path.join(HERE, "pids"), "a") as handle:
    handle.write("%d\n" % os.getpid())

options = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg)
for option in options:
    if option.lstrip("-") in CONFIG["unknown_options"]:
        print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
        print("")
        sys.exit(2)
if "--query-gpu" in options:
    kind = "query-gpu"
elif "--query-remapped-rows" in options:
    kind = "query-remapped-rows"
else:
    print("fake nvidia-smi: only --query-gpu and --query-remapped-rows are implemented")
    sys.exit(2)

if CONFIG["raw_output"] is not None:
    sys.stdout.write(CONFIG["raw_output"])
    sys.exit(CONFIG["exit_status"])
mode = CONFIG["mode_for"].get(kind, CONFIG["mode"])
if mode == "hang":
    time.sleep(3600)
if mode == "fail":
    print(CONFIG["fail_message"] + "\n")
    sys.exit(9)
fields = options["--" + kind].split(",")
fmt = options.get("--format", "").split(",")
if "csv" not in fmt:
    print('"--format" requires "csv"')
    sys.exit(2)
known = CONFIG["known_fields"][kind]
for name in fields:
    if name not in known or name in CONFIG["unknown_fields"]:
        print('Field "%s" is not a valid field to query.' % name)
        print("")
        sys.exit(2)
if not CONFIG["gpus"]:
    print("No devices were found")
    sys.exit(6)
units = CONFIG["units"]
aliases = CONFIG["aliases"]
out = []
if "noheader" not in fmt:
    out.append(", ".join(
        name + ("" if "nounits" in fmt or name not in units else " [%s]" % units[name])
        for name in fields))
for gpu in CONFIG["gpus"]:
    cells = []
    for name in fields:
        value = gpu.get(aliases.get(name, name), "[N/A]")
        unit = units.get(aliases.get(name, name))
        if unit and "nounits" not in fmt and not value.startswith("["):
            value = "%s %s" % (value, unit)
        cells.append(value)
    out.append(", ".join(cells))
out.extend(CONFIG["extra_lines"])
sys.stdout.write("\n".join(out) + "\n")
sys.exit(CONFIG["exit_status"])
"""


class FakeNvidiaSmi:
    """A fake ``nvidia-smi`` in ``directory``; put ``directory`` first on PATH to use it."""

    def __init__(
        self,
        directory: Path,
        gpus: list[dict[str, str]] | None = None,
        mode: str = "ok",
        **options: Any,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "nvidia-smi"
        self.path.write_text(f"#!{sys.executable}\n{_SCRIPT}", encoding="utf-8")
        self.path.chmod(0o755)
        query_gpu = [name for name in H100 if not name.startswith("remapped_rows")]
        query_gpu += [alias for alias in ALIASES if alias not in REMAP_FIELDS]
        self.config: dict[str, Any] = {
            "mode": mode,
            "gpus": gpus if gpus is not None else [h100(0), h100(1)],
            "extra_lines": [],
            "exit_status": 0,
            "unknown_fields": [],
            "unknown_options": [],
            "mode_for": {},
            "raw_output": None,
            "fail_message": DRIVER_NOT_LOADED,
            "units": UNITS,
            "aliases": ALIASES,
            "known_fields": {
                "query-gpu": query_gpu,
                "query-remapped-rows": sorted(REMAP_FIELDS),
            },
        }
        self.configure(**options)

    def configure(self, **options: Any) -> None:
        """Change the answers of later runs.

        ``gpus``, ``mode``, ``mode_for`` (a mode for one query kind, e.g.
        ``{"query-remapped-rows": "fail"}``), ``extra_lines``, ``exit_status``, ``raw_output``
        (printed instead of any answer), ``unknown_fields`` and ``unknown_options`` (what an
        older driver lacks, e.g. ``"query-remapped-rows"`` before R450), ``fail_message``.
        """
        unknown = set(options) - set(self.config)
        if unknown:
            raise TypeError(f"unknown fake nvidia-smi options: {sorted(unknown)}")
        self.config.update(options)
        (self.directory / "config.json").write_text(json.dumps(self.config), encoding="utf-8")

    def calls(self) -> list[list[str]]:
        """The arguments of every run so far, oldest first."""
        log = self.directory / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    def pids(self) -> list[int]:
        """The process id of every run so far."""
        log = self.directory / "pids"
        if not log.exists():
            return []
        return [int(line) for line in log.read_text(encoding="utf-8").split()]
