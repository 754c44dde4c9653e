"""Serving the metrics: a small HTTP endpoint on the console's event loop.

Not prometheus_client's ``start_http_server``: that serves from its own thread, and a scrape
would then read the fleet and the SQLite store while the event loop changes them (a dict that
changes size mid-walk, a connection used from a second thread). Here the source's
``snapshot()`` is taken on the loop — references only, a few milliseconds for a thousand
nodes — and building the families and encoding them, the long part (seconds for a thousand
nodes), runs in a worker thread. The text itself is prometheus_client's own
(``exposition.choose_encoder``: the Prometheus text format, or OpenMetrics when asked).

It binds the one address it is given, by default loopback. ``GET /metrics`` answers; any
other path is 404 and any other method 405. Every response closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Protocol, Self

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

__all__ = [
    "DEFAULT_ADDRESS",
    "MetricsAddressError",
    "MetricsServer",
    "Snapshotting",
    "parse_address",
]

_log = logging.getLogger(__name__)

#: Loopback, on the port the OpenTelemetry/Prometheus exporters conventionally use.
DEFAULT_ADDRESS = "127.0.0.1:9464"
#: The path Prometheus scrapes by default.
METRICS_PATH = "/metrics"
#: A client that has not sent its request head by then is dropped.
REQUEST_TIMEOUT_S = 10.0
#: A request head larger than this is refused (a scrape's is a few hundred bytes).
MAX_HEAD_BYTES = 16 * 1024


class MetricsAddressError(ValueError):
    """An address to serve metrics on that is not ``HOST:PORT``, or cannot be bound."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) into its host and port."""
    hint = f"give HOST:PORT, like {DEFAULT_ADDRESS} or [::1]:9464"
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise MetricsAddressError(
            f"metrics address {text!r} has no host: {hint} (an empty host would listen on "
            "every interface; name the one to serve on)"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise MetricsAddressError(
                f"metrics address {text!r}: {host!r} in brackets is not an IPv6 address; {hint}"
            ) from None
    elif ":" in host:
        raise MetricsAddressError(
            f"metrics address {text!r}: write an IPv6 host in brackets; {hint}"
        )
    try:
        port = int(port_text)
    except ValueError:
        raise MetricsAddressError(
            f"metrics address {text!r}: port {port_text!r} is not a number; {hint}"
        ) from None
    if not 0 <= port <= 65535:
        raise MetricsAddressError(
            f"metrics address {text!r}: port {port} is outside 0-65535; {hint}"
        )
    return host, port


class Snapshotting(Protocol):
    """What the server serves: ``snapshot()`` runs on the loop, its ``collect()`` off it.

    ``metrics.FleetCollector`` is one."""

    def snapshot(self) -> Collector: ...


class MetricsServer:
    """Serves a source's metrics over HTTP at ``address`` until closed.

    ``async with MetricsServer(FleetCollector(fleet, plane), "127.0.0.1:9464"):`` — or
    :meth:`start` and :meth:`aclose`. Port 0 takes a free port; :attr:`address` says which.
    """

    def __init__(self, source: Snapshotting, address: str = DEFAULT_ADDRESS) -> None:
        self.source = source
        self.host, self.port = parse_address(address)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on (the real port when it was given 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the metrics server is not running; start it first")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}{METRICS_PATH}"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_HEAD_BYTES
            )
        except OSError as error:
            raise MetricsAddressError(
                f"cannot serve metrics on {self.host}:{self.port}: {error.strerror or error}; "
                "pick a free port, or an address of this machine"
            ) from None
        _log.info("serving metrics at %s", self.url)

    async def aclose(self) -> None:
        """Stop listening, end the connections still open, and wait for both."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in tuple(self._connections):
            task.cancel()
        for task in tuple(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            status, headers, body = await self._answer(reader)
            head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
            writer.write(("\r\n".join([*head, *headers]) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the scraper went away: nothing to tell it
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, list[str], bytes]:
        """The status line, headers and body for one request."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, ValueError):
            return _text("431 Request Header Fields Too Large", "request head too large\n")
        except TimeoutError:
            return _text("408 Request Timeout", "no request within the timeout\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            return _text("400 Bad Request", "not an HTTP request line\n")
        method, target, _version = parts
        if target.split("?", 1)[0] != METRICS_PATH:
            return _text("404 Not Found", f"metrics are served at {METRICS_PATH}\n")
        if method != "GET":
            status, extra, body = _text("405 Method Not Allowed", "use GET\n")
            return status, [*extra, "Allow: GET"], body
        accept = next(
            (
                value
                for name, sep, value in (line.partition(":") for line in lines[1:])
                if sep and name.strip().lower() == "accept"
            ),
            "",
        )
        return await self._scrape(accept.strip())

    async def _scrape(self, accept: str) -> tuple[str, list[str], bytes]:
        encoder, content_type = choose_encoder(accept)
        try:
            taken = self.source.snapshot()  # on the loop: see the module's doc
            body = await asyncio.get_running_loop().run_in_executor(None, encoder, taken)
        except Exception:
            _log.exception("collecting metrics failed")
            return _text("500 Internal Server Error", "collecting metrics failed; see the log\n")
        return "200 OK", [f"Content-Type: {content_type}"], body


def _text(status: str, message: str) -> tuple[str, list[str], bytes]:
    return status, ["Content-Type: text/plain; charset=utf-8"], message.encode()
