"""Cassettes: recorded exchanges with a Koala endpoint, one JSON object a line.

A cassette is a JSONL file (docs/protocol.md, "Cassettes"). Each line is one
`Exchange`: the request as it is matched (its dialect, model and normalised
conversation; never a header) and the response as it was sent (its status, the
headers worth keeping, its body as the chunks it arrived in, and when each
came). Every line carries the format's `version`, so cassettes can be joined
with `cat` and appended to by any recorder.

`load_cassette` validates every line as it decodes it (msgspec does both at
once) and names the first bad line; `append_exchange` writes one. Nothing else
here does I/O.

Example:
    >>> exchange = Exchange(
    ...     request=CassetteRequest("history", "gpt-4o-mini", [Turn("user", "Hi")]),
    ...     response=CassetteResponse(200, chunks=['data: "Hello"\\n\\n']),
    ... )
    >>> decode_exchange(encode_exchange(exchange)) == exchange
    True
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import Annotated, Final, Literal

import msgspec

from ..errors import UsageError

__all__ = [
    "CASSETTE_VERSION",
    "CassetteError",
    "CassetteRequest",
    "CassetteResponse",
    "Exchange",
    "Timing",
    "Turn",
    "append_exchange",
    "decode_exchange",
    "encode_exchange",
    "load_cassette",
]

CASSETTE_VERSION: Final = 1
"""The version of the cassette format this package writes and reads."""

Encoding = Literal["utf-8", "base64"]


class CassetteError(UsageError):
    """A cassette that cannot be read: missing, not JSONL, or of another shape.

    `path` is the file and `line` the 1-based line at fault (0: the file
    itself); the message names both.
    """

    def __init__(
        self, message: str = "", *, path: str = "", line: int = 0, attempts: int = 1
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.path = path
        self.line = line


class Turn(msgspec.Struct, frozen=True):
    """One message of the normalised conversation."""

    role: str
    content: str


class CassetteRequest(msgspec.Struct, frozen=True):
    """What a request is matched on: its dialect, its model, its conversation.

    `model` is the model the dialect resolves (an empty one is its default);
    `conversation` the messages in order (see `koala_chat.sandbox.matching`).
    """

    dialect: Literal["history", "messages", "api"]
    model: str
    conversation: list[Turn]


class Timing(msgspec.Struct, frozen=True):
    """When the response came, in seconds since the request was sent.

    `head` is when the status and headers arrived, `chunks` when each chunk of
    the body did (as many as there are chunks, never decreasing).
    """

    head: Annotated[float, msgspec.Meta(ge=0)]
    chunks: list[Annotated[float, msgspec.Meta(ge=0)]]

    def __post_init__(self) -> None:
        """Refuse times that go back (msgspec reports it on the line).

        Raises:
            ValueError: a chunk before the head or before the chunk before it.
        """
        previous = self.head
        for index, offset in enumerate(self.chunks):
            if offset < previous:
                raise ValueError(
                    f"timing.chunks[{index}] is earlier than the one before"
                )
            previous = offset


class CassetteResponse(msgspec.Struct, frozen=True):
    """The response as the client got it.

    `chunks` are the writes of the body in order: text when every one of them
    is UTF-8 (`encoding` "utf-8"), else each one's bytes in base64. `complete`
    is False when the upstream cut the body short; replaying it cuts the
    connection after the last chunk too.
    """

    status: Annotated[int, msgspec.Meta(ge=100, le=599)]
    headers: list[tuple[str, str]] = []
    encoding: Encoding = "utf-8"
    chunks: list[str] = []
    timing: Timing | None = None
    complete: bool = True

    def __post_init__(self) -> None:
        """Check the chunks decode and the timing has one time per chunk.

        Raises:
            ValueError: a chunk that is not base64, or a timing of another length.
        """
        if self.encoding == "base64":
            for index, chunk in enumerate(self.chunks):
                try:
                    base64.b64decode(chunk, validate=True)
                except binascii.Error:
                    raise ValueError(f"chunks[{index}] is not base64") from None
        if self.timing is not None and len(self.timing.chunks) != len(self.chunks):
            raise ValueError(
                f"timing has {len(self.timing.chunks)} times for "
                f"{len(self.chunks)} chunks"
            )

    def body_chunks(self) -> list[bytes]:
        """Return the chunks as the bytes to write, in order."""
        if self.encoding == "base64":
            return [base64.b64decode(chunk) for chunk in self.chunks]
        return [chunk.encode() for chunk in self.chunks]

    @classmethod
    def of_bytes(
        cls,
        status: int,
        headers: Sequence[tuple[str, str]],
        chunks: Sequence[bytes],
        *,
        timing: Timing | None = None,
        complete: bool = True,
    ) -> CassetteResponse:
        """Return the response of these body chunks, as text where they all are."""
        try:
            texts = [chunk.decode() for chunk in chunks]
            encoding: Encoding = "utf-8"
        except UnicodeDecodeError:
            texts = [base64.b64encode(chunk).decode() for chunk in chunks]
            encoding = "base64"
        return cls(status, list(headers), encoding, texts, timing, complete)


class Exchange(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a cassette: a request and the response it got."""

    version: int = CASSETTE_VERSION
    request: CassetteRequest
    response: CassetteResponse
    #: When it was recorded (UTC, ISO 8601), for the reader; never matched.
    recorded: str | None = None


