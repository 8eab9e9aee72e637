"""The OpenAPI description of the Responses and legacy completions routes.

`koala_chat.server.openapi` adds `openapi_paths()` to its paths and
`openapi_schemas()` to its components. Each request schema is generated from
its format's parameter table (`responses_request.PARAMETERS`,
`completions.PARAMETERS`), as chat completions' is from
`koala_chat._contract.params`. The legacy completion's schema is generated
from its struct (`completions.TextCompletion`); the Response's is written
here, after `responses.py`; the errors are `failures.py`'s (`ErrorResponse`).
"""

from __future__ import annotations

from typing import Final

from ...messages import JSONValue
from ..components import (
    ERROR_REF,
    JSON_MEDIA_TYPE,
    event_schema,
    ref,
    reply_components,
    request_schema,
)
from . import completions, responses_request

__all__ = ["openapi_paths", "openapi_schemas"]

_STRICT: Final = "refused as unknown with --strict"
_ERRORS: Final = {
    "400": "A malformed request, or an option Koala cannot honour; the message "
    "names the parameter as this API spells it (code invalid_request).",
    "401": "A missing or wrong API key, when the server has one.",
    "402": "The server's Koala account is out of credits.",
    "403": "A `protocol` this server does not let clients choose, or a request "
    "from a web page of another site.",
    "404": "The provider rejects the model (code model_not_found).",
    "405": "Another method than POST.",
    "413": "The body is larger than --max-body.",
    "415": "A body not sent as `Content-Type: application/json`.",
    "429": "The upstream rate limit, or more than --max-streams at once.",
    "500": "The provider refuses the server's own options, or a bug.",
    "502": "The upstream failed, or an emulated reply did not validate even "
    "when asked again.",
    "504": "An upstream time limit ran out.",
}


def openapi_paths() -> dict[str, JSONValue]:
    """Return the path items of `/v1/responses` and `/v1/completions`."""
    return {
        "/v1/responses": {
            "post": _operation(
                "createResponse",
                "Answer a response of the OpenAI Responses API, whole or streamed",
                "ResponsesRequest",
                'A `response` object, or with `"stream": true` the API\'s '
                "events (`event:` and `data:` lines, `sequence_number` from 0, "
                "no `[DONE]`), ending with `response.completed`, "
                "`response.incomplete` (cut by `max_output_tokens`) or "
                "`response.failed` (a failure after the start).",
                "Response",
                "ResponseEvent",
            )
        },
        "/v1/completions": {
            "post": _operation(
                "createCompletion",
                "Answer a legacy text completion, whole or streamed",
                "CompletionRequest",
                'A `text_completion` object, or with `"stream": true` a '
                "stream of `data: {text_completion}` chunks ending with "
                "`data: [DONE]` (an error that ends it early is "
                '`data: {"error": {...}}`).',
                "TextCompletion",
                "TextCompletionEvent",
            )
        },
    }


def _operation(
    operation_id: str,
    summary: str,
    request: str,
    reply: str,
    whole: str,
    event: str,
) -> dict[str, JSONValue]:
    errors: dict[str, JSONValue] = {
        status: {
            "description": description,
            "content": {JSON_MEDIA_TYPE: {"schema": ERROR_REF}},
        }
        for status, description in _ERRORS.items()
    }
    return {
        "operationId": operation_id,
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {JSON_MEDIA_TYPE: {"schema": ref(request)}},
        },
        "responses": {
            "200": {
                "description": reply,
                "headers": {
                    "X-Koala-Ignored-Params": {
                        "description": "The request parameters that were "
                        "accepted and ignored, when there were any.",
                        "schema": {"type": "string"},
                    }
                },
                "content": {
                    JSON_MEDIA_TYPE: {"schema": ref(whole)},
                    "text/event-stream": {"schema": ref(event)},
                },
            },
            **errors,
        },
    }


def openapi_schemas() -> dict[str, JSONValue]:
    """Return the component schemas that `openapi_paths` refers to."""
    return {
        "ResponsesRequest": request_schema(
            responses_request.PARAMETERS, unknown=_STRICT
        ),
        "Response": _response(),
        "ResponseEvent": event_schema(
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "sequence_number": {"type": "integer", "minimum": 0},
                },
                "required": ["type", "sequence_number"],
            },
            named=True,
        ),
        "CompletionRequest": request_schema(completions.PARAMETERS, unknown=_STRICT),
        **reply_components(completions.TextCompletion),
        "TextCompletionEvent": event_schema(
            {"anyOf": [ref("TextCompletion"), ERROR_REF]}, named=False
        ),
    }


def _usage(*names: str) -> dict[str, JSONValue]:
    return {
        "type": "object",
        "properties": {name: {"type": "integer", "minimum": 0} for name in names},
        "required": list(names),
        "description": "Estimates: about four characters per token.",
    }


def _response() -> dict[str, JSONValue]:
    item = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"enum": ["message", "function_call"]},
            "status": {"enum": ["completed", "incomplete"]},
        },
        "required": ["id", "type", "status"],
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "status": {"enum": ["completed", "incomplete"]},
            "model": {"type": "string"},
            "output": {"type": "array", "items": item},
            "usage": _usage("input_tokens", "output_tokens", "total_tokens"),
        },
        "required": ["id", "object", "created_at", "status", "model", "output"],
    }
