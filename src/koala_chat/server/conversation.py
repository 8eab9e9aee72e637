"""The driver of every wire format: one path from a request to its reply.

`handler(fmt)` is the aiohttp handler of a format's completion route. It reads
the body, admits the request under the server's limit of completions at once,
has the format parse it into the inside request (`formats/base.py`), chooses
the model and the options, asks the provider, and awaits the first piece
before the response starts, so that an early failure gets a real status in the
format's own shape. The rest streams through `streaming.py` with the format's
encoder, or is read whole and handed to the format's `whole`. Requests with
JSON mode or tools are read whole, checked and retried (`_contract.emulation`)
before the format renders them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final
from urllib.parse import quote

import msgspec
from aiohttp import web

from .._contract.emulation import emulate
from .._contract.params import CompletionRequest
from .._contract.replies import Reply, next_text, read_text
from .._contract.usage import prompt_tokens
from .._contract.worker import off_loop
from .._jsonstream import replace_surrogates_in
from ..errors import ModelNotFoundError, UsageError
from ..messages import JSONValue
from .accesslog import LOG_KEY
from .failures import Failure, FailureError, bad_request, unavailable_choice
from .formats.base import Inbound, WireFormat
from .logtext import shortened
from .state import STATE_KEY, ServerState
from .streaming import RequestLog, send_events, stream_reply

__all__ = [
    "IGNORED_HEADER",
    "handler",
    "ignored_headers",
    "json_response",
    "misconfigured",
    "read_object",
]

logger = logging.getLogger("koala_chat.server")

#: The response header that names the request parameters that were ignored.
IGNORED_HEADER: Final = "X-Koala-Ignored-Params"

#: The most ignored parameters the header names.
_MAX_NAMED: Final = 32
#: The most characters of one ignored name the header shows (then `...`).
_NAME_LIMIT: Final = 64
#: The most bytes of the header's value, after percent-encoding.
_HEADER_BUDGET: Final = 1024
#: Room kept for the last entry, `(N more)`: a body of at most a few MB
#: holds fewer than 10**8 names.
_RESERVED: Final = len(", (99999999 more)")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handler(fmt: WireFormat[Any]) -> Handler:
    """Return the handler of `fmt`'s completion route."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return await _answer(request, fmt)

    answer.__name__ = f"{fmt.name}_completion"
    answer.__doc__ = f"Answer a completion in the {fmt.name} format."
    return answer


async def _answer(request: web.Request, fmt: WireFormat[Any]) -> web.StreamResponse:
    """Answer a completion in `fmt`, streamed or whole.

    The first piece of the reply is awaited before the response starts, so a
    failing upstream gets a real status; a later failure ends the stream as
    the format ends a failed one.
    """
    state = request.app[STATE_KEY]
    log = request[LOG_KEY] = RequestLog(started=time.perf_counter(), format=fmt.name)
    body = await read_object(request, state.config.max_body)
    # Admitted before the check: checking JSON Schemas takes time, and a flood
    # of them must meet the limit of requests at once like any other.
    async with state.admitted_for(request):
        inbound = await _parse(fmt, body, state.config.strict)
        completion = inbound.request
        log.stream = completion.stream
        log.input_tokens = prompt_tokens(completion.messages)
        headers = ignored_headers(completion.ignored)
        chosen = _chosen(state, completion)
        model, sent = _model(
            state, completion, fmt.model_for(completion.model, state.capabilities)
        )
        log.model = model
        options = state.options.merged(**chosen)
        if completion.emulated:
            return await _emulated(
                request, fmt, inbound, log, headers, options, (model, sent)
            )
        return await _reply(
            request, fmt, inbound, log, headers, (options, chosen), (model, sent)
        )


