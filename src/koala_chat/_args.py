"""The argparse pieces every command line of the package shares.

`koala` (`koala_chat._cli`), `python -m koala_chat.server` and `python -m
koala_chat.sandbox` build their parsers from these, so an option is parsed and
refused the same way whichever way a command is started. Standard library and
our error tree only: `koala --help` loads this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeAlias

from ._sentences import sentence, sentences
from .defaults import ENDPOINT_VARIABLE
from .errors import UsageError

__all__ = [
    "HelpFormatter",
    "Parser",
    "Subparsers",
    "add_command",
    "add_debug",
    "add_sandbox",
    "count",
    "exit_status",
    "port",
    "positive_count",
    "positive_seconds",
    "read_key_file",
    "run_command",
    "seconds",
    "standalone_parser",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the epilog's examples as written, with room for long options."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit code 2.

    Options are never abbreviated: with prefix matching, `--web` would be
    taken for `--web-search` wherever only the longer one exists, and an
    option added later would change what an old command line means. Its
    subcommands' parsers are `Parser`s too (argparse makes them of the
    parent's class), so the same holds for them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line and exit with code 2 (usage)."""
        line = sentences(message, f"see `{self.prog} --help`")
        self.exit(2, f"{self.prog}: error: {line}\n")

    def parse_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> argparse.Namespace:
        """Parse `args`; an unknown argument is reported by the subcommand's
        parser, so that the hint names its help (`koala serve --help`)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> Parser:
        """Return the parser of the innermost subcommand `parsed` names."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(parsed, action.dest, None)
                chosen = action.choices.get(name) if isinstance(name, str) else None
                if isinstance(chosen, Parser):
                    return chosen._chosen(parsed)
        return self


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


def port(text: str) -> int:
    """Parse a TCP port, 0 (any free one) to 65535 (an argparse `type`)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"not a port number (0 to 65535): {text!r}"
        ) from None
    return value


def read_key_file(path: str) -> str:
    """Return the key held in the file at `path`, surrounding whitespace removed.

    A key is read from a file, never taken as an option's value, which every
    user of the machine could read in the process list. The messages name the
    file, never its content.

    Raises:
        UsageError: the file cannot be read, is not text, or holds no key.
    """
    try:
        with open(path, encoding="utf-8") as file:
            key = file.read().strip()
    except OSError as exc:
        raise UsageError(
            f"cannot read the key file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    except UnicodeDecodeError:
        raise UsageError(f"the key file {path} is not UTF-8 text") from None
    if not key:
        raise UsageError(f"the key file {path} is empty")
    return key


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


def add_sandbox(
    parser: argparse._ActionsContainer, what: str, *, help: str | None = None
) -> None:
    """Add `--sandbox`: talk to a Koala-protocol sandbox started in this process.

    `what` says what the command does with it, e.g. "answer from"; `help`
    replaces the whole help text.
    """
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help=help
        or f"{what} a Koala-protocol sandbox started in this process "
        f"(offline; excludes --endpoint, ignores ${ENDPOINT_VARIABLE})",
    )


def exit_status(exc: SystemExit) -> int:
    """Return the exit code a `SystemExit` (from argparse, say) stands for."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def add_command(
    subparsers: Subparsers,
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Register the command `name` on the `koala` command's subparsers.

    The same `add_arguments` builds `standalone_parser`, so a command takes the
    same options however it is started.
    """
    parser = subparsers.add_parser(
        name,
        formatter_class=HelpFormatter,
        help=summary,
        description=description,
        epilog=epilog,
    )
    add_arguments(parser)
    add_debug(parser)
    parser.set_defaults(handler=run)


def standalone_parser(
    prog: str,
    *,
    description: str,
    epilog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> Parser:
    """Return the parser of a command started on its own (`python -m`)."""
    parser = Parser(
        prog=prog,
        formatter_class=HelpFormatter,
        description=description,
        epilog=epilog,
    )
    add_arguments(parser)
    return parser


def run_command(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse `argv` with `parser`, call `run`, and return the exit code.

    The entry point of a `python -m` command: the exit codes are those of the
    `koala` command for the same failures (2 for usage, 1 for a system error
    such as a taken port, 130 for Ctrl-C), each reported in one line.
    """
    try:
        return run(parser.parse_args(argv))
    except SystemExit as exc:
        return exit_status(exc)
    except KeyboardInterrupt:
        return 130
    except (UsageError, OSError) as exc:
        sys.stderr.write(f"{parser.prog}: error: {sentence(str(exc))}\n")
        sys.stderr.flush()
        return 2 if isinstance(exc, UsageError) else 1
