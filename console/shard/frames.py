"""Messages between the console and its collector workers: length-prefixed pickles.

Pickle, because both ends are this package (the same install, run by the same user, one the
child of the other) and the messages are this package's own types; nothing read here was
written by anyone else, and nothing is stored. A frame that cannot be read means the other
end is broken: the reader raises ``FrameError`` and the console restarts that worker.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

__all__ = ["MAX_FRAME_BYTES", "FrameError", "encode", "read"]

_LENGTH = struct.Struct(">I")
#: A batch of 500 nodes' digests is about 7 MB (their agents' lines): far under this.
MAX_FRAME_BYTES = 256 << 20


class FrameError(Exception):
    """The other end sent something that is not a frame (or closed mid-frame)."""


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> Any:
    """The next message; None at a clean end (EOF between frames)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("the stream ended inside a frame's length") from None
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"a frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("the stream ended inside a frame") from None
    try:
        return pickle.loads(body)  # our own child process (see the docstring)
    except Exception as exc:
        raise FrameError(f"a frame that does not unpickle: {exc!r}") from None
