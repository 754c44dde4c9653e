"""A fault-injecting HTTP proxy in front of a local moto EC2 server, for the aws provider tests.

moto answers EC2 calls faithfully but never fails the way EC2 does (notes/cloud-moto.md): no
capacity errors, no throttling, no pending phase, no spot reclaims, and it ignores ClientToken.
This proxy sits between boto3 and moto on 127.0.0.1, so every call still goes through real
HTTP and botocore's real parsing and retries, and adds what moto lacks:

* errors per action (any code and HTTP status, for a number of calls or for good), and
  capacity errors per instance type and zone;
* latency per action;
* a pending phase: launched instances report ``pending`` for N seconds;
* spot interruption: the instance is terminated in moto and then reported with EC2's
  ``Server.SpotInstanceTermination`` state reason;
* EC2's ClientToken idempotency: the same token with the same request returns the first
  answer; with a different request, ``IdempotentParameterMismatch``;
* an instance's console (moto's is a fixed kernel log without host keys) and its address
  (moto's private addresses are not on this machine: a test puts the instance on a loopback
  address where its SSH server listens).

Every request is recorded (action and parameters), so a test can count what botocore sent.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

Params = dict[str, str]

SPOT_TERMINATION: Final = "Server.SpotInstanceTermination"
_REGION_IN_AUTH: Final = re.compile(r"Credential=[^/]+/\d+/([^/]+)/")
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, whether it was failed, answered or forwarded."""

    action: str
    params: Params
    at: float  # time.monotonic()


@dataclass
class _Failure:
    action: str
    code: str
    status: int
    message: str
    remaining: int | None  # None: fail every matching call
    matches: Callable[[Params], bool]


