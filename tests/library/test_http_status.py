"""koala_chat._http.status: raise_for_status, Retry-After, error excerpts."""

from __future__ import annotations

import email.utils
import time

import aiohttp
import pytest

from koala_chat import RateLimitError, StatusError, raise_for_status
from koala_chat._http.status import parse_retry_after, text_excerpt
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


def _body() -> dict[str, object]:
    return {"input": "hi", "inputHistory": [], "outputHistory": [], "model": ""}
