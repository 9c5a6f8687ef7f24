"""The fake portal's data and REST methods, without HTTP.

:class:`DataStore` holds seeded CRM deals, leads, contacts, companies, tasks and
users and answers ``call(method, params)`` with a :class:`CallOutcome` (what goes
under ``result``, ``total`` and ``next``, plus row counts for the cost model) or
raises :class:`PortalError`. The HTTP server wraps it.

Methods: ``crm.{deal,lead,contact,company}.{list,get,add,update,delete,fields}``,
``crm.item.{list,get}`` (entityTypeId 1 lead, 2 deal, 3 contact, 4 company),
``tasks.task.{list,get}`` and ``user.get``.

List semantics, as the portal behaves: pages of 50 records; ``start`` is the
offset, and ``start=-1`` skips counting (no ``total``/``next``; legacy CRM lists
report ``total: 0``); otherwise ``total`` counts every match and ``next`` is the
offset of the following page while there is one. Legacy CRM lists order by ID
ascending unless ``order`` says otherwise, tasks.task.list by ID descending.
Unknown ``select`` names are ignored; ``*`` means every plain field, ``UF_*`` the
user fields. See :mod:`.filters` for the filter rules.

Writes do not touch DATE_MODIFY (the store has no clock, by design: the
same seed and the same calls always give the same data).
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import records, schemas
from .filters import (as_list, get_param, parse_filter, parse_order, php_intval,
                      resolve_select, to_number)
from .schemas import SCHEMAS, Schema
from .table import PAGE_SIZE, ListPage, RecordTable, run_list

__all__ = ["CallOutcome", "DataStore", "PAGE_SIZE", "PortalError"]

_CRM_ENTITIES = ("deal", "lead", "contact", "company")
_MUTABLE_ENTITIES = ("deal", "lead", "contact", "company", "task")
_ITEM_ENTITY_TYPES = {1: "lead", 2: "deal", 3: "contact", 4: "company"}
_USER_GET_PARAMS = frozenset({"sort", "order", "filter", "start", "admin_mode"})
_ITEM_UF_WILDCARDS = ("UF_*", "ufCrm*", "ufCrm_*")

# Values a record created by crm.*.add starts with (the rest is null).
_ADD_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "deal": {"TYPE_ID": "SALE", "CATEGORY_ID": "0", "STAGE_ID": "NEW", "CURRENCY_ID": "RUB",
             "OPPORTUNITY": "0.00", "IS_MANUAL_OPPORTUNITY": "N", "TAX_VALUE": "0.00",
             "COMPANY_ID": "0", "OPENED": "Y", "CLOSED": "N", "ASSIGNED_BY_ID": "1",
             "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1", "SOURCE_ID": "CALL"},
    "lead": {"STATUS_ID": "NEW", "STATUS_SEMANTIC_ID": "P", "CURRENCY_ID": "RUB",
             "OPPORTUNITY": "0.00", "IS_MANUAL_OPPORTUNITY": "N", "OPENED": "Y",
             "ASSIGNED_BY_ID": "1", "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1"},
    "contact": {"TYPE_ID": "CLIENT", "OPENED": "Y", "EXPORT": "Y", "ASSIGNED_BY_ID": "1",
                "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1"},
    "company": {"COMPANY_TYPE": "CUSTOMER", "CURRENCY_ID": "RUB", "REVENUE": "0.00",
                "OPENED": "Y", "IS_MY_COMPANY": "N", "ASSIGNED_BY_ID": "1",
                "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1"},
}
_DEFAULT_TITLES = {"deal": "Deal #%d", "lead": "Lead #%d", "company": "Company #%d"}


class PortalError(Exception):
    """A Bitrix24 error reply.

    Rendered as ``{"error": code, "error_description": description, **extra}``
    with HTTP ``status``.
    """

    def __init__(self, code: str, description: str, status: int = 400, **extra: Any):
        super().__init__("%s: %s" % (code, description) if code else description)
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra

    def body(self) -> Dict[str, Any]:
        """The JSON error body."""
        return {"error": self.code, "error_description": self.description, **self.extra}


@dataclass
class CallOutcome:
    """A successful method call: the envelope's result/total/next and row counts."""

    result: Any
    total: Optional[int] = None
    next: Optional[int] = None
    records: int = 0
    skipped: int = 0
    counted: int = 0


def _not_found() -> PortalError:
    return PortalError("", "Not found")


def _bad_id() -> PortalError:
    return PortalError("", "ID is not defined or invalid.")


