"""Pagination strategies: plain classes that plan batches and consume their results.

A strategy never does I/O. It hands out :class:`Plan` objects (the commands of one
``batch`` request, at most ``batch_size``, labelled by position) and is fed each plan's
:class:`Outcome`; it answers with a :class:`Step`: the records it got and the plans to
send next. The client's driver runs the plans on the thread pool and the strategy
decides everything else, so each strategy is tested on plain dicts.

* :class:`OffsetPages` - ``start=0`` first, which reports ``total``; then every other
  offset in parallel batches, stepping by the first page's length (50 for most
  methods, 10 for ``crm.timeline.logmessage.list``). Works for every list method and
  any ``order``. Costs an offset scan and a count per page on the server.
* :class:`IdRanges` - the default where the method can filter and order by its ID: the
  ID span is cut into ranges whose sizes come from the server's own counts, never from
  a density carried across a gap; inside a range, one batch chains cursor pages
  (``>ID`` = the previous page's last ID, ``order ID ASC``, ``start=-1``: no offset
  scan, no count), so one request brings up to 2,500 records. Each range yields only
  IDs inside its own bounds and past its own cursor, so every record comes exactly once
  even while records are added or deleted.
* :class:`IdList` - known IDs fetched through the list method with ``@ID`` filters, 50
  IDs per command; records nobody asked for are an error (the filter was ignored).

Parameters keep the caller's order and key case; a strategy only replaces the filter
and order values in place and appends what it adds (``start`` last), because some
methods read their arguments by position.

Records are emitted as ``(sort_key, record)`` pairs, or as runs: a whole page already in
order under the key of its first record (see :class:`Step`); sorting by the key gives ID
order (or, for offset pages, the server's order).

Thread safety: a strategy object belongs to one export and is driven by one thread.
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, islice
from operator import itemgetter, lt
from typing import Any, Dict, List, Optional, Set, Tuple

from .batch import Command, command_label
from .encoding import _urlencode, http_build_query
from .errors import BitrixError, CommandFailure, InvalidResponse
from .methods import DETECT, ListMethod, named_like_a_list
from .retry import RetryPolicy, RetryState
from .validation import BitrixWarning

PAGE = 50
#: The fewest pages an ID-range batch is cut to when spreading an export out: below
#: this the pages wasted past the end of each range cost more than the time saved.
MIN_PAGES = 20
#: Chains of at most this many pages share a batch with other short pieces.
SHORT_CHAIN = 5
#: Requests per piece of an ID-range export larger than one wave of requests.
WAVE_REQUESTS = 2
#: The widths of a one-wave export's first pieces, as multiples of the even share: the
#: widest at most 1 + STAGGER, the narrower ones each STAGGER_STEP below the one before,
#: so their replies arrive spread out (see IdRanges._stagger).
STAGGER = 0.08
STAGGER_STEP = 0.008
#: How much longer than its share of the count a first piece's chain is, in a one-wave
#: export and in one paced by the limits (see IdRanges._split).
MARGIN = 1.1
WAVE_MARGIN = 1.02


@dataclass(frozen=True)
class Plan:
    """One batch request: commands labelled ``command_label(position)``.

    ``retry``: for a plan that asks again for failed pages, their retry state (the
    driver waits its ``delay`` before sending); ``attempt`` counts such retries.
    """

    commands: Tuple[Command, ...]
    tag: Any = None
    attempt: int = 0
    retry: Optional[RetryState] = None


@dataclass
class Outcome:
    """What came back for a plan, keyed by command position."""

    results: Dict[int, Any] = field(default_factory=dict)
    failures: List[CommandFailure] = field(default_factory=list)
    totals: Dict[int, int] = field(default_factory=dict)


@dataclass
class Step:
    """What one outcome gave: records, and the plans to send next.

    Records come two ways. ``records``: ``(sort_key, record)`` pairs, one per record.
    ``runs``: ``(sort_key, records)``, a whole page whose records are already in order,
    keyed by its first record; the runs of one export never interleave (their key
    ranges are disjoint), so sorting the runs by key and joining them gives the same
    order as sorting every record. A run costs one tuple instead of one per record.
    """

    records: List[Tuple[Any, Any]] = field(default_factory=list)
    plans: List[Plan] = field(default_factory=list)
    runs: List[Tuple[Any, List[Any]]] = field(default_factory=list)

    def count(self) -> int:
        """How many records the step holds."""
        return len(self.records) + sum(len(run) for _, run in self.runs)

    def items(self) -> Iterator[Any]:
        """Every record: the pairs' first, then each run's, in the run's order."""
        for _, record in self.records:
            yield record
        for _, run in self.runs:
            yield from run


def _raise(failure: CommandFailure) -> None:
    err = failure.error
    if isinstance(err, BitrixError):
        raise err
    raise BitrixError(failure.code, failure.description, method=failure.method)


