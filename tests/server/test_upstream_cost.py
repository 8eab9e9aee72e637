"""What one client request of `koala serve` costs upstream, at most.

README, "What one request can cost upstream": `auto` sends each dialect once,
a chosen dialect retries as `--retries` says, and an emulated reply that fails
its check twice tells the openai SDK not to retry. The SDK here keeps its own
default retries, as a user's does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def retrying_sdk() -> Iterator[Callable[[ServerThread], openai.OpenAI]]:
    """The openai client with its default retries (two), at a given server."""
    clients: list[openai.OpenAI] = []

    def make(server: ServerThread) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.base_url, api_key="anything")
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()


def busy(count: int) -> list[Reply]:
    return [Reply(status=503, body=b"busy", any_body=True) for _ in range(count)]


def test_an_emulated_reply_invalid_twice_is_not_retried_by_the_sdk(
    start_server: Callable[..., ServerThread],
    retrying_sdk: Callable[[ServerThread], openai.OpenAI],
    sandbox: Sandbox,
) -> None:
    sandbox.push(*[Reply(values=["I'd rather not."]) for _ in range(6)])
    sdk = retrying_sdk(start_server())
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(
            model="", messages=HELLO, response_format={"type": "json_object"}
        )
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(sandbox.requests) == 2  # the reply and the one re-ask, no more


def test_auto_sends_each_dialect_once_per_sdk_attempt(
    start_server: Callable[..., ServerThread],
    retrying_sdk: Callable[[ServerThread], openai.OpenAI],
    sandbox: Sandbox,
) -> None:
    # The server's own retries are on (2, the default), yet auto retries
    # nothing: the SDK's three attempts cost three upstream requests.
    sandbox.push(*busy(9))
    server = start_server(provider_options={"max_retries": 2, "protocol": "auto"})
    with pytest.raises(openai.InternalServerError) as caught:
        retrying_sdk(server).chat.completions.create(model="", messages=HELLO)
    assert caught.value.status_code == 502
    assert len(sandbox.requests) == 3


def test_auto_falls_back_once_and_then_stops(
    start_server: Callable[..., ServerThread],
    retrying_sdk: Callable[[ServerThread], openai.OpenAI],
    sandbox: Sandbox,
) -> None:
    refused = Reply(status=400, body=b"{}", content_type="application/json")
    sandbox.push(refused, *busy(1))
    server = start_server(provider_options={"max_retries": 2, "protocol": "auto"})
    sdk = retrying_sdk(server).with_options(max_retries=0)
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="", messages=HELLO)
    shapes = [sorted(r.json or ()) for r in sandbox.requests]
    assert shapes == [
        ["input", "inputHistory", "model", "outputHistory"],
        ["messages", "model"],
    ]


def test_a_chosen_dialect_retries_as_configured(
    start_server: Callable[..., ServerThread],
    retrying_sdk: Callable[[ServerThread], openai.OpenAI],
    sandbox: Sandbox,
) -> None:
    sandbox.push(*busy(3))
    server = start_server(provider_options={"max_retries": 2, "protocol": "history"})
    sdk = retrying_sdk(server).with_options(max_retries=0)
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="", messages=HELLO)
    assert len(sandbox.requests) == 3  # 1 + --retries
