"""HTTP helpers: raise_for_status, get_connector, redaction, Retry-After."""

from __future__ import annotations

import email.utils
import socket
import time

import aiohttp
import aiohttp_socks
import pytest

from koala_chat import (
    ConnectError,
    Koala,
    RateLimitError,
    StatusError,
    UsageError,
    get_connector,
    raise_for_status,
)
from koala_chat.requests import Timeouts, parse_retry_after, redact_url, text_excerpt
from koala_chat.sandbox import Reply, Sandbox


async def test_raise_for_status_passes_2xx(sandbox: Sandbox) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.api_endpoint, json=_body()) as response,
    ):
        assert await raise_for_status(response) is None


async def test_raise_for_status_reads_http_date_retry_after(sandbox: Sandbox) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    sandbox.push(Reply(status=429, body=b"", headers={"Retry-After": when}))
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.api_endpoint, json=_body()) as response,
    ):
        with pytest.raises(RateLimitError) as caught:
            await raise_for_status(response)
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


async def test_challenge_marker_deep_in_a_long_page_is_found(sandbox: Sandbox) -> None:
    page = b"<html>" + b" " * 100_000 + b"<script src='/cdn-cgi/challenge-platform/x'>"
    sandbox.push(Reply(status=403, body=page, content_type="text/html"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.api_endpoint, json=_body()) as response,
    ):
        with pytest.raises(StatusError) as caught:
            await raise_for_status(response)
    assert type(caught.value).__name__ == "CloudflareChallengeError"


def test_parse_retry_after() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_text_excerpt_is_short_and_one_line() -> None:
    assert text_excerpt("<p>a\n\n b</p>") == "a b"
    excerpt = text_excerpt("word " * 500)
    assert len(excerpt) == 200
    assert excerpt.endswith("…")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:hunter2@proxy:8080", "http://user:***@proxy:8080"),
        ("socks5://u:p%40ss@[::1]:1080/", "socks5://u:***@[::1]:1080/"),
        ("http://proxy:8080", "http://proxy:8080"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def test_get_connector_returns_the_callers_connector_untouched() -> None:
    async with aiohttp.TCPConnector() as mine:
        assert get_connector(mine, "socks5://127.0.0.1:1080") is mine
        assert not mine.closed


async def test_get_connector_builds_one_for_socks_only() -> None:
    assert get_connector() is None
    assert get_connector(proxy="http://127.0.0.1:3128") is None
    connector = get_connector(proxy="socks5h://u:p@127.0.0.1:1080")
    assert isinstance(connector, aiohttp_socks.ProxyConnector)
    await connector.close()


@pytest.mark.parametrize(
    "proxy", ["ftp://proxy:21", "socks5://proxy", "http://:8080", "socks9://h:1"]
)
def test_unsupported_proxies_are_usage_errors(proxy: str) -> None:
    with pytest.raises(UsageError):
        get_connector(proxy=proxy)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_a_dead_proxy_is_an_error_without_the_password(scheme: str) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = f"{scheme}://koala:s3cr3t-pw@127.0.0.1:{port}"
    with pytest.raises(ConnectError) as caught:
        async for _ in Koala.create_async_generator(
            "",
            [{"role": "user", "content": "hi"}],
            proxy=proxy,
            api_endpoint="http://127.0.0.1:9/api/gpt/",
            max_retries=0,
        ):
            pass
    assert "s3cr3t-pw" not in str(caught.value)
    assert "s3cr3t-pw" not in repr(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize("value", [0, -1, "3", True])
def test_timeouts_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(UsageError, match="total timeout"):
        Timeouts(total=value)  # type: ignore[arg-type]


def _body() -> dict[str, object]:
    return {"input": "hi", "inputHistory": [], "outputHistory": [], "model": ""}
