"""Bad input from callers ("Bad input from callers").

Each mistake is a UsageError that names the offending item, raised before any
network traffic: the sandbox must not have seen a request.
"""

from __future__ import annotations

from typing import Any

import pytest

from hardening import MESSAGES, collect
from koala_chat import Koala, UsageError
from koala_chat.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("no_leaks")


async def assert_refused(
    sandbox: Sandbox, named: str, messages: Any = MESSAGES, **kwargs: Any
) -> UsageError:
    """Assert that the call raises a UsageError naming `named`, with no request."""
    with pytest.raises(UsageError) as caught:
        await collect(messages, **{"api_endpoint": sandbox.api_endpoint, **kwargs})
    assert named in str(caught.value)
    assert sandbox.requests == []
    return caught.value


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        ("Hi", "messages must be a list of messages, not str"),
        (b"Hi", "not bytes"),
        ({"role": "user", "content": "Hi"}, "not dict"),
        (None, "not NoneType"),
        (42, "not int"),
        ([], "messages is empty"),
    ],
)
async def test_messages_not_a_list(sandbox: Sandbox, messages: Any, named: str) -> None:
    await assert_refused(sandbox, named, messages)


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        (["Hi"], "messages[0] must be a dict, not str"),
        ([{"content": "Hi"}], "messages[0] has no 'role'"),
        ([{"role": "user"}], "messages[0] has no 'content'"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant"}],
            "messages[1] has no 'content'",
        ),
        (
            [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
            "messages[1] has the unknown role 'robot'",
        ),
        ([{"role": "User", "content": "a"}], "unknown role 'User'"),
        ([{"role": None, "content": "a"}], "unknown role None"),
        ([{"role": "user", "content": None}], "messages[0].content must be"),
        ([{"role": "user", "content": 7}], "messages[0].content must be"),
    ],
)
async def test_bad_message(sandbox: Sandbox, messages: Any, named: str) -> None:
    await assert_refused(sandbox, named, messages)


@pytest.mark.parametrize("role", [["user"], {"user": 1}])
async def test_unhashable_role(sandbox: Sandbox, role: object) -> None:
    await assert_refused(sandbox, "messages[0]", [{"role": role, "content": "Hi"}])


@pytest.mark.parametrize(
    ("part", "named"),
    [
        (
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
            "messages[0].content[1] is not a text part (type 'image_url')",
        ),
        ({"type": "input_audio"}, "(type 'input_audio')"),
        ("just text", "messages[0].content[1] is not a text part"),
        ({"text": "no type"}, "messages[0].content[1] is not a text part"),
        (
            {"type": "text", "text": 5},
            "messages[0].content[1] is a text part whose 'text' is not a string",
        ),
    ],
)
async def test_non_text_part(sandbox: Sandbox, part: object, named: str) -> None:
    content = [{"type": "text", "text": "Look: "}, part]
    await assert_refused(sandbox, named, [{"role": "user", "content": content}])


@pytest.mark.parametrize("model", [42, 0, b"gpt-4o-mini", ["gpt-4o-mini"], 1.5])
async def test_non_string_model(sandbox: Sandbox, model: Any) -> None:
    with pytest.raises(UsageError, match="model must be a string, not"):
        await collect(model=model, api_endpoint=sandbox.api_endpoint)
    assert sandbox.requests == []


async def test_non_string_model_through_the_text_api(sandbox: Sandbox) -> None:
    with pytest.raises(UsageError, match="model must be a string, not int"):
        await Koala.create_async(
            42,  # type: ignore[arg-type]
            MESSAGES,
            api_endpoint=sandbox.api_endpoint,
        )
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("timeout", -1, "total timeout"),
        ("timeout", 0, "total timeout"),
        ("timeout", "10", "total timeout"),
        ("timeout", True, "total timeout"),
        ("timeout", float("nan"), "total timeout"),
        ("timeout", float("inf"), "total timeout"),
        ("connect_timeout", -0.5, "connect timeout"),
        ("idle_timeout", -3, "idle timeout"),
        ("idle_timeout", float("inf"), "idle timeout"),
        ("max_retries", -1, "max_retries"),
        ("max_retries", 1.5, "max_retries"),
        ("retry_backoff", -0.1, "retry_backoff"),
        ("retry_backoff", float("nan"), "retry_backoff"),
        ("max_retry_wait", -1, "max_retry_wait"),
        ("max_retry_wait", float("nan"), "max_retry_wait"),
        ("max_event_size", -1, "max_event_size"),
        ("max_event_size", 0, "max_event_size"),
        ("api_endpoint", "ftp://koala.sh/api/gpt/", "API endpoint"),
        ("api_endpoint", "koala.sh/api/gpt/", "API endpoint"),
        ("proxy", "gopher://127.0.0.1:70", "unsupported proxy scheme"),
        ("proxy", "socks5://127.0.0.1", "needs a host and a port"),
    ],
)
async def test_bad_option(
    sandbox: Sandbox, option: str, value: object, named: str
) -> None:
    error = await assert_refused(sandbox, named, **{option: value})
    assert repr(value) in str(error) or option in ("api_endpoint", "proxy")


async def test_bad_proxy_url_keeps_its_password_secret(sandbox: Sandbox) -> None:
    error = await assert_refused(
        sandbox, "unsupported proxy scheme", proxy="ftp://koala:hunter2@127.0.0.1:21"
    )
    assert "hunter2" not in str(error)
    assert "hunter2" not in repr(error)


async def test_socks_proxy_and_connector_together(sandbox: Sandbox) -> None:
    import aiohttp

    async with aiohttp.TCPConnector() as connector:
        await assert_refused(
            sandbox,
            "pass either proxy= or a connector",
            proxy="socks5://127.0.0.1:1080",
            connector=connector,
        )
        assert not connector.closed


def test_sync_api_refuses_before_any_traffic(sandbox: Sandbox) -> None:
    completion = Koala.create_completion(
        "",
        [{"role": "robot", "content": "Hi"}],  # type: ignore[typeddict-item]
        api_endpoint=sandbox.api_endpoint,
    )
    with pytest.raises(UsageError, match=r"messages\[0\] has the unknown role"):
        next(completion)
    assert sandbox.requests == []


async def test_the_callers_messages_are_left_alone(sandbox: Sandbox) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    before = repr(messages)
    await collect(messages, api_endpoint=sandbox.api_endpoint)
    assert repr(messages) == before
    (request,) = sandbox.requests
    assert request.json == {
        "input": "Hi Be brief.",
        "inputHistory": [],
        "outputHistory": [],
        "model": "gpt-4o-mini",
    }
