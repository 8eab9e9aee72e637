"""The sandbox that `--sandbox` (and `koala demo` without an endpoint) starts
in this process, set up to accept the connection's dialect and key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .options import Connection

__all__ = ["local_sandbox", "maybe_sandbox"]


@contextmanager
def local_sandbox(
    connection: Connection, *, every_dialect: bool = False
) -> Iterator[Connection]:
    """Yield `connection` pointed at a sandbox started in this process.

    The sandbox speaks every dialect and accepts the connection's key; with the
    api dialect asked for (or `every_dialect`) and no key given, the sandbox's
    own test key is used, so that `koala chat --sandbox --protocol api` works
    offline too (`koala_chat.sandbox.inprocess`).
    """
    from ..providers.dialects import ApiKey
    from ..sandbox.inprocess import in_process

    key = connection.api_key
    given = key.value if key is not None else None
    with in_process(
        given, connection.dialect_setting, every_dialect=every_dialect
    ) as local:
        if key is None and local.api_key is not None:
            key = ApiKey(local.api_key)
        yield connection._replace(endpoint=local.api_endpoint, api_key=key)


@contextmanager
def maybe_sandbox(
    connection: Connection, wanted: bool, *, every_dialect: bool = False
) -> Iterator[Connection]:
    """Yield `connection`, pointed at an in-process sandbox when `wanted`."""
    if not wanted:
        yield connection
        return
    with local_sandbox(connection, every_dialect=every_dialect) as local:
        yield local
