"""One real request to the endpoint, timed: the work behind `koala check`.

The request is one attempt of the provider (`open_attempt`, no retries: a check
reports what one request does), which shows what the values alone do not: the
status of the reply and the moment its head arrived. Everything else is the
provider's own: the request it builds, its status check, its reply reader, its
time limits, proxy rules and error translation. The one exception to "one
request" is `auto`'s: when the endpoint refuses the first request's shape, the
other dialect's request follows, as it would in `koala chat`.
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
from typing import Any, Final, cast

from .._jsonstream import PayloadForms, counting_payload_forms
from .._sentences import sentence
from .._urls import redact_url
from ..defaults import ENDPOINT_VARIABLE
from ..errors import KoalaError, UsageError
from ..messages import text_of
from ..providers import HTTPProvider
from ..providers.dialects import (
    DIALECTS,
    SHAPE_REJECTED_STATUSES,
    Dialect,
    resolve_model,
)
from .conversation import without_surrogates
from .exits import ExitCode, exit_code_for, hint_for, reason_for
from .hints import Situation
from .options import Connection
from .redaction import Redactor, report_error

__all__ = ["Probe", "as_json", "milliseconds", "probe", "report"]


@dataclass
class Probe:
    """What one request to the endpoint showed; times in seconds.

    `protocol` is the setting the request was made with, `dialect` the one it
    was sent in (None when the provider does not say).
    """

    endpoint: str
    model: str
    protocol: str | None = None
    dialect: str | None = None
    #: Under `auto`: the dialect whose request shape was refused first.
    refused_first: str | None = None
    works: bool = False
    status: int | None = None
    first_byte_seconds: float | None = None
    first_piece_seconds: float | None = None
    pieces: int = 0
    #: None when fewer than two pieces came, or all within `MEASURABLE_SPAN`.
    pieces_per_second: float | None = None
    #: The form of the reply's payloads: "json", "raw text" or "json and raw
    #: text" (docs/protocol.md, "Raw text in the messages dialect"); None
    #: before any.
    payloads: str | None = None
    reason: str | None = None
    error: str | None = None
    #: What to do about the failure, one sentence (None when it works).
    next_step: str | None = None
    exit_code: int = ExitCode.OK


async def probe(
    provider: type[HTTPProvider],
    connection: Connection,
    prompt: str,
    situation: Situation | None = None,
) -> Probe:
    """Make one request through `provider` and return what it showed.

    `situation` is the command line's, which the next step of a failure
    takes into account (`hints.py`).

    The request is made in the connection's dialect settings (`protocol`,
    `api_key`, `web_search`), as `koala chat` would make it: under `auto`, when
    the endpoint refuses the first request's shape, the same prompt goes once
    more in the other dialect (docs/protocol.md, "Choosing a dialect"), and the
    result is that request's, with `refused_first` naming the first dialect.

    Raises:
        UsageError: A bad endpoint, proxy, model or dialect setting, before any
            request.
    """
    situation = situation or Situation(command="check")
    result = await _probe_once(provider, connection, prompt, situation)
    other = _OTHER.get(result.dialect or "")
    if (
        result.protocol in (None, "auto")
        and other is not None
        and result.status in SHAPE_REJECTED_STATUSES
    ):
        second = await _probe_once(
            provider, connection._replace(protocol=other), prompt, situation
        )
        second.protocol = result.protocol
        second.refused_first = result.dialect
        return second
    return result


#: What `auto` sends when the endpoint refuses the shape of one dialect's request.
_OTHER: Final = {"history": "messages", "messages": "history"}


async def _probe_once(
    provider: type[HTTPProvider],
    connection: Connection,
    prompt: str,
    situation: Situation,
) -> Probe:
    """Make one request and return what it showed (see `probe`)."""
    endpoint = provider.resolve_endpoint(connection.endpoint)
    model = provider.get_model(connection.model)
    options = connection.dialect_kwargs()
    protocol = options.get("protocol")
    if not connection.model and protocol in DIALECTS:
        model = resolve_model(cast(Dialect, protocol), "")
    redact = Redactor.from_values([endpoint, connection.proxy])
    result = Probe(
        endpoint=redact(redact_url(endpoint)), model=model, protocol=protocol
    )
    try:
        await _measure(provider, connection, endpoint, prompt, result)
    except UsageError:
        raise
    except KoalaError as exc:
        result.reason = reason_for(exc)
        # A lone surrogate (quoted from a reply) cannot be printed as UTF-8.
        message = without_surrogates(" ".join(str(exc).split()))[0]
        result.error = redact(message)
        result.next_step = redact(sentence(hint_for(exc, situation)))
        result.exit_code = exit_code_for(exc)
        return result
    if result.pieces == 0:
        result.reason = "empty reply"
        result.error = "the reply carried no text"
        result.next_step = "Try another --prompt, or another --model."
        result.exit_code = ExitCode.PROTOCOL
        return result
    result.works = True
    return result


async def _measure(
    provider: type[HTTPProvider],
    connection: Connection,
    endpoint: str,
    prompt: str,
    result: Probe,
) -> None:
    """Send the request, filling in `result` as the reply arrives."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last = start
    async with provider.open_attempt(
        connection.model,
        [{"role": "user", "content": prompt}],
        proxy=connection.proxy,
        api_endpoint=endpoint,
        timeout=connection.timeout,
        **connection.dialect_kwargs(),
    ) as attempt:
        result.status = attempt.response.status
        result.first_byte_seconds = loop.time() - start
        result.dialect = getattr(attempt, "dialect", None)
        if result.dialect is not None and not connection.model:
            result.model = resolve_model(cast(Dialect, result.dialect), "")
        with counting_payload_forms() as forms:
            try:
                async with aclosing(attempt.values()) as values:
                    async for value in values:
                        if not text_of(value):
                            continue
                        last = loop.time()
                        if result.pieces == 0:
                            result.first_piece_seconds = last - start
                        result.pieces += 1
            finally:
                result.payloads = _forms(forms, result.pieces)
    if result.pieces > 1 and result.first_piece_seconds is not None:
        span = last - start - result.first_piece_seconds
        if span >= MEASURABLE_SPAN:
            result.pieces_per_second = (result.pieces - 1) / span


