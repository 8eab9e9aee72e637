"""`koala serve --sandbox`: the gateway in front of a sandbox in this process.

The sandbox is the one every `--sandbox` command starts
(`koala_chat.sandbox.inprocess`): it speaks every dialect and accepts the
upstream key, or its own test key when the api dialect is the server's.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import UsageError

__all__ = ["upstream_sandbox"]

logger = logging.getLogger("koala_chat.server")


@contextmanager
def upstream_sandbox(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Yield the provider options that point the server at a sandbox.

    Without `--sandbox`, no options (the upstream is as configured); with
    it, `api_endpoint` and the `api_key` to send, while the sandbox runs.

    Raises:
        UsageError: `--sandbox` with `--endpoint`, or a bad protocol or key.
    """
    if not getattr(args, "sandbox", False):
        yield {}
        return
    if args.endpoint:
        raise UsageError("--sandbox and --endpoint exclude each other: choose one")
    from ..sandbox.inprocess import in_process
    from .config import upstream_key, upstream_protocol

    given = upstream_key()
    protocol = upstream_protocol(args.protocol, has_key=given is not None)
    with in_process(given.value if given else None, protocol) as local:
        logger.info("answering from a Koala-protocol sandbox in this process")
        sent = given or (upstream_key(local.api_key) if local.api_key else None)
        yield {"api_endpoint": local.api_endpoint, "api_key": sent}
