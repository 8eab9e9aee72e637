"""The decoder under attack, at the level of `Koala._parse_event_stream`.

`test_sse.py` and `test_jsonstream.py` state the decoder's properties layer by
layer. Here a hostile server feeds the provider's own reading loop: arbitrary
bytes in any chunking, the seed's line-by-line path, floods built to cost
quadratic time or unbounded memory, JSON built to blow the stack, and a stream
that never ends after `[DONE]`. Whatever arrives, only a `ProtocolError` may
come out, in bounded time and memory. The coverage-guided fuzz target for the
same code is `fuzz/fuzz_decoder.py`.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import aclosing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koala_chat import (
    EventTooLargeError,
    InvalidJSONError,
    Koala,
    ProtocolError,
)
from koala_chat._jsonstream import JSONValueDecoder

# What one decoding gives: the reprs of the values (NaN is not equal to itself)
# and the type of the error that ended it, if any.
Outcome = tuple[list[str], type[ProtocolError] | None]

ATTACK = settings(max_examples=300, deadline=None)
MiB = 1024 * 1024

# Pieces of the format, so that random streams hit its corners more often.
TOKENS = [b"data:", b"data: ", b"event:", b"id:", b"retry:", b": ", b"[DONE]"]
TOKENS += [b"\n", b"\r", b"\r\n", b"\n\n", b"\xef\xbb\xbf", b"\xff", b"\xe2\x82"]
TOKENS += [b'"', b"{", b"}", b"[", b"]", b"1", b"NaN", b" "]
streams = st.binary(max_size=300) | st.lists(
    st.sampled_from(TOKENS) | st.binary(max_size=4), max_size=60
).map(b"".join)
cut_points = st.lists(st.integers(0, 10_000), max_size=12)


class _Content:
    """The `content` of a response: the chunks, as aiohttp's `iter_any()` gives."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.read_chunks = 0

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.read_chunks += 1
            yield chunk


class Reply:
    """A stand-in for an aiohttp response whose body is `chunks`."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.content = _Content(chunks)


class LineReply:
    """A stand-in of the seed's kind: `content` yields lines."""

    def __init__(self, lines: list[bytes | str]) -> None:
        self.content = _lines(lines)


async def _lines(lines: list[bytes | str]) -> AsyncIterator[bytes | str]:
    for line in lines:
        yield line


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """Cut `stream` at `points` (taken modulo its length)."""
    bounds = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


async def parse(response: object, limit: int = 16 * MiB) -> Outcome:
    """Run `Koala._parse_event_stream`; only a ProtocolError may end it early."""
    values: list[str] = []
    try:
        async with aclosing(
            Koala._parse_event_stream(response, max_event_size=limit)
        ) as stream:
            async for value in stream:
                values.append(repr(value))
    except ProtocolError as exc:
        return values, type(exc)
    return values, None


def run(coroutine: Coroutine[object, None, Outcome]) -> Outcome:
    """Run `parse` on a stand-in without an event loop: nothing in it waits.

    Hypothesis runs hundreds of examples; a fresh event loop for each would
    cost more than the decoding.
    """
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("parsing a stand-in reply waited for something")


def decode(chunks: list[bytes], limit: int) -> Outcome:
    """Decode with the pure decoder, the reference for the provider's loop."""
    decoder = JSONValueDecoder(max_event_size=limit)
    values: list[str] = []
    try:
        for chunk in chunks:
            values += map(repr, decoder.feed(chunk))
            if decoder.done:
                return values, None
        values += map(repr, decoder.close())
    except ProtocolError as exc:
        return values, type(exc)
    return values, None


@ATTACK
@given(stream=streams, points=cut_points, limit=st.integers(1, 64) | st.just(MiB))
def test_arbitrary_bytes_through_the_provider(
    stream: bytes, points: list[int], limit: int
) -> None:
    whole = run(parse(Reply([stream]), limit))
    chunked = run(parse(Reply(cut(stream, points)), limit))
    assert chunked == whole
    assert whole == decode([stream], limit)


@ATTACK
@given(
    lines=st.lists(
        st.binary(max_size=40)
        | st.text(max_size=40)
        | st.sampled_from(["data: [DONE]", "data: {", 'data:"x"', b"data: \xff"]),
        max_size=20,
    )
)
def test_arbitrary_lines_through_the_seeds_path(lines: list[bytes | str]) -> None:
    values, error = run(parse(LineReply(lines)))
    assert error in (None, InvalidJSONError)
    assert len(values) <= sum(
        (line if isinstance(line, str) else line.decode("utf-8", "replace")).startswith(
            "data:"
        )
        for line in lines
    )


