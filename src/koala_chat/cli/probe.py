"""One real request to the endpoint, timed: the work behind `koala check`.

The request is one attempt of the provider (`open_attempt`, no retries: a check
reports what one request does), which shows what the values alone do not: the
status of the reply and the moment its head arrived. Everything else is the
provider's own: the request it builds, its status check, its reply reader, its
time limits, proxy rules and error translation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import Any

from ..defaults import ENDPOINT_VARIABLE
from ..errors import KoalaError, UsageError
from ..messages import text_of
from ..providers import HTTPProvider
from ..urls import redact_url
from .conversation import without_surrogates
from .exits import ExitCode, exit_code_for, reason_for
from .options import Connection
from .redaction import Redactor, report_error

__all__ = ["Probe", "as_json", "probe", "report"]


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


async def probe(
    provider: type[HTTPProvider], connection: Connection, prompt: str
) -> Probe:
    """Make one request through `provider` and return what it showed.

    Raises:
        UsageError: A bad endpoint, proxy or model, before any request.
    """
    endpoint = provider.resolve_endpoint(connection.endpoint)
    model = provider.get_model(connection.model)
    redact = Redactor.from_values([endpoint, connection.proxy])
    result = Probe(endpoint=redact(redact_url(endpoint)), model=model)
    try:
        await _measure(provider, connection, endpoint, model, prompt, result)
    except UsageError:
        raise
    except KoalaError as exc:
        result.reason = reason_for(exc)
        # A lone surrogate (quoted from a reply) cannot be printed as UTF-8.
        message = without_surrogates(" ".join(str(exc).split()))[0]
        result.error = redact(message)
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
    provider: type[HTTPProvider],
    connection: Connection,
    endpoint: str,
    model: str,
    prompt: str,
    result: Probe,
) -> None:
    """Send the request, filling in `result` as the reply arrives."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last = start
    async with provider.open_attempt(
        model,
        [{"role": "user", "content": prompt}],
        proxy=connection.proxy,
        api_endpoint=endpoint,
        timeout=connection.timeout,
    ) as attempt:
        result.status = attempt.response.status
        result.first_byte_seconds = loop.time() - start
        async with aclosing(attempt.values()) as values:
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


def as_json(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Return `run(args)`, which prints the probe as JSON; when it fails before
    printing (a usage error, an unexpected error, Ctrl-C), print one JSON object
    that says why instead, and report the error on stderr as `koala` does.

    Every secret of `args` is masked in what is printed.
    """
    try:
        return run(args)
    except BrokenPipeError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        result = _failure(args, exc)
        failure = exc
    redact = Redactor.from_args(args)
    for name, value in vars(result).items():
        if isinstance(value, str):
            setattr(result, name, redact(value))
    text = json.dumps(asdict(result), ensure_ascii=True)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    if not isinstance(failure, KeyboardInterrupt):
        report_error(failure, args)
    return result.exit_code


def _failure(args: argparse.Namespace, exc: BaseException) -> Probe:
    """Return the probe of a check that failed with `exc` before its request."""
    from .termination import terminated

    provider: Any = getattr(args, "provider", None)
    model = getattr(args, "model", None) or getattr(provider, "default_model", "")
    endpoint = getattr(args, "endpoint", None) or os.environ.get(ENDPOINT_VARIABLE)
    # The provider may be what failed: only its simplest answer is asked for.
    with contextlib.suppress(Exception):
        endpoint = provider.resolve_endpoint(endpoint or None)
    result = Probe(endpoint=redact_url(endpoint or ""), model=str(model))
    if isinstance(exc, KeyboardInterrupt):
        result.reason = "interrupted"
        result.error = "the check was interrupted"
        interrupted = terminated()
        result.exit_code = ExitCode.TERMINATED if interrupted else ExitCode.INTERRUPTED
        return result
    result.reason = reason_for(exc)
    message = (
        str(exc)
        if isinstance(exc, KoalaError)
        else f"unexpected {type(exc).__name__}: {exc}"
    )
    result.error = " ".join(message.split())
    result.exit_code = exit_code_for(exc)
    return result


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
