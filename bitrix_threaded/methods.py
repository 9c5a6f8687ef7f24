"""What the client knows about list methods: cursor keys, where records sit, what they allow.

:func:`list_method` returns a :class:`ListMethod` for any method name. Known families
come from the table below, each row citing the page of the official REST documentation
(``bitrix-tools/b24-rest-docs``) it follows. An unknown method gets a conservative
description: offset pages, records found on the first page (a plain ``result`` list or
the only list inside ``result``), the ID key (``ID`` or ``id``) detected there too.

Shared rules, from ``settings/how-to-call-rest-api/list-methods-pecularities.md`` and
``settings/performance/huge-data.md``: pages of at most 50 records, ``start`` offsets
with ``total``/``next`` in the reply, and for methods that filter and order by a
stable numeric ID, ``>ID`` cursors with ``start=-1`` (no count).

Thread safety: descriptions are immutable values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .errors import InvalidResponse

#: ``items_key`` for "not known in advance: find the records on each page".
DETECT = "?"


@dataclass(frozen=True)
class ListMethod:
    """How to page one list method.

    ``filter_id``: the key filters and ``order`` use for the record ID (``ID`` or
    ``id``); ``None`` when the docs give no ``>ID`` filter with an ID order (offset
    pages only). ``record_id``: the key of the ID inside returned records (``None``: the
    records have no ID; :data:`DETECT`: ``ID`` or ``id``, whichever the first page
    carries). ``record_key``: for records without an ID, the fields that together
    identify one (used to drop the repeats offset pages bring when records are added).
    ``items_key``: where the records sit inside ``result`` (``None``: ``result`` is the
    list itself; :data:`DETECT`: found on the first page). ``start_minus_one``: whether
    ``start=-1`` (no count) is honoured. ``filter_param``/``order_param``: the names of
    the filter and order parameters; ``sort_param`` set means the order is given as
    ``sort=<field>`` plus ``order=ASC|DESC`` (``user.get``, ``department.get``).
    ``positional``: the server reads the arguments by position, so their order must be
    kept exactly (legacy ``task.*`` methods). ``refused``: why ``get_all`` cannot page
    this method, and what to call instead. ``doc``: the documentation page.
    ``get_method``: the matching ``.get`` method, which takes the ID in
    ``get_id_param``.
    """

    name: str
    filter_id: Optional[str] = "ID"
    record_id: Optional[str] = "ID"
    items_key: Optional[str] = None
    get_method: Optional[str] = None
    get_id_param: str = "ID"
    start_minus_one: bool = True
    filter_param: str = "filter"
    order_param: str = "order"
    sort_param: Optional[str] = None
    positional: bool = False
    record_key: Optional[Tuple[str, ...]] = None
    refused: Optional[str] = None
    doc: Optional[str] = None

    @property
    def id_cursor(self) -> bool:
        """True when ID ranges (``>ID`` cursor, ``order ID ASC``, ``start=-1``) work."""
        return (self.filter_id is not None and self.record_id not in (None, DETECT)
                and self.start_minus_one and not self.positional and self.refused is None)

    @property
    def id_filter(self) -> bool:
        """True when ``@ID`` (IN) filters select records by ID (the ``ids=`` strategy)."""
        return (self.filter_id is not None and self.record_id not in (None, DETECT)
                and not self.positional and self.refused is None)

    def records(self, result: Any, page: str = "") -> List[Any]:
        """The records of one page's ``result``; ``page`` names the page in errors.

        Raises :class:`~bitrix_threaded.errors.InvalidResponse` naming the keys found
        when ``result`` is not shaped as this method's pages are (null, a string, two
        lists, an object keyed by ID, no list where the records should be): reading it
        as an empty page would silently end an export early. An empty list (PHP's
        empty array) is an empty page.
        """
        key = self.items_key
        if key is None:
            if type(result) is list:
                return result
        elif key == DETECT:
            found = find_records(result)
            if found is not None:
                return found
        elif type(result) is dict:
            value = result.get(key)
            if type(value) is list:
                return value
        elif type(result) is list and not result:
            return result  # PHP writes an empty map as []
        raise _not_a_page(self.name, page, result, key)

    def path(self, label: str, position: int) -> str:
        """A batch reference to the ID of record ``position`` of command ``label``."""
        inner = f"[{self.items_key}]" if self.items_key not in (None, DETECT) else ""
        return f"$result[{label}]{inner}[{position}][{self.record_id}]"


def named_like_a_list(name: str) -> bool:
    """Whether ``name``'s last part starts or ends with ``list`` (``crm.deal.list``,
    ``task.elapseditem.getlist``): a page of such a method that is not understood is
    an error, where a ``.get`` or ``.fields`` answer is simply not a list."""
    last = name.lower().rsplit(".", 1)[-1]
    return last.startswith("list") or last.endswith("list")


def find_records(result: Any) -> Optional[List[Any]]:
    """Records of a page whose layout is unknown: the list itself or the only list
    inside; None when there is no such list (none, or two or more: which one?)."""
    if type(result) is list:
        return result
    if type(result) is dict:
        lists = [v for v in result.values() if type(v) is list]
        if len(lists) == 1:
            return lists[0]
    return None


def _not_a_page(method: str, page: str, result: Any, key: Optional[str]) -> Exception:
    # Only the shape is described: the values may echo a request URL, and with it a
    # secret, and nothing here knows the credentials to mask them.
    if isinstance(result, dict):
        names = [str(k)[:40] for k in list(result)[:10]]
        found = "an object with " + (", ".join(repr(k) for k in names) or "no keys")
    elif result is None:
        found = "null"
    elif isinstance(result, str):
        found = f"a str of {len(result)} characters"
    else:
        found = f"a {type(result).__name__}"
    where = f"key {key!r} of " if key not in (None, DETECT) else ""
    expected = f"a list of records in {where}its result" if where else "a list of records"
    return InvalidResponse(
        "INVALID_RESPONSE",
        f"{method}: page {page or '(unnamed)'} is not {expected}: found {found} "
        "(not a list page get_all() understands; use call() for it)",
        method=method)


# -- the families ------------------------------------------------------------------------
_CRM = "api-reference/crm"


def _legacy(entity: str, doc: str, **extra: Any) -> ListMethod:
    # Legacy CRM lists: plain result list, UPPER_CASE string IDs, filter/order by ID,
    # start=-1 honoured (settings/performance/huge-data.md).
    extra.setdefault("get_method", f"crm.{entity}.get")
    return ListMethod(f"crm.{entity}.list", doc=f"{_CRM}/{doc}", **extra)


def _engine(name: str, items: str, doc: str, **extra: Any) -> ListMethod:
    # Newer ("engine") lists: result.<items>[], camelCase keys, integer ``id``.
    return ListMethod(name, filter_id="id", record_id="id", items_key=items, doc=doc, **extra)


def _offset(name: str, doc: str, **extra: Any) -> ListMethod:
    # Documented with start paging only (no >ID filter with an ID order).
    return ListMethod(name, filter_id=None, doc=doc, **extra)


def _positional(name: str, doc: str) -> ListMethod:
    # Legacy task.* methods read (TASKID, ORDER, FILTER, SELECT, PARAMS) by position;
    # the docs make the order mandatory, so nothing is moved, only start is added.
    return ListMethod(name, filter_id=None, filter_param="FILTER", order_param="ORDER",
                      positional=True, doc=doc)


_FAMILIES: List[ListMethod] = [
    # CRM, legacy lists
    _legacy("deal", "deals/crm-deal-list.md"),
    _legacy("lead", "leads/crm-lead-list.md"),
    _legacy("contact", "contacts/crm-contact-list.md"),
    _legacy("company", "companies/crm-company-list.md"),
    _legacy("quote", "quote/crm-quote-list.md"),
    _legacy("invoice", "outdated/invoice/crm-invoice-list.md"),
    _legacy("activity", "timeline/activities/activity-base/crm-activity-list.md"),
    _legacy("product", "outdated/products/crm-product-list.md"),
    _legacy("productrow", "outdated/productrow-old/crm-productrow-list.md", get_method=None),
    _legacy("requisite", "requisites/universal/crm-requisite-list.md"),
    ListMethod("crm.requisite.bankdetail.list", get_method="crm.requisite.bankdetail.get",
               doc=f"{_CRM}/requisites/bank-detail/crm-requisite-bank-detail-list.md"),
    # Addresses have no ID of their own: a record is (TYPE_ID, ENTITY_TYPE_ID, ENTITY_ID).
    ListMethod("crm.address.list", filter_id=None, record_id=None,
               record_key=("TYPE_ID", "ENTITY_TYPE_ID", "ENTITY_ID"),
               doc=f"{_CRM}/requisites/addresses/crm-address-list.md"),
    _offset("crm.status.list", f"{_CRM}/status/crm-status-list.md"),
    _offset("crm.timeline.comment.list", f"{_CRM}/timeline/comments/crm-timeline-comment-list.md"),
    # Ten records a page: start = (N-1)*10, result is a plain list with lowercase id.
    _offset("crm.timeline.logmessage.list",
            f"{_CRM}/timeline/logmessage/crm-timeline-logmessage-list.md", record_id="id"),
    ListMethod("crm.timeline.bindings.list", filter_id=None, record_id=None,
               record_key=("OWNER_ID", "ENTITY_ID", "ENTITY_TYPE"),
               doc=f"{_CRM}/timeline/bindings/crm-timeline-bindings-list.md"),
    # CRM, universal (engine) lists
    _engine("crm.item.list", "items", f"{_CRM}/universal/crm-item-list.md",
            get_method="crm.item.get"),
    _engine("crm.type.list", "types",
            f"{_CRM}/universal/user-defined-object-types/crm-type-list.md"),
    _engine("crm.automatedsolution.list", "automatedSolutions",
            f"{_CRM}/automated-solution/crm-automated-solution-list.md"),
    ListMethod("crm.stagehistory.list", items_key="items",
               doc=f"{_CRM}/crm-stage-history-list.md"),
    ListMethod("crm.category.list", filter_id=None, record_id="id", items_key="categories",
               doc=f"{_CRM}/universal/category/crm-category-list.md"),
    ListMethod("crm.item.productrow.list", filter_id=None, record_id="id",
               items_key="productRows",
               doc=f"{_CRM}/universal/product-rows/crm-item-productrow-list.md"),
    # Tasks
    # tasks.task.get takes the ID as taskId (api-reference/tasks/tasks-task-get.md).
    ListMethod("tasks.task.list", filter_id="ID", record_id="id", items_key="tasks",
               get_method="tasks.task.get", get_id_param="taskId",
               doc="api-reference/tasks/tasks-task-list.md"),
    _positional("task.elapseditem.getlist",
                "api-reference/tasks/elapsed-item/task-elapsed-item-get-list.md"),
    _positional("task.commentitem.getlist",
                "api-reference/tasks/comment-item/task-comment-item-get-list.md"),
    _positional("task.checklistitem.getlist",
                "api-reference/tasks/checklist-item/task-checklist-item-get-list.md"),
    # Users and departments: FILTER with >ID and @ID, order as sort=ID + order=ASC.
    ListMethod("user.get", filter_param="FILTER", sort_param="sort", get_method="user.get",
               doc="api-reference/user/user-get.md"),
    ListMethod("department.get", filter_id=None, sort_param="sort",
               doc="api-reference/departments/department-get.md"),
    # Lists, disk, business processes: start paging only.
    ListMethod("lists.element.get", filter_id=None, filter_param="FILTER",
               order_param="ELEMENT_ORDER",
               doc="api-reference/lists/elements/lists-element-get.md"),
    _offset("disk.storage.getlist", "api-reference/disk/storage/disk-storage-get-list.md"),
    _offset("disk.folder.getchildren", "api-reference/disk/folder/disk-folder-get-children.md"),
    _offset("disk.storage.getchildren",
            "api-reference/disk/storage/disk-storage-get-children.md"),
    _offset("bizproc.task.list", "api-reference/bizproc/bizproc-task/bizproc-task-list.md"),
    _offset("bizproc.workflow.template.list",
            "api-reference/bizproc/template/bizproc-workflow-template-list.md"),
    # Workflow IDs are strings such as "66e412fdc9bd44.36306599".
    _offset("bizproc.workflow.instances", "api-reference/bizproc/bizproc-workflow-instances.md"),
    # Catalog and sale: result.<key>[], integer id, filter/order on id.
    _engine("catalog.product.list", "products",
            "api-reference/catalog/product/catalog-product-list.md"),
    _engine("catalog.section.list", "sections",
            "api-reference/catalog/section/catalog-section-list.md"),
    _engine("catalog.store.list", "stores", "api-reference/catalog/store/catalog-store-list.md"),
    _engine("catalog.price.list", "prices", "api-reference/catalog/price/catalog-price-list.md"),
    _engine("catalog.document.list", "documents",
            "api-reference/catalog/document/catalog-document-list.md"),
    _engine("catalog.document.element.list", "documentElements",
            "api-reference/catalog/document/document-element/catalog-document-element-list.md"),
    _engine("sale.order.list", "orders", "api-reference/sale/order/sale-order-list.md"),
    _engine("sale.basketitem.list", "basketItems",
            "api-reference/sale/basket-item/sale-basket-item-list.md"),
    _engine("sale.payment.list", "payments", "api-reference/sale/payment/sale-payment-list.md"),
    _engine("sale.shipment.list", "shipments",
            "api-reference/sale/shipment/sale-shipment-list.md"),
    # Workgroups: filter and order on ID, records carry a lowercase id.
    ListMethod("socialnetwork.api.workgroup.list", filter_id="ID", record_id="id",
               items_key="workgroups",
               doc="api-reference/sonet-group/socialnetwork-api-workgroup-list.md"),
    # Chats: their own navigation, not start pages.
    ListMethod("im.recent.list", filter_id=None, items_key="items",
               doc="api-reference/chats/im-recent-list.md",
               refused="it pages by OFFSET/LIMIT with hasMore, not by start; call "
                       "call('im.recent.list', {'OFFSET': n, 'LIMIT': 50}) and add LIMIT "
                       "to OFFSET while result['hasMore'] is true"),
    ListMethod("im.dialog.messages.get", filter_id=None, items_key="messages",
               doc="api-reference/chats/messages/im-dialog-messages-get.md",
               refused="it pages by a LAST_ID cursor, not by start; call "
                       "call('im.dialog.messages.get', {'DIALOG_ID': ..., 'LAST_ID': id}) "
                       "with the smallest id of the previous messages until none come"),
    ListMethod("im.search.user.list", filter_id=None, items_key=None,
               doc="api-reference/chats/search/im-search-user-list.md",
               refused="its result is an object keyed by user ID, paged by OFFSET/LIMIT; "
                       "call call('im.search.user.list', {'FIND': ..., 'OFFSET': n, "
                       "'LIMIT': 50}) and read result.values()"),
]

_KNOWN: Dict[str, ListMethod] = {m.name: m for m in _FAMILIES}


def list_method(name: str) -> ListMethod:
    """The description of ``name`` (case-insensitive); unknown methods page by offsets."""
    known = _KNOWN.get(name.lower())
    if known is not None:
        return known
    return ListMethod(name.lower(), filter_id=None, record_id=DETECT, items_key=DETECT)


def known_list_methods() -> List[str]:
    return sorted(_KNOWN)
