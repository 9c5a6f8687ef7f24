"""One entity's records and the list engine that pages through them.

A :class:`RecordTable` keeps a sorted ``array('q')`` of live IDs plus a dict
of overrides (records added or updated through the API); every other
record is regenerated from its ID on read. :func:`run_list` answers a list
query against it: ID-range filters and ID order are served by bisection and
slicing, anything else by a scan that keeps only IDs and sort keys.

Not thread-safe on its own: :class:`~.store.DataStore` serialises access.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from operator import itemgetter
from typing import (
    Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, cast,
)

from .filters import Condition, as_list, compile_condition, sort_key, to_number
from .jsontext import ENCODER, JsonRows
from .records import GENERATORS, JSON_WRITERS, RecordKey, Refs, generate, multi_fields
from .schemas import Schema

__all__ = ["PAGE_SIZE", "ListPage", "RecordTable", "run_list"]

PAGE_SIZE = 50

_RANGE_OPS = (">", ">=", "<", "<=")


class RecordTable:
    """Records of one entity: sorted live IDs, overrides, generation key, references."""

    def __init__(self, entity: str, schema: Schema, ids: "array[int]", key: RecordKey,
                 refs: Refs):
        self.entity = entity
        self.schema = schema
        self.ids = ids
        self.key = key
        self.refs = refs
        self.overrides: Dict[int, Dict[str, Any]] = {}
        self.next_id = (ids[-1] + 1) if len(ids) else 1

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, record_id: int) -> int:
        """Position of ``record_id`` in ``ids``, or -1."""
        pos = bisect_left(self.ids, record_id)
        return pos if pos < len(self.ids) and self.ids[pos] == record_id else -1

    def fetch(self, record_id: int) -> Dict[str, Any]:
        """The record: a fresh generated dict, or the stored one (do not mutate it)."""
        record = self.overrides.get(record_id)
        if record is not None:
            return record
        return generate(self.entity, record_id, self.key, self.refs)

    def iter_records(self, ids: Iterable[int]) -> Iterator[Tuple[int, Dict[str, Any]]]:
        """``(id, record)`` for each ID, as :meth:`fetch` gives them, but faster."""
        gen = GENERATORS[self.entity]
        t0, t1, t2 = self.key.t0, self.key.t1, self.key.t2
        refs = self.refs
        stored = self.overrides
        for i in ids:
            record = stored.get(i) if stored else None
            if record is None:
                record = gen(i, t0[i & 4095] ^ t1[(i >> 12) & 4095] ^ t2[(i >> 24) & 4095],
                             refs)
            yield i, record

    def json_rows(self, ids: List[int]) -> Optional[JsonRows]:
        """The whole records with ``ids`` as :class:`~.jsontext.JsonRows`; None if unsupported.

        Their JSON text is written now; generated records are built only when
        read (they depend on nothing but their ID), overridden ones are copied
        now. Entities without a JSON writer give None.
        """
        writer = JSON_WRITERS.get(self.entity)
        if writer is None:
            return None
        t0, t1, t2 = self.key.t0, self.key.t1, self.key.t2
        refs = self.refs
        stored = self.overrides
        fields = self.schema.standard
        texts = []
        copies: Dict[int, Dict[str, Any]] = {}
        for position, i in enumerate(ids):
            record = stored.get(i) if stored else None
            if record is None:
                texts.append(writer(i, t0[i & 4095] ^ t1[(i >> 12) & 4095]
                                    ^ t2[(i >> 24) & 4095], refs))
            else:
                row = copies[position] = {f: record.get(f) for f in fields}
                texts.append(ENCODER.encode(row))
        return JsonRows(ids, texts, self._generated, copies)

    def _generated(self, record_id: int) -> Dict[str, Any]:
        return generate(self.entity, record_id, self.key, self.refs)

    def fetch_many(self, ids: Sequence[int]) -> List[Dict[str, Any]]:
        return [record for _, record in self.iter_records(ids)]

    def multi(self, record_id: int, record: Dict[str, Any]) -> Dict[str, List[Dict[str, str]]]:
        """Non-empty multi-field values (PHONE, EMAIL) of a record."""
        if not self.schema.multi:
            return {}
        if record_id in self.overrides:
            return {name: [dict(v) for v in record[name]]
                    for name in self.schema.multi if record.get(name)}
        return multi_fields(record_id, self.key, record)

    def insert(self, record_id: int) -> None:
        pos = bisect_left(self.ids, record_id)
        self.ids.insert(pos, record_id)
        self.next_id = max(self.next_id, record_id + 1)

    def remove(self, record_id: int) -> bool:
        pos = self.index(record_id)
        if pos < 0:
            return False
        del self.ids[pos]
        self.overrides.pop(record_id, None)
        return True


class ListPage:
    """One page of a list query: the matching IDs, and their records on first use.

    ``records`` (in internal shape, as :meth:`RecordTable.fetch` gives them)
    are read when first asked for, so a caller that only needs the IDs or
    writes the records as JSON text never builds them. Read them before the
    store's lock is released.
    """

    __slots__ = ("table", "ids", "offset", "total", "_records")

    def __init__(self, table: RecordTable, ids: List[int], offset: int, total: Optional[int]):
        self.table = table
        self.ids = ids
        self.offset = offset
        self.total = total  # matching rows; None when not counted (start < 0)
        self._records: Optional[List[Dict[str, Any]]] = None

    @property
    def records(self) -> List[Dict[str, Any]]:
        if self._records is None:
            self._records = self.table.fetch_many(self.ids)
        return self._records


def _id_number(value: Any) -> Optional[float]:
    number = to_number(value)
    return None if isinstance(value, bool) else number


def _id_bounds(conditions: Sequence[Condition], ids: "array[int]"
               ) -> Tuple[int, int, Optional[Set[int]], List[Condition]]:
    """Index range and ID set implied by numeric ID conditions, plus the rest.

    Conditions that cannot be answered by bisection exactly as the generic
    evaluator would (non-numeric values, negations) are returned as residual.
    """
    lo, hi = 0, len(ids)
    wanted: Optional[Set[int]] = None
    residual = []
    for cond in conditions:
        if cond.field != "ID":
            residual.append(cond)
            continue
        if cond.op in _RANGE_OPS and isinstance(cond.value, (list, tuple, dict)):
            # An array compared with an ID matches nothing (as the generic evaluator
            # decides); answer that at once. Batch commands chained after a short page
            # get such a value from a reference that could not be resolved.
            lo, hi = 0, 0
            continue
        if cond.op in _RANGE_OPS:
            x = _id_number(cond.value)
            if x is None:
                residual.append(cond)
            elif cond.op == ">":
                lo = max(lo, bisect_right(ids, x))
            elif cond.op == ">=":
                lo = max(lo, bisect_left(ids, x))
            elif cond.op == "<":
                hi = min(hi, bisect_left(ids, x))
            else:
                hi = min(hi, bisect_right(ids, x))
            continue
        if cond.op in ("=", "@"):
            values = as_list(cond.value) if (
                cond.op == "@" or isinstance(cond.value, (list, tuple, dict))) else [cond.value]
            numbers = [_id_number(v) for v in values]
            if all(n is not None for n in numbers):
                found = {int(n) for n in numbers if n is not None and n.is_integer()}
                wanted = found if wanted is None else wanted & found
                continue
        residual.append(cond)
    return lo, hi, wanted, residual


class _Span:
    """``ids[lo:hi]`` without copying the (possibly million-long) array."""

    def __init__(self, ids: "array[int]", lo: int, hi: int):
        self._ids, self._lo, self._len = ids, lo, max(0, hi - lo)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: slice) -> Sequence[int]:
        start, stop, _ = index.indices(self._len)
        return self._ids[self._lo + start:self._lo + max(start, stop)]

    def __iter__(self) -> Iterator[int]:
        ids = self._ids
        return (ids[i] for i in range(self._lo, self._lo + self._len))

    def __reversed__(self) -> Iterator[int]:
        ids = self._ids
        return (ids[i] for i in range(self._lo + self._len - 1, self._lo - 1, -1))


def _candidates(ids: "array[int]", lo: int, hi: int, wanted: Optional[Set[int]]
                ) -> Sequence[int]:
    if wanted is None:
        # A _Span does what the list engine asks of a sequence: len, slices, iteration.
        return cast(Sequence[int], _Span(ids, lo, hi))
    if hi <= lo:
        return []
    first, last = ids[lo], ids[hi - 1]
    found = []
    for record_id in sorted(wanted):
        if first <= record_id <= last:
            pos = bisect_left(ids, record_id, lo, hi)
            if pos < hi and ids[pos] == record_id:
                found.append(record_id)
    return found


def _reversed_if(seq: Sequence[int], descending: bool) -> Iterable[int]:
    return reversed(seq) if descending else seq


def run_list(table: RecordTable, conditions: List[Condition], order: List[Tuple[str, bool]],
             start: int, *, default_desc: bool = False) -> ListPage:
    """Answer one list query: filter, order, then page of :data:`PAGE_SIZE`.

    ``start < 0`` means no count and no offset (the first matching page).
    Otherwise the offset is ``start`` floored to a multiple of the page size.
    A condition on an unknown field (``field is None``) matches nothing.
    """
    counted = start >= 0
    offset = (start // PAGE_SIZE) * PAGE_SIZE if counted else 0
    if any(c.field is None for c in conditions):
        return ListPage(table, [], offset, 0 if counted else None)
    if not order or order[0][0] == "ID":
        by_id, id_desc = True, (order[0][1] if order else default_desc)
    else:
        by_id, id_desc = False, False
    lo, hi, wanted, residual = _id_bounds(conditions, table.ids)
    candidates = _candidates(table.ids, lo, hi, wanted)

    if by_id and not residual:
        total = len(candidates)
        if id_desc:
            stop = total - offset
            page_ids = list(reversed(candidates[max(0, stop - PAGE_SIZE):max(0, stop)]))
        else:
            page_ids = list(candidates[offset:offset + PAGE_SIZE])
        return ListPage(table, page_ids, offset,
                        total if counted else None)

    predicates = [compile_condition(c, table.schema) for c in residual]
    if by_id:
        matched: List[int] = []
        for record_id, record in table.iter_records(_reversed_if(candidates, id_desc)):
            if all(p(record) for p in predicates):
                matched.append(record_id)
                # Without a count the server stops at the first full page.
                if not counted and len(matched) == PAGE_SIZE:
                    break
        page_ids = matched[offset:offset + PAGE_SIZE]
        return ListPage(table, page_ids, offset,
                        len(matched) if counted else None)

    # Sorting by other fields: keep (keys..., id) per match, never the records.
    keyfuncs = [sort_key(field, field in table.schema.numeric) for field, _ in order]
    keyed: List[Tuple[Any, ...]] = []
    for record_id, record in table.iter_records(candidates):
        if all(p(record) for p in predicates):
            keyed.append((*[f(record) for f in keyfuncs], record_id))
    # Candidates come in ID order and sorts are stable: ties stay by ID.
    for position in range(len(order) - 1, -1, -1):
        keyed.sort(key=itemgetter(position), reverse=order[position][1])
    page_ids = [entry[-1] for entry in keyed[offset:offset + PAGE_SIZE]]
    return ListPage(table, page_ids, offset,
                    len(keyed) if counted else None)
