"""Where the gateway keeps its state: the seam between it and SQLite or Redis.

A backend holds each key's sliding windows (the times of its requests in the
last minute and day), the streams it has open, and the usage counts per key
and day. Admission is one atomic step in the backend (a transaction, a
script), so processes and servers sharing it never both take the last place.
An open stream holds a lease that ends by itself (`STREAM_LEASE`): a process
that dies with streams open does not hold its key's places for ever.

`open_state(url)` picks the backend: `redis://` or `rediss://` for Redis, any
other text is the path of an SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ...errors import KoalaError, UsageError
from .keys import Limits

__all__ = [
    "STREAM_LEASE",
    "Counts",
    "Refusal",
    "StateBackend",
    "StateUnavailableError",
    "default_state_path",
    "open_state",
]

#: Seconds an open stream holds its place at most: five times the provider's
#: default total time limit of an upstream request (120 s), and short enough
#: that the places of a process that died come back soon.
STREAM_LEASE: Final = 600

#: The usage counts of (key name, day): counter name -> amount.
Counts = Mapping[tuple[str, str], Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused: the limit it met, and when to retry."""

    #: The limit's field in the keys file (`requests_per_minute`, ...).
    limit: str
    #: The limit's value.
    most: int
    #: Whole seconds until the window has room again (at least 1).
    retry_after: int


class StateUnavailableError(KoalaError):
    """The gateway's state cannot be reached (Redis is down): refuse, 503."""


class StateBackend(Protocol):
    """The operations the gateway needs of its state."""

    #: Where the state lives, for the log (no password).
    where: str

    async def admit(self, name: str, limits: Limits, ticket: str) -> Refusal | None:
        """Count a request of key `name` under `limits`, or refuse it.

        `ticket` names the request's stream place, if `limits.max_streams`.

        Raises:
            StateUnavailableError: the state cannot be reached.
        """
        ...

    async def release(self, name: str, ticket: str) -> None:
        """Give back the stream place `ticket` of key `name`."""
        ...

    async def add_usage(self, counts: Counts) -> None:
        """Add `counts` to the usage table.

        Raises:
            StateUnavailableError: the state cannot be reached.
        """
        ...

    async def usage(self, since: str | None) -> Counts:
        """Return the usage counts of every key and day (from `since`, a date).

        Raises:
            StateUnavailableError: the state cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Release the connection; harmless twice."""
        ...


def default_state_path() -> str:
    """Return the default SQLite file: under XDG_STATE_HOME, else ~/.local/state."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "koala-chat" / "gateway.sqlite3")


def is_redis(url: str) -> bool:
    """Tell whether `url` names a Redis server rather than an SQLite file."""
    return url.startswith(("redis://", "rediss://", "unix://"))


def open_state(url: str) -> StateBackend:
    """Return the backend of `url` (a redis:// URL or an SQLite file's path).

    Raises:
        UsageError: the Redis client is not installed, or the SQLite file
            cannot be opened.
    """
    if is_redis(url):
        try:
            from .redisstate import RedisState
        except ImportError:
            raise UsageError(
                "--state redis://... needs the Redis client: "
                "pip install 'koala-chat[redis]'"
            ) from None
        return RedisState(url)
    from .sqlitestate import SqliteState

    return SqliteState(url)
