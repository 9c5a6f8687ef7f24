"""A table-driven local portal (127.0.0.1) for list-method families, as their doc pages describe.

Each :class:`Family` row says how one method pages: where records sit (``result`` or
``result.<key>``), the ID key and its case (``ID`` strings or ``id`` integers, none at
all), the page size (50, or 10 for ``crm.timeline.logmessage.list``), whether it
filters and orders by ID (``>ID``/``<=ID``/``@ID``, ``start=-1`` without a count),
how ``order`` is given (``{field: dir}`` or ``sort=field&order=dir``), and whether the
arguments are read by position (legacy ``task.*``). Anything a family does not
support is answered as the real server does: a filter on an unknown field is an
``ERROR_ARGUMENT``.

``batch`` runs through the fake portal's own batch executor, so ``$result[...]``
references resolve exactly as on a real portal. Counters (``requests``, ``commands``)
and an ``after_command`` hook (for records added during an export) serve the tests.
"""

from __future__ import annotations

import json
import operator
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from bitrix_threaded.testing.batch import run_batch
from bitrix_threaded.testing.phpquery import parse_query
from bitrix_threaded.testing.server import decode_body

TOKEN = "familytoken123"


@dataclass(frozen=True)
class Family:
    name: str
    items: Optional[str] = None          # records under result[items]; None: result is the list
    id_key: Optional[str] = "ID"         # None: records have no ID
    string_ids: bool = True              # legacy methods send "410", newer ones 410
    page: int = 50
    cursor: bool = False                 # >ID / <=ID / @ID filters, ID order, start=-1
    filter_param: str = "filter"
    order_param: str = "order"
    sort_param: Optional[str] = None     # order given as sort=<field> & order=<dir>
    positional: Tuple[str, ...] = ()     # argument names in their mandatory order
    zero_total: bool = False             # start=-1 answers total 0 (legacy CRM) vs none
    key_fields: Tuple[str, ...] = ()     # fields of a record without ID
    ignores_in: bool = False             # silently ignores @ID (a misbehaving portal)
    doc: str = ""


def _legacy(entity: str, doc: str) -> Family:
    return Family(f"crm.{entity}.list", cursor=True, zero_total=True, doc=doc)


def _engine(name: str, items: str, doc: str, cursor: bool = True) -> Family:
    return Family(name, items=items, id_key="id", string_ids=False, cursor=cursor, doc=doc)


def _plain(name: str, doc: str, **extra: Any) -> Family:
    return Family(name, doc=doc, **extra)


_TASK_ARGS = ("TASKID", "ORDER", "FILTER", "SELECT", "PARAMS")

