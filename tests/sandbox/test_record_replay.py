"""Recording from an upstream and replaying a cassette, over real TCP.

koala_chat.sandbox.recorder, replayer and responder: the upstream is another
sandbox (or a real proxy before it), the clients are raw sockets (to see the
writes as HTTP chunks), aiohttp and our own provider. docs/protocol.md,
"Cassettes".
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from test_sandbox import BODY, raw_chunks, read_until_error

from hardening import closed_port_url, collect
from koala_chat.errors import StatusError
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.sandbox.cassette import (
    CassetteRequest,
    CassetteResponse,
    Exchange,
    Timing,
    Turn,
    append_exchange,
    load_cassette,
)
from koala_chat.sandbox.recorder import Recorder
from koala_chat.sandbox.replayer import Replayer
from koala_chat.sandbox.scrubbing import compile_patterns
from proxies import PASSWORD, PproxyServer

HI: list[Any] = [{"role": "user", "content": "Hi"}]
KEY = "sk-Koala-7f3a9c2e5b1d4086"
HI_BODY = {"input": "Hi", "inputHistory": [], "outputHistory": [], "model": ""}


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    return tmp_path / "koala.jsonl"


@pytest.fixture
def recorder(sandbox: Sandbox, cassette: Path) -> Iterator[Sandbox]:
    """A recording sandbox in front of the `sandbox` fixture."""
    with Sandbox(responder=Recorder(cassette, sandbox.api_endpoint)) as server:
        yield server


async def settled(recorder: Sandbox) -> None:
    """Wait until the recorder wrote every exchange it began."""
    responder = recorder.state.responder
    assert isinstance(responder, Recorder | Replayer)
    if isinstance(responder, Replayer):
        assert responder.recorder is not None
        responder = responder.recorder
    assert await responder.wait_recorded_async()


def written(cassette: Path) -> str:
    """The cassette's text (a sync helper: async tests must not block on files)."""
    return cassette.read_text()


def replaying(cassette: Path, **options: Any) -> Sandbox:
    return Sandbox(responder=Replayer(cassette, **options))


def status_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


# Recording


@pytest.mark.parametrize(
    "reply",
    [
        Reply(values=["Hel", "lo"], splits=[3, 9]),
        Reply(values=["ab", "cd", "ef"], interval=0.001),
        Reply(status=429, body=b"<html>slow down</html>", content_type="text/html"),
    ],
    ids=["split", "paced", "error"],
)
async def test_an_answer_is_relayed_and_replayed_with_the_same_writes(
    sandbox: Sandbox, recorder: Sandbox, cassette: Path, reply: Reply
) -> None:
    body = msgspec.json.encode(BODY)
    sandbox.push(reply, reply)
    direct_head, direct = await raw_chunks(sandbox, body)
    relayed_head, relayed = await raw_chunks(recorder, body)
    assert relayed == direct
    assert status_line(relayed_head) == status_line(direct_head)
    ((_, recorded),) = load_cassette(cassette)
    assert recorded.response.body_chunks() == direct
    with replaying(cassette) as replay:
        replayed_head, replayed = await raw_chunks(replay, body)
    assert replayed == direct
    assert status_line(replayed_head) == status_line(direct_head)
    for name in (b"content-type", b"cache-control"):
        assert header(replayed_head, name) == header(direct_head, name)
    assert replay.requests[0].json == BODY


async def test_the_answer_streams_through_as_it_arrives(
    sandbox: Sandbox, recorder: Sandbox, cassette: Path
) -> None:
    sandbox.push(Reply(values=["first", "second"], stall_at=1))
    async with (
        aiohttp.ClientSession() as session,
        session.post(recorder.api_endpoint, json=BODY) as response,
    ):
        first = await response.content.readany()
        # The upstream still holds its second event: the first came through.
        assert await sandbox.wait_stalled_async()
        assert first == b'data: "first"\n\n'
        assert not written(cassette)
        sandbox.release()
        assert await response.content.read() == b'data: "second"\n\n'
    ((_, recorded),) = load_cassette(cassette)
    assert recorded.response.chunks == ['data: "first"\n\n', 'data: "second"\n\n']
    timing = recorded.response.timing
    assert timing is not None
    assert 0 <= timing.head <= timing.chunks[0] <= timing.chunks[1]


