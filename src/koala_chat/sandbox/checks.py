"""How the sandbox checks a request in each dialect, as strictly as koala.sh would.

Pure: `check_request` takes the raw body and the `Authorization` header and
returns the dialect and the parsed body, or raises the error a real server would
answer with (`InvalidRequestError`: 400, `UnauthorizedError`: 401). The rules
are those of docs/protocol.md, "Request", "The messages dialect (2026)" and "The
official API"; the sandbox's protocol `any` recognises the dialect from the
body's shape (docs/protocol.md, "The sandbox's dialects").
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from ..defaults import SANDBOX_PROTOCOLS, SandboxProtocol
from ..errors import UsageError
from ..messages import ROLES, JSONValue
from ..providers.dialects import Dialect

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_PROTOCOLS",
    "CheckedRequest",
    "InvalidRequestError",
    "SandboxProtocol",
    "UnauthorizedError",
    "check_key",
    "check_protocol",
    "check_request",
    "dialect_of",
    "validate_body",
]


SANDBOX_API_KEY: Final = "koala-sandbox-key"
"""The key a sandbox accepts in the api dialect unless it is given another."""

# The request fields of docs/protocol.md, "Request", and the JSON type each must have.
_FIELDS: tuple[tuple[str, type], ...] = (
    ("input", str),
    ("inputHistory", list),
    ("outputHistory", list),
    ("model", str),
)


class InvalidRequestError(ValueError):
    """A request body its dialect refuses (a 400); the message names why."""


class UnauthorizedError(ValueError):
    """An api-dialect request without the right key (a 401); names no key."""


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    """A request the sandbox accepted: its dialect and its body (empty if none)."""

    dialect: Dialect
    body: Mapping[str, JSONValue]


def check_protocol(protocol: str) -> SandboxProtocol:
    """Return `protocol` if the sandbox knows it.

    Raises:
        UsageError: any other name.
    """
    if protocol in SANDBOX_PROTOCOLS:
        return protocol
    raise UsageError(
        f"unknown sandbox protocol {protocol!r}: use {', '.join(SANDBOX_PROTOCOLS)}"
    )


def check_request(
    protocol: SandboxProtocol,
    raw: bytes,
    authorization: str | None,
    api_key: str,
    *,
    any_body: bool = False,
) -> CheckedRequest:
    """Return the dialect and body of a request the sandbox accepts.

    With `any_body` the body is not checked (a scripted reply that takes any
    body), but the api dialect still wants its key.

    Raises:
        UnauthorizedError: the api dialect without `Bearer <api_key>`.
        InvalidRequestError: a body its dialect refuses.
    """
    body = _decode(raw, strict=not any_body)
    dialect = _dialect(protocol, body, authorization)
    if dialect == "api":
        check_key(authorization, api_key)
    if not any_body:
        _VALIDATORS[dialect](body)
    return CheckedRequest(dialect, body if isinstance(body, dict) else {})


def _decode(raw: bytes, *, strict: bool) -> JSONValue:
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        # msgspec nests only as deep as Python recurses.
        if strict:
            raise InvalidRequestError(f"the body is not JSON: {exc}") from exc
        return None


def _dialect(
    protocol: SandboxProtocol, body: JSONValue, authorization: str | None
) -> Dialect:
    """The dialect a request is in: the sandbox's, or (for `any`) by its shape."""
    if protocol != "any":
        return protocol
    return dialect_of(body, authorization)


def dialect_of(body: JSONValue, authorization: str | None) -> Dialect:
    """Return the dialect a request's shape names (docs/protocol.md, "The
    sandbox's dialects"): messages for a `messages` field, else api for a
    Bearer key, else history."""
    if isinstance(body, dict) and "messages" in body:
        return "messages"
    if _bearer(authorization) is not None:
        return "api"
    return "history"