FAMILIES: List[Family] = [
    _legacy("deal", "crm/deals/crm-deal-list.md"),
    _legacy("lead", "crm/leads/crm-lead-list.md"),
    _legacy("contact", "crm/contacts/crm-contact-list.md"),
    _legacy("company", "crm/companies/crm-company-list.md"),
    _legacy("quote", "crm/quote/crm-quote-list.md"),
    _legacy("invoice", "crm/outdated/invoice/crm-invoice-list.md"),
    _legacy("activity", "crm/timeline/activities/activity-base/crm-activity-list.md"),
    _legacy("product", "crm/outdated/products/crm-product-list.md"),
    _legacy("productrow", "crm/outdated/productrow-old/crm-productrow-list.md"),
    _legacy("requisite", "crm/requisites/universal/crm-requisite-list.md"),
    _legacy("requisite.bankdetail", "crm/requisites/bank-detail/crm-requisite-bank-detail-list.md"),
    Family("crm.address.list", id_key=None, key_fields=("TYPE_ID", "ENTITY_TYPE_ID", "ENTITY_ID"),
           doc="crm/requisites/addresses/crm-address-list.md"),
    _plain("crm.status.list", "crm/status/crm-status-list.md"),
    _plain("crm.timeline.comment.list", "crm/timeline/comments/crm-timeline-comment-list.md"),
    Family("crm.timeline.logmessage.list", id_key="id", string_ids=False, page=10,
           doc="crm/timeline/logmessage/crm-timeline-logmessage-list.md"),
    Family("crm.timeline.bindings.list", id_key=None,
           key_fields=("OWNER_ID", "ENTITY_ID", "ENTITY_TYPE"),
           doc="crm/timeline/bindings/crm-timeline-bindings-list.md"),
    _engine("crm.item.list", "items", "crm/universal/crm-item-list.md"),
    _engine("crm.type.list", "types", "crm/universal/user-defined-object-types/crm-type-list.md"),
    _engine("crm.automatedsolution.list", "automatedSolutions",
            "crm/automated-solution/crm-automated-solution-list.md"),
    Family("crm.stagehistory.list", items="items", string_ids=False, cursor=True,
           doc="crm/crm-stage-history-list.md"),
    _engine("crm.category.list", "categories", "crm/universal/category/crm-category-list.md",
            cursor=False),
    _engine("crm.item.productrow.list", "productRows",
            "crm/universal/product-rows/crm-item-productrow-list.md", cursor=False),
    Family("tasks.task.list", items="tasks", id_key="id", cursor=True,
           doc="tasks/tasks-task-list.md"),
    Family("task.elapseditem.getlist", positional=_TASK_ARGS,
           doc="tasks/elapsed-item/task-elapsed-item-get-list.md"),
    Family("task.commentitem.getlist", positional=_TASK_ARGS,
           doc="tasks/comment-item/task-comment-item-get-list.md"),
    Family("task.checklistitem.getlist", positional=_TASK_ARGS,
           doc="tasks/checklist-item/task-checklist-item-get-list.md"),
    Family("user.get", cursor=True, filter_param="FILTER", sort_param="sort",
           doc="user/user-get.md"),
    Family("department.get", sort_param="sort", doc="departments/department-get.md"),
    Family("lists.element.get", filter_param="FILTER", order_param="ELEMENT_ORDER",
           doc="lists/elements/lists-element-get.md"),
    _plain("disk.storage.getlist", "disk/storage/disk-storage-get-list.md"),
    _plain("disk.folder.getchildren", "disk/folder/disk-folder-get-children.md"),
    _plain("disk.storage.getchildren", "disk/storage/disk-storage-get-children.md"),
    _plain("bizproc.task.list", "bizproc/bizproc-task/bizproc-task-list.md"),
    _plain("bizproc.workflow.template.list",
           "bizproc/template/bizproc-workflow-template-list.md"),
    _plain("bizproc.workflow.instances", "bizproc/bizproc-workflow-instances.md"),
    _engine("catalog.product.list", "products", "catalog/product/catalog-product-list.md"),
    _engine("catalog.section.list", "sections", "catalog/section/catalog-section-list.md"),
    _engine("catalog.store.list", "stores", "catalog/store/catalog-store-list.md"),
    _engine("catalog.price.list", "prices", "catalog/price/catalog-price-list.md"),
    _engine("catalog.document.list", "documents", "catalog/document/catalog-document-list.md"),
    _engine("catalog.document.element.list", "documentElements",
            "catalog/document/document-element/catalog-document-element-list.md"),
    _engine("sale.order.list", "orders", "sale/order/sale-order-list.md"),
    _engine("sale.basketitem.list", "basketItems", "sale/basket-item/sale-basket-item-list.md"),
    _engine("sale.payment.list", "payments", "sale/payment/sale-payment-list.md"),
    _engine("sale.shipment.list", "shipments", "sale/shipment/sale-shipment-list.md"),
    Family("socialnetwork.api.workgroup.list", items="workgroups", id_key="id", cursor=True,
           doc="sonet-group/socialnetwork-api-workgroup-list.md"),
    # Made-up methods the client has never heard of: one of each common shape.
    Family("vendor.widget.list", doc="(made up: result[] with ID)"),
    Family("vendor.gadget.list", items="gadgets", id_key="id", string_ids=False,
           doc="(made up: result.gadgets[] with id)"),
]

BY_NAME = {f.name: f for f in FAMILIES}


