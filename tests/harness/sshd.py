"""Real OpenSSH ``sshd`` hosts on loopback, for the SSH transport's integration tests.

Each host is one ``/usr/sbin/sshd -D -e -f CONFIG`` listening on ``127.0.0.1:PORT`` with its own
ed25519 host key, pid file and log, and ``SetEnv TIDECTL_TEST_HOST=<name>`` as its identity. All
hosts let one test user in with one client key; a ``known_hosts`` file names every host as
``node001,[127.0.0.1]:22001 ssh-ed25519 ...`` (OpenSSH, asyncssh and paramiko all read it).

**Needs root**: sshd must switch to the test user, and the user is created when missing
(``useradd --system``, home ``/var/lib/<user>``, shell ``/bin/sh`` so a remote command does
not pay for a login shell's start-up files). Without root or without ``/usr/sbin/sshd``,
:func:`unavailable_reason` says why and :class:`SshdHosts` raises :class:`HarnessUnavailable`;
the pytest fixtures turn that into a skip. ``scripts/test`` installs openssh-server.

All hosts share the test user and so its home directory, like nodes with an NFS home: uploads
into it must be atomic (write, then rename).

Faults for tests: :meth:`SshdHosts.stop` (connection refused), :meth:`~SshdHosts.restart`,
:meth:`~SshdHosts.rotate_host_key` (host key mismatch), :meth:`~SshdHosts.wrong_client_key`
(permission denied), :meth:`~SshdHosts.garbage` (the agent prints non-JSON).

Every process is ended by PID: the listener, its session children (found through ``/proc``),
and any process carrying this harness's token in its environment (sshd's own processes get it
from us, sessions from ``SetEnv``; a session that daemonised leaves the tree but keeps its
environment). Nothing is killed by name.

Start-up costs one ssh-keygen and one sshd start, each about 5 ms of CPU, per host: on an idle
2-core machine 8 hosts start in about 0.13 s and 256 in about 3.3 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Self

from ClusterShell.NodeSet import NodeSet

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without its privilege-separation dir
DEFAULT_USER = "tidectl-test"
DEFAULT_FIRST_PORT = 22001
LOOPBACK = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999): a client's outgoing port can never take a host's.
HIGHEST_PORT = 32767
HOST_ENV = "TIDECTL_TEST_HOST"
TOKEN_ENV = "TIDECTL_TEST_HARNESS"  # marks every process of one SshdHosts' hosts
KEYGEN_IN_FLIGHT = 32
# Client options for speed only: OpenSSH 9.x negotiates sntrup761x25519 by default, about
# 50 ms of client CPU per connection (../shared/notes/ssh-hosts.md).
FAST_KEX = "KexAlgorithms=curve25519-sha256"


class HarnessError(Exception):
    """The sshd hosts could not be started or stopped; the message says what to do."""


class HarnessUnavailable(HarnessError):
    """This machine cannot run real sshd hosts (not root, or OpenSSH missing)."""


class PortInUseError(HarnessError):
    """A port the hosts need is taken, probably by another test run."""


def unavailable_reason() -> str | None:
    """Why real sshd hosts cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return (
            "real sshd hosts need root (sshd switches to the test user, and the user may need "
            "creating); run the suite as root, as CI does"
        )
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: install openssh-server (bash scripts/test does)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing: install openssh-client (bash scripts/test does)"
    return None


@dataclass(frozen=True, slots=True)
class SshdHost:
    """One host; ``pid`` is the listener's, None while the host is stopped."""

    name: str
    port: int
    address: str
    pid: int | None
    host_key_path: Path
    config_path: Path
    log_path: Path

    @property
    def running(self) -> bool:
        return self.pid is not None


