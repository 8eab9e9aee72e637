"""What the handlers of one app share: settings, provider, its capabilities."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .._contract.capabilities import Capabilities
from .._contract.options import ProviderOptions
from .._contract.provider import ChatProvider
from .config import ServerConfig
from .failures import Failure, FailureError

if TYPE_CHECKING:
    from .gateway.gate import Gateway

__all__ = ["STATE_KEY", "ServerState"]


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

    def cancel_all(self) -> None:
        """Cancel every completion in progress (a second Ctrl-C)."""
        for task in self.tasks:
            task.cancel()

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Count the running request among those at once, or refuse it.

        Every request that goes upstream counts, whatever its format.

        Raises:
            FailureError: 429 `too_many_streams` at the limit (`--max-streams`).
        """
        limit = self.config.max_streams
        if len(self.tasks) >= limit:
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
        task = asyncio.current_task()
        assert task is not None  # a handler always runs in a task
        self.tasks.add(task)
        try:
            yield
        finally:
            self.tasks.discard(task)

    @asynccontextmanager
    async def admitted_for(self, request: web.Request) -> AsyncIterator[None]:
        """`admitted`, then within the limits of the request's key (`--keys`).

        Raises:
            FailureError: 429 at a limit; 503 when the gateway's state is
                unreachable.
        """
        with self.admitted():
            if self.gateway is None:
                yield
            else:
                async with self.gateway.admitted(request):
                    yield

    def offered(self) -> list[str]:
        """Return the protocols a client may choose, in the provider's order.

        Those the operator allows (`--client-protocols`), and the server's
        own, which asking for changes nothing; none for a provider without
        dialects.
        """
        caps = self.capabilities
        allowed = self.config.client_protocols
        return [p for p in caps.protocols if p in allowed or p == caps.protocol]


STATE_KEY: Final = web.AppKey("koala_chat.state", ServerState)
