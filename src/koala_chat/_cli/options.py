"""The options every command that talks to a provider shares, and what they become.

Only the standard library and our light modules are imported here, so that
building the parser (and `koala --help`) stays fast; the provider is imported
when a command runs.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .. import defaults
from .._args import Parser, add_debug, count, positive_seconds, read_key_file
from .._urls import check_endpoint
from ..errors import UsageError

if TYPE_CHECKING:
    from .._contract.options import ProviderOptions
    from ..providers.dialects import ApiKey

__all__ = [
    "Connection",
    "add_dialect_options",
    "configured_key",
    "configured_protocol",
    "connection_options",
    "sandbox_wanted",
    "web_search",
]

_WEB_SEARCH: Final = {"on": True, "off": False}


def connection_options() -> Parser:
    """Return a parent parser with the options of a request to Koala."""
    parent = Parser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "-m",
        "--model",
        metavar="NAME",
        default="",
        help="the model to ask (default: the dialect's, see `koala models`)",
    )
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"the Koala API URL (default: ${defaults.ENDPOINT_VARIABLE}, "
        f"else {defaults.API_ENDPOINT})",
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="go through this proxy: http, https, socks4(a) or socks5(h), "
        "credentials in the URL, e.g. socks5h://user:pass@host:1080",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=defaults.TOTAL_TIMEOUT,
        help=f"time limit for the whole request (default: {defaults.TOTAL_TIMEOUT:g})",
    )
    group.add_argument(
        "--retries",
        metavar="N",
        type=count,
        default=defaults.MAX_RETRIES,
        help="further attempts after a connection error, a time-out, 429 or 5xx, "
        f"before any text arrived (default: {defaults.MAX_RETRIES})",
    )
    add_dialect_options(parent)
    add_debug(parent)
    return parent


def add_dialect_options(
    parser: argparse.ArgumentParser, *, web_search: bool = True
) -> None:
    """Add `--protocol`, `--api-key-file` (never a key's value) and, unless
    `web_search` is false, `--web-search`."""
    group = parser.add_argument_group(
        "dialect (`koala check --all` tells which one the endpoint speaks)"
    )
    group.add_argument(
        "--protocol",
        choices=defaults.PROTOCOLS,
        help=f"how to talk to the endpoint (default: ${defaults.PROTOCOL_VARIABLE}, "
        "else api when a key is set, else auto: history, then messages if refused)",
    )
    group.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="read the key of the official API from this file (default: "
        f"${defaults.API_KEY_VARIABLE}); a key is never given as an option's "
        "value, which the process list would show",
    )
    if web_search:
        group.add_argument(
            "--web-search",
            choices=tuple(_WEB_SEARCH),
            help="ask for live web data (default: the dialect's own: on for "
            "messages, off for history and api)",
        )


def sandbox_wanted(args: argparse.Namespace) -> bool:
    """Return whether `--sandbox` was given (False where the command lacks it).

    Raises:
        UsageError: `--sandbox` and `--endpoint` both given.
    """
    wanted = bool(getattr(args, "sandbox", False))
    if wanted and getattr(args, "endpoint", None):
        raise UsageError("--sandbox and --endpoint exclude each other: choose one")
    return wanted


def web_search(value: str | None) -> bool | None:
    """Return the `web_search` option for a `--web-search` value (None: absent)."""
    return None if value is None else _WEB_SEARCH[value]


class Connection(NamedTuple):
    """Where and how to reach Koala, from the command line and the environment.

    A NamedTuple rather than a dataclass: `dataclasses` imports `inspect`, which
    alone costs a tenth of the startup budget of `koala --help`.
    """

    model: str = ""
    endpoint: str | None = None
    proxy: str | None = None
    timeout: float = defaults.TOTAL_TIMEOUT
    retries: int = defaults.MAX_RETRIES
    #: The dialect asked for (`--protocol`, else KOALA_PROTOCOL); None: not set.
    protocol: str | None = None
    api_key: ApiKey | None = None
    web_search: bool | None = None

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, *, environment: bool = True
    ) -> Connection:
        """Return the connection the parsed options describe.

        An empty `--endpoint` falls back to `KOALA_API_ENDPOINT` (unless
        `environment` is false); an empty value of that falls back to the
        provider's endpoint. `--protocol` falls back to `KOALA_PROTOCOL`, and
        `--api-key-file` to `KOALA_API_KEY`, whatever `environment` says.

        Raises:
            UsageError: The endpoint is not an http(s) URL, KOALA_PROTOCOL names
                no dialect, or the key cannot be read or is not a valid key.
        """
        configured = os.environ.get(defaults.ENDPOINT_VARIABLE) if environment else None
        endpoint = args.endpoint or configured or None
        if endpoint is not None:
            check_endpoint(endpoint)
        return cls(
            model=args.model or "",
            endpoint=endpoint,
            proxy=args.proxy or None,
            timeout=args.timeout,
            retries=args.retries,
            protocol=configured_protocol(args.protocol),
            api_key=configured_key(args.api_key_file),
            web_search=web_search(args.web_search),
        )

    @property
    def dialect_setting(self) -> str:
        """The protocol in use: the one asked for, else api with a key, else auto."""
        from ..providers.dialects import choose_protocol

        return choose_protocol(self.protocol, has_key=self.api_key is not None)

    def dialect_kwargs(self) -> dict[str, Any]:
        """Return the provider's dialect options: only those that were set.

        Nothing set sends nothing, so a provider without dialects (or the seed's
        call) sees the options it always saw.

        Raises:
            UsageError: the api dialect is asked for without a key.
        """
        kwargs: dict[str, Any] = {}
        if self.protocol is not None or self.api_key is not None:
            kwargs["protocol"] = self.dialect_setting
        if kwargs.get("protocol") == "api" and self.api_key is None:
            raise UsageError(
                "the api dialect needs the key of the official API: set "
                f"{defaults.API_KEY_VARIABLE} or give --api-key-file PATH"
            )
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        if self.web_search is not None:
            kwargs["web_search"] = self.web_search
        return kwargs

    def provider_options(self) -> ProviderOptions:
        """Return the options of the provider's `create_async_generator`.

        Raises:
            UsageError: the api dialect is asked for without a key.
        """
        # Imported here: `koala --help` must not load dataclasses.
        from .._contract.options import ProviderOptions

        kwargs: dict[str, Any] = {
            "proxy": self.proxy,
            "timeout": self.timeout,
            "max_retries": self.retries,
        }
        if self.endpoint is not None:
            kwargs["api_endpoint"] = self.endpoint
        kwargs.update(self.dialect_kwargs())
        return ProviderOptions.parse(kwargs)


def configured_protocol(option: str | None) -> str | None:
    """Return `--protocol`, else KOALA_PROTOCOL when it names one, else None.

    Raises:
        UsageError: KOALA_PROTOCOL is set to something else.
    """
    if option:
        return option
    configured = os.environ.get(defaults.PROTOCOL_VARIABLE, "").strip()
    if not configured:
        return None
    if configured not in defaults.PROTOCOLS:
        raise UsageError(
            f"{defaults.PROTOCOL_VARIABLE}={configured!r} names no dialect: use "
            f"{', '.join(defaults.PROTOCOLS)}"
        )
    return configured


def configured_key(path: str | None) -> ApiKey | None:
    """Return the key from `--api-key-file`, else KOALA_API_KEY, else None.

    Raises:
        UsageError: the file cannot be read or is empty; the key is malformed.
    """
    from ..providers.dialects import ApiKey

    value = (
        read_key_file(path)
        if path is not None
        else os.environ.get(defaults.API_KEY_VARIABLE, "").strip()
    )
    return ApiKey(value) if value else None