async def test_done_stops_reading_an_endless_stream() -> None:
    # A server that keeps sending after [DONE] must not keep the caller.
    def endless() -> Iterable[bytes]:
        yield b'data: "a"\n\ndata: [DONE]\n\n'
        while True:
            yield b"data: garbage\n\n"

    response = Reply(endless())
    assert await parse(response) == (["'a'"], None)
    assert response.content.read_chunks == 1


async def test_endless_line_stops_at_the_limit_in_bounded_memory() -> None:
    # 64 MiB without a line end, in 64 KiB chunks, against a 1 MiB limit.
    chunk = b"data: " + b"x" * (64 * 1024 - 6)
    response = Reply(itertools.repeat(chunk, 1024))
    tracemalloc.start()
    try:
        outcome = await parse(response, limit=MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert outcome == ([], EventTooLargeError)
    assert response.content.read_chunks <= 17  # stopped just past 1 MiB
    assert peak < 8 * MiB


@pytest.mark.parametrize(
    ("unit", "limit"),
    [
        (b"data:\n", 1024),  # endless empty data lines: each adds a line feed
        (b"data: 1\n", 1024),  # one event of many short lines
    ],
    ids=["empty-data-lines", "short-data-lines"],
)
async def test_many_small_lines_count_against_the_limit(
    unit: bytes, limit: int
) -> None:
    response = Reply(itertools.repeat(unit * 1000, 10_000))

    assert await parse(response, limit=limit) == ([], EventTooLargeError)
    assert response.content.read_chunks <= 2


@pytest.mark.parametrize(
    "unit",
    [b"\r", b"\n", b"\r\n", b": comment\n", b"event: ping\n\n", b"retry: 1\n"],
    ids=["cr", "lf", "crlf", "comments", "events-without-data", "retry"],
)
async def test_floods_without_values_cost_linear_time(unit: bytes) -> None:
    # 1 MiB of lines that make no value, in 1 KiB chunks (which also cut CRLFs).
    flood = unit * (MiB // len(unit))
    chunks = [flood[i : i + 1024] for i in range(0, len(flood), 1024)]
    start = time.perf_counter()

    outcome = await parse(Reply([*chunks, b'data: "end"\n\n']))

    assert outcome == (["'end'"], None)
    # Linear work takes well under a second here; quadratic would take minutes.
    assert time.perf_counter() - start < 10


def test_one_byte_chunks_cost_linear_time() -> None:
    # A server that writes one byte at a time: four times the bytes must cost
    # about four times the work, not sixteen (re-scanning a growing buffer).
    def seconds(size: int) -> float:
        event = b'data: "' + b"k" * size + b'"\n\n'
        chunks = (event[i : i + 1] for i in range(len(event)))
        start = time.perf_counter()
        assert run(parse(Reply(chunks))) == (["'" + "k" * size + "'"], None)
        return time.perf_counter() - start

    seconds(4096)  # warm up
    small, large = seconds(32 * 1024), seconds(128 * 1024)
    assert large < 10 * small


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 200_000 + b"]" * 200_000,  # valid JSON, deeper than any stack
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"9" * 100_000,  # past Python's limit on integer digits
        b'"' + b"\\ud800" * 1000 + b'"',  # lone surrogates
        b"\x00",
        b"\xff\xfe",
    ],
    ids=["deep-arrays", "deep-objects", "huge-integer", "surrogates", "nul", "bytes"],
)
async def test_hostile_json_is_a_protocol_error(data: bytes) -> None:
    stream = b'data: "before"\n\ndata: ' + data + b"\n\n"
    values, error = await parse(Reply([stream]))
    assert values[:1] == ["'before'"]
    assert error in (None, InvalidJSONError)


def test_values_are_not_shared_between_streams() -> None:
    # A decoder per response: nothing leaks from one reply into the next.
    cut_off = run(parse(Reply([b'data: ["unfinished'])))
    fresh = run(parse(Reply([b'data: "fresh"\n\n'])))
    assert cut_off[1] is not None
    assert fresh == (["'fresh'"], None)
