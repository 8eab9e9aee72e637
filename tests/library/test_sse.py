"""Tests of koala_chat._sse, the incremental Server-Sent Events decoder.

Cases are named after the examples of the HTML standard, section 9.2
"Server-sent events" (9.2.5 parsing, 9.2.6 interpreting). Each case is fed as
given, whole, one byte at a time and split in two at every byte.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koala_chat._sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder
from koala_chat.errors import EventTooLargeError, ProtocolError, UsageError

E = ServerSentEvent
MiB = 1024 * 1024

# One run of a decoder: the events of feed(), the event close() returns, and
# the error that ended it (None if none).
Outcome = tuple[list[ServerSentEvent], ServerSentEvent | None, str | None]


def run(chunks: list[bytes], max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> Outcome:
    """Feed `chunks` to a fresh decoder, then close it."""
    decoder = SSEDecoder(max_event_size=max_event_size)
    events: list[ServerSentEvent] = []
    try:
        for chunk in chunks:
            events.extend(decoder.feed(chunk))
        return events, decoder.close(), None
    except ProtocolError as exc:
        return events, None, type(exc).__name__


def splits(stream: bytes) -> list[list[bytes]]:
    """Return `stream` whole, one byte at a time, and cut in two at every byte."""
    ways = [[stream], [stream[i : i + 1] for i in range(len(stream))]]
    ways += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    return ways


def check(
    chunks: list[bytes],
    events: list[ServerSentEvent],
    last: ServerSentEvent | None = None,
) -> None:
    """Assert that `chunks`, however split, give `events` and then `last`."""
    assert run(chunks) == (events, last, None)
    for way in splits(b"".join(chunks)):
        assert run(way) == (events, last, None), way


# The examples of section 9.2.6.


def test_spec_yhoo_multi_line_data() -> None:
    check([b"data: YHOO\ndata: +2\ndata: 10\n\n"], [E("YHOO\n+2\n10")])


def test_spec_comment_first_event_second_event() -> None:
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    check(
        [stream],
        [E("first event", id="1"), E("second event", id=""), E(" third event")],
    )


def test_spec_comment_block_ids_carry_over() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": test stream\n\ndata: first event\nid: 1\n\n") == [
        E("first event", id="1")
    ]
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"data: later\n\n") == [E("later", id="1")]
    assert decoder.feed(b"data:second event\nid\n\n") == [E("second event")]
    assert decoder.last_event_id == ""


def test_spec_empty_data_lines() -> None:
    # "data" alone fires an event with empty data; two fire a single LF; the
    # last block ends without a blank line (spec: discarded; close returns it).
    check([b"data\n\ndata\ndata\n\ndata:"], [E(""), E("\n")], last=E(""))


def test_spec_data_test_with_and_without_space() -> None:
    check([b"data:test\n\ndata: test\n\n"], [E("test"), E("test")])


def test_spec_stream_ends_without_blank_line() -> None:
    # The spec discards the last event; close() hands it to the caller.
    check([b"data: first\n\ndata: cut"], [E("first")], last=E("cut"))
    check([b"data: first\n\ndata: cut\n"], [E("first")], last=E("cut"))


# Line ends (section 9.2.5).


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_ends(end: bytes) -> None:
    stream = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
    check([stream], [E("a\nb"), E("c")])


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert run([b"data: a\r", b"\n\r", b"\n"]) == ([E("a")], None, None)
    assert run([b"data: a\r", b"", b"\ndata: b\r\n\r\n"]) == ([E("a\nb")], None, None)


def test_cr_then_crlf_is_two_line_ends() -> None:
    check([b"data: a\r\r\ndata: b\n\n"], [E("a"), E("b")])


def test_lone_cr_dispatches_at_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [E("a")]
    assert decoder.feed(b"\ndata: b\r\r") == [E("b")]


def test_mixed_line_ends() -> None:
    check([b"data: a\r\ndata: b\rdata: c\n\r\n"], [E("a\nb\nc")])


# Decoding (section 9.2.5: UTF-8 decode, one leading BOM dropped).


def test_bom_dropped_once() -> None:
    check([b"\xef\xbb\xbfdata: a\n\n"], [E("a")])
    # A second BOM is part of the field name, an unknown field.
    check([b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n"], [E("b")])


def test_bom_split_across_chunks() -> None:
    assert run([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == ([E("a")], None, None)


def test_bom_in_data_kept() -> None:
    check([b"data: \xef\xbb\xbfa\n\n"], [E("\ufeffa")])


def test_utf8_character_split_across_chunks() -> None:
    stream = "data: café € 🐨\n\n".encode()
    check([stream], [E("café € 🐨")])


def test_invalid_utf8_replaced() -> None:
    check([b"data: a\xffb\xc3(\n\n"], [E("a\ufffdb\ufffd(")])


def test_truncated_character_at_end_replaced() -> None:
    check([b"data: a\xe2\x82"], [], last=E("a\ufffd"))


def test_incomplete_bom_is_not_a_bom() -> None:
    # Its bytes become U+FFFD, which makes "data" an unknown field.
    check([b"\xef\xbbdata: a\n\ndata: b\n\n"], [E("b")])
    check([b"\xef\xbb"], [])


# Fields (section 9.2.6).


def test_comments_ignored() -> None:
    check([b": ping\n:\ndata: a\n: inside\n\n"], [E("a")])


def test_event_type() -> None:
    check(
        [b"event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"],
        [E("1", event="add"), E("2"), E("3")],
    )


def test_event_type_reset_by_empty_event() -> None:
    check([b"event: x\n\ndata: a\n\n"], [E("a")])


def test_id_sets_last_event_id() -> None:
    check(
        [b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"],
        [E("a", id="1"), E("b", id="1"), E("c", id="2")],
    )


def test_id_with_nul_ignored() -> None:
    check([b"id: 1\n\nid: a\x00b\ndata: x\n\n"], [E("x", id="1")])


def test_id_without_data_still_sets_last_event_id() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\n") == []
    assert decoder.last_event_id == ""  # only a dispatch sets it
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == "5"


def test_retry() -> None:
    decoder = SSEDecoder()
    assert decoder.retry is None
    assert decoder.feed(b"retry: 1000\ndata: a\n\ndata: b\n\n") == [
        E("a", retry=1000),
        E("b"),
    ]
    assert decoder.retry == 1000
    assert decoder.feed(b"retry: 0042\n\n") == []
    assert decoder.retry == 42


@pytest.mark.parametrize(
    "value",
    [b"", b"1a", b"-1", b"+1", b"  1", b"1.5", "١٢".encode(), b"99999999999999999999"],
)
def test_retry_not_ascii_digits_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 7\n\nretry:" + value + b"\ndata: x\n\n") == [E("x")]
    assert decoder.retry == 7


def test_unknown_field_ignored() -> None:
    check([b"foo: bar\ndata: a\nData: b\ndata : c\n\n"], [E("a")])


def test_field_without_colon() -> None:
    check([b"data\ndata\n\n"], [E("\n")])
    check([b"event\ndata: a\n\n"], [E("a")])


def test_only_one_space_after_colon_dropped() -> None:
    check([b"data:  a \n\ndata:\ta\n\n"], [E(" a "), E("\ta")])


def test_colon_in_value_kept() -> None:
    check([b"data: a: b:c\n\n"], [E("a: b:c")])


def test_empty_data_not_dispatched() -> None:
    check([b"\n\n\nevent: x\nid: 3\nretry: 5\n\n: c\n\n"], [])


def test_empty_stream() -> None:
    check([b""], [])
    assert run([]) == ([], None, None)


def test_plain_events_mixed_with_others() -> None:
    # The fast path takes runs of "data: X" + blank line; any other shape falls
    # back to the line path: both must agree.
    stream = (
        b"data: 1\n\ndata: 2\n\n: ping\n\ndata: 3\n\nid: 9\n\ndata: 4\n\n"
        b"data: 5\ndata: 6\n\ndata:7\n\ndata: 8\n\nevent: e\ndata: 9\n\n"
    )
    check(
        [stream],
        [
            E("1"),
            E("2"),
            E("3"),
            E("4", id="9"),
            E("5\n6", id="9"),
            E("7", id="9"),
            E("8", id="9"),
            E("9", event="e", id="9"),
        ],
    )


def test_feed_data_gives_the_data_only() -> None:
    decoder = SSEDecoder()
    stream = b"data: 1\n\nevent: e\ndata: 2\n\nid: 3\ndata: 3\n\ndata: 4\n\n"
    assert decoder.feed_data(stream) == ["1", "2", "3", "4"]
    assert decoder.last_event_id == "3"


# End of stream.


def test_close_returns_none_without_data() -> None:
    assert run([b"data: a\n\nevent: x\nid: 4\n"]) == ([E("a")], None, None)


def test_close_processes_the_final_line() -> None:
    check([b"event: e\nid: 4\ndata: a\ndata: b"], [], last=E("a\nb", "e", "4"))


def test_close_twice_and_feed_after_close() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a")
    assert decoder.close() == E("a")
    assert decoder.close() is None
    with pytest.raises(UsageError):
        decoder.feed(b"data: b\n\n")


def test_close_sets_last_event_id_of_returned_event() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a")
    assert decoder.close() == E("a", id="1")
    assert decoder.last_event_id == "1"


# Size limit.


def test_limit_is_positive() -> None:
    with pytest.raises(UsageError):
        SSEDecoder(max_event_size=0)


def test_event_of_16_mib_arrives_intact() -> None:
    data = b"x" * DEFAULT_MAX_EVENT_SIZE
    stream = b"data: " + data + b"\n\n"
    decoder = SSEDecoder()
    events = []
    for start in range(0, len(stream), MiB):
        events += decoder.feed(stream[start : start + MiB])
    assert len(events) == 1
    assert events[0].data == data.decode()


def feed_until_error(
    decoder: SSEDecoder, chunks: list[bytes]
) -> tuple[int, EventTooLargeError | None]:
    """Feed `chunks` until EventTooLargeError; return how many went in, and it."""
    for count, chunk in enumerate(chunks):
        try:
            decoder.feed(chunk)
        except EventTooLargeError as exc:
            return count, exc
    return len(chunks), None


def test_event_of_16_mib_and_one_raises() -> None:
    stream = b"data: " + b"x" * (DEFAULT_MAX_EVENT_SIZE + 1) + b"\n\n"
    chunks = [stream[start : start + MiB] for start in range(0, len(stream), MiB)]
    count, error = feed_until_error(SSEDecoder(), chunks)
    assert count == len(chunks) - 1
    assert error is not None
    assert error.limit == DEFAULT_MAX_EVENT_SIZE
    assert feed_until_error(SSEDecoder(), [stream])[0] == 0


@pytest.mark.parametrize(
    ("stream", "fits"),
    [
        (b"data: 0123456789\n\n", True),
        (b"data: 0123456789X\n\n", False),
        (b"data: 01234\ndata: 6789\n\n", True),  # 5 + LF + 4 characters
        (b"data: 01234\ndata: 67890\n\n", False),
        (b"data:0123456789\n\n", True),
        (b"data:" + b"\xc3\xa9" * 10 + b"\n\n", True),  # characters, not bytes
        (b": " + b"c" * 14 + b"\n\n", True),  # a line: limit + len("data: ")
        (b": " + b"c" * 15 + b"\n\n", False),
    ],
)
def test_limit_on_data_and_lines(stream: bytes, fits: bool) -> None:
    for way in splits(stream):
        events, last, error = run(way, max_event_size=10)
        assert (error is None) == fits, way
        assert last is None
        assert len(events) == (1 if fits and stream.startswith(b"data") else 0)


def test_limit_on_unterminated_last_line() -> None:
    assert run([b"data: " + b"x" * 11], max_event_size=10)[2] == "EventTooLargeError"
    assert run([b"data: " + b"x" * 10], max_event_size=10)[1] == E("x" * 10)


def test_limit_keeps_memory_bounded() -> None:
    # An endless line: the error comes as soon as it passes the limit.
    decoder = SSEDecoder(max_event_size=1000)
    assert feed_until_error(decoder, [b"x" * 100] * 1000)[0] == 10


def test_events_before_error_are_delivered_first() -> None:
    decoder = SSEDecoder(max_event_size=10)
    assert decoder.feed(b"data: a\n\ndata: b\n\ndata: " + b"x" * 20) == [E("a"), E("b")]
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: c\n\n")
    with pytest.raises(EventTooLargeError):  # and again, on every call
        decoder.close()


def test_long_line_in_small_chunks_is_linear() -> None:
    # 8 MiB in 1 KiB chunks: re-scanning the growing line at each chunk would
    # copy 32 GiB and time out.
    decoder = SSEDecoder()
    piece = b"y" * 1024
    for _ in range(8 * 1024):
        assert decoder.feed(piece) == []
    assert decoder.feed(b"\n\n") == []
    assert decoder.close() is None
    decoder = SSEDecoder()
    decoder.feed(b"data: ")
    for _ in range(8 * 1024):
        decoder.feed(piece)
    (event,) = decoder.feed(b"\n\n")
    assert len(event.data) == 8 * MiB


# Property-based tests.


def reference(stream: bytes) -> Outcome:
    """Decode a whole stream the plain way, straight from section 9.2.6."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    *lines, tail = re.split("\r\n|\r|\n", text)
    if tail:
        lines.append(tail)
    events: list[ServerSentEvent] = []
    data, event_type, id_buffer, retry = None, "", "", None
    for line in lines:
        if not line:
            if data is not None:
                events.append(E(data[:-1], event_type or "message", id_buffer, retry))
            data, event_type, retry = None, "", None
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if line.startswith(":"):
            pass
        elif field == "data":
            data = (data or "") + value + "\n"
        elif field == "event":
            event_type = value
        elif field == "id" and "\0" not in value:
            id_buffer = value
        elif field == "retry" and re.fullmatch("[0-9]+", value) and int(value) < 2**64:
            retry = int(value)
    last = None
    if data is not None:  # the event the stream ended inside
        last = E(data[:-1], event_type or "message", id_buffer, retry)
    return events, last, None


