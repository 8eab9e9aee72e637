"""The OpenAI Responses API of `koala serve`, driven by the official SDK.

`responses.create` and `responses.stream` (with `get_final_response`) talk to
a server in front of the sandbox; the bytes of a stream are checked event by
event, and the errors are the SDK's own classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pydantic
import pytest

from koala_chat.sandbox import Reply, Sandbox, default_reply
from server_fixtures import ServerThread

REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))
KEY = "responses-test-key"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city now.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'

#: The events of a streamed reply in text, in order (the deltas once).
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def upstream_prompt(sandbox: Sandbox, index: int = -1) -> str:
    """Return everything the sandbox's `index`-th request carried, as text."""
    return json.dumps(sandbox.requests[index].json, ensure_ascii=False)


def parse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Return the (event, data) pairs of an SSE body, checking each is whole."""
    events = []
    assert raw.endswith(b"\n\n")
    for block in raw.decode().split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ")
        assert lines[1].startswith("data: ")
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def collapsed(names: list[str]) -> list[str]:
    """Return `names` with runs of one name given once."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


async def post(
    http: aiohttp.ClientSession, server: ServerThread, body: dict[str, Any]
) -> tuple[int, str, bytes]:
    async with http.post(server.base_url + "/responses", json=body) as response:
        return response.status, response.content_type, await response.read()


# --- not streamed ---------------------------------------------------------------


def test_create_answers_with_a_response_whose_output_text_is_the_reply(
    sdk: openai.OpenAI,
) -> None:
    response = sdk.responses.create(model="gpt-4o-mini", input="Hello")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.model == "gpt-4o-mini"
    assert response.output_text == REPLY
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.output_tokens == -(-len(REPLY) // 4)
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )


def test_instructions_and_items_reach_the_model_in_order(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    response = sdk.responses.create(
        model="gpt-4o-mini",
        instructions="Answer like a pirate.",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hel"}]},
            {"type": "message", "role": "assistant", "content": "Ahoy"},
            {"role": "user", "content": [{"type": "input_text", "text": "lo"}]},
        ],
    )
    assert response.instructions == "Answer like a pirate."
    # The history dialect (docs/protocol.md, "Request"): the last message
    # with the system messages after it, the user and assistant turns apart.
    sent = sandbox.requests[-1].json
    assert sent["input"] == "lo Answer like a pirate. Be brief."
    assert (sent["inputHistory"], sent["outputHistory"]) == (["Hel"], ["Ahoy"])


def test_max_output_tokens_cuts_the_reply_and_marks_it_incomplete(
    sdk: openai.OpenAI,
) -> None:
    response = sdk.responses.create(
        model="gpt-4o-mini", input="Hello", max_output_tokens=1
    )
    assert response.output_text == REPLY[:4]
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


async def test_async_create(koala_server: ServerThread) -> None:
    async with openai.AsyncOpenAI(
        base_url=koala_server.base_url, api_key="k", max_retries=0
    ) as client:
        response = await client.responses.create(
            model="gpt-4o-mini", input="Hello", store=False, temperature=0.2
        )
    assert response.output_text == REPLY


# --- streamed -------------------------------------------------------------------