def _ascending_span(page: List[Any], key: Optional[str]) -> Optional[Tuple[int, int]]:
    """The page's first and last IDs as ints when every record is a dict whose ``key``
    is an int (or every one a decimal string) and they strictly ascend; otherwise None.

    The fast path for a whole page (loops in C, no per-record Python frame); on None
    the caller reads the page record by record with :func:`_int_id`.
    """
    if key is None or not page:
        return None
    try:
        # A decoded page holds dicts, lists, strings, numbers, booleans or None; all
        # but dicts (and dicts without the key) fail here.
        raw = list(map(itemgetter(key), page))
    except (KeyError, TypeError, IndexError):
        return None
    first = raw[0]
    if type(first) is str:
        try:
            digits = "".join(raw)
        except TypeError:  # not all strings
            return None
        if (digits.isascii() and digits.isdigit() and first[:1] != "0"
                and len(set(map(len, raw))) == 1):
            # Plain decimals of one width (no sign, space or leading zero, which int()
            # would take): their text order is their numeric order, so the page is
            # compared as it is and only its ends are converted.
            if not all(map(lt, raw, islice(raw, 1, None))):
                return None
            return int(first), int(raw[-1])
        try:
            ids: List[int] = list(map(int, raw))
        except ValueError:
            return None
    elif set(map(type, raw)) == {int}:
        ids = raw
    else:
        return None
    if not all(map(lt, ids, islice(ids, 1, None))):
        return None
    return ids[0], ids[-1]


def _int_id(value: Any) -> Optional[int]:
    """A record ID as an int: legacy methods send ``"410"``, newer ones ``410``."""
    kind = type(value)
    if kind is int:
        number: int = value
        return number
    if kind is str:
        try:
            return int(value)
        except ValueError:
            return None
    return None


class NotAList(Exception):
    """The first reply of an export is not a list page (a ``.get`` or ``.fields`` call).

    Raised by :class:`OffsetPages` for methods it does not know; ``result`` is the reply's
    ``result``, unchanged. The client turns it into a warning (``get_all``) or an error.
    """

    def __init__(self, method: str, result: Any):
        super().__init__(f"{method} did not answer with a list page")
        self.method = method
        self.result = result


def order_params(method: ListMethod, direction: str) -> Dict[str, Any]:
    """The parameters that sort ``method``'s records by ID in ``direction``."""
    fid = method.filter_id
    if method.sort_param is not None:
        return {method.sort_param: fid, method.order_param: direction}
    return {method.order_param: {fid: direction}}


def _order_keys(method: ListMethod) -> Tuple[str, ...]:
    keys = (method.order_param.lower(),)
    return keys if method.sort_param is None else keys + (method.sort_param.lower(),)


def is_id_order(method: ListMethod, params: Mapping[str, Any]) -> bool:
    """True when ``params`` ask for no order, or ID ascending (which ID ranges keep)."""
    keys = _order_keys(method)
    given = {k.lower(): v for k, v in params.items() if k.lower() in keys}
    if not given:
        return True
    fid = str(method.filter_id).upper()
    if method.sort_param is not None:
        sort = given.get(method.sort_param.lower(), fid)
        direction = given.get(method.order_param.lower(), "ASC")
        return str(sort).upper() == fid and str(direction).upper() == "ASC"
    order = given.get(method.order_param.lower())
    if not isinstance(order, Mapping):
        return False
    items = list(order.items())
    return (len(items) == 1 and str(items[0][0]).upper() == fid
            and str(items[0][1]).upper() == "ASC")


def without_id_order(method: ListMethod, params: Mapping[str, Any]) -> Dict[str, Any]:
    """``params`` without an ID-ascending order; ValueError for any other order."""
    if not is_id_order(method, params):
        raise ValueError("the id_ranges strategy returns records in ID order; "
                         "drop the custom 'order' or use strategy='offset'")
    keys = _order_keys(method)
    return {k: v for k, v in params.items() if k.lower() not in keys}


