"""The request engine: limiter gating, retries, token renewal, batches on a thread pool.

Two entry points:

* :meth:`Runner.request` sends one HTTP request (a plain call or a ``batch``) and retries
  it as the :class:`~bitrix_threaded.retry.RetryPolicy` allows. Before every send it
  takes, in order: the method's operating-time budget (:class:`OperatingWindow`), a slot
  of the concurrency gate, then a token of the leaky bucket; after the reply it feeds the
  server's ``time`` blocks back into the operating window - the top-level one for plain
  calls, ``result.result_time[label]`` for each command of a batch.
* :meth:`Runner.run_commands` packs commands into batches, runs them on the thread pool,
  maps every result back to its input position and retries, command by command, those
  that failed for a reason that is safe to retry (e.g. ``OPERATION_TIME_LIMIT`` inside a
  batch: the command was not executed).

Thread safety: one Runner serves every thread of a :class:`~bitrix_threaded.Bitrix`.
Pool workers only send requests; they never wait for other pool tasks. A
``run_commands`` call made from a pool worker (a callback calling the client again)
runs its batches inline instead of queueing them, so nesting cannot deadlock.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .auth import Credentials
from .batch import Command, batch_payload, command_label, pack, parse_batch_reply, split_reply
from .clock import Clock
from .errors import (
    BitrixError,
    CommandFailure,
    ExpiredToken,
    OperationTimeLimit,
    QueryLimitExceeded,
)
from .limiter import ConcurrencyGate, LeakyBucket, OperatingWindow, cost_class
from .retry import RetryPolicy, is_write_method
from .transport import Payload, Reply, Transport

log = logging.getLogger("bitrix_threaded")

Progress = Callable[[int], None]


@dataclass
class BatchOutcome:
    """One batch request's results, failures and totals, keyed by input index."""

    results: Dict[int, Any]
    failures: List[CommandFailure]
    totals: Dict[int, int] = field(default_factory=dict)
    request_failed: bool = False


TimeNumbers = Tuple[Optional[float], Optional[float], Optional[float], Optional[float]]


def _time_numbers(block: Any) -> TimeNumbers:
    """(operating, reset_in, finish, processing) from a ``time`` block, None when absent."""
    if not isinstance(block, Mapping):
        return None, None, None, None

    def num(key: str) -> Optional[float]:
        value = block.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    operating, reset_at, finish = num("operating"), num("operating_reset_at"), num("finish")
    reset_in = None
    if reset_at is not None and finish is not None:
        reset_in = max(0.0, reset_at - finish)
    return operating, reset_in, finish, num("processing")


