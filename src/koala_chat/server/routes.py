"""The routes of `koala serve`: chat completions, models, health.

    POST /v1/chat/completions   a completion, streamed as events or whole
    GET  /v1/models             the provider's models
    GET  /v1/models/{id}        one model, or 404
    GET  /health                {"status": "ok"}, without authentication
    GET  /openapi.json          the OpenAPI description, without authentication

Handlers raise; `error_middleware` turns errors into the OpenAI error shape.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from aiohttp import web

from ..contract.params import parse_request
from ..contract.provider import ChatProvider
from ..contract.replies import Reply, next_text, read_text
from ..contract.types import Model, ModelList
from ..errors import ModelNotFoundError, UsageError
from ..jsonstream import replace_surrogates_in
from ..messages import JSONValue
from .accesslog import LOG_KEY
from .config import ServerConfig
from .failures import Failure, FailureError, bad_request
from .openapi import openapi_document
from .streaming import RequestLog, stream_reply

__all__ = ["STATE_KEY", "ServerState", "routes"]


@dataclass(slots=True)
class ServerState:
    """What the handlers of one app share: settings, provider, stream count.

    Nothing of one request outlives it: the server is stateless.
    """

    config: ServerConfig
    provider: ChatProvider
    options: dict[str, Any]
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def cancel_all(self) -> None:
        """Cancel every completion in progress (a second Ctrl-C)."""
        for task in self.tasks:
            task.cancel()


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


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    """Return the provider's models as an OpenAI model list."""
    provider = request.app[STATE_KEY].provider
    models = ModelList([Model(name) for name in provider.get_models()])
    return _json(models.model_dump())


@routes.get("/v1/models/{model}")
async def get_model(request: web.Request) -> web.Response:
    """Return one model, or 404 when the provider does not list it."""
    provider = request.app[STATE_KEY].provider
    name = request.match_info["model"]
    if name not in provider.get_models():
        raise FailureError(
            Failure(
                404,
                "invalid_request_error",
                "model_not_found",
                f"the model {name!r} does not exist; see /v1/models",
            )
        )
    return _json(Model(name).model_dump())


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer a chat completion, streamed (`"stream": true`) or whole.

    The first piece of the reply is awaited before the response starts, so a
    failing upstream gets a real status; a later failure ends the stream with
    an error event.
    """
    state = request.app[STATE_KEY]
    log = request[LOG_KEY] = RequestLog(started=time.perf_counter())
    completion = parse_request(await _read_object(request, state.config.max_body))
    model = log.model = state.provider.get_model(completion.model)
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
        reply = Reply(completion, model)
        values = state.provider.create_async_generator(
            model, completion.messages, **state.options
        )
        async with aclosing(values):
            try:
                first = await next_text(values, reply)
            except ModelNotFoundError:
                raise
            except UsageError as exc:
                # The request was checked above, so the provider refusing now
                # means the server's own options are wrong, not the client.
                raise FailureError(_misconfigured(exc)) from exc
            log.saw_first_piece()
            if completion.stream:
                return await stream_reply(request, values, first, reply, log)
            text = (first or "") + await read_text(values, reply)
            log.pieces = reply.pieces
            return _json(reply.completion(text).model_dump())
    finally:
        state.tasks.discard(task)


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


def _json(value: JSONValue) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), content_type="application/json"
    )
