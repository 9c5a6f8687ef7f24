"""Pagination strategies: plain classes that plan batches and consume their results.

A strategy never does I/O. It hands out :class:`Plan` objects (the commands of one
``batch`` request, at most ``batch_size``, labelled by position) and is fed each plan's
:class:`Outcome`; it answers with a :class:`Step`: the records it got and the plans to
send next. The client's driver runs the plans on the thread pool and the strategy
decides everything else, so each strategy is tested on plain dicts.

* :class:`OffsetPages` - ``start=0`` first, which reports ``total``; then every other
  offset in parallel batches. Works for every list method and any ``order``. Costs an
  offset scan and a count per page on the server.
* :class:`IdRanges` - the default where the method can filter and order by its ID: the
  ID span is split into ranges walked in parallel; inside a range, one batch chains up
  to ``batch_size`` cursor pages (``>ID`` = the previous page's last ID, ``order ID
  ASC``, ``start=-1``: no offset scan, no count), so one request brings up to 2,500
  records. Each range yields only IDs inside its own bounds and past its own cursor, so
  every record comes exactly once even while records are added or deleted.
* :class:`IdList` - known IDs fetched through the list method with ``@ID`` filters, 50
  IDs per command.

Records are emitted as ``(sort_key, record)`` pairs; sorting by the key gives ID order
(or, for offset pages, the server's order).

Thread safety: a strategy object belongs to one export and is driven by one thread.
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .batch import Command, command_label
from .errors import (
    BitrixError,
    CommandFailure,
    OperationTimeLimit,
    OverloadLimit,
    QueryLimitExceeded,
    ServerError,
    TransportError,
)
from .methods import ListMethod
from .validation import BitrixWarning

PAGE = 50
#: Attempts for a page that failed inside a batch for a transient reason.
PAGE_ATTEMPTS = 30
#: The fewest pages an ID-range batch is cut to when spreading an export out: below
#: this the pages wasted past the end of each range cost more than the time saved.
MIN_PAGES = 20


@dataclass(frozen=True)
class Plan:
    """One batch request: commands labelled ``command_label(position)``."""

    commands: Tuple[Command, ...]
    tag: Any = None
    attempt: int = 0


@dataclass
class Outcome:
    """What came back for a plan, keyed by command position."""

    results: Dict[int, Any] = field(default_factory=dict)
    failures: List[CommandFailure] = field(default_factory=list)
    totals: Dict[int, int] = field(default_factory=dict)


@dataclass
class Step:
    records: List[Tuple[Any, Any]] = field(default_factory=list)
    plans: List[Plan] = field(default_factory=list)


def _transient(failure: CommandFailure) -> bool:
    """Safe to ask again: the page was not produced for a passing reason."""
    err = failure.error
    if isinstance(err, TransportError) and not err.retryable:
        return False
    return failure.code == "NOT_EXECUTED" or isinstance(
        err, (OperationTimeLimit, QueryLimitExceeded, OverloadLimit, ServerError, TransportError)
    )


def _raise(failure: CommandFailure) -> None:
    err = failure.error
    if isinstance(err, BitrixError):
        raise err
    raise BitrixError(failure.code, failure.description, method=failure.method)


def _int_id(value: Any) -> Optional[int]:
    """A record ID as an int: legacy methods send ``"410"``, newer ones ``410``."""
    kind = type(value)
    if kind is int:
        return value
    if kind is str:
        try:
            return int(value)
        except ValueError:
            return None
    return None


class Strategy(abc.ABC):
    """Base class: shared parameter handling. Subclasses implement initial/consume."""

    name = "strategy"

    def __init__(self, method: ListMethod, params: Mapping[str, Any], batch_size: int = 50):
        if not 1 <= batch_size <= 50:
            raise ValueError("batch_size must be between 1 and 50")
        self.method = method
        self.batch_size = batch_size
        self.params: Dict[str, Any] = {}
        self.user_filter: Dict[str, Any] = {}
        for key, value in params.items():
            if key.lower() == method.filter_param.lower():
                self.user_filter = dict(value)
            elif key.lower() == "start":
                continue  # the strategy owns paging
            else:
                self.params[key] = value
        #: Records expected, when known (for progress bars); may change as pages arrive.
        self.total: Optional[int] = None
        self.emitted = 0

    @abc.abstractmethod
    def initial(self) -> List[Plan]:
        """The first plans to send."""

    @abc.abstractmethod
    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        """Take one plan's outcome; return its records and the plans to send next."""

    def finish(self) -> None:
        """Called once after the last plan; may warn about inconsistencies."""

    def _command(self, filter_: Mapping[str, Any], start: int, **overrides: Any) -> Command:
        params = dict(self.params)
        params.update(overrides)
        if filter_:
            params[self.method.filter_param] = dict(filter_)
        params["start"] = start
        return Command(self.method.name, params)

    def _chunks(self, commands: Sequence[Command], tag: Any) -> List[Plan]:
        size = self.batch_size
        return [
            Plan(tuple(commands[i:i + size]), tag=tag)
            for i in range(0, len(commands), size)
        ]


