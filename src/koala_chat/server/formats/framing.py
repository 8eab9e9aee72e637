"""The `data:` events of a stream, encoded from the reply's structs.

`event` is the one way a struct becomes an event. `around_mark` serves an
encoder's hot path: a stream's text events differ only in their text, so the
bytes before and after it are cut once per stream from the event of a struct
that holds `MARK`, and each event is then one `msgspec.json.encode` of the
text between them; the formats' tests prove it the same bytes as `event`.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["MARK", "around_mark", "encode", "event"]

#: Encode a value as JSON (one encoder for all the formats' events).
encode: Final = msgspec.json.Encoder().encode

#: The text that marks where an event's text goes.
MARK: Final = "\x00"


def event(value: msgspec.Struct) -> bytes:
    """Return the server-sent event whose data is `value`'s JSON."""
    return b"data: " + encode(value) + b"\n\n"


def around_mark(value: msgspec.Struct) -> tuple[bytes, bytes]:
    """Return the bytes of `value`'s event before and after its text, `MARK`.

    The text must be the event's last string (only constants follow it), so
    that the last occurrence of the mark is the text's, whatever the id and
    the model.
    """
    before, mark, after = event(value).rpartition(encode(MARK))
    assert mark, "the event holds the marked text"
    return before, after
