"""The options of a provider call, parsed once into one typed object.

`ProviderOptions` is what the client, `koala serve`, the command line and the
`llm` plugin all hand a provider: the endpoint, the proxy, the time limits and
retries every HTTP provider takes, and Koala's `protocol`, `api_key` and
`web_search`. Each is checked for its type when the object is made, so a bad
value is a `UsageError` at start-up rather than at the first request. The
time limits are checked by the rule the provider's `Timeouts` applies
(`_values.check_time_limit`), so a limit that passes here passes there too.
What a value means (which dialects exist, whether a key fits one) stays the
provider's to check. Unset options are left out, so a provider (or the seed's
call) sees exactly the keywords it always saw.

It is a read-only mapping of the options that are set, so it spreads into a
call as `provider.create_async_generator(model, messages, **options)`.
"""

from __future__ import annotations

from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from .._urls import redact_url
from .._values import check_time_limit, whole_number
from ..errors import UsageError

__all__ = ["ProviderOptions"]

#: The options of `ProviderOptions` that hold a time limit, and the field of
#: the provider's `Timeouts` that each becomes.
_TIME_LIMITS: Final = {
    "timeout": "total",
    "connect_timeout": "connect",
    "idle_timeout": "idle",
}
#: The options that hold text.
_TEXT: Final = ("protocol", "api_endpoint", "proxy")


# eq=False: equality is the mapping's, so the options equal a dict of them.
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ProviderOptions(Mapping[str, Any]):
    """The checked options of a provider call; None means not set.

    `extra` holds the keywords a provider takes beyond these (`connector`,
    `retry_backoff`, ...), passed on unchecked. The repr shows the proxy
    without its password and never the key.
    """

    api_endpoint: str | None = None
    proxy: str | None = field(default=None, repr=False)
    timeout: float | None = None
    connect_timeout: float | None = None
    idle_timeout: float | None = None
    max_retries: int | None = None
    protocol: str | None = None
    #: The key of the official API: a `str`, or an object that hides it.
    api_key: object | None = field(default=None, repr=False)
    web_search: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The options that are set, as the keywords of a call: made once, so that
    #: spreading them (once per request on the server) costs what a dict does.
    _set: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _TEXT:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise UsageError(
                    f"The option {name} must be text, not {type(value).__name__}."
                )
        given = {name: getattr(self, name) for name in _NAMES}
        for name, limit in _TIME_LIMITS.items():
            if given[name] is not None:
                check_time_limit(limit, given[name])
                given[name] = float(given[name])
                object.__setattr__(self, name, given[name])
        if self.max_retries is not None:
            whole_number(given, "max_retries", 0)
        if self.web_search is not None and not isinstance(self.web_search, bool):
            raise UsageError(
                "The option web_search must be true or false, not "
                f"{type(self.web_search).__name__}."
            )
        if self.api_key is not None and not self.api_key:
            given["api_key"] = None
            object.__setattr__(self, "api_key", None)
        set_ = {name: value for name, value in given.items() if value is not None}
        object.__setattr__(self, "_set", {**set_, **self.extra})

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None = None) -> ProviderOptions:
        """Return the options of a keyword mapping; None values are unset.

        Names this class does not know go to `extra`.

        Raises:
            UsageError: a value of the wrong type, a time limit that is not
                more than 0, or a negative count.
        """
        if isinstance(options, ProviderOptions):
            return options
        given = {k: v for k, v in (options or {}).items() if v is not None}
        known = {name: given.pop(name) for name in _NAMES if name in given}
        return cls(**known, extra=given)

    def merged(self, **changes: Any) -> ProviderOptions:
        """Return these options with `changes` on top (None values change nothing)."""
        changes = {name: value for name, value in changes.items() if value is not None}
        if not changes:
            return self
        return ProviderOptions.parse({**self._set, **changes})

    @property
    def shown_proxy(self) -> str | None:
        """The proxy URL without its password, for messages and reprs."""
        return None if self.proxy is None else redact_url(self.proxy)

    def __getitem__(self, name: str) -> Any:
        return self._set[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._set)

    def __len__(self) -> int:
        return len(self._set)

    def keys(self) -> KeysView[str]:
        """The names of the options that are set (what `**options` spreads)."""
        return self._set.keys()

    def __repr__(self) -> str:
        shown = [
            f"{name}={'***' if name == 'api_key' else getattr(self, name)!r}"
            for name in _NAMES
            if getattr(self, name) is not None and name not in ("proxy",)
        ]
        if self.proxy is not None:
            shown.append(f"proxy={self.shown_proxy!r}")
        if self.extra:
            shown.append(f"extra=<{', '.join(sorted(self.extra))}>")
        return f"ProviderOptions({', '.join(shown)})"


#: The typed options, in the order of the class.
_NAMES: Final = tuple(
    f.name for f in fields(ProviderOptions) if f.name not in ("extra", "_set")
)
