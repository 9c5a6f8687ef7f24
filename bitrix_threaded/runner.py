"""The request engine: limiter gating, retries, token renewal, batches on a thread pool.

Three entry points:

* :meth:`Runner.request` sends one HTTP request (a plain call or a ``batch``) and retries
  it as its :class:`~bitrix_threaded.retry.RetryState` allows. Before every send it
  takes, in order: the method's operating-time budget (:class:`OperatingWindow`), a slot
  of the concurrency gate, then a token of the leaky bucket; after the reply it feeds the
  server's ``time`` blocks back into the operating window - the top-level one for plain
  calls, ``result.result_time[label]`` for each command of a batch.
* :meth:`Runner.send_batch` sends one prepared :class:`~bitrix_threaded.batch.BatchRequest`
  and holds back every method a command was blocked for (``OPERATION_TIME_LIMIT`` inside
  the batch). ``run_batch`` (pagination, lists of commands) and ``Bitrix.call_batch``
  both go through it, so every batch is paced and held the same way.
* :meth:`Runner.run_commands` packs commands into batches, runs them on the thread pool,
  maps every result back to its input position and retries, command by command, those
  that failed for a reason that is safe to retry.

Cancellation: every entry point takes a :class:`~bitrix_threaded.cancel.CancelToken`. It
is checked before each send, booking and retry, and every wait (limiter, backoff) waits
on it. Once it is set nothing new is sent; requests on the wire get :data:`STOP_GRACE`
(and :data:`CUT_AFTER_GRACE`) to finish, then their connections are cut off, so no
thread keeps waiting for a stalled portal on behalf of a stopped call.

Thread safety: one Runner serves every thread of a :class:`~bitrix_threaded.Bitrix`.
Pool workers only send requests; they never wait for other pool tasks. A
``run_commands`` call made from a pool worker (a callback calling the client again)
runs its batches inline instead of queueing them, so nesting cannot deadlock.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .auth import Credentials
from .batch import (
    BatchRequest,
    Command,
    command_label,
    pack,
    parse_batch_reply,
    prepare,
    split_reply,
    start_time,
    time_numbers,
)
from .cancel import CancelToken
from .clock import Clock, wait_on
from .errors import (
    BatchError,
    BitrixError,
    Cancelled,
    ClientClosed,
    CommandFailure,
    ExpiredToken,
    OperationTimeLimit,
    QueryLimitExceeded,
)
from .limiter import ConcurrencyGate, LeakyBucket, OperatingWindow
from .operating import BUDGET, Report
from .paging import cost_class
from .retry import RetryPolicy, RetryState, is_write_method
from .transport import Payload, Reply, Transport

log = logging.getLogger("bitrix_threaded")

Progress = Callable[[int], None]
#: ``on_wait(method, reason, seconds)``: told of long waits (see OperatingWindow).
WaitListener = Callable[[str, str, float], None]

#: Seconds a stopped call waits for its requests already on the wire before it reports
#: them as ambiguous: long enough for a normal reply, short enough to stop promptly.
STOP_GRACE = 1.0
#: Seconds past the grace after which a stopped call's requests still on the wire are
#: cut off (:meth:`Transport.expire`), freeing the threads that wait for them.
CUT_AFTER_GRACE = 0.5
#: A wait for the leaky bucket this long or longer is announced.
VISIBLE_BUCKET_WAIT = 3.0
BUCKET_WAIT = "waiting for the request-rate limit"

_NEVER_CANCELLED = CancelToken()
_POOLS = itertools.count(1)


@dataclass
class BatchOutcome:
    """One batch request's results, failures and totals, keyed by input index."""

    results: Dict[int, Any]
    failures: List[CommandFailure]
    totals: Dict[int, int] = field(default_factory=dict)
    request_failed: bool = False
    #: Commands not sent: the part of a divisible batch that did not fit the budget.
    rest: List[Tuple[int, Command]] = field(default_factory=list)