class OffsetPages(Strategy):
    """Pages by ``start`` offsets: the first page gives ``total``, the rest go in parallel.

    Records are de-duplicated by ID when the method's records have one (pages shift when
    records are added or deleted during the export); a warning is issued when the number
    of records differs from the first page's ``total``.
    """

    name = "offset"

    def __init__(self, method: ListMethod, params: Mapping[str, Any], batch_size: int = 50):
        super().__init__(method, params, batch_size)
        self._seen: set = set()
        self._dedupe = method.record_id is not None
        self._held: List[Command] = []

    def initial(self) -> List[Plan]:
        return [Plan((self._command(self.user_filter, 0),), tag=0)]

    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        retry: List[Tuple[int, Command]] = []
        for position, command in enumerate(plan.commands):
            offset = command.params["start"]
            if position not in outcome.results:
                failure = next(f for f in outcome.failures if f.index == position)
                if _transient(failure) and plan.attempt < PAGE_ATTEMPTS:
                    retry.append((offset, command))
                    continue
                _raise(failure)
            page = self.method.records(outcome.results[position], f"start={offset}")
            for i, record in enumerate(page):
                if self._dedupe and type(record) is dict:
                    rid = record.get(self.method.record_id)
                    if rid is not None:
                        if rid in self._seen:
                            continue
                        self._seen.add(rid)
                step.records.append(((offset, i), record))
            if offset == 0 and plan.tag == 0:
                self.total = outcome.totals.get(position)
                if self.total is not None and len(page) >= PAGE:
                    later = [self._command(self.user_filter, start)
                             for start in range(PAGE, self.total, PAGE)]
                    if len(later) > self.batch_size:
                        # The deepest page costs the most (an offset scan): fetch it
                        # first, alone, so the operating-time window knows the worst
                        # cost before the other pages go out together, deepest first.
                        self._held = later[-2::-1]
                        step.plans.append(Plan((later[-1],), tag="deep"))
                    else:
                        step.plans.extend(self._chunks(later, tag="pages"))
            if plan.tag == "deep" and self._held:
                step.plans.extend(self._chunks(self._held, tag="pages"))
                self._held = []
        if retry:
            step.plans.append(Plan(tuple(c for _, c in retry), tag=plan.tag,
                                   attempt=plan.attempt + 1))
        self.emitted += len(step.records)
        return step

    def finish(self) -> None:
        if self.total is not None and self.emitted != self.total:
            warnings.warn(
                f"{self.method.name}: got {self.emitted} records, the first page said "
                f"{self.total} (records changed during the export; use the ID ranges "
                "strategy for an exactly-once export)",
                BitrixWarning,
                stacklevel=3,
            )


@dataclass
class _Range:
    lo: int           # exclusive: the last ID already delivered (or the bound below)
    hi: int           # inclusive upper bound; may shrink when the range is split
    density: float    # records per ID unit, learned from this range's own pages
    done: bool = False
    busy: bool = False
    reach: int = 0    # an estimate of how far the batch in flight will get
    seen: int = 0     # records this range has delivered
    walked: int = 0   # ID span this range has walked

    def learn(self, records: int, span: int) -> None:
        self.seen += records
        self.walked += max(0, span)
        if self.walked > 0 and self.seen > 0:
            self.density = min(1.0, self.seen / self.walked)


