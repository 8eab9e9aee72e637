"""From the bytes of a Koala event stream to JSON values, without I/O.

Each event's data is one JSON value (docs/protocol.md, "Response"); `data: [DONE]`
ends the stream. Event types are not looked at. The event-stream layer is
`koala_chat._sse`.

    >>> decoder = JSONValueDecoder()
    >>> decoder.feed(b'data: "Hello"\\n\\ndata: {"text": " world"}\\n\\n')
    ['Hello', {'text': ' world'}]
    >>> decoder.feed(b"data: [DONE]\\n\\n"), decoder.done
    ([], True)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import msgspec

from ._sse import DEFAULT_MAX_EVENT_SIZE, SSEDecoder
from .errors import IncompleteEventError, InvalidJSONError, ProtocolError
from .messages import JSONValue, replace_surrogates

__all__ = [
    "DONE_MARKER",
    "JSONValueDecoder",
    "PayloadForms",
    "counting_payload_forms",
    "loads",
    "loads_or_text",
    "replace_surrogates_in",
]

DONE_MARKER = "[DONE]"
_EXCERPT_LENGTH = 80
# msgspec parses exactly (integers of any size included) and fast; one decoder
# object serves every call.
_fast_loads = msgspec.json.Decoder().decode


def _excerpt(data: str) -> str:
    """Return `data` cut to at most 80 characters, marked with "..." if cut."""
    if len(data) <= _EXCERPT_LENGTH:
        return data
    return data[: _EXCERPT_LENGTH - 3] + "..."


def loads(data: str) -> JSONValue:
    """Parse one JSON value and return it, as `json.loads` would.

    msgspec parses; the standard library takes what msgspec refuses but
    `json.loads` accepts: NaN and Infinity, numbers beyond the float range,
    lone surrogates. Each lone surrogate in a string (`"\\ud800"`) becomes
    U+FFFD (`koala_chat.messages.replace_surrogates`), so every string we
    return can be encoded as UTF-8.

    Raises InvalidJSONError, with a short excerpt of `data`, if it is not JSON.
    """
    try:
        return _fast_loads(data)
    except (ValueError, RecursionError):
        # msgspec.DecodeError is a ValueError, as is the UnicodeEncodeError of
        # a lone surrogate in `data`; nesting too deep is a RecursionError.
        # msgspec refuses an escaped lone surrogate, so only this path can
        # return one.
        pass
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        excerpt = _excerpt(replace_surrogates(data))
        raise InvalidJSONError(
            f"event data is not JSON: {excerpt!r}", data=excerpt
        ) from exc
    return replace_surrogates_in(value)


@dataclass
class PayloadForms:
    """How many payloads of a messages-dialect reply were JSON, and how many text."""

    json: int = 0
    raw: int = 0


_payload_forms: ContextVar[PayloadForms | None] = ContextVar(
    "koala_payload_forms", default=None
)


@contextmanager
def counting_payload_forms() -> Iterator[PayloadForms]:
    """Count the forms of the payloads `loads_or_text` reads in this context.

    `koala check` uses it to say which form an endpoint sends; the reading
    itself does not change.
    """
    forms = PayloadForms()
    token = _payload_forms.set(forms)
    try:
        yield forms
    finally:
        _payload_forms.reset(token)


def loads_or_text(data: str) -> JSONValue:
    """Return the value of a messages-dialect payload: JSON, or the text itself.

    docs/protocol.md, "Raw text in the messages dialect": a payload that parses
    as a JSON string or object is that value; any other payload (not JSON, or
    a number, boolean, null or array) is `data` itself, exactly as the event
    carried it. Never raises.
    """
    try:
        value = _fast_loads(data)
    except (ValueError, RecursionError):
        try:
            value = loads(data)
        except InvalidJSONError:
            value = data
    raw = not isinstance(value, str | dict) or value is data
    if (forms := _payload_forms.get()) is not None:
        if raw:
            forms.raw += 1
        else:
            forms.json += 1
    return data if raw else value


def replace_surrogates_in(value: JSONValue) -> JSONValue:
    """Return a parsed JSON value with the lone surrogates of its strings replaced.

    Containers are changed in place (they are the parser's, fresh); a loop
    rather than recursion, since the parser nests as deep as Python recurses.
    """
    if isinstance(value, str):
        return replace_surrogates(value)
    pending = [value]
    while pending:
        container = pending.pop()
        if isinstance(container, list):
            for index, item in enumerate(container):
                if isinstance(item, str):
                    container[index] = replace_surrogates(item)
                elif isinstance(item, list | dict):
                    pending.append(item)
        elif isinstance(container, dict):
            for key, item in list(container.items()):
                if isinstance(item, str):
                    item = replace_surrogates(item)
                elif isinstance(item, list | dict):
                    pending.append(item)
                fixed = replace_surrogates(key)
                if fixed != key:
                    del container[key]
                container[fixed] = item
    return value


_TEXT_VALUE_TYPES = frozenset({str, dict})


def _values_or_text(datas: list[str]) -> list[JSONValue]:
    """Return `loads_or_text` of each payload, the whole batch at C speed if it can."""
    try:
        values = list(map(_fast_loads, datas))
    except (ValueError, RecursionError):
        return list(map(loads_or_text, datas))
    if not _TEXT_VALUE_TYPES.issuperset(map(type, values)):
        return list(map(loads_or_text, datas))
    if (forms := _payload_forms.get()) is not None:
        forms.json += len(values)
    return values


class JSONValueDecoder:
    """Decode the JSON value of each event of a byte stream, incrementally.

    Feed it the chunks of the reply as they arrive, then call `close()` once.
    `done` turns True when a `data: [DONE]` event arrives; from then on
    `feed` and `close` return [] and ignore what follows.

    Errors never hide values that came before them: when a chunk holds good
    events and then a bad one, `feed` returns the good values and the next
    call (`feed` or `close`) raises the error, as does every call after it.

    With `raw_text` (the messages dialect), a payload that is not a JSON string
    or object is text, as `loads_or_text` says: no payload is an error then.
    """

    def __init__(
        self,
        *,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        raw_text: bool = False,
    ) -> None:
        """Create a decoder; events over `max_event_size` characters are errors.

        Raises UsageError if `max_event_size` is below 1.
        """
        self._events = SSEDecoder(max_event_size=max_event_size)
        self._error: ProtocolError | None = None
        self._raw_text = raw_text
        self.done = False

    def feed(self, chunk: bytes) -> list[JSONValue]:
        """Decode `chunk` and return the values of the events it completes.

        Raises InvalidJSONError for an event whose data is not JSON and
        EventTooLargeError for an event over the size limit (after the values
        before it were returned, see the class docstring).
        """
        self._check()
        if self.done:
            return []
        return self._values(self._events.feed_data(chunk))

    def close(self) -> list[JSONValue]:
        """End the stream; return the value of an unterminated last event.

        An event cut off before its blank line is delivered when its data is
        complete JSON: [value], else [] if there is none. Raises
        IncompleteEventError when the cut-off data is not JSON, and the errors
        of `feed`.
        """
        self._check()
        if self.done:
            return []
        event = self._events.close()
        if event is None:
            return []
        if event.data == DONE_MARKER:
            self.done = True
            return []
        if self._raw_text:
            return [loads_or_text(event.data)]
        try:
            return [loads(event.data)]
        except InvalidJSONError as exc:
            excerpt = _excerpt(event.data)
            raise IncompleteEventError(
                f"event stream ended inside an event: {excerpt!r}", data=excerpt
            ) from exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)

    def _values(self, datas: list[str]) -> list[JSONValue]:
        done = DONE_MARKER in datas
        if done:
            datas = datas[: datas.index(DONE_MARKER)]
        if self._raw_text:
            self.done = done
            return _values_or_text(datas)
        try:
            # The whole batch at C speed.
            values = list(map(_fast_loads, datas))
        except (ValueError, RecursionError):
            pass
        else:
            self.done = done
            return values
        # One at a time: to find the bad one, or what only json.loads takes.
        values = []
        for data in datas:
            try:
                values.append(loads(data))
            except InvalidJSONError as exc:
                # A [DONE] after it does not count: the stream broke first.
                self._error = exc
                if not values:
                    raise
                return values
        self.done = done
        return values
