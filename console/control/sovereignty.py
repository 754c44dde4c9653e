"""Data sovereignty: a burst's data class, and whether its pool's region may process it.

Pure rules over the config (``[[data_classes]]``, each pool's ``region`` and ``data_class``),
applied by ``ControlPlane.burst`` before anything is written or asked of a cloud. The
reconcile pass flags instances already running where their class may not go (``Engine``).
"""

from __future__ import annotations

from tidectl.console.config.model import ClusterConfig, PoolSpec

__all__ = ["burst_class"]


def burst_class(
    config: ClusterConfig, pool: PoolSpec, asked: str | None
) -> tuple[str | None, str | None]:
    """The burst's data class (``asked``, else the pool's) and, when the burst may not go,
    the sentence why: an unknown class, none where classes are declared, or a region the
    class does not allow. Without ``[[data_classes]]`` any burst may go (class None)."""
    classes = {c.name: c for c in config.data_classes}
    name = asked or pool.data_class
    if not classes:
        if asked is not None:
            return None, (
                f"data class {asked!r} is not defined: cluster.toml declares no "
                "[[data_classes]] (docs/config.md)"
            )
        return None, None
    if name is None:
        return None, (
            f"this burst names no data class and pool {pool.name} has none: with "
            f"[[data_classes]] declared ({', '.join(sorted(classes))}), a burst must carry "
            "one (--data-class, or the pool's data_class)"
        )
    found = classes.get(name)
    if found is None:
        return name, f"data class {name!r} is not defined (classes: {', '.join(sorted(classes))})"
    if not found.allows(pool.region):
        allowed = ", ".join(found.regions)
        return name, (
            f"data of class {name} may not be processed in {pool.region} (pool {pool.name}): "
            f"{name} may go to {allowed} only; burst into a pool in one of those regions"
        )
    return name, None
