"""What the console shows before a person trusts a new on-prem node's host key, without a screen.

``K`` on a node fetches the key it presents (through the control plane, which does the SSH key
exchange where the collector runs) and shows its fingerprint to compare with one obtained out
of band; accepting writes that key to known_hosts (``control/host_keys.py``, audited). A node
whose key known_hosts already lists is not offered: a changed key is fixed by hand.
"""

from __future__ import annotations

from tidectl.console.control.host_keys import PresentedKey

__all__ = ["CONFIRM_WORD", "host_key_listed", "host_key_question"]

#: What the person types to accept: a word, so a stray Enter accepts nothing.
CONFIRM_WORD = "trust"


def host_key_question(shown: PresentedKey) -> list[str]:
    """The dialog's lines: a title, the key, and how to check it."""
    return [
        f"Trust the host key of {shown.node} ({shown.where})?",
        "",
        f"  {shown.key_type}  {shown.fingerprint}",
        "",
        "known_hosts lists no key for this node, so tidectl does not connect to it. Compare",
        "this fingerprint with the node's own, obtained out of band (on its console:",
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub). Only if they are the same, type",
        f"{CONFIRM_WORD!r} and press Enter: the key is added to known_hosts, and the audit log",
        "records who trusted it.",
    ]


def host_key_listed(shown: PresentedKey) -> str:
    """Why a node whose key known_hosts lists is not offered."""
    return (
        f"known_hosts already lists a key for {shown.node} ({shown.where}); it presents "
        f"{shown.fingerprint}. A changed key is never accepted from the console: check it out "
        "of band and replace the node's line in known_hosts by hand."
    )
