"""Reading a reply into JSON values, in batches: an event stream, or one object.

docs/protocol.md, "Response": each event's data is one JSON value. The bytes are
read as they come (`content.iter_any()`, not aiohttp's line iterator, which
splits on LF only and fails on long lines) and handed to `JSONValueDecoder`,
which does the parsing; this module does only the reading.

A chunk is decoded `BATCH_BYTES` at a time. A value costs a few times its bytes
once decoded, and the consumer holds a whole batch while it waits (the server,
for a client that does not read): the raw bytes stay compact, the batch small.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any, Final

from aiohttp import ClientResponse

from .._http import read_excerpt, reply_scrubber, text_excerpt
from .._http.status import read_capped
from .._jsonstream import DONE_MARKER, JSONValueDecoder, loads, loads_or_text
from .._secrets import scrub_error
from .._urls import redact_url
from ..errors import (
    EventTooLargeError,
    InvalidJSONError,
    NotEventStreamError,
    UnexpectedReplyError,
)
from ..messages import JSONValue

__all__ = ["check_event_stream", "event_batches", "json_batches", "reply_batches"]

#: The most bytes of a reply decoded into one batch of values.
BATCH_BYTES: Final = 4 * 1024


async def event_batches(
    response: Any,
    max_event_size: int,
    *,
    require_event_stream: bool = True,
    raw_text: bool = False,
) -> AsyncGenerator[list[JSONValue], None]:
    """Yield the values of an event-stream reply in non-empty lists.

    Each list holds what one chunk of the reply (at most `BATCH_BYTES` of it)
    completed: the layers above pass lists on, so that many streams stay cheap
    (benchmarks/bench_load.py).
    With `require_event_stream`, a reply of another content type is refused
    first. An object whose `content` has no `iter_any` (the stand-in response
    of docs/protocol.md, "The provider's contract") is read as the seed's code
    reads aiohttp's lines: each item one line, each `data:` line one value.
    `raw_text` reads the messages dialect: a payload that is not a JSON string
    or object is text (docs/protocol.md, "Raw text in the messages dialect").

    Raises:
        NotEventStreamError: the reply is of another content type.
        InvalidJSONError, IncompleteEventError, EventTooLargeError: see
            `JSONValueDecoder`.
    """
    if require_event_stream:
        await check_event_stream(response)
    content = response.content
    iter_any = getattr(content, "iter_any", None)
    if iter_any is None:
        async for value in _parse_lines(content, raw_text=raw_text):
            yield [value]
        return
    decoder = JSONValueDecoder(max_event_size=max_event_size, raw_text=raw_text)
    async for chunk in iter_any():
        # Slicing a chunk no longer than a batch gives the chunk itself.
        for start in range(0, len(chunk), BATCH_BYTES):
            if values := decoder.feed(chunk[start : start + BATCH_BYTES]):
                yield values
            if decoder.done:
                return
    if values := decoder.close():
        yield values


def reply_batches(
    response: ClientResponse, max_event_size: int, *, raw_text: bool = False
) -> AsyncGenerator[list[JSONValue], None]:
    """Read a 2xx reply by what it is, not by what was asked for.

    An event stream gives its values as `event_batches` does (`raw_text` as
    there); a JSON reply
    (`application/json` or `+json`) is read whole by `json_batches`; anything
    else (an HTML page) is a NotEventStreamError with an excerpt.
    """
    kind = response.content_type
    if kind == "application/json" or kind.endswith("+json"):
        return json_batches(response, max_event_size)
    return event_batches(response, max_event_size, raw_text=raw_text)


async def json_batches(
    response: ClientResponse, max_size: int
) -> AsyncGenerator[list[JSONValue], None]:
    """Yield the whole answer of a JSON reply `{"output": "..."}`, once.

    docs/protocol.md, "The official API": the reply is one object whose
    `output` is the whole answer. What an error quotes of any other reply is
    scrubbed of the request's key (see `raise_for_status`).

    Raises:
        UnexpectedReplyError: any other JSON (an error object sent with 2xx).
        InvalidJSONError: the body is not JSON.
        EventTooLargeError: the body is larger than `max_size`.
    """
    data = await read_capped(response, max_size)
    if data is None:
        raise EventTooLargeError(
            f"the JSON reply of {redact_url(response.url)} is larger than "
            f"{max_size} bytes",
            limit=max_size,
        )
    text = data.decode("utf-8", "replace")
    try:
        value = loads(text)
    except InvalidJSONError as exc:
        scrub = reply_scrubber(response)
        scrub_error(exc, scrub)
        error = InvalidJSONError(
            f"{redact_url(response.url)} answered {response.status} with "
            f"{scrub(response.content_type)} that is not JSON: "
            f"{text_excerpt(text, scrub=scrub)}",
            data=exc.data,
        )
        error.key_sent = bool(scrub)
        raise error from exc
    if isinstance(value, dict) and isinstance(output := value.get("output"), str):
        yield [output]
        return
    scrub = reply_scrubber(response)
    excerpt = text_excerpt(text, scrub=scrub)
    unexpected = UnexpectedReplyError(
        f"{redact_url(response.url)} answered {response.status} with JSON that "
        f'is not {{"output": ...}}: {excerpt}',
        content_type=scrub(response.content_type),
        body=excerpt,
    )
    unexpected.key_sent = bool(scrub)
    raise unexpected


async def check_event_stream(response: ClientResponse) -> None:
    """Raise NotEventStreamError unless a reply is `text/event-stream`.

    docs/protocol.md, "Errors seen in the wild": an HTML page with status 200 must be
    an error, never an empty reply. What the error quotes of the reply (its
    content type, an excerpt) is scrubbed of the request's key (see
    `raise_for_status`).
    """
    if response.content_type == "text/event-stream":
        return
    scrub = reply_scrubber(response)
    body = text_excerpt(await read_excerpt(response, 64 * 1024), scrub=scrub)
    content_type = scrub(response.content_type)
    kind = content_type or "no content type"
    error = NotEventStreamError(
        f"{redact_url(response.url)} answered {response.status} with {kind} instead "
        f"of an event stream" + (f": {body}" if body else ""),
        content_type=content_type,
        body=body,
    )
    error.key_sent = bool(scrub)
    raise error


async def _parse_lines(
    lines: AsyncIterable[bytes | str], *, raw_text: bool = False
) -> AsyncGenerator[JSONValue, None]:
    """Yield the value of each `data:` line of an iterable of lines.

    `raw_text`: a payload that is not a JSON string or object is text.
    """
    async for item in lines:
        line = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        line = line.rstrip("\r\n")
        if not line.startswith("data:"):
            continue  # comments, other fields and blank lines carry no value
        data = line[6:] if line.startswith("data: ") else line[5:]
        if data.strip() == DONE_MARKER:
            return
        yield loads_or_text(data) if raw_text else loads(data)
