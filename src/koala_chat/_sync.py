"""Drive an async iterator from synchronous code.

The async core runs on a private event loop. Where the calling thread has no
running loop, that loop runs right here; where it already runs one (a notebook),
the private loop lives in a worker thread, since a thread can run only one loop.
Nobody's loop is patched (no nest_asyncio). Whenever the caller stops early
(break, close, an exception, Ctrl-C) the async iterator is closed at once, so its
response and session are released before control returns.

A generator may also be closed where it was not made: dropped and collected in
another thread, or in this thread while some other event loop runs here (a
notebook cell, another library's `asyncio.run`). A thread that runs a loop
cannot run a second one, so the private loop then finishes its work in a
short-lived thread of its own, and the caller waits for it. Collected on the
private loop's own thread (a reference cycle freed during one of its
callbacks), the generator cannot wait for that loop: it hands the clean-up to
the loop, which closes the stream, then stops and closes itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["iterate_sync", "run_sync"]

T = TypeVar("T")


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `factory()` to completion on a private loop."""
    with _PrivateLoop() as loop:
        return loop.run(factory())


def iterate_sync(factory: Callable[[], AsyncGenerator[T, None]]) -> Iterator[T]:
    """Yield the items of the async generator `factory()` from synchronous code."""
    with _PrivateLoop() as loop:
        stream = factory()
        try:
            while True:
                try:
                    item = loop.run(_next(stream))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            loop.finish(stream.aclose())


async def _next(stream: AsyncGenerator[T, None]) -> T:
    return await stream.__anext__()


class _PrivateLoop:
    """An event loop of our own, here or in a worker thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        # Clean-ups handed to the loop from its own thread (strong references).
        self._handed_over: set[asyncio.Task[Any]] = set()
        if _loop_running_here():
            self._thread = threading.Thread(
                target=self._run_forever, name="koala-chat-loop", daemon=True
            )
            self._thread.start()

    def _run_forever(self) -> None:
        """The worker thread: run the loop until stopped, then close it."""
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _on_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def __enter__(self) -> _PrivateLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the private loop and return its result.

        If the wait is interrupted (KeyboardInterrupt), the coroutine's task is
        cancelled and awaited before the interruption goes on.
        """
        if self._thread is None:
            if _loop_running_here():
                return self._run_in_thread(coroutine)
            task = self._loop.create_task(coroutine)
            try:
                return self._loop.run_until_complete(task)
            except BaseException:
                if not task.done():
                    task.cancel()
                    # Wait for the task to unwind without raising its outcome.
                    self._loop.run_until_complete(asyncio.wait({task}))
                raise
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()
                # Wait for the cancellation to be carried out on the loop thread.
                asyncio.run_coroutine_threadsafe(_noop(), self._loop).result()
            raise

    def _run_in_thread(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the private loop in a thread made for it."""
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                outcome.set_result(self._loop.run_until_complete(coroutine))
            except BaseException as exc:  # handed to the waiting caller
                outcome.set_exception(exc)

        thread = threading.Thread(target=run, name="koala-chat-close")
        thread.start()
        thread.join()
        return outcome.result()

    def finish(self, coroutine: Coroutine[Any, Any, object]) -> None:
        """Run the clean-up `coroutine` to its end, wherever this is called.

        On the private loop's own thread, waiting for the loop would never end:
        the coroutine is handed to the loop instead.
        """
        if self._on_loop_thread():
            task = self._loop.create_task(coroutine)
            self._handed_over.add(task)
            task.add_done_callback(self._handed_over.discard)
            return
        self.run(coroutine)

    def close(self) -> None:
        """Finish async generators, stop the loop and its thread; idempotent."""
        if self._loop.is_closed():
            return
        if self._on_loop_thread():
            self._handed_over.add(self._loop.create_task(self._wind_down()))
            return
        try:
            self.run(self._loop.shutdown_asyncgens())
            self.run(self._loop.shutdown_default_executor())
        finally:
            if self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
            self._loop.close()

    async def _wind_down(self) -> None:
        """Finish the handed-over clean-ups, then stop (the thread closes the loop)."""
        try:
            current = asyncio.current_task()
            pending = {task for task in self._handed_over if task is not current}
            if pending:
                await asyncio.wait(pending)
            await self._loop.shutdown_asyncgens()
            await self._loop.shutdown_default_executor()
        finally:
            self._loop.stop()


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _noop() -> None:
    return None
