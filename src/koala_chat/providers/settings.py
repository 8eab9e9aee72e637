"""Koala's own keyword options: the dialect, the API key and web search.

docs/protocol.md, "Choosing a dialect": `protocol` (else `KOALA_PROTOCOL`) is
`history`, `messages`, `api` or `auto`; `api_key` (else `KOALA_API_KEY`) given
without a protocol means `api`; nothing at all means `auto`. Everything is
checked before any request is sent, and the key is held by `ApiKey`, whose
repr never shows it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .. import defaults
from ..errors import UsageError
from .dialects import ApiKey, Dialect, Protocol, choose_protocol

__all__ = [
    "API_KEY_VARIABLE",
    "PROTOCOL_VARIABLE",
    "DialectSettings",
    "api_key",
    "dialect_of",
]

#: The environment variable that names the protocol when the caller does not.
PROTOCOL_VARIABLE: Final = defaults.PROTOCOL_VARIABLE
#: The environment variable that holds the key of the official API.
API_KEY_VARIABLE: Final = defaults.API_KEY_VARIABLE


@dataclass(frozen=True, slots=True)
class DialectSettings:
    """The checked `protocol`, `api_key` and `web_search` of one call."""

    protocol: Protocol = "auto"
    api_key: ApiKey | None = field(default=None, repr=False)
    web_search: bool | None = None

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> DialectSettings:
        """Return the settings of `options`, the environment filling the gaps.

        Raises:
            UsageError: an unknown protocol, a key that cannot be sent, the api
                protocol without a key, or a `web_search` that is not a boolean.
        """
        env = os.environ if environ is None else environ
        key = api_key(options.get("api_key"), env)
        protocol = options.get("protocol") or env.get(PROTOCOL_VARIABLE) or None
        if protocol is not None and not isinstance(protocol, str):
            raise UsageError(
                f"protocol must be a string, not {type(protocol).__name__}"
            )
        chosen = choose_protocol(protocol, has_key=key is not None)
        if chosen == "api" and key is None:
            raise UsageError(
                f"protocol 'api' needs a key: set {API_KEY_VARIABLE} or pass api_key"
            )
        web_search = options.get("web_search")
        if web_search is not None and not isinstance(web_search, bool):
            raise UsageError(
                "web_search must be True, False or None, not "
                f"{type(web_search).__name__}"
            )
        return cls(chosen, key, web_search)


def api_key(value: object, environ: Mapping[str, str] | None = None) -> ApiKey | None:
    """Return the key given (a string or an `ApiKey`), else `KOALA_API_KEY`, else None.

    An empty value counts as not given.

    Raises:
        UsageError: the key is not a string or cannot be a header value.
    """
    if isinstance(value, ApiKey):
        return value
    if value is None or value == "":
        env = os.environ if environ is None else environ
        value = env.get(API_KEY_VARIABLE, "").strip() or None
        if value is None:
            return None
    if not isinstance(value, str):
        raise UsageError(f"api_key must be a string, not {type(value).__name__}")
    return ApiKey(value)


def dialect_of(protocol: Protocol) -> Dialect:
    """Return the dialect whose models stand for `protocol` (`auto`: history)."""
    return "history" if protocol == "auto" else protocol
