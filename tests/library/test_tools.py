"""Tool calls, emulated: the request, the reply and the history, then end to end.

End to end, the official `openai` SDK talks to `koala serve`, whose sandbox
upstream is scripted with tool-call replies, good and malformed.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from koala_chat import Client, UsageError
from koala_chat._contract.params import parse_request
from koala_chat._contract.tools import (
    ReplyProblem,
    ToolSet,
    parse_tools,
    read_tool_calls,
    render_history,
)
from koala_chat.sandbox import Reply, Sandbox

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME: Any = {"type": "function", "function": {"name": "get_time"}}
ASK: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'


def upstream_text(sandbox: Sandbox, index: int) -> str:
    """Return everything the sandbox's `index`-th request carried, as text."""
    return json.dumps(sandbox.requests[index].json, ensure_ascii=False)


# --- the request and the reply (pure) ---------------------------------------------


@pytest.mark.parametrize(
    ("tools", "words"),
    [
        ({}, "tools: must be a list of tools"),
        ([{"type": "retrieval"}], "tools[0]: only function tools"),
        ([{"type": "function", "function": {}}], "tools[0].function.name: must be"),
        ([WEATHER, WEATHER], "tools[1].function.name: 'get_weather' is given twice"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": 3}}],
            "tools[0].function.parameters: must be a JSON Schema object",
        ),
    ],
)
def test_bad_tools_are_refused(tools: Any, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_tools("tools", tools)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("choice", "words"),
    [
        ({"type": "function", "function": {"name": "nope"}}, "names 'nope'"),
        ("sometimes", "tool_choice: must be 'none', 'auto', 'required'"),
    ],
)
def test_bad_tool_choices_are_refused(choice: Any, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_request(
            {"model": "", "messages": ASK, "tools": [WEATHER], "tool_choice": choice}
        )
    assert words in str(caught.value)


def test_tools_are_described_in_a_system_message() -> None:
    request = parse_request({"model": "", "messages": ASK, "tools": [WEATHER, TIME]})
    assert request.tools is not None
    instruction = request.messages[0]
    assert instruction["role"] == "system"
    assert "- get_weather: The weather in a city now." in instruction["content"]
    assert "- get_time" in instruction["content"]
    assert '{"tool_calls": [' in instruction["content"]


def test_tool_choice_none_describes_no_tool() -> None:
    request = parse_request(
        {"model": "", "messages": ASK, "tools": [WEATHER], "tool_choice": "none"}
    )
    assert not request.emulated
    assert request.messages == ASK


TOOLS = ToolSet(parse_tools("tools", [WEATHER, TIME]))


def test_a_reply_with_calls_gives_the_calls() -> None:
    calls = read_tool_calls(f"Let me look.\n```json\n{CALL}\n```", TOOLS)
    assert calls is not None
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    assert read_tool_calls("It is sunny.", TOOLS) is None
    assert read_tool_calls('{"answer": 42}', TOOLS) is None


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ('{"tool_calls": []}', "tool_calls must be a non-empty list"),
        ('{"tool_calls": [{"name": "fly"}]}', "unknown tool 'fly'"),
        (
            '{"tool_calls": [{"name": "get_weather", "arguments": {"town": 1}}]}',
            "arguments of 'get_weather' at $: 'city' is a required property",
        ),
        (
            '{"tool_calls": [{"name": "get_weather", "arguments": "{oops"}]}',
            "tool_calls[0].arguments is not JSON",
        ),
    ],
)
def test_malformed_calls_are_problems(reply: str, words: str) -> None:
    with pytest.raises(ReplyProblem) as caught:
        read_tool_calls(reply, TOOLS)
    assert words in str(caught.value)


def test_history_is_rendered_as_text() -> None:
    rendered = render_history(
        [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Oslo"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
        ]
    )
    assert rendered[0] == ASK[0]
    assert rendered[1] == {"role": "assistant", "content": CALL.replace(" ", "")}
    assert rendered[2] == {
        "role": "user",
        "content": "The tool call call_1 (get_weather) returned:\n12 C",
    }


def test_a_tool_message_without_content_is_refused() -> None:
    # The tool's result is the message's point: without it the model would
    # read that the call returned nothing.
    with pytest.raises(UsageError, match=r"^messages\[1\]\.content: missing"):
        render_history([*ASK, {"role": "tool", "tool_call_id": "call_1"}])


# --- end to end: the openai SDK against koala serve ------------------------------


def test_sdk_tool_call_round_trip(sdk: openai.OpenAI, sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=[CALL[:20], CALL[20:]]))
    first = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER, TIME]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert "get_weather" in upstream_text(sandbox, 0)

    sandbox.push(Reply(values=["It is 12 C in Oslo."]))
    second = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            *ASK,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "12 C"},
        ],
        tools=[WEATHER, TIME],
    )
    assert second.choices[0].message.content == "It is 12 C in Oslo."
    assert second.choices[0].finish_reason == "stop"
    history = upstream_text(sandbox, 1)
    assert f"The tool call {call.id} (get_weather) returned:\\n12 C" in history
    assert '{\\"tool_calls\\":[{\\"name\\":\\"get_weather\\"' in history


def test_sdk_stream_follows_openai_tool_call_chunks(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    two = (
        '{"tool_calls": [{"name": "get_time", "arguments": {}}, '
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
    )
    sandbox.push(Reply(values=[two]))
    with sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER, TIME], stream=True
    ) as stream:
        chunks = list(stream)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta_call.index, {"arguments": ""})
            assert delta_call.function is not None
            if delta_call.id:
                entry["id"] = delta_call.id
                assert delta_call.type == "function"
            if delta_call.function.name:
                entry["name"] = delta_call.function.name
            entry["arguments"] += delta_call.function.arguments or ""
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_time", "get_weather"]
    assert json.loads(calls[1]["arguments"]) == {"city": "Oslo"}
    assert all(entry["id"].startswith("call_") for entry in calls.values())


def test_an_unknown_tool_is_retried_with_the_problem_quoted(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=['{"tool_calls": [{"name": "fly", "arguments": {}}]}']),
        Reply(values=[CALL]),
    )
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER]
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert "unknown tool 'fly'" in upstream_text(sandbox, 1)


def test_bad_arguments_twice_are_a_502_that_says_why(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    bad = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": 7}}]}'
    sandbox.push(Reply(values=[bad]), Reply(values=[bad]))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WEATHER])
    assert caught.value.status_code == 502
    assert "at $.city: 7 is not of type 'string'" in caught.value.message


def test_required_tool_choice_retries_a_plain_answer(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["It is probably sunny."]), Reply(values=[CALL]))
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert "You must call the tool 'get_weather'" in upstream_text(sandbox, 0)
    assert "a tool call is required" in upstream_text(sandbox, 1)


def test_auto_tool_choice_lets_a_plain_answer_through(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["I know this one: rainy."]))
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER], tool_choice="auto"
    )
    assert completion.choices[0].message.content == "I know this one: rainy."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


def test_the_client_emulates_tool_calls_too(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=[CALL]))
    with Client(api_endpoint=sandbox.api_endpoint, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="", messages=ASK, tools=[WEATHER], tool_choice="required"
        )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert completion.model_dump()["choices"][0]["message"]["tool_calls"] == [
        {
            "id": call.id,
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            "type": "function",
        }
    ]
