"""``async for`` over a blocking record iterator, with backpressure and prompt stop.

:class:`AsyncRecords` wraps the generator returned by ``Bitrix.iter_all``. A reader
(one thread of the facade's executor) pulls records from it and hands them to the
event loop in batches; it holds at most ``handoff`` records that the loop has not yet
taken, then waits. While it waits the generator is not resumed, so the engine plans
no new pages: pages are fetched only as fast as the loop body consumes them, with at
most ``max_in_flight`` batches in flight (the generator's own bound).

The loop side takes every waiting record at once, so the lock and the thread
hand-over are paid once per batch of records, not once per record.

Stopping (``aclose()``, leaving ``async with``, a cancelled task, or the iterator
being garbage-collected) cancels the call's token, so the engine sends nothing new,
and tells the reader to close the generator, which gives up the pages not yet sent.
``aclose()`` and a cancelled ``__anext__`` return only once the reader has stopped.

The reader runs in a copy of the caller's :mod:`contextvars` context, taken when the
iterator was made.

Thread safety: one consumer at a time (like any iterator); the reader and the loop
share state through one ``threading.Condition``.
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Iterator, List, Optional, Tuple

from .cancel import CancelToken

__all__ = ["AsyncRecords", "handoff_size"]

#: Records per list page: one command of a batch returns at most this many.
PAGE_RECORDS = 50


def handoff_size(batch_size: int) -> int:
    """Records a reader may hold for the loop: one batch of full pages."""
    return max(PAGE_RECORDS, batch_size * PAGE_RECORDS)


_Waiter = Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _wake(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Reader:
    """The thread side: pulls the blocking iterator, hands records over under a lock."""

    def __init__(self, records: Iterator[Any], handoff: int) -> None:
        self._records = records
        self._handoff = handoff
        self._cond = threading.Condition()
        self._items: List[Any] = []
        self._done = False
        self._error: Optional[BaseException] = None
        self._stopping = False
        self._exhausted = False
        self._waiter: Optional[_Waiter] = None

    # -- reader thread -----------------------------------------------------------------
    def run(self) -> None:
        records = self._records
        try:
            for record in records:
                with self._cond:
                    while len(self._items) >= self._handoff and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        break
                    self._items.append(record)
                    waiter, self._waiter = self._waiter, None
                if waiter is not None:
                    waiter[0].call_soon_threadsafe(_wake, waiter[1])
            else:
                self._exhausted = True
        except BaseException as exc:  # handed to the loop side, raised there
            self._error = exc
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # gives up the pages not yet sent
            with self._cond:
                self._done = True
                waiter, self._waiter = self._waiter, None
            if waiter is not None:
                waiter[0].call_soon_threadsafe(_wake, waiter[1])

    # -- loop side ---------------------------------------------------------------------
    def take(self, loop: asyncio.AbstractEventLoop
             ) -> Tuple[List[Any], bool, Optional["asyncio.Future[None]"]]:
        """(records waiting, finished, a future set when more arrive or the reader ends)."""
        with self._cond:
            if self._items:
                items, self._items = self._items, []
                self._cond.notify()
                return items, False, None
            if self._done:
                return [], True, None
            waiter = loop.create_future()
            self._waiter = (loop, waiter)
            return [], False, waiter

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    @property
    def exhausted(self) -> bool:
        """True once every record was read (not stopped early, no error)."""
        return self._exhausted

    def stop(self) -> None:
        """Ask the reader to close the iterator at its next record; never blocks."""
        with self._cond:
            self._stopping = True
            self._items = []
            self._cond.notify_all()


def _stop_unread(token: CancelToken, reader: _Reader) -> None:
    token.cancel("the record iterator was dropped")
    reader.stop()


class AsyncRecords:
    """The async iterator returned by ``AsyncBitrix.iter_all``; also an async context manager.

    Records come as ``Bitrix.iter_all`` yields them; an error of the call is raised
    after the records that arrived before it.
    """

    def __init__(self, records: Iterator[Any], token: CancelToken,
                 pool: Callable[[], ThreadPoolExecutor], *, handoff: int,
                 stopped_error: Callable[[], BaseException],
                 context: Optional[contextvars.Context] = None) -> None:
        self._reader = _Reader(records, handoff)
        self._context = context or contextvars.copy_context()
        self._token = token
        self._pool = pool
        self._stopped_error = stopped_error
        self._running: Optional[Future[Any]] = None
        self._ready: Deque[Any] = deque()
        self._closed = False
        # Dropped without aclose(): stop sending, let the reader wind down on its own.
        self._finalizer = weakref.finalize(self, _stop_unread, token, self._reader)
        # Cancelled from elsewhere (the client closed): a reader waiting for the loop
        # to take records must not wait for ever.
        token.on_cancel(self._reader.stop)

    def __aiter__(self) -> "AsyncRecords":
        return self

    async def __anext__(self) -> Any:
        if self._ready:
            return self._ready.popleft()
        if self._closed:
            raise StopAsyncIteration
        if self._running is None:
            if self._token.cancelled:
                await self._finish()
                raise self._stopped_error()
            self._running = self._pool().submit(self._context.run, self._reader.run)
        loop = asyncio.get_running_loop()
        while True:
            items, done, waiter = self._reader.take(loop)
            if items:
                self._ready.extend(items)
                return self._ready.popleft()
            if done:
                await self._finish()
                error = self._reader.error
                if error is not None:
                    raise error
                if not self._reader.exhausted:  # stopped by its token, not by us
                    raise self._stopped_error()
                raise StopAsyncIteration
            try:
                await waiter  # type: ignore[misc]
            except asyncio.CancelledError:
                self._token.cancel("the awaiting task was cancelled")
                await self._finish()
                raise

    async def _finish(self) -> None:
        """Stop the reader (if not done), wait for it, release the call's token."""
        self._closed = True
        self._ready.clear()
        self._reader.stop()
        running = self._running
        if running is not None and not running.done():
            waiting = asyncio.wrap_future(running)
            await asyncio.wait({waiting})
        elif running is None:
            _close_unstarted(self._reader)
        self._finalizer.detach()
        self._token.detach()

    async def aclose(self) -> None:
        """Stop: nothing new is sent; returns once the pages in flight are given up."""
        self._token.cancel("the record iterator was closed")  # no effect once it is over
        await self._finish()

    async def __aenter__(self) -> "AsyncRecords":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _close_unstarted(reader: _Reader) -> None:
    close = getattr(reader._records, "close", None)
    if close is not None:
        close()
