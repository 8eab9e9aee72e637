"""The `koala` command line.

`main(argv, provider=...)` runs the command with a provider class (default
`koala_chat.Koala`) and returns its exit code; `run()` is the console script
`koala` (and `python -m koala_chat`). `koala --help` lists the commands and the
exit codes.
"""

from __future__ import annotations

from .app import main, run

__all__ = ["main", "run"]
