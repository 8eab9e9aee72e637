"""The parameters of `POST /v1/images/generations` and its OpenAPI description.

The tables the handler (`images.py`) reads and the document describes, stated
once; no import of the routes, so that `openapi.py` can add the path item.
"""

from __future__ import annotations

from typing import Final

from .. import defaults
from ..messages import JSONValue
from .components import ERROR_REF, JSON_MEDIA_TYPE

__all__ = ["FORMATS", "KNOWN", "PATH", "QUALITIES", "openapi_paths"]

PATH: Final = "/v1/images/generations"
#: OpenAI's qualities and Koala's; `auto` leaves it to the service.
QUALITIES: Final[dict[str, str | None]] = {
    "low": "fast",
    "medium": "medium",
    "high": "high",
    "hd": "high",
    "auto": None,
}
FORMATS: Final = ("url", "b64_json")


def _parameters() -> dict[str, JSONValue]:
    """Return the request's parameters, by name, with their schemas.

    `user` is OpenAI's and means nothing here.
    """
    return {
        # Not blank: Python's whitespace (str.strip) is JSON Schema's \s and
        # a few control characters more.
        "prompt": {"type": "string", "pattern": r"[^\s\u001c-\u001f\u0085]"},
        "model": {
            "type": ["string", "null"],
            "enum": [*defaults.IMAGE_MODELS, "", None],
        },
        "n": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": defaults.IMAGES_MAX_COUNT,
        },
        "size": {
            "type": ["string", "null"],
            "pattern": f"^(auto|{defaults.IMAGE_SIZE_PATTERN})$",
        },
        "quality": {
            "type": ["string", "null"],
            "enum": [*QUALITIES, None],
            "description": "low is Koala's fast, hd its high; ignored for "
            "another model than gpt-image-2.",
        },
        "style": {
            "type": ["string", "null"],
            "description": "Koala's style when it is one of "
            f"{', '.join(defaults.IMAGE_STYLES)}; any other is ignored.",
        },
        "response_format": {"type": ["string", "null"], "enum": [*FORMATS, None]},
        "user": {"type": ["string", "null"]},
    }


#: The parameters read (`_parameters`); any other is ignored (--strict: refused).
KNOWN: Final = frozenset(_parameters())


def _failing(description: str) -> dict[str, JSONValue]:
    """Return a response of the error body (`ERROR_REF`)."""
    return {
        "description": description,
        "content": {JSON_MEDIA_TYPE: {"schema": ERROR_REF}},
    }


def openapi_paths() -> dict[str, JSONValue]:
    """Return the OpenAPI path item of the route (server/openapi.py adds it)."""
    request: JSONValue = {
        "type": "object",
        "required": ["prompt"],
        "properties": _parameters(),
    }
    image: JSONValue = {
        "type": "object",
        "properties": {
            "url": {"type": "string"},
            "b64_json": {"type": "string"},
            "revised_prompt": {"type": "string"},
        },
    }
    return {
        PATH: {
            "post": {
                "operationId": "createImages",
                "summary": "Images from KoalaImages (needs the server's upstream key)",
                "requestBody": {
                    "required": True,
                    "content": {JSON_MEDIA_TYPE: {"schema": request}},
                },
                "responses": {
                    "200": {
                        "description": "The images; `revised_prompt` is the alt text.",
                        "content": {
                            JSON_MEDIA_TYPE: {
                                "schema": {
                                    "type": "object",
                                    "required": ["created", "data"],
                                    "properties": {
                                        "created": {"type": "integer"},
                                        "data": {"type": "array", "items": image},
                                    },
                                }
                            }
                        },
                    },
                    "400": _failing(
                        "A bad parameter, or a body that is not a JSON object "
                        "(codes invalid_request, invalid_json)."
                    ),
                    "401": _failing(
                        "A missing or wrong API key, when the server has one "
                        "(code invalid_api_key)."
                    ),
                    "402": _failing(
                        "The upstream account is out of credits (code "
                        "insufficient_quota)."
                    ),
                    "403": _failing(
                        "No upstream key (code protocol_unavailable), the upstream "
                        "plan lacks the model or quality (code model_not_in_plan), "
                        "or a web page of another site (codes host_not_allowed, "
                        "origin_not_allowed, cross_site_request)."
                    ),
                    "404": _failing("An unknown model (code model_not_found)."),
                    "405": _failing(
                        "Another method than POST (code method_not_allowed)."
                    ),
                    "413": _failing(
                        "The body is larger than --max-body (code request_too_large)."
                    ),
                    "415": _failing(
                        "A body not sent as `Content-Type: application/json`, or "
                        "with a `Content-Encoding`."
                    ),
                    "429": {
                        **_failing(
                            "The upstream rate limit (code rate_limit_exceeded), or "
                            "more than --max-streams requests at once (code "
                            "too_many_streams)."
                        ),
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before retrying.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "500": _failing(
                        "The server's own options are refused (code "
                        "server_misconfigured), or a bug (code internal_error)."
                    ),
                    "502": _failing(
                        "The upstream failed: a refused upstream key, unreachable, "
                        "or a reply that is not a list of images."
                    ),
                    "504": _failing(
                        "An upstream time limit ran out, the fetch of an image for "
                        "b64_json included (code upstream_timeout)."
                    ),
                },
            }
        }
    }
