"""One real request to the endpoint, timed: the work behind `koala check`.

The request is made here rather than through `Koala.create_async_generator`
because a health check needs what the provider does not expose: the status of
a successful reply and the moment its headers arrived. Everything else is the
provider's own: the body and headers it builds, its status check, its event
stream parser, its error translation. No retries: a check reports what one
request does.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import ClientSession

from ..errors import KoalaError, NotEventStreamError, UsageError
from ..messages import normalize_messages, text_of
from ..requests import (
    Timeouts,
    get_connector,
    raise_for_status,
    read_excerpt,
    redact_url,
    text_excerpt,
    translate_errors,
)
from .exits import ExitCode, exit_code_for, reason_for
from .options import Connection

__all__ = ["Probe", "probe", "report"]


@dataclass
class Probe:
    """What one request to the endpoint showed; times in seconds."""

    endpoint: str
    model: str
    works: bool = False
    status: int | None = None
    first_byte_seconds: float | None = None
    first_piece_seconds: float | None = None
    pieces: int = 0
    pieces_per_second: float | None = None
    reason: str | None = None
    error: str | None = None
    exit_code: int = ExitCode.OK


async def probe(provider: Any, connection: Connection, prompt: str) -> Probe:
    """Make one request and return what it showed.

    Raises:
        UsageError: A bad endpoint, proxy or model, before any request.
    """
    endpoint = connection.endpoint or provider.api_endpoint
    model = provider.get_model(connection.model)
    result = Probe(endpoint=redact_url(endpoint), model=model)
    try:
        await _measure(provider, connection, endpoint, model, prompt, result)
    except UsageError:
        raise
    except KoalaError as exc:
        result.reason = reason_for(exc)
        result.error = " ".join(str(exc).split())
        result.exit_code = exit_code_for(exc)
        return result
    if result.pieces == 0:
        result.reason = "empty reply"
        result.error = "the reply carried no text"
        result.exit_code = ExitCode.PROTOCOL
        return result
    result.works = True
    return result


async def _measure(
    provider: Any,
    connection: Connection,
    endpoint: str,
    model: str,
    prompt: str,
    result: Probe,
) -> None:
    """Send the request, filling in `result` as the reply arrives."""
    body = provider.build_body(
        model, normalize_messages([{"role": "user", "content": prompt}])
    )
    headers = {"Content-Type": "application/json", **provider.build_headers()}
    timeouts = Timeouts(total=connection.timeout)
    connector = get_connector(None, connection.proxy)
    # HTTP proxies go per request, SOCKS proxies in the connector: once each.
    http_proxy = connection.proxy if connector is None else None
    loop = asyncio.get_running_loop()
    start = loop.time()
    last = start
    async with (
        ClientSession(connector=connector) as session,
        translate_errors(endpoint, timeouts, connection.proxy),
        session.post(
            endpoint,
            data=msgspec.json.encode(body),
            headers=headers,
            proxy=http_proxy,
            timeout=timeouts.client_timeout(timeouts.total),
        ) as response,
    ):
        result.status = response.status
        result.first_byte_seconds = loop.time() - start
        await raise_for_status(response)
        if response.content_type != "text/event-stream":
            # docs/protocol.md, "Errors seen in the wild": an HTML 200 is a failure.
            excerpt = text_excerpt(await read_excerpt(response, 64 * 1024))
            raise NotEventStreamError(
                f"{result.endpoint} answered {response.status} with "
                f"{response.content_type or 'no content type'} instead of an "
                "event stream" + (f": {excerpt}" if excerpt else ""),
                content_type=response.content_type,
                body=excerpt,
            )
        async with aclosing(provider._parse_event_stream(response)) as values:
            async for value in values:
                if not text_of(value):
                    continue
                last = loop.time()
                if result.pieces == 0:
                    result.first_piece_seconds = last - start
                result.pieces += 1
    if result.pieces > 1 and result.first_piece_seconds is not None:
        span = last - start - result.first_piece_seconds
        if span > 0:
            result.pieces_per_second = (result.pieces - 1) / span


def report(result: Probe) -> str:
    """Return the human-readable report, one fact per line."""
    lines = [
        f"works:        {'yes' if result.works else 'no'}",
        f"endpoint:     {result.endpoint}",
        f"model:        {result.model}",
        f"status:       {result.status if result.status is not None else '-'}",
        f"first byte:   {_ms(result.first_byte_seconds)}",
        f"first piece:  {_ms(result.first_piece_seconds)}",
        f"pieces:       {result.pieces}",
        f"pieces/s:     {_rate(result.pieces_per_second)}",
    ]
    if not result.works:
        lines.append(f"reason:       {result.reason}")
        lines.append(f"error:        {result.error}")
    return "\n".join(lines) + "\n"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
