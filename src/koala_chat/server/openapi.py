"""The OpenAPI 3.1 description of `koala serve`, served at `GET /openapi.json`.

The component schemas are generated (`components.py`): the request's from
the parameter table of `koala_chat._contract.params`, where each parameter is
declared once with its treatment (honoured, emulated, accepted and ignored,
refused unless neutral; `null` is absent for every optional one), the
replies' from the structs of `koala_chat._contract.types`. The operations are
written here, to say what the code does: its statuses follow `failures.py`.
tests/test_openapi.py checks that every route is described and runs
schemathesis against a live server to keep the two in step.
"""

from __future__ import annotations

from .. import __version__
from ..messages import JSONValue
from .components import ERROR_REF, JSON_MEDIA_TYPE, chat_components, ref
from .formats.openapi_docs import openapi_paths as format_paths
from .formats.openapi_docs import openapi_schemas as format_schemas
from .imagespec import openapi_paths as image_paths
from .webpage import openapi_paths

__all__ = ["openapi_document"]


def openapi_document() -> dict[str, JSONValue]:
    """Return the OpenAPI 3.1 document of the server (a new dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "koala serve",
            "version": __version__,
            "description": (
                "An OpenAI-compatible server in front of the Koala chat API. "
                "The /v1 routes require `Authorization: Bearer <key>` only when "
                "the server was started with an API key (--api-key or "
                "KOALA_SERVER_API_KEY); /health and /openapi.json never do."
            ),
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/v1/chat/completions": {"post": _chat_completions()},
            "/v1/models": {"get": _list_models()},
            "/v1/models/{model}": {"get": _get_model()},
            # The same routes without /v1, as some clients call them.
            "/chat/completions": {"post": _unprefixed(_chat_completions())},
            "/models": {"get": _unprefixed(_list_models())},
            "/models/{model}": {"get": _unprefixed(_get_model())},
            "/health": {"get": _health()},
            "/openapi.json": {"get": _openapi()},
            **openapi_paths(),
            **format_paths(),
            **image_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The server's API key, when it has one.",
                }
            },
            "schemas": {**chat_components(), **format_schemas()},
        },
    }


# Operations -----------------------------------------------------------------


def _chat_completions() -> dict[str, JSONValue]:
    return {
        "operationId": "createChatCompletion",
        "summary": "Answer a chat completion, whole or streamed",
        "description": (
            "The first piece of the reply is awaited before the response "
            "starts, so an early upstream failure gets a real status. A "
            "failure after a stream started ends it with an error event "
            '(`data: {"error": {...}}`) and `data: [DONE]`.'
        ),
        "requestBody": {
            "required": True,
            "content": {JSON_MEDIA_TYPE: {"schema": ref("ChatRequest")}},
        },
        "responses": {
            "200": {
                "description": (
                    'The reply: a `chat.completion` object, or with `"stream": '
                    "true` a stream of `data: {chat.completion.chunk}` events "
                    "ending with `data: [DONE]`. JSON mode and tool calls are "
                    "emulated: such a reply is read whole and checked first, "
                    "then sent (streamed: in a few chunks once known)."
                ),
                "headers": {
                    "X-Koala-Ignored-Params": _header(
                        "The request parameters that were accepted and ignored "
                        "(comma-separated), when there were any."
                    )
                },
                "content": {
                    JSON_MEDIA_TYPE: {"schema": ref("ChatCompletion")},
                    # OpenAPI before 3.2: the schema of an event stream is the
                    # schema of each event.
                    "text/event-stream": {"schema": ref("ChunkEvent")},
                },
            },
            "400": _error(
                "A malformed request, or an option Koala cannot honour; the "
                "message names the parameter (code invalid_request, invalid_json)."
            ),
            **_auth_errors(),
            "402": _error(
                "The server's Koala account is out of credits (code "
                "insufficient_quota); retrying does not help."
            ),
            "403": _error(
                "The request chose a `protocol` this server does not let clients "
                "choose (code protocol_not_allowed) or cannot serve: the api "
                "dialect without an upstream key (code protocol_unavailable); "
                "or it came from a web page of another site (codes "
                "host_not_allowed, origin_not_allowed, cross_site_request)."
            ),
            "404": _error("The provider rejects the model (code model_not_found)."),
            "405": _error("Another method than POST (code method_not_allowed)."),
            "413": _error(
                "The body is larger than --max-body (code request_too_large)."
            ),
            "415": _error(
                "A body not sent as `Content-Type: application/json` (code "
                "unsupported_media_type), or with a `Content-Encoding` (code "
                "unsupported_content_encoding)."
            ),
            "429": _error(
                "The upstream rate limit (code rate_limit_exceeded), or more "
                "than --max-streams completions at once (code too_many_streams).",
                {"Retry-After": _header("Seconds to wait before retrying.")},
            ),
            "500": _error(
                "The provider refuses the server's own options (code "
                "server_misconfigured), or a bug (code internal_error)."
            ),
            "502": _error(
                "The upstream failed: a Cloudflare challenge, a refused upstream "
                "key, unreachable, a broken protocol, or an emulated JSON or "
                "tool-call reply that did not validate, even when asked again "
                "(codes upstream_challenge, upstream_auth, upstream_unreachable, "
                "upstream_protocol_error, upstream_error)."
            ),
            "504": _error("An upstream time limit ran out (code upstream_timeout)."),
        },
    }


def _unprefixed(operation: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """Return `operation` as served without the /v1 prefix."""
    return {
        **operation,
        "operationId": f"{operation['operationId']}Unprefixed",
        "summary": f"{operation['summary']} (also without /v1)",
    }


def _list_models() -> dict[str, JSONValue]:
    return {
        "operationId": "listModels",
        "summary": "The provider's models",
        "responses": {
            "200": _ok("The model list.", ref("ModelList")),
            **_auth_errors(),
        },
    }


def _get_model() -> dict[str, JSONValue]:
    return {
        "operationId": "retrieveModel",
        "summary": "One of the provider's models",
        "parameters": [
            {
                "name": "model",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "A model id from /v1/models.",
            }
        ],
        "responses": {
            "200": _ok("The model.", ref("Model")),
            **_auth_errors(),
            "404": _error("The provider does not list the model (model_not_found)."),
        },
    }


def _health() -> dict[str, JSONValue]:
    return {
        "operationId": "health",
        "summary": "Whether the server is up (no upstream traffic)",
        "security": [],
        "responses": {
            "200": _ok(
                "The server is up.",
                _object({"status": {"const": "ok"}}, additional=False),
            )
        },
    }


def _openapi() -> dict[str, JSONValue]:
    return {
        "operationId": "openapi",
        "summary": "This document",
        "security": [],
        "responses": {
            "200": _ok(
                "The OpenAPI description.",
                _object({"openapi": {"type": "string"}}, required=("openapi",)),
            )
        },
    }


def _ok(description: str, schema: dict[str, JSONValue]) -> dict[str, JSONValue]:
    return {
        "description": description,
        "content": {JSON_MEDIA_TYPE: {"schema": schema}},
    }


def _error(
    description: str, headers: dict[str, JSONValue] | None = None
) -> dict[str, JSONValue]:
    response = _ok(description, ERROR_REF)
    if headers:
        response["headers"] = headers
    return response


def _auth_errors() -> dict[str, JSONValue]:
    return {
        "401": _error(
            "A missing or wrong API key, when the server has one "
            "(code invalid_api_key).",
            {"WWW-Authenticate": _header("`Bearer realm=...`.")},
        )
    }


def _header(description: str) -> dict[str, JSONValue]:
    return {"description": description, "schema": {"type": "string"}}


# Schemas --------------------------------------------------------------------


def _object(
    properties: dict[str, JSONValue],
    required: tuple[str, ...] | None = None,
    *,
    additional: bool = True,
) -> dict[str, JSONValue]:
    """Return an object schema; `required` defaults to every property."""
    schema: dict[str, JSONValue] = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if not additional:
        schema["additionalProperties"] = False
    return schema