class IdRanges(Strategy):
    """Parallel ID ranges with chained cursor pages inside each batch.

    ``parallel`` is how many ranges are kept walking at once (the driver's workers);
    ``request_budget`` is how many requests the leaky bucket lets go right now. The
    commands of one batch run one after another on the server, so when the export fits
    in fewer full batches than the budget allows, it is spread over more, shorter
    batches (at least :data:`MIN_PAGES` pages each) that run side by side.
    """

    name = "id_ranges"

    def __init__(
        self,
        method: ListMethod,
        params: Mapping[str, Any],
        batch_size: int = 50,
        *,
        parallel: int = 8,
        request_budget: Optional[int] = None,
    ):
        if not method.id_cursor:
            raise ValueError(f"{method.name} cannot be paged by ID ranges")
        super().__init__(method, params, batch_size)
        for key in self.params:
            if key.lower() == method.order_param.lower():
                raise ValueError("ID ranges return records in ID order; drop 'order' "
                                 "or use the offset strategy")
        self.parallel = max(1, parallel)
        # Requests that can go at once without waiting for the bucket (None: unknown).
        self.request_budget = request_budget
        # Aim a little under a full batch per range, so an estimate that is slightly
        # off does not cost a whole extra round trip for a few records.
        self._per_range = 0.9 * self.batch_size * PAGE
        self._ranges: Dict[int, _Range] = {}
        self._next_id = 0
        self._density = 1.0  # records per ID unit, learned as pages arrive
        fid = method.filter_id
        assert fid is not None
        self._gt, self._le = f">{fid}", f"<={fid}"
        self._order = {method.order_param: {fid: "ASC"}}
        select = self.params.get("select")
        if select is not None:
            names = [s.upper() for s in select]
            if "*" not in names and fid.upper() not in names:
                self.params["select"] = [*select, fid]

    # -- planning -------------------------------------------------------------------
    def initial(self) -> List[Plan]:
        first = self._command(self.user_filter, 0, **self._order)
        newest_first = {self.method.order_param: {self.method.filter_id: "DESC"},
                        "select": [self.method.filter_id]}
        last = self._command(self.user_filter, -1, **newest_first)
        return [Plan((first, last), tag="probe")]

    def _range_plan(self, rid: int) -> Plan:
        rng = self._ranges[rid]
        expected = (rng.hi - rng.lo) * rng.density
        # A little more than expected: an extra empty page costs far less than an
        # extra round trip for the last few records.
        pages = min(self.batch_size, max(1, math.ceil(expected * 1.1 / PAGE) + 1))
        commands = []
        for j in range(pages):
            cursor: Any = rng.lo if j == 0 else self.method.path(command_label(j - 1), PAGE - 1)
            filter_ = {**self.user_filter, self._gt: cursor, self._le: rng.hi}
            commands.append(self._command(filter_, -1, **self._order))
        rng.busy = True
        rng.reach = rng.lo + int(pages * PAGE / max(rng.density, 1e-9))
        return Plan(tuple(commands), tag=rid)

    def _new_range(self, lo: int, hi: int, density: float) -> int:
        rid = self._next_id
        self._next_id += 1
        self._ranges[rid] = _Range(lo=lo, hi=hi, density=density)
        return rid

    def _split(self, lo: int, hi: int, density: float, pieces: int) -> List[int]:
        bounds = [lo + round((hi - lo) * k / pieces) for k in range(pieces + 1)]
        return [self._new_range(a, b, density) for a, b in zip(bounds, bounds[1:]) if b > a]

    def _active(self) -> int:
        return sum(1 for r in self._ranges.values() if not r.done)

    # -- consuming ------------------------------------------------------------------
    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        if plan.tag == "probe":
            return self._consume_probe(plan, outcome)
        return self._consume_range(plan, outcome)

    def _ids(self, page: Iterable[Any]) -> List[Optional[int]]:
        # Hot path (every record): plain dict checks, not typing.Mapping's slow one.
        key = self.method.record_id
        return [_int_id(r.get(key)) if type(r) is dict else None for r in page]

    def _consume_probe(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        for failure in outcome.failures:
            if _transient(failure) and plan.attempt < PAGE_ATTEMPTS:
                step.plans.append(Plan(plan.commands, tag="probe", attempt=plan.attempt + 1))
                return step
            _raise(failure)
        page = self.method.records(outcome.results.get(0), "start=0")
        ids = self._ids(page)
        for rid_value, record in zip(ids, page):
            step.records.append((rid_value, record))
        self.total = outcome.totals.get(0) or None
        self.emitted += len(page)
        if len(page) < PAGE or ids[-1] is None:
            self.total = len(page)
            return step
        top = self._ids(self.method.records(outcome.results.get(1), "newest ID"))
        if not top or top[0] is None:
            return step
        lo, hi = ids[-1], top[0]
        if hi <= lo:
            return step
        if self.total:
            remaining = max(1, self.total - len(page))
        else:
            first_id = ids[0] if ids[0] is not None else lo
            remaining = max(1, round((hi - lo) * PAGE / max(1, lo - first_id + 1)))
        self._density = min(1.0, remaining / (hi - lo))
        count = max(1, math.ceil(remaining / self._per_range))
        if self.request_budget is not None:
            spare = min(self.parallel, self.request_budget)
            if count < spare:
                count = max(count, min(spare, math.ceil(remaining / (MIN_PAGES * PAGE))))
        for rid in self._split(lo, hi, self._density, count):
            step.plans.append(self._range_plan(rid))
        return step

    def _consume_range(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        rng = self._ranges[plan.tag]
        rng.busy = False
        failed = {f.index: f for f in outcome.failures}
        finished = False
        stalled = False
        start = rng.lo
        for position in range(len(plan.commands)):
            if position in failed:
                failure = failed[position]
                if _transient(failure) and plan.attempt < PAGE_ATTEMPTS:
                    stalled = True
                    break
                _raise(failure)
            page = self.method.records(outcome.results.get(position),
                                       f"{position + 1} of the range after ID {start}")
            ids = self._ids(page)
            lo, hi = rng.lo, rng.hi
            step.records.extend((i, record) for i, record in zip(ids, page)
                                if i is not None and lo < i <= hi)
            last = next((i for i in reversed(ids) if i is not None), None)
            if last is not None and last > lo:
                rng.lo = last
            if len(page) < PAGE or rng.lo >= rng.hi:
                # A short page is the end of the range; pages chained after it in the
                # same batch referenced a record that does not exist: ignore them.
                finished = True
                break
        self.emitted += len(step.records)
        rng.learn(len(step.records), min(rng.lo, rng.hi) - start)
        if finished:
            rng.done = True
        elif stalled:
            retry = self._range_plan(plan.tag)
            step.plans.append(Plan(retry.commands, tag=plan.tag, attempt=plan.attempt + 1))
        else:
            # The range holds more than planned: continue it, split across the slots
            # that ranges finished early have freed.
            rng.done = True
            remaining = (rng.hi - rng.lo) * rng.density
            idle = max(0, self.parallel - self._active())
            pieces = max(1, min(idle + 1, math.ceil(remaining / self._per_range)))
            for rid in self._split(rng.lo, rng.hi, rng.density, pieces):
                step.plans.append(self._range_plan(rid))
        if finished:
            step.plans.extend(self._rebalance())
        return step

    def _rebalance(self) -> List[Plan]:
        """Split the biggest unfinished range while fewer ranges than workers are walking."""
        plans = []
        while self._active() < self.parallel:
            best = None
            for rid, r in self._ranges.items():
                if r.done:
                    continue
                start = max(r.lo, r.reach) if r.busy else r.lo
                left = (r.hi - start) * r.density
                if best is None or left > best[0]:
                    best = (left, rid, start)
            if best is None or best[0] < 2 * PAGE:
                break
            _, rid, start = best
            rng = self._ranges[rid]
            middle = start + (rng.hi - start) // 2
            new = self._new_range(middle, rng.hi, rng.density)
            rng.hi = middle
            plans.append(self._range_plan(new))
        return plans


class IdList(Strategy):
    """Records with known IDs through the list method: ``@ID`` filters, 50 IDs a command."""

    name = "id_list"

    def __init__(
        self,
        method: ListMethod,
        params: Mapping[str, Any],
        batch_size: int = 50,
        *,
        ids: Sequence[Any] = (),
    ):
        if method.filter_id is None or method.record_id is None:
            raise ValueError(f"{method.name} cannot be filtered by ID")
        super().__init__(method, params, batch_size)
        unique: List[int] = []
        seen = set()
        for value in ids:
            number = _int_id(value)
            if number is None:
                raise ValueError(f"not an ID: {value!r}")
            if number not in seen:
                seen.add(number)
                unique.append(number)
        self.ids = unique
        self.total = len(unique)
        self.found: set = set()

    def initial(self) -> List[Plan]:
        key = f"@{self.method.filter_id}"
        commands = [
            self._command({**self.user_filter, key: self.ids[i:i + PAGE]}, -1)
            for i in range(0, len(self.ids), PAGE)
        ]
        return self._chunks(commands, tag="ids")

    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        retry = []
        for position, command in enumerate(plan.commands):
            if position not in outcome.results:
                failure = next(f for f in outcome.failures if f.index == position)
                if _transient(failure) and plan.attempt < PAGE_ATTEMPTS:
                    retry.append(command)
                    continue
                _raise(failure)
            for record in self.method.records(outcome.results[position],
                                              f"{position + 1} of an ID-list batch"):
                rid = _int_id(record.get(self.method.record_id)) if type(
                    record) is dict else None
                if rid is not None and rid not in self.found:
                    self.found.add(rid)
                    step.records.append((rid, record))
        if retry:
            step.plans.append(Plan(tuple(retry), tag=plan.tag, attempt=plan.attempt + 1))
        self.emitted += len(step.records)
        return step

    @property
    def missing(self) -> List[int]:
        """Requested IDs that no page returned (deleted, or filtered out)."""
        return [i for i in self.ids if i not in self.found]


STRATEGIES = {cls.name: cls for cls in (OffsetPages, IdRanges, IdList)}
