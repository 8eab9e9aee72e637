"""LangChain's `ChatOpenAI` against `koala serve`: structured output and tools.

The sandbox upstream is scripted with the replies a model would give; the real
`langchain-openai` package sends what it sends (`response_format`, `tools`,
`tool_choice`, tool messages in the history).
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread


class Person(pydantic.BaseModel):
    """A person and the year of their birth."""

    name: str
    born: int


@tool
def get_weather(city: str) -> str:
    """Return the weather in a city now."""
    return {"Oslo": "12 C, rain", "Rome": "24 C, sun"}[city]


@tool
def get_time(city: str) -> str:
    """Return the local time in a city."""
    return {"Oslo": "09:00", "Rome": "09:00"}[city]


def chat_model(server: ServerThread, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url,
        api_key=pydantic.SecretStr("anything"),
        model="gpt-4o-mini",
        max_retries=0,
        **options,
    )


def call(tool_name: str, **arguments: Any) -> str:
    return json.dumps({"tool_calls": [{"name": tool_name, "arguments": arguments}]})


def upstream_text(sandbox: Sandbox, index: int) -> str:
    return json.dumps(sandbox.requests[index].json, ensure_ascii=False)


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_with_structured_output(
    koala_server: ServerThread, sandbox: Sandbox, method: str
) -> None:
    ada = {"name": "Ada", "born": 1815}
    reply = call("Person", **ada) if method == "function_calling" else json.dumps(ada)
    sandbox.push(Reply(values=[f"Here:\n```json\n{reply}\n```"]))
    structured = chat_model(koala_server).with_structured_output(Person, method=method)
    assert structured.invoke("Who wrote the first program?") == Person(
        name="Ada", born=1815
    )
    assert len(sandbox.requests) == 1


def test_structured_output_retries_an_invalid_reply(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=['{"name": "Ada"}']),
        Reply(values=['{"name": "Ada", "born": 1815}']),
    )
    structured = chat_model(koala_server).with_structured_output(
        Person, method="json_schema"
    )
    assert structured.invoke("Ada?") == Person(name="Ada", born=1815)
    assert "'born' is a required property" in upstream_text(sandbox, 1)


def test_bind_tools_gives_tool_calls(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=[call("get_weather", city="Oslo")]))
    message = (
        chat_model(koala_server)
        .bind_tools([get_weather, get_time])
        .invoke("Weather in Oslo?")
    )
    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_bind_tools_streams_tool_call_chunks(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=[call("get_time", city="Rome")]))
    model = chat_model(koala_server).bind_tools([get_weather, get_time])
    merged: Any = None
    for chunk in model.stream("Time in Rome?"):
        merged = chunk if merged is None else merged + chunk
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("get_time", {"city": "Rome"})
    ]


def test_an_agent_loop_of_two_tool_calls(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=[call("get_weather", city="Oslo")]),
        Reply(values=[call("get_time", city="Oslo")]),
        Reply(values=["In Oslo it is 09:00, 12 C and raining."]),
    )
    tools = {t.name: t for t in (get_weather, get_time)}
    model = chat_model(koala_server).bind_tools(list(tools.values()))
    messages: list[BaseMessage] = [HumanMessage("Weather and time in Oslo?")]
    for _ in range(5):
        answer = model.invoke(messages)
        assert isinstance(answer, AIMessage)
        messages.append(answer)
        if not answer.tool_calls:
            break
        for tool_call in answer.tool_calls:
            result = tools[tool_call["name"]].invoke(tool_call["args"])
            messages.append(ToolMessage(result, tool_call_id=tool_call["id"]))
    assert messages[-1].content == "In Oslo it is 09:00, 12 C and raining."
    assert len(sandbox.requests) == 3
    last = upstream_text(sandbox, 2)
    assert "(get_weather) returned:\\n12 C, rain" in last
    assert "(get_time) returned:\\n09:00" in last
