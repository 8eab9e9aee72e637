"""`koala serve` in each Koala dialect, driven by the official `openai` client.

docs/protocol.md, "Choosing a dialect": the server's dialect is configured
once (`--protocol`, the upstream key from `KOALA_API_KEY`); a request may pick
another with the body's `protocol` and `web_search`. The upstream key is the
server's own, never a client's, and never logged.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec
import openai
import pytest

from koala_chat import Koala
from koala_chat.defaults import PROTOCOLS
from koala_chat.providers.dialects import ApiKey
from koala_chat.sandbox import SANDBOX_API_KEY, Reply, Sandbox, default_reply
from koala_chat.server.app import ACCESS_LOGGER
from koala_chat.server.cli import build_parser
from server_fixtures import ServerThread

HELLO: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "Hello"}
]
SERVER_KEY = "server-key-for-clients"

StartServer = Callable[..., ServerThread]


def start(start_server: StartServer, protocol: str, **options: Any) -> ServerThread:
    """Start a server in `protocol` with the sandbox's key upstream."""
    return start_server(
        api_key=SERVER_KEY,
        provider_options={
            "protocol": protocol,
            "api_key": ApiKey(SANDBOX_API_KEY),
            **options,
        },
    )


def sdk(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=SERVER_KEY, max_retries=2)


@pytest.mark.parametrize("protocol", ["history", "messages", "api"])
def test_the_openai_client_in_each_dialect(
    start_server: StartServer,
    sandbox: Sandbox,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    server = start(start_server, protocol)
    with sdk(server) as client:
        completion = client.chat.completions.create(model="", messages=HELLO)
        chunks = client.chat.completions.create(model="", messages=HELLO, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
        models = [model.id for model in client.models.list()]

    first, second = sandbox.requests
    assert (first.json or {}).keys() == (second.json or {}).keys()
    body = first.json
    assert body is not None
    text = "".join(default_reply(body, dialect=protocol))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == text
    assert streamed == text
    assert body["model"] == Koala.get_model("", protocol=protocol)
    assert ("messages" in body) is (protocol == "messages")
    assert ("realTimeData" in body) is (protocol == "api")
    for request in sandbox.requests:
        # The client's key never goes upstream; the upstream key only to the api.
        assert SERVER_KEY not in str(dict(request.headers))
        expected = f"Bearer {SANDBOX_API_KEY}" if protocol == "api" else None
        assert request.headers.get("Authorization") == expected
    assert models == Koala.get_models(protocol=protocol)
    assert caplog.records, "the access log wrote nothing"
    assert SANDBOX_API_KEY not in caplog.text
    assert SERVER_KEY not in caplog.text


def test_the_model_list_says_the_dialect(start_server: StartServer) -> None:
    server = start(start_server, "messages")
    request = urllib.request.Request(
        server.base_url + "/models", headers={"Authorization": f"Bearer {SERVER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        listing = msgspec.json.decode(response.read())
    assert listing["koala"] == {
        "protocols": ["auto", "history", "messages"],
        "protocol": "messages",
        "web_search": True,
        "images": True,
    }
    assert listing["data"][0]["id"] == "gemini-3-flash"
    assert repr(server.config).count(SANDBOX_API_KEY) == 0


def test_a_request_may_choose_its_dialect_and_web_search(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start(start_server, "history")
    with sdk(server) as client:
        client.chat.completions.create(
            model="",
            messages=HELLO,
            extra_body={"protocol": "messages", "web_search": True},
        )
    (request,) = sandbox.requests
    assert request.json is not None
    assert "messages" in request.json
    assert request.headers["flag-real-time-data"] == "true"


def test_the_api_dialect_without_an_upstream_key_is_forbidden(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(api_key=SERVER_KEY, client_protocols=PROTOCOLS)
    with sdk(server) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(
            model="", messages=HELLO, extra_body={"protocol": "api"}
        )
    assert caught.value.code == "protocol_unavailable"
    assert "KOALA_API_KEY" in str(caught.value)
    assert sandbox.requests == []


def test_out_of_credits_is_402_and_not_retried(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start(start_server, "api", max_retries=2)
    sandbox.push(Reply(status=402, body=b'{"error": "no credits"}'))
    with sdk(server) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="", messages=HELLO)
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_quota"
    assert len(sandbox.requests) == 1
    assert SANDBOX_API_KEY not in str(caught.value)


def test_a_refused_upstream_key_is_the_server_s_problem(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(
        api_key=SERVER_KEY,
        provider_options={"protocol": "api", "api_key": ApiKey("not-the-key")},
    )
    with (
        openai.OpenAI(
            base_url=server.base_url, api_key=SERVER_KEY, max_retries=0
        ) as client,
        pytest.raises(openai.InternalServerError) as caught,
    ):
        client.chat.completions.create(model="", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth"
    assert "not-the-key" not in str(caught.value)


def test_serve_takes_a_protocol() -> None:
    args = build_parser("koala-serve").parse_args(["--protocol", "messages"])
    assert args.protocol == "messages"
    with pytest.raises(SystemExit):
        build_parser("koala-serve").parse_args(["--protocol", "gopher"])
