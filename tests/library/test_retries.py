"""Retries never duplicate text ("Retries").

Failures before the first value (connection errors, time-outs, 429/402, 5xx)
are retried with backoff, honouring `Retry-After` up to a cap; nothing is
retried after a value was yielded; a Cloudflare challenge and 4xx are not
retried; the final error counts the attempts and keeps the last cause.
Backoffs are tiny so the tests are fast; nothing waits on a sleep.

The policy applies to a chosen dialect: these tests choose the history
dialect, as `auto` sends each dialect once only ("Choosing a dialect").
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import msgspec
import pytest

from hardening import MESSAGES, collect, collect_into, reply_text
from koala_chat import (
    AuthenticationError,
    CloudflareChallengeError,
    ConnectError,
    CreditsExhaustedError,
    InvalidJSONError,
    JSONValue,
    Koala,
    KoalaError,
    KoalaTimeoutError,
    ProxyError,
    RateLimitError,
    ServerError,
    StatusError,
    TransportError,
)
from koala_chat.providers.options import RequestOptions, retry_wait
from koala_chat.sandbox import SANDBOX_API_KEY, Reply, Sandbox

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST: dict[str, Any] = {"retry_backoff": 0.01}


@pytest.fixture(autouse=True)
def _history_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choose the history dialect, as `auto` never retries."""
    monkeypatch.setenv("KOALA_PROTOCOL", "history")


PIECES = ["one ", "two ", "three ", "four ", "five"]


