"""What the client knows about list methods: cursor keys, where records sit, what they allow.

:func:`list_method` returns a :class:`ListMethod` for any method name. Known families
come from the table below; an unknown method gets a conservative description (no ID
cursor, records found where they are) so it is paged by offsets, which every list
method supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class ListMethod:
    """How to page one list method.

    ``filter_id``: the key filters and ``order`` use for the record ID (``ID`` or
    ``id``); ``None`` when the method cannot filter and order by ID (offset pages only).
    ``record_id``: the key of the ID inside returned records. ``items_key``: where the
    records sit inside ``result`` (``None``: ``result`` is the list itself; ``"?"``:
    unknown, found on the first page). ``get_method``: the matching ``.get`` method;
    ``get_id_param``: the parameter that method takes the ID in.
    ``start_minus_one``: whether ``start=-1`` (no count) is honoured.
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

    @property
    def id_cursor(self) -> bool:
        """True when ID ranges (``>ID`` cursor, ``order ID ASC``, ``start=-1``) work."""
        return self.filter_id is not None and self.record_id is not None and self.start_minus_one

    def records(self, result: Any, page: str = "") -> List[Any]:
        """The records of one page's ``result``; ``page`` names the page in errors.

        Raises :class:`~bitrix_threaded.errors.InvalidResponse` when ``result`` is not
        a recognisable list of records (a string, null, an object with no list where
        the records should be): reading it as an empty page would silently end an
        export early. An empty list (PHP's empty array) is an empty page.
        """
        key = self.items_key
        if type(result) is list:
            return result
        if key is None or key == "?":
            found = find_records(result)
        else:
            found = result.get(key) if isinstance(result, dict) else None
        if isinstance(found, list):
            return found
        raise _not_a_page(self.name, page, result, key)

    def path(self, label: str, position: int) -> str:
        """A batch reference to the ID of record ``position`` of command ``label``."""
        inner = f"[{self.items_key}]" if self.items_key not in (None, "?") else ""
        return f"$result[{label}]{inner}[{position}][{self.record_id}]"


def find_records(result: Any) -> Optional[List[Any]]:
    """Records of a page whose layout is unknown: the list itself or the only list
    inside; None when there is no such list."""
    if isinstance(result, list):
        return result
    if isinstance(result, dict):
        lists = [v for v in result.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def _not_a_page(method: str, page: str, result: Any, key: Optional[str]) -> Exception:
    from .errors import InvalidResponse

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
    where = f"key {key!r} of " if key not in (None, "?") else ""
    expected = f"a list of records in {where}its result" if where else "a list of records"
    return InvalidResponse(
        "INVALID_RESPONSE",
        f"{method}: page {page or '(unnamed)'} is not {expected}: found {found}",
        method=method)


def _legacy(entity: str) -> ListMethod:
    return ListMethod(f"crm.{entity}.list", get_method=f"crm.{entity}.get")


_KNOWN: Dict[str, ListMethod] = {
    m.name: m
    for m in [
        *(_legacy(e) for e in (
            "deal", "lead", "contact", "company", "quote", "invoice", "activity",
            "product", "productrow", "requisite", "address", "status",
        )),
        ListMethod("crm.item.list", filter_id="id", record_id="id", items_key="items",
                   get_method="crm.item.get"),
        # tasks.task.get takes taskId (bitrix-tools/b24-rest-docs
        # api-reference/tasks/tasks-task-get.md).
        ListMethod("tasks.task.list", filter_id="ID", record_id="id", items_key="tasks",
                   get_method="tasks.task.get", get_id_param="taskId"),
        ListMethod("crm.stagehistory.list", items_key="items"),
        ListMethod("user.get", filter_id=None, get_method="user.get"),
        ListMethod("lists.element.get", filter_id=None),
        ListMethod("socialnetwork.api.workgroup.list", filter_id=None,
                   items_key="workgroups"),
        ListMethod("catalog.document.element.list", filter_id=None,
                   items_key="documentElements"),
        ListMethod("crm.category.list", filter_id=None, items_key="categories"),
        ListMethod("task.elapseditem.getlist", filter_id=None),
        ListMethod("crm.item.productrow.list", filter_id=None, items_key="productRows"),
    ]
}
# crm.productrow.list and crm.status.list have no usable ID cursor.
_KNOWN["crm.productrow.list"] = ListMethod("crm.productrow.list", filter_id=None)
_KNOWN["crm.status.list"] = ListMethod("crm.status.list", filter_id=None)


def list_method(name: str) -> ListMethod:
    """The description of ``name`` (case-insensitive); unknown methods page by offsets."""
    known = _KNOWN.get(name.lower())
    if known is not None:
        return known
    return ListMethod(name.lower(), filter_id=None, record_id=None, items_key="?")


def known_list_methods() -> List[str]:
    return sorted(_KNOWN)
