"""The options every command that talks to a provider shares, and what they become.

Only the standard library and our light modules are imported here, so that
building the parser (and `koala --help`) stays fast; the provider is imported
when a command runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NamedTuple

from .. import defaults
from .._args import Parser, add_debug, count, positive_seconds
from ..urls import check_endpoint

__all__ = ["Connection", "connection_options"]


def connection_options() -> Parser:
    """Return a parent parser with the options of a request to Koala."""
    parent = Parser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "-m",
        "--model",
        metavar="NAME",
        default="",
        help="the model to ask (default: the provider's, see `koala models`)",
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
    add_debug(parent)
    return parent


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

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, *, environment: bool = True
    ) -> Connection:
        """Return the connection the parsed options describe.

        An empty `--endpoint` falls back to `KOALA_API_ENDPOINT` (unless
        `environment` is false); an empty value of that falls back to the
        provider's endpoint.

        Raises:
            UsageError: The endpoint is not an http(s) URL.
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
        )

    def provider_kwargs(self) -> dict[str, Any]:
        """Return the keyword options of the provider's `create_async_generator`."""
        kwargs: dict[str, Any] = {
            "proxy": self.proxy,
            "timeout": self.timeout,
            "max_retries": self.retries,
        }
        if self.endpoint is not None:
            kwargs["api_endpoint"] = self.endpoint
        return kwargs