async def _reply(
    request: web.Request,
    fmt: WireFormat[Any],
    inbound: Inbound[Any],
    log: RequestLog,
    headers: dict[str, str],
    options: tuple[Mapping[str, Any], dict[str, Any]],
    model: tuple[str, str],
) -> web.StreamResponse:
    """Answer a request piece by piece: `model` is the name shown and sent.

    `options` are the provider's for this request and those of them the
    request chose itself.
    """
    state = request.app[STATE_KEY]
    completion = inbound.request
    provider_options, chosen = options
    reply = log.reply = Reply(completion, model[0])
    values = state.provider.create_async_generator(
        model[1], completion.messages, **provider_options
    )
    async with aclosing(values):
        try:
            first = await next_text(values, reply)
        except ModelNotFoundError:
            raise
        except UsageError as exc:
            if chosen:
                # A valid choice this server cannot serve: the api dialect,
                # without an upstream key of its own.
                raise FailureError(unavailable_choice(exc, chosen)) from exc
            # The request was checked above, so the provider refusing now
            # means the server's own options are wrong, not the client.
            raise FailureError(misconfigured(exc)) from exc
        log.saw_first_piece()
        if completion.stream:
            encoder = fmt.encoder(inbound, reply)
            media_type = fmt.stream_type
            return await stream_reply(
                request, values, first, reply, encoder, media_type, log, headers
            )
        text = (first or "") + await read_text(values, reply)
        log.pieces, log.chars = reply.pieces, reply.chars
        log.finish_reason = reply.finish_reason
        return json_response(fmt.whole(inbound, reply, text), headers)


async def _parse(
    fmt: WireFormat[Any], body: dict[str, JSONValue], strict: bool
) -> Inbound[Any]:
    """Return the inside request of `body` (raises as `WireFormat.parse`).

    A request with JSON Schemas (`response_format`, `tools`) is checked on a
    thread of `worker.py`, off the event loop: its cost grows with the schemas.
    """
    if not fmt.needs_worker(body):
        return fmt.parse(body, strict=strict)
    return await off_loop(fmt.parse, body, strict=strict)


def _chosen(state: ServerState, completion: CompletionRequest) -> dict[str, Any]:
    """Return the provider options the request chose with Koala's extensions.

    They choose the dialect of this request only; the upstream key stays the
    server's, never the client's, and is spent only on a dialect the operator
    lets clients choose (`--client-protocols`).

    Raises:
        FailureError: 403 `protocol_not_allowed`, before anything is sent
            upstream, for a protocol outside `client_protocols` that is not
            the server's own.
    """
    protocol = completion.protocol
    offered = state.offered()
    if protocol is not None and protocol not in offered:
        raise FailureError(
            Failure(
                403,
                "permission_error",
                "protocol_not_allowed",
                f"this server does not let clients choose the {protocol!r} "
                f"dialect, only {', '.join(offered)} (its operator's "
                "--client-protocols); send no protocol to use the server's own",
            )
        )
    values = {"protocol": protocol, "web_search": completion.web_search}
    return {name: value for name, value in values.items() if value is not None}


def _model(
    state: ServerState, completion: CompletionRequest, name: str
) -> tuple[str, str]:
    """Return the model to report and the name to send for `completion`.

    `name` is the model the request names, as its format maps it
    (`WireFormat.model_for`).

    A provider with dialects is sent an empty name as it is: each dialect
    fills in its own default, also when `auto` falls back (docs/protocol.md,
    "Choosing a dialect"); the reply names the default the provider declares.

    Raises:
        ModelNotFoundError: a name the provider refuses.
    """
    caps = state.capabilities
    if not caps.protocols or name:
        model = state.provider.get_model(name)
        return model, (name if caps.protocols else model)
    default = caps.models_of(completion.protocol).default
    return state.provider.get_model(default or ""), ""


