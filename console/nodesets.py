"""Node sets as values: fold names into ``gpu[001-060,062]``, expand them back, group by result.

ClusterShell's ``NodeSet`` is the HPC standard for this syntax (Slurm and ``clush`` read the
same), so we use it rather than a parser of our own. Group resolution (``@rack1``) is turned
off everywhere: it would read ``/etc/clustershell/groups.conf`` on whatever machine the
console runs on, and a node name must mean the same thing on every machine.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet
from ClusterShell.NodeSet import NodeSetException as _ClusterShellError

K = TypeVar("K", bound=Hashable)


class NodeSetError(ValueError):
    """A node set that cannot be read; the message says what is wrong with it."""


def _nodeset(pattern: str) -> NodeSet:
    try:
        return NodeSet(pattern, resolver=RESOLVER_NOGROUP)
    except _ClusterShellError as exc:
        raise NodeSetError(f"cannot read node set {pattern!r}: {exc}") from None


def _fromlist(names: Iterable[str]) -> NodeSet:
    listed = list(names)
    try:
        return NodeSet.fromlist(listed, resolver=RESOLVER_NOGROUP)
    except _ClusterShellError as exc:
        raise NodeSetError(f"cannot fold node names {listed[:5]!r}: {exc}") from None


def fold(names: Iterable[str]) -> str:
    """``["gpu001", "gpu002", "gpu004"]`` → ``"gpu[001-002,004]"``; no names → ``""``."""
    return str(_fromlist(names))


def expand(pattern: str) -> list[str]:
    """``"gpu[001-003]"`` → ``["gpu001", "gpu002", "gpu003"]``, in node set order.

    Raises NodeSetError for a pattern that is not a node set (``"gpu[001-"``).
    """
    return list(_nodeset(pattern))


def count(pattern: str) -> int:
    """How many nodes a folded pattern holds, without listing them."""
    return len(_nodeset(pattern))


def group(by_key: Mapping[str, K]) -> list[tuple[str, K]]:
    """Nodes with equal keys folded together, like ``clush -b``: ``[("gpu[001-063]", "ok"), …]``.

    Largest group first, then by the first node of each group in node set order (``gpu9``
    before ``gpu10``), which is how ``clush -b`` orders its output.
    """
    if not by_key:
        return []
    members: dict[K, list[str]] = {}
    for name, key in by_key.items():
        members.setdefault(key, []).append(name)
    # One fold of every name gives each node its natural position (gpu9 < gpu10).
    position = {name: index for index, name in enumerate(_fromlist(by_key))}
    groups = [
        (len(names), min(position[name] for name in names), fold(names), key)
        for key, names in members.items()
    ]
    groups.sort(key=lambda item: (-item[0], item[1]))
    return [(folded, key) for _, _, folded, key in groups]
