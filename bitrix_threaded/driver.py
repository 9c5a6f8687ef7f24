"""Runs a pagination strategy's plans on the client's thread pool.

The strategy plans and consumes (pure); :func:`drive` sends plans through
:meth:`Runner.run_batch`, keeps at most ``max_in_flight`` of them running, feeds each
outcome back and yields the records of every step as soon as it is consumed, so memory
stays bounded by the batches in flight (and the one being handed out), not by the size
of the export. A finished request's place goes to the next plan before its records are
handed out: a consumer busy with one batch's records does not leave places empty. A
plan the strategy calls divisible is sent in parts when only some of its commands fit
the operating-time budget left (:meth:`Runner.run_batch`), so a large export proceeds
at the budget's pace instead of waiting for room for whole batches.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from typing import Any, Deque, Dict, Iterator, Optional, Tuple

from .cancel import CancelToken
from .pagination import Outcome, Plan, Step, Strategy
from .runner import Runner


def drive(
    runner: Runner, strategy: Strategy, *, max_in_flight: int,
    token: Optional[CancelToken] = None,
) -> Iterator[Step]:
    """Yield each step that holds records until the strategy has no plans left.

    A batch request that fails after its retries raises its error; a page failure the
    strategy cannot recover from raises too. A plan that retries pages waits its
    retry state's delay (on the token) before it is sent.

    Stopping: when ``token`` is cancelled nothing more is sent, queued plans are
    dropped and the token's error (``Cancelled``/``ClientClosed``) is raised at once
    (reads only: nothing on the wire needs reporting). A KeyboardInterrupt in the
    consuming thread, or closing the generator early, cancels the token the same way.
    """
    token = token or CancelToken()
    # Each plan with whether its retry delay was already waited (the part of a plan
    # that did not fit the operating-time budget comes back ready to go).
    queue: Deque[Tuple[Plan, bool]] = deque((plan, False) for plan in strategy.initial())
    running: Dict[Future[Any], Plan] = {}
    stop: Future[Any] = Future()

    def wake() -> None:
        try:
            stop.set_result(None)
        except Exception:  # already woken
            pass

    unregister = token.on_cancel(wake)
    finished = False

    def fill() -> None:
        """Send queued plans until ``max_in_flight`` are running."""
        while queue and len(running) < max_in_flight:
            plan, waited = queue.popleft()
            chunk = list(enumerate(plan.commands))
            delay = plan.retry.delay if plan.retry is not None and not waited else 0.0
            running[runner.submit(runner.run_batch, chunk, token=token, delay=delay,
                                  divisible=strategy.divisible(plan))] = plan

    try:
        while queue or running:
            token.raise_if_cancelled(strategy.method.name)
            fill()
            done, _ = wait(list(running) + [stop], return_when=FIRST_COMPLETED)
            for future in done:
                if future is stop:
                    continue
                plan = running.pop(future)
                outcome = future.result()
                if outcome.rest:
                    # Only a prefix fitted the budget: the rest goes next, as its own
                    # plan (results stay keyed by position within each part).
                    sent = len(plan.commands) - len(outcome.rest)
                    queue.appendleft((replace(plan, commands=plan.commands[sent:]), True))
                    plan = replace(plan, commands=plan.commands[:sent])
                if outcome.request_failed:
                    raise outcome.failures[0].error
                step = strategy.consume(
                    plan, Outcome(outcome.results, outcome.failures, outcome.totals)
                )
                # What a reply leads to goes first: a range's rest, the pages held
                # for the deepest one. Pieces finish rather than all being started,
                # and when the limits pace the export late in it, the requests left
                # are the full first chains, not a pile of shorter rests.
                queue.extendleft((next_plan, False) for next_plan in reversed(step.plans))
                # This request's place is taken now, not once the caller is done with
                # its records: a slow consumer (writing each record out) would otherwise
                # leave the place empty for as long as it works on them.
                fill()
                if step.records or step.runs:
                    yield step
        token.raise_if_cancelled(strategy.method.name)
        strategy.finish()
        finished = True
    finally:
        unregister()
        if not finished:
            # An error, an interrupt or an early close: nothing more goes out for it.
            token.cancel("stopped")
        for future in running:
            future.cancel()
