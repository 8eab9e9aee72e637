"""The `koala` command: its parser, the dispatch, and errors to exit codes.

Building the parser imports only the standard library and our light modules
(errors, messages, the command modules of the server and the sandbox), so that
`koala --help` starts fast; the provider, and with it aiohttp, is imported when
a command runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from .._args import HelpFormatter, Parser, exit_status
from ..defaults import (
    API_ENDPOINT,
    API_KEY_VARIABLE,
    ENDPOINT_VARIABLE,
    PROTOCOL_VARIABLE,
)
from ..sandbox import cli as sandbox_command
from ..server import cli as serve_command
from . import chat, check, image, keys, models, usage
from .exits import EXIT_CODES_HELP, ExitCode, exit_code_for
from .options import connection_options
from .provider import Provider, default_provider

__all__ = ["build_parser", "main"]

PROG = "koala"

EPILOG = f"""\
examples:
  koala chat "Tell me about koalas"         stream one reply
  koala chat                                an interactive session (on a terminal)
  echo "Hi" | koala chat --json             one JSON value per line, for scripts
  koala demo                                the seed's conversation, offline
  koala sandbox                             a local Koala-protocol server
  koala check --json                        does the endpoint work? how fast?
  koala check --all                         which dialect does it speak?
  koala models                              the known models
  koala image -n 2 "a koala"                images from KoalaImages, saved here
  koala serve                               an OpenAI-compatible server
  koala COMMAND --help                      the options of a command

environment:
  {ENDPOINT_VARIABLE}  the Koala API URL to use instead of {API_ENDPOINT}
                      (a `koala sandbox`, for instance); --endpoint wins over it
  {PROTOCOL_VARIABLE}      the dialect: auto (the default), history, messages or
                      api; --protocol wins over it
  {API_KEY_VARIABLE}       the key of koala.sh's official API (the api dialect, chosen
                      by a key alone); --api-key-file wins over it

Expected errors print one line on stderr (--debug adds the traceback).
{EXIT_CODES_HELP}
"""


def build_parser() -> Parser:
    """Return the parser of the `koala` command and all its subcommands."""
    parser = Parser(
        prog=PROG,
        formatter_class=HelpFormatter,
        description="Chat with Koala (koala.sh) from a terminal or a script.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands"
    )
    connection = connection_options()
    chat.add_parsers(subparsers, connection)
    check.add_parser(subparsers, connection)
    models.add_parser(subparsers)
    image.add_parser(subparsers)
    sandbox_command.add_parser(subparsers)
    serve_command.add_parser(subparsers)
    keys.add_parser(subparsers)
    usage.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, *, provider: Provider | None = None) -> int:
    """Run the `koala` command with `argv` (default: `sys.argv[1:]`).

    `provider` is the provider class every command uses (default:
    `koala_chat.Koala`, imported only when a command runs); the commands find it
    on `args.provider`. Returns the exit code (see `koala --help`) instead of
    exiting, so that tests can call it in-process. Expected errors are reported
    on stderr in one line.

    Example:
        >>> main(["models"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exit_status(exc)
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE
    try:
        with _sigterm_like_ctrl_c(args.command):
            args.provider = provider if provider is not None else default_provider()
            return int(args.handler(args))
    except KeyboardInterrupt:
        from .termination import terminated

        return ExitCode.TERMINATED if terminated() else ExitCode.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    except SystemExit as exc:
        return exit_status(exc)
    except Exception as exc:
        from .redaction import report_error

        report_error(exc, args)
        return exit_code_for(exc)


#: The commands during which SIGTERM acts as Ctrl-C (see `termination.py`);
#: the servers answer SIGTERM with their own graceful stop.
_SIGTERM_COMMANDS = frozenset({"chat", "demo", "check", "models", "image"})


def _sigterm_like_ctrl_c(command: str) -> contextlib.AbstractContextManager[None]:
    if command not in _SIGTERM_COMMANDS:
        return contextlib.nullcontext()
    from .termination import handle_sigterm

    return handle_sigterm()


def run() -> NoReturn:
    """The console script: exit with `main()`'s code."""
    sys.exit(main())


def _silence_stdout() -> None:
    """Point stdout at /dev/null after its reader left (Python docs, "Note on
    SIGPIPE"), so that the final flush at exit does not fail again."""
    # A captured stdout (tests) has no file descriptor: nothing to silence.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
