"""`koala chat --web`: the chat page of `koala serve`, in the default browser.

The server runs in this process on a free loopback port, in front of a sandbox
(`--sandbox`) or the configured endpoint, and the page opens with the standard
`webbrowser` module. Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser

from ..errors import UsageError
from .local import maybe_sandbox
from .options import Connection, sandbox_wanted

__all__ = ["run_web"]

#: Only this machine can reach the page (and so spend the Koala quota).
HOST = "127.0.0.1"


def run_web(args: argparse.Namespace) -> int:
    """Serve the chat page until Ctrl-C and open it; return the exit code.

    Raises:
        UsageError: a PROMPT or --system given (the page asks for those), or a
            bad endpoint.
        OSError: no loopback port could be bound.
    """
    if args.prompt is not None or args.system:
        raise UsageError(
            "--web opens the chat page: type the prompt and the system prompt "
            "there, not on the command line"
        )
    sandbox = sandbox_wanted(args)
    connection = Connection.from_args(args, environment=not sandbox)
    import asyncio

    from ..server.config import ServerConfig
    from ..server.runner import serve_async

    with maybe_sandbox(connection, sandbox) as upstream:
        config = ServerConfig(
            host=HOST,
            port=0,
            grace=1.0,
            provider_options=upstream.provider_options(),
        )
        asyncio.run(serve_async(config, args.provider, started=_open_page))
    return 0


def _open_page(port: int) -> None:
    url = f"http://{HOST}:{port}/"
    sys.stderr.write(f"koala: the chat page is at {url} (Ctrl-C stops)\n")
    sys.stderr.flush()
    # A console browser (lynx, w3m) runs until it quits: never on the loop.
    threading.Thread(
        target=webbrowser.open, args=(url,), name="koala-browser", daemon=True
    ).start()