async def test_a_client_that_leaves_early_still_gets_the_answer_recorded_whole(
    sandbox: Sandbox, recorder: Sandbox, cassette: Path
) -> None:
    sandbox.push(Reply(values=["first", "second"], stall_at=1))
    async with (
        aiohttp.ClientSession() as session,
        session.post(recorder.api_endpoint, json=BODY) as response,
    ):
        assert await response.content.readany() == b'data: "first"\n\n'
        assert await sandbox.wait_stalled_async()
    # The client has gone; the upstream's answer goes on to its end.
    sandbox.release()
    await settled(recorder)
    ((_, recorded),) = load_cassette(cassette)
    assert recorded.response.chunks == ['data: "first"\n\n', 'data: "second"\n\n']
    assert recorded.response.complete


async def test_each_dialect_is_recorded_normalised_and_replayed(
    sandbox: Sandbox, recorder: Sandbox, cassette: Path
) -> None:
    conversation: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How tall do koalas grow?"},
    ]
    recorded: dict[str, list[Any]] = {}
    for protocol in ("history", "messages"):
        recorded[protocol] = await collect(
            conversation, protocol=protocol, api_endpoint=recorder.api_endpoint
        )
    await settled(recorder)
    exchanges = [exchange for _, exchange in load_cassette(cassette)]
    assert [e.request.dialect for e in exchanges] == ["history", "messages"]
    assert exchanges[1].request == CassetteRequest(
        "messages",
        "gemini-3-flash",
        [Turn(m["role"], m["content"]) for m in conversation],
    )
    assert exchanges[0].request.conversation[-1] == Turn(
        "user", "How tall do koalas grow? Be brief."
    )
    with replaying(cassette) as replay:
        for protocol, values in recorded.items():
            again = await collect(
                conversation, protocol=protocol, api_endpoint=replay.api_endpoint
            )
            assert again == values
    assert len(sandbox.requests) == 2


async def test_the_api_dialect_matches_whatever_the_key(cassette: Path) -> None:
    with Sandbox(api_key=KEY) as upstream:
        responder = Recorder(cassette, upstream.api_endpoint)
        with Sandbox(responder=responder) as recorder:
            recorded = await collect(
                HI, api_key=KEY, api_endpoint=recorder.api_endpoint
            )
    with replaying(cassette) as replay:
        replayed = await collect(
            HI, api_key="another-key-entirely", api_endpoint=replay.api_endpoint
        )
    assert replayed == recorded
    assert KEY not in written(cassette)
    # The key's value is not matched; that a key was sent (the dialect) is.
    assert replay.requests[0].headers["Authorization"] == "Bearer another-key-entirely"


async def test_an_upstream_that_cannot_be_reached_gets_a_502_and_no_line(
    cassette: Path,
) -> None:
    proxy = closed_port_url().replace("http://", f"http://koala:{PASSWORD}@")
    responder = Recorder(cassette, "http://127.0.0.1:9/api/gpt/", proxy=proxy)
    with Sandbox(responder=responder) as recorder:
        async with (
            aiohttp.ClientSession() as session,
            session.post(recorder.api_endpoint, json=BODY) as response,
        ):
            assert response.status == 502
            text = await response.text()
    assert "the recorder's upstream failed" in json.loads(text)["error"]
    assert PASSWORD not in text
    assert written(cassette) == ""


