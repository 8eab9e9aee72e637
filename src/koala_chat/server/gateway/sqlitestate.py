"""The gateway's state in an SQLite file: the default, for one machine.

Several `koala serve` processes (`--workers`, or servers started apart) share
one file safely: WAL mode lets readers go on beside the one writer, and each
admission is one short `BEGIN IMMEDIATE` transaction, which takes the write
lock before it reads, so two processes never count the same free place. With
`synchronous=NORMAL` a commit in WAL mode waits for no disk flush (a power cut
may lose the last commits, never the file).

(docs/gateway.md, "SQLite: WAL mode and BEGIN IMMEDIATE".) An admission
runs on the event loop itself: it takes about 0.1 ms and waits for no disk
(its connection never checkpoints), where a hop to a thread and back costs
as much again, and under load far more, as the thread waits for the GIL
behind the streams. Only when another process holds the write lock does the
admission move to a thread, whose connection waits there for the lock (up
to `BUSY_TIMEOUT`), never in the loop. That thread also writes the usage and
checkpoints the WAL (`PASSIVE`: without blocking the admissions).
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar

from ..._sentences import sentences
from ...errors import UsageError
from .backends import STREAM_LEASE, Counts, Refusal, StateUnavailableError
from .keys import Limits

__all__ = ["SqliteState"]

_T = TypeVar("_T")

#: Milliseconds a transaction waits for another process's write lock.
BUSY_TIMEOUT: Final = 5000

#: `windows` holds a row per admitted request and window (`span`, in
#: seconds), `counts` the number of those rows: a window is counted without
#: reading its rows, whatever a day's limit.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS windows (
    key TEXT NOT NULL, span INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS windows_by_key ON windows (key, span, at);
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


def _connect(path: str, *, busy_timeout: int, checkpoints: bool) -> sqlite3.Connection:
    """Return a connection to the file at `path` (created with its folder)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # The file holds no secret, but whose requests when: keep it private.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Workers starting together create the tables together: the setup waits
    # for the lock whatever the connection's own timeout is afterwards.
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT}")
    _until_free(lambda: connection.execute("PRAGMA journal_mode = WAL"))
    connection.execute("PRAGMA synchronous = NORMAL")
    if not checkpoints:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
    _until_free(lambda: _create_tables(connection))
    connection.execute(f"PRAGMA busy_timeout = {busy_timeout}")
    return connection


def _create_tables(connection: sqlite3.Connection) -> None:
    """Create the tables in one transaction that takes the write lock first.

    Statement by statement, a connection reading the schema and then asking
    to write would meet another doing the same: SQLite refuses one of them
    at once, without waiting, rather than let both wait for ever.
    """
    with _immediate(connection):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """Run the block in one `BEGIN IMMEDIATE` transaction, committed at its end.

    The COMMIT is inside the `try`: when it fails, the transaction is rolled
    back too, so the connection can begin again (the setup's retry does).
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _until_free(step: Callable[[], object]) -> None:
    """Run `step` again while another process's setup holds the file (5 s).

    Switching to WAL mode and a first write can be refused at once, without
    the busy timeout's wait, when two processes start on a new file together
    (docs/gateway.md, "SQLite: WAL mode and BEGIN IMMEDIATE").
    """
    deadline = time.monotonic() + BUSY_TIMEOUT / 1000
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Tell whether `exc` says another connection holds the lock.

    The code is an extended one (`SQLITE_BUSY_SNAPSHOT`, ...): its low byte
    is the primary code.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteState:
    """The state in the SQLite file at `path` (created with its folder)."""

    def __init__(self, path: str) -> None:
        self.where = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="koala-state")
        try:
            # No wait on the loop: a lock held elsewhere sends the admission
            # to the thread's connection instead.
            self._direct: sqlite3.Connection | None = _connect(
                path, busy_timeout=0, checkpoints=False
            )
            self._waiting: sqlite3.Connection | None = self._executor.submit(
                _connect, path, busy_timeout=BUSY_TIMEOUT, checkpoints=True
            ).result()
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown()
            raise UsageError(
                sentences(
                    f"cannot open the state file {path}: {exc}",
                    "give --state a file in a folder this user may write",
                )
            ) from None

    def _failed(self, exc: sqlite3.Error) -> StateUnavailableError:
        return StateUnavailableError(f"the state file {self.where} failed: {exc}")

    async def _on_thread(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        connection = self._waiting
        if connection is None:
            raise StateUnavailableError(f"the state file {self.where} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, connection)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    async def _write(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `function` on the loop's connection; on the thread's if locked."""
        connection = self._direct
        if connection is None:
            raise StateUnavailableError(f"the state file {self.where} is closed")
        try:
            return function(connection)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise self._failed(exc) from exc
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return await self._on_thread(function)

    async def admit(self, name: str, limits: Limits, ticket: str) -> Refusal | None:
        """Count a request of `name` under `limits` or refuse it (one transaction)."""
        return await self._write(lambda db: _admit(db, name, limits, ticket))

    async def release(self, name: str, ticket: str) -> None:
        """Give back the stream place `ticket`."""
        await self._write(
            lambda db: db.execute("DELETE FROM streams WHERE ticket = ?", (ticket,))
        )

    async def add_usage(self, counts: Counts) -> None:
        """Add `counts` to the usage table, in one transaction; checkpoint."""
        rows = [
            (key, day, counter, amount)
            for (key, day), values in counts.items()
            for counter, amount in values.items()
        ]
        await self._on_thread(lambda db: _add_usage(db, rows))

    async def usage(self, since: str | None) -> Counts:
        """Return the usage counts per key and day, from day `since` on."""
        return await self._on_thread(lambda db: _usage(db, since or ""))

    async def close(self) -> None:
        """Close the file; harmless twice."""
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.close()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, waiting.close
            )
        self._executor.shutdown(wait=False)


def _admit(
    db: sqlite3.Connection, name: str, limits: Limits, ticket: str
) -> Refusal | None:
    now = time.time()
    with _immediate(db):
        refusal = _check_streams(db, name, limits, now)
        counts = _counts(db, name, limits, now)
        if refusal is None:
            refusal = _check_windows(db, name, limits, now, counts)
        if refusal is None:
            for span in counts:
                db.execute("INSERT INTO windows VALUES (?, ?, ?)", (name, span, now))
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
    for _, span, _ in limits.windows:
        removed = db.execute(
            "DELETE FROM windows WHERE key = ? AND span = ? AND at <= ?",
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
    for field, span, most in limits.windows:
        count = counts[span]
        if count >= most:
            # The window has room once the request `count - most` places
            # after its oldest leaves it.
            (at,) = db.execute(
                "SELECT at FROM windows WHERE key = ? AND span = ? "
                "ORDER BY at LIMIT 1 OFFSET ?",
                (name, span, count - most),
            ).fetchone()
            return Refusal(field, most, max(1, math.ceil(at + span - now)))
    return None


def _add_usage(db: sqlite3.Connection, rows: list[tuple[str, str, str, int]]) -> None:
    with _immediate(db):
        db.executemany(
            "INSERT INTO usage VALUES (?, ?, ?, ?) ON CONFLICT (key, day, counter) "
            "DO UPDATE SET amount = amount + excluded.amount",
            rows,
        )
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _usage(db: sqlite3.Connection, since: str) -> Counts:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for key, day, counter, amount in db.execute(
        "SELECT key, day, counter, amount FROM usage WHERE day >= ? ORDER BY day, key",
        (since,),
    ):
        counts.setdefault((key, day), {})[counter] = amount
    return counts
