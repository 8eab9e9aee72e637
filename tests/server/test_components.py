"""The OpenAPI components generated from the reply structs say what is sent.

`koala_chat.server.components` turns the structs of
`koala_chat._contract.types` into schemas; these tests hold the schemas to the
bytes the encoders send, so a field added to a struct is documented and a
member left out is not required.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError

from koala_chat._contract.params import parse_request
from koala_chat._contract.replies import Reply
from koala_chat._contract.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChunkChoice,
    CompletionUsage,
    Function,
    Model,
    ModelList,
)
from koala_chat.server.failures import ErrorDetail, ErrorResponse, Failure
from koala_chat.server.formats import completions
from koala_chat.server.formats.chat import ChunkEncoder
from koala_chat.server.formats.completions import TextChoice, TextCompletion
from koala_chat.server.openapi import openapi_document

COMPONENTS: dict[str, Any] = openapi_document()["components"]["schemas"]
CALL = ChatCompletionMessageToolCall("call_1", Function("f", '{"a":1}'))
USAGE = CompletionUsage(1, 2, 3)


def validator(name: str) -> Draft202012Validator:
    """Return a validator of the component `name`, its references resolved."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": {"schemas": COMPONENTS}}
    )


#: The least each struct can be: only what it always sends.
LEAST = [
    CompletionUsage(0, 0, 0),
    Function("", ""),
    ChatCompletionMessageToolCall("", Function("", "")),
    ChatCompletionMessage(content=None),
    Choice(0, ChatCompletionMessage(content=None), "stop"),
    ChatCompletion("", [], 0, ""),
    ChoiceDeltaToolCall(0),
    ChoiceDelta(),
    ChunkChoice(index=0, delta=ChoiceDelta()),
    ChatCompletionChunk(id="", created=0, model="", choices=[]),
    Model(""),
    ModelList([]),
    TextChoice(text=""),
    TextCompletion(id="", created=0, model="", choices=[]),
    ErrorDetail("", "", None, None),
    ErrorResponse(ErrorDetail("", "", None, None)),
]


@pytest.mark.parametrize("least", LEAST, ids=lambda value: type(value).__name__)
def test_required_names_exactly_what_the_least_reply_sends(least: Any) -> None:
    schema = COMPONENTS[type(least).__name__]
    sent = list(msgspec.json.decode(msgspec.json.encode(least)))
    assert schema["required"] == sent


def test_every_struct_of_the_replies_has_its_component() -> None:
    names = {type(value).__name__ for value in LEAST}
    assert names <= set(COMPONENTS)
    for name in names:
        assert COMPONENTS[name]["description"]  # the docstring
        assert set(COMPONENTS[name]["properties"]) >= set(COMPONENTS[name]["required"])


def test_a_member_left_out_when_absent_is_never_null() -> None:
    delta = COMPONENTS["ChoiceDelta"]["properties"]
    assert delta["content"] == {"type": "string"}
    assert COMPONENTS["ChatCompletionChunk"]["properties"]["usage"] == {
        "$ref": "#/components/schemas/CompletionUsage"
    }
    # Sent as null when there is none: still nullable.
    message = COMPONENTS["ChatCompletionMessage"]["properties"]
    assert {"type": "null"} in message["content"]["anyOf"]


def events(stream: bytes) -> list[Any]:
    """Return the JSON data of each event of `stream` but `[DONE]`."""
    data = [event.removeprefix(b"data: ") for event in stream.split(b"\n\n")]
    return [msgspec.json.decode(item) for item in data if item and item != b"[DONE]"]


@given(model=st.text(), text=st.text(), reason=st.sampled_from(["stop", "length"]))
def test_every_chunk_the_encoder_sends_is_valid(
    model: str, text: str, reason: str
) -> None:
    hi = [{"role": "user", "content": "Hi"}]
    reply = Reply(parse_request({"model": "m", "messages": hi}))
    reply.model = model  # any text, "" too
    reply.feed(text)
    encoder = ChunkEncoder(reply)
    stream = encoder.role() + encoder.content(text) + encoder.finish(reason)  # type: ignore[arg-type]
    stream += encoder.usage() + encoder.tool_calls([CALL, CALL])
    chunk = validator("ChatCompletionChunk")
    for data in events(stream):
        chunk.validate(data)


@given(text=st.text(), usage=st.booleans())
def test_every_legacy_completion_the_server_sends_is_valid(
    text: str, usage: bool
) -> None:
    body = {"model": "m", "prompt": "Hi", "stream_options": {"include_usage": usage}}
    inbound = completions.FORMAT.parse(body, strict=False)
    reply = Reply(inbound.request, "m")
    encoder = completions.FORMAT.encoder(inbound, reply)
    schema = validator("TextCompletion")
    for data in events(encoder.text(text) + encoder.tail("length")):
        schema.validate(data)
    schema.validate(msgspec.to_builtins(completions.FORMAT.whole(inbound, reply, text)))


def test_a_whole_reply_and_the_models_are_valid() -> None:
    for content, calls in (("Hi", None), (None, [CALL])):
        completion = ChatCompletion(
            "chatcmpl-x",
            [Choice(0, ChatCompletionMessage(content, tool_calls=calls), "stop")],
            1,
            "m",
            USAGE,
        )
        validator("ChatCompletion").validate(completion.model_dump())
    validator("ModelList").validate(ModelList([Model("a"), Model("b")]).model_dump())
    for code in ("invalid_request", None):
        body = Failure(400, "invalid_request_error", code, "Bad.").body()
        validator("ErrorResponse").validate(msgspec.json.decode(body))


def test_a_delta_that_sends_null_content_is_invalid() -> None:
    validator("ChoiceDelta").validate({})
    with pytest.raises(ValidationError, match="is not of type 'string'"):
        validator("ChoiceDelta").validate({"content": None})
