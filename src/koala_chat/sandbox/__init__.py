"""A local server that speaks the Koala protocol over real TCP, for tests.

`Sandbox` runs it on a thread of its own, in one dialect or all three
(`protocol`); `Reply` scripts what it answers next;
`create_app` builds the aiohttp application for hosting it elsewhere;
`Recorder` and `Replayer` make it answer from an upstream, recording, or from
a cassette (docs/protocol.md, "Cassettes"; the format in `cassette`, the
matching in `matching`, the scrubbing in `scrubbing`); and
`python -m koala_chat.sandbox` (or `koala sandbox`, see `cli`) runs it in the
foreground.

The names are imported on first use, so that `koala --help`, which imports
`koala_chat.sandbox.cli`, does not import aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import create_app, create_runner
    from .cassette import CassetteError
    from .checks import SANDBOX_API_KEY, SANDBOX_PROTOCOLS, SandboxProtocol
    from .recorder import Recorder
    from .replayer import Replayer
    from .runner import Sandbox
    from .script import RecordedRequest, Reply, default_reply, render, validate_body
    from .state import SandboxState

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_PROTOCOLS",
    "CassetteError",
    "RecordedRequest",
    "Recorder",
    "Replayer",
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

_LAZY = {
    "SANDBOX_API_KEY": ".checks",
    "SANDBOX_PROTOCOLS": ".checks",
    "SandboxProtocol": ".checks",
    "CassetteError": ".cassette",
    "RecordedRequest": ".script",
    "Recorder": ".recorder",
    "Replayer": ".replayer",
    "Reply": ".script",
    "Sandbox": ".runner",
    "SandboxState": ".state",
    "create_app": ".app",
    "create_runner": ".app",
    "default_reply": ".script",
    "render": ".script",
    "validate_body": ".script",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
