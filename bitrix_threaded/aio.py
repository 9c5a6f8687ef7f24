"""The async facade: :class:`AsyncBitrix` (alias ``BitrixAsync``), awaitables over the engine.

There is one engine, the thread-pool :class:`~bitrix_threaded.Bitrix`; this module
adds no HTTP stack of its own. An ``AsyncBitrix`` either builds a ``Bitrix`` from the
same arguments or wraps an existing one (:meth:`AsyncBitrix.from_client`), so a
program with sync and async code keeps one leaky bucket and one operating window.

How work reaches the engine without blocking the event loop:

* a single request (``call`` with a dict or ``raw=True``, ``call_batch``) runs on the
  engine's own request pool and is awaited through :func:`asyncio.wrap_future`;
* multi-request work (``get_all``, ``get_by_ID``, ``call`` with a list,
  ``list_and_get``, and the reader behind ``async for``) runs on a small executor
  owned by the facade (never the loop's default executor), at most
  ``max_parallel_calls`` at a time; the others wait their turn;
* the caller's :mod:`contextvars` are copied into the thread doing the work.

Cancellation: each call gets a child of the facade's :class:`CancelToken` and runs
inside :func:`~bitrix_threaded.cancel.cancel_scope`, which the engine reads at call
entry. Cancelling the awaiting task cancels that token: the engine sends nothing new
for the call and gives requests already on the wire a grace to finish (then their
connections are cut, see :meth:`~bitrix_threaded.transport.Transport.expire`). The task sees
:class:`asyncio.CancelledError` once the work has stopped (a second cancel while it
stops is delivered at once), so when the ``await`` ends, nothing more is sent on its
behalf. A multi-command write stopped part-way ends in a
:class:`~bitrix_threaded.BatchError` in the engine; it is chained as the
``CancelledError``'s ``__cause__`` and logged at WARNING, so the writes that did not
run are known. :meth:`AsyncBitrix.aclose` stops every call of the facade the same way.

Thread safety: one ``AsyncBitrix`` may be used from any number of tasks, and from
more than one event loop; its calls share the engine's limits with every thread that
uses the wrapped ``Bitrix``.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
    cast,
)

from .cancel import CancelToken, cancel_scope
from .client import Bitrix, Items, StrategyChoice
from .errors import BatchError, ClientClosed
from .validation import renamed_items
from .aio_records import AsyncRecords, handoff_size

log = logging.getLogger("bitrix_threaded")
T = TypeVar("T")

__all__ = ["AsyncBitrix", "BitrixAsync", "DEFAULT_PARALLEL_CALLS"]

#: Multi-request calls run at once per facade; they mostly wait on the engine's pool.
DEFAULT_PARALLEL_CALLS = 16
_CLOSED = "the client is closed"
_TASK_CANCELLED = "the awaiting task was cancelled"


def _in_scope(token: CancelToken, method: Optional[str], fn: Callable[..., Any],
              *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` with ``token`` as the engine's cancel scope; refuse if already cancelled."""
    token.raise_if_cancelled(method)  # cancelled while waiting for a thread: send nothing
    with cancel_scope(token):
        return fn(*args, **kwargs)


async def _settle(future: "asyncio.Future[Any]") -> None:
    """Wait until ``future`` is done without cancelling it; mark its outcome as seen."""
    if not future.done():
        await asyncio.wait({future})
    if not future.cancelled():
        future.exception()


def _report_partial(error: BaseException) -> None:
    if isinstance(error, BatchError):
        not_run = getattr(error, "not_executed", ())
        log.warning("%s: cancelled part-way; %d of %d commands succeeded, %d not executed, "
                    "%d may or may not have run", error.method or "call", len(error.results),
                    error.total, len(not_run), len(error.ambiguous))


