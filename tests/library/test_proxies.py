"""Koala through real proxy servers on loopback ("Proxies").

Every request goes from `Koala` through a real proxy (pproxy, or the SOCKS5
server of `proxies.py` where pproxy cannot show what we need) to the sandbox.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import aclosing

import aiohttp
import aiohttp_socks
import pytest

from hardening import MESSAGES, collect, open_resources, reply_text
from koala_chat import (
    ConnectError,
    Koala,
    KoalaError,
    KoalaTimeoutError,
    ProxyError,
    TransportError,
)
from koala_chat.sandbox import Reply, Sandbox
from proxies import PASSWORD, PASSWORD_IN_URL, USER, PproxyServer, Socks5Server

pytestmark = pytest.mark.usefixtures("no_leaks")

CONNECT_TIMEOUT = 2.0
# A failure must come within the connect limit; this leaves room for a slow CI.
WITHIN = CONNECT_TIMEOUT + 1.0


def assert_no_secret(exc: BaseException) -> None:
    """Assert that no password shows in `exc` or any exception it chains to."""
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for secret in (PASSWORD, PASSWORD_IN_URL, "wrong-pass"):
                assert secret not in text, f"{type(seen).__name__} shows {secret!r}"
        seen = seen.__cause__ or seen.__context__


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Return a loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "listener", ["http", "http-auth", "socks4", "socks5", "socks5-auth"]
)
async def test_reply_streams_through_proxy(
    sandbox: Sandbox, pproxy: PproxyServer, listener: str
) -> None:
    values = await collect(
        proxy=pproxy.url(listener), api_endpoint=sandbox.api_endpoint
    )

    (request,) = sandbox.requests
    assert "".join(values) == reply_text(request)
    # The proxy carried the request: it logged the sandbox as its target.
    target = f"-> 127.0.0.1:{sandbox.port}"
    assert pproxy.wait_for(lambda log: any(target in line for line in log), 5)


async def test_socks5h_sends_the_host_name_to_pproxy(
    sandbox: Sandbox, pproxy: PproxyServer
) -> None:
    endpoint = f"http://localhost:{sandbox.port}/api/gpt/"
    proxy = pproxy.url("socks5").replace("socks5://", "socks5h://")

    values = await collect(proxy=proxy, api_endpoint=endpoint)

    assert "".join(values) == reply_text(sandbox.requests[0])
    # pproxy logs the target as the client named it: a name, not an address.
    target = f"-> localhost:{sandbox.port}"
    assert pproxy.wait_for(lambda log: any(target in line for line in log), 5)


async def test_socks5h_lets_only_the_proxy_resolve(
    sandbox: Sandbox, socks5_server: Socks5Server
) -> None:
    # A name that no resolver knows but the proxy's own table.
    socks5_server.names["koala-sandbox.test"] = "127.0.0.1"
    endpoint = f"http://koala-sandbox.test:{sandbox.port}/api/gpt/"

    values = await collect(proxy=socks5_server.url("socks5h"), api_endpoint=endpoint)

    assert "".join(values) == reply_text(sandbox.requests[0])
    (request,) = socks5_server.requests
    assert (request.address_type, request.host) == ("domain", "koala-sandbox.test")
    assert sandbox.requests[0].headers["Host"] == f"koala-sandbox.test:{sandbox.port}"


async def test_socks5_resolves_locally(
    sandbox: Sandbox, socks5_server: Socks5Server
) -> None:
    socks5_server.names["koala-sandbox.test"] = "127.0.0.1"

    values = await collect(
        proxy=socks5_server.url("socks5"), api_endpoint=sandbox.api_endpoint
    )
    assert "".join(values) == reply_text(sandbox.requests[0])
    assert socks5_server.requests[0].address_type == "ipv4"

    # socks5 (no h) resolves here, where the proxy's name is unknown.
    endpoint = f"http://koala-sandbox.test:{sandbox.port}/api/gpt/"
    with pytest.raises(ConnectError):
        await collect(
            proxy=socks5_server.url("socks5"),
            api_endpoint=endpoint,
            connect_timeout=CONNECT_TIMEOUT,
            max_retries=0,
        )
    assert len(socks5_server.requests) == 1


@pytest.mark.parametrize("listener", ["http-auth", "socks5-auth"])
@pytest.mark.parametrize("password", ["wrong-pass", None])
async def test_wrong_credentials_are_a_proxy_error(
    sandbox: Sandbox, pproxy: PproxyServer, listener: str, password: str | None
) -> None:
    url = pproxy.url(listener, password=password)
    if password is None:  # no credentials at all
        url = url.replace(f"{USER}:{PASSWORD_IN_URL}@", "")
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(ProxyError) as caught:
        await collect(proxy=url, api_endpoint=sandbox.api_endpoint, connect_timeout=2.0)

    assert loop.time() - start < WITHIN
    assert caught.value.attempts == 1  # credentials do not get better by retrying
    assert sandbox.requests == []
    assert_no_secret(caught.value)


@pytest.mark.parametrize("scheme", ["http", "socks4", "socks5", "socks5h"])
async def test_proxy_down_is_a_proxy_error(
    sandbox: Sandbox, closed_port: int, scheme: str
) -> None:
    proxy = f"{scheme}://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{closed_port}"
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(ProxyError) as caught:
        await collect(
            proxy=proxy,
            api_endpoint=sandbox.api_endpoint,
            connect_timeout=CONNECT_TIMEOUT,
        )

    assert loop.time() - start < WITHIN
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    assert_no_secret(caught.value)
    assert sandbox.requests == []


async def test_silent_socks_proxy_times_out_connecting(
    sandbox: Sandbox, silent_port: int
) -> None:
    proxy = f"socks5://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{silent_port}"
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(KoalaTimeoutError) as caught:
        await collect(
            proxy=proxy,
            api_endpoint=sandbox.api_endpoint,
            connect_timeout=0.3,
            max_retries=0,
        )

    assert caught.value.limit == "connect"
    assert caught.value.seconds == 0.3
    assert loop.time() - start < 0.3 + 1.0
    assert_no_secret(caught.value)


async def test_silent_http_proxy_times_out(sandbox: Sandbox, silent_port: int) -> None:
    # aiohttp counts a plain HTTP proxy as connected once TCP is: the silence
    # that follows is the idle limit.
    proxy = f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{silent_port}"

    with pytest.raises(KoalaTimeoutError) as caught:
        await collect(
            proxy=proxy,
            api_endpoint=sandbox.api_endpoint,
            connect_timeout=0.3,
            idle_timeout=0.3,
            max_retries=0,
        )

    assert caught.value.limit == "idle"
    assert_no_secret(caught.value)


async def test_proxy_refusing_the_target_is_a_proxy_error(
    sandbox: Sandbox, socks5_server: Socks5Server
) -> None:
    socks5_server.refuse = True

    with pytest.raises(ProxyError) as caught:
        await collect(
            proxy=socks5_server.url("socks5h"),
            api_endpoint=sandbox.api_endpoint,
            connect_timeout=CONNECT_TIMEOUT,
        )

    assert caught.value.attempts == 1
    assert "not allowed" in str(caught.value)
    assert len(socks5_server.requests) == 1
    assert sandbox.requests == []


@pytest.mark.parametrize("listener", ["http-auth", "socks5-auth"])
async def test_pproxy_dropping_an_unreachable_target_is_typed(
    pproxy: PproxyServer, closed_port: int, listener: str
) -> None:
    # pproxy accepts the request, then closes when it cannot reach the target:
    # a transport error (not a hang, not an empty reply), without the password.
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(TransportError) as caught:
        await collect(
            proxy=pproxy.url(listener),
            api_endpoint=f"http://127.0.0.1:{closed_port}/api/gpt/",
            connect_timeout=CONNECT_TIMEOUT,
            retry_backoff=0.01,
            protocol="history",
        )

    assert loop.time() - start < WITHIN
    assert caught.value.attempts == 3  # the default max_retries of 2, then give up
    assert_no_secret(caught.value)


async def test_borrowed_proxy_connector_stays_open_and_reusable(
    sandbox: Sandbox, pproxy: PproxyServer
) -> None:
    connector = aiohttp_socks.ProxyConnector.from_url(pproxy.url("socks5-auth"))
    try:
        for turn in range(20):
            messages = [{"role": "user", "content": f"turn {turn}"}]
            values = await collect(
                messages,  # type: ignore[arg-type]
                connector=connector,
                api_endpoint=sandbox.api_endpoint,
            )
            assert f'"turn {turn}"' in "".join(values)
            assert not connector.closed
        # Stopping early must not close it either.
        async with aclosing(
            Koala.create_async_generator(
                "", MESSAGES, connector=connector, api_endpoint=sandbox.api_endpoint
            )
        ) as stream:
            async for _ in stream:
                break
        assert not connector.closed

        # Still usable by its owner.
        async with (
            aiohttp.ClientSession(connector=connector, connector_owner=False) as own,
            own.post(sandbox.api_endpoint, json=sandbox.requests[0].json) as response,
        ):
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            assert b'"\\"turn "' in await response.read()
        # Nothing of ours is left: only the borrowed connector is open.
        assert [
            obj
            for obj in open_resources(asyncio.get_running_loop())
            if isinstance(obj, aiohttp.ClientSession | aiohttp.BaseConnector)
        ] == [connector]
    finally:
        await connector.close()
    assert len(sandbox.requests) == 22


async def test_socks_connector_of_ours_closes_with_its_call(
    sandbox: Sandbox, pproxy: PproxyServer
) -> None:
    loop = asyncio.get_running_loop()
    sandbox.push(Reply(values=["a", "b", "c"]))
    await collect(proxy=pproxy.url("socks5"), api_endpoint=sandbox.api_endpoint)
    assert open_resources(loop) == []

    # Stopping after the first value closes it too.
    stream = Koala.create_async_generator(
        "", MESSAGES, proxy=pproxy.url("socks5"), api_endpoint=sandbox.api_endpoint
    )
    async with aclosing(stream):
        assert isinstance(await anext(stream), str)
        assert open_resources(loop) != []
    assert open_resources(loop) == []


async def test_error_keeps_the_proxy_url_redacted(pproxy: PproxyServer) -> None:
    # The endpoint's own credentials are redacted as well.
    endpoint = f"http://user:{PASSWORD}@127.0.0.1:1/api/gpt/"
    with pytest.raises(KoalaError) as caught:
        await collect(
            proxy=pproxy.url("http-auth"),
            api_endpoint=endpoint,
            max_retries=0,
            connect_timeout=CONNECT_TIMEOUT,
        )
    assert_no_secret(caught.value)
