"""koala_chat._http.translate: aiohttp's exceptions become ours, by one table."""

from __future__ import annotations

import socket

import aiohttp
import aiohttp_socks
import pytest

from koala_chat import (
    ConnectError,
    KoalaError,
    KoalaTimeoutError,
    ProxyError,
    TransportError,
)
from koala_chat._http import Timeouts, translate_error, translate_errors

URL = "http://127.0.0.1:8000/api/gpt/"
PROXY = "socks5://koala:s3cr3t-pw@127.0.0.1:1080"
LIMITS = Timeouts(connect=1.0, idle=2.0, total=3.0)


def _os_error_from_a_failed_lookup() -> aiohttp.ClientOSError:
    error = aiohttp.ClientOSError("lookup failed")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    return error


@pytest.mark.parametrize(
    ("exc", "kind", "limit"),
    [
        (aiohttp_socks.ProxyTimeoutError("slow"), KoalaTimeoutError, "connect"),
        (aiohttp_socks.ProxyError("refused s3cr3t-pw"), ProxyError, None),
        (aiohttp.ConnectionTimeoutError(), KoalaTimeoutError, "connect"),
        (aiohttp.SocketTimeoutError(), KoalaTimeoutError, "idle"),
        (aiohttp.ServerDisconnectedError(), TransportError, None),
        (_os_error_from_a_failed_lookup(), ConnectError, None),
        (aiohttp.ClientOSError("reset"), TransportError, None),
        (TimeoutError(), KoalaTimeoutError, "total"),
    ],
)
def test_each_exception_finds_its_entry(
    exc: BaseException, kind: type[KoalaError], limit: str | None
) -> None:
    error = translate_error(exc, URL, LIMITS, PROXY)
    assert type(error) is kind
    assert getattr(error, "limit", None) == limit
    assert "s3cr3t-pw" not in str(error)


async def test_our_own_errors_pass_untouched() -> None:
    ours = KoalaTimeoutError("idle", limit="idle", seconds=2.0)
    with pytest.raises(KoalaTimeoutError) as caught:
        async with translate_errors(URL, LIMITS):
            raise ours
    assert caught.value is ours
