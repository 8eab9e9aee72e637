"""Cassettes on their own: the format, its validation, matching and scrubbing.

koala_chat.sandbox.cassette, matching and scrubbing; all pure, no server.
docs/protocol.md, "Cassettes".
"""

from __future__ import annotations

import base64
import pickle
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from koala_chat.errors import UsageError
from koala_chat.sandbox.cassette import (
    CASSETTE_VERSION,
    CassetteError,
    CassetteRequest,
    CassetteResponse,
    Exchange,
    Timing,
    Turn,
    append_exchange,
    decode_exchange,
    encode_exchange,
    load_cassette,
)
from koala_chat.sandbox.matching import CassetteIndex, normalise_request
from koala_chat.sandbox.scrubbing import ExchangeScrubber

HI = CassetteRequest("history", "gpt-4o-mini", [Turn("user", "Hi")])


def exchange(request: CassetteRequest = HI, text: str = "Hello") -> Exchange:
    chunk = f"data: {msgspec.json.encode(text).decode()}\n\n"
    return Exchange(
        request=request,
        response=CassetteResponse(
            200, [("Content-Type", "text/event-stream")], chunks=[chunk]
        ),
    )


def line(**changes: Any) -> bytes:
    """A cassette line as JSON, with top-level fields replaced."""
    value = msgspec.to_builtins(exchange())
    value.update(changes)
    return msgspec.json.encode(value)


# The format


def test_a_line_round_trips_and_names_its_version_first() -> None:
    recorded = exchange()
    encoded = encode_exchange(recorded)
    assert encoded.startswith(b'{"version":%d,' % CASSETTE_VERSION)
    assert encoded.endswith(b"}\n")
    assert encoded.count(b"\n") == 1
    assert decode_exchange(encoded) == recorded


def test_bytes_that_are_not_text_are_kept_as_base64() -> None:
    chunks = [b"\x1f\x8b\x08", b"data"]
    response = CassetteResponse.of_bytes(200, [], chunks)
    assert response.encoding == "base64"
    assert response.chunks == [base64.b64encode(c).decode() for c in chunks]
    assert response.body_chunks() == chunks
    text = CassetteResponse.of_bytes(200, [], [b"data: 1\n\n"])
    assert text.encoding == "utf-8"
    assert text.chunks == ["data: 1\n\n"]


def test_load_gives_each_exchange_with_its_line_and_skips_blank_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.jsonl"
    append_exchange(path, exchange(text="one"))
    with path.open("ab") as file:
        file.write(b"\n   \n")
    append_exchange(path, exchange(text="two"))
    loaded = load_cassette(path)
    assert [number for number, _ in loaded] == [1, 4]
    assert [e.response.chunks for _, e in loaded] == [
        ['data: "one"\n\n'],
        ['data: "two"\n\n'],
    ]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (b"{not json", "malformed"),
        (b"[]", "Expected `object`"),
        (line(version=2), "cassette version 2, but this koala-chat reads version 1"),
        (b'{"version": 7}', "cassette version 7"),
        (
            line(request={"dialect": "klingon", "model": "", "conversation": []}),
            "$.request.dialect",
        ),
        (line(response={"status": 99}), "$.response.status"),
        (
            line(response={"status": 200, "encoding": "base64", "chunks": ["@@"]}),
            "chunks[0] is not base64",
        ),
        (
            line(
                response={
                    "status": 200,
                    "chunks": ["a", "b"],
                    "timing": {"head": 0, "chunks": [1]},
                }
            ),
            "timing has 1 times for 2 chunks",
        ),
        (
            line(
                response={
                    "status": 200,
                    "chunks": ["a", "b"],
                    "timing": {"head": 0, "chunks": [2, 1]},
                }
            ),
            "earlier than the one before",
        ),
        (line(request=None), "$.request"),
    ],
)
def test_a_bad_line_is_named_with_what_is_wrong(
    tmp_path: Path, bad: bytes, says: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(encode_exchange(exchange()) + b"\n" + bad + b"\n")
    with pytest.raises(CassetteError) as caught:
        load_cassette(path)
    assert caught.value.line == 3
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}, line 3: not a cassette exchange:")
    assert says in str(caught.value)
    assert isinstance(caught.value, UsageError)


def test_a_missing_cassette_is_a_clear_error_that_pickles(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match=r"cannot read the cassette .*nope\.jsonl"):
        load_cassette(tmp_path / "nope.jsonl")
    error = CassetteError("x", path="p", line=3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, str(copy)) == ("p", 3, "x")


def test_timing_is_optional() -> None:
    response = decode_exchange(line()).response
    assert response.timing is None
    assert response.complete
    timed = CassetteResponse(200, chunks=["a"], timing=Timing(0.1, [0.2]))
    encoded = msgspec.json.encode(timed)
    assert msgspec.json.decode(encoded, type=CassetteResponse) == timed


# The normalised request: docs/protocol.md, "Cassettes"


