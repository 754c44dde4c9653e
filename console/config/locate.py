"""The line of a key in a ``cluster.toml``, for error messages.

tomllib gives values without positions, so the line of a key is found afterwards by
:class:`Locator`, a small scanner over the (already valid) text. It only runs when there is an
error to report.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib

__all__ = ["Locator", "Where"]

#: Where in the TOML document: table and key names, and list positions (0-based).
Where = tuple[str | int, ...]


class Locator:
    """The line where each table, key and list item of a valid TOML text is first mentioned.

    A scanner for TOML 1.0 as tomllib accepts it: table headers (counting ``[[array]]``
    entries), dotted keys, strings of all four kinds, multi-line arrays and inline tables.
    Because tomllib already accepted the text, it needs no error handling of its own; if it
    ever trips anyway, the lines found so far are kept and lookups fall back to the table.
    """

    _BARE_KEY = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
    _SCALAR = re.compile(r"[^,\]}\r\n#]*")

    def __init__(self, text: str) -> None:
        self.lines: dict[Where, int] = {}
        self._text = text
        self._pos = 0
        self._newlines = [i for i, char in enumerate(text) if char == "\n"]
        self._array_index: dict[Where, int] = {}  # [[array]] path -> index of its last entry
        with contextlib.suppress(IndexError, ValueError, RecursionError, tomllib.TOMLDecodeError):
            self._document()

    def line_of(self, where: Where) -> int | None:
        """The line of ``where``, or of the nearest enclosing table or key that has one."""
        for length in range(len(where), 0, -1):
            line = self.lines.get(where[:length])
            if line is not None:
                return line
        return None

    # The scanner. Each method starts at self._pos and leaves it after what it read.

    def _line(self) -> int:
        return bisect.bisect_left(self._newlines, self._pos) + 1

    def _note(self, where: Where) -> None:
        self.lines.setdefault(where, self._line())

    def _document(self) -> None:
        table: Where = ()
        while True:
            self._skip_blank()
            if self._pos >= len(self._text):
                return
            if self._text.startswith("[[", self._pos):
                self._pos += 2
                table = self._open_array_entry(self._key())
                self._expect("]]")
            elif self._text.startswith("[", self._pos):
                self._pos += 1
                table = self._resolve(self._key())
                self._note(table)
                self._expect("]")
            else:
                self._key_value(table)

    def _open_array_entry(self, names: list[str]) -> Where:
        array = (*self._resolve(names[:-1]), names[-1])
        index = self._array_index.get(array, -1) + 1
        self._array_index[array] = index
        self._note(array)
        entry = (*array, index)
        self._note(entry)
        return entry

    def _resolve(self, names: list[str]) -> Where:
        """A header's dotted names as a path: after an array of tables, its latest entry."""
        path: Where = ()
        for name in names:
            path = (*path, name)
            index = self._array_index.get(path)
            if index is not None:
                path = (*path, index)
        return path

    def _key_value(self, table: Where) -> None:
        names = self._key()
        for length in range(1, len(names)):  # dotted keys make their tables here
            self._note((*table, *names[:length]))
        self._expect("=")
        self._value((*table, *names))

    def _key(self) -> list[str]:
        names: list[str] = []
        while True:
            self._skip_spaces()
            char = self._text[self._pos]
            if char in "\"'":
                start = self._pos
                self._single_line_string()
                # The exact meaning of escapes, from the parser that read the file.
                names.append(tomllib.loads("k = " + self._text[start : self._pos])["k"])
            else:
                match = self._BARE_KEY.match(self._text, self._pos)
                if match is None:
                    raise ValueError("not a key")
                names.append(match.group())
                self._pos = match.end()
            self._skip_spaces()
            if self._text[self._pos] != ".":
                return names
            self._pos += 1

    def _value(self, where: Where) -> None:
        self._skip_spaces()
        self._note(where)
        text, pos = self._text, self._pos
        if text.startswith(('"""', "'''"), pos):
            self._multi_line_string()
        elif text[pos] in "\"'":
            self._single_line_string()
        elif text[pos] == "[":
            self._array(where)
        elif text[pos] == "{":
            self._inline_table(where)
        else:  # number, boolean, date: up to the next delimiter
            match = self._SCALAR.match(text, pos)
            assert match is not None  # the pattern matches the empty string
            self._pos = match.end()

    def _array(self, where: Where) -> None:
        self._pos += 1
        index = 0
        while True:
            self._skip_blank()
            if self._text[self._pos] == "]":
                self._pos += 1
                return
            self._value((*where, index))
            index += 1
            self._skip_blank()
            if self._text[self._pos] == ",":
                self._pos += 1

    def _inline_table(self, where: Where) -> None:
        self._pos += 1
        while True:
            self._skip_blank()
            if self._text[self._pos] == "}":
                self._pos += 1
                return
            self._key_value(where)
            self._skip_blank()
            if self._text[self._pos] == ",":
                self._pos += 1

    def _single_line_string(self) -> None:
        quote = self._text[self._pos]
        pos = self._pos + 1
        while self._text[pos] != quote:
            pos += 2 if quote == '"' and self._text[pos] == "\\" else 1
        self._pos = pos + 1

    def _multi_line_string(self) -> None:
        quote = self._text[self._pos]
        pos = self._pos + 3
        while not self._text.startswith(quote * 3, pos):
            pos += 2 if quote == '"' and self._text[pos] == "\\" else 1
        # Up to two quotes of the content may touch the closing delimiter: """a""""" is a"".
        end = pos
        while end < len(self._text) and end - pos < 5 and self._text[end] == quote:
            end += 1
        self._pos = end

    def _expect(self, token: str) -> None:
        self._skip_spaces()
        if not self._text.startswith(token, self._pos):
            raise ValueError(f"expected {token}")
        self._pos += len(token)

    def _skip_spaces(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos] in " \t":
            self._pos += 1

    def _skip_blank(self) -> None:
        """Spaces, line breaks and comments."""
        text = self._text
        while self._pos < len(text):
            if text[self._pos] in " \t\r\n":
                self._pos += 1
            elif text[self._pos] == "#":
                end = text.find("\n", self._pos)
                self._pos = len(text) if end < 0 else end
            else:
                return
