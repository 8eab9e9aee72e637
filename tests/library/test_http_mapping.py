"""koala_chat._http.mapping: one context manager turns foreign errors into ours.

It stands around sending, closing and an async generator's whole body
(`providers/attempts.py`), so it must let cancellation and generator closing
through as they are; the translations themselves are `test_http_translate.py`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import aiohttp
import aiohttp_socks
import pytest

from koala_chat import KoalaTimeoutError, ProxyError, TransportError
from koala_chat._http import Timeouts
from koala_chat._http.mapping import ErrorTranslation

URL = "http://127.0.0.1:8000/api/gpt/"
PROXY = "socks5://koala:s3cr3t-pw@127.0.0.1:1080"
LIMITS = Timeouts(connect=1.0, idle=2.0, total=3.0)


def test_a_foreign_error_becomes_ours_chained_to_it() -> None:
    foreign = aiohttp.ServerDisconnectedError()
    with pytest.raises(TransportError) as caught, ErrorTranslation(URL, LIMITS):
        raise foreign
    assert caught.value.__cause__ is foreign
    assert "127.0.0.1:8000" in str(caught.value)


def test_the_builtin_timeout_is_the_total_limit() -> None:
    with pytest.raises(KoalaTimeoutError) as caught, ErrorTranslation(URL, LIMITS):
        raise TimeoutError
    assert caught.value.limit == "total"


def test_a_cause_that_quotes_a_password_is_not_chained() -> None:
    foreign = aiohttp_socks.ProxyError(f"refused {PROXY}")
    with (
        pytest.raises(ProxyError) as caught,
        ErrorTranslation(URL, LIMITS, PROXY),
    ):
        raise foreign
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "s3cr3t-pw" not in str(caught.value)


def test_our_own_errors_pass_untouched() -> None:
    # KoalaTimeoutError is also a builtin TimeoutError, which is foreign.
    ours = KoalaTimeoutError("idle", limit="idle", seconds=2.0)
    with pytest.raises(KoalaTimeoutError) as caught, ErrorTranslation(URL, LIMITS):
        raise ours
    assert caught.value is ours


def test_other_exceptions_pass_untouched() -> None:
    with pytest.raises(KeyError, match="mine"), ErrorTranslation(URL, LIMITS):
        raise KeyError("mine")


async def test_cancellation_passes_through() -> None:
    started = asyncio.Event()

    async def wait_forever() -> None:
        with ErrorTranslation(URL, LIMITS):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def body(ended: list[str]) -> AsyncGenerator[int, None]:
    """Yield 1 and 2 inside the translation, then fail as a cut reply would."""
    try:
        with ErrorTranslation(URL, LIMITS):
            yield 1
            yield 2
            raise aiohttp.ClientPayloadError("cut")
    finally:
        ended.append("closed")


async def test_an_async_generator_body_is_translated_after_its_values() -> None:
    ended: list[str] = []
    values: list[int] = []

    async def drain() -> None:
        async for value in body(ended):
            values.append(value)

    with pytest.raises(TransportError, match="before the reply ended"):
        await drain()
    assert values == [1, 2]
    assert ended == ["closed"]


async def test_closing_an_async_generator_early_is_not_an_error() -> None:
    # aclose() throws GeneratorExit in at the yield: it must reach the
    # generator's end untranslated, or aclose() would raise.
    ended: list[str] = []
    stream = body(ended)
    assert await stream.__anext__() == 1
    await stream.aclose()
    assert ended == ["closed"]