class SshdHosts:
    """``count`` real sshd hosts named ``host_name.format(1..count)`` on consecutive ports.

    Use as a context manager (``with SshdHosts(dir, 8) as hosts:``) or call :meth:`start_all`
    and :meth:`close`. ``base_dir`` receives keys, configs, logs and ``known_hosts``; it is
    made traversable (0711) because sshd reads ``authorized_keys`` as the test user, so every
    folder above it must be traversable too (pytest's ``tmp_path`` is not: use
    ``tempfile.mkdtemp()``).
    """

    def __init__(
        self,
        base_dir: Path,
        count: int,
        *,
        user: str = DEFAULT_USER,
        first_port: int = DEFAULT_FIRST_PORT,
        host_name: str = "node{:03d}",
        address: str = LOOPBACK,
        ready_timeout_s: float | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if not 1024 <= first_port <= HIGHEST_PORT - count + 1:
            raise ValueError(
                f"ports {first_port}-{first_port + count - 1} must lie within 1024-{HIGHEST_PORT}"
                " (below the ephemeral range, where clients take their outgoing ports)"
            )
        self.base_dir = Path(base_dir).resolve()
        if re.search(r"\s", str(self.base_dir)):
            raise HarnessError(f"{self.base_dir}: sshd_config paths may not contain whitespace")
        self.count = count
        self.user = user
        self.first_port = first_port
        self.address = address
        self.names: tuple[str, ...] = tuple(host_name.format(i) for i in range(1, count + 1))
        if len(set(self.names)) != count:
            raise ValueError(f"host_name {host_name!r} does not give {count} distinct names")
        self.ready_timeout_s = 10.0 + 0.05 * count if ready_timeout_s is None else ready_timeout_s
        #: sshd_config lines every host adds (a test's algorithms, say), after the harness's.
        self.extra_config = tuple(extra_config)
        self.token = secrets.token_hex(8)
        self.client_key = self.base_dir / "client_ed25519"
        self.known_hosts = self.base_dir / "known_hosts"
        self.authorized_keys = self.base_dir / "authorized_keys"
        self.startup_s: float | None = None  # how long start_all took
        self._hosts = {
            name: SshdHost(
                name=name,
                port=first_port + index,
                address=address,
                pid=None,
                host_key_path=self.base_dir / name / "ssh_host_ed25519_key",
                config_path=self.base_dir / name / "sshd_config",
                log_path=self.base_dir / name / "sshd.log",
            )
            for index, name in enumerate(self.names)
        }
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._force_commands: dict[str, Path] = {}  # hosts currently printing garbage
        self._uid: int | None = None
        self._wrong_key: Path | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start_all()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start_all(self) -> Self:
        """Create keys, files and the test user, start every host and wait until all listen."""
        reason = unavailable_reason()
        if reason:
            raise HarnessUnavailable(reason)
        started = time.perf_counter()
        self._uid = ensure_test_user(self.user).pw_uid
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self._prepare_base_dir()
        taken = sorted(_listening_sockets(self.address).keys() & {h.port for h in self})
        if taken:
            raise PortInUseError(
                f"ports {taken} on {self.address} are already listening (another test run?); "
                "pick a free block with free_port_block()"
            )
        for host in self:
            host.config_path.parent.mkdir(exist_ok=True)
        generate_keys([self.client_key, *(h.host_key_path for h in self)])
        # The test user reads this file (sshd drops privileges to read authorized_keys).
        self.authorized_keys.write_text(_public_key(self.client_key) + "\n")
        self.authorized_keys.chmod(0o644)
        self.known_hosts.write_text(
            "".join(
                f"{h.name},[{h.address}]:{h.port} {self.host_public_key(h.name)}\n" for h in self
            )
        )
        try:
            for name in self.names:
                self._write_config(name)
                self._spawn(name)
            self._wait_ready(self.names)
        except BaseException:
            self.close()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def close(self) -> None:
        """Stop every host and every process their sessions left behind (by PID)."""
        procs = list(self._procs.values())
        self._procs.clear()
        self._end(procs, host=None)
        for name in self.names:
            self._hosts[name] = replace(self._hosts[name], pid=None)

    # -- hosts ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> SshdHost:
        return self._hosts[name]

    def __iter__(self) -> Iterator[SshdHost]:
        return iter(self._hosts.values())

    def __len__(self) -> int:
        return self.count

    @property
    def nodeset(self) -> str:
        """All host names folded, e.g. ``node[001-008]``."""
        return str(NodeSet.fromlist(self.names))

    def host_public_key(self, name: str) -> str:
        """``ssh-ed25519 AAAA...`` of the host's current key."""
        return _public_key(self._hosts[name].host_key_path)

    # -- faults ---------------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """SIGTERM the host's listener and kill its sessions: connects are refused."""
        proc = self._procs.pop(name, None)
        self._end([proc] if proc else [], host=name)
        self._hosts[name] = replace(self._hosts[name], pid=None)

    def start(self, name: str) -> None:
        """Start a stopped host (with its current key and mode) and wait until it listens."""
        if name in self._procs:
            raise HarnessError(f"{name} is already running; use restart({name!r})")
        self._write_config(name)
        self._spawn(name)
        self._wait_ready([name])

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def rotate_host_key(self, name: str) -> None:
        """Give the host a new key and restart it; known_hosts keeps the old one (mismatch)."""
        self.stop(name)
        generate_keys([self._hosts[name].host_key_path])
        self.start(name)

    def wrong_client_key(self) -> Path:
        """A client key pair (private key path) that no host authorizes."""
        if self._wrong_key is None:
            self._wrong_key = self.base_dir / "wrong_client_ed25519"
            generate_keys([self._wrong_key])
        return self._wrong_key

    def garbage(self, name: str, *, lines: int | None = None, interval_s: float = 0.2) -> None:
        """Restart the host so that any command containing `` stream`` prints non-JSON.

        It prints one pair of bad lines (plain text, truncated JSON) every ``interval_s``,
        ``lines`` times or until the session ends. Every other command, SFTP included, runs
        as usual, so an agent deploys fine and only its stream is garbage.
        """
        script = self.base_dir / name / "garbage.sh"
        script.write_text(_garbage_script(lines, interval_s))
        script.chmod(0o755)
        self._force_commands[name] = script
        self.restart(name)

    def restore(self, name: str) -> None:
        """Undo :meth:`garbage`: restart the host serving commands normally."""
        self._force_commands.pop(name, None)
        self.restart(name)

    # -- client side ----------------------------------------------------------------------

    def ssh_argv(
        self, name: str, command: str, *, identity: Path | None = None, fast_kex: bool = True
    ) -> list[str]:
        """An OpenSSH client command line that runs ``command`` on host ``name``.

        Strict: only this known_hosts, only this key, never a prompt.
        """
        host = self._hosts[name]
        argv = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-i",
            str(identity or self.client_key),
            "-p",
            str(host.port),
        ]
        if fast_kex:
            argv += ["-o", FAST_KEX]
        return [*argv, f"{self.user}@{host.address}", command]

    def write_ssh_config(self, path: Path) -> Path:
        """An ssh_config with one ``Host`` entry per host (for ``ssh -F`` / clush / pdsh)."""
        common = (
            f"    User {self.user}\n"
            f"    IdentityFile {self.client_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n"
        )
        path.write_text(
            "".join(
                f"Host {h.name}\n    HostName {h.address}\n    Port {h.port}\n{common}"
                for h in self
            )
        )
        return path

    def write_cluster_toml(self, path: Path, **agent_options: str | float | bool) -> Path:
        """A ``cluster.toml`` (docs/config.md) for these hosts; paths relative to the file.

        ``agent_options`` fill the ``[agent]`` table (``interval_s``, ``python``,
        ``remote_dir``, ``probes``); ``python`` defaults to ``python3``, which the test user
        finds on sshd's default PATH as Debian's /usr/bin/python3.
        """
        path = Path(path)
        agent: dict[str, str | float | bool] = {"python": "python3", **agent_options}
        folder = path.resolve().parent
        lines = [
            "# Written by tests/harness/sshd.py for real sshd hosts on loopback.",
            "[cluster]",
            f"name = {_toml_value('sshd-harness')}",
            "",
            "[ssh]",
            f"user = {_toml_value(self.user)}",
            f"identity_file = {_toml_value(os.path.relpath(self.client_key, folder))}",
            f"known_hosts = {_toml_value(os.path.relpath(self.known_hosts, folder))}",
            "",
            "[agent]",
            *(f"{key} = {_toml_value(value)}" for key, value in agent.items()),
            "",
            "[[sites]]",
            'name = "lab"',
            "",
            "[[nodes]]",
            f"names = {_toml_value(self.nodeset)}",
            'site = "lab"',
            f"address = {_toml_value(self.address)}",
            f"port_base = {self.first_port}  # the first node's port; the next ones count up",
            "",
        ]
        path.write_text("\n".join(lines))
        return path

    # -- internals ------------------------------------------------------------------------

    def _prepare_base_dir(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o711)
        for folder in self.base_dir.parents:
            if not folder.stat().st_mode & stat.S_IXOTH:
                raise HarnessError(
                    f"{folder} is not traversable by other users, so the test user cannot read "
                    f"{self.authorized_keys}; put base_dir under a folder like /tmp "
                    "(tempfile.mkdtemp()), not under pytest's tmp_path"
                )

    def _write_config(self, name: str) -> None:
        host = self._hosts[name]
        lines = [
            f"# Test host {name}: written by tests/harness/sshd.py",
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {host.host_key_path}",
            f"PidFile {host.config_path.parent / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "PermitRootLogin no",
            "StrictModes no",  # keys live under /tmp, owned by root
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            "MaxStartups 100:30:200",
            f"SetEnv {HOST_ENV}={name} {TOKEN_ENV}={self.token}",
        ]
        if _openssh_version() >= (9, 8):
            # Newer sshd penalises a source address whose sessions crash or fail to log in:
            # here every client is 127.0.0.1 and the faults are deliberate.
            lines.append("PerSourcePenalties no")
        lines.extend(self.extra_config)
        force = self._force_commands.get(name)
        if force:
            lines.append(f"ForceCommand {force}")
        host.config_path.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str) -> None:
        host = self._hosts[name]
        with host.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(host.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                # sshd builds its sessions' environment afresh (SetEnv gives them the same two
                # names); this tags sshd's own per-connection processes for _tagged.
                env={**os.environ, TOKEN_ENV: self.token, HOST_ENV: name},
                # Out of the terminal's process group: a ^C reaches pytest, whose fixtures
                # then stop the hosts in order.
                start_new_session=True,
            )
        self._procs[name] = proc
        self._hosts[name] = replace(host, pid=proc.pid)

    def _wait_ready(self, names: Iterable[str]) -> None:
        """Until each listener owns a LISTEN socket on its port (bounded; no connections)."""
        pending = set(names)
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            listening = _listening_sockets(self.address)
            for name in sorted(pending):
                proc = self._procs[name]
                if proc.poll() is not None:
                    raise self._exited(name, proc.returncode)
                inode = listening.get(self._hosts[name].port)
                if inode is not None and inode in _socket_inodes(proc.pid):
                    pending.discard(name)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{len(pending)} sshd hosts did not listen within {self.ready_timeout_s:.0f}"
                    f" s: {NodeSet.fromlist(sorted(pending))}; see HOST/sshd.log in {self.base_dir}"
                )
            time.sleep(0.01)

    def _exited(self, name: str, code: int) -> HarnessError:
        host = self._hosts[name]
        log = host.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        if any("Address already in use" in line for line in log):
            return PortInUseError(
                f"{name}: port {host.port} on {host.address} is taken (another test run?); "
                "pick a free block with free_port_block()"
            )
        return HarnessError(f"sshd for {name} exited with code {code}: {' / '.join(log)}")

    def _end(self, procs: Sequence[subprocess.Popen[bytes]], *, host: str | None) -> None:
        """End listeners, their sessions and our leftovers, all by PID.

        The listeners are frozen first, so no session forks while the tree is read; sessions
        are killed (a crash, as the client sees it), then the listeners get SIGTERM.
        ``host`` limits the sweep to that host (None: every host of ours).
        """
        live = [proc for proc in procs if proc.poll() is None]
        listeners = {proc.pid for proc in live}
        for pid in listeners:
            _signal(pid, signal.SIGSTOP)
        table = _process_table()
        victims: set[int] = set()
        for pid in listeners:
            victims |= _descendants(table, pid)
        victims |= self._tagged(table, host) - listeners
        _kill(victims)
        for pid in listeners:
            _signal(pid, signal.SIGTERM)
            _signal(pid, signal.SIGCONT)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # A session that forked between the snapshot and the kill: only its environment says
        # whose it is now. Bounded: a few sweeps.
        for _ in range(3):
            table = _process_table()
            extra = {pid for pid in self._tagged(table, host) if not _is_dead(pid)}
            if not extra:
                break
            _kill(extra)

    def _tagged(self, table: dict[int, tuple[int, int]], host: str | None) -> set[int]:
        """Processes whose environment carries our token (and host): the sshd processes get it
        from us, their sessions from SetEnv, so it holds after they leave the process tree."""
        users = {0, self._uid}
        wanted = {f"{TOKEN_ENV}={self.token}".encode()}
        if host is not None:
            wanted.add(f"{HOST_ENV}={host}".encode())
        found = set()
        for pid, (_ppid, uid) in table.items():
            if uid not in users or pid == os.getpid():
                continue
            try:
                environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            except OSError:  # it just ended
                continue
            if wanted <= environ:
                found.add(pid)
        return found


