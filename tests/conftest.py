"""Shared fixtures: real servers on 127.0.0.1 port 0, stopped in `finally`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from koala_chat.providers import Koala
from koala_chat.sandbox import Sandbox

# CI must give the same verdict on the same commit: there the property tests
# draw a fixed sequence of examples; elsewhere they explore a new one each run.
# No example has a deadline of its own: on a loaded machine that is a timing
# assertion, and every test is bounded by its time limit anyway.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Fixtures of the hardening tests: real proxy servers and a leak check;
# of the OpenAI-compatible server: `koala serve` on a thread; of the chat page:
# headless Chromium; of the gateway: a real redis-server.
pytest_plugins = ["browser", "hardening", "proxies", "redis_server", "server_fixtures"]


@pytest.fixture(autouse=True)
def _fresh_dialects(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a fresh process: no dialect remembered, none configured.

    Sandboxes of different tests may get the same port, and `auto` remembers
    per endpoint URL (docs/protocol.md, "Choosing a dialect").
    """
    monkeypatch.delenv("KOALA_PROTOCOL", raising=False)
    monkeypatch.delenv("KOALA_API_KEY", raising=False)
    Koala.forget_dialects()
    try:
        yield
    finally:
        Koala.forget_dialects()


@pytest.fixture
def messages_only() -> Iterator[Sandbox]:
    """A sandbox that speaks the messages dialect only, as koala.sh in 2026."""
    with Sandbox(protocol="messages") as server:
        yield server


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A Koala-protocol sandbox on 127.0.0.1, on a thread of its own.

    Sync and async tests alike can use it; script it with `sandbox.push(Reply(...))`
    and read what it received from `sandbox.requests`.
    """
    with Sandbox() as server:
        yield server
