"""A span per completion, in OpenTelemetry's GenAI conventions.

In-process, a server gets a tracer provider of its own whose spans land in
the SDK's `InMemorySpanExporter`; the spans are read once the server stopped,
which waits for every handler. End to end, `python -m koala_chat.server` with
`OTEL_EXPORTER_OTLP_ENDPOINT` sends them over OTLP/HTTP to a receiver here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from koala_chat import KoalaImages
from koala_chat._contract.usage import estimate_tokens
from koala_chat.providers.dialects import ApiKey
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.app import create_app, create_runner
from koala_chat.server.tracing import OTLP_ENDPOINT_VARIABLE, SPANS_KEY, trace_with
from server_fixtures import ServerProcess, server_config

SECRET = "the tortoise sleeps at noon"
HI = [{"role": "user", "content": SECRET}]


@dataclass
class Traced:
    """A server on this test's loop, and what its spans will be."""

    url: str
    exporter: InMemorySpanExporter
    stop: Callable[[], Awaitable[None]]

    async def spans(self) -> tuple[ReadableSpan, ...]:
        """Stop the server (its handlers end first); return its spans."""
        await self.stop()
        return self.exporter.get_finished_spans()

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url + "/v1", api_key="anything", max_retries=0
        )


@pytest.fixture
async def start_traced(
    sandbox: Sandbox,
) -> AsyncIterator[Callable[..., Awaitable[Traced]]]:
    """Return a function that starts a traced server: `await start(**changes)`.

    `changes` are those of its config (`server_config`); every server is
    stopped at the end.
    """
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(**changes: Any) -> Traced:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        app = create_app(server_config(sandbox, **changes))
        trace_with(app, provider)
        runner = create_runner(app)
        await runner.setup()
        stopped = False

        async def stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                await runner.cleanup()
                provider.shutdown()

        stops.append(stop)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return Traced(f"http://127.0.0.1:{port}", exporter, stop)

    try:
        yield start
    finally:
        for stop in stops:
            await stop()


@pytest.fixture
async def traced(start_traced: Callable[..., Awaitable[Traced]]) -> Traced:
    """A server whose spans go to an in-memory exporter."""
    return await start_traced()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_streamed_chat_is_one_span_with_the_genai_attributes(
    traced: Traced,
) -> None:
    async with traced.client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    (span,) = await traced.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.UNSET
    assert attributes(span) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "koala",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": estimate_tokens(SECRET),
        "gen_ai.usage.output_tokens": estimate_tokens(text),
        "http.response.status_code": 200,
        "koala.api": "chat",
    }
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time < span.end_time


async def test_no_span_holds_the_text_of_a_message_or_of_the_reply(
    traced: Traced,
) -> None:
    async with traced.client() as client:
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    (span,) = await traced.spans()
    content = reply.choices[0].message.content
    assert content is not None
    assert SECRET in content
    seen = [span.name, *map(str, attributes(span).values())]
    assert not any(SECRET in value or content in value for value in seen)
    assert attributes(span)["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_cut_reply_names_its_finish_reason(traced: Traced) -> None:
    async with traced.client() as client:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, max_tokens=2
        )
    (span,) = await traced.spans()
    assert attributes(span)["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes(span)["gen_ai.usage.output_tokens"] == 2


async def test_an_upstream_failure_is_an_error_span_with_its_reason(
    traced: Traced, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "3"}, body=b"slow"))
    async with traced.client() as client:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    (span,) = await traced.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span)["error.type"] == "rate_limit"
    assert attributes(span)["http.response.status_code"] == 429
    assert "gen_ai.response.finish_reasons" not in attributes(span)


async def test_a_refused_request_names_the_code_it_was_refused_with(
    traced: Traced,
) -> None:
    async with traced.client() as client:
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=[])
    (span,) = await traced.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span)["error.type"] == "invalid_request"


async def test_the_clients_traceparent_makes_the_span_its_child(
    traced: Traced,
) -> None:
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    async with traced.client() as client:
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
        )
    (span,) = await traced.spans()
    assert span.parent is not None
    assert span.parent.span_id == int(parent_id, 16)
    assert span.context is not None
    assert span.context.trace_id == int(trace_id, 16)


async def test_routes_other_than_completions_make_no_span(traced: Traced) -> None:
    async with traced.client() as client:
        await client.models.list()
    assert await traced.spans() == ()


async def test_an_image_request_is_a_generate_content_span(
    start_traced: Callable[..., Awaitable[Traced]], sandbox: Sandbox
) -> None:
    traced = await start_traced(provider_options={"api_key": ApiKey(sandbox.api_key)})
    async with traced.client() as client:
        await client.images.generate(prompt=SECRET, n=2)
    (span,) = await traced.spans()
    assert span.name == f"generate_content {KoalaImages.default_model}"
    assert attributes(span)["gen_ai.operation.name"] == "generate_content"
    assert "gen_ai.usage.input_tokens" not in attributes(span)
    assert not any(SECRET in str(value) for value in attributes(span).values())


# --- from the environment ------------------------------------------------------


def test_without_the_extra_the_server_warns_and_traces_nothing(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sandbox: Sandbox,
) -> None:
    monkeypatch.setenv(OTLP_ENDPOINT_VARIABLE, "http://127.0.0.1:9")
    # As if the otel extra were not installed: importing it fails.
    module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.setitem(sys.modules, module, None)
    with caplog.at_level(logging.WARNING, "koala_chat.server"):
        app = create_app(server_config(sandbox))
    assert SPANS_KEY not in app
    (record,) = caplog.records
    assert OTLP_ENDPOINT_VARIABLE in record.getMessage()
    assert "pip install 'koala-chat[otel]'" in record.getMessage()


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[bytes]]]:
    """An OTLP/HTTP traces endpoint on 127.0.0.1: its URL, the bodies it got."""
    bodies: asyncio.Queue[bytes] = asyncio.Queue()

    async def traces(request: web.Request) -> web.Response:
        bodies.put_nowait(await request.read())
        return web.Response(content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", bodies
    finally:
        await runner.cleanup()


async def test_koala_serve_sends_its_spans_over_otlp(
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: tuple[str, asyncio.Queue[bytes]],
    server_process: Callable[..., ServerProcess],
) -> None:
    endpoint, bodies = otlp_receiver
    monkeypatch.setenv(OTLP_ENDPOINT_VARIABLE, endpoint)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    server = server_process("--sandbox")
    url = f"http://127.0.0.1:{await server.port()}/v1"
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
    # The last batch goes out as the server stops.
    server.process.send_signal(signal.SIGTERM)
    body = await asyncio.wait_for(bodies.get(), 10.0)
    assert await server.exit_code() == 0
    export = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = export.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "koala-serve"
    (scope_spans,) = resource_spans.scope_spans
    (span,) = scope_spans.spans
    assert span.name == "chat gpt-4o-mini"
    sent = {a.key: a.value for a in span.attributes}
    assert sent["gen_ai.provider.name"].string_value == "koala"
    assert sent["gen_ai.usage.input_tokens"].int_value == estimate_tokens(SECRET)
    assert SECRET.encode() not in body
