"""JSON mode, emulated: extraction and validation (pure), then end to end.

End to end, the official `openai` SDK's `parse()` with a Pydantic model talks to
`koala serve`, whose sandbox upstream is scripted with JSON replies, good and bad.
"""

from __future__ import annotations

import json
import math
from typing import Any

import aiohttp
import jsonschema
import openai
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat import Client, UsageError
from koala_chat._contract.emulation import EmulationError
from koala_chat._contract.jsonmode import (
    RESPONSE_FORMAT_SCHEMA,
    extract_json,
    parse_response_format,
    validate,
)
from koala_chat._contract.params import parse_request
from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

HELLO: list[Any] = [{"role": "user", "content": "Who is Ada?"}]


class Person(pydantic.BaseModel):
    name: str
    born: int


PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
    "required": ["name", "born"],
    "additionalProperties": False,
}
PERSON_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
}
ADA = {"name": "Ada", "born": 1815}


def upstream_text(sandbox: Sandbox, index: int) -> str:
    """Return everything the sandbox's `index`-th request carried, as text."""
    return json.dumps(sandbox.requests[index].json, ensure_ascii=False)


# --- extraction (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        (
            'Sure! Here it is:\n```json\n{"a": [1, {"b": null}]}\n```\nEnjoy.',
            {"a": [1, {"b": None}]},
        ),
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('The answer is {"a": "}"} and that is all.', {"a": "}"}),
        ('{not json} but {"b": 2}', {"b": 2}),
        ('{"a": NaN} then {"b": 1}', {"b": 1}),
    ],
)
def test_extraction_finds_the_json(text: str, expected: Any) -> None:
    found = extract_json(text)
    assert found is not None
    assert json.loads(found[0]) == expected == found[1]


@pytest.mark.parametrize(
    "text", ["", "no json here", "{broken", '{"a": Infinity}', "```\nplain\n```"]
)
def test_extraction_gives_none_without_json(text: str) -> None:
    assert extract_json(text) is None


def _strict_loads(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


#: Characters that make JSON, near-JSON and fences likely.
JSONISH = st.sampled_from('{}[]":,.0123456789-eE \n`tnrulfasNIn\\a')


@given(text=st.text(JSONISH, max_size=80) | st.text(max_size=80))
def test_extraction_never_returns_text_that_is_not_json(text: str) -> None:
    found = extract_json(text)
    if found is not None:
        value = _strict_loads(found[0])
        assert value == found[1] or _has_nan(value)
        assert isinstance(value, dict | list)
        assert found[0] in text


@given(
    prose=st.text(max_size=30),
    value=st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    fenced=st.booleans(),
)
def test_extraction_finds_an_object_wrapped_in_prose(
    prose: str, value: dict[str, Any], fenced: bool
) -> None:
    body = json.dumps(value)
    text = f"{prose.replace('{', '').replace('[', '').replace('`', '')}\n"
    text += f"```json\n{body}\n```" if fenced else body
    found = extract_json(text)
    assert found is not None
    assert _strict_loads(found[0]) == value


def _has_nan(value: Any) -> bool:
    """Tell whether `value` holds a NaN, which never equals itself."""
    if isinstance(value, list):
        return any(map(_has_nan, value))
    if isinstance(value, dict):
        return any(map(_has_nan, value.values()))
    return isinstance(value, float) and math.isnan(value)


# --- validation and the request (pure) -------------------------------------------


def test_validation_names_the_place_and_the_problem() -> None:
    assert validate(ADA, PERSON_SCHEMA) == ""
    problem = validate({"name": "Ada", "born": "1815"}, PERSON_SCHEMA)
    assert problem.startswith("at $.born: ")
    assert "'1815' is not of type 'integer'" in problem


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"type": "yaml"}, "response_format.type: must be"),
        ({"type": "json_schema"}, "response_format.json_schema: must be an object"),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": 5}},
            },
            "response_format.json_schema.schema: not a valid JSON Schema",
        ),
    ],
)
def test_bad_response_formats_are_refused(value: Any, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_response_format("response_format", value)
    assert words in str(caught.value)


def test_json_mode_adds_the_instruction_as_a_system_message() -> None:
    request = parse_request(
        {"model": "", "messages": HELLO, "response_format": PERSON_FORMAT}
    )
    assert request.emulated
    first, *rest = request.messages
    assert first["role"] == "system"
    assert "JSON" in first["content"]
    assert '"born"' in first["content"]
    assert rest == [{"role": "user", "content": "Who is Ada?"}]


def test_plain_text_format_is_not_emulated() -> None:
    request = parse_request(
        {"model": "", "messages": HELLO, "response_format": {"type": "text"}}
    )
    assert not request.emulated
    assert len(request.messages) == 1


# --- end to end: the openai SDK against koala serve ------------------------------


def test_sdk_parse_gives_the_pydantic_object(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=["Here you go:\n```json\n", json.dumps(ADA), "\n```\nBye"])
    )
    completion = sdk.chat.completions.parse(
        model="gpt-4o-mini", messages=HELLO, response_format=Person
    )
    message = completion.choices[0].message
    assert message.parsed == Person(name="Ada", born=1815)
    assert json.loads(message.content or "") == ADA
    assert "JSON Schema" in upstream_text(sandbox, 0)
    assert len(sandbox.requests) == 1


