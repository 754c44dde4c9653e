"""``[server]``: where ``tidectl serve`` listens, and that front ends attach to it.

    [server]
    socket = "/run/tidectl/onprem-a.sock"   # commands act through the service listening here
    group = "tidectl"                       # members may connect (the socket is mode 0660)
    metrics = "127.0.0.1:9464"              # Prometheus metrics, served by the service
    reconcile_interval_s = 5                # between reconcile passes nothing asked for

With ``socket`` set, ``tidectl burst``/``drain``/… send their requests to the service instead
of acting from their own process. A relative path is relative to cluster.toml's folder.
"""

from __future__ import annotations

from tidectl.console.config.model import ServerSettings
from tidectl.console.config.readers import resolve_path
from tidectl.console.config.table import Table

__all__ = ["read_server"]

#: A Unix socket's path must fit in sun_path (108 bytes, with its terminating NUL).
MAX_SOCKET_PATH = 107


def read_server(table: Table | None) -> ServerSettings:
    if table is None:
        return ServerSettings()
    socket_text = table.string("socket", None, example='socket = "/run/tidectl/lab.sock"')
    group = table.string("group", None, example='group = "tidectl"')
    metrics = table.string("metrics", None, example='metrics = "127.0.0.1:9464"')
    interval = table.number("reconcile_interval_s", 5.0, at_least=0.1, at_most=3600.0)
    table.finish()
    socket = None
    if socket_text is not None:
        socket = resolve_path(table, "socket", socket_text)
        if len(str(socket).encode()) > MAX_SOCKET_PATH:
            raise table.error(
                "socket",
                f"[server] socket {socket} is {len(str(socket).encode())} bytes long; a Unix "
                f"socket's path must be at most {MAX_SOCKET_PATH}: choose a shorter one",
            )
    return ServerSettings(
        socket=socket, group=group, metrics=metrics, reconcile_interval_s=interval
    )