class _Versioned(msgspec.Struct):
    """Just the version of a line, read before its shape is checked."""

    version: object = None


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(Exchange)
_VERSION_DECODER: Final = msgspec.json.Decoder(_Versioned)


def encode_exchange(exchange: Exchange) -> bytes:
    """Return the cassette line of `exchange`, ending in a newline."""
    return _ENCODER.encode(exchange) + b"\n"


def decode_exchange(line: bytes) -> Exchange:
    """Return the exchange of one cassette line.

    Raises:
        ValueError: the line is not JSON, of another version, or of another shape;
            the message says which field.
    """
    try:
        exchange = _DECODER.decode(line)
    except msgspec.DecodeError as exc:
        _check_version(line)
        raise ValueError(str(exc)) from None
    if exchange.version != CASSETTE_VERSION:
        raise ValueError(_version_problem(exchange.version))
    return exchange


def _check_version(line: bytes) -> None:
    """Raise a clear error for a line of another version, whatever its shape."""
    try:
        version = _VERSION_DECODER.decode(line).version
    except msgspec.DecodeError:
        return
    if version is not None and version != CASSETTE_VERSION:
        raise ValueError(_version_problem(version))


def _version_problem(version: object) -> str:
    return (
        f"cassette version {version!r}, but this koala-chat reads version "
        f"{CASSETTE_VERSION}"
    )


def load_cassette(path: str | os.PathLike[str]) -> list[tuple[int, Exchange]]:
    """Return the exchanges of the cassette at `path`, each with its line number.

    Blank lines are skipped.

    Raises:
        CassetteError: the file cannot be read, or a line is not a valid
            exchange of this version (the message names the file and the line).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise CassetteError(
            f"cannot read the cassette {name}: {exc.strerror or type(exc).__name__}",
            path=name,
        ) from None
    exchanges: list[tuple[int, Exchange]] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            exchanges.append((number, decode_exchange(line)))
        except ValueError as exc:
            raise CassetteError(
                f"{name}, line {number}: not a cassette exchange: {exc}",
                path=name,
                line=number,
            ) from None
    return exchanges


def append_exchange(path: str | os.PathLike[str], exchange: Exchange) -> None:
    """Append `exchange` to the cassette at `path` (created if missing).

    One `write` of one whole line, so a line is never interleaved with another
    writer's.

    Raises:
        OSError: the file cannot be written.
    """
    with open(path, "ab") as file:
        file.write(encode_exchange(exchange))
