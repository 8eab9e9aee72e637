"""What to do about an error: one next step, from the error and the command line.

`exits.FAILURES` gives each error class a reason and a default next step. The
step is made precise here with what the command line knows and the error
does not: which command ran, where the endpoint came from (`--endpoint`,
`KOALA_API_ENDPOINT` or the provider's own, koala.sh), and whether a key left
in the environment chose the api dialect (docs/protocol.md, "Choosing a
dialect").

Imported only when an error is reported.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

from ..defaults import (
    API_ENDPOINT,
    API_KEY_VARIABLE,
    ENDPOINT_VARIABLE,
    PROTOCOL_VARIABLE,
)
from ..errors import (
    AuthenticationError,
    ConnectError,
    KoalaTimeoutError,
    ProxyError,
    StatusError,
)

__all__ = ["API_PATH", "Situation", "next_step"]

#: The path of the Koala API, the same on koala.sh and on a sandbox.
API_PATH = urlsplit(API_ENDPOINT).path

#: The commands that take `--sandbox`.
_SANDBOX_COMMANDS = frozenset({"chat", "demo", "check", "models", "serve"})


class Situation(NamedTuple):
    """What the command line knew when the error happened."""

    command: str = "COMMAND"
    #: The endpoint given with `--endpoint` or `KOALA_API_ENDPOINT`; None:
    #: the provider's own.
    endpoint: str | None = None
    #: The endpoint came from `KOALA_API_ENDPOINT`.
    from_variable: bool = False
    #: `KOALA_API_KEY` alone chose the api dialect: no `--protocol`,
    #: `KOALA_PROTOCOL` or `--api-key-file`.
    key_chose_api: bool = False
    #: The key was read from `--api-key-file`.
    key_from_file: bool = False
    #: Every dialect was tried (`koala check --all`).
    surveying: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Situation:
        """Return the situation of a command run with `args` in this environment."""
        command = getattr(args, "command", None) or "COMMAND"
        option = getattr(args, "endpoint", None) or None
        variable = os.environ.get(ENDPOINT_VARIABLE) or None
        if getattr(args, "sandbox", False):
            variable = None
        key_chose_api = (
            hasattr(args, "api_key_file")
            and not getattr(args, "all", False)
            and not getattr(args, "protocol", None)
            and not getattr(args, "api_key_file", None)
            and not os.environ.get(PROTOCOL_VARIABLE, "").strip()
            and bool(os.environ.get(API_KEY_VARIABLE, "").strip())
        )
        return cls(
            command=command,
            endpoint=option or variable,
            from_variable=option is None and variable is not None,
            key_chose_api=key_chose_api,
            key_from_file=bool(getattr(args, "api_key_file", None)),
            surveying=bool(getattr(args, "all", False)),
        )

    @property
    def sandbox_option(self) -> str:
        """How to work offline: `--sandbox`, or `koala sandbox` beside."""
        if self.command in _SANDBOX_COMMANDS:
            return f"`koala {self.command} --sandbox`"
        return "`koala sandbox`"

    @property
    def endpoint_setting(self) -> str:
        """The setting that chose the endpoint."""
        return ENDPOINT_VARIABLE if self.from_variable else "--endpoint"


def next_step(exc: BaseException, situation: Situation, default: str) -> str:
    """Return the one thing to do about `exc`: a precise step, else `default`."""
    for rule in _RULES:
        step = rule(exc, situation)
        if step:
            return step
    return default


def _wrong_path(exc: BaseException, situation: Situation) -> str | None:
    """404 or 405 from a path that is not the API's: name the right one."""
    if type(exc) is not StatusError or exc.status not in (404, 405):
        return None
    parts = urlsplit(exc.url)
    if parts.path == API_PATH or not parts.netloc:
        return None
    right = f"{parts.scheme}://{parts.netloc}{API_PATH}"
    return (
        f"The Koala API answers at the path {API_PATH}: set "
        f"{situation.endpoint_setting} to {right}"
    )


def _key_chose_api(exc: BaseException, situation: Situation) -> str | None:
    """A refusal of the api dialect that a key in the environment chose."""
    if not situation.key_chose_api or not isinstance(exc, StatusError):
        return None
    if isinstance(exc, AuthenticationError):
        return (
            f"{API_KEY_VARIABLE} is set, so the api dialect was used: check that "
            "key, or unset it to use the free dialects"
        )
    if type(exc) is StatusError:
        return (
            f"{API_KEY_VARIABLE} is set, so the api dialect was used: unset it, "
            "or choose another dialect with --protocol"
        )
    return None


def _key_refused(exc: BaseException, situation: Situation) -> str | None:
    """A refused key read from a file: the file, not the variable, is wrong."""
    if isinstance(exc, AuthenticationError) and situation.key_from_file:
        return "Check the key in the file of --api-key-file (it wins over the variable)"
    return None


def _refused_shape(exc: BaseException, situation: Situation) -> str | None:
    """The endpoint refused the request's shape: it speaks another dialect."""
    from ..providers.dialects import SHAPE_REJECTED_STATUSES

    if type(exc) is not StatusError or exc.status not in SHAPE_REJECTED_STATUSES:
        return None
    if situation.surveying:
        return (
            f"Check that {situation.endpoint_setting} is a Koala API "
            f"(koala.sh's is {API_ENDPOINT})"
        )
    return "Run `koala check --all` to see which dialect the endpoint speaks"


def _unreachable(exc: BaseException, situation: Situation) -> str | None:
    """No connection: to koala.sh, offline; elsewhere, is the server up?"""
    connecting = isinstance(exc, KoalaTimeoutError) and exc.limit == "connect"
    if isinstance(exc, ProxyError) or not (isinstance(exc, ConnectError) or connecting):
        return None
    if situation.endpoint is None or _is_koala_sh(situation.endpoint):
        return f"Check the network, or work offline with {situation.sandbox_option}"
    return (
        f"Check that a Koala API server runs at the URL of "
        f"{situation.endpoint_setting} (`koala sandbox` starts one), or work "
        f"offline with {situation.sandbox_option}"
    )


def _is_koala_sh(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "koala.sh" or host.endswith(".koala.sh")


_RULES: tuple[Callable[[BaseException, Situation], str | None], ...] = (
    _wrong_path,
    _key_chose_api,
    _key_refused,
    _refused_shape,
    _unreachable,
)
