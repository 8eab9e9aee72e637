"""`koala serve`, lenient by default: ignored, emulated and refused parameters.

A test per parameter of the table (`PARAMETERS`), in both modes; Open
WebUI-style bodies; the routes without `/v1`; the `provider` field; CORS, with
a real aiohttp client; `--strict`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from koala_chat import UsageError
from koala_chat._contract.params import PARAMETERS, Parameter, Treatment
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.cli import build_parser
from koala_chat.server.config import ServerConfig
from koala_chat.server.conversation import IGNORED_HEADER
from koala_chat.server.openapi import openapi_document
from server_fixtures import ServerThread

HELLO: list[Any] = [{"role": "user", "content": "Hello"}]
KEY = "lenient-test-key"
ORIGIN = "https://chat.example"


def body(**params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": HELLO, **params}


def sample(parameter: Parameter) -> Any:
    """Return a value the parameter's schema accepts (an ignored parameter)."""
    schema = parameter.schema or {}
    kind = schema.get("type")
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    return {"string": "x", "boolean": True, "object": {}}.get(kind, "anything")


#: Values that ask for what Koala cannot give; any other refused parameter
#: gets an object, which no refused parameter takes as neutral.
REFUSED_VALUES: dict[str, Any] = {
    "n": 2,
    "logprobs": True,
    "top_logprobs": 3,
    "modalities": ["text", "audio"],
    "functions": [{"name": "f"}],
    "function_call": {"name": "f"},
}
TOOL: Any = {"type": "function", "function": {"name": "f"}}
#: A value of each emulated parameter and a reply that satisfies it.
EMULATED: dict[str, tuple[dict[str, Any], str]] = {
    "response_format": ({"response_format": {"type": "json_object"}}, '{"a": 1}'),
    "tools": ({"tools": [TOOL]}, '{"tool_calls": [{"name": "f", "arguments": {}}]}'),
    "tool_choice": (
        {"tools": [TOOL], "tool_choice": "required"},
        '{"tool_calls": [{"name": "f", "arguments": {}}]}',
    ),
}


def by_treatment(treatment: Treatment) -> list[Parameter]:
    return [p for p in PARAMETERS.values() if p.treatment is treatment]


