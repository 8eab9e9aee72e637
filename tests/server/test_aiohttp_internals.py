"""The parts of aiohttp that `koala_chat.server.limits` subclasses, as it expects them.

aiohttp offers no public option for a cap on open connections and no public
hook for the requests its parser refuses, so `limits.py` subclasses its
connection protocol (`RequestHandler`), its low-level `Server` (reading
`_kwargs` and `_loop`) and `AppRunner` (overriding `_make_server`). None of
that is a promise of aiohttp's: pyproject.toml pins the range of versions it
was checked against, and these tests fail, naming the installed version and
what changed, as soon as an upgrade moves any of it. The behaviour itself (503
past the cap, parse errors in the OpenAI shape) is `test_server_hardening.py`'s.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, NoReturn

import aiohttp
import pytest
from aiohttp import abc, http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from koala_chat.server import limits
from koala_chat.server.app import create_app, create_runner
from koala_chat.server.config import ServerConfig

EMPTY = inspect.Parameter.empty
POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY
VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


def changed(what: str) -> NoReturn:
    """Fail, saying which aiohttp is installed and what `limits.py` misses in it."""
    pytest.fail(
        f"aiohttp {aiohttp.__version__}: {what}; koala_chat/server/limits.py "
        "relies on it (see the aiohttp range in pyproject.toml)",
        pytrace=False,
    )


def parameters(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


def expect_parameters(
    owner: str, function: Callable[..., Any], expected: list[tuple[str, Any, Any]]
) -> None:
    """Fail unless `function` starts with `expected` (name, kind, default)."""
    found = [(p.name, p.kind, p.default) for p in parameters(function).values()]
    if found[: len(expected)] != expected:
        changed(
            f"{owner} has the signature {inspect.signature(function)}, "
            f"not one starting with {[name for name, _, _ in expected]}"
        )


def expect_attribute(owner: object, name: str) -> None:
    if not hasattr(owner, name):
        changed(f"{getattr(owner, '__name__', owner)!s} has no attribute {name!r}")


# --- RequestHandler: the connection protocol ---------------------------------------


def test_request_handler_is_still_aiohttps_connection_protocol() -> None:
    if not issubclass(limits.GuardedHandler, RequestHandler):
        changed("aiohttp.web_protocol.RequestHandler moved")
    if web.RequestHandler is not RequestHandler:
        changed("aiohttp.web.RequestHandler is not aiohttp.web_protocol's")


def test_request_handler_takes_its_server_and_loop() -> None:
    expect_parameters(
        "RequestHandler.__init__",
        RequestHandler.__init__,
        [
            ("self", POSITIONAL, EMPTY),
            ("manager", POSITIONAL, EMPTY),
            ("loop", KEYWORD, EMPTY),
        ],
    )


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("connection_made", [("transport", POSITIONAL, EMPTY)]),
        ("connection_lost", [("exc", POSITIONAL, EMPTY)]),
        ("data_received", [("data", POSITIONAL, EMPTY)]),
        (
            "handle_error",
            [
                ("request", POSITIONAL, EMPTY),
                ("status", POSITIONAL, 500),
                ("exc", POSITIONAL, None),
                ("message", POSITIONAL, None),
            ],
        ),
    ],
)
def test_request_handler_methods_that_limits_overrides(
    method: str, expected: list[tuple[str, Any, Any]]
) -> None:
    expect_attribute(RequestHandler, method)
    function = getattr(RequestHandler, method)
    expect_parameters(
        f"RequestHandler.{method}", function, [("self", POSITIONAL, EMPTY), *expected]
    )
    found = parameters(function)
    if len(found) != len(expected) + 1:
        changed(
            f"RequestHandler.{method} has the signature {inspect.signature(function)}"
        )


def test_the_handlers_own_slots_are_not_aiohttps() -> None:
    # GuardedHandler keeps its state in slots of its own; one that aiohttp's
    # class also used would silently overwrite aiohttp's state.
    ours = set(limits.GuardedHandler.__slots__)
    for cls in RequestHandler.__mro__:
        taken = ours & (set(getattr(cls, "__slots__", ())) | set(vars(cls)))
        if taken:
            changed(f"{cls.__name__} has attributes of its own named {sorted(taken)}")


def test_handle_error_can_see_what_was_sent_already() -> None:
    # GuardedHandler.handle_error reads request.writer.output_size.
    expect_attribute(web.BaseRequest, "writer")
    expect_attribute(abc.AbstractStreamWriter, "output_size")


@pytest.mark.parametrize(
    "name",
    [*(cls.__name__ for cls in limits._PARSE_ERRORS), "HttpProcessingError"],
)
def test_the_parse_errors_limits_names_exist(name: str) -> None:
    expect_attribute(http_exceptions, name)
    if not issubclass(
        getattr(http_exceptions, name), http_exceptions.HttpProcessingError
    ):
        changed(f"http_exceptions.{name} is no HttpProcessingError")


# --- Server and AppRunner ----------------------------------------------------------


def test_server_takes_the_arguments_limits_passes() -> None:
    expect_parameters(
        "Server.__init__",
        web.Server.__init__,
        [("self", POSITIONAL, EMPTY), ("handler", POSITIONAL, EMPTY)],
    )
    found = parameters(web.Server.__init__)
    for name in ("request_factory", "handler_cancellation", "loop"):
        if name not in found or found[name].kind is not KEYWORD:
            changed(f"Server.__init__ takes no keyword-only {name!r}")
    if not any(p.kind is VAR_KEYWORD for p in found.values()):
        changed("Server.__init__ takes no **kwargs for its RequestHandlers")
    expect_parameters(
        "Server.__call__", web.Server.__call__, [("self", POSITIONAL, EMPTY)]
    )


async def test_a_server_keeps_its_handler_settings_where_limits_reads_them() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    def factory(*args: Any) -> web.BaseRequest:
        raise AssertionError("never called")

    server = web.Server(
        handler, request_factory=factory, handler_cancellation=True, keepalive_timeout=7
    )
    for name in ("_kwargs", "_loop", "request_handler", "request_factory"):
        expect_attribute(server, name)
    if server._kwargs != {"keepalive_timeout": 7}:
        changed(f"Server._kwargs is {server._kwargs!r}, not its handlers' keywords")
    if server._loop is not asyncio.get_running_loop():
        changed("Server._loop is not the loop the server runs on")
    if server.request_handler is not handler or server.request_factory is not factory:
        changed("Server.request_handler or .request_factory is not what it was given")
    if getattr(server, "handler_cancellation", None) is not True:
        changed("Server.handler_cancellation is not what it was given")


def test_app_runner_makes_its_server_in_make_server() -> None:
    expect_attribute(web.AppRunner, "_make_server")
    if not inspect.iscoroutinefunction(web.AppRunner._make_server):
        changed("AppRunner._make_server is not a coroutine function")
    expect_parameters(
        "AppRunner._make_server",
        web.AppRunner._make_server,
        [("self", POSITIONAL, EMPTY)],
    )


async def test_koala_serves_runner_ends_up_with_the_guarded_server() -> None:
    # The whole chain at once: setup() calls _make_server, whose server makes
    # GuardedHandlers with the app's settings. No socket is opened.
    runner = create_runner(create_app(ServerConfig(port=0, max_connections=3)))
    await runner.setup()
    try:
        server = runner.server
        if not isinstance(server, limits.GuardedServer):
            changed(
                f"AppRunner.setup() made a {type(server).__name__}, "
                "not the server of _make_server"
            )
        # GuardedServer passes them all on; aiohttp's own Server (3.14) drops
        # unknown ones with a warning.
        unknown = set(server._kwargs) - set(parameters(RequestHandler.__init__))
        if unknown:
            changed(f"RequestHandler.__init__ takes no keywords {sorted(unknown)}")
        protocol = server()
        assert isinstance(protocol, limits.GuardedHandler)
        assert server.max_connections == 3
        expect_attribute(protocol, "logger")
    finally:
        await runner.cleanup()
