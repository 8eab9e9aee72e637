"""What the handlers of one app share: settings, provider, its capabilities."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .._contract.capabilities import Capabilities
from .._contract.options import ProviderOptions
from .._contract.provider import ChatProvider
from .config import ServerConfig
from .failures import Failure, FailureError

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from .gateway.gate import Gateway

__all__ = ["STATE_KEY", "Admission", "ServerState"]


@dataclass(slots=True)
class ServerState:
    """What the handlers of one app share: settings, provider, stream count.

    Nothing of one request outlives it: the server is stateless.
    """

    config: ServerConfig
    provider: ChatProvider
    options: ProviderOptions
    #: What the provider declares it offers under `options`.
    capabilities: Capabilities
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: The keys and their limits, with `--keys` (`koala_chat.server.gateway`).
    gateway: Gateway | None = None
    #: The gauge of requests admitted and not yet ended (`metrics.Metrics`).
    active: Gauge | None = None

    def cancel_all(self) -> None:
        """Cancel every completion in progress (a second Ctrl-C)."""
        for task in self.tasks:
            task.cancel()

    def admitted_for(self, request: web.Request) -> Admission:
        """Count `request` among those at once, within its key's limits.

        Every request that goes upstream counts, whatever its format: use
        the result as `async with state.admitted_for(request):`.
        """
        return Admission(self, request)

    def offered(self) -> list[str]:
        """Return the protocols a client may choose, in the provider's order.

        Those the operator allows (`--client-protocols`), and the server's
        own, which asking for changes nothing; none for a provider without
        dialects.
        """
        caps = self.capabilities
        allowed = self.config.client_protocols
        return [p for p in caps.protocols if p in allowed or p == caps.protocol]


class Admission:
    """One request's place among those at once and within its key's limits.

    While it holds, the request counts in the gauge of active streams.

    An `async with` block; a class, not a generator, because every request
    enters one: `contextlib`'s wrappers around two generators cost more than
    the checks themselves (benchmarks/README.md, "Found: per-request costs").

    Raises (on entering):
        FailureError: 429 `too_many_streams` at the server's limit
            (`--max-streams`), 429 at a limit of the key, 503 when the
            gateway's state is unreachable.
    """

    __slots__ = ("_request", "_state", "_task", "_ticket")

    def __init__(self, state: ServerState, request: web.Request) -> None:
        self._state = state
        self._request = request
        self._task: asyncio.Task[Any] | None = None
        #: The key's stream place, given back on leaving (`Gateway.admit`).
        self._ticket: str | None = None

    async def __aenter__(self) -> None:
        state = self._state
        limit = state.config.max_streams
        if len(state.tasks) >= limit:
            raise FailureError(
                Failure(
                    429,
                    "rate_limit_error",
                    "too_many_streams",
                    f"this server is at its limit of {limit} requests at once; "
                    "retry shortly",
                    {"Retry-After": "1"},
                )
            )
        task = self._task = asyncio.current_task()
        assert task is not None  # a handler always runs in a task
        state.tasks.add(task)
        if state.gateway is not None:
            try:
                self._ticket = await state.gateway.admit(self._request)
            except BaseException:
                state.tasks.discard(task)
                raise
        if state.active is not None:
            state.active.inc()

    async def __aexit__(self, *_: object) -> None:
        state = self._state
        assert self._task is not None  # entered
        state.tasks.discard(self._task)
        if state.active is not None:
            state.active.dec()
        if self._ticket is not None and state.gateway is not None:
            state.gateway.release(self._request, self._ticket)


STATE_KEY: Final = web.AppKey("koala_chat.state", ServerState)
