"""The server's OpenAPI description: valid, complete, and true to the server.

schemathesis generates requests from the document served at /openapi.json and
checks the live server's answers against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from koala_chat.server.apis import outside_openapi
from koala_chat.server.app import create_app
from koala_chat.server.config import ServerConfig
from koala_chat.server.openapi import openapi_document
from server_fixtures import ServerThread

API_KEY = "openapi-test-key"
#: Examples per operation: enough to reach every parameter, bounded in time.
MAX_EXAMPLES = 25


def test_document_is_valid_openapi() -> None:
    validate(openapi_document())  # raises on an invalid document


def test_every_route_is_documented_and_every_path_served() -> None:
    app = create_app(ServerConfig())
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        # aiohttp answers HEAD for every GET route by itself.
        if route.resource is not None
        and route.method != "HEAD"
        # The document describes the OpenAI-shaped routes (not Ollama's and
        # Anthropic's).
        and not outside_openapi(route.resource.canonical)
    }
    assert outside_openapi("/api/chat")
    assert outside_openapi("/v1/messages")
    paths = openapi_document()["paths"]
    documented = {(method, path) for path, item in paths.items() for method in item}
    assert served == documented


async def test_document_is_served_without_the_key(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key=API_KEY)
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/openapi.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == openapi_document()


@pytest.fixture
def keyed_server(start_server: Callable[..., ServerThread]) -> ServerThread:
    """A server in front of the sandbox that wants the key on /v1."""
    return start_server(api_key=API_KEY)


# The document itself, not the one the server serves (test above: the same):
# `schemathesis.pytest.from_fixture` relies on pytest's private `_nodeid`, gone
# in pytest 9, so the schema is loaded at import and the server is a fixture.
schema = schemathesis.openapi.from_dict(openapi_document())


# Every built-in check runs on positive and negative cases: no 5xx, documented
# statuses, headers and bodies, schema-valid bodies accepted and invalid ones
# refused, the key enforced. Streamed replies are checked too: schemathesis
# validates each event against `ChunkEvent` and its JSON data against the
# chunk schema (`contentSchema`). No warning filter is needed: neither
# schemathesis nor hypothesis warns here.
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # One server per operation serves all its examples: the server is
    # stateless, so sharing it across examples is what we want.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_server_conforms_to_its_document(
    case: schemathesis.Case, keyed_server: ServerThread
) -> None:
    response = case.call(
        base_url=keyed_server.url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    if response.status_code == 502 and b"not usable" in response.content:
        # Emulated JSON mode or tool calls: the sandbox's fixed reply is no JSON
        # and no tool call, so the documented 502 is the right answer.
        assert response.json()["error"]["code"] == "upstream_protocol_error"
        return
    if response.status_code == 400 and re.search(
        rb'"(tool_choice: (names|asks)|[^"]* not a valid JSON Schema'
        rb"|tools\[\d+\](\.function)?\.name: .* is given twice)",
        response.content,
    ):
        # Rules that the document states in words, not in JSON Schema: the
        # function `tool_choice` names must be one of `tools`, each function
        # of `tools` is named once, and a schema given in `tools` or
        # `response_format` must be a valid JSON Schema.
        assert "JSON Schema" in response.text or "tools" in response.text
        return
    case.validate_response(response)
