"""A local moto EC2 server as a real process on 127.0.0.1, stopped by its own PID.

The ``moto_server`` binary itself is started (not through a shell or ``python -m``), so the
PID we hold is the server's and stopping it cannot hit anything else.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Final

READY_TIMEOUT_S: Final = 15.0
START_ATTEMPTS: Final = 3  # another process may take the free port between our look and bind


def moto_binary() -> Path | None:
    """``moto_server`` next to the running Python (the test extra installs it)."""
    binary = Path(sys.executable).with_name("moto_server")
    return binary if binary.exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MotoServer:
    def __init__(self, binary: Path) -> None:
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: moto logs every request, and a full pipe would stall it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; closed in stop())
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> MotoServer:
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            self._process = subprocess.Popen(
                [str(self._binary), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
            )
            if self._wait_ready():
                return self
            self._stop_process()
            if attempt == START_ATTEMPTS - 1:
                raise RuntimeError(f"moto_server did not start on 127.0.0.1: {self._log_tail()}")
        raise AssertionError("unreachable")

    def reset(self) -> None:
        """Wipe every region's state (``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stop(self) -> None:
        self._stop_process()
        self._log.close()

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-500:]

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                self.reset()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # our own child, by its PID
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
