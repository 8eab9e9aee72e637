"""One reply, streamed from the provider to the output: the one place where the
command line talks to a provider.

`koala chat` and `koala demo` (`chat.py`) send one conversation with `send`; the
interactive session (`interactive.py`) runs `stream_reply` for every turn.
"""

from __future__ import annotations

import sys
from contextlib import aclosing

from ..messages import JSONValue, Messages
from .options import Connection
from .output import Output, Spinner, is_terminal
from .provider import Provider

__all__ = ["send", "spinner_wanted", "stream_reply"]


def spinner_wanted(output: Output) -> bool:
    """Tell whether a person is watching the reply arrive (both on a terminal)."""
    return (
        not output.json_lines
        and output.stream
        and is_terminal(output.out)
        and is_terminal(sys.stderr)
    )


def send(
    provider: Provider, connection: Connection, messages: Messages, output: Output
) -> None:
    """Stream one reply to `output`, ending its line even when interrupted.

    Raises:
        KoalaError: whatever the provider raises (see `koala_chat.errors`).
    """
    import asyncio

    values: list[JSONValue] = []
    try:
        asyncio.run(stream_reply(provider, connection, messages, output, values))
    except KeyboardInterrupt:
        output.interrupted()
        raise
    output.finish()


async def stream_reply(
    provider: Provider,
    connection: Connection,
    messages: Messages,
    output: Output,
    values: list[JSONValue],
) -> None:
    """Send `messages` and write each value of the reply to `output`.

    Each value is also appended to `values` as it arrives, so that the caller
    keeps what came even when the reply is cancelled (Ctrl-C).

    Raises:
        KoalaError: whatever the provider raises (see `koala_chat.errors`).
    """
    stream = provider.create_async_generator(
        connection.model, messages, **connection.provider_options()
    )
    async with Spinner(spinner_wanted(output)) as spinner, aclosing(stream) as replies:
        async for value in replies:
            spinner.stop()
            values.append(value)
            output.emit(value)