def test_stream_helper_gives_the_deltas_and_the_final_response(
    sdk: openai.OpenAI,
) -> None:
    with sdk.responses.stream(model="gpt-4o-mini", input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY
    assert len(deltas) > 1
    assert final.output_text == REPLY
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.output_tokens == -(-len(REPLY) // 4)


def test_create_with_stream_yields_the_native_events(sdk: openai.OpenAI) -> None:
    with sdk.responses.create(model="", input="Hello", stream=True) as stream:
        events = list(stream)
    assert collapsed([e.type for e in events]) == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.output_text == REPLY


async def test_stream_bytes_are_events_with_names_and_counted_data(
    koala_server: ServerThread, http: aiohttp.ClientSession
) -> None:
    body = {"model": "gpt-4o-mini", "input": "Hello", "stream": True}
    status, kind, raw = await post(http, koala_server, body)
    assert (status, kind) == (200, "text/event-stream")
    assert b"[DONE]" not in raw
    events = parse_events(raw)
    names = [name for name, _ in events]
    assert collapsed(names) == TEXT_EVENTS
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    created = events[0][1]["response"]
    assert (created["status"], created["output"], created["usage"]) == (
        "in_progress",
        [],
        None,
    )
    item = events[2][1]["item"]
    assert (item["type"], item["role"], item["status"]) == (
        "message",
        "assistant",
        "in_progress",
    )
    deltas = [data for name, data in events if name.endswith(".delta")]
    assert {data["item_id"] for data in deltas} == {item["id"]}
    assert "".join(data["delta"] for data in deltas) == REPLY
    done = dict(events)["response.output_text.done"]
    assert done["text"] == REPLY
    completed = events[-1][1]["response"]
    assert completed["id"] == created["id"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == REPLY
    assert completed["output"][0]["status"] == "completed"
    assert completed["usage"]["output_tokens"] == -(-len(REPLY) // 4)


async def test_a_cut_stream_ends_with_response_incomplete(
    koala_server: ServerThread, http: aiohttp.ClientSession
) -> None:
    body = {"model": "", "input": "Hello", "stream": True, "max_output_tokens": 2}
    _, _, raw = await post(http, koala_server, body)
    events = parse_events(raw)
    name, data = events[-1]
    assert name == "response.incomplete"
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["response"]["output"][0]["content"][0]["text"] == REPLY[:8]


async def test_failure_mid_stream_is_response_failed_as_the_sdk_reads_it(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=b'data: "Hel"\n\ndata: "lo"\n\ndata: {broken\n\n'))
    async with (
        openai.AsyncOpenAI(
            base_url=koala_server.base_url, api_key="k", max_retries=0
        ) as client,
        client.responses.stream(model="", input="Hello") as stream,
    ):
        events = [event async for event in stream]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"
    assert "not JSON" in failed.response.error.message
    assert failed.response.output_text == "Hello"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello"


STREAM_CASES = {
    "text": ([], {}),
    "incomplete": ([], {"max_output_tokens": 2}),
    "tool calls": ([Reply(values=[CALL])], {"tools": [WEATHER]}),
    "failed": ([Reply(body=b'data: "Hel"\n\ndata: {broken\n\n')], {}),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
async def test_every_event_and_response_validates_as_the_sdks_own_types(
    koala_server: ServerThread,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    case: str,
) -> None:
    """Strictly, field by field: the SDK itself reads its events unchecked."""
    replies, params = STREAM_CASES[case]
    sandbox.push(*replies, *replies)
    body = {"model": "gpt-4o-mini", "input": "Hello", **params}
    _, _, raw = await post(http, koala_server, {**body, "stream": True})
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
        openai.types.responses.ResponseStreamEvent
    )
    events = [adapter.validate_python(data) for _, data in parse_events(raw)]
    assert events[-1].type.startswith("response.")
    status, _, whole = await post(http, koala_server, body)
    if status == 200:
        response = openai.types.responses.Response.model_validate_json(whole)
        assert response.status == events[-1].response.status
    else:
        assert (case, status) == ("failed", 502)


# --- emulated: tools and text.format ----------------------------------------------


def test_tool_calls_are_function_call_items(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=[CALL]))
    response = sdk.responses.create(
        model="gpt-4o-mini", input="Weather in Oslo?", tools=[WEATHER]
    )
    (call,) = response.output
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})
    assert call.call_id.startswith("call_")
    assert "get_weather" in upstream_prompt(sandbox)


def test_streamed_tool_calls_give_argument_events_and_a_final_call(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=[CALL]))
    with sdk.responses.stream(
        model="gpt-4o-mini", input="Weather?", tools=[WEATHER], tool_choice="required"
    ) as stream:
        names = [event.type for event in stream]
        final = stream.get_final_response()
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = final.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Oslo"}


def test_tool_history_items_reach_the_model_as_text(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["It is 12 C in Oslo."]))
    response = sdk.responses.create(
        model="gpt-4o-mini",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "12 C"},
        ],
    )
    assert response.output_text == "It is 12 C in Oslo."
    sent = upstream_prompt(sandbox)
    assert "call_1 (get_weather) returned" in sent
    assert "12 C" in sent


