"""Clients' JSON Schemas are data: nothing fetched, nothing slow, never a 500.

A client of `koala serve` (or of the library) gives JSON Schemas in
`response_format` and in each tool's `parameters`. Each case here sends what
an attacker would, over a real socket to a real server in front of the
sandbox: references to a TCP listener of the test and to a local file, patterns
that backtrack for ever in Python's `re`, schemas huge or deep or looping, in
the lenient and the `--strict` server alike, and through the library client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from koala_chat import Client, UsageError
from koala_chat._contract.validation import validate
from koala_chat.defaults import (
    SCHEMA_MAX_BYTES,
    SCHEMA_MAX_STEPS,
    SCHEMA_MAX_SUBSCHEMAS,
    TOOLS_MAX_COUNT,
)
from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

ASK: list[Any] = [{"role": "user", "content": "Go."}]
#: What the test's listener and file hold: it must never reach a client.
SECRET = "LEAKED-7f3a9c"


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections and serves a schema.

    Were a `$ref` to it followed, the server would read `{"enum": [SECRET]}`.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        body = json.dumps({"enum": [SECRET]}).encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/schema+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    listening = Listener()
    server = await asyncio.start_server(listening.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    listening.url = f"http://127.0.0.1:{port}"
    try:
        yield listening
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    """Return the `file://` URI of a JSON Schema that holds SECRET."""
    path = tmp_path / "secret.json"
    path.write_text(json.dumps({"enum": [SECRET]}))
    return path.as_uri()


def json_format(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def tool(parameters: Any, name: str = "f") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def with_schema(place: str, schema: Any) -> dict[str, Any]:
    """Return the request parameters that put `schema` at `place`."""
    if place == "response_format":
        return {"response_format": json_format(schema)}
    return {"tools": [tool(schema)], "tool_choice": "required"}


async def post(server: ServerThread, **params: Any) -> tuple[int, dict[str, Any]]:
    """POST a completion with `params`; return the status and the JSON body."""
    body = {"model": "gpt-4o-mini", "messages": ASK, **params}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.base_url + "/chat/completions", json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


def assert_refused(
    status: int, document: dict[str, Any], param: str, *words: str
) -> str:
    """Check a 400 in the OpenAI error shape about `param`; return its message."""
    assert status == 400, document
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_request"
    message: str = error["message"]
    assert message.startswith(param), message
    for word in words:
        assert word in message, message
    assert SECRET not in message
    return message


PLACES = [
    ("response_format", "response_format.json_schema.schema"),
    ("tools", "tools[0].function.parameters"),
]


# --- references: nothing is ever fetched ---------------------------------------------


def reaching(url: str) -> list[tuple[str, Any, str]]:
    """Return schemas that try to reach `url`, with the words of their refusal."""
    return [
        ("a $ref", {"$ref": f"{url}/s.json"}, "points outside the schema"),
        (
            "a nested $ref",
            {"type": "object", "properties": {"a": {"$ref": f"{url}/s.json#/x"}}},
            "points outside the schema",
        ),
        (
            "a relative $ref under a remote $id",
            {"$id": f"{url}/base/", "$ref": "s.json"},
            "points outside the schema",
        ),
        (
            "a fragment under a remote $id that resolves to nothing",
            {"$id": f"{url}/s.json", "$ref": "#/$defs/elsewhere"},
            "cannot be resolved in the schema",
        ),
        (
            "a nested $id with a fragment to nothing",
            {"properties": {"a": {"$id": f"{url}/a.json", "$ref": "#/x"}}},
            "cannot be resolved in the schema",
        ),
        ("a remote $schema", {"$schema": f"{url}/meta.json"}, "names no draft"),
        (
            "a $dynamicRef",
            {"$dynamicRef": f"{url}/s.json#meta"},
            "$dynamicRef",
        ),
        ("a $recursiveRef", {"$recursiveRef": "#"}, "$recursiveRef"),
        (
            "a $ref into a non-schema that holds a remote $ref",
            {"x-stash": {"$ref": f"{url}/s.json"}, "$ref": "#/x-stash"},
            "does not point to a subschema",
        ),
        (
            "a $ref into an enum value",
            {"enum": [{"$ref": f"{url}/s.json"}], "$ref": "#/enum/0"},
            "does not point to a subschema",
        ),
    ]


@pytest.mark.parametrize(("place", "param"), PLACES)
@pytest.mark.parametrize("strict", [False, True])
async def test_references_out_of_the_schema_are_refused_and_never_fetched(
    start_server: Callable[..., ServerThread],
    sandbox: Sandbox,
    listener: Listener,
    place: str,
    param: str,
    strict: bool,
) -> None:
    server = start_server(strict=strict)
    for _, schema, words in reaching(listener.url):
        status, document = await post(server, **with_schema(place, schema))
        assert_refused(status, document, param, words)
    assert listener.connections == 0
    assert sandbox.requests == []


@pytest.mark.parametrize(("place", "param"), PLACES)
async def test_a_file_reference_is_refused_and_its_content_never_read(
    koala_server: ServerThread,
    sandbox: Sandbox,
    secret_file: str,
    place: str,
    param: str,
) -> None:
    for schema in (
        {"$ref": secret_file},
        {"properties": {"a": {"$ref": secret_file + "#/enum"}}},
        {"$id": secret_file, "$ref": "#/enum"},
    ):
        status, document = await post(koala_server, **with_schema(place, schema))
        assert_refused(status, document, param)
    assert sandbox.requests == []


async def test_a_ref_never_followed_fetches_nothing_while_the_reply_is_checked(
    koala_server: ServerThread, sandbox: Sandbox, listener: Listener
) -> None:
    # A `$ref` under a keyword no draft knows is data: the validator never
    # reaches it, so the schema is usable, and validating the reply fetches
    # nothing either.
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "x-note": {"$ref": f"{listener.url}/s.json"},
    }
    sandbox.push(Reply(values=['{"a": 1}']))
    status, document = await post(
        koala_server, **with_schema("response_format", schema)
    )
    assert status == 200, document
    assert json.loads(document["choices"][0]["message"]["content"]) == {"a": 1}
    assert listener.connections == 0


async def test_the_validator_has_no_retrieval_even_for_an_unchecked_schema(
    listener: Listener, secret_file: str
) -> None:
    # Below the request's check: a schema that never passed it still resolves
    # nothing outside itself.
    for ref in (f"{listener.url}/s.json", secret_file):
        problem = validate({"a": 1}, {"$ref": ref})
        assert problem.startswith("the schema cannot be used"), problem
        assert SECRET not in problem
    assert listener.connections == 0


def test_the_library_refuses_the_same_references(
    sandbox: Sandbox, secret_file: str
) -> None:
    with Client(api_endpoint=sandbox.api_endpoint, max_retries=0) as client:
        for schema in ({"$ref": secret_file}, {"$ref": "http://127.0.0.1:9/s.json"}):
            for place in ("response_format", "tools"):
                with pytest.raises(UsageError) as caught:
                    client.chat.completions.create(
                        model="", messages=ASK, **with_schema(place, schema)
                    )
                assert "points outside the schema" in str(caught.value)
                assert SECRET not in str(caught.value)
    assert sandbox.requests == []


# --- references inside the schema: recursion that ends, loops that do not ---------


TREE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#"}},
    },
    "required": ["name"],
}
#: As pydantic writes a recursive model.
LINKED = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
            },
            "required": ["value", "next"],
        }
    },
    "$ref": "#/$defs/Node",
}


async def test_recursive_schemas_that_go_into_the_value_still_work(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    linked = {"value": 1, "next": {"value": 2, "next": None}}
    sandbox.push(Reply(values=[json.dumps(tree)]), Reply(values=[json.dumps(linked)]))
    for schema, expected in ((TREE, tree), (LINKED, linked)):
        completion = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, response_format=json_format(schema)
        )
        assert json.loads(completion.choices[0].message.content or "") == expected


async def test_a_bad_node_deep_in_a_recursive_value_is_found(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    bad = {"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}]}
    sandbox.push(Reply(values=[json.dumps(bad)]), Reply(values=[json.dumps(bad)]))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, response_format=json_format(TREE)
        )
    assert caught.value.status_code == 502
    assert "at $.children[0].children[0].name" in caught.value.message


def nested(depth: int, keyword: str = "not") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {keyword: schema}
    return schema


def doubling(levels: int, keyword: str) -> dict[str, Any]:
    """Return a schema of `levels` definitions, each using the one before twice."""
    definitions: dict[str, Any] = {"d0": {"type": "string"}}
    for n in range(1, levels):
        twice = [{"$ref": f"#/$defs/d{n - 1}"}] * 2
        definitions[f"d{n}"] = {keyword: twice}
    return {"$defs": definitions, "$ref": f"#/$defs/d{levels - 1}"}


async def assert_each_refused(
    server: ServerThread,
    sandbox: Sandbox,
    cases: list[tuple[Any, str]],
    place: str,
    param: str,
) -> None:
    """Send each schema of `cases` at `place`: a 400 naming it, nothing upstream."""
    for schema, words in cases:
        status, document = await post(server, **with_schema(place, schema))
        assert_refused(status, document, param, words)
    assert sandbox.requests == []


LOOPS: list[tuple[Any, str]] = [
    ({"$ref": "#"}, "refer back to themselves"),
    ({"allOf": [{"$ref": "#"}]}, "refer back to themselves"),
    ({"properties": {"a": {"not": {"$ref": "#/properties/a"}}}}, "refer back"),
    (
        {
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
            "$ref": "#/$defs/a",
        },
        "#/$defs/a, #/$defs/b",
    ),
    (
        {
            "$defs": {
                "a": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/b"}]},
                "b": {"if": {"$ref": "#/$defs/a"}},
            },
            "$ref": "#/$defs/a",
        },
        "refer back",
    ),
    ({"$anchor": "me", "oneOf": [{"$ref": "#me"}]}, "refer back"),
    (
        {"$id": "https://example.com/s", "$ref": "https://example.com/s"},
        "points outside the schema",
    ),
    ({"$dynamicAnchor": "meta", "$dynamicRef": "#meta"}, "$dynamicRef"),
    (nested(900), "more than 64 levels deep"),
    (nested(900, "items"), "more than 64 levels deep"),
    (doubling(40, "allOf"), "more than 50000 subschemas"),
    (doubling(40, "anyOf"), "more than 50000 subschemas"),
    ({"$ref": "#/$defs/missing"}, "cannot be resolved"),
    ({"$ref": "#nowhere"}, "cannot be resolved"),
    ({"$ref": "#/properties/a", "properties": {"a": 3}}, "not a valid JSON Schema"),
    ({"type": 5}, "not a valid JSON Schema"),
    (
        {"properties": {"a": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
        "top",
    ),
    ({"$schema": "http://json-schema.org/draft-03/schema#"}, "names no draft"),
    ({"$schema": ["not", "a", "string"]}, "names no draft"),
    (
        # An `$id` that is a metaschema's: `#...` resolves in the metaschema
        # jsonschema holds, not in this schema.
        {
            "properties": {
                "a": {
                    "$id": "https://json-schema.org/draft/2020-12/meta/core",
                    "$ref": "#/$defs/x",
                    "$defs": {"x": {"type": "string"}},
                }
            }
        },
        "cannot be resolved",
    ),
]


@pytest.mark.parametrize(("place", "param"), PLACES)
@pytest.mark.parametrize("strict", [False, True])
async def test_schemas_that_loop_or_nest_too_deep_are_400s_not_500s(
    start_server: Callable[..., ServerThread],
    sandbox: Sandbox,
    place: str,
    param: str,
    strict: bool,
) -> None:
    await assert_each_refused(start_server(strict=strict), sandbox, LOOPS, place, param)


def test_the_library_refuses_loops_with_a_usage_error(sandbox: Sandbox) -> None:
    with Client(api_endpoint=sandbox.api_endpoint, max_retries=0) as client:
        for schema, words in LOOPS:
            with pytest.raises(UsageError, match="response_format") as caught:
                client.chat.completions.create(
                    model="", messages=ASK, response_format=json_format(schema)
                )
            assert words in str(caught.value)
    assert sandbox.requests == []


async def test_a_reply_nested_deeper_than_can_be_checked_is_a_502(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    deep = '{"a": ' + "[" * 600 + "]" * 600 + "}"
    sandbox.push(Reply(values=[deep]), Reply(values=[deep]))
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/list"}},
        "$defs": {"list": {"type": "array", "items": {"$ref": "#/$defs/list"}}},
    }
    status, document = await post(
        koala_server, **with_schema("response_format", schema)
    )
    assert status == 502, document
    assert "nests too deeply to be checked" in document["error"]["message"]


async def test_a_reply_too_costly_to_check_is_a_502(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    many = json.dumps({"a": [0] * SCHEMA_MAX_STEPS})
    sandbox.push(Reply(values=[many]), Reply(values=[many]))
    schema = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
    }
    status, document = await post(
        koala_server, **with_schema("response_format", schema)
    )
    assert status == 502, document
    assert "too costly to check" in document["error"]["message"]


@pytest.mark.parametrize(
    ("schema", "value", "words"),
    [
        # jsonschema divides as floats: this integer overflows there.
        ({"multipleOf": 0.5}, 10**400, "number too large"),
        # jsonschema compares unhashable items pairwise (quadratic time).
        (
            {"uniqueItems": True},
            [{"n": n} for n in range(5_000)] + [{"n": 0.0}],
            "non-unique",
        ),
        # Each item is compared with each of the enum's values.
        ({"items": {"enum": list(range(10_000))}}, [-1] * 1000, "too costly"),
        ({"items": {}}, [0] * SCHEMA_MAX_STEPS, "too costly"),
    ],
)
async def test_replies_costly_to_check_are_502s_that_say_why(
    koala_server: ServerThread, sandbox: Sandbox, schema: Any, value: Any, words: str
) -> None:
    reply = json.dumps({"a": value})
    sandbox.push(Reply(values=[reply]), Reply(values=[reply]))
    wrapped = {"type": "object", "properties": {"a": schema}}
    status, document = await post(
        koala_server, **with_schema("response_format", wrapped)
    )
    assert status == 502, document
    assert words in document["error"]["message"]


async def test_tool_arguments_nested_too_deep_are_a_problem_not_a_crash(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    arguments = json.dumps("[" * 100_000 + "]" * 100_000)
    call = f'{{"tool_calls": [{{"name": "f", "arguments": {arguments}}}]}}'
    sandbox.push(Reply(values=[call]), Reply(values=[call]))
    status, document = await post(
        koala_server, **with_schema("tools", {"type": "object"})
    )
    assert status == 502, document
    assert "arguments is not JSON" in document["error"]["message"]


async def test_history_with_arguments_nested_too_deep_is_still_read(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    messages = [
        {"role": "user", "content": "Go."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": deep},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    sandbox.push(Reply(values=["All done."]))
    status, document = await post(
        koala_server, messages=messages, tools=[tool({"type": "object"})]
    )
    assert status == 200, document
    assert document["choices"][0]["message"]["content"] == "All done."


# --- patterns: RE2, linear time -------------------------------------------------------

#: Python's `re` takes about 2**40 steps to fail this pattern on this text.
REDOS = "^(a+)+$"
AAA = "a" * 40 + "!"


async def test_a_backtracking_pattern_fails_fast_on_a_long_reply(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "pattern": REDOS}},
    }
    reply = json.dumps({"a": AAA})
    sandbox.push(Reply(values=[reply]), Reply(values=[reply]))
    status, document = await post(
        koala_server, **with_schema("response_format", schema)
    )
    assert status == 502, document
    assert f"does not match '{REDOS}'" in document["error"]["message"]


@pytest.mark.parametrize(
    "parameters",
    [
        # As `patternProperties` and `additionalProperties` both see the key.
        {
            "type": "object",
            "patternProperties": {REDOS: {"type": "integer"}},
            "additionalProperties": False,
        },
        {"type": "object", "propertyNames": {"pattern": REDOS}},
    ],
)
async def test_backtracking_patterns_on_argument_names_fail_fast(
    koala_server: ServerThread, sandbox: Sandbox, parameters: Any
) -> None:
    call = json.dumps({"tool_calls": [{"name": "f", "arguments": {AAA: 1}}]})
    sandbox.push(Reply(values=[call]), Reply(values=[call]))
    status, document = await post(koala_server, **with_schema("tools", parameters))
    assert status == 502, document
    assert AAA in document["error"]["message"]


async def test_a_format_regex_reply_is_checked_by_re2(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    # A backreference is no regex RE2 knows: the reply is asked for again. The
    # second one makes Python's `re.compile` raise OverflowError; RE2 reads it.
    schema = {"type": "object", "properties": {"r": {"format": "regex"}}}
    sandbox.push(
        Reply(values=['{"r": "(a)\\\\1"}']),
        Reply(values=['{"r": "a{99999999999999}"}']),
    )
    status, document = await post(
        koala_server, **with_schema("response_format", schema)
    )
    assert status == 200, document
    content = json.loads(document["choices"][0]["message"]["content"])
    assert content == {"r": "a{99999999999999}"}
    assert len(sandbox.requests) == 2
    assert "is not a 'regex'" in json.dumps(sandbox.requests[1].json)


PATTERNS: list[tuple[Any, str]] = [
    ({"pattern": "(a)\\1"}, "(a)\\\\1"),
    ({"pattern": "(?=a)b"}, "(?=a)b"),
    ({"pattern": "(?<!a)b"}, "(?<!a)b"),
    ({"pattern": "["}, "'['"),
    ({"pattern": "a{1001}"}, "a{1001}"),
    ({"patternProperties": {"(?!x)": {}}}, "(?!x)"),
    ({"properties": {"a": {"pattern": "(x)\\1"}}}, "at #/properties/a"),
    ({"$defs": {"unused": {"pattern": "(x)\\1"}}}, "at #/$defs/unused"),
    (
        {"patternProperties": {"^x": {}}, "unevaluatedProperties": False},
        "unevaluatedProperties cannot be used",
    ),
]


@pytest.mark.parametrize(("place", "param"), PLACES)
@pytest.mark.parametrize("strict", [False, True])
async def test_patterns_re2_cannot_run_are_400s_that_name_them(
    start_server: Callable[..., ServerThread],
    sandbox: Sandbox,
    place: str,
    param: str,
    strict: bool,
) -> None:
    await assert_each_refused(
        start_server(strict=strict), sandbox, PATTERNS, place, param
    )


def test_the_library_refuses_the_same_patterns(sandbox: Sandbox) -> None:
    with Client(api_endpoint=sandbox.api_endpoint, max_retries=0) as client:
        for schema, words in PATTERNS:
            with pytest.raises(UsageError, match=r"^tools\[0\]") as caught:
                client.chat.completions.create(
                    model="", messages=ASK, tools=[tool(schema)]
                )
            assert words in str(caught.value)
    assert sandbox.requests == []


# --- size: refused at once, checked off the event loop -------------------------------


def wide(properties: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{n}": {} for n in range(properties)}}


async def test_a_schema_over_the_size_limit_is_refused(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    huge = {"type": "object", "description": "x" * (926 * 1024)}
    for place, param in PLACES:
        status, document = await post(koala_server, **with_schema(place, huge))
        assert_refused(status, document, param, f"the limit of {SCHEMA_MAX_BYTES}")
    status, document = await post(koala_server, **with_schema("tools", wide(6000)))
    assert_refused(status, document, "tools[0]", f"{SCHEMA_MAX_SUBSCHEMAS} subschemas")
    assert sandbox.requests == []


async def test_too_many_tools_or_tool_schemas_are_refused(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    many = [tool(None, f"f{n}") for n in range(6500)]
    status, document = await post(koala_server, tools=many)
    assert_refused(status, document, "tools", f"at most {TOOLS_MAX_COUNT} tools")
    # Each schema is within its own limits; together they are not.
    parts = [tool(wide(2000), f"f{n}") for n in range(3)]
    status, document = await post(koala_server, tools=parts)
    assert_refused(status, document, "tools[2]", "together have more than")
    assert sandbox.requests == []


async def test_health_answers_while_large_schemas_are_checked(
    koala_server: ServerThread,
) -> None:
    # Each schema is as large as the limits allow and refused only at its
    # last check (its `$ref` resolves to nothing): about a second of work each.
    schema = {**wide(SCHEMA_MAX_SUBSCHEMAS - 1), "$ref": "#/$defs/missing"}
    attacks = [
        asyncio.create_task(
            post(koala_server, **with_schema("response_format", schema))
        )
        for _ in range(4)
    ]
    latencies = []
    async with aiohttp.ClientSession() as http:
        while not all(attack.done() for attack in attacks):
            started = time.perf_counter()
            async with http.get(koala_server.url + "/health") as response:
                assert response.status == 200
            if not all(attack.done() for attack in attacks):
                latencies.append(time.perf_counter() - started)
    for status, document in await asyncio.gather(*attacks):
        assert_refused(status, document, "response_format", "cannot be resolved")
    # The checks took long enough to be measured against, and /health kept on.
    assert latencies
    assert max(latencies) < 1.0, latencies
