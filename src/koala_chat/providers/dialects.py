"""What each Koala dialect sends: pure request builders, no I/O.

docs/protocol.md, "How koala-chat builds each request", states the rules these
functions follow; the dialects themselves are described there side by side.
Everything here is deterministic except the fresh `Visitor-ID` that
`build_request` draws when it is given none.

Example:
    >>> request = build_request(
    ...     "messages", "", [{"role": "user", "content": "Hi"}]
    ... )
    >>> request.body
    b'{"messages":[{"role":"user","content":"Hi","attachments":[]}],"model":"gemini-3-flash"}'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from ..defaults import PROTOCOLS, Dialect, Protocol
from ..errors import UsageError
from ..helper import get_random_string
from ..messages import JSONValue, NormalizedMessage, normalize_messages

__all__ = [
    "API",
    "DIALECTS",
    "HISTORY",
    "MESSAGES",
    "PROTOCOLS",
    "SHAPE_REJECTED_STATUSES",
    "ApiKey",
    "Dialect",
    "DialectInfo",
    "PreparedRequest",
    "Protocol",
    "api_body",
    "api_headers",
    "build_request",
    "choose_protocol",
    "history_body",
    "history_headers",
    "messages_body",
    "messages_headers",
    "pair_turns",
    "resolve_model",
]


SHAPE_REJECTED_STATUSES: Final = frozenset({400, 404, 405, 415, 422})
"""Statuses that say the endpoint refused the request's shape, not the caller:
the only reasons `auto` tries the next dialect (docs/protocol.md, "Choosing a
dialect")."""


@dataclass(frozen=True, slots=True)
class DialectInfo:
    """What a dialect is: its name, models and whether its reply is a stream."""

    name: Dialect
    default_model: str
    models: tuple[str, ...]
    streams: bool


HISTORY: Final = DialectInfo(
    "history",
    "gpt-4o-mini",
    ("gpt-4o-mini", "gpt-3.5-turbo", "gpt-4.1", "gpt-4.1-mini"),
    streams=True,
)
MESSAGES: Final = DialectInfo(
    "messages",
    "gemini-3-flash",
    ("gemini-3-flash", "gpt-5.3-chat-latest", "claude-4.5-haiku"),
    streams=True,
)
API: Final = DialectInfo(
    "api",
    "gpt-4o-mini",
    ("gpt-4o-mini", "gpt-4o", "claude-3.7-sonnet"),
    streams=False,
)
DIALECTS: Final[Mapping[Dialect, DialectInfo]] = {
    info.name: info for info in (HISTORY, MESSAGES, API)
}

# docs/protocol.md, "The messages dialect (2026)": the recorded browser.
_CHROME_USER_AGENT: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
# docs/protocol.md, "Request": the seed's Firefox.
_FIREFOX_USER_AGENT: Final = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0"
)
_ORIGIN: Final = "https://koala.sh"
_REFERER: Final = "https://koala.sh/chat"
# Consecutive turns of one speaker become one turn, as paragraphs.
_TURN_JOINER: Final = "\n\n"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key for the official API, kept out of every repr, str and message."""

    value: str = field(repr=False)

    def __post_init__(self) -> None:
        """Refuse an empty key or one that cannot be a header value.

        Raises:
            UsageError: the key is empty or holds whitespace or control characters.
        """
        if not isinstance(self.value, str) or not self.value:
            raise UsageError("the API key is empty: set KOALA_API_KEY")
        if not self.value.isprintable() or any(c.isspace() for c in self.value):
            raise UsageError(
                "the API key holds whitespace or control characters: check "
                "KOALA_API_KEY"
            )

    def __repr__(self) -> str:
        """Say that a key is there, never which."""
        return "ApiKey('***')"

    __str__ = __repr__

    def bearer(self) -> str:
        """Return the `Authorization` header value, `Bearer <key>`."""
        return f"Bearer {self.value}"


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """The body bytes and headers of one request; its repr hides the key."""

    dialect: Dialect
    body: bytes
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        """Show the dialect, the body's size and the header names only."""
        names = ", ".join(self.headers)
        return (
            f"PreparedRequest(dialect={self.dialect!r}, body=<{len(self.body)} "
            f"bytes>, headers=[{names}])"
        )

    __str__ = __repr__


def resolve_model(dialect: Dialect, model: str | None) -> str:
    """Return `model`, or the dialect's default model when it is empty or None."""
    return model or DIALECTS[dialect].default_model


def choose_protocol(protocol: str | None, *, has_key: bool) -> Protocol:
    """Return the protocol to use from the setting and whether a key is set.

    No setting (None or "") means `api` with a key and `auto` without one
    (docs/protocol.md, "Choosing a dialect").

    Raises:
        UsageError: an unknown protocol name.
    """
    if not protocol:
        return "api" if has_key else "auto"
    if protocol in PROTOCOLS:
        return protocol
    raise UsageError(
        f"unknown protocol {protocol!r}: use {', '.join(PROTOCOLS[:-1])} or "
        f"{PROTOCOLS[-1]}"
    )


def _web_search_flag(web_search: bool | None, default: bool) -> str:
    return "true" if (default if web_search is None else web_search) else "false"


# The history dialect: docs/protocol.md, "Request".