def test_every_dialect_normalises_to_turns() -> None:
    history = {
        "input": "How tall?",
        "inputHistory": ["Hi", "Koalas?"],
        "outputHistory": ["Hello!"],
        "model": "",
    }
    assert normalise_request(msgspec.json.encode(history), None) == CassetteRequest(
        "history",
        "gpt-4o-mini",
        [
            Turn("user", "Hi"),
            Turn("assistant", "Hello!"),
            Turn("user", "Koalas?"),
            Turn("user", "How tall?"),
        ],
    )
    api = normalise_request(msgspec.json.encode(history), "Bearer k")
    assert api.dialect == "api"
    assert api.conversation[-1] == Turn("user", "How tall?")
    messages = {
        "messages": [
            {"role": "system", "content": "Be brief.", "attachments": []},
            {"role": "user", "content": "Hi", "attachments": []},
        ],
        "model": "claude-4.5-haiku",
    }
    assert normalise_request(msgspec.json.encode(messages), None) == CassetteRequest(
        "messages",
        "claude-4.5-haiku",
        [Turn("system", "Be brief."), Turn("user", "Hi")],
    )


def test_an_empty_model_is_the_dialects_default() -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "model": ""}
    assert normalise_request(msgspec.json.encode(body), None).model == "gemini-3-flash"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_no_object_has_an_empty_conversation(raw: bytes) -> None:
    assert normalise_request(raw, None) == CassetteRequest("history", "gpt-4o-mini", [])


def test_recordings_of_one_request_are_taken_in_order_then_the_last_repeats() -> None:
    index = CassetteIndex([(1, exchange(text="one")), (2, exchange(text="two"))])
    taken = [index.take(HI) for _ in range(3)]
    assert [e.response.chunks[0] if e else None for e in taken] == [
        'data: "one"\n\n',
        'data: "two"\n\n',
        'data: "two"\n\n',
    ]
    assert index.take(CassetteRequest("history", "gpt-4o-mini", [])) is None


def test_the_nearest_request_prefers_dialect_then_model_then_text() -> None:
    near = CassetteRequest(
        "history", "gpt-4o-mini", [Turn("user", "How tall are koalas?")]
    )
    other_model = CassetteRequest(
        "history", "gpt-4.1", [Turn("user", "How tall are koalas")]
    )
    other_dialect = CassetteRequest(
        "messages", "gpt-4o-mini", [Turn("user", "How tall are koalas")]
    )
    index = CassetteIndex(
        [(1, exchange(other_dialect)), (2, exchange(other_model)), (5, exchange(near))]
    )
    wanted = CassetteRequest(
        "history", "gpt-4o-mini", [Turn("user", "How tall are koalas")]
    )
    nearest = index.nearest(wanted)
    assert nearest is not None
    assert (nearest.request, nearest.line) == (near, 5)
    assert nearest.differs == "turn 1 of the conversation"
    assert CassetteIndex().nearest(wanted) is None


# Scrubbing


def test_the_scrubber_removes_keys_cookies_and_patterns_in_any_spelling() -> None:
    request = {
        "Authorization": "Bearer sk-Koala-0123456789",
        "Cookie": "session=cookie-secret-42; theme=dark-mode-on",
        "X-Api-Key": "header-key-98765",
    }
    response = CIMultiDict([("Set-Cookie", "sid=set-cookie-secret-7; Path=/")])
    scrub = ExchangeScrubber(request, response, [re.compile(r"acct-\d+")])
    text = (
        "SK-KOALA-0123456789 sk\\u002dKoala-0123456789 cookie-secret-42 "
        "set-cookie-secret-7 header-key-98765 acct-31337 "
        '{"api_key": "field-secret", "password": "hunter2"} Bearer anything-else'
    )
    cleaned = scrub.text(text)
    for secret in (
        "0123456789",
        "cookie-secret-42",
        "set-cookie-secret-7",
        "header-key-98765",
        "acct-31337",
        "field-secret",
        "hunter2",
        "anything-else",
    ):
        assert secret.lower() not in cleaned.lower(), secret
    assert scrub.text("Koalas sleep.") == "Koalas sleep."


def test_a_secret_split_across_chunks_merges_them() -> None:
    scrub = ExchangeScrubber({"Authorization": "Bearer sk-Koala-0123456789"})
    clean = [b"data: 1\n\n", b"data: 2\n\n"]
    assert scrub.chunks(clean) == clean
    inside = [b"data: sk-Koala-0123456789\n\n", b"data: 2\n\n"]
    assert scrub.chunks(inside) == [b"data: ***\n\n", b"data: 2\n\n"]
    across = [b"data: sk-Koala-01234", b"56789\n\n"]
    assert scrub.chunks(across) == [b"data: ***\n\n"]


def test_only_the_headers_worth_keeping_are_kept() -> None:
    scrub = ExchangeScrubber({"Authorization": "Bearer sk-Koala-0123456789"})
    kept = scrub.headers(
        [
            ("Content-Type", "text/event-stream"),
            ("Set-Cookie", "a=b"),
            ("Date", "today"),
            ("X-Request-Id", "req-sk-Koala-0123456789"),
            ("Retry-After", "3"),
        ]
    )
    assert kept == [
        ("Content-Type", "text/event-stream"),
        ("X-Request-Id", "req-***"),
        ("Retry-After", "3"),
    ]


@given(
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=80), max_size=6),
)
def test_no_split_of_the_body_keeps_a_secret(
    before: str, after: str, cuts: list[int]
) -> None:
    secret = "sk-Koala-0123456789"
    scrub = ExchangeScrubber({"Authorization": f"Bearer {secret}"})
    body = f"data: {before}{secret}{after}\n\n".encode()
    points = sorted({c for c in cuts if c < len(body)})
    chunks = [
        body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)
    ]
    scrubbed = scrub.chunks(chunks)
    joined = b"".join(scrubbed).decode("utf-8", "replace")
    assert secret not in joined
    assert "0123456789" not in joined
    assert len(scrubbed) in (1, len(chunks))