def test_json_object_mode_returns_the_object_alone(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=['Sure. {"ok": true} Anything else?']))
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, response_format={"type": "json_object"}
    )
    assert completion.choices[0].message.content == '{"ok": true}'
    assert completion.choices[0].finish_reason == "stop"


def test_an_invalid_reply_is_retried_once_with_the_error_quoted(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=['{"name": "Ada", "born": "in 1815"}']),
        Reply(values=[json.dumps(ADA)]),
    )
    completion = sdk.chat.completions.parse(
        model="gpt-4o-mini", messages=HELLO, response_format=Person
    )
    assert completion.choices[0].message.parsed == Person(name="Ada", born=1815)
    assert len(sandbox.requests) == 2
    retry = upstream_text(sandbox, 1)
    assert "at $.born" in retry
    assert "is not of type 'integer'" in retry


def test_two_invalid_replies_are_a_502_that_says_why(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["I'd rather not."]), Reply(values=['{"name": 3}']))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.parse(
            model="gpt-4o-mini", messages=HELLO, response_format=Person
        )
    assert caught.value.status_code == 502
    assert "not usable" in caught.value.message
    assert "at $: 'born' is a required property" in caught.value.message
    assert len(sandbox.requests) == 2


async def test_a_stream_gets_the_validated_json_once_known(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(values=["```json\n", '{"name": "Ada",', ' "born": 1815}', "\n```"])
    )
    body = {
        "model": "gpt-4o-mini",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "response_format": PERSON_FORMAT,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(koala_server.base_url + "/chat/completions", json=body) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        raw = (await response.read()).decode()
    events = [line[6:] for line in raw.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    content = "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk["choices"]
    )
    assert json.loads(content) == ADA
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    # As in every stream of the server: `usage` only on the usage chunk.
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_the_client_emulates_json_mode_too(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=[f"```json\n{json.dumps(ADA)}\n```"]))
    with Client(api_endpoint=sandbox.api_endpoint, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="", messages=HELLO, response_format=PERSON_FORMAT
        )
        assert json.loads(completion.choices[0].message.content or "") == ADA
        sandbox.push(Reply(values=["no"]), Reply(values=["still no"]))
        with pytest.raises(EmulationError, match="holds no JSON object"):
            client.chat.completions.create(
                model="", messages=HELLO, response_format={"type": "json_object"}
            )


@pytest.mark.parametrize(
    "value",
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
        {"type": "text", "json_schema": {"strict": "yes"}},
        {"type": "text", "json_schema": None},
        {"type": "json_object", "json_schema": {"name": 3}},
        {"type": "json_object", "json_schema": {"schema": "object"}},
        {"type": "text", "json_schema": {"strict": True, "name": "n"}},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"strict": 1}},
        {"type": "xml"},
        {},
    ],
    ids=repr,
)
def test_the_code_accepts_what_the_documented_schema_accepts(
    value: dict[str, Any],
) -> None:
    documented = jsonschema.Draft202012Validator(RESPONSE_FORMAT_SCHEMA)
    try:
        parse_response_format("response_format", value)
    except UsageError:
        accepted = False
    else:
        accepted = True
    assert accepted == documented.is_valid(value)
