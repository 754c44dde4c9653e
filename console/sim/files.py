"""What a simulated cluster keeps in its folder, and how each file is written.

The folder (``--out DIR``) is the whole contract between the server and a console:

* ``cluster.toml``: a config the loader accepts; its paths are relative to DIR.
* ``known_hosts``: one line per node (``sim0001,[127.0.0.1]:24001 ssh-ed25519 ...``).
* ``client_key`` / ``client_key.pub``: the one key the nodes accept.
* ``hostkeys/<node>``: each node's own ed25519 host key. Kept across restarts, so a console's
  known_hosts stays valid when the server is restarted.
* ``nodes/<node>/``: each node's login directory, the root of its SFTP (chrooted).
* ``faults.txt``: the fault file every node watches (``docs/agent-sim.md``).
* ``server.pid``: the serving process, while it runs.

Keys are generated once and reused; every file is written to a temporary name and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ClusterShell.NodeSet import NodeSet

if TYPE_CHECKING:  # asyncssh only where keys are made: the console reads this module too
    import asyncssh

#: The node name's prefix; nodes are ``sim0001``, ``sim0002``, ...
NODE_PREFIX = "sim"
#: Digits in a node number (more when there are more than 9999 nodes).
NODE_DIGITS = 4
CLUSTER_NAME = "sim"
SITE_NAME = "sim"
KEY_ALGORITHM = "ssh-ed25519"


class SimFilesError(Exception):
    """The simulated cluster's folder cannot be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SimLayout:
    """Where each file of a simulated cluster lives under its folder."""

    out: Path

    @property
    def cluster_toml(self) -> Path:
        return self.out / "cluster.toml"

    @property
    def known_hosts(self) -> Path:
        return self.out / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.out / "client_key"

    @property
    def client_key_pub(self) -> Path:
        return self.out / "client_key.pub"

    @property
    def faults(self) -> Path:
        return self.out / "faults.txt"

    @property
    def pid(self) -> Path:
        return self.out / "server.pid"

    @property
    def hostkeys(self) -> Path:
        return self.out / "hostkeys"

    @property
    def nodes(self) -> Path:
        return self.out / "nodes"

    def host_key(self, node: str) -> Path:
        return self.hostkeys / node

    def node_root(self, node: str) -> Path:
        return self.nodes / node


def node_names(count: int) -> list[str]:
    """``sim0001`` .. ``simNNNN``: zero-padded so they sort and fold as a node set."""
    digits = max(NODE_DIGITS, len(str(count)))
    return [f"{NODE_PREFIX}{number:0{digits}d}" for number in range(1, count + 1)]


#: What a node name given explicitly may hold: a host name's letters, and a path component.
_NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,62}")


def names_problem(names: Sequence[str]) -> str | None:
    """Why explicit node names cannot be served, or None when they can.

    Each name is a host name and a folder's name; the list must be in node-set order (as
    :func:`fold` and cluster.toml's ``port_base`` number the nodes) without repeats.
    """
    for name in names:
        if _NODE_NAME.fullmatch(name) is None:
            return (
                f"node name {name!r} must start with a letter and hold only letters, digits "
                "and dashes, at most 63"
            )
    if [str(node) for node in NodeSet.fromlist(list(names))] != list(names):
        return (
            f"node names {', '.join(names)} must be distinct and in node-set order "
            f"(like {fold(names)})"
        )
    return None


def fold(names: Iterable[str]) -> str:
    """Names as one node set, ``sim[0001-1000]``."""
    return str(NodeSet.fromlist(list(names)))


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` under a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)  # the umask may have taken bits from a key's 0600 or a 0644
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """The ed25519 private key at ``path``; generated (mode 0600) when missing.

    A key that exists but cannot be read is an error, never silently replaced: replacing a
    host key would make every console's known_hosts refuse the node.
    """
    import asyncssh

    if path.exists():
        try:
            return asyncssh.read_private_key(path)
        except (OSError, asyncssh.KeyImportError) as exc:
            raise SimFilesError(
                f"cannot read the key {path}: {exc}; delete it to have a new one generated "
                "(consoles will then need the new known_hosts)"
            ) from exc
    key = asyncssh.generate_private_key(KEY_ALGORITHM, comment=comment)
    write_atomic(path, key.export_private_key("openssh"), mode=0o600)
    return key


def public_key_text(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 AAAA...``: the public half as known_hosts and authorized_keys write it."""
    return f"{key.get_algorithm()} {base64.b64encode(key.public_data).decode('ascii')}"


def ensure_client_key(layout: SimLayout) -> asyncssh.SSHKey:
    """The client key the nodes accept, with its ``.pub`` next to it."""
    key = load_or_create_key(layout.client_key, comment="tidectl-sim-client")
    pub = f"{public_key_text(key)} tidectl-sim-client\n".encode("ascii")
    if not layout.client_key_pub.exists() or layout.client_key_pub.read_bytes() != pub:
        write_atomic(layout.client_key_pub, pub)
    return key


def ensure_host_keys(layout: SimLayout, names: Sequence[str]) -> dict[str, asyncssh.SSHKey]:
    """Each node's own host key, kept from an earlier run when there is one."""
    layout.hostkeys.mkdir(mode=0o700, exist_ok=True)
    return {name: load_or_create_key(layout.host_key(name), comment=name) for name in names}


def known_hosts_text(entries: Iterable[tuple[str, str, int, asyncssh.SSHKey]]) -> str:
    """known_hosts lines for (name, address, port, host key).

    Each line names the node and its address with port, so a client that connects by
    address (``[127.0.0.1]:24001``) or by name (an OpenSSH ``HostKeyAlias``) finds it.
    """
    lines = []
    for name, address, port, key in entries:
        where = address if port == 22 else f"[{address}]:{port}"
        lines.append(f"{name},{where} {public_key_text(key)}\n")
    return "".join(lines)


def _toml_string(value: str) -> str:
    # JSON's escapes are TOML's for everything but DEL, which TOML wants escaped too.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def cluster_toml_text(
    *,
    names: Sequence[str],
    address: str,
    port_base: int,
    user: str,
    python: str,
    interval_s: float,
) -> str:
    """The ``cluster.toml`` of a simulated cluster; paths in it are relative to its folder.

    The i-th node (from 0, in node-set order) listens on ``port_base + i``: ``sim0001`` on
    ``port_base``. The last quarter (at least one node of two) is pool "infer", the rest pool
    "train" (labels), so that grouping by pool means something in the demo.
    """
    q = _toml_string
    inference = max(1, len(names) // 4) if len(names) >= 2 else 0
    train = names[: len(names) - inference]
    infer = names[len(train) :]
    node_sets = ""
    for pool, members, base in (
        ("train", train, port_base),
        ("infer", infer, port_base + len(train)),
    ):
        if members:
            node_sets += f"""
[[nodes]]
names = {q(fold(members))}
site = {q(SITE_NAME)}
address = {q(address)}
port_base = {base}
labels = {{ pool = {q(pool)} }}
"""
    return f"""\
# Written by `tidectl sim serve`: a simulated cluster on {address}.
# Paths are relative to this file's folder. Faults: `tidectl sim inject --out DIR NODE FAULT...`.

[cluster]
name = {q(CLUSTER_NAME)}

[ssh]
user = {q(user)}
identity_file = {q("client_key")}
known_hosts = {q("known_hosts")}

[agent]
interval_s = {float(interval_s)!r}
python = {q(python)}

[[sites]]
name = {q(SITE_NAME)}
{node_sets}"""


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append whole lines in one write, so a node reading the file never sees half a line."""
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    with path.open("ab") as handle:
        handle.write(data)
