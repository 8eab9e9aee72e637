"""`koala serve --keys --state redis://...`: one count for several servers.

A real `redis-server` on a free loopback port (tests/redis_server.py); these
tests fail, never skip, when it is not installed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from test_gateway import make_keys, post

from koala_chat._cli import main
from koala_chat.server.gateway.keys import Limits
from redis_server import RedisServer
from server_fixtures import ServerProcess, ServerThread

StartServer = Callable[..., ServerThread]


async def test_two_servers_share_one_count_in_redis(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    redis_server: RedisServer,
    server_process: Callable[..., ServerProcess],
) -> None:
    path = tmp_path / "keys.toml"
    keys = make_keys(path, alice=Limits(requests_per_minute=3), bob=Limits())
    urls = []
    for _ in range(2):
        process = server_process(
            *("--sandbox", "--keys", str(path), "--state", redis_server.url)
        )
        urls.append(f"http://127.0.0.1:{await process.port()}")
    first, second = urls
    statuses = [
        (await post(http, url, keys["alice"]))[0] for url in (first, second, first)
    ]
    assert statuses == [200, 200, 200]
    status, headers, body = await post(http, second, keys["alice"])
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert "3 requests per minute" in body["error"]["message"]
    assert (await post(http, second, keys["bob"]))[0] == 200


async def test_concurrent_requests_never_pass_the_limit_together(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    redis_server: RedisServer,
    start_server: StartServer,
) -> None:
    path = tmp_path / "keys.toml"
    keys = make_keys(path, alice=Limits(requests_per_minute=5))
    servers = [
        start_server(keys_file=str(path), state=redis_server.url) for _ in range(2)
    ]
    answers = await asyncio.gather(
        *(post(http, servers[n % 2].url, keys["alice"]) for n in range(20))
    )
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 5 + [429] * 15


async def test_redis_down_gets_503_then_service_resumes_by_itself(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    redis_server: RedisServer,
    start_server: StartServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "keys.toml"
    keys = make_keys(path, alice=Limits(requests_per_minute=100))
    server = start_server(keys_file=str(path), state=redis_server.url)
    assert (await post(http, server.url, keys["alice"]))[0] == 200
    redis_server.stop()
    status, headers, body = await post(http, server.url, keys["alice"])
    assert status == 503
    assert body["error"]["code"] == "gateway_state_unavailable"
    assert headers["Retry-After"] == "1"
    assert "retry shortly" in body["error"]["message"]
    redis_server.start()
    assert (await post(http, server.url, keys["alice"]))[0] == 200
    # The usage held while Redis was away is written once it is back (this
    # Redis keeps nothing on disk: the first request's count is lost if it
    # was written before the stop).
    server.stop()
    capsys.readouterr()
    argv = ["usage", "--state", redis_server.url, "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["requests"] in (2, 3)
    assert (row["errors"], row["limited"]) == (1, 0)


async def test_usage_in_redis_adds_up_across_servers(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    redis_server: RedisServer,
    start_server: StartServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "keys.toml"
    keys = make_keys(path, alice=Limits(requests_per_minute=2))
    servers = [
        start_server(keys_file=str(path), state=redis_server.url) for _ in range(2)
    ]
    for server in (*servers, *servers):
        await post(http, server.url, keys["alice"])
    for server in servers:
        server.stop()
    capsys.readouterr()
    argv = ["usage", "--state", redis_server.url, "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["key"] == "alice"
    assert row["requests"] == 4
    assert row["limited"] == 2
