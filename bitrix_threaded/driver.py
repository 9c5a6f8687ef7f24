"""Runs a pagination strategy's plans on the client's thread pool.

The strategy plans and consumes (pure); :func:`drive` sends plans through
:meth:`Runner.run_batch`, keeps at most ``max_in_flight`` of them running, feeds each
outcome back and yields the records of every step as soon as it is consumed, so memory
stays bounded by the batches in flight, not by the size of the export.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Deque, Dict, Iterator, List, Tuple

from .pagination import Outcome, Plan, Strategy
from .runner import Runner


def drive(
    runner: Runner, strategy: Strategy, *, max_in_flight: int
) -> Iterator[List[Tuple[Any, Any]]]:
    """Yield lists of ``(sort_key, record)`` pairs until the strategy has no plans left.

    A batch request that fails after its retries raises its error; a page failure the
    strategy cannot recover from raises too. Closing the generator early cancels the
    plans not yet started.
    """
    queue: Deque[Plan] = deque(strategy.initial())
    running: Dict[Future[Any], Plan] = {}
    try:
        while queue or running:
            while queue and len(running) < max_in_flight:
                plan = queue.popleft()
                chunk = list(enumerate(plan.commands))
                running[runner.submit(runner.run_batch, chunk)] = plan
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                plan = running.pop(future)
                outcome = future.result()
                if outcome.request_failed:
                    raise outcome.failures[0].error
                step = strategy.consume(
                    plan, Outcome(outcome.results, outcome.failures, outcome.totals)
                )
                queue.extend(step.plans)
                if step.records:
                    yield step.records
        strategy.finish()
    finally:
        for future in running:
            future.cancel()
