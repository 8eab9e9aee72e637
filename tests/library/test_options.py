"""The options of a provider call, parsed once (koala_chat._contract.options)."""

from __future__ import annotations

from typing import Any

import pytest

from koala_chat import UsageError
from koala_chat._contract.options import ProviderOptions
from koala_chat._http import Timeouts
from koala_chat.server.config import ServerConfig


def test_unset_options_are_left_out_and_the_rest_spread_as_keywords() -> None:
    options = ProviderOptions.parse(
        {"api_endpoint": "http://x/", "timeout": 5, "proxy": None, "connector": 1}
    )

    def call(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert call(**options) == {
        "api_endpoint": "http://x/",
        "timeout": 5.0,
        "connector": 1,
    }
    assert options == {"api_endpoint": "http://x/", "timeout": 5.0, "connector": 1}
    assert options.timeout == 5.0
    assert options.extra == {"connector": 1}
    assert ProviderOptions.parse(None) == {}


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"idle_timeout": "5"}, "idle timeout must be a positive number"),
        ({"max_retries": 1.5}, "max_retries must be a whole number"),
        ({"web_search": "yes"}, "web_search must be true or false"),
        ({"protocol": 3}, "protocol must be text"),
        ({"proxy": b"socks5://h:1"}, "proxy must be text"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_when_parsed(
    values: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(UsageError, match=pattern):
        ProviderOptions.parse(values)


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "idle_timeout"])
@pytest.mark.parametrize("value", [0, 0.0, -1])
def test_a_time_limit_the_provider_refuses_is_refused_when_parsed(
    name: str, value: float
) -> None:
    # The provider's own check, with its own message: not a later first request.
    field = {"timeout": "total"}.get(name, name.removesuffix("_timeout"))
    with pytest.raises(UsageError) as caught:
        Timeouts(**{field: value})
    with pytest.raises(UsageError) as refused:
        ProviderOptions.parse({name: value})
    assert str(refused.value) == str(caught.value)
    assert "must be a positive number of seconds" in str(refused.value)


def test_the_repr_shows_neither_the_key_nor_the_proxy_password() -> None:
    options = ProviderOptions.parse(
        {"api_key": "sk-secret-1234", "proxy": "http://user:hunter2@p:8080"}
    )
    shown = repr(options)
    assert "sk-secret" not in shown
    assert "hunter2" not in shown
    assert "p:8080" in shown
    assert options["api_key"] == "sk-secret-1234"


def test_merged_puts_the_set_values_on_top() -> None:
    options = ProviderOptions.parse({"protocol": "history", "timeout": 30})
    merged = options.merged(protocol="messages", web_search=None, timeout=None)
    assert merged == {"protocol": "messages", "timeout": 30.0}
    assert options.protocol == "history"


def test_the_server_parses_its_provider_options_once() -> None:
    config = ServerConfig(provider_options={"timeout": 7, "max_retries": None})
    assert isinstance(config.provider_options, ProviderOptions)
    assert config.provider_options == {"timeout": 7.0}
    with pytest.raises(UsageError, match="timeout"):
        ServerConfig(provider_options={"timeout": "soon"})
