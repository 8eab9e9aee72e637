"""koala_chat._http.proxies: get_connector, the proxy schemes, redaction."""

from __future__ import annotations

import socket

import aiohttp
import aiohttp_socks
import pytest

from koala_chat import ConnectError, Koala, UsageError, get_connector
from koala_chat._http.proxies import http_proxy


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


async def test_a_proxy_is_applied_once() -> None:
    assert http_proxy(None, None) is None
    assert http_proxy("http://127.0.0.1:3128", None) == "http://127.0.0.1:3128"
    assert http_proxy("socks5://127.0.0.1:1080", None) is None  # in the connector
    async with aiohttp.TCPConnector() as mine:
        with pytest.raises(UsageError, match="SOCKS proxy needs a connector"):
            http_proxy("socks5://127.0.0.1:1080", mine)
