"""The gateway: each request's key checked, its limits applied, its usage noted.

    gateway = Gateway("keys.toml", "/var/lib/koala/state.sqlite3")
    app = web.Application(middlewares=[gateway.usage_middleware,
                                       error_middleware, gateway.key_middleware])
    app.cleanup_ctx.append(gateway.lifetime)

`key_middleware` answers a request on the API routes whose key is not in the
file with 401, and leaves the name of a known key on the request (`KEY_NAME`,
which logs and metrics show; never the key). `admit(request)` then counts a
completion against its key's limits until `release`: 429 with `Retry-After`
over a limit, 503 when the state cannot be reached. `usage_middleware`,
outside the error shaping, notes each counted request's final status,
pieces, tokens and time to first piece; `lifetime` writes those notes to the
state every `FLUSH_INTERVAL` seconds and at the stop. `reload()` reads the
file again (on SIGHUP, `reload_on_hangup`); a broken file keeps the keys already loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from ..._contract.usage import prompt_tokens, tokens_for_length
from ...errors import UsageError
from ..accesslog import LOG_KEY
from ..failures import Failure, FailureError
from ..middleware import KEY_NAME, guarded, presented_key, unauthorized
from ..observe import CANCELLED
from .backends import Refusal, StateBackend, StateUnavailableError, open_state
from .keys import KeyEntry, KeyTable, load_keys
from .usage import UsageBuffer, request_counts

__all__ = ["FLUSH_INTERVAL", "Gateway", "reload_on_hangup"]

logger = logging.getLogger("koala_chat.server.gateway")

#: Seconds between writes of the usage notes to the state.
FLUSH_INTERVAL: Final = 1.0

#: The key a request presented, once found in the file.
ENTRY_KEY: Final = web.RequestKey("koala_chat.gateway.entry", KeyEntry)
#: Set on a request counted against its key: its usage is noted at its end.
COUNTED_KEY: Final = web.RequestKey("koala_chat.gateway.counted", bool)

_WHAT: Final = {
    "requests_per_minute": "requests per minute",
    "requests_per_day": "requests per day",
    "max_streams": "streams at once",
}


class Gateway:
    """The keys of `keys_file` and their limits, counted in the state at `state_url`.

    Raises:
        UsageError: the keys file is missing or broken (at creation only).
    """

    def __init__(self, keys_file: str, state_url: str) -> None:
        self.keys_file = keys_file
        self.state_url = state_url
        self.keys: KeyTable = load_keys(keys_file)
        self.usage = UsageBuffer()
        self._state: StateBackend | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unreachable = False
        self._usage_held = False

    def reload(self) -> bool:
        """Read the keys file again; keep the old keys if it is broken.

        Returns whether the new keys are in force. The log says why not,
        naming the file and the key's name, never a key or a hash.
        """
        try:
            keys = load_keys(self.keys_file)
        except UsageError as exc:
            logger.warning("kept the %d keys loaded before: %s", len(self.keys), exc)
            return False
        self.keys = keys
        logger.info("reloaded %d keys from %s", len(keys), self.keys_file)
        return True

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """Open the state, write the usage notes now and then; close at the end."""
        state = self._state = open_state(self.state_url)
        logger.info(
            "gateway: %d keys from %s, state in %s",
            len(self.keys),
            self.keys_file,
            state.where,
        )
        flusher = asyncio.create_task(self._flush_every(FLUSH_INTERVAL))
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.flush()
            self._state = None
            await state.close()

    @web.middleware
    async def key_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Refuse a key not in the file with 401 on the API routes; name the rest."""
        if guarded(request.path):
            entry = self.keys.find(presented_key(request))
            if entry is None:
                raise FailureError(_unknown_key())
            request[ENTRY_KEY] = entry
            request[KEY_NAME] = entry.name
        return await handler(request)

    @web.middleware
    async def usage_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Note the usage of a counted request as it ends, with its final status."""
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CANCELLED  # the client left: neither an error nor a limit
            raise
        finally:
            if request.get(COUNTED_KEY):
                self._note(request, status)

    def _note(self, request: web.Request, status: int) -> None:
        entry = request[ENTRY_KEY]
        log = request.get(LOG_KEY)
        if log is None:
            self.usage.note(entry.name, request_counts(status))
            return
        reply = log.reply
        ttfp = None if log.first_piece is None else log.first_piece - log.started
        counts = request_counts(
            status,
            pieces=log.pieces,
            tokens_in=prompt_tokens(reply.request.messages) if reply else 0,
            tokens_out=tokens_for_length(reply.chars) if reply else 0,
            ttfp=ttfp,
            failed=log.error is not None,
        )
        self.usage.note(entry.name, counts)

    async def admit(self, request: web.Request) -> str | None:
        """Count the request against its key's limits, from now until `release`.

        Returns the ticket of its stream place, for `release` once it ends;
        None when there is none to give back (no key, or no `max_streams`).

        Raises:
            FailureError: 429 with `Retry-After` over a limit; 503 when the
                state cannot be reached.
        """
        entry = request.get(ENTRY_KEY)
        if entry is None:
            # Not behind a key (the server's own routes): nothing to count.
            return None
        request[COUNTED_KEY] = True
        limits = entry.limits
        if limits.unlimited:
            return None
        ticket = uuid.uuid4().hex
        refusal = await self._admit(entry, ticket)
        if refusal is not None:
            raise FailureError(_over_limit(entry.name, refusal))
        return ticket if limits.max_streams is not None else None

    def release(self, request: web.Request, ticket: str) -> None:
        """Give back the stream place `admit` gave `request` as `ticket`.

        On a task of its own: a cancelled request still gives its place back,
        and its response need not wait for that.
        """
        self._spawn(self._release(request[ENTRY_KEY].name, ticket))

    async def _admit(self, entry: KeyEntry, ticket: str) -> Refusal | None:
        state = self._state
        try:
            if state is None:
                raise StateUnavailableError("the gateway's state is not open")
            refusal = await state.admit(entry.name, entry.limits, ticket)
        except StateUnavailableError as exc:
            if not self._unreachable:
                self._unreachable = True
                logger.error("%s: requests get 503 until it is back", exc)
            raise FailureError(_unavailable()) from exc
        if self._unreachable:
            self._unreachable = False
            logger.info("the gateway's state is reachable again")
        return refusal

    async def _release(self, name: str, ticket: str) -> None:
        state = self._state
        if state is None:
            return
        try:
            await state.release(name, ticket)
        except StateUnavailableError as exc:
            logger.warning("%s; a stream place of %s frees at its lease end", exc, name)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write the usage notes held to the state; keep them if that fails."""
        state = self._state
        if state is None or not self.usage:
            return
        counts = self.usage.take()
        try:
            await state.add_usage(counts)
        except StateUnavailableError as exc:
            self.usage.give_back(counts)
            if not self._usage_held:
                self._usage_held = True
                logger.warning("usage held until the state is back: %s", exc)
            return
        if self._usage_held:
            self._usage_held = False
            logger.info("the usage held is written")

    async def _flush_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()


@contextlib.contextmanager
def reload_on_hangup(gateway: Gateway | None) -> Iterator[None]:
    """Let SIGHUP reload the gateway's keys while the block runs.

    Only in the main thread, where the loop can take signals (tests that host
    the server in a thread call `reload` themselves).
    """
    if gateway is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _unknown_key() -> Failure:
    return unauthorized(
        "missing or unknown API key: send one of this gateway's keys as "
        "Authorization: Bearer <key> (or x-api-key: <key>)"
    )


def _over_limit(name: str, refusal: Refusal) -> Failure:
    wait = str(refusal.retry_after)
    return Failure(
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        f"the key {name!r} is at its limit of {refusal.most} "
        f"{_WHAT.get(refusal.limit, refusal.limit)}; retry in {wait} s",
        {"Retry-After": wait},
        cause="key_limit",
    )


def _unavailable() -> Failure:
    return Failure(
        503,
        "server_error",
        "gateway_state_unavailable",
        "the gateway cannot reach the store of its keys' limits, so it serves "
        "no request until that store is back; retry shortly",
        {"Retry-After": "1"},
    )