async def _emulated(
    request: web.Request,
    fmt: WireFormat[Any],
    inbound: Inbound[Any],
    log: RequestLog,
    headers: dict[str, str],
    options: Mapping[str, Any],
    model: tuple[str, str],
) -> web.StreamResponse:
    """Answer a request in JSON mode or with tools: read whole, then checked.

    `options` are the provider's for this request and `model` the names to
    show and to send.
    """
    state = request.app[STATE_KEY]
    completion = inbound.request
    try:
        outcome = await emulate(state.provider, completion, options, model=model)
    except ModelNotFoundError:
        raise
    except UsageError as exc:
        raise FailureError(misconfigured(exc)) from exc
    log.saw_first_piece()
    reply = log.reply = outcome.reply
    log.pieces, log.chars = reply.pieces, reply.chars
    log.finish_reason = "tool_calls" if outcome.tool_calls else reply.finish_reason
    if not completion.stream:
        return json_response(
            fmt.whole(inbound, reply, outcome.content, outcome.tool_calls), headers
        )
    encoder = fmt.encoder(inbound, reply)
    if outcome.tool_calls:
        body = encoder.tool_calls(outcome.tool_calls) + encoder.tail("tool_calls")
    else:
        body = encoder.head()
        if outcome.content:
            body += encoder.text(outcome.content)
        body += encoder.tail(reply.finish_reason)
    return await send_events(request, body, fmt.stream_type, headers)


def ignored_headers(names: Sequence[str]) -> dict[str, str]:
    """Return the header that names the ignored parameters (none: no header).

    Names come from the client: each is cut to `_NAME_LIMIT` characters (a cut
    one ends in `...`) and percent-encoded, so that no control character or
    comma reaches the header; they fill at most `_HEADER_BUDGET` bytes and
    `_MAX_NAMED` names, and a last `(N more)` counts the ones left out. The
    debug log gets the same line.
    """
    if not names:
        return {}
    listed: list[str] = []
    size = _RESERVED
    for name in names[:_MAX_NAMED]:
        encoded = quote(shortened(name, _NAME_LIMIT), safe="_-.")
        size += len(encoded) + len(", ")
        if size > _HEADER_BUDGET:
            break
        listed.append(encoded)
    if left_out := len(names) - len(listed):
        listed.append(f"({left_out} more)")
    line = ", ".join(listed)
    logger.debug("ignored parameters: %s", line)
    return {IGNORED_HEADER: line}


async def read_object(request: web.Request, limit: int) -> dict[str, JSONValue]:
    """Return the request body as a JSON object.

    Raises:
        FailureError: 413 for a body over `limit` bytes, 400 for one that is
            not a JSON object.
    """
    size = request.content_length
    if size is not None and size > limit:
        raise FailureError(_too_large(limit))
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise FailureError(_too_large(limit)) from exc
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        # msgspec nests only as deep as Python recurses.
        body = _decode_leniently(raw, exc)
    if not isinstance(body, dict):
        raise FailureError(bad_request("the request body must be a JSON object"))
    return body


def _decode_leniently(raw: bytes, error: Exception) -> JSONValue:
    """Decode what msgspec refused but is JSON: lone surrogates, huge numbers.

    A string with an escaped lone surrogate (`"\\ud800"`) is valid JSON (RFC
    8259, section 8.2); its surrogates become U+FFFD, as everywhere text
    enters (`koala_chat.messages.replace_surrogates`). NaN and Infinity are
    not JSON and stay refused.

    Raises:
        FailureError: 400, with msgspec's reason, when the body is not JSON.
    """
    try:
        # UTF-8 only (RFC 8259, section 8.1), where json.loads would also
        # take UTF-16 and UTF-32.
        text = raw.decode("utf-8")
        return replace_surrogates_in(json.loads(text, parse_constant=_no_constant))
    except (ValueError, RecursionError):
        raise FailureError(
            bad_request(f"the request body is not JSON: {error}", "invalid_json")
        ) from error


def _no_constant(name: str) -> JSONValue:
    raise ValueError(f"{name} is not JSON")


def misconfigured(exc: UsageError) -> Failure:
    """Return the 500 for the server's own options refused by the provider."""
    return Failure(
        500, "server_error", "server_misconfigured", f"the server's setup: {exc}"
    )


def _too_large(limit: int) -> Failure:
    return Failure(
        413,
        "invalid_request_error",
        "request_too_large",
        f"the request body is larger than the limit of {limit} bytes",
    )


def json_response(
    value: JSONValue | msgspec.Struct, headers: dict[str, str] | None = None
) -> web.Response:
    """Return `value` as a JSON response, with `headers` beside its own."""
    return web.Response(
        body=msgspec.json.encode(value),
        content_type="application/json",
        headers=headers,
    )
