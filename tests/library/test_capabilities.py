"""Providers declare what they offer (koala_chat._contract.capabilities).

Every layer reads a provider's models, dialects and switches from its declared
capabilities; these tests hold the declarations to what the provider does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from koala_chat import AsyncGeneratorProvider, Koala, ProviderModelMixin, UsageError
from koala_chat._contract.capabilities import (
    NO_PROTOCOL,
    Capabilities,
    ModelSet,
    capabilities_of,
)
from koala_chat.defaults import DIALECT_NAMES, PROTOCOLS
from koala_chat.providers.dialects import DIALECTS
from koala_chat.sandbox import SANDBOX_API_KEY


class Plain(AsyncGeneratorProvider, ProviderModelMixin):
    """A provider without dialects."""

    default_model = "plain-1"
    models: ClassVar[tuple[str, ...]] = ("plain-1", "plain-2")


class Bare:
    """A class of the gpt4free shape that declares nothing."""

    default_model = "bare-1"
    accept_unknown_models = True

    @classmethod
    def get_models(cls) -> list[str]:
        return ["bare-1"]


def test_koala_declares_every_protocol_in_order() -> None:
    caps = Koala.capabilities()
    assert caps.protocols == PROTOCOLS
    assert caps.protocol == "auto"
    assert caps.web_search is True
    assert caps.accept_unknown_models is True
    assert {"protocol", "api_key", "web_search", "proxy", "timeout"} <= set(
        caps.options
    )


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_each_dialect_declares_its_own_models(dialect: str) -> None:
    found = Koala.capabilities().models_of(dialect)
    info = DIALECTS[dialect]  # type: ignore[index]
    assert found == ModelSet(info.default_model, info.models)
    assert found.models == tuple(Koala.get_models(protocol=dialect))
    assert found.default == Koala.get_model("", protocol=dialect)


def test_auto_declares_what_it_may_send() -> None:
    found = Koala.capabilities().models_of("auto")
    assert found.models == tuple(Koala.get_models(protocol="auto"))
    assert found.default == Koala.get_model("", protocol="auto") == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("options", "environ", "configured"),
    [
        ({}, {}, "auto"),
        ({"protocol": "messages"}, {}, "messages"),
        ({}, {"KOALA_PROTOCOL": "history"}, "history"),
        ({"api_key": SANDBOX_API_KEY}, {}, "api"),
        ({}, {"KOALA_API_KEY": SANDBOX_API_KEY}, "api"),
        ({"protocol": "messages"}, {"KOALA_API_KEY": SANDBOX_API_KEY}, "messages"),
    ],
)
def test_the_configured_protocol_is_chosen_as_a_call_chooses_it(
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    environ: dict[str, str],
    configured: str,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    caps = Koala.capabilities(**options)
    assert caps.protocol == configured
    assert caps.models == tuple(Koala.get_models(protocol=configured))
    assert caps.default_model == Koala.get_model("", protocol=configured)


def test_a_protocol_that_is_not_taken_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown protocol 'nope'"):
        Koala.capabilities(protocol="nope")
    with pytest.raises(UsageError, match="protocol must be a string"):
        Koala.capabilities(protocol=3)
    with pytest.raises(UsageError, match="unknown protocol 'nope'"):
        Koala.capabilities().models_of("nope")


def test_a_provider_without_dialects_has_one_model_set() -> None:
    caps = Plain.capabilities(protocol="messages")  # options change nothing
    assert caps == Capabilities(
        "Plain", {NO_PROTOCOL: ModelSet("plain-1", ("plain-1", "plain-2"))}
    )
    assert caps.protocols == ()
    assert caps.models_of("history") == caps.models_of()


def test_a_class_that_declares_nothing_is_described_by_its_models() -> None:
    caps = capabilities_of(Bare)
    assert (caps.name, caps.default_model, caps.models) == (
        "Bare",
        "bare-1",
        ("bare-1",),
    )
    assert caps.accept_unknown_models is True
    assert caps.protocols == ()


def test_the_declaration_is_what_the_command_line_lists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from koala_chat._cli import main

    assert main(["models"], provider=Plain) == 0
    assert capsys.readouterr().out.split() == ["plain-1", "(default)", "plain-2"]
    assert main(["models", "--protocol", "messages"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed[0] == "gemini-3-flash"
    assert listed[1] == "(default)"