# Bytes that matter to the decoder, so that random streams hit every branch.
PIECES = [
    b"data",
    b"data:",
    b"data: ",
    b"event: ",
    b"id: ",
    b"retry: ",
    b":",
    b" ",
    b"\n",
    b"\n\n",
    b"\r",
    b"\r\n",
    b"x",
    b"12",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"\xc3",
    b"\xf0\x9f\x90\xa8",
    b"\xff",
    b"data: 1\n\n",
]
streams = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.binary(max_size=200),
)
PROPERTY = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """Cut `stream` at `points` (taken modulo its length)."""
    bounds = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@PROPERTY
@given(stream=streams, points=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_gives_the_same_events(stream: bytes, points: list[int]) -> None:
    whole = run([stream])
    assert run(cut(stream, points)) == whole
    assert run([stream[i : i + 1] for i in range(len(stream))]) == whole


@PROPERTY
@given(stream=streams)
def test_decoder_agrees_with_the_reference(stream: bytes) -> None:
    assert run([stream]) == reference(stream)


@PROPERTY
@given(
    stream=streams,
    points=st.lists(st.integers(0, 10_000), max_size=12),
    limit=st.integers(1, 24),
)
def test_arbitrary_bytes_raise_only_protocol_errors(
    stream: bytes, points: list[int], limit: int
) -> None:
    # run() catches ProtocolError only: anything else fails the test. Small
    # limits make EventTooLargeError common; it must come at the same place
    # for any chunking.
    assert run(cut(stream, points), limit) == run([stream], limit)


line_text = st.text(
    st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=12
)
sent_events = st.lists(
    st.tuples(
        st.lists(line_text, min_size=1, max_size=3),  # data lines
        line_text,  # event type
        st.none() | line_text.filter(lambda s: "\0" not in s),  # id
        st.none() | st.integers(0, 2**40),  # retry
    ),
    max_size=8,
)


@PROPERTY
@given(events=sent_events, points=st.lists(st.integers(0, 10_000), max_size=8))
def test_encoded_events_round_trip(
    events: list[tuple[list[str], str, str | None, int | None]], points: list[int]
) -> None:
    wire, expected, last_id = [], [], ""
    for lines, event_type, id_, retry in events:
        if event_type:
            wire.append(f"event: {event_type}\n")
        if id_ is not None:
            wire.append(f"id: {id_}\n")
            last_id = id_
        if retry is not None:
            wire.append(f"retry: {retry}\n")
        wire += [f"data: {line}\n" for line in lines]
        wire.append("\n")
        expected.append(E("\n".join(lines), event_type or "message", last_id, retry))
    stream = "".join(wire).encode()
    assert run(cut(stream, points)) == (expected, None, None)