@pytest.fixture
def strict_server(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server(strict=True)


async def post(
    http: aiohttp.ClientSession, url: str, payload: Any, **kwargs: Any
) -> tuple[int, Any, dict[str, Any]]:
    async with http.post(url, json=payload, **kwargs) as response:
        raw = await response.read()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = raw.decode()
        return response.status, response.headers, answer


# --- the table, parameter by parameter ------------------------------------------


def test_every_treatment_has_parameters() -> None:
    assert {"temperature", "keep_alive", "top_k", "reasoning", "user"} <= {
        p.name for p in by_treatment(Treatment.IGNORED)
    }
    assert {p.name for p in by_treatment(Treatment.EMULATED)} == set(EMULATED)
    assert {"n", "logprobs"} <= {p.name for p in by_treatment(Treatment.REFUSED)}


@pytest.mark.parametrize(
    "parameter", by_treatment(Treatment.IGNORED), ids=lambda p: p.name
)
async def test_each_ignored_parameter_is_accepted_and_named(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    strict_server: ServerThread,
    parameter: Parameter,
) -> None:
    payload = body(**{parameter.name: sample(parameter)})
    status, headers, answer = await post(
        http, koala_server.base_url + "/chat/completions", payload
    )
    assert status == 200, answer
    assert headers[IGNORED_HEADER] == parameter.name
    status, headers, answer = await post(
        http, strict_server.base_url + "/chat/completions", payload
    )
    if parameter.foreign:
        assert status == 400
        assert answer["error"]["message"] == f"{parameter.name}: unknown parameter"
    else:
        assert status == 200, answer
        assert headers[IGNORED_HEADER] == parameter.name


@pytest.mark.parametrize(
    "parameter", by_treatment(Treatment.REFUSED), ids=lambda p: p.name
)
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
async def test_each_refused_parameter_is_a_400_in_both_modes(
    http: aiohttp.ClientSession,
    start_server: Callable[..., ServerThread],
    sandbox: Sandbox,
    parameter: Parameter,
    strict: bool,
) -> None:
    server = start_server(strict=strict)
    value = REFUSED_VALUES.get(parameter.name, {"something": 1})
    status, _, answer = await post(
        http, server.base_url + "/chat/completions", body(**{parameter.name: value})
    )
    assert status == 400
    assert answer["error"]["message"].startswith(f"{parameter.name}: ")
    assert sandbox.requests == []


@pytest.mark.parametrize("name", sorted(EMULATED))
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
async def test_each_emulated_parameter_is_honoured_in_both_modes(
    http: aiohttp.ClientSession,
    start_server: Callable[..., ServerThread],
    sandbox: Sandbox,
    name: str,
    strict: bool,
) -> None:
    server = start_server(strict=strict)
    params, reply = EMULATED[name]
    sandbox.push(Reply(values=[reply]))
    status, headers, answer = await post(
        http, server.base_url + "/chat/completions", body(**params)
    )
    assert status == 200, answer
    assert IGNORED_HEADER not in headers
    message = answer["choices"][0]["message"]
    assert message["content"] == reply or message["tool_calls"][0]["function"] == {
        "name": "f",
        "arguments": "{}",
    }
    assert sandbox.requests[0].json is not None
    assert "JSON" in json.dumps(sandbox.requests[0].json)


# --- lenient and strict as clients meet them -------------------------------------


async def test_open_webui_body_streams_and_names_what_it_ignored(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    payload = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "name": "ada",
                "content": [
                    {
                        "type": "text",
                        "text": "Hello",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ],
        "stream": True,
        "keep_alive": "5m",
        "num_keep": 5,
        "tool_servers": [],
        "chat_id": "c-1",
        "top_k": 40,
        "reasoning": {"effort": "low"},
        "features": {"web_search": False},
        "user": "ada@example.com",
    }
    async with http.post(
        koala_server.base_url + "/chat/completions", json=payload
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        assert response.headers[IGNORED_HEADER] == (
            "keep_alive, num_keep, tool_servers, chat_id, top_k, reasoning, "
            "features, user"
        )
        text = (await response.read()).decode()
    assert text.endswith("data: [DONE]\n\n")
    assert sandbox.requests[0].json is not None
    assert "Hello" in json.dumps(sandbox.requests[0].json)


async def test_nothing_ignored_means_no_header(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    status, headers, _ = await post(
        http, koala_server.base_url + "/chat/completions", body(stop=["zzz"])
    )
    assert status == 200
    assert IGNORED_HEADER not in headers


async def test_odd_names_reach_the_header_percent_encoded(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    status, headers, _ = await post(
        http,
        koala_server.base_url + "/chat/completions",
        body(**{"bad\r\nX-Evil: 1": 1, "ok,name": 2}),
    )
    assert status == 200
    assert headers[IGNORED_HEADER] == "bad%0D%0AX-Evil%3A%201, ok%2Cname"
    assert "X-Evil" not in headers


async def test_ignored_names_are_logged_at_debug_level(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="koala_chat.server"):
        status, _, _ = await post(
            http, koala_server.base_url + "/chat/completions", body(keep_alive=-1)
        )
    assert status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        "ignored parameters: keep_alive"
    ]


async def test_strict_refuses_unknown_names(
    http: aiohttp.ClientSession, strict_server: ServerThread, sandbox: Sandbox
) -> None:
    status, _, answer = await post(
        http, strict_server.base_url + "/chat/completions", body(wibble=1)
    )
    assert status == 400
    assert answer["error"]["message"] == "wibble: unknown parameter"
    assert sandbox.requests == []


@pytest.mark.parametrize("provider", ["Koala", "koala"])
async def test_a_provider_naming_koala_is_accepted(
    http: aiohttp.ClientSession, strict_server: ServerThread, provider: str
) -> None:
    status, headers, _ = await post(
        http, strict_server.base_url + "/chat/completions", body(provider=provider)
    )
    assert status == 200
    assert IGNORED_HEADER not in headers


async def test_another_provider_is_a_400_naming_ours(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    status, _, answer = await post(
        http, koala_server.base_url + "/chat/completions", body(provider="OpenAI")
    )
    assert status == 400
    assert "serves the Koala provider only, not 'OpenAI'" in answer["error"]["message"]


# --- routes without /v1 -------------------------------------------------------------


async def test_routes_without_v1_answer_behind_the_key(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/models", "/models/gpt-4o-mini"):
        async with http.get(server.url + path) as response:
            assert response.status == 401, path
        async with http.get(server.url + path, headers=auth) as response:
            assert response.status == 200, path
            assert (await response.json())["object"] in ("list", "model")
    status, _, _ = await post(http, server.url + "/chat/completions", body())
    assert status == 401
    status, _, answer = await post(
        http, server.url + "/chat/completions", body(), headers=auth
    )
    assert status == 200
    assert answer["object"] == "chat.completion"


# --- CORS -------------------------------------------------------------------------


PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_preflight_is_answered_without_the_key(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(api_key=KEY, cors_origins=(ORIGIN,))
    async with http.options(
        server.base_url + "/chat/completions", headers=PREFLIGHT
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Headers"] == (
            "authorization, content-type"
        )
        assert "Origin" in response.headers.getall("Vary")


async def test_cors_headers_ride_on_streams_and_errors(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(api_key=KEY, cors_origins=(ORIGIN,))
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"}
    async with http.post(
        server.base_url + "/chat/completions",
        json=body(stream=True, top_k=3),
        headers=headers,
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert IGNORED_HEADER in response.headers["Access-Control-Expose-Headers"]
        assert (await response.read()).endswith(b"data: [DONE]\n\n")
    async with http.get(
        server.base_url + "/models", headers={"Origin": ORIGIN}
    ) as response:
        assert response.status == 401
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_other_origins_get_no_cors_headers(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(cors_origins=(ORIGIN,))
    async with http.get(
        server.base_url + "/models", headers={"Origin": "https://evil.example"}
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Origin" in response.headers.getall("Vary")


async def test_any_origin_with_a_star(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(cors_origins=("*",))
    async with http.options(
        server.base_url + "/models",
        headers={**PREFLIGHT, "Origin": "http://localhost:3000"},
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_is_off_by_default(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    async with http.options(
        koala_server.base_url + "/chat/completions", headers=PREFLIGHT
    ) as response:
        # A page of another origin: refused before routing (see
        # test_server_crosssite.py), and never with CORS headers.
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


# --- the command line -------------------------------------------------------------


def test_command_line_takes_strict_and_origins() -> None:
    args = build_parser("koala serve").parse_args(
        ["--strict", "--cors-origin", "*", "--cors-origin", ORIGIN]
    )
    assert args.strict is True
    assert args.cors_origin == ["*", ORIGIN]
    defaults = build_parser("koala serve").parse_args([])
    assert defaults.strict is False
    assert defaults.cors_origin == []


def test_an_origin_must_be_a_star_or_have_a_scheme() -> None:
    with pytest.raises(UsageError, match="scheme://host"):
        ServerConfig(cors_origins=("chat.example",))


def test_openapi_document_names_the_three_lists() -> None:
    request = openapi_document()["components"]["schemas"]["ChatRequest"]
    description = request["description"]
    for treatment in (Treatment.IGNORED, Treatment.EMULATED, Treatment.REFUSED):
        names = ", ".join(f"`{p.name}`" for p in by_treatment(treatment))
        assert f"{treatment.value}: {names}" in description
    assert "additionalProperties" not in request
    assert request["properties"]["keep_alive"]["description"].endswith(
        "refused as unknown when strict."
    )
