"""The OpenAI Agents SDK against `koala serve`: its default, the Responses API.

An agent with a function tool runs two turns through the server: the model
(the scripted sandbox) calls the tool, the SDK runs it and sends its result
back as a `function_call_output` item, and the model answers. Tracing is off
(it would post to OpenAI).
"""

from __future__ import annotations

import json

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
ANSWER = "It is 12 C in Oslo."


@function_tool
def get_weather(city: str) -> str:
    """Return the weather in a city now."""
    return f"12 C and rain in {city}"


def weather_agent(client: openai.AsyncOpenAI) -> Agent:
    return Agent(
        name="weather",
        instructions="Answer in one sentence.",
        tools=[get_weather],
        model=OpenAIResponsesModel("gpt-4o-mini", client),
    )


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_agent_calls_its_tool_and_answers(
    koala_server: ServerThread, sandbox: Sandbox, streamed: bool
) -> None:
    sandbox.push(Reply(values=[CALL]), Reply(values=["It is 12 C ", "in Oslo."]))
    config = RunConfig(tracing_disabled=True)
    async with openai.AsyncOpenAI(
        base_url=koala_server.base_url, api_key="k", max_retries=0
    ) as client:
        agent = weather_agent(client)
        if streamed:
            run = Runner.run_streamed(agent, "Weather in Oslo?", run_config=config)
            kinds = {event.type async for event in run.stream_events()}
            assert "raw_response_event" in kinds
            output = run.final_output
        else:
            result = await Runner.run(agent, "Weather in Oslo?", run_config=config)
            output = result.final_output
    assert output == ANSWER
    first, second = (json.dumps(r.json) for r in sandbox.requests)
    assert "get_weather" in first
    assert "Answer in one sentence." in first
    # The tool's result went back to the model, named after its call.
    assert "(get_weather) returned" in second
    assert "12 C and rain in Oslo" in second
