"""The service's wire: JSON lines over a Unix socket, one request and one response each.

A client sends ``{"id": 1, "method": "drain", "params": {...}}``; the service answers
``{"id": 1, "result": ...}`` or ``{"id": 1, "error": {"kind": ..., "message": ...}}``; a
long call (``wait``) may first send interim answers, ``{"id": 1, "result": ..., "more":
true}``, each one a step of its progress. Who
asks is never in a request: the service reads it from the socket's peer credentials, so a
client cannot claim to be someone else. ``hello`` first says which front end is calling.

Results are the control plane's own result types (``BurstResult``, ``ActionResult``,
``Progress``, ``NodeRecord``) as msgspec encodes them, and decode back into them on the
client: one definition, both sides.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

__all__ = [
    "MAX_LINE_BYTES",
    "PROTOCOL",
    "ErrorBody",
    "ErrorKind",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode",
]

PROTOCOL: Final = 1
#: A request or response longer than this is refused (a node list of a thousand names fits).
MAX_LINE_BYTES: Final = 4 * 1024 * 1024

ErrorKind = Literal["refused", "failed", "bad-request", "unavailable"]


class Request(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    method: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class ErrorBody(msgspec.Struct):
    kind: ErrorKind
    message: str
    request_id: str = ""


class Response(msgspec.Struct, omit_defaults=True):
    id: int
    result: Any = None
    error: ErrorBody | None = None
    #: True: an interim answer (a step of a long call's progress); the final one follows.
    more: bool = False


_REQUEST = msgspec.json.Decoder(Request)
_RESPONSE = msgspec.json.Decoder(Response)
_ENCODER = msgspec.json.Encoder()


def encode(message: Request | Response) -> bytes:
    return _ENCODER.encode(message) + b"\n"


def decode_request(line: bytes) -> Request:
    """Raises msgspec.DecodeError (or ValidationError) with what is wrong."""
    return _REQUEST.decode(line)


def decode_response(line: bytes) -> Response:
    return _RESPONSE.decode(line)
