"""Tests of koala_chat._jsonstream: from event-stream bytes to JSON values.

Each case is fed as given, whole, one byte at a time and split in two at every
byte; all must give the same values and the same error.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koala_chat._jsonstream import DONE_MARKER, JSONValueDecoder, loads
from koala_chat._sse import DEFAULT_MAX_EVENT_SIZE
from koala_chat.errors import (
    EventTooLargeError,
    IncompleteEventError,
    InvalidJSONError,
    ProtocolError,
)
from koala_chat.messages import JSONValue

# One run: the values in order, whether [DONE] came, and the error (or None).
Outcome = tuple[list[JSONValue], bool, ProtocolError | None]


def run(chunks: list[bytes], max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> Outcome:
    """Feed `chunks` as a provider does (stopping at [DONE]), then close."""
    decoder = JSONValueDecoder(max_event_size=max_event_size)
    values: list[JSONValue] = []
    try:
        for chunk in chunks:
            values += decoder.feed(chunk)
            if decoder.done:
                break
        values += decoder.close()
    except ProtocolError as exc:
        return values, decoder.done, exc
    return values, decoder.done, None


def splits(stream: bytes) -> list[list[bytes]]:
    """Return `stream` whole, one byte at a time, and cut in two at every byte."""
    ways = [[stream], [stream[i : i + 1] for i in range(len(stream))]]
    ways += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    return ways


def check(
    stream: bytes,
    values: list[JSONValue],
    *,
    done: bool = False,
    error: type[ProtocolError] | None = None,
) -> list[ProtocolError | None]:
    """Assert that `stream`, however split, gives `values`, `done` and `error`.

    Return the errors raised, one per way of splitting.
    """
    errors = []
    for way in splits(stream):
        got_values, got_done, got_error = run(way)
        assert (got_values, got_done) == (values, done), way
        assert type(got_error) is (type(None) if error is None else error), way
        errors.append(got_error)
    return errors


def test_string_values_koala_style() -> None:
    check(b'data: "Hello"\n\ndata: " world"\n\n', ["Hello", " world"])


def test_object_values_seed_style() -> None:
    check(b'data: {"text": "Hi"}\n\ndata: [1, null]\n\n', [{"text": "Hi"}, [1, None]])


def test_every_json_type() -> None:
    stream = b'data: 1\n\ndata: -2.5\n\ndata: true\n\ndata: null\n\ndata: "\\u00e9"\n\n'
    check(stream, [1, -2.5, True, None, "é"])


def test_multi_line_data_is_one_value() -> None:
    check(b'data: {"a":\ndata: 1}\r\n\r\n', [{"a": 1}])


def test_event_types_are_ignored() -> None:
    check(b"event: delta\ndata: 1\n\n: ping\nid: 4\ndata: 2\n\n", [1, 2])


def test_done_ends_the_stream() -> None:
    check(b'data: "a"\n\ndata: [DONE]\n\ndata: "b"\n\n', ["a"], done=True)


def test_done_ignores_everything_after_it() -> None:
    decoder = JSONValueDecoder(max_event_size=8)
    assert decoder.feed(
        b'data: 1\n\ndata: [DONE]\n\ndata: nope\n\ndata: "too long"'
    ) == [1]
    assert decoder.done
    assert decoder.feed(b"data: more\n\n") == []
    assert decoder.close() == []


def test_done_as_cut_off_last_event() -> None:
    check(b"data: 1\n\ndata: [DONE]", [1], done=True)


def test_done_marker_ends_the_stream_only_as_the_whole_data_of_an_event() -> None:
    # `data: [DONE]` (docs/protocol.md, "Response") is not JSON; quoted, it is
    # a JSON string the answer may hold, and must come through as one.
    assert DONE_MARKER == "[DONE]"
    check(f"data: {DONE_MARKER}\n\n".encode(), [], done=True)
    check(b'data: "[DONE]"\n\ndata: 1\n\n', ["[DONE]", 1])
    check(b'data: ["[DONE]"]\n\n', [["[DONE]"]])


def test_values_before_a_bad_event_come_first() -> None:
    decoder = JSONValueDecoder()
    assert decoder.feed(b"data: 1\n\ndata: 2\n\ndata: nope\n\ndata: 3\n\n") == [1, 2]
    with pytest.raises(InvalidJSONError) as caught:
        decoder.feed(b"data: 4\n\n")
    assert caught.value.data == "nope"
    assert "nope" in str(caught.value)
    with pytest.raises(InvalidJSONError):  # every later call too
        decoder.close()


def test_bad_event_in_any_split() -> None:
    check(b"data: 1\n\ndata: {oops\n\ndata: 2\n\n", [1], error=InvalidJSONError)


def test_bad_event_first_raises_at_once() -> None:
    decoder = JSONValueDecoder()
    with pytest.raises(InvalidJSONError):
        decoder.feed(b"data: <html>\n\n")


def test_bad_event_before_done_is_an_error() -> None:
    # The stream broke before [DONE]: `done` stays False.
    check(b"data: 1\n\ndata: x\n\ndata: [DONE]\n\n", [1], error=InvalidJSONError)


def test_cut_off_last_event_with_complete_json_delivered() -> None:
    check(b'data: "a"\n\ndata: {"b": 2}', ["a", {"b": 2}])
    check(b'data: "a"\n\ndata: {"b": 2}\n', ["a", {"b": 2}])


def test_cut_off_last_event_incomplete() -> None:
    errors = check(b'data: "a"\n\ndata: {"b": ', ["a"], error=IncompleteEventError)
    for error in errors:
        assert isinstance(error, IncompleteEventError)
        assert error.data == '{"b": '


def test_stream_ending_on_a_blank_line_closes_cleanly() -> None:
    check(b"data: 1\n\n", [1])
    check(b"", [])


def test_too_large_event_after_values() -> None:
    decoder = JSONValueDecoder(max_event_size=10)
    assert decoder.feed(b'data: "ok"\n\ndata: "' + b"x" * 20) == ["ok"]
    with pytest.raises(EventTooLargeError) as caught:
        decoder.feed(b'"\n\n')
    assert caught.value.limit == 10


def test_nan_and_huge_integers_fall_back_to_the_standard_library() -> None:
    decoder = JSONValueDecoder()
    first, second, third = decoder.feed(
        b"data: NaN\n\ndata: 123456789012345678901234567890\n\ndata: -Infinity\n\n"
    )
    assert math.isnan(first)
    assert second == 123456789012345678901234567890
    assert third == -math.inf


def test_loads() -> None:
    assert loads('{"a": [1, "b"]}') == {"a": [1, "b"]}
    assert math.isnan(loads("NaN"))
    assert loads(str(2**100)) == 2**100


def test_loads_error_has_a_short_excerpt() -> None:
    data = "not json " * 100
    with pytest.raises(InvalidJSONError) as caught:
        loads(data)
    assert len(caught.value.data) <= 80
    assert caught.value.data.startswith("not json")
    assert len(str(caught.value)) < 140


@pytest.mark.parametrize("data", ["", "[1,", "[" * 100_000, "1 2", "'a'", "\ud800"])
def test_loads_rejects(data: str) -> None:
    with pytest.raises(InvalidJSONError):
        loads(data)


def test_incomplete_event_excerpt_is_short() -> None:
    decoder = JSONValueDecoder()
    decoder.feed(b'data: ["' + b"y" * 500)
    with pytest.raises(IncompleteEventError) as caught:
        decoder.close()
    assert len(caught.value.data) <= 80
    assert caught.value.data.startswith('["yyy')


# Property-based tests.

PROPERTY = settings(max_examples=200, deadline=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """Cut `stream` at `points` (taken modulo its length)."""
    bounds = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@PROPERTY
@given(
    values=st.lists(json_values, max_size=10),
    points=st.lists(st.integers(0, 10_000), max_size=10),
    indent=st.none() | st.just(1),
)
def test_values_round_trip(
    values: list[JSONValue], points: list[int], indent: int | None
) -> None:
    # With indent=1 a value spans several data lines.
    stream = "".join(
        "".join(f"data: {line}\n" for line in json.dumps(v, indent=indent).split("\n"))
        + "\n"
        for v in values
    ).encode()
    assert run(cut(stream, points)) == (values, False, None)


PIECES = [b"data: ", b"data:", b"1", b'"a"', b"[DONE]", b"{", b"}", b"\n", b"\n\n"]
PIECES += [b"\r\n", b": c\n", b"NaN", b"\xff", b"[", b"]", b","]


@PROPERTY
@given(
    stream=st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join)
    | st.binary(max_size=100),
    points=st.lists(st.integers(0, 10_000), max_size=10),
    limit=st.integers(1, 16),
)
def test_any_chunking_gives_the_same_outcome(
    stream: bytes, points: list[int], limit: int
) -> None:
    # run() catches ProtocolError only: anything else fails the test.
    whole_values, whole_done, whole_error = run([stream], limit)
    values, done, error = run(cut(stream, points), limit)
    # repr: NaN is not equal to itself.
    assert (repr(values), done) == (repr(whole_values), whole_done)
    assert type(error) is type(whole_error)


json_texts = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | st.text(st.characters(codec="utf-8"), max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
).map(json.dumps)


@PROPERTY
@given(text=json_texts | st.text(max_size=30))
def test_loads_agrees_with_the_standard_library(text: str) -> None:
    try:
        expected = repr(json.loads(text))
    except ValueError:
        with pytest.raises(InvalidJSONError):
            loads(text)
    else:
        assert repr(loads(text)) == expected
