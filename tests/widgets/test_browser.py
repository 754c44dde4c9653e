"""The panel in a real browser: voila serves a notebook with ``ClusterPanel.demo()`` on
127.0.0.1, Debian's headless Chromium (driven by Playwright, never ``playwright install``)
loads it, clicks Burst, and sees the new node appear in the table. Every request that is not
to loopback is aborted (voila asks a CDN for icon fonts; the panel works without them). The
screenshot is kept for CI in ``artifacts/notebook-panel.png``.

Skipped, with the reason, where Chromium or voila/Playwright are not installed; ``scripts/test``
installs them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SCREENSHOT = ARTIFACTS / "notebook-panel.png"
CHROMIUM = Path("/usr/bin/chromium")
#: Flags that work headless as root, and keep Chromium off the network on its own account.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
SERVE_TIMEOUT_S = 30.0
CELL = "from tidectl.widgets import ClusterPanel\npanel = ClusterPanel.demo(nodes=4)\npanel\n"

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    for module in ("voila", "playwright"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """voila serving the panel's notebook on 127.0.0.1; its URL."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [nbformat.v4.new_code_cell(CELL)]
    nbformat.write(notebook, tmp_path / "panel.ipynb")
    port = _free_port()
    log = (tmp_path / "voila.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            "panel.ipynb",
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not _answers(port):  # a server starting: nothing to await but its port
            assert server.poll() is None, (tmp_path / "voila.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "voila did not listen in time"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        # voila shuts its kernel down on SIGTERM; the demo's cluster ends with the kernel.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_burst_in_chromium_adds_the_new_node_to_the_table(served: str) -> None:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlparse(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,  # Playwright gives it a fresh profile of its own
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", loopback_only)
            page.goto(served, timeout=30_000)
            burst = page.locator(".tidectl-panel button", has_text="Burst")
            burst.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.tidectl-panel button')]"
                ".some(b => b.textContent.includes('+$24.00/h') && !b.disabled)",
                timeout=15_000,
            )
            options = page.locator(".tidectl-table option")
            assert not any("burst-" in text for text in options.all_inner_texts())
            burst.click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.tidectl-table option')]"
                ".some(o => o.textContent.includes('burst-'))",
                timeout=15_000,
            )
            said = page.locator(".tidectl-message-info", has_text="Launched 1 of 1 node(s)")
            said.wait_for(timeout=5_000)
            shown = [text.replace("\u00a0", " ") for text in options.all_inner_texts()]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    (new,) = [line for line in shown if line.startswith("burst-")]
    assert any(state in new for state in ("requested", "provisioning", "bootstrapping")), new
    assert any(line.startswith("sim") and "streaming" in line for line in shown), shown
    assert SCREENSHOT.stat().st_size > 10_000
    assert all(urlparse(url).hostname not in LOOPBACK for url in blocked)
