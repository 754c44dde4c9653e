"""One control plane per store: a second is refused with a sentence naming the first, and a
holder killed outright (kill -9) leaves the store free for the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tidectl.console.lifecycle.lock import StoreLock, StoreLocked, lock_path


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path: Path) -> None:
    store = tmp_path / "lab.sqlite3"
    with StoreLock(store, "tidectl console"):
        with pytest.raises(StoreLocked) as refused:
            StoreLock(store, "tidectl burst").acquire()
        assert f"in use by tidectl console (pid {os.getpid()})" in str(refused.value)
        assert "one control plane acts on a cluster at a time" in str(refused.value)
    # Released: the next one takes it, and the file says who holds it now.
    with StoreLock(store, "tidectl drain"):
        assert lock_path(store).read_text().startswith("tidectl drain (pid ")


def test_a_holder_killed_outright_leaves_the_store_free(tmp_path: Path) -> None:
    store = tmp_path / "lab.sqlite3"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from tidectl.console.lifecycle.lock import StoreLock
                StoreLock(Path({str(store)!r}), "held").acquire()
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLocked, match=f"pid {holder.pid}"):
            StoreLock(store, "second").acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with StoreLock(store, "after the crash"):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
