"""The gateway's state in an SQLite file: the default, for one machine.

Several `koala serve` processes (`--workers`, or servers started apart) share
one file safely: WAL mode lets readers go on beside the one writer, and each
admission is one short `BEGIN IMMEDIATE` transaction, which takes the write
lock before it reads, so two processes never count the same free place. With
`synchronous=NORMAL` a commit in WAL mode waits for no disk flush (a power cut
may lose the last commits, never the file).

Each backend runs its connection on one thread of its own, off the event loop:
a transaction that waits for another process's lock then waits there (up to
`BUSY_TIMEOUT`), not in the loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from ...errors import UsageError
from .backends import STREAM_LEASE, Counts, Refusal, StateUnavailableError
from .keys import Limits

__all__ = ["SqliteState"]

_T = TypeVar("_T")

#: Milliseconds a transaction waits for another process's write lock.
BUSY_TIMEOUT: Final = 5000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS requests (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS requests_by_key ON requests (key, at);
CREATE TABLE IF NOT EXISTS streams (
    ticket TEXT PRIMARY KEY, key TEXT NOT NULL, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS streams_by_key ON streams (key, until);
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL, day TEXT NOT NULL, counter TEXT NOT NULL,
    amount INTEGER NOT NULL, PRIMARY KEY (key, day, counter)) WITHOUT ROWID;
"""


class SqliteState:
    """The state in the SQLite file at `path` (created with its folder)."""

    def __init__(self, path: str) -> None:
        self.where = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="koala-state")
        self._connection: sqlite3.Connection | None = None
        try:
            self._executor.submit(self._open, path).result()
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown()
            raise UsageError(f"cannot open the state file {path}: {exc}") from None

    def _open(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # The file holds no secret, but whose requests when: keep it private.
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(descriptor)
        connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.executescript(_SCHEMA)
        self._connection = connection

    async def _run(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        connection = self._connection
        if connection is None:
            raise StateUnavailableError(f"the state file {self.where} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, connection)
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the state file {self.where} failed: {exc}"
            ) from exc

    async def admit(self, name: str, limits: Limits, ticket: str) -> Refusal | None:
        """Count a request of `name` under `limits` or refuse it (one transaction)."""
        return await self._run(lambda db: _admit(db, name, limits, ticket))

    async def release(self, name: str, ticket: str) -> None:
        """Give back the stream place `ticket`."""
        await self._run(
            lambda db: db.execute("DELETE FROM streams WHERE ticket = ?", (ticket,))
        )

    async def add_usage(self, counts: Counts) -> None:
        """Add `counts` to the usage table, in one transaction."""
        rows = [
            (key, day, counter, amount)
            for (key, day), values in counts.items()
            for counter, amount in values.items()
        ]
        await self._run(lambda db: _add_usage(db, rows))

    async def usage(self, since: str | None) -> Counts:
        """Return the usage counts per key and day, from day `since` on."""
        return await self._run(lambda db: _usage(db, since or ""))

    async def close(self) -> None:
        """Close the file; harmless twice."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, connection.close
            )
        self._executor.shutdown(wait=False)


def _admit(
    db: sqlite3.Connection, name: str, limits: Limits, ticket: str
) -> Refusal | None:
    now = time.time()
    db.execute("BEGIN IMMEDIATE")
    try:
        refusal = _check_streams(db, name, limits, now) or _check_windows(
            db, name, limits, now
        )
        if refusal is None:
            if limits.windows:
                db.execute("INSERT INTO requests VALUES (?, ?)", (name, now))
            if limits.max_streams is not None:
                db.execute(
                    "INSERT INTO streams VALUES (?, ?, ?)",
                    (ticket, name, now + STREAM_LEASE),
                )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return refusal


def _check_streams(
    db: sqlite3.Connection, name: str, limits: Limits, now: float
) -> Refusal | None:
    most = limits.max_streams
    if most is None:
        return None
    db.execute("DELETE FROM streams WHERE key = ? AND until <= ?", (name, now))
    (open_now,) = db.execute(
        "SELECT count(*) FROM streams WHERE key = ?", (name,)
    ).fetchone()
    return Refusal("max_streams", most, 1) if open_now >= most else None


def _check_windows(
    db: sqlite3.Connection, name: str, limits: Limits, now: float
) -> Refusal | None:
    windows = limits.windows
    if not windows:
        return None
    longest = max(span for span, _ in windows)
    db.execute("DELETE FROM requests WHERE key = ? AND at <= ?", (name, now - longest))
    for span, most in windows:
        (count,) = db.execute(
            "SELECT count(*) FROM requests WHERE key = ? AND at > ?",
            (name, now - span),
        ).fetchone()
        if count >= most:
            # The window has room once the request `count - most` places
            # after its oldest leaves it.
            (at,) = db.execute(
                "SELECT at FROM requests WHERE key = ? AND at > ? "
                "ORDER BY at LIMIT 1 OFFSET ?",
                (name, now - span, count - most),
            ).fetchone()
            field = "requests_per_minute" if span == 60 else "requests_per_day"
            return Refusal(field, most, max(1, math.ceil(at + span - now)))
    return None


def _add_usage(db: sqlite3.Connection, rows: list[tuple[str, str, str, int]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(
            "INSERT INTO usage VALUES (?, ?, ?, ?) ON CONFLICT (key, day, counter) "
            "DO UPDATE SET amount = amount + excluded.amount",
            rows,
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _usage(db: sqlite3.Connection, since: str) -> Counts:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for key, day, counter, amount in db.execute(
        "SELECT key, day, counter, amount FROM usage WHERE day >= ? ORDER BY day, key",
        (since,),
    ):
        counts.setdefault((key, day), {})[counter] = amount
    return counts
