"""A pool's policy changed while the control plane runs: the notebook's Adaptive mode.

``[pools.policy]`` in cluster.toml is where a pool's automation is written down. An admin may
change three of its settings at run time — ``min_nodes`` (idle drain never goes below),
``burst_on_pressure`` (burst when jobs wait), and the pool's ``max_nodes`` (what anyone may
burst it to) — through ``ControlPlane.set_pool_policy``. The change lives in that control
plane's memory for its life; the file is never rewritten, and a restarted plane reads it
again. ``max_nodes`` may only go down from the file's (or back up to it): the file's is the
cap its owner chose and budgeted for.
"""

from __future__ import annotations

from dataclasses import replace

from tidectl.console.config.model import PoolSpec

__all__ = ["PoolPolicyRefused", "changed_pool", "policy_words"]


class PoolPolicyRefused(Exception):
    """The change cannot be made as asked; ``str()`` says why and what to ask instead."""


def changed_pool(
    current: PoolSpec,
    configured: PoolSpec,
    *,
    min_nodes: int | None = None,
    max_nodes: int | None = None,
    burst_on_pressure: bool | None = None,
) -> PoolSpec:
    """``current`` with the settings given (None: keep the current one), checked against
    ``configured`` (the pool as cluster.toml has it). Raises ``PoolPolicyRefused``."""
    name = current.name
    if min_nodes is not None and (not _whole(min_nodes) or min_nodes < 0):
        raise PoolPolicyRefused(f"min_nodes of pool {name} must be a whole number of 0 or more")
    if max_nodes is not None and (not _whole(max_nodes) or max_nodes < 1):
        raise PoolPolicyRefused(f"max_nodes of pool {name} must be a whole number of 1 or more")
    if burst_on_pressure is not None and not isinstance(burst_on_pressure, bool):
        raise PoolPolicyRefused(f"burst_on_pressure of pool {name} must be true or false")
    low = current.policy.min_nodes if min_nodes is None else min_nodes
    high = current.max_nodes if max_nodes is None else max_nodes
    if high > configured.max_nodes:
        raise PoolPolicyRefused(
            f"pool {name} may have at most {configured.max_nodes} nodes (its max_nodes in "
            f"cluster.toml), not {high}; ask for {configured.max_nodes} or fewer, or "
            "raise max_nodes in the file and restart the control plane"
        )
    if low > high:
        raise PoolPolicyRefused(
            f"min_nodes ({low}) of pool {name} is above its max_nodes ({high}); ask for a "
            "minimum at or below the maximum"
        )
    pressure = current.policy.burst_on_pressure if burst_on_pressure is None else burst_on_pressure
    policy = replace(current.policy, min_nodes=low, burst_on_pressure=pressure)
    return replace(current, max_nodes=high, policy=policy)


def policy_words(pool: PoolSpec) -> str:
    """The settings this module changes, as the audit outcome and the events view say them."""
    pressure = "bursts on queue pressure" if pool.policy.burst_on_pressure else "no pressure bursts"
    return f"min_nodes {pool.policy.min_nodes}, max_nodes {pool.max_nodes}, {pressure}"


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
