"""What the sandbox answers: reply scripts, recorded requests and the default reply.

Everything here is pure: `default_reply` computes the deterministic reply text
of a request in any dialect, and `render` turns a `Reply` into the exact byte
strings the server writes, one per write. The checks of the requests live in
`checks.py`; the server (`app.py`) only does the I/O.
"""

from __future__ import annotations

import functools
import importlib
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from multidict import CIMultiDictProxy

from .._jsonstream import loads_or_text
from ..errors import UsageError
from ..messages import JSONValue
from ..providers.dialects import DIALECTS, Dialect
from .checks import InvalidRequestError, validate_body

__all__ = [
    "COALESCE_LIMIT",
    "DEFAULT_MODEL",
    "InvalidRequestError",
    "RecordedRequest",
    "Reply",
    "content_type",
    "default_reply",
    "default_writes",
    "render",
    "validate_body",
]

DEFAULT_MODEL = DIALECTS["history"].default_model
"""The model an empty `model` field stands for (docs/protocol.md, "Request")."""

COALESCE_LIMIT = 16 * 1024
"""Events are packed into writes of up to this many bytes when nothing needs them
apart (no pacing, no stall, no explicit split): over TCP a reader cannot tell
the difference, and it spares thousands of tiny writes on long replies."""

# Deterministic filler that pads the default reply to `pieces` pieces.
_FILLER = ("Koalas", "sleep", "up", "to", "twenty", "hours", "a", "day.")

_DONE = b"data: [DONE]\n\n"


@dataclass
class Reply:
    """One scripted reply of the sandbox, queued with `Sandbox.push`.

    The body is either a list of values or raw bytes. In the streamed dialects
    (history, messages) each value is sent as an event `data: <json>` followed
    by a blank line; in the api dialect the values are joined into the one JSON
    object `{"output": "..."}` (a string as it is, any other value as its JSON
    text). Writes, pacing, stalls, cuts and compression all apply to the body
    bytes as they go on the wire (after compression); the chunked framing is the
    server's.

    A reply answers only a request its sandbox accepts (a body of the wrong
    dialect still gets the 400 and leaves the reply queued), unless `any_body`
    says it takes any body: then the body is not checked (the api dialect's key
    still is), and the reply is rendered in the dialect the sandbox's protocol
    or the body's shape names.

    Attributes:
        values: The streamed values; None streams the default reply to the
            request (`default_reply`, as long as the sandbox's `pieces` says).
        body: Raw body bytes instead of events (an HTML page, a malformed stream).
        status: The HTTP status.
        headers: Extra response headers; they override the defaults.
        content_type: The `Content-Type` of the reply; None: the dialect's
            (`text/event-stream`, or `application/json` for the api dialect).
        done: Append `data: [DONE]` after the values; None: as the dialect
            does (the messages dialect does, the history dialect does not).
            Streamed dialects only.
        write_size: Split the body into writes of this many bytes. None: one
            write per event (or the whole raw body), except that without pacing,
            a stall or explicit splits consecutive events are packed into writes
            of up to `COALESCE_LIMIT` bytes.
        splits: Explicit byte offsets at which to split the writes; offsets at
            or past the end of the body are ignored.
        interval: Seconds to wait between writes, to pace the reply like a model.
        stall_at: Before write number N (0-based) hold until `Sandbox.release()`;
            N at or past the number of writes holds before the end of the body.
        cut_at: After N body bytes abort the TCP connection (a reset: no final
            chunk, no clean close). N past the body sends all of it first.
        compress: The `Content-Encoding` of the body; every write is flushed
            through the compressor, so each arrives decodable on its own.
        any_body: Answer whatever body the request has, unchecked.
        raw_text: In the messages dialect, send each string value as the raw
            text of its event (`data: Koalas`), not as JSON, wherever a reader
            gets the same string back (docs/protocol.md, "Raw text in the
            messages dialect"); other values, and strings that would read
            back as something else, are sent as JSON.
    """

    values: list[JSONValue] | None = None
    body: bytes | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    done: bool | None = None
    write_size: int | None = None
    splits: list[int] | None = None
    interval: float = 0.0
    stall_at: int | None = None
    cut_at: int | None = None
    compress: Literal["gzip", "deflate", "br"] | None = None
    any_body: bool = False
    raw_text: bool = False

    def __post_init__(self) -> None:
        """Reject contradictory or impossible scripts at once, not mid-reply.

        Raises:
            UsageError: Both `values` and `body`, both `write_size` and `splits`,
                `done` with a raw body, or a negative or zero size, offset, wait.
        """
        if self.values is not None and self.body is not None:
            raise UsageError("a Reply takes values or a raw body, not both")
        if self.done and self.body is not None:
            raise UsageError("done appends an event; it does not apply to a raw body")
        if self.write_size is not None and self.splits is not None:
            raise UsageError("a Reply takes write_size or splits, not both")
        if self.write_size is not None and self.write_size < 1:
            raise UsageError(f"write_size must be at least 1, not {self.write_size}")
        if self.splits is not None and (
            any(offset < 1 for offset in self.splits)
            or sorted(set(self.splits)) != self.splits
        ):
            raise UsageError("splits must be increasing positive byte offsets")
        if self.interval < 0:
            raise UsageError(f"interval must not be negative, not {self.interval}")
        for name in ("stall_at", "cut_at"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"{name} must not be negative, not {value}")
        if self.compress not in (None, "gzip", "deflate", "br"):
            raise UsageError(
                "compress must be 'gzip', 'deflate', 'br' or None, "
                f"not {self.compress!r}"
            )