def history_body(
    model: str | None, messages: list[NormalizedMessage]
) -> dict[str, JSONValue]:
    """Return the seed's body: `input`, `inputHistory`, `outputHistory`, `model`.

    The same bytes as `Koala.build_body` once encoded; the camelCase wire keys of
    this dialect are spelled here.
    """
    input_text = messages[-1]["content"]
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    if system:
        input_text += f" {system}"
    return {
        "input": input_text,
        "inputHistory": [m["content"] for m in messages[:-1] if m["role"] == "user"],
        "outputHistory": [m["content"] for m in messages if m["role"] == "assistant"],
        "model": resolve_model("history", model),
    }


def history_headers(
    *,
    visitor_id: str,
    accept_encoding: str = "gzip, deflate",
    web_search: bool | None = None,
) -> dict[str, str]:
    """Return the seed's Firefox headers, `Content-Type` first.

    `accept_encoding` lists only the codings the caller can decode (`br` only
    with a brotli decoder); `web_search` None keeps `Flag-Real-Time-Data: false`.
    """
    return {
        "Content-Type": "application/json",
        "User-Agent": _FIREFOX_USER_AGENT,
        "Accept": "text/event-stream",
        "Accept-Language": "de,en-US;q=0.7,en;q=0.3",
        "Accept-Encoding": accept_encoding,
        "Referer": _REFERER,
        "Flag-Real-Time-Data": _web_search_flag(web_search, default=False),
        "Visitor-ID": visitor_id,
        "Origin": _ORIGIN,
        "Alt-Used": "koala.sh",
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
        "TE": "trailers",
    }


# The messages dialect: docs/protocol.md, "The messages dialect (2026)".


def messages_body(
    model: str | None, messages: list[NormalizedMessage]
) -> dict[str, JSONValue]:
    """Return `{"messages": [{"role", "content", "attachments": []}, ...], "model"}`.

    Every message is kept, system messages included, in order.
    """
    return {
        "messages": [
            {"role": m["role"], "content": m["content"], "attachments": []}
            for m in messages
        ],
        "model": resolve_model("messages", model),
    }


def messages_headers(*, web_search: bool | None = None) -> dict[str, str]:
    """Return the chat page's Chrome headers; `web_search` None keeps `true`."""
    return {
        "accept": "text/event-stream",
        "content-type": "application/json",
        "flag-real-time-data": _web_search_flag(web_search, default=True),
        "origin": _ORIGIN,
        "referer": _REFERER,
        "user-agent": _CHROME_USER_AGENT,
    }


# The official API: docs/protocol.md, "The official API".


def pair_turns(
    messages: list[NormalizedMessage],
) -> tuple[list[str], list[str], str]:
    """Return `(inputs, outputs, last)`: the paired histories and the open turn.

    Consecutive messages of one speaker are one turn, their contents joined by a
    blank line. A conversation (or an assistant turn) that starts without a user
    turn gets an empty user turn before it. Each user turn is then paired with
    the assistant turn after it; a final user turn without an answer is `last`,
    and a conversation that ends with an assistant turn has an empty `last`.
    System messages are skipped here (see `api_body`). No text is lost, and the
    two lists always have the same length.
    """
    turns: list[tuple[str, list[str]]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].append(message["content"])
        else:
            turns.append((role, [message["content"]]))
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", [""]))
    texts = [_TURN_JOINER.join(parts) for _, parts in turns]
    last = texts.pop() if len(texts) % 2 else ""
    return texts[0::2], texts[1::2], last


def api_body(
    model: str | None,
    messages: list[NormalizedMessage],
    *,
    web_search: bool | None = None,
) -> dict[str, JSONValue]:
    """Return `{"input", "inputHistory", "outputHistory", "model", "realTimeData"}`.

    The histories are paired by `pair_turns`; system messages are appended to
    `input` after a space, joined by single spaces, as the history dialect does.
    `web_search` None sends `realTimeData: false`.
    """
    inputs, outputs, last = pair_turns(messages)
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    return {
        "input": f"{last} {system}" if last and system else last or system,
        "inputHistory": inputs,
        "outputHistory": outputs,
        "model": resolve_model("api", model),
        "realTimeData": bool(web_search),
    }


def api_headers(key: ApiKey) -> dict[str, str]:
    """Return the official API's headers: the Bearer key and JSON both ways."""
    return {
        "Authorization": key.bearer(),
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def build_request(
    dialect: Dialect,
    model: str | None,
    messages: object,
    *,
    api_key: ApiKey | None = None,
    web_search: bool | None = None,
    visitor_id: str | None = None,
    accept_encoding: str = "gzip, deflate",
) -> PreparedRequest:
    """Return the body bytes and headers of a conversation in `dialect`.

    `messages` is checked and normalised first (content parts joined); an empty
    model means the dialect's default. The history dialect draws a fresh
    `Visitor-ID` when `visitor_id` is None; `accept_encoding` applies to it only.

    Raises:
        UsageError: bad messages, an unknown dialect, or the api dialect
            without `api_key`.
    """
    normalized = normalize_messages(messages)
    body: dict[str, JSONValue]
    if dialect == "history":
        body = history_body(model, normalized)
        headers = history_headers(
            visitor_id=visitor_id or get_random_string(20),
            accept_encoding=accept_encoding,
            web_search=web_search,
        )
    elif dialect == "messages":
        body = messages_body(model, normalized)
        headers = messages_headers(web_search=web_search)
    elif dialect == "api":
        if api_key is None:
            raise UsageError("the api dialect needs a key: set KOALA_API_KEY")
        body = api_body(model, normalized, web_search=web_search)
        headers = api_headers(api_key)
    else:
        raise UsageError(f"unknown dialect {dialect!r}: use history, messages or api")
    return PreparedRequest(dialect, msgspec.json.encode(body), headers)
