"""`python -m koala_chat.server`: `koala serve` without the `koala` command.

The options and their checks are those of `koala serve`
(`koala_chat.server.cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._args import run_command
from .cli import build_parser, run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve `koala_chat.Koala` until Ctrl-C or SIGTERM; return the exit code.

    Expected failures print one line on stderr: a bad option or setting exits
    2, an address that cannot be bound 1, as with `koala serve`.
    """
    return run_command(build_parser("python -m koala_chat.server"), run, argv)


if __name__ == "__main__":
    sys.exit(main())