class Ec2FaultProxy:
    """``Ec2FaultProxy(moto_url)``; ``start()``, point boto3 at ``url``, ``close()``."""

    def __init__(self, upstream_url: str) -> None:
        split = urlsplit(upstream_url)
        self._upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- what a test sets ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every fault, token and recorded request (between tests)."""
        with self._lock:
            self._failures: list[_Failure] = []
            self._latency: dict[str, float] = {}
            self._pending_s = 0.0
            self._launched: dict[str, tuple[float, str]] = {}  # id -> (monotonic, region)
            self._interrupted: set[str] = set()
            self._tokens: dict[str, tuple[Params, bytes]] = {}
            self._seen: list[Seen] = []
            self._consoles: dict[str, str] = {}
            self._addresses: dict[str, str] = {}

    def fail(
        self,
        action: str,
        code: str,
        *,
        status: int = 400,
        message: str = "",
        times: int | None = None,
        when: Callable[[Params], bool] = lambda _params: True,
    ) -> None:
        """Answer ``action`` with EC2's error ``code`` (``times`` calls, or for good)."""
        with self._lock:
            self._failures.append(
                _Failure(action, code, status, message or f"injected {code}", times, when)
            )

    def capacity(
        self,
        instance_type: str,
        zone: str | None = None,
        *,
        code: str = "InsufficientInstanceCapacity",
        times: int | None = None,
    ) -> None:
        """No capacity for ``instance_type`` (in ``zone``, or anywhere): HTTP 500, as EC2."""

        def matches(params: Params) -> bool:
            return params.get("InstanceType") == instance_type and (
                zone is None or params.get("Placement.AvailabilityZone") == zone
            )

        message = (
            f"We currently do not have sufficient {instance_type} capacity in the "
            "Availability Zone you requested."
        )
        self.fail("RunInstances", code, status=500, message=message, times=times, when=matches)

    def throttle(self, action: str, *, times: int | None = 1) -> None:
        """EC2's throttling answer (HTTP 503) to ``action``, ``times`` calls or for good."""
        self.fail(
            action,
            "RequestLimitExceeded",
            status=503,
            message="Request limit exceeded.",
            times=times,
        )

    def slow(self, action: str, seconds: float) -> None:
        """Hold every ``action`` call (``"*"``: every call) for ``seconds`` before answering."""
        with self._lock:
            self._latency[action] = seconds

    def pending_for(self, seconds: float) -> None:
        """Instances launched from now on report ``pending`` for ``seconds``."""
        with self._lock:
            self._pending_s = seconds

    def interrupt(self, instance_id: str) -> None:
        """Reclaim a spot instance, as EC2 does: terminate it and say why."""
        with self._lock:
            launched = self._launched.get(instance_id)
        if launched is None:
            raise KeyError(f"{instance_id} was not launched through this proxy")
        self._send_upstream(
            {"Action": "TerminateInstances", "Version": "2016-11-15", "InstanceId.1": instance_id},
            region=launched[1],
        )
        with self._lock:
            self._interrupted.add(instance_id)

    def show_console(self, instance_id: str, text: str) -> None:
        """GetConsoleOutput of ``instance_id`` answers ``text`` (base64, as EC2 sends it)."""
        with self._lock:
            self._consoles[instance_id] = text

    def place(self, instance_id: str, address: str) -> None:
        """DescribeInstances reports ``address`` as the instance's private address."""
        with self._lock:
            self._addresses[instance_id] = address

    def requests(self, action: str | None = None) -> list[Seen]:
        with self._lock:
            return [seen for seen in self._seen if action is None or seen.action == action]

    # -- the server ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Ec2FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
            timeout = 30

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, answer = proxy._handle(body, dict(self.headers.items()))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: tests read requests() instead

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="ec2-faults", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- one request -----------------------------------------------------------------------

    def _handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        params = dict(parse_qsl(body.decode()))
        action = params.get("Action", "")
        with self._lock:
            self._seen.append(Seen(action, params, time.monotonic()))
            delay = self._latency.get(action, self._latency.get("*", 0.0))
            failure = self._take_failure(action, params)
        if delay:
            time.sleep(delay)
        if failure is not None:
            return failure.status, {"Content-Type": "text/xml"}, _error_xml(failure)
        if action == "RunInstances":
            return self._run_instances(params, body, headers)
        if action == "GetConsoleOutput":
            with self._lock:
                console = self._consoles.get(params.get("InstanceId", ""))
            if console is not None:
                return 200, {"Content-Type": "text/xml"}, _console_xml(params, console)
        status, answer_headers, answer = self._forward(body, headers)
        if action == "DescribeInstances" and status == 200:
            answer = self._rewrite_instances(answer)
        return status, answer_headers, answer

    def _take_failure(self, action: str, params: Params) -> _Failure | None:
        for failure in self._failures:
            if failure.action == action and failure.matches(params):
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                return failure
        return None

    def _run_instances(
        self, params: Params, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        token = params.get("ClientToken")
        with self._lock:
            earlier = self._tokens.get(token) if token else None
        if earlier is not None:
            earlier_params, earlier_answer = earlier
            if earlier_params != params:
                mismatch = _Failure(
                    action="RunInstances",
                    code="IdempotentParameterMismatch",
                    status=400,
                    message="The client token you have provided is associated with a resource "
                    "that is already deleted or has different parameters.",
                    remaining=None,
                    matches=lambda _params: True,
                )
                return 400, {"Content-Type": "text/xml"}, _error_xml(mismatch)
            return 200, {"Content-Type": "text/xml"}, earlier_answer
        status, answer_headers, answer = self._forward(body, headers)
        if status == 200:
            region = _region_of(headers)
            now = time.monotonic()
            with self._lock:
                for instance_id in re.findall(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", answer):
                    self._launched[instance_id.decode()] = (now, region)
                if token:
                    self._tokens[token] = (params, answer)
        return status, answer_headers, answer

    def _rewrite_instances(self, answer: bytes) -> bytes:
        """Show what moto cannot: a pending phase and spot reclaims."""
        root = ET.fromstring(answer)
        namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
        ns = f"{{{namespace}}}" if namespace else ""
        now = time.monotonic()
        with self._lock:
            pending_s, launched, interrupted = self._pending_s, self._launched, self._interrupted
            for item in root.iter(f"{ns}instancesSet"):
                for instance in item.findall(f"{ns}item"):
                    instance_id = instance.findtext(f"{ns}instanceId", "")
                    if instance_id in self._addresses:
                        _set(instance, ns, "privateIpAddress", self._addresses[instance_id])
                    state = instance.find(f"{ns}instanceState")
                    started = launched.get(instance_id)
                    if (
                        state is not None
                        and started is not None
                        and now - started[0] < pending_s
                        and state.findtext(f"{ns}name") == "running"
                    ):
                        _set(state, ns, "code", "0")
                        _set(state, ns, "name", "pending")
                    if instance_id in interrupted:
                        reason = instance.find(f"{ns}stateReason")
                        if reason is None:
                            reason = ET.SubElement(instance, f"{ns}stateReason")
                        _set(reason, ns, "code", SPOT_TERMINATION)
                        _set(
                            reason, ns, "message", f"{SPOT_TERMINATION}: Spot instance termination"
                        )
        rewritten: bytes = ET.tostring(
            root, encoding="utf-8", xml_declaration=True, default_namespace=namespace or None
        )
        return rewritten

    def _forward(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request("POST", "/", body=body, headers=forwarded)
            response = connection.getresponse()
            answer = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, kept, answer
        finally:
            connection.close()

    def _send_upstream(self, params: Params, *, region: str) -> None:
        # moto does not check signatures; it reads the region from the credential scope.
        auth = (
            f"AWS4-HMAC-SHA256 Credential=testing/20240101/{region}/ec2/aws4_request, "
            "SignedHeaders=host, Signature=0"
        )
        status, _headers, answer = self._forward(
            urlencode(params).encode(),
            {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise RuntimeError(f"moto refused {params['Action']}: {status} {answer[:300]!r}")


def _set(parent: ET.Element, ns: str, tag: str, text: str) -> None:
    child = parent.find(f"{ns}{tag}")
    if child is None:
        child = ET.SubElement(parent, f"{ns}{tag}")
    child.text = text


def _region_of(headers: dict[str, str]) -> str:
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    found = _REGION_IN_AUTH.search(auth)
    return found.group(1) if found else "us-east-1"


def _console_xml(params: Params, console: str) -> bytes:
    """EC2's GetConsoleOutput answer: the output base64-encoded (botocore decodes it)."""
    output = base64.b64encode(console.encode()).decode()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<GetConsoleOutputResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>{uuid.uuid4()}</requestId>"
        f"<instanceId>{escape(params.get('InstanceId', ''))}</instanceId>"
        "<timestamp>2026-01-01T00:00:00.000Z</timestamp>"
        f"<output>{output}</output></GetConsoleOutputResponse>"
    ).encode()


def _error_xml(failure: _Failure) -> bytes:
    """EC2's error document, which botocore's ec2 parser reads."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(failure.code)}</Code>"
        f"<Message>{escape(failure.message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


@contextlib.contextmanager
def fault_proxy(upstream_url: str) -> Iterator[Ec2FaultProxy]:
    proxy = Ec2FaultProxy(upstream_url).start()
    try:
        yield proxy
    finally:
        proxy.close()
