"""What every wire format gets as chat completions do, for responses and completions.

The limit of completions at once, cancellation when the client leaves, the
access log naming the format, and errors in the OpenAI shape at their status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import AccessLog, ServerThread

#: (format name, path, a streamed body) of each format under test.
FORMATS = [
    ("responses", "/responses", {"model": "", "input": "Hello", "stream": True}),
    ("completions", "/completions", {"model": "", "prompt": "Hello", "stream": True}),
]
ids = [name for name, _, _ in FORMATS]


@pytest.mark.parametrize(("name", "path", "body"), FORMATS, ids=ids)
async def test_streams_over_the_limit_get_429_in_openai_shape(
    http: aiohttp.ClientSession,
    start_server: Callable[..., ServerThread],
    sandbox: Sandbox,
    name: str,
    path: str,
    body: dict[str, Any],
) -> None:
    server = start_server(max_streams=1)
    sandbox.push(Reply(values=["first ", "second"], stall_at=1))
    url = server.base_url + path
    async with http.post(url, json=body) as held:
        assert held.status == 200
        assert await sandbox.wait_stalled_async(5.0)
        async with http.post(url, json=body) as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            error = (await refused.json())["error"]
        assert error["code"] == "too_many_streams"
        sandbox.release()
        assert b"second" in await held.read()


@pytest.mark.parametrize(("name", "path", "body"), FORMATS, ids=ids)
async def test_client_disconnect_cancels_the_upstream_request(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    name: str,
    path: str,
    body: dict[str, Any],
) -> None:
    sandbox.push(Reply(values=["first ", "never"], stall_at=1))
    response = await http.post(koala_server.base_url + path, json=body)
    assert response.status == 200
    assert b"first" in await response.content.readuntil(b"first")
    assert await sandbox.wait_stalled_async(5.0)
    response.close()  # the client leaves mid-stream
    assert await sandbox.wait_disconnect_async(1.0)


@pytest.mark.parametrize(("name", "path", "body"), FORMATS, ids=ids)
async def test_access_log_names_the_format(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    access_log: AccessLog,
    name: str,
    path: str,
    body: dict[str, Any],
) -> None:
    async with http.post(koala_server.base_url + path, json=body) as response:
        await response.read()
    async with http.post(koala_server.base_url + path, json={"model": 3}) as refused:
        assert refused.status == 400
        assert (await refused.json())["error"]["type"] == "invalid_request_error"
    served, failed = await access_log.next(), await access_log.next()
    assert f'"POST /v1{path}" 200 api={name} model=gpt-4o-mini ttfp=' in served
    assert f'" 400 api={name} model=- ' in failed


@pytest.mark.parametrize(("name", "path", "body"), FORMATS, ids=ids)
async def test_a_body_that_is_not_json_is_a_400_and_too_large_a_413(
    http: aiohttp.ClientSession,
    start_server: Callable[..., ServerThread],
    name: str,
    path: str,
    body: dict[str, Any],
) -> None:
    server = start_server(max_body=1024)
    url = server.base_url + path
    headers = {"Content-Type": "application/json"}
    async with http.post(url, data=b"{nope", headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_json"
    async with http.post(url, json={**body, "input": "x" * 2000}) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "request_too_large"
