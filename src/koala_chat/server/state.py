"""What the handlers of one app share: settings, provider, its capabilities."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from ..contract.capabilities import Capabilities
from ..contract.provider import ChatProvider
from .config import ServerConfig

__all__ = ["STATE_KEY", "ServerState"]


@dataclass(slots=True)
class ServerState:
    """What the handlers of one app share: settings, provider, stream count.

    Nothing of one request outlives it: the server is stateless.
    """

    config: ServerConfig
    provider: ChatProvider
    options: dict[str, Any]
    #: What the provider declares it offers under `options`.
    capabilities: Capabilities
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def cancel_all(self) -> None:
        """Cancel every completion in progress (a second Ctrl-C)."""
        for task in self.tasks:
            task.cancel()

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
