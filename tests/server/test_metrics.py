"""`GET /metrics`: what a Prometheus scrape reads after real requests.

Requests go through the real clients (the openai SDK, aiohttp) to `koala
serve` in front of the sandbox; the scrape is parsed with prometheus_client's
own parser. A stream's count is taken once its access-log line is written:
the server records a request after its last byte went out, so a client can
see the end before the count moves.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from koala_chat import KoalaImages
from koala_chat._contract.usage import estimate_tokens
from koala_chat.providers.dialects import ApiKey
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.app import create_app, create_runner
from koala_chat.server.metrics import METRICS_KEY
from koala_chat.server.outcomes import UPSTREAM_REASONS
from server_fixtures import AccessLog, ServerProcess, ServerThread, fetch, server_config

StartServer = Callable[..., ServerThread]
API_KEY = "metrics-test-key-4f1d"
HI = [{"role": "user", "content": "Hi"}]
#: The most requests the workers test sends before both workers served one.
MAX_TRIES = 200


def scrape(url: str, **headers: str) -> list[Sample]:
    """Return every sample of one scrape of `url` + /metrics."""
    status, head, body = fetch(url + "/metrics", **headers)
    assert status == 200, body
    assert head["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(body.decode())
    return [sample for family in families for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Return the sum of the samples `name` whose labels include `labels`."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def stream_pieces(client: openai.OpenAI, content: str = "Hi") -> tuple[str, int]:
    """Stream one chat reply; return its text and the number of its pieces."""
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": content}],
        stream=True,
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    return "".join(p for p in pieces if p), sum(1 for p in pieces if p)


def logged(access_log: AccessLog, count: int = 1) -> None:
    """Wait (5 s at most each) until `count` more requests were logged."""
    for _ in range(count):
        access_log.lines.get(timeout=5.0)


@pytest.fixture
def client(koala_server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=koala_server.base_url, api_key="anything", max_retries=0
    ) as sdk:
        yield sdk


# --- what a request adds -------------------------------------------------------


def test_a_scrape_counts_requests_pieces_and_tokens(
    koala_server: ServerThread, client: openai.OpenAI, access_log: AccessLog
) -> None:
    text, pieces = stream_pieces(client)
    stream_pieces(client)
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    logged(access_log, 3)
    samples = scrape(koala_server.url)
    ok = {"format": "chat", "model": "gpt-4o-mini", "key_name": "-"}
    assert total(samples, "koala_requests_total", status="200", **ok) == 3
    assert whole.choices[0].message.content == text
    assert pieces > 1
    assert total(samples, "koala_pieces_total", **ok) == 3 * pieces
    assert total(samples, "koala_estimated_tokens_total", type="output", **ok) == (
        3 * estimate_tokens(text)
    )
    assert total(samples, "koala_estimated_tokens_total", type="input", **ok) == (
        3 * estimate_tokens("Hi")
    )
    assert total(samples, "koala_active_streams") == 0


def test_the_time_to_first_piece_is_a_histogram_of_streams_only(
    koala_server: ServerThread, client: openai.OpenAI, access_log: AccessLog
) -> None:
    stream_pieces(client)
    stream_pieces(client)
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    logged(access_log, 3)
    samples = scrape(koala_server.url)
    labels = {"format": "chat", "model": "gpt-4o-mini"}
    assert total(samples, "koala_first_piece_seconds_count", **labels) == 2
    assert total(samples, "koala_first_piece_seconds_bucket", le="+Inf") == 2
    # The sandbox answers at once: both under a second, and took some time.
    assert total(samples, "koala_first_piece_seconds_bucket", le="1.0") == 2
    assert 0 < total(samples, "koala_first_piece_seconds_sum") < 2


async def test_each_wire_format_counts_under_its_name(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    bodies = {
        "/v1/responses": {"model": "gpt-4o-mini", "input": "Hi"},
        "/v1/completions": {"model": "gpt-4o-mini", "prompt": "Hi"},
        "/v1/messages": {"model": "gpt-4o-mini", "max_tokens": 99, "messages": HI},
        "/api/chat": {"model": "gpt-4o-mini", "messages": HI, "stream": False},
        "/chat/completions": {"model": "gpt-4o-mini", "messages": HI},
    }
    for path, body in bodies.items():
        async with http.post(koala_server.url + path, json=body) as response:
            assert response.status == 200, await response.text()
    samples = await asyncio.to_thread(scrape, koala_server.url)
    for fmt in ("responses", "completions", "messages", "ollama"):
        assert total(samples, "koala_requests_total", format=fmt, status="200") == 1
    # The route without /v1 counts as chat, as its twin does.
    assert total(samples, "koala_requests_total", format="chat", status="200") == 1


def test_a_model_the_server_does_not_list_is_counted_as_other(
    koala_server: ServerThread, client: openai.OpenAI
) -> None:
    # Koala passes unknown names through: a label per name would let any
    # client make as many series as it likes.
    client.chat.completions.create(model="made-up-model-7", messages=HI)
    status, _, body = fetch(koala_server.url + "/metrics")
    assert status == 200
    assert b"made-up-model-7" not in body
    samples = scrape(koala_server.url)
    assert total(samples, "koala_requests_total", model="other", status="200") == 1


def test_images_count_under_their_format_with_the_images_as_pieces(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(provider_options={"api_key": ApiKey(sandbox.api_key)})
    with openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0) as sdk:
        sdk.images.generate(prompt="a koala", n=3)
    samples = scrape(server.url)
    labels = {"format": "images", "model": KoalaImages.default_model}
    assert total(samples, "koala_requests_total", status="200", **labels) == 1
    assert total(samples, "koala_pieces_total", **labels) == 3
    assert total(samples, "koala_first_piece_seconds_count") == 0


# --- failures and refusals -----------------------------------------------------


def _rate_limited(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "7"}, body=b"slow down"))


def _challenged(sandbox: Sandbox) -> None:
    sandbox.push(
        Reply(
            status=403,
            headers={"cf-mitigated": "challenge"},
            content_type="text/html",
            body=b"<title>Just a moment...</title>",
        )
    )


def _not_a_stream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=200, content_type="text/html", body=b"<html></html>"))


@pytest.mark.parametrize(
    ("script", "status", "reason"),
    [
        (_rate_limited, 429, "rate_limit"),
        (_challenged, 502, "challenge"),
        (_not_a_stream, 502, "protocol"),
    ],
)
def test_an_upstream_failure_is_counted_by_its_reason(
    koala_server: ServerThread,
    client: openai.OpenAI,
    sandbox: Sandbox,
    script: Callable[[Sandbox], None],
    status: int,
    reason: str,
) -> None:
    script(sandbox)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.status_code == status
    samples = scrape(koala_server.url)
    assert total(samples, "koala_upstream_failures_total", reason=reason) == 1
    assert total(samples, "koala_upstream_failures_total") == 1
    assert total(samples, "koala_requests_total", status=str(status)) == 1


def test_an_unreachable_upstream_and_a_timeout_are_counted(
    start_server: StartServer, sandbox: Sandbox, closed_port: int
) -> None:
    unreachable = start_server(
        provider_options={"api_endpoint": f"http://127.0.0.1:{closed_port}/api/gpt/"}
    )
    slow = start_server(provider_options={"timeout": 0.3})
    sandbox.push(Reply(values=["late"], stall_at=0))
    try:
        for server, status in ((unreachable, 502), (slow, 504)):
            with (
                openai.OpenAI(
                    base_url=server.base_url, api_key="-", max_retries=0
                ) as sdk,
                pytest.raises(openai.APIStatusError) as caught,
            ):
                sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
            assert caught.value.status_code == status
    finally:
        sandbox.release()
    failures = "koala_upstream_failures_total"
    assert total(scrape(unreachable.url), failures, reason="unreachable") == 1
    assert total(scrape(slow.url), failures, reason="timeout") == 1


def test_a_failure_mid_stream_is_counted_beside_its_status(
    koala_server: ServerThread,
    client: openai.OpenAI,
    sandbox: Sandbox,
    access_log: AccessLog,
) -> None:
    # Two events, then a third cut short: the reply had begun (200).
    sandbox.push(Reply(values=["one ", "two ", "three"], cut_at=60))
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    logged(access_log)
    samples = scrape(koala_server.url)
    assert total(samples, "koala_requests_total", status="200") == 1
    assert total(samples, "koala_upstream_failures_total", format="chat") == 1


async def test_too_many_streams_count_as_429s_while_the_gauge_shows_the_open_one(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    sandbox: Sandbox,
    access_log: AccessLog,
) -> None:
    server = start_server(max_streams=1)
    url = server.base_url + "/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": HI, "stream": True}
    sandbox.push(Reply(values=["held ", "then done"], stall_at=1))
    async with http.post(url, json=body) as held:
        await held.content.readuntil(b"held")
        assert await sandbox.wait_stalled_async(5.0)
        async with http.post(url, json=body) as refused:
            assert refused.status == 429
        await access_log.next()
        during = await asyncio.to_thread(scrape, server.url)
        sandbox.release()
        await held.read()
    await access_log.next()
    after = await asyncio.to_thread(scrape, server.url)
    assert total(during, "koala_active_streams") == 1
    assert total(after, "koala_active_streams") == 0
    limited = {"cause": "too_many_streams", "key_name": "-"}
    assert total(after, "koala_rate_limited_total", **limited) == 1
    assert total(after, "koala_requests_total", status="429") == 1
    assert total(after, "koala_requests_total", status="200") == 1


async def test_a_stream_whose_client_left_counts_as_499(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    # On this test's loop: stopping the runner waits for the cancelled
    # handler, and the count is read from the app's registry after that (a
    # cancelled request writes no access-log line to wait for).
    app = create_app(server_config(sandbox))
    runner = create_runner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": HI, "stream": True}
        sandbox.push(Reply(values=["first ", "never"], stall_at=1))
        async with http.post(url, json=body) as response:
            await response.content.readuntil(b"first")
            assert await sandbox.wait_stalled_async(5.0)
            response.close()  # the client leaves mid-stream
        assert await sandbox.wait_disconnect_async(5.0)
    finally:
        sandbox.release()
        await runner.cleanup()
    text = generate_latest(app[METRICS_KEY].registry).decode()
    families = text_string_to_metric_families(text)
    samples = [sample for family in families for sample in family.samples]
    assert total(samples, "koala_requests_total", format="chat", status="499") == 1
    assert total(samples, "koala_requests_total", status="200") == 0
    assert total(samples, "koala_active_streams") == 0


def test_the_upstreams_429_is_counted_under_a_cause_of_its_own(
    koala_server: ServerThread, client: openai.OpenAI, sandbox: Sandbox
) -> None:
    _rate_limited(sandbox)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    samples = scrape(koala_server.url)
    cause = {"cause": "rate_limit_exceeded"}
    assert total(samples, "koala_rate_limited_total", **cause) == 1
    assert total(samples, "koala_rate_limited_total") == 1


def test_every_upstream_reason_is_a_short_word() -> None:
    # The README lists them; a label takes a fixed set of values.
    reasons = {reason for reason in UPSTREAM_REASONS.values() if reason}
    assert {"rate_limit", "challenge", "unreachable", "timeout", "protocol"} <= (
        reasons
    )
    assert all(reason.replace("_", "").isalpha() for reason in reasons)


# --- the key -------------------------------------------------------------------


def test_the_scrape_needs_the_servers_key_when_it_has_one(
    start_server: StartServer,
) -> None:
    server = start_server(api_key=API_KEY)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, head, body = fetch(server.url + "/metrics", **headers)
        assert status == 401
        assert head["WWW-Authenticate"].startswith("Bearer")
        assert b"koala_requests" not in body
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY) as sdk:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
    status, _, body = fetch(server.url + "/metrics", Authorization=f"Bearer {API_KEY}")
    assert status == 200
    assert API_KEY.encode() not in body
    samples = scrape(server.url, Authorization=f"Bearer {API_KEY}")
    assert total(samples, "koala_requests_total", key_name="-", status="200") == 1
    assert all(API_KEY not in value for s in samples for value in s.labels.values())


# --- several workers -----------------------------------------------------------


def _counted_pids(tmp_path: Path) -> set[int]:
    """Return the pids of the workers that counted a request (their files)."""
    found = set()
    for path in tmp_path.glob("koala-metrics-*/counter_*.db"):
        found.add(int(path.stem.removeprefix("counter_")))
    return found


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> None:
    # A connection each, so that either worker may accept it.
    headers = {"Connection": "close"}
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 200


async def test_one_scrape_counts_the_requests_of_every_worker(
    http: aiohttp.ClientSession,
    sandbox: Sandbox,
    server_process: Callable[..., ServerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server makes its directory of counts under TMPDIR.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    server = server_process("--endpoint", sandbox.api_endpoint, "--workers", "2")
    pattern = r"listening on http://127\.0\.0\.1:(\d+).*pid (\d+)"
    first, second = await server.wait_for(pattern), await server.wait_for(pattern)
    pids = {int(first.group(2)), int(second.group(2))}
    url = f"http://127.0.0.1:{first.group(1)}"
    body = {"model": "gpt-4o-mini", "messages": HI}
    sent = 0
    # Which worker accepts a connection is the kernel's choice: go on until
    # both have answered, and count what they answered together.
    while _counted_pids(tmp_path) != pids:
        assert sent < MAX_TRIES, "one worker served every request"
        await _post(http, url + "/v1/chat/completions", body)
        sent += 1
    samples = await asyncio.to_thread(scrape, url)
    assert total(samples, "koala_requests_total", status="200") == sent
    assert total(samples, "koala_active_streams") == 0
    server.process.send_signal(signal.SIGTERM)
    assert await server.exit_code() == 0
    # The counts go with the server.
    assert await asyncio.to_thread(_counted_pids, tmp_path) == set()
    assert not await asyncio.to_thread(lambda: any(tmp_path.glob("koala-metrics-*")))


def test_the_readme_documents_every_series(
    koala_server: ServerThread, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    status, _, body = fetch(koala_server.url + "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(body.decode()))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("#### Metrics", 1)[1].split("\n#### ", 1)[0]
    documented = set(re.findall(r"^\| `(koala_\w+)` \| (\w+) \|", section, re.M))
    served = {
        (f.name + "_total" if f.type == "counter" else f.name, f.type)
        for f in families
        # prometheus_client's time each series began; with one process only.
        if not f.name.endswith("_created")
    }
    assert served == documented
