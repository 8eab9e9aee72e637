"""A span per completion, in OpenTelemetry's GenAI conventions (extra `otel`).

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, `add_tracing` gives the app a tracer
provider of its own that sends its spans there over OTLP/HTTP (the exporter
reads the endpoint and OpenTelemetry's other `OTEL_...` variables itself) and
flushes them when the app stops; each worker process has its own. Without
the `otel` extra installed it logs one warning and serves without spans. A
program that hosts the app can hand it a provider instead (`trace_with`).

The span of a request is named `{operation} {model}` (`chat gpt-4o-mini`), of
kind SERVER, from the handler's start to the end of the reply, with the
attributes of docs/observability.md, "Traces": the operation, the provider
(`koala`), the model, the finish reasons, the estimated tokens, the status
and, on failure, `error.type`. Never the text of a message or of the reply.
A `traceparent` header the client sent makes it a child of the client's span.

OpenTelemetry is imported only when tracing is on: the server runs without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Final

from aiohttp import web

from .._contract.usage import tokens_for_length
from .streaming import RequestLog

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from opentelemetry.util.types import AttributeValue

__all__ = ["OTLP_ENDPOINT_VARIABLE", "SPANS_KEY", "Spans", "add_tracing", "trace_with"]

logger = logging.getLogger("koala_chat.server")

#: The variable that turns tracing on (OpenTelemetry's own name for it).
OTLP_ENDPOINT_VARIABLE: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"

#: The name of the instrumentation, as the spans carry it.
TRACER_NAME: Final = "koala_chat.server"

#: The service's name when `OTEL_SERVICE_NAME` names none.
SERVICE_NAME: Final = "koala-serve"

#: `gen_ai.operation.name` of each wire format; "chat" for any other.
OPERATIONS: Final = {"images": "generate_content"}


class Spans:
    """Makes the span of each finished request with one tracer."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import propagate, trace

        self._tracer = tracer
        self._extract = propagate.extract
        self._server = trace.SpanKind.SERVER
        self._error = trace.Status(trace.StatusCode.ERROR)

    def record(
        self, request: web.Request, log: RequestLog, status: int, cause: str | None
    ) -> None:
        """Make and end the span of `request`, answered `status`.

        `cause` is the code of the failure it was answered with, if any.
        """
        now = time.perf_counter()
        end = time.time_ns()
        start = end - int((now - log.started) * 1e9)
        operation = OPERATIONS.get(log.format, "chat")
        attributes = _attributes(log, operation, status)
        failure = _error_type(log, status, cause)
        if failure is not None:
            attributes["error.type"] = failure
        span = self._tracer.start_span(
            f"{operation} {log.model}" if log.model else operation,
            context=self._extract(request.headers),
            kind=self._server,
            attributes=attributes,
            start_time=start,
        )
        if failure is not None:
            span.set_status(self._error)
        span.end(end_time=end)


def _attributes(
    log: RequestLog, operation: str, status: int
) -> dict[str, AttributeValue]:
    """Return the GenAI attributes of a request's span (no `error.type`)."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "koala",
        "http.response.status_code": status,
        "koala.api": log.format,
    }
    if log.model:
        attributes["gen_ai.request.model"] = log.model
    if log.finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = (log.finish_reason,)
    if operation == "chat":
        attributes["gen_ai.usage.input_tokens"] = log.input_tokens
        attributes["gen_ai.usage.output_tokens"] = tokens_for_length(log.chars)
    return attributes


def _error_type(log: RequestLog, status: int, cause: str | None) -> str | None:
    """Return the span's `error.type`: None for a request that did not fail.

    The upstream's failure names its reason (`timeout`, `rate_limit`, ...),
    one mid-stream too; a refusal names its code (`too_many_streams`); a
    request cancelled before its answer is `cancelled`.
    """
    if log.error is not None:
        return log.error
    if status < 400:
        return None
    if status == 499:
        return "cancelled"
    return cause or str(status)


#: Where an app keeps its `Spans`; none there: no tracing.
SPANS_KEY: Final = web.AppKey("koala_chat.spans", Spans)


def trace_with(app: web.Application, provider: TracerProvider) -> None:
    """Make the spans of `app`'s requests with `provider` (call before it starts)."""
    app[SPANS_KEY] = Spans(provider.get_tracer(TRACER_NAME))


def add_tracing(app: web.Application) -> None:
    """Trace `app`'s requests to `OTEL_EXPORTER_OTLP_ENDPOINT`, if it is set.

    The provider made for it is shut down (its last spans sent) when the app
    stops. Without the `otel` extra, log a warning and trace nothing.
    """
    if not os.environ.get(OTLP_ENDPOINT_VARIABLE):
        return
    provider = _otlp_provider()
    if provider is None:
        return
    trace_with(app, provider)

    async def shut_down(app: web.Application) -> None:
        # Sending the last batch blocks: off the event loop.
        await asyncio.to_thread(provider.shutdown)

    app.on_cleanup.append(shut_down)


def _otlp_provider() -> TracerProvider | None:
    """Return a provider exporting over OTLP/HTTP; None (and a warning) without."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "%s is set, but tracing needs the otel extra: pip install "
            "'koala-chat[otel]'; serving without traces",
            OTLP_ENDPOINT_VARIABLE,
        )
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
