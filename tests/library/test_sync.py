"""The sync API's private loop: a generator closes cleanly wherever it is dropped.

`create_completion` runs on a private event loop. A generator dropped while
some other loop runs in the thread that collects it must still close its
response and session (a thread can run one loop at a time).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sys
import threading
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Iterator

import aiohttp
import pytest

from hardening import MESSAGES
from koala_chat import Koala
from koala_chat._sync import iterate_sync
from koala_chat.sandbox import Reply, Sandbox


def _stalled_stream(sandbox: Sandbox) -> Iterator[str]:
    """Return a `create_completion` generator that got its first piece."""
    sandbox.push(Reply(values=["first ", "never"], stall_at=1))
    stream = Koala.create_completion(
        "", MESSAGES, api_endpoint=sandbox.api_endpoint, max_retries=0
    )
    assert next(stream) == "first "
    assert sandbox.wait_stalled(5.0)
    return stream


def _open_sessions() -> list[aiohttp.ClientSession]:
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, aiohttp.ClientSession) and not obj.closed
    ]


def _drop_inside_a_loop(holder: list[Iterator[str]]) -> None:
    """Drop the only reference to the generator while a loop runs here."""

    async def drop() -> None:
        holder.clear()
        gc.collect()

    asyncio.run(drop())


def _in_this_thread(holder: list[Iterator[str]]) -> None:
    _drop_inside_a_loop(holder)


def _in_another_thread(holder: list[Iterator[str]]) -> None:
    thread = threading.Thread(target=_drop_inside_a_loop, args=(holder,))
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive()


@pytest.mark.parametrize("where", [_in_this_thread, _in_another_thread])
def test_a_stream_dropped_while_another_loop_runs_closes_its_session(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    where: Callable[[list[Iterator[str]]], None],
) -> None:
    holder = [_stalled_stream(sandbox)]
    assert _open_sessions()
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        where(holder)
        gc.collect()
    assert not unraisable, [getattr(u, "exc_value", u) for u in unraisable]
    assert not [w.message for w in caught]
    assert not _open_sessions()
    # The upstream request was closed by the generator, not left to the kernel.
    assert sandbox.wait_disconnect(5.0)
    sandbox.release()


def test_a_stream_closed_from_another_thread_closes_its_session(
    sandbox: Sandbox,
) -> None:
    stream = _stalled_stream(sandbox)
    assert isinstance(stream, Generator)
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(10.0)
    assert not closer.is_alive()
    assert not _open_sessions()
    assert sandbox.wait_disconnect(5.0)
    sandbox.release()


def test_a_stream_collected_on_its_own_loop_thread_hands_its_clean_up_over() -> None:
    closed = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def items() -> AsyncGenerator[int, None]:
        loops.append(asyncio.get_running_loop())
        try:
            yield 1
            yield 2
        finally:
            closed.set()

    async def first_item() -> list[object]:
        # Made while a loop runs here: the private loop lives in a worker thread.
        stream = iterate_sync(items)
        assert next(stream) == 1
        cycle: list[object] = [stream]
        cycle.append(cycle)  # only the collector frees it
        return cycle

    gc.disable()  # nobody but the private loop's thread may collect the cycle
    try:
        asyncio.run(first_item())
        (loop,) = loops
        collected: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop.call_soon_threadsafe(lambda: collected.set_result(gc.collect()))
        assert collected.result(5.0) > 0
    finally:
        gc.enable()
    assert closed.wait(5.0)
    for thread in threading.enumerate():
        if thread.name == "koala-chat-loop":
            thread.join(5.0)
            assert not thread.is_alive()
    assert loop.is_closed()