async def test_a_cut_answer_is_recorded_as_cut_and_replayed_so(
    sandbox: Sandbox, recorder: Sandbox, cassette: Path
) -> None:
    sandbox.push(Reply(values=["abcdef", "ghijkl"], cut_at=20))
    async with aiohttp.ClientSession() as session:
        relayed, error = await read_until_error(session, recorder)
        assert isinstance(error, aiohttp.ClientPayloadError)
        ((_, recorded),) = load_cassette(cassette)
        assert recorded.response.complete is False
        assert b"".join(recorded.response.body_chunks()) == relayed
        assert relayed == b'data: "abcdef"\n\ndata'
        with replaying(cassette) as replay:
            replayed, error = await read_until_error(session, replay)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert replayed == relayed


async def test_recording_goes_through_the_proxy(
    sandbox: Sandbox, cassette: Path, pproxy: PproxyServer
) -> None:
    responder = Recorder(
        cassette, sandbox.api_endpoint, proxy=pproxy.url("socks5-auth")
    )
    with Sandbox(responder=responder) as recorder:
        values = await collect(HI, api_endpoint=recorder.api_endpoint)
    assert "".join(map(str, values)).startswith('You said: "Hi"')
    target = f"-> 127.0.0.1:{sandbox.port}"
    assert pproxy.wait_for(lambda log: any(target in line for line in log), 5)
    assert PASSWORD not in written(cassette)
    assert len(load_cassette(cassette)) == 1


# Scrubbing: the cassette is grepped for every secret the exchange used

SECRETS = {
    "key": KEY,
    "cookie": "cookie-secret-5150",
    "set-cookie": "set-cookie-secret-8086",
    "header key": "x-api-key-secret-6502",
    "account": "acct-31337",
}


async def test_no_secret_reaches_the_cassette(cassette: Path) -> None:
    echoed = [
        f"your key {KEY}",
        f"upper {KEY.upper()}",
        "as json " + KEY.replace("-", "\\u002d"),
        f"as basic {base64.b64encode(f'user:{KEY}'.encode()).decode()}",
        f"cookie {SECRETS['cookie']} and {SECRETS['set-cookie']}",
        f"header {SECRETS['header key']}, account {SECRETS['account']}",
        '{"api_key": "field-secret-1234"}',
    ]
    with Sandbox(api_key=KEY) as upstream:
        upstream.push(
            Reply(
                values=echoed,
                write_size=7,  # secrets cut across writes, too
                headers={
                    "Set-Cookie": f"sid={SECRETS['set-cookie']}; HttpOnly",
                    "X-Request-Id": f"req-{KEY}",
                },
            )
        )
        responder = Recorder(
            cassette,
            upstream.api_endpoint,
            scrub=compile_patterns([r"acct-\d+"]),
        )
        with Sandbox(responder=responder) as recorder:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    recorder.api_endpoint,
                    json={
                        "input": f"my key is {KEY}, my account acct-31337",
                        "inputHistory": [],
                        "outputHistory": [],
                        "model": "gpt-4o",
                    },
                    headers={
                        "Authorization": f"Bearer {KEY}",
                        "Cookie": f"session={SECRETS['cookie']}",
                        "X-Api-Key": SECRETS["header key"],
                    },
                ) as response,
            ):
                assert response.status == 200
                answer = await response.read()
        # The client got the answer unchanged, secrets and all.
        assert KEY.encode() in answer
        assert response.headers.getall("Set-Cookie")
    text = written(cassette)
    assert text.count("\n") == 1
    for secret in [*SECRETS.values(), "field-secret-1234"]:
        for spelling in (secret, secret.lower(), secret.upper()):
            assert spelling not in text, spelling
    assert base64.b64encode(KEY.encode()).decode()[4:20] not in text
    ((_, recorded),) = load_cassette(cassette)
    assert recorded.request.dialect == "api"
    assert recorded.request.conversation == [
        Turn("user", "my key is ***, my account ***")
    ]
    assert ("X-Request-ID", "req-***") in recorded.response.headers
    assert [n for n, _ in recorded.response.headers] == ["Content-Type", "X-Request-ID"]