# -- helpers used by the fixtures and the benchmark -------------------------------------------


def ensure_test_user(name: str = DEFAULT_USER) -> pwd.struct_passwd:
    """The test user, created when missing, with an unlocked password field.

    ``useradd --system`` locks the password with ``!``, and sshd without PAM refuses a locked
    account even for key logins (silently at LogLevel ERROR): the field becomes ``*``
    (no password, not locked).
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        home = Path("/var/lib") / name
        command = ["useradd", "--system", "--create-home", "--home-dir", str(home)]
        made = subprocess.run(
            [*command, "--shell", "/bin/sh", name],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # another test run may have created it in the meantime
            entry = pwd.getpwnam(name)
        except KeyError:
            raise HarnessError(
                f"could not create the test user {name!r}: {made.stderr.strip()}"
            ) from None
    if Path(entry.pw_shell).name in {"nologin", "false"}:
        raise HarnessError(
            f"the test user {name!r} has the shell {entry.pw_shell}, so sshd cannot run commands "
            f"for it; give it /bin/sh (usermod -s /bin/sh {name})"
        )
    if _password_field(name).startswith("!"):
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return entry


def free_port_block(count: int, start: int = DEFAULT_FIRST_PORT, *, address: str = LOOPBACK) -> int:
    """The first port of ``count`` consecutive ports from ``start`` that nothing listens on
    and that can be bound now (another run may still take them before our sshd does: the
    harness then raises PortInUseError)."""
    listening = _listening_sockets(address).keys()
    first = start
    while first + count - 1 <= HIGHEST_PORT:
        clash = next((p for p in range(first, first + count) if p in listening), None)
        if clash is None:
            clash = next(
                (p for p in range(first, first + count) if not _bindable(address, p)), None
            )
        if clash is None:
            return first
        first = clash + 1
    raise PortInUseError(f"no {count} consecutive free ports on {address} from {start}")


def generate_keys(paths: Sequence[Path]) -> None:
    """New ed25519 key pairs (``path``, ``path.pub``) with ssh-keygen, many at once."""
    pending = list(paths)
    running: list[tuple[Path, subprocess.Popen[bytes]]] = []
    failures: list[str] = []
    while pending or running:
        while pending and len(running) < KEYGEN_IN_FLIGHT:
            path = pending.pop()
            path.unlink(missing_ok=True)  # ssh-keygen would ask before overwriting
            path.with_name(path.name + ".pub").unlink(missing_ok=True)
            command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.parent.name]
            running.append(
                (
                    path,
                    subprocess.Popen(
                        [*command, "-f", str(path)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
            )
        path, proc = running.pop(0)
        _, err = proc.communicate(timeout=30)
        if proc.returncode:
            failures.append(f"{path}: {err.decode(errors='replace').strip()}")
    if failures:
        raise HarnessError("ssh-keygen failed: " + "; ".join(failures))


def _public_key(private_key: Path) -> str:
    """``type base64`` from ``KEY.pub`` (no comment)."""
    kind, blob = private_key.with_name(private_key.name + ".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def _password_field(name: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) > 1:
            return fields[1]
    return ""


def _garbage_script(lines: int | None, interval_s: float) -> str:
    limit = "" if lines is None else str(int(lines))
    return f"""#!/bin/sh
