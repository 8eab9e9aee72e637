"""An incremental decoder for Server-Sent Events: bytes in, events out, no I/O.

It follows the HTML standard, section 9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html), in two layers:

- `_LineSplitter` cuts decoded text into lines at LF, CRLF or a lone CR.
- `_EventBuilder` is the state machine of the spec that turns lines into events.

`SSEDecoder` ties them to an incremental UTF-8 decoder, and takes a fast path
for the usual shape of a stream (`data: X` and a blank line, again and again)
that gives exactly what the two layers would. Any split of a byte stream into
chunks gives the same events, and the work is linear in the size of the
stream, however long a line is.

    >>> decoder = SSEDecoder()
    >>> decoder.feed(b'data: "Hel')
    []
    >>> decoder.feed(b'lo"\\n\\n')
    [ServerSentEvent(data='"Hello"', event='message', id='', retry=None)]
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from . import defaults
from .errors import EventTooLargeError, UsageError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_EVENT_SIZE = defaults.MAX_EVENT_SIZE

_DATA_PREFIX = "data: "
_NEXT_PLAIN_EVENT = "\n\n" + _DATA_PREFIX
# Section 9.2.6 takes the reconnection time as a base-ten integer; values that
# do not fit in 64 bits are ignored, as a parser into a 64-bit integer would.
_MAX_RETRY = 2**64 - 1
_MAX_RETRY_DIGITS = len(str(_MAX_RETRY))


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    `data` is the event's data with the final line feed removed, `event` its
    type, `id` the last event ID at dispatch (it carries over from earlier
    events, as in the spec) and `retry` the reconnection time in milliseconds
    given by a `retry` field of this event, or None.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


# Events that share type, id and retry, as the data of each: the line-by-line
# path yields one at a time, the fast path (`_plain_events`) many at once.
_Run = tuple[list[str], str, str, int | None]


def _too_large(what: str, limit: int) -> EventTooLargeError:
    return EventTooLargeError(
        f"event stream: {what} is longer than the limit of {limit} characters",
        limit=limit,
    )


def _plain_events(block: str, max_data: int) -> list[str] | None:
    """Return the data of each event if `block` holds only plain events.

    A plain event is `data: X` and a blank line, the usual shape of a stream;
    `block` must start at the start of an event, end with a blank line and hold
    no CR. Return None for any other shape, or if an X is over `max_data`.
    Cut between "data: " and the final LF LF at each LF LF "data: ", the block
    is plain exactly when no piece holds a LF: every LF is then in a separator
    or in the final blank line. (Searching the joined pieces for a LF is a
    memchr; counting the LFs of the block is several times slower.)
    """
    if not block.startswith(_DATA_PREFIX):
        return None
    datas = block[len(_DATA_PREFIX) : -2].split(_NEXT_PLAIN_EVENT)
    if "\n" in "".join(datas):
        return None
    if len(block) > max_data and max(map(len, datas)) > max_data:
        return None
    return datas


class _LineSplitter:
    """Layer 1: cut text into lines at LF, CRLF or a lone CR (section 9.2.5).

    The unfinished last line is kept as a list of pieces, so a long line costs
    linear time: only new text is searched for line ends, and the pieces are
    joined once, when the line ends.
    """

    __slots__ = ("_pieces", "after_cr", "pending_size")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self.pending_size = 0
        # The last text ended with CR: a LF at the start of the next one ends
        # the same line (CRLF split across chunks is one line end, not two).
        self.after_cr = False

    def split(self, text: str) -> list[str]:
        """Return the lines that `text` completes, without their line ends."""
        if self.after_cr and text:
            self.after_cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\r" in text:
            self.after_cr = text[-1] == "\r"
            # CRLF first, so that "\r\r\n" is two line ends: CR, then CRLF.
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:  # the middle of a long line
            if text:
                self._pieces.append(text)
                self.pending_size += len(text)
            return []
        lines = text.split("\n")
        tail = lines.pop()
        if lines and self._pieces:
            self._pieces.append(lines[0])
            lines[0] = "".join(self._pieces)
            self._pieces.clear()
            self.pending_size = 0
        if tail:
            self._pieces.append(tail)
            self.pending_size += len(tail)
        return lines

    def flush(self) -> str:
        """Return the unfinished last line ("" if none) and forget it."""
        line = "".join(self._pieces)
        self._pieces.clear()
        self.pending_size = 0
        return line


class _EventBuilder:
    """Layer 2: the state machine of section 9.2.6, from lines to events."""

    __slots__ = (
        "_data",
        "_data_size",
        "_event_retry",
        "_event_type",
        "_max_data",
        "id_buffer",
        "last_event_id",
        "max_line",
        "retry",
    )

    def __init__(self, max_event_size: int) -> None:
        self._max_data = max_event_size
        # A line may hold a full-size value behind its field name.
        self.max_line = max_event_size + len(_DATA_PREFIX)
        self._data: list[str] = []
        self._data_size = 0  # characters in the data buffer, LFs included
        self._event_type = ""
        self._event_retry: int | None = None
        self.id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None

    @property
    def fresh(self) -> bool:
        """Whether no event is under way (the ids and retry may be set)."""
        return not self._data and not self._event_type and self._event_retry is None

    def process(self, lines: list[str], runs: list[_Run]) -> None:
        """Interpret `lines` in order, appending dispatched events to `runs`.

        Raises EventTooLargeError at a line or event over the limit; the events
        before it are in `runs`.
        """
        for line in lines:
            self.line(line, runs)

    def dispatch_plain(self, datas: list[str], runs: list[_Run]) -> None:
        """Dispatch events of `data: X` and a blank line each, from a fresh state.

        Exactly what `process` does with those lines: each event has data X,
        the default type and the current id.
        """
        self.last_event_id = self.id_buffer
        runs.append((datas, "message", self.id_buffer, None))

    def line(self, line: str, runs: list[_Run]) -> None:
        """Interpret one line (section 9.2.6); a blank line dispatches."""
        if not line:
            self._dispatch(runs)
            return
        if len(line) > self.max_line:
            raise _too_large("a line", self._max_data)
        if line[0] == ":":  # a comment
            return
        # "field:value", one space after the colon dropped; "field" alone has
        # an empty value.
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            size = self._data_size + len(value) + 1
            if size - 1 > self._max_data:
                raise _too_large("an event's data", self._max_data)
            self._data.append(value)
            self._data_size = size
        elif field == "event":
            self._event_type = value
        elif field == "id":
            if "\0" not in value:
                self.id_buffer = value
        elif field == "retry":
            digits = value.lstrip("0") or "0"
            if (
                value.isascii()
                and value.isdigit()
                and len(digits) <= _MAX_RETRY_DIGITS
                and int(digits) <= _MAX_RETRY
            ):
                self.retry = self._event_retry = int(digits)
        # Any other field is ignored.

    def _dispatch(self, runs: list[_Run]) -> None:
        # Section 9.2.6, "dispatch the event": the id buffer becomes the last
        # event ID even when no event fires; an empty data buffer fires none;
        # the buffer loses its last LF (joining the values with LF does that).
        self.last_event_id = self.id_buffer
        if self._data:
            data = "\n".join(self._data)
            event_type = self._event_type or "message"
            runs.append(([data], event_type, self.id_buffer, self._event_retry))
        self.reset()

    def take(self) -> ServerSentEvent | None:
        """Dispatch the event being built; return it, or None if it has no data."""
        if not self._data:
            self.reset()
            return None
        runs: list[_Run] = []
        self._dispatch(runs)
        (data,), event_type, id_, retry = runs[0]
        return ServerSentEvent(data, event_type, id_, retry)

    def reset(self) -> None:
        """Forget the event being built (the ids and retry stay)."""
        self._data = []
        self._data_size = 0
        self._event_type = ""
        self._event_retry = None


class SSEDecoder:
    """Decode a byte stream of Server-Sent Events incrementally.

    Feed it the chunks of a `text/event-stream` body as they arrive, then call
    `close()` once at the end. `last_event_id` is the last event ID of the
    stream (what a reconnection sends as `Last-Event-ID`) and `retry` the
    latest reconnection time in milliseconds, or None.

    An event's data longer than `max_event_size` characters, or a line longer
    than that and its field name, raises EventTooLargeError; no more than about
    that much (and one chunk) is ever held.
    Errors are raised once the events before them have been returned: when a
    chunk holds events and then an error, `feed` returns the events and the
    next call raises the error. After an error every call raises it again.
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        """Create a decoder; raise UsageError if `max_event_size` is below 1."""
        if max_event_size < 1:
            raise UsageError(f"max_event_size must be positive, not {max_event_size}")
        self.max_event_size = max_event_size
        # Section 9.2.5: UTF-8 decode, replacing invalid bytes with U+FFFD.
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._at_start = True  # the BOM check is still to do
        self._lines = _LineSplitter()
        self._events = _EventBuilder(max_event_size)
        self._error: EventTooLargeError | None = None
        self._closed = False

    @property
    def last_event_id(self) -> str:
        """The last event ID string: the id buffer at the last dispatch."""
        return self._events.last_event_id

    @property
    def retry(self) -> int | None:
        """The latest reconnection time in milliseconds, or None if none came."""
        return self._events.retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode `chunk` and return the events it completes, in order.

        Raises EventTooLargeError (see the class docstring) and UsageError
        after `close()`.
        """
        return [
            ServerSentEvent(data, event, id_, retry)
            for datas, event, id_, retry in self._decode(chunk)
            for data in datas
        ]

    def feed_data(self, chunk: bytes) -> list[str]:
        """Like `feed`, but return only the data of each event.

        Faster when only the data matters: no event objects are built. Event
        types are dropped; `last_event_id` and `retry` are kept up to date.
        Raises as `feed` does.
        """
        runs = self._decode(chunk)
        if len(runs) == 1:
            return runs[0][0]
        return [data for run in runs for data in run[0]]

    def close(self) -> ServerSentEvent | None:
        """End the stream; return the unterminated last event, or None.

        The spec discards an event that the stream ends inside (section 9.2.6,
        "once the end of the file is reached"); we return it instead so that
        the caller can decide. A final line without a line end counts as a
        line. None if that event has no data. Calling `close()` again returns
        None. Raises EventTooLargeError.
        """
        self._check()
        if self._closed:
            return None
        self._closed = True
        # What the UTF-8 decoder still holds is an incomplete character: it
        # becomes U+FFFD at the end of the last line, never a line end.
        self._lines.split(self._text(b"", final=True))
        tail = self._lines.flush()
        try:
            if tail:
                self._events.line(tail, [])
        except EventTooLargeError as exc:
            self._fail(exc)
            raise
        return self._events.take()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)

    def _fail(self, error: EventTooLargeError) -> None:
        self._error = error
        self._lines.flush()
        self._events.reset()

    def _text(self, chunk: bytes, *, final: bool = False) -> str:
        text = self._utf8.decode(chunk, final)
        if self._at_start and text:
            # The UTF-8 decode of section 9.2.5 drops one leading BOM.
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        return text

    def _decode(self, chunk: bytes) -> list[_Run]:
        self._check()
        if self._closed:
            raise UsageError("SSEDecoder.feed() called after close()")
        text = self._text(chunk)
        runs: list[_Run] = []
        try:
            self._interpret(text, runs)
            if self._lines.pending_size > self._events.max_line:
                raise _too_large("a line", self.max_event_size)
        except EventTooLargeError as exc:
            self._fail(exc)
            if not runs:
                raise
        return runs

    def _interpret(self, text: str, runs: list[_Run]) -> None:
        lines, events = self._lines, self._events
        # The last blank line, searched back from the last LF (found fast).
        end = text.rfind("\n\n", 0, text.rfind("\n") + 1) + 2
        if end < 2 or lines.after_cr or "\r" in text:
            events.process(lines.split(text), runs)
            return
        # The fast path. A blank line ("\n\n") ends the event under way, so
        # from the first blank line to the last one the text is whole events,
        # often plain ones that `_plain_events` takes in bulk. Cutting the text
        # after a LF does not change the lines the splitter sees.
        start = 0
        if lines.pending_size or not events.fresh:
            start = text.find("\n\n") + 2
            events.process(lines.split(text[:start]), runs)
        block = text[start:end]
        datas = _plain_events(block, self.max_event_size) if block else None
        if datas is None:
            events.process(lines.split(block), runs)
        else:
            events.dispatch_plain(datas, runs)
        events.process(lines.split(text[end:]), runs)
