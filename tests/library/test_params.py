"""The parameter table and `parse_request` (pure), and the README's table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from koala_chat import UsageError
from koala_chat._contract.params import (
    IGNORED,
    PARAMETERS,
    Treatment,
    parse_request,
)

HELLO = [{"role": "user", "content": "Hello"}]
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_parameter_table() -> list[tuple[str, str]]:
    """Return the (first cell, treatment) rows of the README's parameter table."""
    lines = iter(README.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if line.startswith("| parameter | treatment |"):
            break
    else:
        pytest.fail("the README has no parameter table")
    next(lines)  # the | --- | row
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        first, treatment, _ = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((first, treatment))
    return rows


def test_parse_request_defaults() -> None:
    request = parse_request({"model": "", "messages": HELLO})
    assert request.stream is False
    assert request.stop == ()
    assert request.max_tokens is None
    assert request.max_chars is None
    assert not request.needs_cutting
    assert request.messages == [{"role": "user", "content": "Hello"}]


def test_parse_request_null_means_absent() -> None:
    request = parse_request(
        {"model": "m", "messages": HELLO, "temperature": None, "stop": None, "n": None}
    )
    assert request.stop == ()


def test_max_tokens_and_max_completion_tokens_take_the_smaller() -> None:
    request = parse_request(
        {"model": "", "messages": HELLO, "max_tokens": 9, "max_completion_tokens": 5}
    )
    assert request.max_tokens == 5
    assert request.max_chars == 20


def test_readme_table_names_each_parameter_once_with_its_treatment() -> None:
    treatments = {treatment.value for treatment in Treatment}
    documented: dict[str, str] = {}
    for first, treatment in readme_parameter_table():
        # Each backticked span that starts with a name names a parameter;
        # values such as `"none"` or `["text"]` do not start with one.
        names = re.findall(r"`([a-z_]+)[^`]*`", first)
        assert treatment in treatments or not names, (first, treatment)
        for name in names:
            assert name not in documented, f"{name} is listed twice"
            documented[name] = treatment
    assert documented == {
        name: parameter.treatment.value for name, parameter in PARAMETERS.items()
    }


def test_ignored_is_the_table_s_ignored_parameters() -> None:
    assert {"temperature", "top_p", "seed", "user"} <= IGNORED
    assert all(PARAMETERS[name].treatment is Treatment.IGNORED for name in IGNORED)
    assert "n" not in IGNORED


def test_every_parameter_has_a_description_and_a_schema() -> None:
    for name, parameter in PARAMETERS.items():
        assert parameter.name == name
        assert parameter.description.endswith("."), name
        schema = parameter.json_schema()
        assert schema["description"] == parameter.description
        if parameter.missing:
            assert "null" not in str(schema), name
        elif parameter.schema is None:
            assert schema["type"] == "null", name
        else:
            assert schema["anyOf"] == [parameter.schema, {"type": "null"}], name


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": None}, "model: missing; name a model (see /v1/models)"),
        ({"messages": None}, "messages: missing; send at least one message"),
        ({"model": 3, "messages": HELLO}, "model: must be a string, not a number"),
        ({"frobnicate": None}, "frobnicate: unknown parameter"),
        ({"stream": "yes"}, "stream: must be true or false, not a string"),
        (
            {"stream_options": {"include_usage": 1}},
            "stream_options.include_usage: must be true or false",
        ),
        ({"stream_options": []}, "stream_options: must be an object, not a list"),
        ({"n": True}, "n: not supported, Koala gives one choice per request; send 1"),
        ({"tool_choice": "required"}, "tool_choice: asks for a tool call"),
        ({"logprobs": 0}, "logprobs: not supported"),
        ({"audio": {}}, "audio: not supported, Koala answers in text only"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens: must be a whole"),
    ],
)
def test_refusals_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_request({"model": "", "messages": HELLO, **params})
    assert message in str(caught.value)


def test_absent_required_parameters_are_missing() -> None:
    with pytest.raises(UsageError, match=r"^model: missing"):
        parse_request({"messages": HELLO})
    with pytest.raises(UsageError, match=r"^messages: missing"):
        parse_request({"model": ""})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n", 1.0),
        ("tools", []),
        ("functions", {}),
        ("tool_choice", "auto"),
        ("function_call", "none"),
        ("response_format", {"type": "text", "extra": 1}),
        ("logprobs", False),
        ("top_logprobs", 0),
        ("modalities", ["text"]),
        ("stream_options", {}),
    ],
)
def test_neutral_values_are_accepted(name: str, value: Any) -> None:
    # A neutral value is taken as asking for nothing: not listed as ignored
    # (the reply honours it), and the request is as if it were left out.
    request = parse_request({"model": "", "messages": HELLO, name: value})
    assert name not in request.ignored
    assert request == parse_request({"model": "", "messages": HELLO})


def test_stop_sequences_are_kept_once_and_never_empty() -> None:
    request = parse_request(
        {"model": "", "messages": HELLO, "stop": ["a", "", "a", "b"]}
    )
    assert request.stop == ("a", "b")
    assert request.needs_cutting
