"""Playbooks: scripted bursts, drains and checks over the same ``ControlPlane`` as every front end.

A playbook is a YAML file of steps (docs/playbooks.md); ``tidectl play PLAYBOOK.yaml`` runs
it, ``--check`` prints its plan. The same steps are plain async functions for Python::

    import tidectl.playbooks as pb

    async with pb.open_cluster("cluster.toml") as cluster:
        await pb.burst(cluster, "h100-east", ensure=4, wait="15m")
        await pb.run(cluster, {"pool": "h100-east"}, "nvidia-smi -L")
        await pb.terminate(cluster, {"launched": True}, reason="done", wait="10m")

and, for scripts and notebooks, synchronous methods::

    with pb.connect("cluster.toml") as cp:
        cp.burst("h100-east", ensure=4, wait="15m")

    report = pb.connect("cluster.toml").play(pb.load("burst-for-training.yaml"))

Names load when first used (``tidectl`` itself stays quick to start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidectl.playbooks.api import (
        burst,
        check,
        drain,
        notify,
        resume,
        run,
        terminate,
        wait,
    )
    from tidectl.playbooks.errors import PlaybookError, SchemaError, StepFailed
    from tidectl.playbooks.model import Condition, Expect, Playbook, Select
    from tidectl.playbooks.opening import SyncSession, connect, open_cluster
    from tidectl.playbooks.report import NodeChange, RunReport, StepReport
    from tidectl.playbooks.runner import play
    from tidectl.playbooks.schema import load, parse
    from tidectl.playbooks.session import Session

__all__ = [
    "Condition",
    "Expect",
    "NodeChange",
    "Playbook",
    "PlaybookError",
    "RunReport",
    "SchemaError",
    "Select",
    "Session",
    "StepFailed",
    "StepReport",
    "SyncSession",
    "burst",
    "check",
    "connect",
    "drain",
    "load",
    "notify",
    "open_cluster",
    "parse",
    "play",
    "resume",
    "run",
    "terminate",
    "wait",
]

_WHERE = {
    **dict.fromkeys(
        ("burst", "check", "drain", "notify", "resume", "run", "terminate", "wait"), "api"
    ),
    **dict.fromkeys(("SyncSession", "connect", "open_cluster"), "opening"),
    **dict.fromkeys(("PlaybookError", "SchemaError", "StepFailed"), "errors"),
    **dict.fromkeys(("Condition", "Expect", "Playbook", "Select"), "model"),
    **dict.fromkeys(("NodeChange", "RunReport", "StepReport"), "report"),
    "play": "runner",
    "load": "schema",
    "parse": "schema",
    "Session": "session",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tidectl.playbooks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tidectl.playbooks.{module}"), name)
    globals()[name] = value
    return value