# A node whose agent prints garbage: written by tests/harness/sshd.py (ForceCommand).
limit={shlex.quote(limit)}
case "$SSH_ORIGINAL_COMMAND" in
  internal-sftp) exec {SFTP_SERVER} ;;
  *" stream"*)
    i=0
    while [ -z "$limit" ] || [ "$i" -lt "$limit" ]; do
      echo "garbage from ${HOST_ENV}: this is not JSON ($i)"
      echo '{{"kind": "sample", "schema": "1.0", "trunc'
      i=$((i + 1))
      sleep {interval_s:g}
    done
    exit 0 ;;
  "") exec /bin/sh -l ;;
  *) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
"""


def _toml_value(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


_version_cache: list[tuple[int, int]] = []


def _openssh_version() -> tuple[int, int]:
    """(major, minor) of sshd, from ``sshd -V`` (which prints it and exits)."""
    if not _version_cache:
        out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False)
        match = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
        _version_cache.append((int(match[1]), int(match[2])) if match else (0, 0))
    return _version_cache[0]


def _listening_sockets(address: str) -> dict[int, int]:
    """{port: socket inode} of TCP sockets listening on ``address`` (from /proc/net/tcp)."""
    wanted = socket.inet_aton(address)[::-1].hex().upper()  # /proc shows it little-endian
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_ip, local_port = fields[1].split(":")
        if fields[3] == "0A" and local_ip in (wanted, "00000000"):  # 0A: LISTEN
            found[int(local_port, 16)] = int(fields[9])
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd does
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _process_table() -> dict[int, tuple[int, int]]:
    """{pid: (ppid, uid)} of every process (no /proc/PID/task/*/children on every kernel)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
            uid = entry.stat().st_uid
        except OSError:  # it just ended
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])  # comm may hold spaces and ")"
        table[int(entry.name)] = (ppid, uid)
    return table


def _descendants(table: dict[int, tuple[int, int]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _uid) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended already
        os.kill(pid, sig)


def _kill(pids: set[int]) -> None:
    """SIGKILL and wait until dead (bounded). Their parents or init reap them."""
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    _wait_dead(pids, timeout_s=2.0)


def _state(pid: int) -> str | None:
    """The process's state letter (``R``, ``S``, ``Z``...), None once it is reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def _is_dead(pid: int) -> bool:
    return _state(pid) in (None, "Z", "X")  # a zombie runs nothing any more


def _wait_dead(pids: Iterable[int], *, timeout_s: float) -> None:
    remaining = set(pids)
    deadline = time.monotonic() + timeout_s
    while remaining:
        remaining = {pid for pid in remaining if not _is_dead(pid)}
        if remaining and time.monotonic() > deadline:
            raise HarnessError(f"processes {sorted(remaining)} survived SIGKILL for {timeout_s} s")
        if remaining:
            time.sleep(0.002)
