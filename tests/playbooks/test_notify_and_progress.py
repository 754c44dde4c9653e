"""``notify`` to a webhook on loopback (a real HTTP server: it gets the JSON, and an answer of
500 fails the step), and how progress shows: rewritten in place on a terminal, plain lines
without one."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.playbooks.conftest import opened
from tidectl.console.demo import DemoCluster
from tidectl.playbooks import StepFailed
from tidectl.playbooks.progress import LineReporter, TerminalReporter, reporter_for
from tidectl.playbooks.report import NodeChange, StepReport


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, object]]]] = []
    status: ClassVar[int] = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self.received.append((self.headers["Content-Type"], body))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    class Hook(_Hook):
        received: ClassVar[list[tuple[str, dict[str, object]]]] = []

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Hook
    server.shutdown()
    server.server_close()
    thread.join()


async def test_notify_posts_its_json_to_a_webhook_and_a_refusal_fails_the_step(
    demo: DemoCluster, tmp_path: Path, webhook: tuple[str, type[_Hook]]
) -> None:
    url, hook = webhook
    async with opened(demo, tmp_path / "store.sqlite3") as session:
        report = await session.notify("burning {{ burn_per_hour }}", webhook=url)
        assert report.sentence == "burning $0.00/h"
        assert report.details == [{"webhook": url, "status": 204}]
        ((kind, body),) = hook.received
        assert kind == "application/json"
        assert body["message"] == "burning $0.00/h" and body["changed"] == []
        assert body["playbook"] == "script" and body["burn_per_hour"] == 0.0

        hook.status = 500
        with pytest.raises(
            StepFailed, match=r"the webhook http://127\.0\.0\.1:\d+/hook answered 500"
        ):
            await session.notify("again", webhook=url)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _waited(out: io.StringIO) -> str:
    reporter = reporter_for(out)
    reporter.starting(1, 2, "drain the pool", "drain")
    for text, at in (("2 draining", 0.0), ("2 draining", 1.0), ("2 drained", 2.0)):
        reporter.update(text, at)
    done = StepReport(1, "drain the pool", "drain", 3, "done", "2 node(s) drained")
    done.changes.append(NodeChange("b-1", "active", "drained"))
    reporter.finished(done)
    return out.getvalue()


def test_progress_is_rewritten_in_place_on_a_terminal_and_plain_lines_elsewhere() -> None:
    assert isinstance(reporter_for(_Terminal()), TerminalReporter)
    assert type(reporter_for(io.StringIO())) is LineReporter
    plain = _waited(io.StringIO())
    assert "\x1b" not in plain and "\r" not in plain
    assert plain.splitlines() == [
        "[1/2] drain the pool (drain)",
        "         0.0 s  2 draining",  # once: the same news is not said twice
        "         2.0 s  2 drained",
        "     2 node(s) drained",
        "       b-1: active -> drained",
    ]
    live = _waited(_Terminal())
    assert live.count("\r\x1b[K") == 4  # three updates in place, then cleared for the outcome
    assert live.endswith("\r\x1b[K     2 node(s) drained\n       b-1: active -> drained\n")
