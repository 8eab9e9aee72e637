"""How a request is matched with a recording: its normalised form, and an index.

Pure. `normalise_request` reduces a request to what decides its answer
(docs/protocol.md, "Cassettes"): the dialect its shape names, the model the
dialect resolves, and the conversation as a list of turns in every dialect.
No header is part of it but whether a Bearer key was sent (which names the api
dialect): not `Visitor-ID`, not `User-Agent`, not the key's value.

`CassetteIndex` finds the recordings of a normalised request in order, and for
a request it lacks, the nearest one it has.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from ..messages import JSONValue
from ..providers.dialects import DIALECTS
from .cassette import CassetteRequest, Exchange, Turn
from .checks import dialect_of

__all__ = ["CassetteIndex", "Nearest", "describe", "normalise_request"]

#: How many characters of a turn `describe` quotes.
_QUOTE: Final = 60


def normalise_request(
    raw: bytes, authorization: str | None, scrub: Callable[[str], str] = str
) -> CassetteRequest:
    """Return the normalised form of a request's body, with `scrub` applied.

    The history and api dialects' `inputHistory` and `outputHistory` become
    alternating user and assistant turns (the histories' leftovers after
    them), and `input` the last user turn; the messages dialect's messages are
    taken as they are, without their attachments. A body that is not a JSON
    object has an empty conversation. Lenient: whatever the upstream will make
    of a body, it has a form.
    """
    try:
        decoded: JSONValue = msgspec.json.decode(raw) if raw else None
    except (msgspec.DecodeError, RecursionError):
        decoded = None
    body = decoded if isinstance(decoded, dict) else {}
    dialect = dialect_of(body, authorization)
    model = body.get("model")
    model = (model if isinstance(model, str) else "") or DIALECTS[dialect].default_model
    if dialect == "messages":
        turns = _messages_turns(body.get("messages"))
    else:
        turns = _history_turns(body) if body else []
    conversation = [Turn(scrub(role), scrub(content)) for role, content in turns]
    return CassetteRequest(dialect, scrub(model), conversation)


def _messages_turns(messages: JSONValue) -> list[tuple[str, str]]:
    if not isinstance(messages, list):
        return []
    return [
        (_text(message.get("role")), _text(message.get("content")))
        for message in messages
        if isinstance(message, dict)
    ]


def _history_turns(body: Mapping[str, JSONValue]) -> list[tuple[str, str]]:
    users = _texts(body.get("inputHistory"))
    assistants = _texts(body.get("outputHistory"))
    turns: list[tuple[str, str]] = []
    for user, assistant in zip(users, assistants, strict=False):
        turns += [("user", user), ("assistant", assistant)]
    paired = min(len(users), len(assistants))
    turns += [("user", text) for text in users[paired:]]
    turns += [("assistant", text) for text in assistants[paired:]]
    turns.append(("user", _text(body.get("input"))))
    return turns


def _texts(value: JSONValue) -> list[str]:
    return [_text(item) for item in value] if isinstance(value, list) else []


def _text(value: JSONValue) -> str:
    """A string as it is, anything else as its JSON text."""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def describe(request: CassetteRequest) -> str:
    """Return a short line naming a request: dialect, model, turns, the last one."""
    turns = request.conversation
    line = f"{request.dialect}, model {request.model}, {len(turns)} turn(s)"
    if turns:
        last = turns[-1]
        text = (
            last.content
            if len(last.content) <= _QUOTE
            else last.content[:_QUOTE] + "..."
        )
        line += f", the last {last.role}: {text!r}"
    return line


@dataclass(frozen=True, slots=True)
class Nearest:
    """The recorded request nearest to one the cassette lacks, and how it differs."""

    request: CassetteRequest
    line: int
    differs: str


class _Recordings:
    """The recordings of one request, taken in order; the last one repeats."""

    __slots__ = ("exchanges", "lines", "taken")

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.lines: list[int] = []
        self.taken = 0

    def take(self) -> Exchange:
        index = min(self.taken, len(self.exchanges) - 1)
        self.taken += 1
        return self.exchanges[index]


class CassetteIndex:
    """The exchanges of a cassette, found by their normalised request.

    A request recorded several times is answered with its recordings in the
    order they were recorded, and with the last one from then on.
    """

    def __init__(self, exchanges: Iterable[tuple[int, Exchange]] = ()) -> None:
        self._by_key: dict[bytes, _Recordings] = {}
        for line, exchange in exchanges:
            self.add(exchange, line)

    def __len__(self) -> int:
        """Return how many different requests are recorded."""
        return len(self._by_key)

    def add(self, exchange: Exchange, line: int) -> None:
        """Add a recording of `exchange.request`, found at `line` of the cassette."""
        key = msgspec.json.encode(exchange.request)
        recordings = self._by_key.get(key)
        if recordings is None:
            recordings = self._by_key[key] = _Recordings()
        recordings.exchanges.append(exchange)
        recordings.lines.append(line)

    def take(self, request: CassetteRequest) -> Exchange | None:
        """Return the next recording of `request`, or None if it has none."""
        recordings = self._by_key.get(msgspec.json.encode(request))
        return None if recordings is None else recordings.take()

    def nearest(self, request: CassetteRequest) -> Nearest | None:
        """Return the recorded request most like `request`, or None if empty.

        The same dialect counts most, then the same model, then how alike the
        conversations read (difflib's ratio).
        """
        wanted = _flat(request)
        best: tuple[tuple[bool, bool, float], _Recordings] | None = None
        for recordings in self._by_key.values():
            candidate = recordings.exchanges[0].request
            score = (
                candidate.dialect == request.dialect,
                candidate.model == request.model,
                difflib.SequenceMatcher(None, wanted, _flat(candidate)).ratio(),
            )
            if best is None or score > best[0]:
                best = (score, recordings)
        if best is None:
            return None
        found = best[1].exchanges[0].request
        return Nearest(found, best[1].lines[0], _difference(request, found))


def _flat(request: CassetteRequest) -> str:
    return "\n".join(f"{turn.role}: {turn.content}" for turn in request.conversation)


def _difference(wanted: CassetteRequest, recorded: CassetteRequest) -> str:
    """Say where `recorded` first differs from `wanted`."""
    if wanted.dialect != recorded.dialect:
        return f"the dialect ({recorded.dialect}, not {wanted.dialect})"
    if wanted.model != recorded.model:
        return f"the model ({recorded.model}, not {wanted.model})"
    pairs = zip(wanted.conversation, recorded.conversation, strict=False)
    for index, (mine, theirs) in enumerate(pairs):
        if mine != theirs:
            return f"turn {index + 1} of the conversation"
    return (
        f"the length of the conversation ({len(recorded.conversation)} turns, "
        f"not {len(wanted.conversation)})"
    )
