"""The settings of `koala serve`, checked once at start-up."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Final

from .. import defaults
from ..errors import UsageError

__all__ = ["API_KEY_VARIABLE", "ServerConfig", "is_loopback"]

#: The environment variable that holds the server's own API key.
API_KEY_VARIABLE: Final = defaults.SERVER_API_KEY_VARIABLE


def is_loopback(host: str) -> bool:
    """Tell whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What `koala serve` was asked to do.

    `provider_options` pass through to `create_async_generator` of the provider
    (`api_endpoint`, `proxy`, `timeout`, `max_retries`). `api_key` is kept out of
    the repr. `strict` refuses unknown request parameters instead of ignoring
    them; `cors_origins` are the browser origins allowed to call (`*`: any;
    none: CORS off).
    """

    host: str = defaults.SERVER_HOST
    port: int = defaults.SERVER_PORT
    api_key: str | None = field(default=None, repr=False)
    max_body: int = defaults.SERVER_MAX_BODY
    max_streams: int = defaults.SERVER_MAX_STREAMS
    grace: float = defaults.SERVER_GRACE
    workers: int = defaults.SERVER_WORKERS
    provider_options: dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_body", "max_streams", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a whole number >= 1, not {value!r}")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be from 0 to 65535, not {self.port}")
        if self.grace < 0:
            raise UsageError(f"grace must be >= 0 seconds, not {self.grace}")
        if self.api_key is not None and not self.api_key.strip():
            raise UsageError("the API key is empty; give a real key or none")
        for origin in self.cors_origins:
            if origin != "*" and "://" not in origin:
                raise UsageError(
                    f"a CORS origin is * or scheme://host[:port], not {origin!r}"
                )

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without an API key.

        Raises:
            UsageError: `host` is not a loopback address and no key is set.
        """
        if self.api_key is None and not is_loopback(self.host):
            raise UsageError(
                f"refusing to listen on {self.host} without an API key: anyone "
                "who can reach the port could spend your Koala quota; set "
                f"--api-key or {API_KEY_VARIABLE}, or listen on 127.0.0.1"
            )