class Strategy(abc.ABC):
    """Base class: shared parameter handling. Subclasses implement initial/consume."""

    name = "strategy"

    def __init__(self, method: ListMethod, params: Mapping[str, Any], batch_size: int = 50):
        if not 1 <= batch_size <= 50:
            raise ValueError("batch_size must be between 1 and 50")
        if method.refused is not None:
            raise ValueError(f"{method.name} cannot be paged by get_all(): {method.refused}")
        self.method = method
        self.batch_size = batch_size
        # The caller's parameters in the caller's order and key case ('start' dropped: the
        # strategy owns paging). The filter stays where it was; _command swaps its value.
        self.params: Dict[str, Any] = {}
        # key -> (the value last encoded for it, its query segment): see _text.
        self._segments: Dict[str, Tuple[Any, str]] = {}
        self._filter_key: Optional[str] = None
        self._raw_filter: Any = None
        wanted = method.filter_param.lower()
        for key, value in params.items():
            low = key.lower()
            if low == "start":
                continue
            if low == wanted:
                self._filter_key = key
                self._raw_filter = value
            self.params[key] = value
        #: Records expected, when known (for progress bars); may change as pages arrive.
        self.total: Optional[int] = None
        self.emitted = 0
        #: Bounds page retries, as it bounds requests and batched commands (the client
        #: sets its own).
        self.retry_policy = RetryPolicy()

    def _again(self, plan: Plan, failure: CommandFailure) -> Optional[RetryState]:
        """The retry state for asking again for a failed page of ``plan``; None when the
        failure is not transient or the policy's budget for it is spent."""
        state = plan.retry or RetryState(self.retry_policy)
        state = state.increment(failure.error, write=False)
        return state if state.retry else None

    @property
    def user_filter(self) -> Dict[str, Any]:
        """The caller's filter as a dict (ID strategies add their own conditions to it)."""
        raw = self._raw_filter
        if raw is None or raw == [] or raw == "":
            return {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{self.method.filter_param} must be an object to page "
                             f"{self.method.name} by ID; use strategy='offset'")
        return dict(raw)

    @abc.abstractmethod
    def initial(self) -> List[Plan]:
        """The first plans to send."""

    @abc.abstractmethod
    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        """Take one plan's outcome; return its records and the plans to send next."""

    def divisible(self, plan: Plan) -> bool:
        """Whether ``plan`` may be sent in parts (a prefix of its commands first, the
        rest as a plan of its own), each consumed alone. Default: no."""
        return False

    def finish(self) -> None:
        """Called once after the last plan; may warn about inconsistencies."""

    def _command(self, filter_: Optional[Mapping[str, Any]], start: int,
                 overrides: Optional[Mapping[str, Any]] = None) -> Command:
        """The caller's parameters with ``filter_`` (None: the caller's own, untouched)
        and ``overrides`` put in place (matched case-insensitively) or appended, then
        ``start``. Nothing is moved: positional methods read arguments in order."""
        pending = {k.lower(): (k, v) for k, v in overrides.items()} if overrides else {}
        params: Dict[str, Any] = {}
        for key, value in self.params.items():
            if key == self._filter_key:
                params[key] = value if filter_ is None else dict(filter_)
                continue
            hit = pending.pop(key.lower(), None) if pending else None
            params[key] = value if hit is None else hit[1]
        for key, value in pending.values():
            params[key] = value
        if self._filter_key is None and filter_:
            params[self.method.filter_param] = dict(filter_)
        params["start"] = start
        return Command.encoded(self.method.name, params, self._text(params))

    def _text(self, params: Mapping[str, Any]) -> str:
        """What ``encode_command`` gives for ``params``, a segment per parameter; a value
        that is the very object encoded last time for its key (the caller's parameters,
        a fixed order, a small ``start``) reuses that segment (encoding every command
        whole was about 5% of a large export's client CPU)."""
        parts = []
        cache = self._segments
        for key, value in params.items():
            hit = cache.get(key)
            if hit is not None and hit[0] is value:
                segment = hit[1]
            else:
                segment = http_build_query({key: value})
                cache[key] = (value, segment)
            if segment:
                parts.append(segment)
        name = self.method.name
        return f"{name}?{'&'.join(parts)}" if parts else name

    def _chunks(self, commands: Sequence[Command], tag: Any) -> List[Plan]:
        size = self.batch_size
        return [
            Plan(tuple(commands[i:i + size]), tag=tag)
            for i in range(0, len(commands), size)
        ]

    def _ids(self, page: Iterable[Any]) -> List[Optional[int]]:
        # Hot path (every record): plain dict checks, not typing.Mapping's slow one.
        key = self.method.record_id
        return [_int_id(r.get(key)) if type(r) is dict else None for r in page]


def _no_ids(method: ListMethod) -> InvalidResponse:
    return InvalidResponse(
        "INVALID_RESPONSE",
        f"{method.name}: a full page of records without {method.record_id!r}; they cannot "
        "be paged by ID (use strategy='offset')",
        method=method.name,
    )


