"""`python -m koala_chat.server`: `koala serve` without the `koala` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .cli import EPILOG, add_arguments, run


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; return the exit code.

    Expected errors (a bad setting, a taken port) are one line on stderr and
    exit code 2.
    """
    parser = argparse.ArgumentParser(
        prog="python -m koala_chat.server",
        description="Serve the OpenAI chat-completions API, answered by Koala.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    from ..errors import UsageError

    try:
        return run(args)
    except (UsageError, OSError) as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
