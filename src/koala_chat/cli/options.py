"""The options every command that talks to Koala shares, and what they become.

Only the standard library and our light modules are imported here, so that
building the parser (and `koala --help`) stays fast; the provider is imported
when a request is made.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Final, NamedTuple, NoReturn, TypeAlias

from .. import defaults
from ..urls import check_endpoint

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "ENDPOINT_VARIABLE",
    "Connection",
    "HelpFormatter",
    "Parser",
    "Subparsers",
    "add_debug",
    "connection_options",
]

ENDPOINT_VARIABLE: Final = defaults.ENDPOINT_VARIABLE
DEFAULT_TIMEOUT: Final = defaults.TOTAL_TIMEOUT
DEFAULT_RETRIES: Final = defaults.MAX_RETRIES


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the epilog's examples as written and show defaults where given."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line and exit with code 2 (usage)."""
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


def positive_seconds(text: str) -> float:
    """Parse a finite number of seconds > 0 (an argparse `type`)."""
    value = _float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def seconds(text: str) -> float:
    """Parse a finite number of seconds >= 0 (an argparse `type`)."""
    value = _float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, not {text!r}"
        ) from None


def count(text: str, least: int = 0) -> int:
    """Parse a whole number >= `least` (an argparse `type`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, not {text!r}"
        ) from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, not {value}")
    return value


def positive_count(text: str) -> int:
    """Parse a whole number >= 1 (an argparse `type`)."""
    return count(text, 1)


def add_debug(parser: argparse.ArgumentParser) -> None:
    """Accept `--debug` after a subcommand too, without hiding `koala --debug`.

    SUPPRESS keeps the subcommand from resetting a value the main parser set.
    """
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error",
    )


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
        help=f"the Koala API URL (default: ${ENDPOINT_VARIABLE}, "
        "else https://koala.sh/api/gpt/)",
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
        default=DEFAULT_TIMEOUT,
        help=f"time limit for the whole request (default: {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--retries",
        metavar="N",
        type=count,
        default=DEFAULT_RETRIES,
        help="further attempts after a connection error, a time-out, 429 or 5xx, "
        f"before any text arrived (default: {DEFAULT_RETRIES})",
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
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES

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
        configured = os.environ.get(ENDPOINT_VARIABLE) if environment else None
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
        """Return the keyword options of `Koala.create_async_generator`."""
        kwargs: dict[str, Any] = {
            "proxy": self.proxy,
            "timeout": self.timeout,
            "max_retries": self.retries,
        }
        if self.endpoint is not None:
            kwargs["api_endpoint"] = self.endpoint
        return kwargs