@dataclass(frozen=True)
class RecordedRequest:
    """A request the sandbox received.

    `headers` looks names up case-insensitively; `json` is the parsed body, or
    None when the body is empty or not JSON.
    """

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    json: JSONValue | None


def default_reply(
    body: Mapping[str, Any],
    *,
    pieces: int | None = None,
    dialect: Dialect = "history",
) -> list[str]:
    """Return the pieces of the deterministic reply to a request body.

    The reply shows what the server understood, for instance
    `You said: "Hi". History: 2 user, 1 assistant. Model: gpt-4o-mini.`, split
    into words each carrying its following whitespace, so the concatenation of
    the pieces is the text. In the history and api dialects it quotes `input`
    and counts `inputHistory` and `outputHistory`; in the messages dialect it
    quotes the last user message and counts the user messages before it and all
    assistant messages. An empty model names the dialect's default.

    `pieces` makes it exactly that many pieces: fewer than the words of the
    summary groups consecutive words (the text stays the same); more appends
    deterministic filler words (`" Koalas"`, `" sleep"`, ...).

    Raises:
        UsageError: `pieces` is less than 1.
    """
    return list(_default_pieces(*_summary_key(body, dialect), pieces))


def default_writes(
    body: Mapping[str, Any],
    *,
    pieces: int | None = None,
    interval: float = 0.0,
    dialect: Dialect = "history",
    raw_text: bool = False,
) -> tuple[bytes, ...]:
    """Return the writes of the default reply, as `render` makes them.

    `raw_text` sends the messages dialect's pieces as raw text (see `Reply`).

    The result is cached: a benchmark's thousand identical requests, or its
    reply of 100,000 pieces asked for again, are rendered once.

    Raises:
        UsageError: `pieces` is less than 1.
    """
    return _default_writes(
        *_summary_key(body, dialect), pieces, interval, dialect, raw_text
    )


def _summary_key(
    body: Mapping[str, Any], dialect: Dialect
) -> tuple[str, int, int, str]:
    """What the default reply depends on: the quote, the turn counts, the model.

    Lenient about types: a reply that takes any body summarises it too.
    """
    model = body.get("model")
    model = model if isinstance(model, str) and model else None
    model = model or DIALECTS[dialect].default_model
    if dialect != "messages":
        return (
            _string(body.get("input")),
            _length(body.get("inputHistory")),
            _length(body.get("outputHistory")),
            model,
        )
    messages = body.get("messages")
    turns = [
        (m.get("role"), m.get("content"))
        for m in (messages if isinstance(messages, list) else ())
        if isinstance(m, dict)
    ]
    users = [_string(content) for role, content in turns if role == "user"]
    assistants = sum(role == "assistant" for role, _ in turns)
    return (users[-1] if users else "", max(len(users) - 1, 0), assistants, model)


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _length(value: object) -> int:
    return len(value) if isinstance(value, list) else 0


@functools.lru_cache(maxsize=64)
def _default_writes(
    text: str,
    users: int,
    assistants: int,
    model: str,
    pieces: int | None,
    pace: float,
    dialect: Dialect,
    raw_text: bool,
) -> tuple[bytes, ...]:
    values = list(_default_pieces(text, users, assistants, model, pieces))
    return tuple(render(Reply(interval=pace, raw_text=raw_text), values, dialect))


@functools.lru_cache(maxsize=64)
def _default_pieces(
    text: str, users: int, assistants: int, model: str, pieces: int | None
) -> tuple[str, ...]:
    summary = (
        f'You said: "{text}". History: {users} user, {assistants} assistant. '
        f"Model: {model}."
    )
    words = re.findall(r"\S+\s*", summary)
    if pieces is None:
        return tuple(words)
    if pieces < 1:
        raise UsageError(f"pieces must be at least 1, not {pieces}")
    if pieces <= len(words):
        return tuple(_group(words, pieces))
    filler = (f" {_FILLER[i % len(_FILLER)]}" for i in range(pieces - len(words)))
    return (*words, *filler)


