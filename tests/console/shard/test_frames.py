"""Frames between the console and a worker: what was sent comes back whole; a clean end is
None; a broken stream (cut inside a frame, an absurd length, a body that does not unpickle)
is a ``FrameError`` saying which, never a hang or a half message."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tidectl.console.model import Finding, Severity
from tidectl.console.shard import frames


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_messages_come_back_whole_and_a_clean_end_is_none() -> None:
    sent = [
        ("batch", [("gpu1", Finding("gpu.xid", Severity.CRITICAL, "XID 79 on GPU 2"))], 5, 0),
        ("ready",),
        ("ran", 7, b"\x00" * 100_000),
    ]
    reader = reader_of(b"".join(frames.encode(m) for m in sent))
    assert [await frames.read(reader) for _ in sent] == sent
    assert await frames.read(reader) is None


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"\x00\x00", "the stream ended inside a frame's length"),
        (struct.pack(">I", 10) + b"abc", "the stream ended inside a frame"),
        (struct.pack(">I", frames.MAX_FRAME_BYTES + 1), "is over the"),
        (struct.pack(">I", 5) + b"hello", "a frame that does not unpickle"),
    ],
)
async def test_a_broken_stream_says_how(data: bytes, said: str) -> None:
    with pytest.raises(frames.FrameError, match=said):
        await frames.read(reader_of(data))
