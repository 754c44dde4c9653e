"""Splitting a byte stream into lines, with a bound on line length.

asyncssh's readline has no length limit: a node that prints an endless line would grow the
console's memory without bound. This splitter refuses a line longer than the protocol's
limit instead, and the caller recycles that node's stream.
"""

from __future__ import annotations

from tidectl.agents.protocol import MAX_LINE_BYTES


class LineTooLong(ValueError):
    pass


class LineSplitter:
    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in ``data`` (without their newline), in order."""
        if b"\n" not in data:
            self._partial += data
            self._check()
            return []
        parts = data.split(b"\n")
        parts[0] = bytes(self._partial) + parts[0]
        self._partial = bytearray(parts.pop())
        self._check()
        too_long = [len(p) for p in parts if len(p) > self.max_line_bytes]
        if too_long:
            raise LineTooLong(
                f"a line of {too_long[0]} bytes is over the {self.max_line_bytes}-byte limit"
            )
        return parts

    def _check(self) -> None:
        if len(self._partial) > self.max_line_bytes:
            size = len(self._partial)
            self._partial.clear()
            raise LineTooLong(
                f"more than {self.max_line_bytes} bytes without a newline ({size} so far)"
            )
