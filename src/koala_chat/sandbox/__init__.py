"""A local server that speaks the Koala protocol over real TCP, for tests.

`Sandbox` runs it on a thread of its own, in one dialect or all three
(`protocol`); `Reply` scripts what it answers next;
`create_app` builds the aiohttp application for hosting it elsewhere; and
`python -m koala_chat.sandbox` runs it in the foreground.
"""

from __future__ import annotations

from .app import create_app, create_runner
from .checks import SANDBOX_API_KEY, SANDBOX_PROTOCOLS, SandboxProtocol
from .runner import Sandbox
from .script import RecordedRequest, Reply, default_reply, render, validate_body
from .state import SandboxState

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_PROTOCOLS",
    "RecordedRequest",
    "Reply",
    "Sandbox",
    "SandboxProtocol",
    "SandboxState",
    "create_app",
    "create_runner",
    "default_reply",
    "render",
    "validate_body",
]