# Replaying


def write_cassette(path: Path, *exchanges: Exchange) -> None:
    path.touch()
    for exchange in exchanges:
        append_exchange(path, exchange)


def hi_exchange(*chunks: str, timing: Timing | None = None) -> Exchange:
    return Exchange(
        request=CassetteRequest("history", "gpt-4o-mini", [Turn("user", "Hi")]),
        response=CassetteResponse(
            200,
            [("Content-Type", "text/event-stream")],
            chunks=list(chunks),
            timing=timing,
        ),
    )


async def test_replay_timing_keeps_the_recorded_pace(cassette: Path) -> None:
    write_cassette(
        cassette,
        hi_exchange('data: "a"\n\n', 'data: "b"\n\n', timing=Timing(0.0, [0.0, 0.3])),
    )
    for timing in (False, True):
        with replaying(cassette, timing=timing) as replay:
            loop = asyncio.get_running_loop()
            start = loop.time()
            arrivals: list[float] = []
            async with (
                aiohttp.ClientSession() as session,
                session.post(replay.api_endpoint, json=HI_BODY) as response,
            ):
                body = b""
                async for chunk in response.content.iter_any():
                    body += chunk
                    arrivals.append(loop.time() - start)
            assert body == b'data: "a"\n\ndata: "b"\n\n'
        if timing:
            # Sleeps never end early: the second write came no sooner.
            assert arrivals[-1] >= 0.3


async def test_a_request_without_recording_gets_a_404_naming_the_nearest(
    cassette: Path,
) -> None:
    write_cassette(cassette, hi_exchange('data: "Hello"\n\n'))
    with replaying(cassette) as replay:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                replay.api_endpoint, json=BODY | {"input": "Ho", "inputHistory": []}
            ) as response,
        ):
            assert response.status == 404
            answer = await response.json()
        with pytest.raises(StatusError) as caught:
            await collect(
                [{"role": "user", "content": "Ho"}],
                protocol="history",
                api_endpoint=replay.api_endpoint,
            )
    assert answer["cassette"] == str(cassette)
    assert answer["nearest_line"] == 1
    assert answer["nearest"]["conversation"] == [{"role": "user", "content": "Hi"}]
    assert answer["request"]["conversation"][-1] == {"role": "user", "content": "Ho"}
    assert f"no recording in the cassette {cassette}" in answer["error"]
    assert "on line 1, differs in turn 1 of the conversation" in answer["error"]
    # The provider's error quotes it: a test that fails says why.
    assert caught.value.status == 404
    assert "no recording in the cassette" in str(caught.value)


async def test_an_empty_cassette_says_so(cassette: Path) -> None:
    write_cassette(cassette)
    with replaying(cassette) as replay:
        async with (
            aiohttp.ClientSession() as session,
            session.post(replay.api_endpoint, json=BODY) as response,
        ):
            assert response.status == 404
            assert "the cassette is empty" in (await response.json())["error"]


async def test_record_mode_new_records_only_what_is_missing(
    sandbox: Sandbox, cassette: Path
) -> None:
    write_cassette(cassette, hi_exchange('data: "recorded"\n\n'))
    recorder = Recorder(cassette, sandbox.api_endpoint)
    with Sandbox(responder=Replayer(cassette, recorder=recorder)) as replay:
        hi = await collect(HI, protocol="history", api_endpoint=replay.api_endpoint)
        assert hi == ["recorded"]
        assert sandbox.requests == []
        ho = [{"role": "user", "content": "Ho"}]
        first = await collect(ho, protocol="history", api_endpoint=replay.api_endpoint)
        again = await collect(ho, protocol="history", api_endpoint=replay.api_endpoint)
    assert first == again
    assert "".join(map(str, first)).startswith('You said: "Ho"')
    assert len(sandbox.requests) == 1
    assert [n for n, _ in load_cassette(cassette)] == [1, 2]
