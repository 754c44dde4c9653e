"""Fixtures shared across the suite: real OpenSSH sshd hosts on loopback (tests/harness/sshd.py).

They need root and /usr/sbin/sshd; elsewhere the tests that use them are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.harness.sshd import PortInUseError, SshdHosts, free_port_block, unavailable_reason

# Hypothesis's timing health checks measure the machine, not the code: on a shared 2-core
# CI runner a slow draw of a big nested record failed the suite. The properties still run
# every example; only "generation was slow" and the per-example deadline are off.
settings.register_profile("tidectl", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("tidectl")

# Stores and audit logs without a configured path go under $XDG_DATA_HOME/tidectl: the
# session's own folder, never the home directory of whoever runs the suite (a child process
# a test starts inherits it).
_DATA_HOME = tempfile.mkdtemp(prefix="tidectl-xdg-")
os.environ["XDG_DATA_HOME"] = _DATA_HOME


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_DATA_HOME, ignore_errors=True)


SESSION_HOSTS = 8
SESSION_FIRST_PORT = 22001
FACTORY_FIRST_PORT = 23001  # off the session block, so both can run side by side
PORT_ATTEMPTS = 3  # another test run may take a free block between our look and sshd's bind


@contextmanager
def _started_hosts(count: int, first_port: int, **options: Any) -> Iterator[SshdHosts]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Not pytest's tmp_path: sshd reads authorized_keys as the test user, who cannot pass
    # through /tmp/pytest-of-root (0700).
    base_dir = Path(tempfile.mkdtemp(prefix="tidectl-sshd-"))
    hosts: SshdHosts | None = None
    try:
        for attempt in range(PORT_ATTEMPTS):
            port = free_port_block(count, first_port)
            hosts = SshdHosts(base_dir, count, first_port=port, **options)
            try:
                hosts.start_all()
                break
            except PortInUseError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                first_port = port + count
        assert hosts is not None
        yield hosts
    finally:
        if hosts is not None:
            hosts.close()
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_hosts() -> Iterator[SshdHosts]:
    """8 started sshd hosts (node001-node008) shared by the whole session.

    Use them as they are; a test that stops, rotates or garbles a host takes its own from
    ``sshd_hosts_factory``.
    """
    with _started_hosts(SESSION_HOSTS, SESSION_FIRST_PORT) as hosts:
        yield hosts


@pytest.fixture
def sshd_hosts_factory() -> Iterator[Callable[..., SshdHosts]]:
    """``make(count=1, **SshdHosts options) -> SshdHosts``: started hosts of this test's own,
    closed when the test ends."""
    with ExitStack() as stack:

        def make(count: int = 1, **options: Any) -> SshdHosts:
            first_port = options.pop("first_port", FACTORY_FIRST_PORT)
            return stack.enter_context(_started_hosts(count, first_port, **options))

        yield make