class Runner:
    """Executes requests under the shared limiter with retries. Thread-safe."""

    def __init__(
        self,
        transport: Transport,
        credentials: Credentials,
        *,
        bucket: LeakyBucket,
        window: OperatingWindow,
        gate: ConcurrencyGate,
        policy: RetryPolicy,
        clock: Clock,
        max_workers: int,
        on_wait: Optional[WaitListener] = None,
    ):
        self.transport = transport
        self.credentials = credentials
        self.bucket = bucket
        self.window = window
        self.gate = gate
        self.policy = policy
        self.clock = clock
        self.max_workers = max_workers
        self.on_wait = on_wait
        self.stop_grace = STOP_GRACE
        self._executor: Optional[ThreadPoolExecutor] = None
        self._executor_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        # Threads named after this runner's pool, so close() can find them all.
        self._thread_prefix = f"bitrix_threaded-{next(_POOLS)}"

    # -- pool ---------------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._closed:
                raise ClientClosed()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_workers,
                    thread_name_prefix=self._thread_prefix,
                    initializer=self._mark_worker,
                )
            return self._executor

    def _mark_worker(self) -> None:
        self._local.worker = True

    @property
    def in_worker(self) -> bool:
        return getattr(self._local, "worker", False)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the pool, or inline (as a done future) inside a
        worker."""
        if self.in_worker:
            future: Future[Any] = Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered through the future, like the pool does
                future.set_exception(exc)
            return future
        return self._pool().submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Refuse new work, drop queued tasks and wait for the running ones (which stop
        sending once their calls' tokens are cancelled). From a pool worker it does not
        wait (a worker cannot wait for itself)."""
        with self._executor_lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.shutdown(wait=not self.in_worker, cancel_futures=True)
        if self.in_worker:
            return
        # A KeyboardInterrupt can land inside submit() after a worker started but
        # before the pool recorded it; that idle worker ends on the pool's shutdown
        # too, so wait for it as well.
        prefix = self._thread_prefix + "_"
        for thread in threading.enumerate():
            if thread.name.startswith(prefix) and thread is not threading.current_thread():
                thread.join()

    # -- one request -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        payload: Payload,
        *,
        write: bool,
        batch: Optional[BatchRequest] = None,
        token: Optional[CancelToken] = None,
    ) -> Reply:
        """Send one request, retrying as the policy allows; return the reply or raise.

        ``batch``: the prepared batch this request carries (its commands are booked
        per ``(method, cost class)`` and each ``result_time`` is charged to its
        method); a plain call books one command of ``method``, classed by its
        ``payload``. ``token``: when cancelled, nothing more is sent and the token's
        error (``Cancelled``/``ClientClosed``) is raised.
        """
        token = token or _NEVER_CANCELLED
        own_class = cost_class(payload) if batch is None else 0
        counts: Mapping[Any, int] = batch.counts if batch else {(method, own_class): 1}
        retry = RetryState(self.policy)
        renewed = False
        while True:
            token.raise_if_cancelled(method)
            generation = self.credentials.generation()
            try:
                reply = self._send_once(method, payload, counts, batch, own_class, token)
            except ExpiredToken:
                if renewed or not self.credentials.renewable:
                    raise
                log.debug("%s: access token expired, renewing", method)
                self.credentials.renew(generation)
                renewed = True
                continue
            except Cancelled:
                raise
            except BitrixError as err:
                if isinstance(err, QueryLimitExceeded):
                    self.bucket.penalize()
                    self.gate.penalize()
                elif isinstance(err, OperationTimeLimit):
                    # A batch is never charged itself: hold back the methods it carries,
                    # until the reset the server gave (else the window decides).
                    reset_in = self._reset_in(err)
                    for blocked in {k[0] if isinstance(k, tuple) else k for k in counts}:
                        self.window.block(blocked, reset_in)
                retry = retry.increment(err, write=write)
                if not retry.retry:
                    log.debug("%s: giving up after %s: %s", method, err.code, retry.reason)
                    raise
                log.debug("%s: %s, retry in %.2f s (%s)", method, err.code, retry.delay,
                          retry.reason)
                if retry.delay > 0 and wait_on(self.clock, retry.delay, token):
                    raise token.error(method) from None
                continue
            self.bucket.reward()
            self.gate.reward()
            return reply

    def _reset_in(self, err: OperationTimeLimit) -> Optional[float]:
        reset_at = getattr(err, "reset_at", None)
        if reset_at is None:
            return None
        _, _, finish, _ = time_numbers(err.extra.get("time") if err.extra else None)
        now = finish if finish is not None else self.clock.time()
        return max(0.0, float(reset_at) - now)

    def _send_once(
        self,
        method: str,
        payload: Payload,
        counts: Mapping[Any, int],
        batch: Optional[BatchRequest],
        own_class: int,
        token: CancelToken,
    ) -> Reply:
        ticket = self.window.acquire(counts, token)
        try:
            if not self.gate.acquire(token=token):
                raise token.error(method)
            try:
                self._wait_for_bucket(method, token)
                # The last check before the wire: after it the request is in flight.
                token.raise_if_cancelled(method)
                reply = self._post(method, payload, token)
            finally:
                self.gate.release()
            self._record(method, reply, batch, own_class)
            return reply
        finally:
            self.window.release(ticket)

    def _post(self, method: str, payload: Payload, token: CancelToken) -> Reply:
        """``transport.post``; when ``token`` is cancelled meanwhile, the request gets
        the stop grace (and a little more, so that a call waiting that long for it
        reports it first) to finish, then its connection is cut off."""
        if token is _NEVER_CANCELLED:
            return self.transport.post(method, payload)

        def expire() -> None:
            self.transport.expire(token, self.stop_grace + CUT_AFTER_GRACE)

        unregister = token.on_cancel(expire)
        try:
            return self.transport.post(method, payload, tag=token)
        finally:
            unregister()

    def _wait_for_bucket(self, method: str, token: CancelToken) -> None:
        delay = self.bucket.reserve()
        if delay <= 0:
            return
        if delay >= VISIBLE_BUCKET_WAIT and self.on_wait is not None:
            self.on_wait(method, BUCKET_WAIT, delay)
        if wait_on(self.clock, delay, token):
            raise token.error(method)

    def _record(self, method: str, reply: Reply, batch: Optional[BatchRequest],
                own_class: int) -> None:
        started = start_time(reply.data.get("time"))
        if batch is None:
            operating, reset_in, finish, processing = time_numbers(reply.data.get("time"))
            if operating is not None:
                self.window.record(method, operating, reset_in=reset_in, server_time=finish,
                                   cost=processing, started=started, cost_class=own_class)
            return
        reports = []
        labels, classes = batch.labels, batch.classes
        for label, block in _by_label(reply, "result_time").items():
            command_method = labels.get(str(label))
            operating, reset_in, finish, processing = time_numbers(block)
            if command_method is not None and operating is not None:
                # The batch's start: commands run one after another from then on.
                reports.append(Report(command_method, operating, reset_in, finish, processing,
                                      started, classes.get(str(label), 0)))
        # One store transaction for the whole batch, not one per command.
        self.window.record_many(reports)

    # -- batches -------------------------------------------------------------------------
    def send_batch(self, batch: BatchRequest, token: Optional[CancelToken] = None) -> Reply:
        """Send one prepared batch (paced, booked and retried like any request); hold
        back each method a command was blocked for. Returns the reply."""
        reply = self.request("batch", batch.payload, write=batch.write, batch=batch,
                             token=token)
        self.hold_blocked(reply, batch)
        return reply

    def hold_blocked(self, reply: Reply, batch: BatchRequest) -> None:
        """Hold back every method whose command the portal blocked inside ``reply``
        (OPERATION_TIME_LIMIT: not executed) until its reset."""
        for label, body in _by_label(reply, "result_error").items():
            code = body.get("error") if isinstance(body, Mapping) else None
            method = batch.labels.get(str(label))
            if method is not None and isinstance(code, str) and \
                    code.upper() == "OPERATION_TIME_LIMIT":
                # Whoever sends the command again then waits in the window.
                self.window.block(method, None)

    def run_batch(
        self, chunk: Sequence[Tuple[int, Command]], *, halt: bool = False,
        token: Optional[CancelToken] = None, delay: float = 0.0, divisible: bool = False,
    ) -> BatchOutcome:
        """One batch request for ``chunk`` (pairs of input index and command), after
        waiting ``delay`` seconds (a retry's backoff) on ``token``.

        ``divisible``: the commands are independent (pages of one export), so when
        they do not all fit the operating-time budget left, the prefix that fits is
        sent now (after waiting for at least the first to fit) and the others come
        back unsent in ``rest``, for the caller to send in a later batch.

        When the batch request itself fails after its own retries, or is stopped by the
        token, every command sent or to be sent carries that error and
        ``request_failed`` is True.
        """
        batch = prepare(chunk, halt=halt)
        labels = list(batch.payload["cmd"])
        rest: List[Tuple[int, Command]] = []
        try:
            if delay > 0 and token is not None and wait_on(self.clock, delay, token):
                raise token.error("batch")
            if delay > 0 and token is None:
                self.clock.sleep(delay)
            if divisible and len(chunk) > 1:
                fitting = self._fitting(chunk, token or _NEVER_CANCELLED)
                if fitting < len(chunk):
                    chunk, rest = chunk[:fitting], list(chunk[fitting:])
                    batch = prepare(chunk, halt=halt)
                    labels = list(batch.payload["cmd"])
            reply = self.send_batch(batch, token)
        except BitrixError as err:
            outcome = _failed(chunk, labels, err)
            outcome.rest = rest
            return outcome
        parsed = parse_batch_reply(reply.data)
        results, failures = split_reply(parsed, chunk)
        for failure in failures:
            self.transport.scrub(failure.error)
        index_of = {label: i for label, (i, _) in zip(labels, chunk)}
        totals = {index_of[label]: n for label, n in parsed.totals.items() if label in index_of}
        return BatchOutcome(results, failures, totals, rest=rest)

    def _fitting(self, chunk: Sequence[Tuple[int, Command]], token: CancelToken) -> int:
        """How many commands of ``chunk`` to send now: the prefix that fits the
        operating-time budget, once at least one does (waiting on ``token`` until then).
        All of them when the window would let the first go although it cannot fit (it
        never will: the window decides for the whole batch then, as for any other)."""
        keys = [(command.method, cost_class(command.params)) for _, command in chunk]
        announced = False
        while True:
            token.raise_if_cancelled("batch")
            fitting = self.window.fit(keys)
            if fitting:
                return fitting
            wait = self.window.delay({keys[0]: 1})
            if wait <= 0.0:
                return len(chunk)
            if wait >= OperatingWindow.VISIBLE_WAIT and self.on_wait is not None \
                    and not announced:
                # Announced once: the acquire that follows announces its own waits.
                self.on_wait(keys[0][0], BUDGET, wait)
                announced = True
            if wait_on(self.clock, wait, token):
                raise token.error("batch")

    def run_commands(
        self,
        commands: Sequence[Command],
        *,
        batch_size: int,
        progress: Optional[Progress] = None,
        token: Optional[CancelToken] = None,
        method: Optional[str] = None,
    ) -> Tuple[Dict[int, Any], List[CommandFailure]]:
        """Run ``commands`` in batches; return ({index: result}, failures in input order).

        Commands that fail inside a batch for a retryable reason are sent again in a later
        batch (each command advances its own :class:`RetryState`); the rest are reported.

        Stopped by ``token`` (or a KeyboardInterrupt in this thread, which cancels it):
        nothing more is sent; queued batches are dropped; for a call with writes,
        batches on the wire get :attr:`stop_grace` seconds to finish. Then it raises:
        a call that had writes sent raises :class:`BatchError` (unsent commands not
        executed, those still on the wire ambiguous, chained from the token's error),
        any other call the token's error; a KeyboardInterrupt is re-raised itself,
        with that BatchError as its cause.
        """
        token = token or CancelToken()
        results: Dict[int, Any] = {}
        final: Dict[int, CommandFailure] = {}
        states: Dict[int, RetryState] = {}
        pending = list(range(len(commands)))
        running: Dict[Future[Any], List[Tuple[int, Command]]] = {}
        stop: Future[Any] = Future()
        unregister = token.on_cancel(lambda: _resolve(stop))
        interrupt: Optional[BaseException] = None
        try:
            delay = 0.0
            while pending and not token.cancelled:
                if delay > 0 and wait_on(self.clock, delay, token):
                    break
                chunks = pack([commands[i] for i in pending], batch_size)
                for chunk in chunks:
                    if token.cancelled:
                        break
                    chunk = [(pending[j], c) for j, c in chunk]
                    try:
                        future = self.submit(self.run_batch, chunk, token=token)
                    except ClientClosed:
                        # close() cancels the calls' tokens, then the pool: a retry
                        # submitted in between is reported with the rest by _stop.
                        if not token.cancelled:
                            raise
                        break
                    running[future] = chunk
                retry: List[int] = []
                delay = 0.0
                while running and not token.cancelled:
                    done, _ = wait(set(running) | {stop}, return_when=FIRST_COMPLETED)
                    for future in done:
                        if future is stop:
                            continue
                        running.pop(future)
                        outcome = future.result()
                        wait_for = self._absorb(outcome, results, final, states, retry,
                                                progress)
                        delay = max(delay, wait_for)
                pending = sorted(retry) if not token.cancelled else pending
        except KeyboardInterrupt as exc:
            interrupt = exc
            token.cancel("interrupted")
        finally:
            unregister()
        unfinished = interrupt is not None or any(
            i not in results and (i not in final or isinstance(final[i].error, Cancelled))
            for i in range(len(commands)))
        if not token.cancelled or not unfinished:
            return results, [final[i] for i in sorted(final)]
        self._stop(commands, running, results, final, states, progress, method, token,
                   interrupt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _absorb(self, outcome: BatchOutcome, results: Dict[int, Any],
                final: Dict[int, CommandFailure], states: Dict[int, RetryState],
                retry: List[int], progress: Optional[Progress]) -> float:
        """Take one batch outcome in; return the longest retry delay it asks for."""
        results.update(outcome.results)
        finished = len(outcome.results)
        delay = 0.0
        for failure in outcome.failures:
            if outcome.request_failed or isinstance(failure.error, Cancelled):
                final[failure.index] = failure
                finished += 1
                continue
            state = states.get(failure.index) or RetryState(self.policy)
            state = state.increment(failure.error, write=is_write_method(failure.method))
            states[failure.index] = state
            if state.retry:
                retry.append(failure.index)
                delay = max(delay, state.delay)
            else:
                final[failure.index] = failure
                finished += 1
        if progress is not None and finished:
            progress(finished)
        return delay

    def _stop(self, commands: Sequence[Command],
              running: Dict[Future[Any], List[Tuple[int, Command]]],
              results: Dict[int, Any], final: Dict[int, CommandFailure],
              states: Dict[int, RetryState], progress: Optional[Progress],
              method: Optional[str], token: CancelToken,
              interrupt: Optional[BaseException]) -> None:
        """Report a stopped :meth:`run_commands` (see there) and raise."""
        stopped = token.error(method)
        for future in list(running):
            if future.cancel():  # still queued: never sent
                running.pop(future)
        writes = any(is_write_method(c.method) for c in commands)
        on_wire: Set[int] = set()
        if running and writes:
            done, not_done = wait(list(running), timeout=self.stop_grace)
            for future in done:
                running.pop(future)
                self._absorb(future.result(), results, final, states, [], progress)
            for chunk in running.values():
                on_wire.update(i for i, _ in chunk)
        failures = []
        sent_any = bool(results) or bool(on_wire)
        for index, command in enumerate(commands):
            if index in results:
                continue
            failure = final.get(index)
            if failure is not None and not isinstance(failure.error, Cancelled):
                sent_any = True
                failures.append(failure)
                continue
            executed = None if index in on_wire else False
            unsent = type(stopped)(stopped.description, method=command.method,
                                   executed=executed)
            failures.append(CommandFailure(index, command_label(index), command.method, unsent))
        report: Optional[BatchError] = None
        if writes and sent_any:
            report = BatchError(failures, results, total=len(commands), method=method)
            report.__cause__ = stopped
            log.warning("%s stopped (%s): %d done, %d not executed, %d ambiguous",
                        method or "call", token.reason, len(results),
                        len(report.not_executed), len(report.ambiguous))
        if interrupt is not None:
            if report is not None:
                interrupt.__cause__ = report
            raise interrupt
        if report is not None:
            raise report
        raise stopped


def _failed(chunk: Sequence[Tuple[int, Command]], labels: Sequence[str],
            err: BitrixError) -> BatchOutcome:
    """A batch request that failed as a whole: every command carries ``err``."""
    failures = [
        CommandFailure(index=i, label=label, method=c.method, error=err)
        for (i, c), label in zip(chunk, labels)
    ]
    return BatchOutcome({}, failures, {}, request_failed=True)


def _resolve(future: Future[Any]) -> None:
    try:
        future.set_result(None)
    except Exception:  # already resolved: a second cancellation
        pass


def _by_label(reply: Reply, key: str) -> Mapping[Any, Any]:
    """A batch reply's ``result.<key>`` map by label (PHP writes numeric labels as a
    list and an empty map as ``[]``); empty when absent or not a map."""
    result = reply.data.get("result")
    found = result.get(key) if isinstance(result, Mapping) else None
    if isinstance(found, list):
        return {str(i): value for i, value in enumerate(found)}
    return found if isinstance(found, Mapping) else {}
