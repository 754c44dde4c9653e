"""``K`` in the console, driven by Pilot against a real OpenSSH sshd whose key known_hosts does
not list: the node stays out (host-key-mismatch), ``K`` shows the fingerprint it presents, a
wrong word trusts nothing, ``trust`` adds the key — and the real collector then deploys the
agent and the node streams. The decision is in the audit log, under the console."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncssh

from tests.console.tui.helpers import screen_text, wait_for
from tests.console.tui.test_lifecycle_pilot import SIZE, Said, _select
from tests.harness.sshd import SshdHosts
from tidectl.console.audit.verify import read
from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import audit_path, store_path
from tidectl.console.model import LinkState
from tidectl.console.tui.action_dialogs import HostKeyDialog
from tidectl.console.tui.app import console_app


async def test_k_shows_a_new_nodes_key_and_trusting_it_lets_the_node_stream(
    sshd_hosts_factory: Callable[..., SshdHosts],
) -> None:
    hosts = sshd_hosts_factory(1)
    node = hosts.names[0]
    folder = Path(tempfile.mkdtemp(prefix="tkpilot-", dir="/tmp"))
    path = hosts.write_cluster_toml(folder / "cluster.toml", interval_s=0.2)
    text = re.sub(r'known_hosts = ".*"', 'known_hosts = "known_hosts"', path.read_text())
    path.write_text(text)
    known_hosts = folder / "known_hosts"
    known_hosts.write_text("")  # the node is new to this site
    config = load_config(path)
    fingerprint = asyncssh.import_public_key(hosts.host_public_key(node)).get_fingerprint("sha256")
    said = Said()
    app = console_app(config, interval_s=0.2)
    async with app.run_test(size=SIZE, message_hook=said) as pilot:
        await wait_for(pilot, lambda: app.plane is not None, 10, "the control plane")
        link = lambda: app.fleet.nodes[node].link  # noqa: E731
        await wait_for(pilot, lambda: link() is LinkState.HOST_KEY_MISMATCH, 10, "refused")
        await _select(pilot, app, node)

        await pilot.press("K")
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyDialog), 10, "the dialog")
        shown = screen_text(app)
        assert f"Trust the host key of {node}" in shown
        assert f"ssh-ed25519  {fingerprint}" in shown
        await pilot.press(*"yes", "enter")  # not the word: nothing is trusted
        await wait_for(pilot, lambda: "Type trust to trust" in screen_text(app), 5, "refusal")
        assert known_hosts.read_text() == ""
        await pilot.press("backspace", "backspace", "backspace", *"trust", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, HostKeyDialog), 5, "closed")
        await wait_for(
            pilot,
            lambda: any(f"'s host key {fingerprint} is now in" in m for *_, m in said.all),
            10,
            f"the sentence (said: {said.all})",
        )
        assert known_hosts.read_text().endswith(f"{hosts.host_public_key(node)}\n")
        # Its link retries with the new line and the agent streams.
        await wait_for(pilot, lambda: link() is LinkState.STREAMING, 30, "streaming")

    records = list(read(audit_path(config, store_path(config))))
    trusted = [r for r in records if r.action == "accept-host-key"]
    assert [(r.frontend, r.targets, r.decision) for r in trusted] == [
        ("console", (node,), "allowed"),
        ("console", (node,), "allowed"),
    ]
    assert trusted[0].params == {"fingerprint": fingerprint}
    assert trusted[1].outcome.startswith("done: ")