class OffsetPages(Strategy):
    """Pages by ``start`` offsets: the first page gives ``total``, the rest go in parallel.

    The step between offsets is the first page's length (the method's page size: the
    docs give 50 for most methods, 10 for some). When a later page reports a larger
    ``total`` (records added during the export), the missing offsets are fetched too.
    Records are de-duplicated by ID (``ID`` or ``id``, as the method's records carry
    it, found on the first page for unknown methods) or by the fields that identify
    records without an ID; a warning is issued when the number of records differs from
    the first ``total``. An unknown method not named like a list (``crm.deal.get``)
    whose first reply is an object without ``total`` is not a list: :class:`NotAList`
    is raised.
    """

    name = "offset"

    def __init__(self, method: ListMethod, params: Mapping[str, Any], batch_size: int = 50):
        super().__init__(method, params, batch_size)
        self._seen: Set[Any] = set()
        self._key: Any = None      # the record's ID key, or a tuple of fields
        self._keyed = False        # whether _key has been decided (first records seen)
        self._step = PAGE
        self._planned = 0          # first offset not planned yet
        self._held: List[Command] = []
        self._first_total: Optional[int] = None

    def initial(self) -> List[Plan]:
        return [Plan((self._command(None, 0),), tag=0)]

    def _decide_key(self, page: List[Any]) -> None:
        method = self.method
        self._keyed = True
        if method.record_key is not None:
            self._key = method.record_key
        elif method.record_id == DETECT:
            first = page[0]
            if type(first) is dict:
                self._key = "ID" if "ID" in first else ("id" if "id" in first else None)
        else:
            self._key = method.record_id

    def _offsets(self, total: int) -> List[Command]:
        """Commands for the offsets from the first unplanned one up to ``total``."""
        starts = range(self._planned, total, self._step)
        if starts:
            self._planned = starts[-1] + self._step
        return [self._command(None, start) for start in starts]

    def _page(self, step: Step, offset: int, page: List[Any]) -> None:
        # One run per page, keyed by its offset: the server's order within the page.
        if not self._keyed and page:
            self._decide_key(page)
        key, seen = self._key, self._seen
        if key is None:
            kept = page
        elif type(key) is str:
            kept = []
            for record in page:
                rid = record.get(key) if type(record) is dict else None
                if rid is not None:
                    if rid in seen:
                        continue
                    seen.add(rid)
                kept.append(record)
        else:
            kept = []
            for record in page:
                if type(record) is dict:
                    ident = tuple(record.get(k) for k in key)
                    if ident in seen:
                        continue
                    seen.add(ident)
                kept.append(record)
        if kept:
            step.runs.append((offset, kept))

    def divisible(self, plan: Plan) -> bool:
        # Pages are independent of each other; only the first (it gives ``total``)
        # and the deepest page (it releases the held ones) are plans of one command.
        return len(plan.commands) > 1

    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        retry: List[Tuple[int, Command]] = []
        again: Optional[RetryState] = None
        for position, command in enumerate(plan.commands):
            offset = command.params["start"]
            if position not in outcome.results:
                failure = next(f for f in outcome.failures if f.index == position)
                state = self._again(plan, failure)
                if state is not None:
                    again = state
                    retry.append((offset, command))
                    continue
                _raise(failure)
            result = outcome.results[position]
            total = outcome.totals.get(position)
            first = offset == 0 and plan.tag == 0
            if (first and total is None and self.method.items_key == DETECT
                    and type(result) is not list and result is not None
                    and not named_like_a_list(self.method.name)):
                raise NotAList(self.method.name, result)
            page = self.method.records(result, f"start={offset}")
            self._page(step, offset, page)
            if first:
                self.total = self._first_total = total
                if total is not None and 0 < len(page) < total:
                    self._step = len(page)
                    self._planned = self._step
                    later = self._offsets(total)
                    if len(later) > self.batch_size:
                        # The deepest page costs the most (an offset scan): fetch it
                        # first, alone, so the operating-time window knows the worst
                        # cost before the other pages go out together, deepest first.
                        self._held = later[-2::-1]
                        step.plans.append(Plan((later[-1],), tag="deep"))
                    else:
                        step.plans.extend(self._chunks(later, tag="pages"))
                elif total is not None and not page and total > 0:
                    raise InvalidResponse(
                        "INVALID_RESPONSE", f"{self.method.name}: an empty first page "
                        f"with total {total}", method=self.method.name)
            elif (total is not None and self.total is not None and total > self.total
                  and self._planned):
                # Records were added since the first page: the pages past the old end
                # hold the ones pushed down (repeats are dropped by ID).
                self.total = total
                step.plans.extend(self._chunks(self._offsets(total), tag="pages"))
            if plan.tag == "deep" and self._held:
                step.plans.extend(self._chunks(self._held, tag="pages"))
                self._held = []
        if retry:
            step.plans.append(Plan(tuple(c for _, c in retry), tag=plan.tag,
                                   attempt=plan.attempt + 1, retry=again))
        self.emitted += step.count()
        return step

    def finish(self) -> None:
        # Against the first count: records added later and then fetched from the pages
        # past the old end do not make an export that lost nothing look wrong.
        first = self._first_total
        if first is not None and self.emitted != first:
            warnings.warn(
                f"{self.method.name}: got {self.emitted} records, the first page said "
                f"{first} (records changed during the export; use the ID ranges "
                "strategy for an exactly-once export)",
                BitrixWarning,
                stacklevel=3,
            )


