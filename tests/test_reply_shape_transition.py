"""Transition only: the structs send the bytes the hand-built code sent.

Compares `koala_chat.contract.types` and `ChunkEncoder` with their former
selves (tests/legacy_reply_shape.py) on generated ids, models and texts; both
go in the next commit, once the comparison has passed.
"""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

import legacy_reply_shape as old
from koala_chat.contract import types as new
from koala_chat.server.formats.chat import ChunkEncoder

ids = st.text(max_size=30)
models = st.text(max_size=30)
createds = st.integers(min_value=0, max_value=2**40)
reasons = st.sampled_from(["stop", "length", "tool_calls"])
counts = st.integers(min_value=0, max_value=2**31)


@given(ids, createds, models, st.text(), reasons, counts, counts)
def test_the_events_of_a_reply_in_text_are_the_same_bytes(
    id_: str, created: int, model: str, text: str, reason: str, a: int, b: int
) -> None:
    before = old.ChunkEncoder(id_, created, model)
    after = ChunkEncoder(id_, created, model)
    assert after.content(text) == before.content(text)
    assert after.role() == before.role()
    assert after.finish(reason) == before.finish(reason)  # type: ignore[arg-type]
    assert after.usage(new.CompletionUsage(a, b, a + b)) == before.usage(
        old.CompletionUsage(a, b, a + b)
    )


@given(ids, createds, models, st.lists(st.tuples(ids, ids, ids), max_size=3))
def test_tool_call_events_are_the_same_json_in_the_order_of_the_others(
    id_: str, created: int, model: str, calls: list[tuple[str, str, str]]
) -> None:
    before = old.ChunkEncoder(id_, created, model).tool_calls(
        [old.ChatCompletionMessageToolCall(c, old.Function(n, a)) for c, n, a in calls]
    )
    after = ChunkEncoder(id_, created, model).tool_calls(
        [new.ChatCompletionMessageToolCall(c, new.Function(n, a)) for c, n, a in calls]
    )
    # The hand-built tool-call events had the keys in the dataclasses' order
    # (`id`, `choices`, `created`, ...); now they have the others' order.
    old_events = [msgspec.json.decode(e[6:]) for e in before.split(b"\n\n")[:-1]]
    new_events = [msgspec.json.decode(e[6:]) for e in after.split(b"\n\n")[:-1]]
    assert new_events == old_events
    for event in new_events:
        assert list(event) == [
            "id",
            "object",
            "created",
            "model",
            "system_fingerprint",
            "choices",
        ]


@given(ids, createds, models, st.one_of(st.none(), st.text()), reasons, counts)
def test_a_whole_completion_is_the_same_bytes(
    id_: str, created: int, model: str, content: str | None, reason: str, n: int
) -> None:
    def whole(types: object, calls: list[object] | None) -> bytes:
        t = types
        completion = t.ChatCompletion(  # type: ignore[attr-defined]
            id=id_,
            choices=[
                t.Choice(  # type: ignore[attr-defined]
                    index=0,
                    message=t.ChatCompletionMessage(  # type: ignore[attr-defined]
                        content=content, tool_calls=calls
                    ),
                    finish_reason=reason,
                )
            ],
            created=created,
            model=model,
            usage=t.CompletionUsage(n, n, 2 * n),  # type: ignore[attr-defined]
        )
        dumped = msgspec.json.encode(completion.model_dump())
        assert completion.model_dump_json().encode() == dumped
        return dumped

    assert whole(new, None) == whole(old, None)
    new_call = new.ChatCompletionMessageToolCall("call_1", new.Function("f", "{}"))
    old_call = old.ChatCompletionMessageToolCall("call_1", old.Function("f", "{}"))
    assert whole(new, [new_call]) == whole(old, [old_call])
    assert msgspec.json.encode(
        new.ChatCompletionMessage(content=content, tool_calls=[new_call])
    ) == msgspec.json.encode(
        old.ChatCompletionMessage(content=content, tool_calls=[old_call]).model_dump()
    )


@given(st.lists(ids, max_size=4))
def test_models_are_the_same_bytes(names: list[str]) -> None:
    before = old.ModelList([old.Model(name) for name in names]).model_dump()
    after = new.ModelList([new.Model(name) for name in names])
    assert msgspec.json.encode(after) == msgspec.json.encode(before)
    assert after.model_dump() == before