def _start_time(block: Any) -> Optional[float]:
    """A ``time`` block's ``start`` (server seconds), None when absent."""
    value = block.get("start") if isinstance(block, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


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
    ):
        self.transport = transport
        self.credentials = credentials
        self.bucket = bucket
        self.window = window
        self.gate = gate
        self.policy = policy
        self.clock = clock
        self.max_workers = max_workers
        self._executor: Optional[ThreadPoolExecutor] = None
        self._executor_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    # -- pool ---------------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_workers,
                    thread_name_prefix="bitrix_threaded",
                    initializer=self._mark_worker,
                )
            return self._executor

    def _mark_worker(self) -> None:
        self._local.worker = True

    @property
    def in_worker(self) -> bool:
        return getattr(self._local, "worker", False)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the pool, or inline (as a done future) inside a worker."""
        if self.in_worker:
            future: Future[Any] = Future()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # delivered through the future, like the pool does
                future.set_exception(exc)
            return future
        return self._pool().submit(fn, *args)

    def close(self) -> None:
        with self._executor_lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # -- one request -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        payload: Payload,
        *,
        write: bool,
        commands: Optional[Mapping[Any, int]] = None,
        labels: Optional[Mapping[str, str]] = None,
        classes: Optional[Mapping[str, int]] = None,
    ) -> Reply:
        """Send one request, retrying as the policy allows; return the reply or raise.

        ``commands`` counts the commands per method, or per ``(method, cost class)``,
        that the request carries (a batch carries several; a plain call one of
        ``method``, classed by its ``payload``); ``labels`` maps batch labels to their
        methods so each command's ``result_time`` is charged to its method, and
        ``classes`` labels to cost classes (see :func:`cost_class`).
        """
        own_class = cost_class(payload) if labels is None else 0
        counts: Mapping[Any, int] = commands or {(method, own_class): 1}
        attempt = 0
        limit_attempt = 0
        renewed = False
        while True:
            generation = self.credentials.generation()
            try:
                reply = self._send_once(method, payload, counts, labels, classes, own_class)
            except ExpiredToken:
                if renewed or not self.credentials.renewable:
                    raise
                log.debug("%s: access token expired, renewing", method)
                self.credentials.renew(generation)
                renewed = True
                continue
            except BitrixError as err:
                if isinstance(err, QueryLimitExceeded):
                    self.bucket.penalize()
                    self.gate.penalize()
                elif isinstance(err, OperationTimeLimit):
                    # A batch is never charged itself: hold back the methods it carries.
                    for blocked in {k[0] if isinstance(k, tuple) else k for k in counts}:
                        self.window.block(blocked, self._reset_in(err))
                decision = self.policy.decide(
                    err, attempt=attempt, limit_attempt=limit_attempt, write=write
                )
                if not decision.retry:
                    log.debug("%s: giving up after %s: %s", method, err.code, decision.reason)
                    raise
                if isinstance(err, (QueryLimitExceeded, OperationTimeLimit)):
                    limit_attempt += 1
                else:
                    attempt += 1
                delay = decision.delay
                log.debug("%s: %s, retry in %.2f s (%s)", method, err.code, delay,
                          decision.reason)
                if delay > 0:
                    self.clock.sleep(delay)
                continue
            self.bucket.reward()
            self.gate.reward()
            return reply

    def _reset_in(self, err: OperationTimeLimit) -> Optional[float]:
        reset_at = getattr(err, "reset_at", None)
        if reset_at is None:
            return None
        _, _, finish, _ = _time_numbers(err.extra.get("time") if err.extra else None)
        now = finish if finish is not None else self.clock.time()
        return max(0.0, float(reset_at) - now)

    def _send_once(
        self,
        method: str,
        payload: Payload,
        counts: Mapping[Any, int],
        labels: Optional[Mapping[str, str]],
        classes: Optional[Mapping[str, int]],
        own_class: int,
    ) -> Reply:
        ticket = self.window.acquire(counts)
        try:
            with self.gate:
                self.bucket.acquire()
                reply = self.transport.post(method, payload)
            self._record(method, reply, labels, classes or {}, own_class)
            return reply
        finally:
            self.window.release(ticket)

    def _record(self, method: str, reply: Reply, labels: Optional[Mapping[str, str]],
                classes: Mapping[str, int], own_class: int) -> None:
        started = _start_time(reply.data.get("time"))
        if labels is None:
            operating, reset_in, finish, processing = _time_numbers(reply.data.get("time"))
            if operating is not None:
                self.window.record(method, operating, reset_in=reset_in, server_time=finish,
                                   cost=processing, started=started, cost_class=own_class)
            return
        result = reply.data.get("result")
        times = result.get("result_time") if isinstance(result, Mapping) else None
        if isinstance(times, list):
            times = {str(i): t for i, t in enumerate(times)}
        if not isinstance(times, Mapping):
            return
        for label, block in times.items():
            command_method = labels.get(str(label))
            operating, reset_in, finish, processing = _time_numbers(block)
            if command_method is not None and operating is not None:
                # The batch's start: commands run one after another from then on.
                self.window.record(command_method, operating, reset_in=reset_in,
                                   server_time=finish, cost=processing, started=started,
                                   cost_class=classes.get(str(label), 0))

    # -- many commands -------------------------------------------------------------------
    def run_batch(
        self, chunk: Sequence[Tuple[int, Command]], *, halt: bool = False
    ) -> BatchOutcome:
        """One batch request for ``chunk`` (pairs of input index and command).

        When the batch request itself fails after its own retries, every command carries
        that error and ``request_failed`` is True.
        """
        payload = batch_payload(chunk, halt=halt)
        labels = {label: _method_of(cmd) for label, cmd in payload["cmd"].items()}
        classes = {label: cost_class(c.params) for label, (_, c) in zip(payload["cmd"], chunk)}
        counts = Counter((c.method.lower(), classes[label])
                         for label, (_, c) in zip(payload["cmd"], chunk))
        write = any(is_write_method(c.method) for _, c in chunk)
        try:
            reply = self.request("batch", payload, write=write, commands=counts, labels=labels,
                                 classes=classes)
        except BitrixError as err:
            failures = [
                CommandFailure(index=i, label=label, method=c.method, error=err)
                for (i, c), label in zip(chunk, payload["cmd"])
            ]
            return BatchOutcome({}, failures, {}, request_failed=True)
        parsed = parse_batch_reply(reply.data)
        results, failures = split_reply(parsed, chunk)
        for failure in failures:
            if isinstance(failure.error, OperationTimeLimit):
                # Blocked inside the batch, so not executed: hold the method back until
                # its reset; whoever sends the command again then waits in the window.
                self.window.block(failure.method, self._reset_in(failure.error))
        index_of = {command_label(i): i for i, _ in chunk}
        totals = {index_of[label]: n for label, n in parsed.totals.items() if label in index_of}
        return BatchOutcome(results, failures, totals)

    def run_commands(
        self,
        commands: Sequence[Command],
        *,
        batch_size: int,
        progress: Optional[Progress] = None,
    ) -> Tuple[Dict[int, Any], List[CommandFailure]]:
        """Run ``commands`` in batches; return ({index: result}, failures in input order).

        Commands that fail inside a batch for a retryable reason are sent again in a later
        batch (each command has its own retry budget); the rest are reported.
        """
        results: Dict[int, Any] = {}
        final: Dict[int, CommandFailure] = {}
        attempts: Dict[int, int] = {}
        limit_attempts: Dict[int, int] = {}
        pending = list(range(len(commands)))
        while pending:
            chunks = pack([commands[i] for i in pending], batch_size)
            chunks = [[(pending[j], c) for j, c in chunk] for chunk in chunks]
            futures = {self.submit(self.run_batch, chunk) for chunk in chunks}
            retry: List[int] = []
            delay = 0.0
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    results.update(outcome.results)
                    finished = len(outcome.results)
                    for failure in outcome.failures:
                        wait_for = None if outcome.request_failed else self._command_retry(
                            failure, attempts, limit_attempts)
                        if wait_for is None:
                            final[failure.index] = failure
                            finished += 1
                        else:
                            retry.append(failure.index)
                            delay = max(delay, wait_for)
                    if progress is not None and finished:
                        progress(finished)
            pending = sorted(retry)
            if pending and delay > 0:
                self.clock.sleep(delay)
        return results, [final[i] for i in sorted(final)]

    def _command_retry(
        self,
        failure: CommandFailure,
        attempts: Dict[int, int],
        limit_attempts: Dict[int, int],
    ) -> Optional[float]:
        """Seconds to wait before retrying this command, or None when it has failed for good."""
        err = failure.error
        index = failure.index
        if err.code == "NOT_EXECUTED":
            # halt=0 batches run every command; an absent one was dropped by the server,
            # unrun: ask again, within the ordinary budget.
            tries = attempts.get(index, 0) + 1
            if tries >= self.policy.max_attempts:
                return None
            attempts[index] = tries
            return 0.0
        write = is_write_method(failure.method)
        decision = self.policy.decide(
            err,
            attempt=attempts.get(index, 0),
            limit_attempt=limit_attempts.get(index, 0),
            write=write,
        )
        if not decision.retry:
            return None
        if isinstance(err, (QueryLimitExceeded, OperationTimeLimit)):
            limit_attempts[index] = limit_attempts.get(index, 0) + 1
        else:
            attempts[index] = attempts.get(index, 0) + 1
        return decision.delay


def _method_of(encoded: str) -> str:
    return encoded.split("?", 1)[0].lower()
