"""Secrets out of what the audit log keeps, before it is written.

The log is read by more people than the ones who may see credentials, and it is never
rewritten, so a secret that reaches it stays there: the rules err towards hiding.

**By key** (the whole value, whatever it is, becomes ``"[redacted]"``), compared without
case, at any depth:

* a key containing ``secret``, ``token``, ``passw`` (password, passwd), ``passphrase``,
  ``credential`` or ``authorization`` anywhere (``client_secret``, ``accessToken``,
  ``db_passwords``) — so ``max_tokens`` is hidden too, which costs little;
* a key whose last word is ``key`` or ``keys`` (``key``, ``api_key``, ``apiKey``,
  ``ssh-keys``, ``AWS_SECRET_ACCESS_KEY``), and the one-word ``apikey``, ``privatekey``,
  ``accesskey``: that word names the key itself. When ``key`` is not the last word the name
  is about a key, not the key (``key_name``, ``key_id``, ``key_path``, ``key_pair``), and a
  ``public`` key (``public_key``, ``ssh_public_key``) is not a secret; those are kept.

**By value**, for a value no key gave away: a string containing an AWS access key id
(``AKIA`` or ``ASIA`` and 16 capitals or digits) or a PEM private key (``-----BEGIN ...
PRIVATE KEY-----``) becomes ``"[redacted]"`` as a whole, since the string may carry the key's
secret beside it in a form no pattern knows.

Values are also made storable: mappings (keys as strings) and sequences are kept (sets
sorted), strings, integers, booleans and null as they are, a NaN or infinite float and
anything else (a Path, a datetime) as its ``str()``; text that is not valid Unicode has the
bad characters replaced. Deeper than :data:`MAX_DEPTH` levels is ``"[too deep]"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_DEPTH", "REDACTED", "redact", "scrub", "secret_key", "secret_text", "text"]

REDACTED: Final = "[redacted]"
MAX_DEPTH: Final = 32

_SECRET_PARTS: Final = ("secret", "token", "passw", "passphrase", "credential", "authorization")
_KEY_WORDS: Final = frozenset({"key", "keys", "apikey", "apikeys", "privatekey", "accesskey"})
# Words of a key: runs of capitals (an acronym), capitalised or lowercase words, digits.
_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_AWS_KEY_ID: Final = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_PEM_PRIVATE_KEY: Final = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# A whole PEM block, to its END line or, cut short, to the end of the text.
_PEM_BLOCK: Final = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with secrets replaced by ``"[redacted]"`` (the module says which)
    and every value storable as JSON."""
    return _mapping(params, 0)


def secret_key(name: str) -> bool:
    """Whether a value under the key ``name`` is hidden whatever it is."""
    lowered = name.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    words = [word.lower() for word in _WORDS.findall(name)]
    return bool(words) and words[-1] in _KEY_WORDS and "public" not in words


def secret_text(value: str) -> bool:
    """Whether a string carries an AWS access key id or a PEM private key."""
    return bool(_AWS_KEY_ID.search(value) or _PEM_PRIVATE_KEY.search(value))


def scrub(sentence: str) -> str:
    """A sentence (an outcome) with each AWS access key id and PEM private key block in it
    (to its END line, or to the end when cut short) replaced by ``[redacted]``: the rest of the
    sentence is what the log is for. A provider's error can quote a signed request's
    ``Credential=AKIA...``."""
    return _PEM_BLOCK.sub(REDACTED, _AWS_KEY_ID.sub(REDACTED, text(sentence)))


def text(value: str) -> str:
    """``value``, with characters UTF-8 cannot encode (lone surrogates) replaced by ``?``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _mapping(values: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = text(str(key))
        out[name] = REDACTED if secret_key(name) else _value(value, depth + 1)
    return out


def _value(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return _mapping(value, depth)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_value(item, depth + 1) for item in items]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        # str.__str__: a str subclass (a StrEnum) stored as the plain string it is.
        return REDACTED if secret_text(value) else text(str.__str__(value))
    finite = not isinstance(value, float) or math.isfinite(value)
    if value is None or (isinstance(value, bool | int | float) and finite):
        return value
    return _scalar(str(value))
