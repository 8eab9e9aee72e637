"""The routes of `koala serve` beside the wire formats': models, health.

    GET  /v1/models             the models of the configured dialect
    GET  /v1/models/{id}        one model, or 404
    GET  /health                {"status": "ok"}, without authentication
    GET  /openapi.json          the OpenAPI description, without authentication

The completion routes are the wire formats' (`formats/`, served by
`conversation.py`). `/chat/completions` and `/models` answer without the `/v1`
prefix too, as several clients call them so (`middleware.GUARDED` keeps them
behind the API key). Handlers raise; `error_middleware` turns errors into
the shape of the route's format.
"""

from __future__ import annotations

import functools

import msgspec
from aiohttp import web

from .._contract.types import Model, ModelList
from ..messages import JSONValue
from .conversation import json_response
from .failures import Failure, FailureError
from .openapi import openapi_document
from .state import STATE_KEY

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Answer that the server is up (no authentication, no upstream traffic)."""
    return _json({"status": "ok"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """Return the OpenAPI description of the server (no authentication)."""
    return web.Response(body=_openapi_body(), content_type="application/json")


@functools.cache
def _openapi_body() -> bytes:
    """Return the encoded document, made once.

    It never changes while the server runs, and generating its schemas takes
    about 5 ms, which would otherwise be spent on the event loop per request.
    """
    return msgspec.json.encode(openapi_document())


@routes.get("/models")
@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    """Return the models of the configured dialect as an OpenAI model list.

    For Koala the list carries a member `koala`: the protocols a request may
    choose (the body's `protocol`: those of `--client-protocols` and the
    configured one), the configured one, that `web_search` can be
    switched, and `images`: whether the server has the upstream key that
    `POST /v1/images/generations` needs. The chat page shows its switches,
    and its image mode, only when it is there.
    """
    state = request.app[STATE_KEY]
    caps = state.capabilities
    listing = ModelList([Model(name) for name in caps.models]).model_dump()
    if caps.protocols:
        listing["koala"] = {
            "protocols": state.offered(),
            "protocol": caps.protocol,
            "web_search": caps.web_search,
            "images": state.options.get("api_key") is not None,
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


def _json(value: JSONValue) -> web.Response:
    return json_response(value)
