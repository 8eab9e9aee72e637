"""The sandbox that `koala chat --sandbox`, `--web --sandbox` and `koala demo`
start in this process, set up to accept the connection's dialect and key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..defaults import CHAT_SANDBOX_INTERVAL
from .options import Connection

__all__ = ["local_sandbox"]


@contextmanager
def local_sandbox(connection: Connection) -> Iterator[Connection]:
    """Yield `connection` pointed at a sandbox started in this process.

    The sandbox speaks every dialect and accepts the connection's key; with the
    api dialect asked for and no key given, the sandbox's own test key is used,
    so that `koala chat --sandbox --protocol api` works offline too.
    """
    from ..providers.dialects import ApiKey
    from ..sandbox import SANDBOX_API_KEY, Sandbox

    key = connection.api_key
    if key is None and connection.dialect_setting == "api":
        key = ApiKey(SANDBOX_API_KEY)
    accepted = key.value if key is not None else SANDBOX_API_KEY
    with Sandbox(interval=CHAT_SANDBOX_INTERVAL, api_key=accepted) as sandbox:
        yield connection._replace(endpoint=sandbox.api_endpoint, api_key=key)