def make_record(family: Family, number: int) -> Dict[str, Any]:
    """Record ``number`` of ``family``: its ID (or identifying fields) and a few values."""
    record: Dict[str, Any] = {}
    if family.id_key is not None:
        record[family.id_key] = str(number) if family.string_ids else number
    for i, name in enumerate(family.key_fields):
        record[name] = str(number * (i + 1)) if i else str(1 + number % 3)
    kind = "KIND" if family.string_ids else "kind"
    record[kind] = str(number % 3) if family.string_ids else number % 3
    record["NAME" if family.string_ids else "title"] = f"{family.name} #{number}"
    return record


_COMPARE: Dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "=": operator.eq, "!": operator.ne, "!=": operator.ne,
}


def _number(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class FamilyPortal:
    """One server for every family in :data:`FAMILIES`; records set per test.

    Thread safety: handlers run on server threads; records and counters sit behind one
    lock. ``after_command(method, params)`` runs after each command, outside the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: Dict[str, List[Dict[str, Any]]] = {}
        #: Whole replies (``{"result": ..., "total"?: ...}``) of methods that are no family.
        self.static: Dict[str, Dict[str, Any]] = {}
        self.requests = 0
        self.commands: Dict[str, int] = {}
        self.calls: List[Tuple[str, Dict[str, Any]]] = []
        self.after_command: Optional[Callable[[str, Dict[str, Any]], None]] = None
        #: Methods that behave as if @ID were not in the filter (a misbehaving portal).
        self.ignoring_in: set = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.portal = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> "FamilyPortal":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def webhook(self) -> str:
        address: Any = self._server.server_address
        host, port = address[:2]
        return f"http://{host}:{port}/rest/1/{TOKEN}/"

    # -- data ------------------------------------------------------------------------
    def load(self, name: str, numbers: List[int]) -> List[Dict[str, Any]]:
        family = BY_NAME[name]
        records = [make_record(family, n) for n in numbers]
        with self._lock:
            self.records[name] = records
        return [dict(r) for r in records]

    def insert_front(self, name: str, numbers: List[int]) -> None:
        """Add records that sort before every other one (a newest-first default order)."""
        family = BY_NAME[name]
        with self._lock:
            self.records[name][:0] = [make_record(family, n) for n in numbers]

    def reset_counters(self) -> None:
        with self._lock:
            self.requests = 0
            self.commands = {}
            self.calls = []

    # -- protocol --------------------------------------------------------------------
    def handle(self, method: str, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        with self._lock:
            self.requests += 1
        if method == "batch":
            return 200, {"result": run_batch(params, self.execute)}
        reply = self.execute(method, params)
        return (400 if "error" in reply else 200), reply

    def execute(self, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        name = method.lower()
        with self._lock:
            self.commands[name] = self.commands.get(name, 0) + 1
            self.calls.append((name, params))
        if name in self.static:
            return {**self.static[name], "time": {"operating": 0}}
        family = BY_NAME.get(name)
        if family is None or name not in self.records:
            return {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
        with self._lock:
            try:
                reply = self._page(family, self.records[name], params)
            except ValueError as exc:
                reply = {"error": "ERROR_ARGUMENT", "error_description": str(exc)}
        if self.after_command is not None:
            self.after_command(name, params)
        return reply

    def _arguments(self, family: Family, params: Dict[str, Any]) -> Tuple[Any, Any, Any, Any]:
        """(filter, order, sort, start) as the server reads them."""
        start = _number(next((v for k, v in params.items() if k.lower() == "start"), 0)) or 0
        if family.positional:
            # The server reads positions, whatever the keys say ('start' is taken out first).
            values = [v for k, v in params.items() if k.lower() != "start"]
            at = {name: i for i, name in enumerate(family.positional)}
            filter_ = values[at["FILTER"]] if len(values) > at["FILTER"] else {}
            order = values[at["ORDER"]] if len(values) > at["ORDER"] else {}
            return filter_, order, None, start
        lower = {k.lower(): v for k, v in params.items()}
        filter_ = lower.get(family.filter_param.lower(), {})
        order = lower.get(family.order_param.lower())
        sort = lower.get(family.sort_param.lower()) if family.sort_param else None
        return filter_, order, sort, start

    def _page(self, family: Family, records: List[Dict[str, Any]],
              params: Dict[str, Any]) -> Dict[str, Any]:
        filter_, order, sort, start = self._arguments(family, params)
        if filter_ in ("", None, []):
            filter_ = {}
        if not isinstance(filter_, dict):
            raise ValueError("Parameter 'filter' must be array.")
        if filter_ and records:
            test = self._predicate(family, records[0], filter_)
            chosen = [r for r in records if test(r)]
        else:
            chosen = list(records)
        chosen = self._sorted(family, chosen, order, sort)
        reply: Dict[str, Any] = {"time": {"operating": 0}}
        if start == -1:
            page = chosen[:family.page]
            if family.zero_total:
                reply["total"] = 0
        else:
            offset = (max(0, start) // family.page) * family.page
            page = chosen[offset:offset + family.page]
            reply["total"] = len(chosen)
            if offset + family.page < len(chosen):
                reply["next"] = offset + family.page
        page = [dict(r) for r in page]
        reply["result"] = page if family.items is None else {family.items: page}
        return reply

    @staticmethod
    def _field(key: str) -> Tuple[str, str]:
        for op in (">=", "<=", "!=", ">", "<", "@", "!", "="):
            if key.startswith(op):
                return op, key[len(op):]
        return "=", key

    def _predicate(self, family: Family, sample: Dict[str, Any],
                   filter_: Dict[str, Any]) -> Callable[[Dict[str, Any]], bool]:
        """The filter as one test per record, parsed once per command."""
        tests: List[Callable[[Dict[str, Any]], bool]] = []
        for key, wanted in filter_.items():
            op, name = self._field(str(key))
            field = next((k for k in sample if k.lower() == name.lower()), None)
            if field is None:
                raise ValueError(f"Unknown field definition '{name}'")
            is_id = field == family.id_key
            if is_id and not family.cursor and op != "=":
                raise ValueError(f"Filter operation not allowed: {key}")
            if op == "@":
                if is_id and (family.ignores_in or family.name in self.ignoring_in):
                    continue
                values = {_number(v) for v in (wanted if isinstance(wanted, list) else [wanted])}
                tests.append(lambda r, f=field, v=values: _number(r[f]) in v)  # type: ignore[misc]
                continue
            number = _number(wanted)
            compare = _COMPARE[op]
            if number is not None:
                tests.append(lambda r, f=field, b=number, c=compare:  # type: ignore[misc]
                             c(_number(r[f]), b))
            else:
                tests.append(lambda r, f=field, b=str(wanted), c=compare:  # type: ignore[misc]
                             c(str(r[f]), b))
        return lambda record: all(test(record) for test in tests)

    def _sorted(self, family: Family, records: List[Dict[str, Any]], order: Any,
                sort: Any) -> List[Dict[str, Any]]:
        if family.sort_param is not None and sort is not None:
            order = {sort: order or "ASC"}
        if not order:
            return records
        if not isinstance(order, dict) or len(order) != 1:
            raise ValueError("Invalid order")
        (name, direction), = order.items()
        field = next((k for k in (records[0] if records else {}) if k.lower() == str(name).lower()),
                     None)
        if records and field is None:
            raise ValueError(f"Unknown field definition '{name}'")
        reverse = str(direction).upper() == "DESC"
        return sorted(records, key=lambda r: _number(r[field]) if field else 0,  # type: ignore
                      reverse=reverse)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        portal: FamilyPortal = self.server.portal  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        params = parse_query(parts.query) if parts.query else {}
        params.update(decode_body(self.headers.get("Content-Type", ""), body))
        segments = parts.path.strip("/").split("/")
        if len(segments) != 4 or segments[:3] != ["rest", "1", TOKEN]:
            status, reply = 401, {"error": "INVALID_CREDENTIALS",
                                  "error_description": "Invalid request credentials"}
        else:
            method = segments[3]
            if method.endswith(".json"):
                method = method[:-5]
            status, reply = portal.handle(method.lower(), params)
        data = json.dumps(reply).encode()
        # One write for head and body: two small writes meet Nagle and delayed ACKs.
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                "Content-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1")
        self.wfile.write(head + data)

    do_GET = do_POST  # noqa: N815 - stdlib naming
