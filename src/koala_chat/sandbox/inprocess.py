"""The sandbox that `--sandbox` starts in this process, for the commands.

`koala chat`, `koala demo`, `koala check` and `koala serve` take `--sandbox`
and answer from this one server; each adapts it to its own settings (the
command line's `Connection`, the server's `ServerConfig`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from ..defaults import CHAT_SANDBOX_INTERVAL

__all__ = ["InProcess", "in_process"]


class InProcess(NamedTuple):
    """Where the sandbox listens and the key to send it (None: send none)."""

    api_endpoint: str
    api_key: str | None


@contextmanager
def in_process(
    api_key: str | None, protocol: str, *, every_dialect: bool = False
) -> Iterator[InProcess]:
    """Yield a sandbox started in this process, stopped on leaving.

    It speaks every dialect and accepts `api_key`. Without a key, the
    sandbox's own test key is sent when the api dialect is chosen (`protocol`
    is `api`) or when `every_dialect` asks for one to try them all (`koala
    check --all`), so that the api dialect works offline too.
    """
    from .checks import SANDBOX_API_KEY
    from .runner import Sandbox

    sent = api_key
    if sent is None and (protocol == "api" or every_dialect):
        sent = SANDBOX_API_KEY
    accepted = sent if sent is not None else SANDBOX_API_KEY
    with Sandbox(interval=CHAT_SANDBOX_INTERVAL, api_key=accepted) as sandbox:
        yield InProcess(sandbox.api_endpoint, sent)
