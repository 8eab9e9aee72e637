"""`koala serve --keys`: named keys with limits, counted in SQLite, usage per day.

Real servers on 127.0.0.1 in front of the sandbox; the keys are made the way
`koala keys add` makes them. The Redis state has its tests in
test_gateway_redis.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from koala_chat._cli import main
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.gateway.keys import Limits, add_key
from server_fixtures import ServerProcess, ServerThread

StartServer = Callable[..., ServerThread]

HELLO = [{"role": "user", "content": "Hi"}]
ASK: anthropic.types.MessageParam = {"role": "user", "content": "Hi"}


def completion(**params: Any) -> dict[str, Any]:
    return {"model": "", "messages": HELLO, **params}


def make_keys(path: Path, **limits: Limits) -> dict[str, str]:
    """Add a key per name of `limits` to the keys file; return name -> key."""
    return {name: add_key(str(path), name, value) for name, value in limits.items()}


async def post(
    http: aiohttp.ClientSession,
    url: str,
    key: str | None,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """POST a chat completion with `key`; return status, headers, body.

    The body is decoded when it is JSON; an event stream is returned as text.
    """
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with http.post(
        url + "/v1/chat/completions", json=body or completion(), headers=headers
    ) as response:
        raw = await response.read()
        is_json = response.content_type == "application/json"
        return (
            response.status,
            dict(response.headers),
            (json.loads(raw) if is_json else raw.decode()),
        )


@pytest.fixture
def gateway(
    tmp_path: Path, start_server: StartServer
) -> tuple[ServerThread, dict[str, str]]:
    """A server whose alice may make 2 requests a minute; bob is unlimited."""
    keys = make_keys(
        tmp_path / "keys.toml", alice=Limits(requests_per_minute=2), bob=Limits()
    )
    server = start_server(
        keys_file=str(tmp_path / "keys.toml"), state=str(tmp_path / "state.db")
    )
    return server, keys


# --- keys -----------------------------------------------------------------------


async def test_a_key_not_in_the_file_gets_401_in_the_format_of_the_path(
    http: aiohttp.ClientSession, gateway: tuple[ServerThread, dict[str, str]]
) -> None:
    server, keys = gateway
    for key in (None, "koala-not-a-key", keys["alice"] + "x"):
        status, headers, body = await post(http, server.url, key)
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert "WWW-Authenticate" in headers
    # Ollama's routes are behind the keys too, with Ollama's shape of an error.
    async with http.get(server.url + "/api/tags") as response:
        assert response.status == 401
        assert "error" in await response.json()


async def test_a_known_key_is_served_and_named_in_the_access_log(
    http: aiohttp.ClientSession, gateway: tuple[ServerThread, dict[str, str]]
) -> None:
    server, keys = gateway
    status, _, body = await post(http, server.url, keys["bob"])
    assert status == 200
    assert body["choices"][0]["message"]["content"]
    async with http.get(
        server.url + "/v1/models", headers={"x-api-key": keys["bob"]}
    ) as response:
        assert response.status == 200


def test_a_key_over_its_minute_gets_429_with_retry_after_from_the_openai_sdk(
    gateway: tuple[ServerThread, dict[str, str]],
) -> None:
    server, keys = gateway
    with openai.OpenAI(
        base_url=server.base_url, api_key=keys["alice"], max_retries=0
    ) as client:
        for _ in range(2):
            client.chat.completions.create(model="", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="", messages=HELLO)  # type: ignore[arg-type]
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60
    assert "alice" in caught.value.message
    assert "2 requests per minute" in caught.value.message
    # The other key is not affected.
    with openai.OpenAI(
        base_url=server.base_url, api_key=keys["bob"], max_retries=0
    ) as client:
        assert client.chat.completions.create(model="", messages=HELLO).choices  # type: ignore[arg-type]


def test_a_key_over_its_limit_gets_429_in_the_anthropic_shape(
    gateway: tuple[ServerThread, dict[str, str]],
) -> None:
    server, keys = gateway
    with anthropic.Anthropic(
        base_url=server.url, api_key=keys["alice"], max_retries=0
    ) as client:
        for _ in range(2):
            client.messages.create(model="claude-x", max_tokens=50, messages=[ASK])
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="claude-x", max_tokens=50, messages=[ASK])
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60


async def test_a_key_over_its_limit_gets_429_in_the_ollama_shape(
    http: aiohttp.ClientSession, gateway: tuple[ServerThread, dict[str, str]]
) -> None:
    server, keys = gateway
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    body = {"model": "gpt-4o-mini", "messages": HELLO, "stream": False}
    statuses = []
    for _ in range(3):
        async with http.post(
            server.url + "/api/chat", json=body, headers=headers
        ) as response:
            statuses.append(response.status)
            answer = await response.json()
            retry_after = response.headers.get("Retry-After")
    assert statuses == [200, 200, 429]
    assert set(answer) == {"error"}
    assert isinstance(answer["error"], str)
    assert "alice" in answer["error"]
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 60


async def test_max_streams_counts_the_streams_open_at_once_for_that_key(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    start_server: StartServer,
    sandbox: Sandbox,
) -> None:
    keys = make_keys(tmp_path / "keys.toml", ci=Limits(max_streams=1), bob=Limits())
    server = start_server(
        keys_file=str(tmp_path / "keys.toml"), state=str(tmp_path / "state.db")
    )
    sandbox.push(Reply(values=["first ", "second"], stall_at=1))
    headers = {"Authorization": f"Bearer {keys['ci']}"}
    async with http.post(
        server.base_url + "/chat/completions",
        json=completion(stream=True),
        headers=headers,
    ) as held:
        assert held.status == 200
        assert await sandbox.wait_stalled_async(5.0)
        status, response_headers, body = await post(http, server.url, keys["ci"])
        assert status == 429
        assert response_headers["Retry-After"] == "1"
        assert "1 streams at once" in body["error"]["message"]
        # Another key has places of its own.
        assert (await post(http, server.url, keys["bob"]))[0] == 200
        sandbox.release()
        await held.read()
    # The place is given back on a task of its own, as the stream ends.
    for _ in range(100):
        status, _, _ = await post(http, server.url, keys["ci"])
        if status == 200:
            break
    assert status == 200


async def test_a_request_its_key_refuses_gives_back_its_place_on_the_server(
    http: aiohttp.ClientSession, tmp_path: Path, start_server: StartServer
) -> None:
    # The server's own limit is met first, then the key's: a refusal by the
    # key must not keep the one place of --max-streams 1.
    keys = make_keys(
        tmp_path / "keys.toml", alice=Limits(requests_per_day=1), bob=Limits()
    )
    server = start_server(
        keys_file=str(tmp_path / "keys.toml"),
        state=str(tmp_path / "state.db"),
        max_streams=1,
    )
    assert (await post(http, server.url, keys["alice"]))[0] == 200
    for _ in range(3):
        status, _, body = await post(http, server.url, keys["alice"])
        assert status == 429
        assert "1 requests per day" in body["error"]["message"]
    assert (await post(http, server.url, keys["bob"]))[0] == 200


# --- state ----------------------------------------------------------------------


async def test_a_restart_keeps_the_window_in_the_sqlite_file(
    http: aiohttp.ClientSession, tmp_path: Path, start_server: StartServer
) -> None:
    keys = make_keys(tmp_path / "keys.toml", alice=Limits(requests_per_day=2))
    settings = {
        "keys_file": str(tmp_path / "keys.toml"),
        "state": str(tmp_path / "state.db"),
    }
    first = start_server(**settings)
    for _ in range(2):
        assert (await post(http, first.url, keys["alice"]))[0] == 200
    first.stop()
    second = start_server(**settings)
    status, headers, body = await post(http, second.url, keys["alice"])
    assert status == 429
    assert 86000 < int(headers["Retry-After"]) <= 86400
    assert "2 requests per day" in body["error"]["message"]


def test_the_state_defaults_to_a_file_under_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koala_chat.server.config import ServerConfig

    make_keys(tmp_path / "keys.toml", alice=Limits())
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config = ServerConfig(keys_file=str(tmp_path / "keys.toml"))
    assert config.gateway_state() == str(
        tmp_path / "state" / "koala-chat" / "gateway.sqlite3"
    )


# --- usage ----------------------------------------------------------------------


async def usage_rows(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    """Stop `server` (it writes what it holds); return `koala usage --json`'s rows."""
    server.stop()
    capsys.readouterr()
    state = ["usage", "--state", str(tmp_path / "state.db"), "--json"]
    # `koala usage` runs a loop of its own: off the test's.
    assert await asyncio.to_thread(main, state) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


