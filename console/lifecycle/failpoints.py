"""Failpoints: named places in the lifecycle where a test can kill the control plane.

Like etcd's gofail or TiKV's fail-rs, but with one action only. A test starts the control
plane with ``TIDECTL_FAILPOINT=<name>``; when the process reaches that name it kills itself
with SIGKILL, exactly as ``kill -9`` or the OOM killer would: no ``finally`` block, no atexit
handler, no flush. The restarted control plane must then find the world consistent. The
variable is read once, at import; with it unset, :func:`reach` costs one string comparison.

The points, in the order a burst meets them:

``burst.before-launch``
    The burst's intent and its ``requested`` nodes are written; no provider call is made yet.
``burst.after-launch``
    A launch call returned its instances; they are not committed to the store yet.
``reconcile.bootstrapping``
    The reconcile loop wrote a node's move to ``bootstrapping`` (its instance runs).
``reconcile.joining``
    The reconcile loop asked the scheduler to add a node; the node is in ``joining``.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ["ENV", "POINTS", "reach"]

#: The environment variable naming the one armed failpoint.
ENV: Final = "TIDECTL_FAILPOINT"
#: Every failpoint the code reaches (the docstring above says where each one is).
POINTS: Final = frozenset(
    {
        "burst.before-launch",
        "burst.after-launch",
        "reconcile.bootstrapping",
        "reconcile.joining",
    }
)

#: The armed failpoint's name, or None: read once, so reaching a point never looks it up.
_armed: str | None = os.environ.get(ENV) or None


def reach(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is the armed failpoint; else do nothing.

    The name goes to stderr first (one unbuffered write), so a test can tell a kill at the
    point it armed from a crash anywhere else.
    """
    if name == _armed:
        os.write(2, f"failpoint {name}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