class DataStore:
    """Seeded portal data and the methods that read and write it.

    Thread-safe: every public method runs under one internal lock.
    Generation is deterministic in ``seed``: two stores built with the same
    arguments and given the same calls return identical data.

    With ``json_rows``, a legacy CRM list page of whole records (no select,
    or ``*`` with ``UF_*``) comes back as :class:`~.jsontext.JsonRows`: a
    read-only sequence carrying its own JSON text, whose records are built
    only when read. The HTTP server uses it to skip building and encoding
    each record; otherwise pages are plain lists.

    Raises TypeError/ValueError on bad constructor arguments; ``call`` raises
    :class:`PortalError` for anything the real portal would refuse.
    """

    def __init__(self, *, deals: int = 0, leads: int = 0, contacts: int = 0, tasks: int = 0,
                 users: int = 10, seed: int = 1, legacy_total_zero: bool = True,
                 json_rows: bool = False, companies: int = 0):
        sizes = {"deal": deals, "lead": leads, "contact": contacts, "company": companies,
                 "task": tasks, "user": users}
        for entity, size in sizes.items():
            name = "companies" if entity == "company" else entity + "s"
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError("%s must be an int, got %r" % (name, size))
            if size < 0:
                raise ValueError("%s must be >= 0, got %d" % (name, size))
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError("seed must be an int, got %r" % (seed,))
        self.legacy_total_zero = bool(legacy_total_zero)
        self.json_rows = bool(json_rows)
        self._lock = threading.Lock()
        self._tables: Dict[str, RecordTable] = {}
        all_ids = {}
        for entity in records.ENTITIES:
            rng = random.Random("%d:%s" % (seed, entity))
            all_ids[entity] = records.make_ids(sizes[entity], rng, gaps=entity != "user")
        # References point at records that exist now (later deletes may leave some
        # dangling, as on a real portal).
        refs = records.Refs(users, contacts=all_ids["contact"], companies=all_ids["company"])
        for entity in records.ENTITIES:
            self._tables[entity] = RecordTable(entity, SCHEMAS[entity], all_ids[entity],
                                               records.RecordKey(seed, entity), refs)
        self._mutable = tuple(e for e in _MUTABLE_ENTITIES if sizes[e] > 0)
        self._next_multi_id = 10 ** 10
        self._item_shapes: Dict[Tuple[str, ...], schemas.ItemShape] = {}
        self._methods: Dict[str, Callable[[Dict[str, Any]], CallOutcome]] = {
            "crm.item.list": self._item_list,
            "crm.item.get": self._item_get,
            "tasks.task.list": self._task_list,
            "tasks.task.get": self._task_get,
            "user.get": self._user_get,
        }
        for entity in _CRM_ENTITIES:
            for verb in ("list", "get", "add", "update", "delete", "fields"):
                handler = getattr(self, "_crm_" + verb)
                self._methods["crm.%s.%s" % (entity, verb)] = _bind(handler, entity)

    # --- public interface -------------------------------------------------

    def has_method(self, method: str) -> bool:
        """Whether ``method`` (lower-cased, no ``.json``) exists on this portal."""
        return method in self._methods

    def call(self, method: str, params: Dict[str, Any]) -> CallOutcome:
        """Run ``method`` with ``params``; raises PortalError like the portal."""
        handler = self._methods.get(method)
        if handler is None:
            raise PortalError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise TypeError("params must be a dict, got %s" % type(params).__name__)
        with self._lock:
            return handler(params)

    def ids(self, entity: str) -> List[int]:
        """All live IDs of ``entity`` (one of :data:`~.records.ENTITIES`), ascending."""
        table = self._table(entity)
        with self._lock:
            return table.ids.tolist()

    def count(self, entity: str) -> int:
        """Number of live records of ``entity``."""
        table = self._table(entity)
        with self._lock:
            return len(table)

    def mutate(self, rng: random.Random, inserts: int = 1, deletes: int = 1
               ) -> Tuple[List[int], List[int]]:
        """Insert and delete records in every non-empty CRM/task entity.

        For each of deal, lead, contact, company, task that was created with records,
        deletes ``deletes`` random live records, then adds ``inserts``
        generated ones (IDs above the highest ever used, gaps of 1-3). Returns
        ``(added_ids, deleted_ids)`` over all entities, in that entity order.
        """
        added: List[int] = []
        deleted: List[int] = []
        for entity in self._mutable:
            more, fewer = self.mutate_entity(entity, rng, inserts, deletes)
            added.extend(more)
            deleted.extend(fewer)
        return added, deleted

    def mutate_entity(self, entity: str, rng: random.Random, inserts: int = 1,
                      deletes: int = 1) -> Tuple[List[int], List[int]]:
        """:meth:`mutate` for one entity."""
        table = self._table(entity)
        if not isinstance(inserts, int) or not isinstance(deletes, int):
            raise TypeError("inserts and deletes must be ints")
        if inserts < 0 or deletes < 0:
            raise ValueError("inserts and deletes must be >= 0")
        with self._lock:
            # Deletes first, so that they hit records that existed before.
            deleted = []
            for _ in range(min(deletes, len(table))):
                record_id = table.ids[rng.randrange(len(table))]
                table.remove(record_id)
                deleted.append(record_id)
            added = []
            for _ in range(inserts):
                record_id = table.next_id + rng.randint(0, 2)
                table.insert(record_id)
                added.append(record_id)
            return added, deleted

    def _table(self, entity: str) -> RecordTable:
        table = self._tables.get(entity) if isinstance(entity, str) else None
        if table is None:
            raise ValueError("unknown entity %r; expected one of %s"
                             % (entity, ", ".join(records.ENTITIES)))
        return table

    # --- list plumbing ----------------------------------------------------

    def _query(self, table: RecordTable, *, filter_error: PortalError,
               start: int, default_desc: bool = False, raw_filter: Any = None,
               raw_order: Any = None, strict_order: bool = False) -> ListPage:
        conditions = parse_filter(raw_filter, table.schema)
        if conditions is None:
            raise filter_error
        order, unknown = parse_order(raw_order, table.schema)
        if unknown and strict_order:
            raise PortalError("0", "Invalid sorting key (internal error)")
        return run_list(table, conditions, order, start, default_desc=default_desc)

    @staticmethod
    def _outcome(result: Any, page: ListPage, *, total_when_uncounted: Optional[int]
                 ) -> CallOutcome:
        count = len(page.ids)
        if page.total is None:
            return CallOutcome(result, total=total_when_uncounted, records=count)
        after = page.offset + count
        return CallOutcome(result, total=page.total,
                           next=after if after < page.total else None, records=count,
                           skipped=min(page.offset, page.total), counted=page.total)

    @staticmethod
    def _start(params: Dict[str, Any]) -> int:
        start = php_intval(get_param(params, "start"))
        return -1 if start < 0 else start

    # --- legacy CRM -------------------------------------------------------

    def _crm_list(self, entity: str, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables[entity]
        page = self._query(
            table, start=self._start(params),
            raw_filter=get_param(params, "filter", "arFilter"),
            raw_order=get_param(params, "order", "arOrder"),
            filter_error=PortalError("", "Parameter 'filter' must be array."))
        fields, multi = resolve_select(get_param(params, "select", "arSelect"), table.schema)
        stored = table.overrides
        full = fields == table.schema.standard
        rows = table.json_rows(page.ids) if self.json_rows and full and not multi else None
        if rows is not None:
            result: Any = rows
        elif full and not stored:
            # Generated records are fresh dicts in exactly this shape.
            result = page.records
        else:
            result = [record if full and record_id not in stored
                      else {f: record.get(f) for f in fields}
                      for record_id, record in zip(page.ids, page.records)]
        if multi:
            for record_id, record, row in zip(page.ids, page.records, result):
                values = table.multi(record_id, record)
                row.update((name, values[name]) for name in multi if name in values)
        return self._outcome(result, page,
                             total_when_uncounted=0 if self.legacy_total_zero else None)

    def _record_id(self, params: Dict[str, Any]) -> int:
        record_id = php_intval(get_param(params, "id"))
        if record_id <= 0:
            raise _bad_id()
        return record_id

    def _crm_get(self, entity: str, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables[entity]
        record_id = self._record_id(params)
        if table.index(record_id) < 0:
            raise _not_found()
        record = table.fetch(record_id)
        row = {f: record.get(f) for f in table.schema.standard}
        row.update(table.multi(record_id, record))
        return CallOutcome(row, records=1)

    def _crm_fields(self, entity: str, params: Dict[str, Any]) -> CallOutcome:
        return CallOutcome(self._tables[entity].schema.describe())

    def _crm_add(self, entity: str, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables[entity]
        fields = self._fields_param(params)
        record_id = table.next_id
        generated = records.generate(entity, record_id, table.key, table.refs)
        record: Dict[str, Any] = dict.fromkeys(table.schema.standard)
        record.update(_ADD_DEFAULTS[entity])
        record["ID"] = str(record_id)
        record["DATE_CREATE"] = record["DATE_MODIFY"] = generated["DATE_CREATE"]
        for name in table.schema.multi:
            record[name] = []
        if entity in _DEFAULT_TITLES:
            record["TITLE"] = _DEFAULT_TITLES[entity] % record_id
        self._apply(table, record, fields)
        table.overrides[record_id] = record
        table.insert(record_id)
        return CallOutcome(record_id, records=1)

    def _crm_update(self, entity: str, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables[entity]
        record_id = self._record_id(params)
        if table.index(record_id) < 0:
            raise _not_found()
        fields = self._fields_param(params)
        record = table.overrides.get(record_id)
        if record is None:
            record = table.fetch(record_id)
            multi = table.multi(record_id, record)
            for name in table.schema.multi:
                record[name] = multi.get(name, [])
        self._apply(table, record, fields)
        table.overrides[record_id] = record
        return CallOutcome(True, records=1)

    def _crm_delete(self, entity: str, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables[entity]
        record_id = self._record_id(params)
        if not table.remove(record_id):
            raise _not_found()
        return CallOutcome(True, records=1)

    @staticmethod
    def _fields_param(params: Dict[str, Any]) -> Dict[str, Any]:
        fields = get_param(params, "fields")
        if isinstance(fields, list) and not fields:
            fields = {}
        if not isinstance(fields, dict):
            raise PortalError("", "The parameter 'fields' must be array.")
        return fields

    def _apply(self, table: RecordTable, record: Dict[str, Any], fields: Dict[str, Any]
               ) -> None:
        """Write API ``fields`` into an internal record (read-only/unknown ignored)."""
        schema = table.schema
        for key, value in fields.items():
            name = schema.resolve(str(key))
            if name is None or schema.by_name[name].read_only:
                continue
            if name in schema.multi:
                record[name] = self._merge_multi(name, record.get(name) or [], value)
            elif not isinstance(value, (list, dict)):
                record[name] = _stored_value(schema, name, value)
        for name, flag in (("PHONE", "HAS_PHONE"), ("EMAIL", "HAS_EMAIL")):
            if name in schema.multi and flag in schema.by_name:
                record[flag] = "Y" if record.get(name) else "N"

    def _merge_multi(self, name: str, current: List[Dict[str, Any]], value: Any
                     ) -> List[Dict[str, Any]]:
        # Entries with a known ID are updated (or removed when VALUE is
        # empty); entries without one are appended, as the portal does.
        merged = [dict(v) for v in current]
        by_id = {v["ID"]: v for v in merged}
        for entry in as_list(value):
            if not isinstance(entry, dict):
                continue
            entry = {str(k).upper(): v for k, v in entry.items()}
            known = by_id.get(str(entry.get("ID", "")))
            text = entry.get("VALUE")
            if known is not None:
                if text in (None, ""):
                    merged.remove(known)
                else:
                    known["VALUE"] = str(text)
                    known["VALUE_TYPE"] = str(entry.get("VALUE_TYPE") or known["VALUE_TYPE"])
            elif text not in (None, ""):
                self._next_multi_id += 1
                merged.append({"ID": str(self._next_multi_id),
                               "VALUE_TYPE": str(entry.get("VALUE_TYPE") or "WORK"),
                               "VALUE": str(text), "TYPE_ID": name})
        return merged

    # --- crm.item ---------------------------------------------------------

    def _item_table(self, params: Dict[str, Any]) -> RecordTable:
        entity = _ITEM_ENTITY_TYPES.get(php_intval(get_param(params, "entityTypeId")))
        if entity is None:
            raise PortalError("NOT_FOUND", "SPA not found")
        return self._tables[entity]

    def _item_shape(self, table: RecordTable, names: Tuple[str, ...]) -> schemas.ItemShape:
        key = (table.entity,) + names
        shape = self._item_shapes.get(key)
        if shape is None:
            shape = self._item_shapes[key] = schemas.ItemShape(table.schema, names)
        return shape

    def _item_list(self, params: Dict[str, Any]) -> CallOutcome:
        table = self._item_table(params)
        page = self._query(
            table, start=self._start(params),
            raw_filter=get_param(params, "filter"), raw_order=get_param(params, "order"),
            filter_error=PortalError("INVALID_ARG_VALUE", "filter must be an array"))
        raw_select = get_param(params, "select")
        # crm.item's "*" covers user fields too.
        if not raw_select or "*" in [str(v) for v in as_list(raw_select)]:
            fields = table.schema.standard
        else:
            fields, _ = resolve_select(raw_select, table.schema, uf_wildcards=_ITEM_UF_WILDCARDS)
        shape = self._item_shape(table, fields)
        items = [shape.convert(record) for record in page.records]
        return self._outcome({"items": items}, page, total_when_uncounted=None)

    def _item_get(self, params: Dict[str, Any]) -> CallOutcome:
        table = self._item_table(params)
        record_id = php_intval(get_param(params, "id"))
        if record_id <= 0 or table.index(record_id) < 0:
            raise PortalError("NOT_FOUND", "Item not found")
        record = table.fetch(record_id)
        item = self._item_shape(table, table.schema.standard).convert(record)
        return CallOutcome({"item": item}, records=1)

    # --- tasks and users --------------------------------------------------

    def _task_list(self, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables["task"]
        page = self._query(
            table, start=self._start(params), default_desc=True, strict_order=True,
            raw_filter=get_param(params, "filter"), raw_order=get_param(params, "order"),
            filter_error=PortalError("0", "Filter must be an array (internal error)"))
        fields, _ = resolve_select(get_param(params, "select"), table.schema)
        tasks = [schemas.to_task(record, fields, table.schema) for record in page.records]
        return self._outcome({"tasks": tasks}, page, total_when_uncounted=None)

    def _task_get(self, params: Dict[str, Any]) -> CallOutcome:
        # bitrix-tools/b24-rest-docs api-reference/tasks/tasks-task-get.md: taskId and
        # select; {"task": {...}} in camelCase; an empty list for a missing task.
        table = self._tables["task"]
        raw_id = get_param(params, "taskId")
        if raw_id is None:
            raise PortalError("100", "CTaskItem All parameters in the constructor must have "
                                     "real class type (internal error)")
        if isinstance(raw_id, (dict, list)) or php_intval(raw_id) <= 0:
            raise PortalError("0", "wrong task id")
        record_id = php_intval(raw_id)
        if table.index(record_id) < 0:
            return CallOutcome([], records=0)
        raw_select = get_param(params, "select")
        if raw_select is not None and (not isinstance(raw_select, (list, dict))
                                       or not raw_select):
            raise PortalError("100", "Invalid value {} to match with parameter {select}. "
                                     "Should be value of type array. (internal error)")
        fields, _ = resolve_select(raw_select, table.schema)
        record = table.fetch(record_id)
        return CallOutcome({"task": schemas.to_task(record, fields, table.schema)}, records=1)

    def _user_get(self, params: Dict[str, Any]) -> CallOutcome:
        table = self._tables["user"]
        # user.get takes its filter as FILTER and/or as top-level keys.
        raw_filter = get_param(params, "filter")
        merged: Dict[str, Any] = dict(raw_filter) if isinstance(raw_filter, dict) else {}
        for key, value in params.items():
            if str(key).lower() not in _USER_GET_PARAMS:
                merged[key] = value
        raw_order = get_param(params, "order")
        if not isinstance(raw_order, dict):
            sort = get_param(params, "sort")
            raw_order = {sort: raw_order if isinstance(raw_order, str) else "ASC"} \
                if isinstance(sort, str) and sort else None
        page = self._query(table, start=self._start(params), raw_filter=merged,
                           raw_order=raw_order, filter_error=PortalError("", "Invalid filter"))
        users = [dict(record) if record_id in table.overrides else record
                 for record_id, record in zip(page.ids, page.records)]
        return self._outcome(users, page,
                             total_when_uncounted=0 if self.legacy_total_zero else None)


def _bind(handler: Callable[[str, Dict[str, Any]], CallOutcome], entity: str
          ) -> Callable[[Dict[str, Any]], CallOutcome]:
    return lambda params: handler(entity, params)


def _stored_value(schema: Schema, name: str, value: Any) -> Optional[str]:
    """An API value in the legacy stored form: strings, Y/N, 2-decimal amounts."""
    field = schema.by_name[name]
    if value is None:
        return None
    if field.type == "char":
        if value is True or value in (1, "1", "y", "Y"):
            return "Y"
        if value is False or value in (0, "0", "n", "N", ""):
            return "N"
        return str(value)
    if field.type == "double":
        number = to_number(value)
        return "%.2f" % number if number is not None else str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
