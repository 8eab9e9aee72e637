"""The gateway's state in an SQLite file: the default, for one machine.

Several `koala serve` processes (`--workers`, or servers started apart) share
one file safely: WAL mode lets readers go on beside the one writer, and each
admission is one short `BEGIN IMMEDIATE` transaction, which takes the write
lock before it reads, so two processes never count the same free place. With
`synchronous=NORMAL` a commit in WAL mode waits for no disk flush (a power cut
may lose the last commits, never the file).

(docs/gateway.md, "SQLite: WAL mode and BEGIN IMMEDIATE".) Each connection
runs on one thread of its own, off the event loop: a transaction that waits
for another process's lock then waits there (up to `BUSY_TIMEOUT`), not in
the loop.
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

#: `requests` holds a row per admitted request and window (`span`, in
#: seconds), `counts` the number of those rows: a window is counted without
#: reading its rows, whatever a day's limit.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT NOT NULL, span INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS requests_by_window ON requests (key, span, at);
CREATE TABLE IF NOT EXISTS counts (
    key TEXT NOT NULL, span INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (key, span)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    ticket TEXT PRIMARY KEY, key TEXT NOT NULL, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS streams_by_key ON streams (key, until);
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL, day TEXT NOT NULL, counter TEXT NOT NULL,
    amount INTEGER NOT NULL, PRIMARY KEY (key, day, counter)) WITHOUT ROWID;
"""


class _Lane:
    """One connection to the file, used on one thread of its own."""

    def __init__(self, path: str, name: str, *, checkpoints: bool) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"koala-{name}")
        self.connection: sqlite3.Connection | None = None
        try:
            self.executor.submit(self._open, path, checkpoints).result()
        except BaseException:
            self.executor.shutdown()
            raise

    def _open(self, path: str, checkpoints: bool) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # The file holds no secret, but whose requests when: keep it private.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        if not checkpoints:
            connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.executescript(_SCHEMA)
        self.connection = connection

    async def run(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        connection = self.connection
        if connection is None:
            raise sqlite3.ProgrammingError("the state file is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, function, connection)

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            await asyncio.get_running_loop().run_in_executor(
                self.executor, connection.close
            )
        self.executor.shutdown(wait=False)


class SqliteState:
    """The state in the SQLite file at `path` (created with its folder).

    Two connections, each on a thread of its own: one admits requests and
    never checkpoints the WAL (a checkpoint writes the pages back and waits
    for the disk), the other writes the usage and checkpoints after it,
    without blocking the admissions (`PASSIVE`).
    """

    def __init__(self, path: str) -> None:
        self.where = path
        try:
            self._admissions = _Lane(path, "admissions", checkpoints=False)
            self._upkeep = _Lane(path, "upkeep", checkpoints=True)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open the state file {path}: {exc}") from None

    async def _run(
        self, lane: _Lane, function: Callable[[sqlite3.Connection], _T]
    ) -> _T:
        try:
            return await lane.run(function)
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the state file {self.where} failed: {exc}"
            ) from exc

    async def admit(self, name: str, limits: Limits, ticket: str) -> Refusal | None:
        """Count a request of `name` under `limits` or refuse it (one transaction)."""
        return await self._run(
            self._admissions, lambda db: _admit(db, name, limits, ticket)
        )

    async def release(self, name: str, ticket: str) -> None:
        """Give back the stream place `ticket`."""
        await self._run(
            self._admissions,
            lambda db: db.execute("DELETE FROM streams WHERE ticket = ?", (ticket,)),
        )

    async def add_usage(self, counts: Counts) -> None:
        """Add `counts` to the usage table, in one transaction; checkpoint."""
        rows = [
            (key, day, counter, amount)
            for (key, day), values in counts.items()
            for counter, amount in values.items()
        ]
        await self._run(self._upkeep, lambda db: _add_usage(db, rows))

    async def usage(self, since: str | None) -> Counts:
        """Return the usage counts per key and day, from day `since` on."""
        return await self._run(self._upkeep, lambda db: _usage(db, since or ""))

    async def close(self) -> None:
        """Close the file; harmless twice."""
        await self._admissions.close()
        await self._upkeep.close()


def _admit(
    db: sqlite3.Connection, name: str, limits: Limits, ticket: str
) -> Refusal | None:
    now = time.time()
    db.execute("BEGIN IMMEDIATE")
    try:
        refusal = _check_streams(db, name, limits, now)
        counts = _counts(db, name, limits, now)
        if refusal is None:
            refusal = _check_windows(db, name, limits, now, counts)
        if refusal is None:
            for span in counts:
                db.execute("INSERT INTO requests VALUES (?, ?, ?)", (name, span, now))
                counts[span] += 1
            if limits.max_streams is not None:
                db.execute(
                    "INSERT INTO streams VALUES (?, ?, ?)",
                    (ticket, name, now + STREAM_LEASE),
                )
        db.executemany(
            "INSERT INTO counts VALUES (?, ?, ?) "
            "ON CONFLICT (key, span) DO UPDATE SET n = excluded.n",
            [(name, span, n) for span, n in counts.items()],
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


def _counts(
    db: sqlite3.Connection, name: str, limits: Limits, now: float
) -> dict[int, int]:
    """Drop the requests that left each window of `limits`; count the rest."""
    counts = {}
    for span, _ in limits.windows:
        removed = db.execute(
            "DELETE FROM requests WHERE key = ? AND span = ? AND at <= ?",
            (name, span, now - span),
        ).rowcount
        row = db.execute(
            "SELECT n FROM counts WHERE key = ? AND span = ?", (name, span)
        ).fetchone()
        counts[span] = (row[0] if row else 0) - removed
    return counts


def _check_windows(
    db: sqlite3.Connection,
    name: str,
    limits: Limits,
    now: float,
    counts: dict[int, int],
) -> Refusal | None:
    for span, most in limits.windows:
        count = counts[span]
        if count >= most:
            # The window has room once the request `count - most` places
            # after its oldest leaves it.
            (at,) = db.execute(
                "SELECT at FROM requests WHERE key = ? AND span = ? "
                "ORDER BY at LIMIT 1 OFFSET ?",
                (name, span, count - most),
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
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _usage(db: sqlite3.Connection, since: str) -> Counts:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for key, day, counter, amount in db.execute(
        "SELECT key, day, counter, amount FROM usage WHERE day >= ? ORDER BY day, key",
        (since,),
    ):
        counts.setdefault((key, day), {})[counter] = amount
    return counts
