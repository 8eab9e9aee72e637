"""The routes of `koala serve`: chat completions, models, health.

    POST /v1/chat/completions   a completion, streamed as events or whole
    GET  /v1/models             the models of the configured dialect
    GET  /v1/models/{id}        one model, or 404
    GET  /health                {"status": "ok"}, without authentication
    GET  /openapi.json          the OpenAPI description, without authentication

`/chat/completions` and `/models` answer without the `/v1` prefix too, as
several clients call them so (`unprefixed_middleware` keeps them behind the
API key). Handlers raise; `error_middleware` turns errors into the OpenAI error
shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ..contract.capabilities import Capabilities
from ..contract.emulation import emulate
from ..contract.params import CompletionRequest, parse_request
from ..contract.provider import ChatProvider
from ..contract.replies import Reply, next_text, read_text
from ..contract.types import Model, ModelList
from ..contract.worker import off_loop
from ..errors import ModelNotFoundError, UsageError
from ..jsonstream import replace_surrogates_in
from ..messages import JSONValue
from .accesslog import LOG_KEY
from .config import ServerConfig
from .failures import Failure, FailureError, bad_request
from .logtext import shortened
from .openapi import openapi_document
from .streaming import RequestLog, send_chunks, stream_reply

__all__ = [
    "IGNORED_HEADER",
    "STATE_KEY",
    "ServerState",
    "routes",
    "unprefixed_middleware",
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

#: The routes also served without `/v1`, and the path prefix they stand for.
_UNPREFIXED: Final = ("/chat/completions", "/models")


@dataclass(slots=True)
class ServerState:
    """What the handlers of one app share: settings, provider, stream count.

    Nothing of one request outlives it: the server is stateless.
    """

    config: ServerConfig
    provider: ChatProvider
    options: dict[str, Any]
    #: What the provider declares it offers under `options`.
    capabilities: Capabilities
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def cancel_all(self) -> None:
        """Cancel every completion in progress (a second Ctrl-C)."""
        for task in self.tasks:
            task.cancel()


#: The protocols a request may choose, `auto` (the default) first: the chat
#: page offers them in this order (docs/protocol.md, "Choosing a dialect").

STATE_KEY: Final = web.AppKey("koala_chat.state", ServerState)

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Answer that the server is up (no authentication, no upstream traffic)."""
    return _json({"status": "ok"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """Return the OpenAPI description of the server (no authentication)."""
    return _json(openapi_document())


@routes.get("/models")
@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    """Return the models of the configured dialect as an OpenAI model list.

    For Koala the list carries a member `koala`: the protocols a request may
    choose (the body's `protocol`: those of `--client-protocols` and the
    configured one), the configured one, and that `web_search` can be
    switched. The chat page shows its switches only when it is there.
    """
    state = request.app[STATE_KEY]
    caps = state.capabilities
    listing = ModelList([Model(name) for name in caps.models]).model_dump()
    if caps.protocols:
        listing["koala"] = {
            "protocols": _offered(state),
            "protocol": caps.protocol,
            "web_search": caps.web_search,
        }
    return _json(listing)


@routes.get("/models/{model}")
@routes.get("/v1/models/{model}")
async def get_model(request: web.Request) -> web.Response:
    """Return one model, or 404 when the configured dialect does not list it."""
    state = request.app[STATE_KEY]
    name = request.match_info["model"]
    if name not in state.capabilities.models:
        raise FailureError(
            Failure(
                404,
                "invalid_request_error",
                "model_not_found",
                f"the model {name!r} does not exist; see /v1/models",
            )
        )
    return _json(Model(name).model_dump())


@routes.post("/chat/completions")
@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer a chat completion, streamed (`"stream": true`) or whole.

    The first piece of the reply is awaited before the response starts, so a
    failing upstream gets a real status; a later failure ends the stream with
    an error event.
    """
    state = request.app[STATE_KEY]
    log = request[LOG_KEY] = RequestLog(started=time.perf_counter())
    body = await _read_object(request, state.config.max_body)
    # Admitted before the check: checking JSON Schemas takes time, and a flood
    # of them must meet the limit of completions at once like any other.
    if len(state.tasks) >= state.config.max_streams:
        raise FailureError(
            Failure(
                429,
                "rate_limit_error",
                "too_many_streams",
                f"this server is at its limit of {state.config.max_streams} "
                "completions at once; retry shortly",
                {"Retry-After": "1"},
            )
        )
    task = asyncio.current_task()
    assert task is not None  # a handler always runs in a task
    state.tasks.add(task)
    try:
        completion = await _parse(body, state.config.strict)
        headers = _ignored_headers(completion)
        chosen = _chosen(state, completion)
        model, sent = _model(state, completion)
    except BaseException:
        state.tasks.discard(task)
        raise
    log.model = model
    try:
        if completion.emulated:
            options = {**state.options, **chosen}
            return await _emulated(
                request, completion, log, headers, options, (model, sent)
            )
        reply = Reply(completion, model)
        values = state.provider.create_async_generator(
            sent, completion.messages, **{**state.options, **chosen}
        )
        async with aclosing(values):
            try:
                first = await next_text(values, reply)
            except ModelNotFoundError:
                raise
            except UsageError as exc:
                if chosen:
                    # A valid choice this server cannot serve: the api
                    # dialect, without an upstream key of its own.
                    raise FailureError(
                        Failure(
                            403, "permission_error", "protocol_unavailable", str(exc)
                        )
                    ) from exc
                # The request was checked above, so the provider refusing now
                # means the server's own options are wrong, not the client.
                raise FailureError(_misconfigured(exc)) from exc
            log.saw_first_piece()
            if completion.stream:
                return await stream_reply(request, values, first, reply, log, headers)
            text = (first or "") + await read_text(values, reply)
            log.pieces = reply.pieces
            return _json(reply.completion(text).model_dump(), headers)
    finally:
        state.tasks.discard(task)


async def _parse(body: dict[str, JSONValue], strict: bool) -> CompletionRequest:
    """Check a request's parameters (raises as `parse_request`).

    A request with JSON Schemas (`response_format`, `tools`) is checked on a
    thread of `worker.py`, off the event loop: its cost grows with the schemas.
    """
    if body.get("response_format") is None and body.get("tools") is None:
        return parse_request(body, strict=strict)
    return await off_loop(parse_request, body, strict=strict)


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
    offered = _offered(state)
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


def _offered(state: ServerState) -> list[str]:
    """Return the protocols a client may choose, in the provider's order.

    Those the operator allows, and the server's own, which asking for changes
    nothing; none for a provider without dialects.
    """
    caps = state.capabilities
    allowed = state.config.client_protocols
    return [p for p in caps.protocols if p in allowed or p == caps.protocol]


def _model(state: ServerState, completion: CompletionRequest) -> tuple[str, str]:
    """Return the model to report and the name to send for `completion`.

    A provider with dialects is sent an empty name as it is: each dialect
    fills in its own default, also when `auto` falls back (docs/protocol.md,
    "Choosing a dialect"); the reply names the default the provider declares.

    Raises:
        ModelNotFoundError: a name the provider refuses.
    """
    caps = state.capabilities
    if not caps.protocols or completion.model:
        model = state.provider.get_model(completion.model)
        return model, (completion.model if caps.protocols else model)
    default = caps.models_of(completion.protocol).default
    return state.provider.get_model(default or ""), ""


async def _emulated(
    request: web.Request,
    completion: CompletionRequest,
    log: RequestLog,
    headers: dict[str, str],
    options: dict[str, Any],
    model: tuple[str, str],
) -> web.StreamResponse:
    """Answer a request in JSON mode or with tools: read whole, then checked.

    `options` are the provider's for this request and `model` the names to
    show and to send.
    """
    state = request.app[STATE_KEY]
    try:
        outcome = await emulate(state.provider, completion, options, model=model)
    except ModelNotFoundError:
        raise
    except UsageError as exc:
        raise FailureError(_misconfigured(exc)) from exc
    log.saw_first_piece()
    log.pieces = outcome.reply.pieces
    if completion.stream:
        return await send_chunks(request, outcome.chunks(), headers)
    return _json(outcome.completion().model_dump(), headers)


def _ignored_headers(completion: CompletionRequest) -> dict[str, str]:
    """Return the header that names the ignored parameters (none: no header).

    Names come from the client: each is cut to `_NAME_LIMIT` characters (a cut
    one ends in `...`) and percent-encoded, so that no control character or
    comma reaches the header; they fill at most `_HEADER_BUDGET` bytes and
    `_MAX_NAMED` names, and a last `(N more)` counts the ones left out. The
    debug log gets the same line.
    """
    names = completion.ignored
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


@web.middleware
async def unprefixed_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Let the routes without `/v1` pass the API key check as their `/v1` twins.

    The key middleware guards paths under `/v1`; a request for `/models` is
    handed on as one for `/v1/models` (its route already matched), so the
    guard sees it. Run before the key middleware.
    """
    path = request.path
    if path.startswith(_UNPREFIXED) and (
        path in _UNPREFIXED or path.startswith("/models/")
    ):
        request = request.clone(rel_url=request.rel_url.with_path("/v1" + path))
    return await handler(request)


async def _read_object(request: web.Request, limit: int) -> dict[str, JSONValue]:
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


def _misconfigured(exc: UsageError) -> Failure:
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


def _json(value: JSONValue, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value),
        content_type="application/json",
        headers=headers,
    )
