"""A few threads for the checks that take time: JSON Schemas and replies.

Checking a client's JSON Schema, or a reply against it, costs time in
proportion to their size, so it runs here, off the event loop: `/health` and
the streams in progress go on meanwhile. The pool is its own, not the loop's
default executor, which aiohttp's resolver uses for DNS look-ups: a flood of
large schemas waits in this pool's queue, and the number of requests waiting
is bounded by the server's `--max-streams`. The threads start on first use;
a forked worker process starts its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar

__all__ = ["off_loop"]

#: The threads of the pool: the checks are pure Python, so more threads than
#: cores would only wait for each other.
_THREADS: Final = min(4, os.cpu_count() or 1)

_P = ParamSpec("_P")
_T = TypeVar("_T")

_pool: ThreadPoolExecutor | None = None


async def off_loop(
    function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """Return `function(*args, **kwargs)`, run on a thread of the pool.

    The call sees the caller's context variables; what it raises is raised here.
    """
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="koala-checks")
    return _pool


def _forget_pool() -> None:
    # A forked child has none of its parent's threads: it starts a pool anew.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)