def _group(words: list[str], count: int) -> list[str]:
    """Join consecutive words into `count` pieces of near-equal word counts."""
    size, extra = divmod(len(words), count)
    groups: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (index < extra)
        groups.append("".join(words[start:end]))
        start = end
    return groups


def content_type(reply: Reply, dialect: Dialect = "history") -> str:
    """Return the `Content-Type` of `reply` in `dialect`: its own, or the dialect's."""
    if reply.content_type is not None:
        return reply.content_type
    return "text/event-stream" if DIALECTS[dialect].streams else "application/json"


def render(
    reply: Reply, values: list[JSONValue], dialect: Dialect = "history"
) -> list[bytes]:
    """Return the body bytes of `reply` as the list of writes to make, in order.

    `values` are the values to send when `reply.body` is None (the reply's own
    or the default reply): events in the streamed dialects, one JSON object
    `{"output": ...}` in the api dialect. See `Reply` for how the writes are
    split.

    Raises:
        UsageError: `compress="br"` without the `brotli` package installed.
    """
    units: list[bytes]
    if reply.body is not None:
        units = [reply.body]
    elif not DIALECTS[dialect].streams:
        units = [msgspec.json.encode({"output": _joined(values)})]
    else:
        raw = reply.raw_text and dialect == "messages"
        units = [_event(value, raw=raw) for value in values]
        done = reply.done if reply.done is not None else dialect == "messages"
        if done:
            units.append(_DONE)
    explicit = reply.write_size is not None or reply.splits is not None
    if not explicit and reply.interval == 0 and reply.stall_at is None:
        units = _coalesce(units, COALESCE_LIMIT)
    if reply.compress is not None:
        units = _compress(units, reply.compress)
    if reply.write_size is not None:
        body = b"".join(units)
        step = reply.write_size
        return [body[start : start + step] for start in range(0, len(body), step)]
    if reply.splits is not None:
        body = b"".join(units)
        starts = [0, *(offset for offset in reply.splits if offset < len(body))]
        ends = [*starts[1:], len(body)]
        return [body[a:b] for a, b in zip(starts, ends, strict=True)]
    return units


def _event(value: JSONValue, *, raw: bool) -> bytes:
    """Return the event that carries `value`: its JSON, or with `raw` its text.

    A raw string is cut into lines, one `data:` field each, which a reader
    joins again with LF (the HTML standard, section 9.2.6). It is sent as JSON
    instead where raw text would not read back as itself: a CR (a line break
    to the reader), `[DONE]`, or text that parses as a JSON string or object.
    """
    if raw and isinstance(value, str) and _reads_back(value):
        fields = b"".join(
            b"data: " + line.encode() + b"\n" for line in value.split("\n")
        )
        return fields + b"\n"
    return b"data: " + msgspec.json.encode(value) + b"\n\n"


def _reads_back(text: str) -> bool:
    return "\r" not in text and text != "[DONE]" and loads_or_text(text) == text


def _joined(values: list[JSONValue]) -> str:
    """The api dialect's `output`: strings as they are, other values as JSON."""
    return "".join(
        value if isinstance(value, str) else msgspec.json.encode(value).decode()
        for value in values
    )


def _coalesce(units: Iterable[bytes], limit: int) -> list[bytes]:
    """Pack consecutive units into byte strings of up to `limit` bytes.

    A unit larger than the limit stays whole: an event is never split here.
    """
    packed: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for unit in units:
        if batch and size + len(unit) > limit:
            packed.append(b"".join(batch))
            batch, size = [], 0
        batch.append(unit)
        size += len(unit)
    if batch:
        packed.append(b"".join(batch))
    return packed


def _compress(units: list[bytes], coding: str) -> list[bytes]:
    """Compress the units as one stream, flushing after each one.

    A sync flush after every unit means each write can be decoded as soon as it
    arrives, as a streaming server would send it; the end of the stream (the
    gzip trailer, the brotli last block) rides on the last unit.
    """
    if coding == "br":
        try:
            brotli: Any = importlib.import_module("brotli")
        except ImportError as exc:
            raise UsageError("compress='br' needs the brotli package") from exc
        compressor = brotli.Compressor()
        out = [compressor.process(unit) + compressor.flush() for unit in units]
        end: bytes = compressor.finish()
    else:
        # wbits 31 is the gzip container; 15 the zlib container that HTTP's
        # "deflate" coding means (RFC 9110, section 8.4.1.2).
        wbits = 31 if coding == "gzip" else 15
        deflate = zlib.compressobj(wbits=wbits)
        out = [
            deflate.compress(unit) + deflate.flush(zlib.Z_SYNC_FLUSH) for unit in units
        ]
        end = deflate.flush()
    if out:
        out[-1] += end
    else:
        out.append(end)
    return out