def rate_limited(status: int = 429, retry_after: str | None = None) -> Reply:
    """A rate-limit reply, as Koala sends when the free quota is used up."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(
        status=status, body=b"quota", content_type="text/plain", headers=headers
    )


def event_bytes(values: list[JSONValue]) -> int:
    """Return how many body bytes the sandbox sends for these events."""
    return sum(
        len(b"data: " + msgspec.json.encode(value) + b"\n\n") for value in values
    )


async def test_rate_limited_twice_then_success_yields_the_reply_once(
    sandbox: Sandbox,
) -> None:
    sandbox.push(rate_limited(), rate_limited(402), Reply(values=PIECES))

    values = await collect(api_endpoint=sandbox.api_endpoint, **FAST)

    assert values == PIECES
    assert len(sandbox.requests) == 3
    # Every attempt sends the same conversation.
    assert {r.body for r in sandbox.requests} == {sandbox.requests[0].body}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(sandbox: Sandbox, status: int) -> None:
    sandbox.push(Reply(status=status, body=b"<h1>oops</h1>", content_type="text/html"))

    values = await collect(api_endpoint=sandbox.api_endpoint, **FAST)

    assert len(sandbox.requests) == 2
    assert "".join(values) == reply_text(sandbox.requests[1])


async def test_retry_after_is_honoured(sandbox: Sandbox) -> None:
    sandbox.push(rate_limited(retry_after="1"))
    loop = asyncio.get_running_loop()
    start = loop.time()

    values = await collect(
        api_endpoint=sandbox.api_endpoint, retry_backoff=0.01, max_retry_wait=5
    )

    # Retry-After (1 s), not the 10 ms backoff, set the wait.
    assert loop.time() - start >= 0.95
    assert "".join(values) == reply_text(sandbox.requests[1])


async def test_retry_after_past_the_cap_fails_at_once(sandbox: Sandbox) -> None:
    sandbox.push(rate_limited(retry_after="3600"))
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(RateLimitError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, max_retry_wait=30, **FAST)

    assert loop.time() - start < 1.0
    assert caught.value.retry_after == 3600
    assert caught.value.attempts == 1
    assert "retry after 3600 s" in str(caught.value)
    assert len(sandbox.requests) == 1


async def test_retry_after_past_the_total_limit_fails_at_once(
    sandbox: Sandbox,
) -> None:
    sandbox.push(rate_limited(retry_after="20"))
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(RateLimitError):
        await collect(api_endpoint=sandbox.api_endpoint, timeout=5, max_retry_wait=30)

    assert loop.time() - start < 1.0
    assert len(sandbox.requests) == 1


async def test_reset_after_three_pieces_delivers_exactly_three(
    sandbox: Sandbox,
) -> None:
    # Cut in the middle of the fourth event, then reset the connection.
    sandbox.push(Reply(values=PIECES, cut_at=event_bytes(PIECES[:3]) + 8))
    received: list[JSONValue] = []

    with pytest.raises(TransportError) as caught:
        await collect_into(received, api_endpoint=sandbox.api_endpoint, **FAST)

    assert received == PIECES[:3]
    assert len(sandbox.requests) == 1  # no retry once a piece was yielded
    assert caught.value.attempts == 1


async def test_reset_before_any_piece_is_retried(sandbox: Sandbox) -> None:
    # Headers, then a reset before the first event is complete.
    sandbox.push(Reply(values=PIECES, cut_at=4))

    values = await collect(api_endpoint=sandbox.api_endpoint, **FAST)

    assert len(sandbox.requests) == 2
    assert "".join(values) == reply_text(sandbox.requests[1])


async def test_idle_time_out_before_the_first_piece_is_retried(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(values=PIECES, stall_at=0))
    try:
        values = await collect(
            api_endpoint=sandbox.api_endpoint, idle_timeout=0.2, **FAST
        )
    finally:
        sandbox.release()

    assert len(sandbox.requests) == 2
    assert "".join(values) == reply_text(sandbox.requests[1])


async def test_idle_time_out_after_a_piece_is_not_retried(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=PIECES, stall_at=2))
    received: list[JSONValue] = []
    try:
        with pytest.raises(KoalaTimeoutError) as caught:
            await collect_into(
                received, api_endpoint=sandbox.api_endpoint, idle_timeout=0.2, **FAST
            )
    finally:
        sandbox.release()

    assert received == PIECES[:2]
    assert caught.value.limit == "idle"
    assert caught.value.attempts == 1
    assert len(sandbox.requests) == 1


async def test_cloudflare_challenge_is_not_retried(sandbox: Sandbox) -> None:
    sandbox.push(
        Reply(
            status=403,
            body=b"<html><title>Just a moment...</title></html>",
            content_type="text/html",
            headers={"cf-mitigated": "challenge", "cf-ray": "8a1b2c3d4e5f-AMS"},
        )
    )

    with pytest.raises(CloudflareChallengeError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, **FAST)

    assert caught.value.attempts == 1
    assert caught.value.request_id == "8a1b2c3d4e5f-AMS"
    assert len(sandbox.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
async def test_client_errors_are_not_retried(sandbox: Sandbox, status: int) -> None:
    sandbox.push(
        Reply(status=status, body=b'{"error": "no"}', content_type="application/json")
    )

    with pytest.raises(StatusError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, protocol="history", **FAST)

    assert type(caught.value) is StatusError
    assert caught.value.status == status
    assert caught.value.attempts == 1
    assert len(sandbox.requests) == 1


async def test_final_error_counts_attempts_and_keeps_the_last_cause(
    sandbox: Sandbox,
) -> None:
    sandbox.push(
        Reply(status=500, body=b"first", content_type="text/plain"),
        rate_limited(),
        Reply(status=503, body=b"last", content_type="text/plain"),
    )

    with pytest.raises(ServerError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, max_retries=2, **FAST)

    error = caught.value
    assert error.attempts == 3
    assert str(error).endswith("(after 3 attempts)")
    assert (error.status, error.body) == (503, "last")  # the last attempt's error
    assert len(sandbox.requests) == 3


async def test_default_max_retries_is_two(sandbox: Sandbox) -> None:
    sandbox.push(*[rate_limited() for _ in range(4)])

    with pytest.raises(RateLimitError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, **FAST)

    assert caught.value.attempts == 3
    assert len(sandbox.requests) == 3


async def test_max_retries_zero_makes_one_attempt(sandbox: Sandbox) -> None:
    sandbox.push(rate_limited())

    with pytest.raises(RateLimitError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, max_retries=0)

    assert caught.value.attempts == 1
    assert "attempts" not in str(caught.value)


async def test_connection_refused_keeps_the_aiohttp_cause() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(ConnectError) as caught:
        await collect(
            api_endpoint=f"http://127.0.0.1:{port}/api/gpt/", max_retries=3, **FAST
        )

    assert caught.value.attempts == 4
    assert "(after 4 attempts)" in str(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


async def test_backoff_grows_between_attempts(sandbox: Sandbox) -> None:
    sandbox.push(*[rate_limited() for _ in range(3)])
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(RateLimitError):
        await collect(api_endpoint=sandbox.api_endpoint, retry_backoff=0.1)

    # Full jitter keeps each wait within [step/2, step]: 0.05-0.1 s, then 0.1-0.2 s.
    assert loop.time() - start >= 0.15


async def test_retries_stop_at_the_total_limit(sandbox: Sandbox) -> None:
    sandbox.push(*[rate_limited() for _ in range(20)])
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(RateLimitError) as caught:
        await collect(
            api_endpoint=sandbox.api_endpoint,
            timeout=1.0,
            max_retries=20,
            retry_backoff=0.2,
        )

    # Twenty retries at these backoffs would take minutes; the total limit
    # ends them after about 1 s (the margin is for a loaded machine).
    assert loop.time() - start < 3.0
    assert 1 < caught.value.attempts < 20


async def test_sync_api_retries_without_duplicates(sandbox: Sandbox) -> None:
    sandbox.push(rate_limited(), Reply(values=PIECES))

    def run() -> list[str]:
        kwargs: dict[str, Any] = {"api_endpoint": sandbox.api_endpoint, **FAST}
        return list(Koala.create_completion("", MESSAGES, **kwargs))

    pieces = await asyncio.to_thread(run)

    assert pieces == PIECES
    assert len(sandbox.requests) == 2


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectError("refused"), True),
        (KoalaTimeoutError("idle", limit="idle", seconds=1.0), True),
        (ProxyError("bad credentials"), False),  # a ConnectError, yet not retried
        (ServerError("503", status=503), True),
        (RateLimitError("429", status=429), True),
        (CloudflareChallengeError("403", status=403), False),
        (StatusError("404", status=404), False),
        (InvalidJSONError("not JSON"), False),
    ],
)
def test_the_retry_policy_follows_the_error_class(
    error: KoalaError, retried: bool
) -> None:
    options = RequestOptions.from_kwargs(FAST)
    wait = retry_wait(error, 1, options, delivered=False, time_left=None)
    assert (wait is not None) == retried
    assert retry_wait(error, 1, options, delivered=True, time_left=None) is None


async def test_key_errors_are_not_retried(sandbox: Sandbox) -> None:
    # docs/protocol.md, "The key and its errors": a refused key and an empty
    # account stay so, unlike a rate limit.
    sandbox.push(Reply(status=402, body=b"no credits"))
    with pytest.raises(CreditsExhaustedError) as caught:
        await collect(
            api_endpoint=sandbox.api_endpoint,
            api_key=SANDBOX_API_KEY,
            protocol="api",
            **FAST,
        )
    assert caught.value.attempts == 1
    with pytest.raises(AuthenticationError):
        await collect(
            api_endpoint=sandbox.api_endpoint,
            api_key="not-it",
            protocol="api",
            **FAST,
        )
    assert len(sandbox.requests) == 2


async def test_auto_sends_each_dialect_once(sandbox: Sandbox) -> None:
    # A server error is not retried under auto, nor answered by a switch: one
    # call costs at most one request per dialect ("Choosing a dialect").
    sandbox.push(Reply(status=503, body=b"busy"))
    with pytest.raises(ServerError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, protocol="auto", **FAST)
    assert caught.value.attempts == 1
    assert [set(r.json or ()) for r in sandbox.requests] == [
        {"input", "inputHistory", "outputHistory", "model"}
    ]


async def test_auto_sends_the_fallback_once(sandbox: Sandbox) -> None:
    # The history shape refused, then a server error in the messages dialect:
    # two requests in all, never a retry of either.
    sandbox.push(
        Reply(status=400, body=b"{}", content_type="application/json"),
        Reply(status=503, body=b"busy", any_body=True),
    )
    with pytest.raises(ServerError) as caught:
        await collect(
            api_endpoint=sandbox.api_endpoint, protocol="auto", max_retries=5, **FAST
        )
    assert caught.value.attempts == 1
    assert [sorted(r.json or ()) for r in sandbox.requests] == [
        ["input", "inputHistory", "model", "outputHistory"],
        ["messages", "model"],
    ]