@dataclass
class _Range:
    lo: int                      # exclusive: the last ID already delivered (or the bound)
    hi: int                      # inclusive upper bound
    left: Optional[int] = None   # records still to come, from the server's count
    span: int = 0                # ID span of the last full page seen: the local density
    guess: int = 1               # pages to send while ``left`` is unknown (first one counts)
    done: bool = False


# A segment of a plan: (range id, first position, commands, first command counts).
_Segment = Tuple[int, int, int, bool]


# Stands for a chained page's cursor while its command is encoded (IdRanges._chain).
_MARK = "\x00cursor\x00"
_MARK_TEXT = _urlencode(_MARK)


class IdRanges(Strategy):
    """Parallel ID ranges sized by the server's counts, chained cursor pages inside each.

    The probe (first page with ``total``, plus the highest ID) bounds the export. A
    range whose count is known and fits one batch is walked by one chain of exactly
    enough cursor pages. A bigger one is cut into pieces whose first page is asked with
    ``start=0``, which also reports how many records the piece holds, so what follows
    never rests on a density carried across a gap. Where the probe's page is about as
    dense as the whole span, the first pieces chain their share of pages in the same
    batch; otherwise each piece starts with its counted page alone (an empty piece
    costs one command, a dense one is cut again, a first piece sized by the density of
    the page just read). ``parallel`` and ``request_budget`` (requests the leaky bucket
    lets go at once) spread a large first cut over more pieces that run side by side.
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
            if key.lower() in _order_keys(method):
                raise ValueError("ID ranges return records in ID order; drop 'order' "
                                 "or use the offset strategy")
        self.user_filter  # a filter that is not an object is refused before any request
        self.parallel = max(1, parallel)
        self.request_budget = request_budget
        # A little under a full batch per piece, so a count that grows a little does not
        # cost a whole extra round trip for a few records.
        self._per_range = 0.9 * self.batch_size * PAGE
        self._ranges: Dict[int, _Range] = {}
        self._next_id = 0
        self._counts = True  # whether start=0 pages report totals (they should)
        self._even = False   # whether the probe saw evenly spread IDs
        # Whether the export is larger than one wave of requests can carry (see _split).
        self._waves = False
        fid = method.filter_id
        assert fid is not None
        self._gt, self._le = f">{fid}", f"<={fid}"
        self._asc = order_params(method, "ASC")
        self._desc = order_params(method, "DESC")
        for key, select in self.params.items():
            if key.lower() == "select" and isinstance(select, (list, tuple)):
                names = [str(s).upper() for s in select]
                if "*" not in names and fid.upper() not in names:
                    self.params[key] = [*select, fid]

    # -- planning -------------------------------------------------------------------
    def initial(self) -> List[Plan]:
        first = self._command(self.user_filter, 0, self._asc)
        newest = {**self._desc, "select": [self.method.filter_id]}
        last = self._command(self.user_filter, -1, newest)
        return [Plan((first, last), tag="probe")]

    def _new_range(self, lo: int, hi: int) -> int:
        rid = self._next_id
        self._next_id += 1
        self._ranges[rid] = _Range(lo=lo, hi=hi)
        return rid

    def _work(self, rid: int, spread: bool = False) -> List[Tuple[int, int, bool]]:
        """What range ``rid`` needs next: ``(range, commands, counted)`` pieces."""
        rng = self._ranges[rid]
        if rng.left is None:
            # Unknown size: a counted page (and the guessed chain after it), or (no
            # counts on this portal) a full chain.
            if self._counts:
                return [(rid, rng.guess, True)]
            return [(rid, self.batch_size, False)]
        if rng.lo >= rng.hi:
            rng.done = True
            return []
        if rng.left <= 0:
            # The count is used up but the last page was full: records that began to
            # match the filter after the count may sit before the range's end. Only a
            # short page proves the end; one cursor page (normally empty) asks.
            return [(rid, 1, False)]
        # Enough pages that the last one is short (it proves the end) even when the
        # count is a multiple of the page: no extra round trip to confirm it.
        pages = rng.left // PAGE + 1
        if pages <= self.batch_size and not spread:
            return [(rid, pages, False)]
        # An export of many request waves is paced by the limits, not by round trips:
        # pieces of two nearly full requests each (a counted chain, then the exact
        # rest), so half as many pieces each spend a count and end on a short page.
        per_range = ((WAVE_REQUESTS * self.batch_size - 4) * PAGE if self._waves
                     else self._per_range)
        pieces = math.ceil(rng.left / per_range) if pages > self.batch_size else 1
        if spread and self.request_budget is not None and pages > 2 * MIN_PAGES:
            # Spread over requests the bucket lets go now, but never past about twice
            # the requests offset pages would need for the same export.
            spare = min(self.parallel, self.request_budget,
                        2 * math.ceil(pages / self.batch_size) + 1)
            pieces = max(pieces, min(spare, math.ceil(rng.left / (MIN_PAGES * PAGE))))
        if pieces <= 1:
            # Longer than a batch only in a wave-paced export: its count says how many
            # pages are left after this chain.
            return [(rid, min(pages, self.batch_size), False)]
        return self._split(rid, pieces, even=spread and self._even)

    def _split(self, rid: int, pieces: int, even: bool = False) -> List[Tuple[int, int, bool]]:
        """Cut range ``rid`` into counted pieces. ``even``: the IDs looked evenly spread,
        so each piece also chains the pages its share of the count needs, in the same
        batch (its count still decides what follows)."""
        rng = self._ranges[rid]
        rng.done = True
        lo, hi = rng.lo, rng.hi
        if even and rng.left is not None:
            share = rng.left / pieces
            # A chain a little longer than the share, so that a piece a little denser
            # than the average needs no second round trip. When the requests the
            # bucket lets go at once carry the whole export, that round trip is what
            # the export waits for: a 10% margin. A larger export is paced by the
            # limits instead, and on the largest ones by operating time, which every
            # empty page past a piece's end spends for nothing (the 10% margin cost a
            # million-deal export 11% more commands): a 2% margin there (5% more
            # commands, and no more requests), a denser piece's rest packed with other
            # short chains.
            margin = WAVE_MARGIN if self._waves else MARGIN
            weights = self._stagger(pieces, share * margin)
            cuts = [lo] + [lo + round((hi - lo) * w / pieces) for w in accumulate(weights)]
            cuts[-1] = hi
            work = []
            for weight, a, b in zip(weights, cuts, cuts[1:]):
                if b > a:
                    guess = min(self.batch_size,
                                math.ceil(share * weight * margin / PAGE) + 1)
                    new = self._new_range(a, b)
                    self._ranges[new].guess = guess
                    work.append((new, guess, True))
            return work
        width_even = (hi - lo) / pieces
        bounds: List[int] = []
        if rng.span and rng.left is not None:
            # Where the last page was denser than the range's average, cut a first
            # piece that holds about one batch at that density; count the rest.
            width = math.ceil(self._per_range * rng.span / PAGE)
            if width < 0.75 * width_even:
                rest = max(1, math.ceil((rng.left - self._per_range) / self._per_range))
                cut = lo + width
                bounds = [lo] + [cut + round((hi - cut) * k / rest) for k in range(rest + 1)]
        if not bounds:
            bounds = [lo + round((hi - lo) * k / pieces) for k in range(pieces + 1)]
        return [(self._new_range(a, b), 1, True) for a, b in zip(bounds, bounds[1:]) if b > a]

    def _stagger(self, pieces: int, planned: float) -> List[float]:
        """Widths of a first cut's ``pieces``, as multiples of the even share, widest
        first (their mean is 1); ``planned``: the records each would chain at the even
        share.

        When one wave of requests carries the whole export, even pieces come back
        within a few tenths of a second of each other, nearly two seconds after they
        left, and the caller waits while their records are decoded one reply after
        another (the GIL lets one decode run at a time). Staggered widths spread the
        replies out, so the narrow ones are being decoded while the wide ones are still
        on their way. A reply can be decoded before the next arrives when the next
        piece is narrower by about what decoding its records takes against the
        portal's time for them (a few milliseconds against two seconds for 2,000
        records on the fake portal: STAGGER_STEP); so the widths fall by that step
        from the widest, and as many pieces as the mean needs stay at the widest,
        whose replies are the ones left to decode at the end. Measured on 100,000
        deals (light profile, 48 pieces): 1.77 s of the export's wall not spent on
        the client's CPU, against 1.87 s with widths falling evenly from 1.06 to
        0.94 and 1.91 s with even ones. The widest is never so wide that its chain
        would pass a full batch (that would cost its margin, and a piece denser than
        average a second round trip); an export paced by the limits, whose requests
        leave one by one anyway, is cut evenly.
        """
        if self._waves or pieces < 2:
            return [1.0] * pieces
        room = (self.batch_size - 1) * PAGE / max(planned, 1.0) - 1
        spread = max(0.0, min(STAGGER, room))
        # ``falling`` pieces below the widest: steps of 1, 2, ... STAGGER_STEP, which
        # together make up what the widest ones hold above the share.
        falling = int((math.sqrt(1 + 8 * pieces * spread / STAGGER_STEP) - 1) / 2)
        falling = min(falling, pieces - 1)
        top = 1 + STAGGER_STEP * falling * (falling + 1) / (2 * pieces)
        level = pieces - 1 - falling  # the last piece at the widest
        if top - STAGGER_STEP * falling < 0.5:
            # Hundreds of pieces (no limits): the fall would pass half the share; an
            # even fall to 1 - spread keeps every piece wide.
            return [1 + spread * (1 - 2 * k / (pieces - 1)) for k in range(pieces)]
        return [top - STAGGER_STEP * max(0, k - level) for k in range(pieces)]

    def _pack(self, work: List[Tuple[int, int, bool]], attempt: int,
              retry: Optional[RetryState] = None) -> List[Plan]:
        """Plans for ``work``: long chains alone (they run side by side), short pieces
        (counted pages, chain ends) packed together up to the batch size."""
        bins: List[List[Tuple[int, int, bool]]] = []
        sizes: List[int] = []
        for piece in sorted(work, key=lambda p: -p[1]):
            n = piece[1]
            if n > SHORT_CHAIN:
                bins.append([piece])
                sizes.append(n)
                continue
            for i, size in enumerate(sizes):
                if size + n <= self.batch_size and bins[i][0][1] <= SHORT_CHAIN:
                    bins[i].append(piece)
                    sizes[i] += n
                    break
            else:
                bins.append([piece])
                sizes.append(n)
        return [self._plan(pieces, attempt, retry) for pieces in bins]

    def _plan(self, pieces: List[Tuple[int, int, bool]], attempt: int,
              retry: Optional[RetryState] = None) -> Plan:
        commands: List[Command] = []
        segments: List[_Segment] = []
        user = self.user_filter
        for rid, n, counted in pieces:
            rng = self._ranges[rid]
            first = len(commands)
            filter_ = {**user, self._gt: rng.lo, self._le: rng.hi}
            commands.append(self._command(filter_, 0 if counted else -1, self._asc))
            if n > 1:
                refs = [self.method.path(command_label(first + j), PAGE - 1)
                        for j in range(n - 1)]
                commands.extend(self._chain(user, rng.hi, refs))
            segments.append((rid, first, n, counted))
        return Plan(tuple(commands), tag=("ranges", tuple(segments)), attempt=attempt,
                    retry=retry)

    def _chain(self, user: Dict[str, Any], hi: int, refs: List[str]) -> List[Command]:
        """Cursor pages after the records ``refs`` name, up to ``hi``. The commands
        differ only in the reference: one is encoded with a marker in its place and the
        others spliced from it (encoding each whole was most of planning a large
        export's first cut, which the export waits for)."""
        filter_ = {**user, self._gt: _MARK, self._le: hi}
        model = self._command(filter_, -1, self._asc)
        head, *tail = model.text.split(_MARK_TEXT)
        if len(tail) != 1:  # the caller's own filter holds the marker: encode each
            return [self._command({**user, self._gt: ref, self._le: hi}, -1, self._asc)
                    for ref in refs]
        key = self._filter_key or self.method.filter_param
        after, gt = tail[0], self._gt
        commands = []
        for ref in refs:
            params = dict(model.params)
            params[key] = {**filter_, gt: ref}
            commands.append(model.respliced(params, f"{head}{_urlencode(ref)}{after}"))
        return commands

    # -- consuming ------------------------------------------------------------------
    def consume(self, plan: Plan, outcome: Outcome) -> Step:
        if plan.tag == "probe":
            return self._consume_probe(plan, outcome)
        return self._consume_ranges(plan, outcome)

    def _consume_probe(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        for failure in outcome.failures:
            state = self._again(plan, failure)
            if state is not None:
                step.plans.append(Plan(plan.commands, tag="probe", attempt=plan.attempt + 1,
                                       retry=state))
                return step
            _raise(failure)
        page = self.method.records(outcome.results.get(0), "start=0")
        ids = self._ids(page)
        step.records.extend(zip(ids, page))
        total = outcome.totals.get(0) or None
        self.total = total
        self.emitted += len(page)
        if len(page) < PAGE:
            self.total = len(page)
            return step
        if ids[-1] is None or ids[0] is None:
            raise _no_ids(self.method)
        top = self._ids(self.method.records(outcome.results.get(1), "newest ID"))
        if not top:
            return step  # the records above were deleted meanwhile
        if top[0] is None:
            raise _no_ids(self.method)
        lo, hi = ids[-1], top[0]
        if hi <= lo:
            return step
        rid = self._new_range(lo, hi)
        root = self._ranges[rid]
        root.span = max(1, ids[-1] - ids[0] + 1)
        if total is None:
            self._counts = False
        else:
            root.left = max(0, total - len(page))
            # The densities at both ends (the first page, the newest IDs) against the
            # whole span's: close means the IDs look evenly spread, so the first pieces
            # may chain pages right away.
            average = total / max(1, hi - ids[0] + 1)
            ends = [len(page) / root.span]
            if len(top) == PAGE and top[-1] is not None:
                ends.append(PAGE / max(1, top[0] - top[-1] + 1))
            self._even = all(average / 3 <= local <= average * 3 for local in ends)
            budget = self.request_budget
            self._waves = budget is not None and root.left > budget * self.batch_size * PAGE
        step.plans.extend(self._pack(self._work(rid, spread=True), 0))
        return step

    def _consume_ranges(self, plan: Plan, outcome: Outcome) -> Step:
        step = Step()
        failed = {f.index: f for f in outcome.failures}
        work: List[Tuple[int, int, bool]] = []
        stalled: List[int] = []
        again: Optional[RetryState] = None
        records, runs = step.records, step.runs
        key = self.method.record_id
        counted_records = 0
        for rid, first, n, counted in plan.tag[1]:
            rng = self._ranges[rid]
            finished = False
            after = rng.lo
            for position in range(first, first + n):
                if position in failed:
                    failure = failed[position]
                    state = self._again(plan, failure)
                    if state is not None:
                        again = state
                        stalled.append(rid)
                        break
                    _raise(failure)
                page = self.method.records(outcome.results.get(position),
                                           f"{position - first + 1} of the range after ID {after}")
                lo, hi = rng.lo, rng.hi
                span = _ascending_span(page, key)
                first_id: Optional[int]
                last: Optional[int]
                if span is not None and lo < span[0] and span[1] <= hi:
                    # In order and inside the range: the page is one run.
                    first_id, last = span
                    runs.append((first_id, page))
                    counted_records += len(page)
                else:
                    ids = self._ids(page)
                    before = len(records)
                    records.extend((i, record) for i, record in zip(ids, page)
                                   if i is not None and lo < i <= hi)
                    counted_records += len(records) - before
                    first_id = ids[0] if ids else None
                    last = next((i for i in reversed(ids) if i is not None), None)
                if counted and position == first:
                    total = outcome.totals.get(position)
                    if total is None:
                        self._counts = False
                    else:
                        rng.left = total - len(page)
                elif rng.left is not None:
                    rng.left -= len(page)
                if page and last is None:
                    raise _no_ids(self.method)
                if last is not None and last > lo:
                    rng.lo = last
                if len(page) == PAGE and first_id is not None and last is not None:
                    rng.span = max(1, last - first_id + 1)
                if len(page) < PAGE or rng.lo >= rng.hi:
                    # A short page is the end of the range; pages chained after it in
                    # the same batch referenced a record that does not exist: ignore.
                    # (A used-up count is not: a record may have begun to match.)
                    finished = True
                    break
            else:
                work.extend(self._work(rid))
            if finished:
                rng.done = True
        self.emitted += counted_records
        step.plans.extend(self._pack(work, 0))
        if stalled:
            retry = [piece for rid in stalled for piece in self._work(rid)]
            step.plans.extend(self._pack(retry, plan.attempt + 1, again))
        return step


class IdList(Strategy):
    """Records with known IDs through the list method: ``@ID`` filters, 50 IDs a command.

    Only requested IDs are returned; a record nobody asked for means the portal ignored
    the filter, which raises :class:`InvalidResponse` (the export would be wrong).
    """

    name = "id_list"

    def __init__(
        self,
        method: ListMethod,
        params: Mapping[str, Any],
        batch_size: int = 50,
        *,
        ids: Sequence[Any] = (),
    ):
        if not method.id_filter:
            raise ValueError(f"{method.name} cannot be filtered by ID (ids= needs an @ID "
                             "filter and records with an ID)")
        super().__init__(method, params, batch_size)
        self.user_filter  # a filter that is not an object is refused before any request
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
        self._wanted = seen
        self.total = len(unique)
        self.found: Set[Any] = set()

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
        again: Optional[RetryState] = None
        wanted, found, key = self._wanted, self.found, self.method.record_id
        for position, command in enumerate(plan.commands):
            if position not in outcome.results:
                failure = next(f for f in outcome.failures if f.index == position)
                state = self._again(plan, failure)
                if state is not None:
                    again = state
                    retry.append(command)
                    continue
                _raise(failure)
            for record in self.method.records(outcome.results[position],
                                              f"{position + 1} of an ID-list batch"):
                rid = _int_id(record.get(key)) if type(record) is dict else None
                if rid not in wanted:
                    raise InvalidResponse(
                        "INVALID_RESPONSE",
                        f"{self.method.name} returned a record with {key} {rid!r}, which "
                        f"was not asked for: the portal ignored the @{self.method.filter_id}"
                        " filter (fetch these records with strategy='offset' instead)",
                        method=self.method.name,
                    )
                if rid not in found:
                    found.add(rid)
                    step.records.append((rid, record))
        if retry:
            step.plans.append(Plan(tuple(retry), tag=plan.tag, attempt=plan.attempt + 1,
                                   retry=again))
        self.emitted += len(step.records)
        return step

    @property
    def missing(self) -> List[int]:
        """Requested IDs that no page returned (deleted, or filtered out)."""
        return [i for i in self.ids if i not in self.found]


STRATEGIES = {cls.name: cls for cls in (OffsetPages, IdRanges, IdList)}
