"""Client text made safe for a log line: one line, no terminal controls.

A path such as `/v1/x%0a2026-01-01 forged line` decodes to a line break; a
model name, a header value or a lone surrogate can carry the same. Whatever a
client sent goes through `loggable` before it reaches a logger, so one request
always writes one line, and the line encodes whatever the log's encoding is.
"""

from __future__ import annotations

from typing import Final

__all__ = ["loggable", "shortened"]

#: Printable characters that would still make a line ambiguous to read back.
_QUOTED: Final = {"\\": "\\\\", '"': '\\"'}


def loggable(text: object) -> str:
    """Return `str(text)` with every unprintable character escaped.

    Control characters, line and paragraph separators, format characters and
    surrogates become `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`; a backslash and a
    double quote are escaped too, so the result reads back unambiguously.
    Printable text, non-ASCII letters included, is left as it is.
    """
    value = str(text)
    if value.isprintable() and "\\" not in value and '"' not in value:
        return value
    return "".join(_escape(char) for char in value)


def _escape(char: str) -> str:
    if char in _QUOTED:
        return _QUOTED[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shortened(text: str, limit: int) -> str:
    """Return `text`, or its first `limit` characters and `...` if it is longer."""
    return text if len(text) <= limit else text[:limit] + "..."
