"""The sim scheduler's workload: a seeded stream of training jobs.

Jobs arrive at random (exponential gaps), ask for 1 to 8 nodes, and run for minutes to hours
(log-uniform: many short jobs, a few long ones). The stream depends on the seed alone, never on
what the scheduler does with the jobs, so a drain or a burst in a test or the demo changes
where jobs run but never which jobs arrive. ``time_scale`` compresses the real-world times
(gaps, durations, limits) so the demo shows an hour of work in a minute.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from tidectl.console.scheduler.base import InvalidRequestError

__all__ = ["Arrival", "JobSpec", "Workload", "arrivals"]

_LIMIT_STEP_S: Final = 900.0  # time limits are rounded up to a quarter hour, as people write them
_LIMIT_MARGIN: Final = 1.25  # people ask for more time than a job needs

_USERS: Final = ("ana", "bo", "chen", "dmitri", "eve", "farah")
_NAMES: Final = (
    "llm-pretrain",
    "sft-sweep",
    "rlhf-ppo",
    "eval-harness",
    "vit-finetune",
    "moe-ablation",
    "diffusion-train",
    "tokenizer-build",
)
# Nodes per job, and GPUs per node for single-node jobs, with how often each is drawn.
_NODE_COUNTS: Final = ((1, 50), (2, 20), (4, 18), (8, 12))
_SINGLE_NODE_GPUS: Final = ((1, 15), (2, 15), (4, 20), (8, 50))


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as submitted: what it asks for and how long it will really run (``duration_s``,
    which the scheduler uses and a real one would not know). Times in sim clock seconds."""

    name: str
    user: str
    node_count: int
    gpus_per_node: int
    duration_s: float
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.user:
            raise InvalidRequestError(
                f"a job needs a name and a user (got name={self.name!r}, user={self.user!r})"
            )
        counts = (("node_count", self.node_count), ("gpus_per_node", self.gpus_per_node))
        for label, value in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(
                    f"job {self.name!r}: {label} must be a whole number of at least 1, "
                    f"not {value!r}"
                )
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise InvalidRequestError(
                f"job {self.name!r}: duration_s must be a positive number of seconds, "
                f"not {self.duration_s!r}"
            )
        # A job past its limit is killed by the scheduler. The sim never kills a job, so a
        # spec that would need it is refused here.
        if self.time_limit_s is not None and self.time_limit_s < self.duration_s:
            raise InvalidRequestError(
                f"job {self.name!r}: its time limit ({self.time_limit_s} s) is shorter than its "
                f"duration ({self.duration_s} s); give it a limit of at least its duration"
            )


@dataclass(frozen=True, slots=True)
class Workload:
    """How the seeded job stream is drawn. Times are real-world seconds before ``time_scale``."""

    mean_gap_s: float = 900.0  # mean time between arrivals (keeps roughly 13 8-GPU nodes busy)
    min_duration_s: float = 300.0  # five minutes
    max_duration_s: float = 6 * 3600.0  # six hours
    max_nodes: int = 8  # node counts above this are not drawn
    full_node_gpus: int = 8  # a multi-node job takes this many GPUs on each of its nodes
    time_scale: float = 1.0  # multiplies every time above: 1/60 shows an hour in a minute
    max_queue: int = 100  # arrivals while this many jobs wait are dropped (people stop queuing)

    def __post_init__(self) -> None:
        for name in ("mean_gap_s", "min_duration_s", "max_duration_s", "time_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidRequestError(
                    f"the workload's {name} must be a positive number, not {value!r}"
                )
        if self.max_duration_s < self.min_duration_s:
            raise InvalidRequestError(
                f"the workload's max_duration_s ({self.max_duration_s}) is below its "
                f"min_duration_s ({self.min_duration_s}); swap them"
            )
        for name in ("max_nodes", "full_node_gpus", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(
                    f"the workload's {name} must be a whole number of at least 1, not {value!r}"
                )


@dataclass(frozen=True, slots=True)
class Arrival:
    """A job that arrives at ``at`` (sim clock seconds)."""

    at: float
    spec: JobSpec


def arrivals(workload: Workload, seed: int, start: float) -> Iterator[Arrival]:
    """The endless, seeded stream of arrivals after ``start``, in time order."""
    rng = random.Random(seed)
    scale = workload.time_scale
    node_counts = [n for n, _ in _NODE_COUNTS if n <= workload.max_nodes] or [1]
    node_weights = [w for n, w in _NODE_COUNTS if n <= workload.max_nodes] or [1]
    gpu_choices = [g for g, _ in _SINGLE_NODE_GPUS if g <= workload.full_node_gpus] or [1]
    gpu_weights = [w for g, w in _SINGLE_NODE_GPUS if g <= workload.full_node_gpus] or [1]
    low, high = math.log(workload.min_duration_s), math.log(workload.max_duration_s)
    at = start
    while True:
        at += rng.expovariate(1.0 / workload.mean_gap_s) * scale
        node_count = rng.choices(node_counts, node_weights)[0]
        if node_count == 1:
            gpus = rng.choices(gpu_choices, gpu_weights)[0]
        else:
            gpus = workload.full_node_gpus
        duration = math.exp(rng.uniform(low, high))
        limit = math.ceil(duration * _LIMIT_MARGIN / _LIMIT_STEP_S) * _LIMIT_STEP_S
        spec = JobSpec(
            name=rng.choice(_NAMES),
            user=rng.choice(_USERS),
            node_count=node_count,
            gpus_per_node=gpus,
            duration_s=duration * scale,
            time_limit_s=limit * scale,
        )
        yield Arrival(at, spec)