class AsyncBitrix:
    """The async client: the same methods, arguments, results and errors as ``Bitrix``.

    ``AsyncBitrix(webhook, **options)`` takes exactly ``Bitrix``'s arguments and owns
    the engine it builds (closed by :meth:`aclose`); :meth:`from_client` wraps an
    existing ``Bitrix`` without owning it. ``max_parallel_calls`` bounds the
    multi-request calls and ``async for`` readers running at once (default 16).

    Every method is a coroutine except :meth:`iter_all` (an async iterator, arguments
    checked at once) and :meth:`slow` (an async context manager). Misuse raises
    ``TypeError``/``ValueError`` before any request, as in the sync client.
    """

    def __init__(self, webhook: str, *args: Any,
                 max_parallel_calls: int = DEFAULT_PARALLEL_CALLS, **options: Any) -> None:
        # ``args``: Bitrix's positional parameters, in fast_bitrix24's order
        # (token_func, verbose, respect_velocity_policy, ..., client, ssl).
        _check_parallel(max_parallel_calls)
        self._setup(Bitrix(webhook, *args, **options), owns=True,
                    max_parallel_calls=max_parallel_calls)

    @classmethod
    def from_client(cls, client: Bitrix, *,
                    max_parallel_calls: int = DEFAULT_PARALLEL_CALLS) -> "AsyncBitrix":
        """An async facade sharing ``client``'s engine, limits and sessions.

        :meth:`aclose` then stops the facade's own calls but leaves ``client`` open.
        """
        if not isinstance(client, Bitrix):
            raise TypeError(f"from_client takes a Bitrix, got {type(client).__name__}")
        _check_parallel(max_parallel_calls)
        facade = cls.__new__(cls)
        facade._setup(client, owns=False, max_parallel_calls=max_parallel_calls)
        return facade

    def _setup(self, client: Bitrix, *, owns: bool, max_parallel_calls: int) -> None:
        self.sync = client
        self._owns = owns
        self._max_parallel = max_parallel_calls
        self._token = CancelToken()
        self._lock = threading.Lock()
        self._executor: Optional[ThreadPoolExecutor] = None
        self._closed = False

    # -- plumbing --------------------------------------------------------------------------
    def _call_token(self, method: Optional[str]) -> CancelToken:
        if self._closed:
            raise ClientClosed(method=method)
        return self._token.child()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise ClientClosed()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_parallel, thread_name_prefix="bitrix_threaded-async")
            return self._executor

    def _submit_request(self, work: Callable[[], Any]) -> Future[Any]:
        """Start one request's work on the engine's request pool (no extra thread hop)."""
        try:
            return self.sync._runner.submit(work)
        except RuntimeError:  # the engine refuses work once it is closed
            raise ClientClosed() from None

    async def _run(self, method: Optional[str], fn: Callable[..., T], *args: Any,
                   single: bool = False, **kwargs: Any) -> T:
        token = self._call_token(method)
        try:
            context = contextvars.copy_context()
            work = functools.partial(context.run, _in_scope, token, method, fn, *args, **kwargs)
            future = self._submit_request(work) if single else self._pool().submit(work)
            return cast(T, await _await_stoppable(future, token))
        finally:
            token.detach()

    # -- lifecycle -------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop every call of this facade, wait for them to stop, then close what it owns.

        Running calls end with ``CancelledError`` in their tasks if those are cancelled,
        else with :class:`ClientClosed`; later calls raise ``ClientClosed``. The engine
        is closed only when this facade built it. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        self._token.cancel(_CLOSED, closed=True)

        def shut_down() -> None:
            if executor is not None:
                executor.shutdown(wait=True)
            if self._owns:
                self.sync.close()

        await _in_helper_thread(shut_down)

    async def __aenter__(self) -> "AsyncBitrix":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return "Async" + repr(self.sync)

    @property
    def verbose(self) -> bool:
        return self.sync.verbose

    def stats(self) -> Dict[str, Any]:
        """The shared limiter's view (see :meth:`Bitrix.stats`); does not block."""
        return self.sync.stats()

    # -- calls -----------------------------------------------------------------------------
    async def call(self, method: str, items: Items = None, *, raw: bool = False,
                   item_list: Items = None) -> Any:
        """See :meth:`Bitrix.call`. One request for a dict (or ``raw=True``), batches for a list.

        ``item_list`` is the former name of ``items`` (deprecated).
        """
        items = renamed_items(items, item_list)
        single = raw or items is None or isinstance(items, Mapping)
        return await self._run(method if isinstance(method, str) else None,
                               self.sync.call, method, items, raw=raw, single=single)

    async def call_batch(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """See :meth:`Bitrix.call_batch`: one ``batch`` request as given."""
        return await self._run("batch", self.sync.call_batch, params, single=True)

    async def get_by_ID(
        self,
        method: str,
        ID_list: Iterable[Union[int, str]],
        ID_field_name: str = "ID",
        params: Optional[Mapping[str, Any]] = None,
    ) -> Dict[Union[int, str], Any]:
        """See :meth:`Bitrix.get_by_ID`."""
        return await self._run(method if isinstance(method, str) else None,
                               self.sync.get_by_ID, method, ID_list, ID_field_name, params)

    async def get_all(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        strategy: StrategyChoice = None,
        ids: Optional[Sequence[Union[int, str]]] = None,
    ) -> List[Any]:
        """See :meth:`Bitrix.get_all`."""
        return await self._run(method if isinstance(method, str) else None,
                               self.sync.get_all, method, params, strategy=strategy, ids=ids)

    async def list_and_get(self, method_branch: str, ID_field_name: str = "ID") -> Dict[Any, Any]:
        """See :meth:`Bitrix.list_and_get`."""
        return await self._run(method_branch if isinstance(method_branch, str) else None,
                               self.sync.list_and_get, method_branch, ID_field_name)

    def iter_all(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        strategy: StrategyChoice = None,
        ids: Optional[Sequence[Union[int, str]]] = None,
        max_in_flight: Optional[int] = None,
    ) -> AsyncRecords:
        """``async for record in abx.iter_all(...)``: see :meth:`Bitrix.iter_all`.

        Pages are fetched only as fast as the loop body reads them: at most
        ``max_in_flight`` batches in flight plus one batch's worth of records waiting.
        Arguments are checked here, before any request. Call ``await records.aclose()``
        (or use ``async with``) to stop early: nothing new is sent once it is called.
        """
        token = self._call_token(method if isinstance(method, str) else None)
        try:
            with cancel_scope(token):  # the engine reads the scope when the iterator is made
                records = self.sync.iter_all(method, params, strategy=strategy, ids=ids,
                                             max_in_flight=max_in_flight)
                context = contextvars.copy_context()
        except BaseException:
            token.detach()
            raise
        return AsyncRecords(records, token, self._pool, context=context,
                            handoff=handoff_size(self.sync.batch_size),
                            stopped_error=functools.partial(token.error, method))

    @contextlib.asynccontextmanager
    async def slow(self, max_concurrent_requests: int = 1) -> AsyncIterator["AsyncBitrix"]:
        """``async with abx.slow(n):`` caps concurrent requests of the shared engine."""
        with self.sync.slow(max_concurrent_requests):
            yield self


BitrixAsync = AsyncBitrix


def _check_parallel(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_parallel_calls must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError("max_parallel_calls must be >= 1")


async def _await_stoppable(future: Future[Any], token: CancelToken) -> Any:
    """Await ``future``; if the awaiting task is cancelled, stop the work, then re-raise."""
    waiting = asyncio.wrap_future(future)
    try:
        return await asyncio.shield(waiting)
    except asyncio.CancelledError as cancelled:
        if waiting.cancelled() and not _task_cancelling():
            # The engine dropped the queued work (it was closed), not our task.
            raise ClientClosed() from None
        token.cancel(_TASK_CANCELLED)
        future.cancel()  # not started yet: it never runs
        await _settle(waiting)
        if not waiting.cancelled() and waiting.exception() is not None:
            error = waiting.exception()
            _report_partial(error)  # type: ignore[arg-type]
            raise cancelled from error
        raise


def _task_cancelling() -> bool:
    """True when the current task has a cancellation pending (known on Python 3.11+)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


async def _in_helper_thread(fn: Callable[[], None]) -> None:
    """Run blocking ``fn`` in a thread of its own (not the loop's default executor)."""
    done: Future[Any] = Future()

    def main() -> None:
        try:
            fn()
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    threading.Thread(target=main, name="bitrix_threaded-close", daemon=True).start()
    await asyncio.shield(asyncio.wrap_future(done))