def test_text_format_json_schema_is_validated(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=['Sure: {"city": 3}']), Reply(values=['{"city": "Oslo"}'])
    )
    response = sdk.responses.create(
        model="gpt-4o-mini",
        input="A city?",
        text={
            "format": {
                "type": "json_schema",
                "name": "city",
                "schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        },
    )
    assert json.loads(response.output_text) == {"city": "Oslo"}
    assert len(sandbox.requests) == 2
    assert response.text.format.type == "json_schema"


class City(pydantic.BaseModel):
    city: str


def test_parse_with_a_text_format_gives_the_parsed_model(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=['{"city": "Oslo"}']))
    response = sdk.responses.parse(
        model="gpt-4o-mini", input="A city?", text_format=City
    )
    assert response.output_parsed == City(city="Oslo")
    assert "must validate against this JSON Schema" in upstream_prompt(sandbox)


def test_text_format_json_object_streams_the_json(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=['```json\n{"a": 1}\n```']))
    with sdk.responses.stream(
        model="", input="JSON please", text={"format": {"type": "json_object"}}
    ) as stream:
        final = stream.get_final_response()
    assert json.loads(final.output_text) == {"a": 1}


# --- errors ---------------------------------------------------------------------


def test_wrong_key_is_the_sdks_authentication_error(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key=KEY)
    with (
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.responses.create(model="", input="Hello")
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
        assert c.responses.create(model="", input="Hello").output_text == REPLY


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"input": []}, "input: must be a string or a non-empty list"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role: must be"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0]: is not a text part (type 'input_image')",
        ),
        ({"input": [{"type": "reasoning"}]}, "input[0].type: 'reasoning' items"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id: must be a string",
        ),
        ({"previous_response_id": "resp_1"}, "previous_response_id: not supported"),
        ({"conversation": "conv_1"}, "conversation: not supported"),
        ({"max_output_tokens": 0}, "max_output_tokens: must be a whole number"),
        ({"tools": [{"type": "function"}]}, "tools[0].name: must be a non-empty"),
        ({"tool_choice": "required"}, "tool_choice: asks for a tool call"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type: must be"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema: missing",
        ),
        (
            {"text": {"format": {"type": "json_schema", "schema": {"type": 3}}}},
            "text.format.schema: ",
        ),
    ],
)
def test_bad_input_is_the_sdks_bad_request_error_naming_the_parameter(
    sdk: openai.OpenAI, params: dict[str, Any], words: str
) -> None:
    body = {"model": "gpt-4o-mini", "input": "Hello", **params}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(**body)
    assert words in caught.value.message
    assert "messages" not in caught.value.message


async def test_lenient_ignores_unknown_names_and_other_tools_and_strict_refuses(
    start_server: Callable[..., ServerThread], http: aiohttp.ClientSession
) -> None:
    body = {
        "model": "",
        "input": "Hello",
        "tools": [{"type": "web_search"}],
        "frobnicate": 1,
        "reasoning": {"effort": "high"},
    }
    lenient = start_server()
    async with http.post(lenient.base_url + "/responses", json=body) as response:
        assert response.status == 200
        named = response.headers["X-Koala-Ignored-Params"]
    assert named == "frobnicate, reasoning, tools%5B0%5D"
    strict = start_server(strict=True)
    async with http.post(strict.base_url + "/responses", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["message"] == "frobnicate: unknown parameter"
    del body["frobnicate"]
    async with http.post(strict.base_url + "/responses", json=body) as response:
        error = (await response.json())["error"]
    assert error["message"] == "tools[0]: only function tools are supported"


async def test_upstream_failure_before_the_start_has_a_status_in_openai_shape(
    koala_server: ServerThread, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "7"}, body=b"slow"))
    body = {"model": "", "input": "Hello", "stream": True}
    status, kind, raw = await post(http, koala_server, body)
    assert (status, kind) == (429, "application/json")
    assert json.loads(raw)["error"]["type"] == "rate_limit_error"
