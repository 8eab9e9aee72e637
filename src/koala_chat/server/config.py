"""The settings of `koala serve`, checked once at start-up."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .. import defaults
from .._contract.options import ProviderOptions
from .._contract.provider import ChatProvider
from ..errors import UsageError
from .hosts import ANY_HOST, check_allowed_host, is_loopback

if TYPE_CHECKING:
    from ..providers.dialects import ApiKey

__all__ = [
    "API_KEY_VARIABLE",
    "ServerConfig",
    "default_provider",
    "is_loopback",
    "upstream_key",
    "upstream_protocol",
]

#: The environment variable that holds the server's own API key.
API_KEY_VARIABLE: Final = defaults.SERVER_API_KEY_VARIABLE


def default_provider() -> ChatProvider:
    """Return the provider `koala serve` answers with unless told: Koala.

    The one place of the server that names it; imported when called, so that
    `koala --help` does not load the providers.
    """
    from ..providers import DEFAULT_PROVIDER

    return DEFAULT_PROVIDER


def upstream_key(value: str | None = None) -> ApiKey | None:
    """Return the upstream key `value`, else that of `KOALA_API_KEY`, checked, or None.

    The key of the service's official API, kept in an object whose repr hides
    it; never the server's own key.

    Raises:
        UsageError: the key cannot be sent.
    """
    from ..providers.settings import api_key

    return api_key(value)


def upstream_protocol(protocol: str | None, *, has_key: bool) -> str:
    """Return the dialect the server speaks upstream: `protocol`, else
    `KOALA_PROTOCOL`, else api with a key, else auto.

    Raises:
        UsageError: an unknown protocol.
    """
    from ..providers.dialects import choose_protocol

    configured = protocol or os.environ.get(defaults.PROTOCOL_VARIABLE) or None
    return choose_protocol(configured, has_key=has_key)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What `koala serve` was asked to do.

    `provider_options` pass through to `create_async_generator` of the provider
    (`api_endpoint`, `proxy`, `timeout`, `max_retries`, and Koala's `protocol`,
    `web_search` and `api_key`). `api_key` is the server's own key, which its
    clients send; it is kept out of the repr. The upstream key of the official
    API is another one: `provider_options["api_key"]` (`koala serve` puts an
    `ApiKey` there, whose repr hides it), never taken from a client. `strict`
    refuses unknown request parameters instead of ignoring them; `cors_origins`
    are the browser origins allowed to call (`*`: any; none: CORS off).
    `allowed_hosts` are the names, besides loopback ones, that a request's
    `Host` may carry (`*`: any), normalised as `hosts.split_host` does;
    `client_protocols` are the dialects a client may choose with the body's
    `protocol` (docs/protocol.md, "Choosing a dialect").
    """

    host: str = defaults.SERVER_HOST
    port: int = defaults.SERVER_PORT
    api_key: str | None = field(default=None, repr=False)
    max_body: int = defaults.SERVER_MAX_BODY
    max_streams: int = defaults.SERVER_MAX_STREAMS
    grace: float = defaults.SERVER_GRACE
    workers: int = defaults.SERVER_WORKERS
    # Left out of the repr: it may hold a key of the provider's. A mapping
    # given here is parsed into `ProviderOptions` once, when the config is made.
    provider_options: ProviderOptions = field(
        default_factory=ProviderOptions, repr=False
    )
    #: Seconds a client has to send a request head (and a kept-alive
    #: connection may stay idle); see `koala_chat.server.limits`.
    head_timeout: float = defaults.SERVER_HEAD_TIMEOUT
    #: Seconds a client has to send a request body once its head arrived.
    body_timeout: float = defaults.SERVER_BODY_TIMEOUT
    #: Open connections per process; one more is answered 503 and closed.
    max_connections: int = defaults.SERVER_MAX_CONNECTIONS
    strict: bool = False
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    client_protocols: tuple[str, ...] = defaults.SERVER_CLIENT_PROTOCOLS
    #: The keys file of a gateway shared by a team (`--keys`), instead of
    #: one `api_key`; `state` is where it counts (`--state`: an SQLite file
    #: or a redis:// URL; None: `gateway_state()`'s default file).
    keys_file: str | None = None
    state: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "provider_options", ProviderOptions.parse(self.provider_options)
        )
        for name in ("max_body", "max_streams", "workers", "max_connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a whole number >= 1, not {value!r}")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be from 0 to 65535, not {self.port}")
        if not 0 <= self.grace < math.inf:
            raise UsageError(f"grace must be >= 0 seconds, not {self.grace}")
        for name in ("head_timeout", "body_timeout"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise UsageError(f"{name} must be more than 0 seconds, not {value}")
        if self.api_key is not None:
            _check_api_key(self.api_key)
        for origin in self.cors_origins:
            if origin != "*" and "://" not in origin:
                raise UsageError(
                    f"a CORS origin is * or scheme://host[:port], not {origin!r}"
                )
        self._check_hosts_and_protocols()
        self.check_dialect()
        self._check_gateway()

    def _check_gateway(self) -> None:
        """Refuse --keys beside --api-key, and --state without --keys; read the keys.

        Raises:
            UsageError: both, or a keys file that is missing or broken.
        """
        if self.keys_file is None:
            if self.state is not None:
                raise UsageError("--state keeps the limits of --keys: give --keys too")
            return
        if self.api_key is not None:
            raise UsageError(
                "--keys and an API key (--api-key or "
                f"{API_KEY_VARIABLE}) cannot be used together: the keys file "
                "names every key the server takes"
            )
        from .gateway.keys import load_keys

        load_keys(self.keys_file)

    def gateway_state(self) -> str:
        """Return where the gateway counts: `state`, else the default SQLite file."""
        from .gateway.backends import default_state_path

        return self.state or default_state_path()

    def _check_hosts_and_protocols(self) -> None:
        try:
            hosts = tuple(dict.fromkeys(map(check_allowed_host, self.allowed_hosts)))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        # Frozen, but normalised once here, so that no reader repeats it.
        object.__setattr__(self, "allowed_hosts", hosts)
        unknown = [p for p in self.client_protocols if p not in defaults.PROTOCOLS]
        if unknown or not self.client_protocols:
            raise UsageError(
                "client protocols are one or more of "
                f"{', '.join(defaults.PROTOCOLS)}, not {', '.join(unknown) or 'none'}"
            )
        object.__setattr__(
            self, "client_protocols", tuple(dict.fromkeys(self.client_protocols))
        )

    def check_dialect(self) -> None:
        """Check Koala's options (`protocol`, `api_key`, `web_search`) now.

        Raises:
            UsageError: an unknown protocol, a bad key, the api protocol
                without a key, or a `web_search` that is not a boolean.
        """
        # Imported here: `koala --help` must not load the providers.
        from ..providers.settings import DialectSettings

        DialectSettings.from_options(self.provider_options)

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without an API key and host names.

        Raises:
            UsageError: `host` is not a loopback address and no key is set, or
                no allowed host is named; or any host is allowed (`*`) without
                a key, which lets a web page in through DNS rebinding.
        """
        loopback = is_loopback(self.host)
        # The keys of a gateway guard it as the one API key does.
        keyed = self.api_key is not None or self.keys_file is not None
        if not keyed and not loopback:
            raise UsageError(
                f"refusing to listen on {self.host} without an API key: anyone "
                "who can reach the port could spend your Koala quota; set "
                f"--api-key or {API_KEY_VARIABLE}, or listen on 127.0.0.1"
            )
        if not loopback and not self.allowed_hosts:
            raise UsageError(
                f"listening on {self.host} needs --allowed-host NAME for each "
                "name or address clients reach the server by (or --allowed-host "
                "'*' to take any Host, which the API key then guards)"
            )
        if not keyed and ANY_HOST in self.allowed_hosts:
            raise UsageError(
                "--allowed-host '*' without an API key lets any web page reach "
                "this server through DNS rebinding: name the hosts, or set "
                f"--api-key or {API_KEY_VARIABLE}"
            )


def _check_api_key(key: str) -> None:
    """Refuse a key no client could send as it is.

    HTTP drops the whitespace around a header value, so a key with a space or
    newline at either end (a key read from a file) would turn every request
    away with 401; a control character cannot be sent at all.

    Raises:
        UsageError: the key is empty, has whitespace at an end, or holds a
            control character.
    """
    if not key.strip():
        raise UsageError("the API key is empty; give a real key or none")
    if key != key.strip():
        raise UsageError(
            "the API key starts or ends with whitespace (a newline from a "
            "file?), which no client can send: remove it"
        )
    if not key.isprintable():
        raise UsageError(
            "the API key holds a control character, which no client can send: remove it"
        )
