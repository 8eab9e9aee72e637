"""The time limits of one call, checked once and given to aiohttp as one value."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from .. import defaults
from .._values import check_time_limit

__all__ = ["Timeouts", "remaining"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The time limits of one request, in seconds (None: no limit).

    `connect` bounds opening the connection (through the proxy, if any), `idle`
    the silence between two chunks, `total` the whole call, retries included.
    """

    connect: float | None = defaults.CONNECT_TIMEOUT
    idle: float | None = defaults.IDLE_TIMEOUT
    total: float | None = defaults.TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "idle", "total"):
            check_time_limit(name, getattr(self, name))

    def deadline(self) -> float | None:
        """Return the loop time by which the whole call must end (None: never)."""
        if self.total is None:
            return None
        return asyncio.get_running_loop().time() + self.total

    def client_timeout(self, remaining: float | None) -> aiohttp.ClientTimeout:
        """Return the aiohttp limits for one attempt with `remaining` seconds left."""
        return aiohttp.ClientTimeout(
            total=remaining, sock_connect=self.connect, sock_read=self.idle
        )


def remaining(deadline: float | None) -> float | None:
    """Return the seconds left before a loop-time `deadline` (None: no limit)."""
    if deadline is None:
        return None
    return deadline - asyncio.get_running_loop().time()