#: The shortest stretch between the first and the last piece that gives a
#: rate: pieces that come in one burst (one read of the socket, a local
#: server) would give millions per second, which says nothing of the model.
MEASURABLE_SPAN: Final = 0.02


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
    if isinstance(exc, KoalaError):
        result.next_step = sentence(hint_for(exc, Situation.from_args(args)))
    result.exit_code = exit_code_for(exc)
    return result


def report(result: Probe) -> str:
    """Return the human-readable report, one fact per line."""
    lines = [
        f"works:        {'yes' if result.works else 'no'}",
        f"endpoint:     {result.endpoint}",
        f"dialect:      {_dialect(result)}",
        f"model:        {result.model}",
        f"status:       {result.status if result.status is not None else '-'}",
        f"first byte:   {milliseconds(result.first_byte_seconds)}",
        f"first piece:  {milliseconds(result.first_piece_seconds)}",
        f"pieces:       {result.pieces}",
        f"pieces/s:     {_rate(result)}",
        f"payloads:     {_PAYLOADS.get(result.payloads or '', '-')}",
    ]
    if not result.works:
        lines.append(f"reason:       {result.reason}")
        lines.append(f"error:        {result.error}")
        if result.next_step:
            lines.append(f"next step:    {result.next_step}")
    return "\n".join(lines) + "\n"


def _forms(forms: PayloadForms, pieces: int) -> str | None:
    """Name the form of the payloads; a strict reader reads JSON only."""
    if forms.raw and forms.json:
        return "json and raw text"
    if forms.raw:
        return "raw text"
    return "json" if forms.json or pieces else None


def _dialect(result: Probe) -> str:
    name = result.dialect or result.protocol or "-"
    if result.refused_first is not None:
        return f"{name} ({result.refused_first} was refused first)"
    return name


_PAYLOADS: Final = {
    "json": "JSON",
    "raw text": "raw text (not JSON)",
    "json and raw text": "JSON and raw text",
}


def milliseconds(seconds: float | None) -> str:
    """Return `seconds` as whole milliseconds, or "-" when unknown."""
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _rate(result: Probe) -> str:
    if result.pieces_per_second is not None:
        return f"{result.pieces_per_second:.0f}"
    if result.pieces > 1:
        return f"- (all in one burst, under {MEASURABLE_SPAN * 1000:.0f} ms)"
    return "-"