async def test_usage_counts_requests_limits_pieces_and_tokens_per_key_and_day(
    http: aiohttp.ClientSession,
    gateway: tuple[ServerThread, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, keys = gateway
    for _ in range(3):
        await post(http, server.url, keys["alice"])
    await post(http, server.url, keys["bob"], completion(stream=True))
    await post(http, server.url, "wrong")
    rows = {row["key"]: row for row in await usage_rows(server, tmp_path, capsys)}
    state = str(tmp_path / "state.db")
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"]["requests"] == 3
    assert rows["alice"]["limited"] == 1
    assert rows["alice"]["errors"] == 0
    assert rows["bob"]["requests"] == 1
    assert rows["bob"]["limited"] == 0
    for row in rows.values():
        assert row["pieces"] > 0
        assert row["tokens_in"] > 0
        assert row["tokens_out"] > 0
        assert row["median_ttfp_ms"] > 0
    assert await asyncio.to_thread(main, ["usage", "--state", state]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["key", "day", "requests", "limited"]
    assert [line.split()[0] for line in lines[1:]] == ["alice", "bob"]
    # Aligned: every line ends its columns at the same places.
    assert len({len(line) for line in lines}) == 1
    since = ["--since", "2999-01-01", "--json"]
    assert await asyncio.to_thread(main, ["usage", "--state", state, *since]) == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_a_stream_that_breaks_after_its_start_counts_as_an_error(
    http: aiohttp.ClientSession,
    gateway: tuple[ServerThread, dict[str, str]],
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, keys = gateway
    sandbox.push(Reply(values=["one ", "two ", "three"] * 50, cut_at=200))
    status, _, body = await post(http, server.url, keys["bob"], completion(stream=True))
    assert status == 200  # the stream had started when the upstream broke
    assert "one" in body
    (row,) = await usage_rows(server, tmp_path, capsys)
    assert (row["key"], row["requests"], row["errors"]) == ("bob", 1, 1)


async def test_the_routes_without_v1_are_counted_and_noted_as_their_twins(
    http: aiohttp.ClientSession,
    gateway: tuple[ServerThread, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, keys = gateway
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    async with http.post(
        server.url + "/chat/completions", json=completion(), headers=bob
    ) as response:
        assert response.status == 200
    async with http.get(server.url + "/models") as response:
        assert response.status == 401  # behind the key like /v1/models
    (row,) = await usage_rows(server, tmp_path, capsys)
    assert (row["key"], row["requests"], row["errors"]) == ("bob", 1, 0)
    assert row["pieces"] > 0


def test_usage_of_a_state_that_does_not_exist_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "--state", str(tmp_path / "none.db")]) == 2
    assert "there is no gateway state" in capsys.readouterr().err.lower()


# --- the command line -----------------------------------------------------------


def test_keys_and_api_key_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_keys(tmp_path / "keys.toml", alice=Limits())
    code = main(["serve", "--keys", str(tmp_path / "keys.toml"), "--api-key", "k"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--keys and an API key" in err
    assert len(err.strip().splitlines()) == 1


def test_state_without_keys_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--state", str(tmp_path / "state.db")]) == 2
    assert "give --keys too" in capsys.readouterr().err


def test_a_broken_keys_file_at_start_is_a_usage_error_naming_no_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('[keys.alice]\nkey_sha256 = "abc123"\n')
    assert main(["serve", "--keys", str(path)]) == 2
    err = capsys.readouterr().err
    assert "key_sha256 must be the key's SHA-256" in err
    assert "abc123" not in err


async def test_sighup_reloads_the_keys_and_a_broken_file_keeps_the_old_ones(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    server_process: Callable[..., ServerProcess],
) -> None:
    path = tmp_path / "keys.toml"
    keys = make_keys(path, alice=Limits(requests_per_minute=1))
    process = server_process(
        *("--sandbox", "--keys", str(path), "--state", str(tmp_path / "state.db"))
    )
    url = f"http://127.0.0.1:{await process.port()}"
    keys |= make_keys(path, bob=Limits())
    assert (await post(http, url, keys["bob"]))[0] == 401
    os.kill(process.process.pid, signal.SIGHUP)
    seen = [(await process.wait_for(r"reloaded 2 keys")).string]
    assert (await post(http, url, keys["bob"]))[0] == 200
    assert (await post(http, url, keys["alice"]))[0] == 200
    assert (await post(http, url, keys["alice"]))[0] == 429
    digest = hashlib.sha256(keys["bob"].encode()).hexdigest()
    with path.open("a") as file:
        file.write(f'[keys.carol]\nkey_sha256 = "{digest[:20]}"\n')
    os.kill(process.process.pid, signal.SIGHUP)
    seen.append((await process.wait_for(r"kept the 2 keys")).string)
    assert "carol" in seen[-1]
    assert (await post(http, url, keys["bob"]))[0] == 200
    process.process.terminate()
    assert await process.exit_code() == 0
    process.close()
    while not process.lines.empty():
        seen.append(process.lines.get())
    log = "".join(seen)
    assert "alice" in log or "bob" in log or "carol" in log
    for key in keys.values():
        assert key not in log
        assert hashlib.sha256(key.encode()).hexdigest() not in log
    assert digest[:20] not in log


async def test_workers_share_one_sqlite_count_and_each_reloads_on_sighup(
    http: aiohttp.ClientSession,
    tmp_path: Path,
    server_process: Callable[..., ServerProcess],
) -> None:
    path = tmp_path / "keys.toml"
    keys = make_keys(path, alice=Limits(requests_per_minute=4))
    process = server_process(
        *("--sandbox", "--workers", "2", "--keys", str(path)),
        *("--state", str(tmp_path / "state.db")),
    )
    url = f"http://127.0.0.1:{await process.port()}"
    await process.wait_for(r"listening on")  # the second worker, too
    answers = await asyncio.gather(*(post(http, url, keys["alice"]) for _ in range(12)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 4 + [429] * 8, answers
    keys |= make_keys(path, bob=Limits())
    # The parent passes SIGHUP on to each worker, which reads the file again.
    os.kill(process.process.pid, signal.SIGHUP)
    for _ in range(2):
        await process.wait_for(r"reloaded 2 keys")
    statuses = [(await post(http, url, keys["bob"]))[0] for _ in range(6)]
    assert statuses == [200] * 6
    process.process.terminate()
    assert await process.exit_code() == 0


async def test_an_admission_waits_off_the_loop_while_another_holds_the_lock(
    tmp_path: Path,
) -> None:
    from koala_chat.server.gateway.sqlitestate import SqliteState

    path = str(tmp_path / "state.db")
    state = SqliteState(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(
            state.admit("alice", Limits(requests_per_minute=1), "one")
        )
        await asyncio.sleep(0)  # one turn of the loop: the admission started
        assert not waiting.done()  # ... and waits on the thread, not here
        other.execute("COMMIT")
        assert await asyncio.wait_for(waiting, 5) is None
        refusal = await state.admit("alice", Limits(requests_per_minute=1), "two")
        assert refusal is not None
        assert refusal.limit == "requests_per_minute"
    finally:
        other.close()
        await state.close()


async def test_the_metrics_name_each_key_and_count_its_429s(
    http: aiohttp.ClientSession, gateway: tuple[ServerThread, dict[str, str]]
) -> None:
    server, keys = gateway
    for _ in range(3):
        await post(http, server.url, keys["alice"])
    await post(http, server.url, keys["bob"])
    headers = {"Authorization": f"Bearer {keys['bob']}"}
    async with http.get(server.url + "/metrics", headers=headers) as response:
        assert response.status == 200
        text = await response.text()
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "koala_requests_total"
    ]
    by_key = {(s.labels["key_name"], s.labels["status"]): s.value for s in samples}
    assert by_key[("alice", "200")] == 2
    assert by_key[("alice", "429")] == 1
    assert by_key[("bob", "200")] == 1
    # A key's own limit is a cause apart from the upstream's 429.
    limited = {
        (s.labels["cause"], s.labels["key_name"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "koala_rate_limited_total"
    }
    assert limited == {("key_limit", "alice"): 1}
    for key in keys.values():
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() not in text


def test_a_worker_that_cannot_open_the_state_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.toml"
    make_keys(path, alice=Limits())
    (tmp_path / "a-file").write_text("not a folder")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "koala_chat.server", "--port", "0", "--sandbox"),
            *("--workers", "2", "--keys", str(path)),
            *("--state", str(tmp_path / "a-file" / "state.db")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "could not serve" in line]
    assert len(lines) == 2, done.stderr
    assert "Give --state a file in a folder this user may write." in lines[0]


def test_a_setup_whose_commit_failed_can_take_the_lock_again(tmp_path: Path) -> None:
    from koala_chat.server.gateway.sqlitestate import _create_tables

    def deny_commit(action: int, operation: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and operation == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    connection = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        # Refused by the authorizer, the COMMIT fails as on a full disk.
        connection.set_authorizer(deny_commit)
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            _create_tables(connection)
        assert not connection.in_transaction
        connection.set_authorizer(None)
        _create_tables(connection)  # BEGIN IMMEDIATE again, not "within a transaction"
        tables = {
            row[0] for row in connection.execute("SELECT name FROM sqlite_schema")
        }
        assert {"windows", "counts", "streams", "usage"} <= tables
    finally:
        connection.close()
