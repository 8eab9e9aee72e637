"""Exit codes of the `koala` command and the one-line report of an error.

Scripts branch on the exit code, as they do with curl's; people read the line.
Every expected error maps to one code here and nowhere else:

    0    success (`koala check`: the endpoint works)
    1    any other error
    2    usage: a bad option, model, message file or prompt
    3    transport: could not connect, the proxy failed, a time limit ran out
    4    rate limit: the free quota is used up (402 or 429)
    5    status: a Cloudflare challenge, a refused API key, no credits left, or
         another error status
    6    protocol: the reply is not a Koala event stream
    130  interrupted (Ctrl-C)
    141  the reader of stdout went away (a broken pipe, as with `| head -1`)
    143  terminated (SIGTERM), after ending the reply's line
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING

from .._mro import lookup
from ..errors import (
    AuthenticationError,
    CloudflareChallengeError,
    ConnectError,
    CreditsExhaustedError,
    KoalaError,
    KoalaTimeoutError,
    ModelNotFoundError,
    NotEventStreamError,
    PlanError,
    ProtocolError,
    ProxyError,
    RateLimitError,
    ServerError,
    StatusError,
    TransportError,
    UsageError,
)

if TYPE_CHECKING:
    from .hints import Situation

__all__ = [
    "EXIT_CODES",
    "EXIT_CODES_HELP",
    "FAILURES",
    "ExitCode",
    "exit_code_for",
    "hint_for",
    "one_line",
    "reason_for",
]


class ExitCode(IntEnum):
    """What the `koala` process returns."""

    OK = 0
    ERROR = 1
    USAGE = 2
    TRANSPORT = 3
    RATE_LIMIT = 4
    STATUS = 5
    PROTOCOL = 6
    INTERRUPTED = 130
    BROKEN_PIPE = 141
    TERMINATED = 143


EXIT_CODES_HELP = """\
exit codes:
  0    success (koala check: the endpoint works)
  1    any other error
  2    usage: a bad option, model, message file or prompt
  3    could not connect, the proxy failed or a time limit ran out
  4    rate limited: the free quota is used up (402, 429)
  5    a Cloudflare challenge, a refused API key, no credits left, or
       another error status
  6    the reply is not a Koala event stream
  130  interrupted (Ctrl-C)
  141  stdout was closed early (| head)
  143  terminated (SIGTERM)"""


#: The exit code of each error class; a subclass without an entry of its own
#: takes its nearest ancestor's (`koala_chat._mro.lookup`), anything else ERROR.
EXIT_CODES: Mapping[type[BaseException], ExitCode] = {
    UsageError: ExitCode.USAGE,
    TransportError: ExitCode.TRANSPORT,
    RateLimitError: ExitCode.RATE_LIMIT,
    # A refused key or an empty account: waiting does not help, unlike a rate
    # limit, so they share the code of the other error statuses.
    AuthenticationError: ExitCode.STATUS,
    CreditsExhaustedError: ExitCode.STATUS,
    StatusError: ExitCode.STATUS,
    ProtocolError: ExitCode.PROTOCOL,
}

#: Why a request failed and what the user can do about it, by error class (looked
#: up as `EXIT_CODES` is). `{command}` in a hint is the subcommand that failed.
FAILURES: Mapping[type[BaseException], tuple[str, str]] = {
    ModelNotFoundError: ("unknown model", "`koala models` lists the known models"),
    UsageError: ("usage error", "see `koala {command} --help`"),
    ProxyError: (
        "proxy failed",
        "check that the proxy runs and the URL and credentials are right",
    ),
    ConnectError: (
        "unreachable",
        "check --endpoint (or KOALA_API_ENDPOINT) and the network",
    ),
    KoalaTimeoutError: ("timeout", "try again, or allow more time with --timeout"),
    TransportError: ("connection lost", "try again"),
    RateLimitError: (
        "rate limit",
        "wait for the quota to renew, or go through another --proxy",
    ),
    CloudflareChallengeError: (
        "cloudflare challenge",
        "try later or from another network (--proxy)",
    ),
    AuthenticationError: (
        "api key refused",
        "the key comes from --api-key-file, else KOALA_API_KEY: check it there",
    ),
    CreditsExhaustedError: (
        "out of credits",
        "the account behind KOALA_API_KEY has no credits left: renew the plan",
    ),
    PlanError: (
        "not in the plan",
        "the plan of the account behind KOALA_API_KEY lacks it: choose "
        "another --model or --quality, or upgrade the plan",
    ),
    ServerError: ("server error", "the service failed: try again later"),
    StatusError: (
        "error status",
        "check that --endpoint (or KOALA_API_ENDPOINT) is a Koala API: "
        "`koala check --all` tells",
    ),
    NotEventStreamError: (
        "not an event stream",
        "is --endpoint (or KOALA_API_ENDPOINT) a Koala API? `koala check` tells",
    ),
    ProtocolError: (
        "protocol error",
        "is --endpoint (or KOALA_API_ENDPOINT) a Koala API? `koala check` tells",
    ),
}

_UNKNOWN_FAILURE = ("error", "rerun with --debug for details")


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the exit code for an error (ERROR for anything unexpected)."""
    return lookup(EXIT_CODES, exc, ExitCode.ERROR)


def reason_for(exc: BaseException) -> str:
    """Return a short machine-friendly name for why a request failed."""
    return lookup(FAILURES, exc, _UNKNOWN_FAILURE)[0]


def _hint(exc: BaseException, command: str) -> str:
    """Return what the user can do about `exc`."""
    return lookup(FAILURES, exc, _UNKNOWN_FAILURE)[1].format(command=command)


def hint_for(exc: KoalaError, situation: Situation) -> str:
    """Return the one next step for `exc` in `situation` (not yet a sentence)."""
    from .hints import next_step

    return next_step(exc, situation, _hint(exc, situation.command))


def one_line(
    exc: BaseException, command: str = "COMMAND", situation: Situation | None = None
) -> str:
    """Return the error as one line of two sentences: what happened, what to do.

    `command` is the subcommand that failed, named in the usage hint;
    `situation` (by default, that command's alone) makes the next step
    precise (see `hints.py`).
    """
    from .._sentences import sentences
    from .hints import Situation

    situation = situation or Situation(command=command)
    if isinstance(exc, KoalaError):
        message, hint = str(exc), hint_for(exc, situation)
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror or exc}"
        hint = "check the file name and its permissions"
    elif isinstance(exc, OSError):
        # A system error with no file: an address already in use, say.
        message, hint = str(exc), "rerun with --debug for the traceback"
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
        hint = "rerun with --debug for the traceback, and please report it"
    return sentences(message, hint)
