"""`python -m koala_chat.sandbox`: `koala sandbox` without the `koala` command.

    python -m koala_chat.sandbox [--host 127.0.0.1] [--port 8000] [--pieces N]
                                 [--interval S] [--protocol any]
                                 [--api-key-file PATH]

It prints its URL and an `export KOALA_API_ENDPOINT=...` line, then serves until
Ctrl-C (or SIGTERM). The options and their checks are those of `koala sandbox`
(`koala_chat.sandbox.cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._args import run_command
from .cli import build_parser, run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; return the exit code.

    Expected failures print one line on stderr: a bad option exits 2, a taken
    port 1, as with `koala sandbox`.
    """
    return run_command(build_parser("python -m koala_chat.sandbox"), run, argv)


if __name__ == "__main__":
    sys.exit(main())