def _bearer(authorization: str | None) -> str | None:
    """The token of a `Bearer` Authorization header, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def check_key(authorization: str | None, api_key: str) -> None:
    """Check that `authorization` is `Bearer <api_key>` (docs/protocol.md,
    "The official API"); KoalaImages takes the same header (docs/images.md).

    Raises:
        UnauthorizedError: no Bearer token, or another one than `api_key`.
    """
    token = _bearer(authorization)
    if not token:
        raise UnauthorizedError(
            "missing API key: send the header 'Authorization: Bearer <key>'"
        )
    # compare_digest, as a real server would, so timing tells nothing.
    if not hmac.compare_digest(token.encode(), api_key.encode()):
        raise UnauthorizedError("invalid API key")


def validate_body(raw: bytes) -> dict[str, JSONValue]:
    """Return a history-dialect request body after checking it.

    The body must be a JSON object with `input` (a string), `inputHistory` and
    `outputHistory` (lists of strings) and `model` (a string). Other fields are
    allowed and ignored.

    Raises:
        InvalidRequestError: The body is not such an object; the message names
            the first offending field.
    """
    body = _object(_decode(raw, strict=True))
    _validate_history(body)
    return body


def _validate_history(body: JSONValue) -> None:
    fields = _object(body)
    for name, kind in _FIELDS:
        if name not in fields:
            raise InvalidRequestError(f"missing field {name!r}")
        _check_type(name, fields[name], kind)


def _validate_messages(body: JSONValue) -> None:
    """docs/protocol.md, "The messages dialect (2026)"."""
    fields = _object(body)
    if "messages" not in fields:
        raise InvalidRequestError("missing field 'messages'")
    messages = fields["messages"]
    if not isinstance(messages, list):
        raise InvalidRequestError(
            f"field 'messages' must be an array, not {_json_type(messages)}"
        )
    if not messages:
        raise InvalidRequestError("field 'messages' must not be empty")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(
                f"{where} must be an object, not {_json_type(message)}"
            )
        for name, kind in (("role", str), ("content", str), ("attachments", list)):
            if name not in message:
                raise InvalidRequestError(f"{where} has no {name!r}")
            _check_type(f"{where}.{name}", message[name], kind, strings=False)
        if message["role"] not in ROLES:
            raise InvalidRequestError(
                f"{where}.role must be system, user or assistant, "
                f"not {message['role']!r}"
            )
    if "model" in fields:
        _check_type("model", fields["model"], str)


def _validate_api(body: JSONValue) -> None:
    """docs/protocol.md, "The official API"."""
    fields = _object(body)
    if "input" not in fields:
        raise InvalidRequestError("missing field 'input'")
    _check_type("input", fields["input"], str)
    for name, kind in (
        ("model", str),
        ("inputHistory", list),
        ("outputHistory", list),
        ("realTimeData", bool),
    ):
        if name in fields:
            _check_type(name, fields[name], kind)
    inputs = len(fields.get("inputHistory", ()))
    outputs = len(fields.get("outputHistory", ()))
    if inputs != outputs:
        raise InvalidRequestError(
            "inputHistory and outputHistory must have the same length, "
            f"not {inputs} and {outputs}"
        )


_VALIDATORS: Final = {
    "history": _validate_history,
    "messages": _validate_messages,
    "api": _validate_api,
}


def _object(body: JSONValue) -> dict[str, JSONValue]:
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f"the body must be a JSON object, not {_json_type(body)}"
        )
    return body


def _check_type(
    name: str, value: JSONValue, kind: type, *, strings: bool = True
) -> None:
    """Check `value` is of JSON type `kind` (a list of strings, with `strings`)."""
    if not isinstance(value, kind):
        raise InvalidRequestError(
            f"field {name!r} must be {_json_type(kind())}, not {_json_type(value)}"
        )
    if strings and isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise InvalidRequestError(
                    f"field {name!r} must be a list of strings: "
                    f"item {index} is {_json_type(item)}"
                )


def _json_type(value: object) -> str:
    """Name the JSON type of a decoded value, with its article."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
