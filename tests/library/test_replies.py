"""`Reply` and `next_text`: provider values to text pieces, completions, chunks."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from koala_chat._contract.params import CompletionRequest, parse_request
from koala_chat._contract.replies import Reply, next_text, read_text
from koala_chat._contract.types import ChoiceDelta
from koala_chat.messages import JSONValue

HELLO = [{"role": "user", "content": "Hello"}]


def request(**params: JSONValue) -> CompletionRequest:
    return parse_request({"model": "m", "messages": HELLO, **params})


class Values:
    """An upstream's values, recording how many were read and whether closed."""

    def __init__(self, *values: JSONValue) -> None:
        self.values = values
        self.read = 0
        self.closed = False

    async def generate(self) -> AsyncGenerator[JSONValue, None]:
        try:
            for value in self.values:
                self.read += 1
                yield value
        finally:
            self.closed = True


def test_feed_takes_text_from_strings_and_text_objects() -> None:
    reply = Reply(request())
    assert [reply.feed(v) for v in ["a", {"text": "b"}, 3, None, {"x": 1}]] == [
        "a",
        "b",
        "",
        "",
        "",
    ]
    assert (reply.chars, reply.pieces, reply.done) == (2, 2, False)
    assert reply.finish() == ""
    assert reply.done


def test_feed_cuts_and_finish_releases_what_was_held_back() -> None:
    reply = Reply(request(stop=["XY"]))
    assert reply.feed("abX") == "ab"
    assert reply.finish() == "X"
    assert reply.finish() == ""  # harmless twice
    assert (reply.chars, reply.pieces, reply.finish_reason) == (3, 2, "stop")


async def test_next_text_reads_nothing_past_the_cut() -> None:
    upstream = Values("Hello wo", "rld, and ", "more", "never")
    values = upstream.generate()
    reply = Reply(request(stop=["ld,"]))
    assert await next_text(values, reply) == "Hello wo"
    assert await next_text(values, reply) == "r"
    assert await next_text(values, reply) is None
    assert await next_text(values, reply) is None
    assert upstream.read == 2
    await values.aclose()
    assert upstream.closed


async def test_read_text_skips_values_without_text() -> None:
    values = Values("a", 1, {"text": "b"}, "").generate()
    reply = Reply(request())
    assert await read_text(values, reply) == "ab"
    assert reply.done


@pytest.mark.parametrize(
    ("limit", "reason", "tokens"), [(1, "length", 1), (9, "stop", 2)]
)
async def test_completion_carries_the_cut_and_the_usage(
    limit: int, reason: str, tokens: int
) -> None:
    values = Values("abc", "defgh").generate()
    reply = Reply(request(max_tokens=limit), "the-model")
    completion = reply.completion(await read_text(values, reply))
    (choice,) = completion.choices
    assert choice.message.content == "abcdefgh"[: limit * 4]
    assert choice.finish_reason == reason
    assert completion.model == "the-model"
    assert completion.usage is not None
    assert completion.usage.model_dump() == {
        "prompt_tokens": 2,
        "completion_tokens": tokens,
        "total_tokens": 2 + tokens,
    }


def test_chunks_of_one_reply_share_id_created_and_model() -> None:
    reply = Reply(request())
    reply.feed("Hi")
    first = reply.chunk(ChoiceDelta(content="", role="assistant"))
    last = reply.chunk(ChoiceDelta(), reply.finish_reason)
    usage = reply.usage_chunk()
    assert {c.id for c in (first, last, usage)} == {reply.id}
    assert {c.model for c in (first, last, usage)} == {"m"}
    assert last.choices[0].finish_reason == "stop"
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == 1
