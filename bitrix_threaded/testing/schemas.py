"""Field schemas of the fake portal's entities and the crm.item/task shapes.

Records are kept in one internal shape per entity: UPPER_CASE field names
and string values (``None`` for nulls), as legacy CRM methods return them.
User records are the exception: ``ACTIVE`` is a bool and ``UF_DEPARTMENT``
a list of ints, as ``user.get`` returns them. ``crm.item.*`` and
``tasks.task.*`` shapes are derived from the internal shape by
:class:`ItemShape` and :func:`to_task`.

Pure and thread-safe (module tables are read-only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

__all__ = ["Field", "ItemShape", "Schema", "SCHEMAS", "to_task"]


@dataclass(frozen=True)
class Field:
    """One field as ``crm.*.fields`` describes it, plus its crm.item name."""

    name: str
    type: str
    title: str
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    dynamic: bool = False
    camel: str = ""
    extra: Optional[Dict[str, Any]] = None


_NUMERIC_TYPES = frozenset({"integer", "double", "user", "crm_company", "crm_contact",
                            "crm_lead", "crm_category", "group"})
_FLAG_TYPES = frozenset({"char", "boolean"})
_ITEM_NAMES = {
    "ASSIGNED_BY_ID": "assignedById", "CREATED_BY_ID": "createdBy", "MODIFY_BY_ID": "updatedBy",
    "DATE_CREATE": "createdTime", "DATE_MODIFY": "updatedTime", "MOVED_BY_ID": "movedBy",
}


def _camel(name: str) -> str:
    if name.startswith("UF_CRM_"):
        return "ufCrm_" + name[7:]
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


class Schema:
    """The fields of one entity, with the lookups the list engine needs.

    ``plain`` = what ``select: ["*"]`` returns (not UF, not multiple),
    ``user_fields`` = ``UF_*``, ``multi`` = PHONE/EMAIL style fields.
    ``resolve(name)`` maps an UPPER or camelCase field name, in any case, to
    the internal name (or None).
    """

    def __init__(self, fields: Tuple[Field, ...]):
        self.fields = fields
        self.by_name = {f.name: f for f in fields}
        self.plain = tuple(f.name for f in fields if not f.dynamic and not f.multiple)
        self.user_fields = tuple(f.name for f in fields if f.dynamic)
        self.multi = tuple(f.name for f in fields if f.multiple)
        self.standard = self.plain + self.user_fields
        self.numeric = frozenset(f.name for f in fields if f.type in _NUMERIC_TYPES)
        self.flags = frozenset(f.name for f in fields if f.type in _FLAG_TYPES)
        self.camel = {f.name: f.camel or _ITEM_NAMES.get(f.name) or _camel(f.name)
                      for f in fields}
        self._lookup = {}
        for f in fields:
            self._lookup[f.name.lower()] = f.name
        for f in fields:
            self._lookup.setdefault(self.camel[f.name].lower(), f.name)

    def resolve(self, name: str) -> Optional[str]:
        return self._lookup.get(name.lower()) if isinstance(name, str) else None

    def describe(self) -> Dict[str, Dict[str, Any]]:
        """The ``crm.*.fields`` result."""
        out = {}
        for f in self.fields:
            entry = {"type": f.type, "isRequired": f.required, "isReadOnly": f.read_only,
                     "isImmutable": f.immutable, "isMultiple": f.multiple,
                     "isDynamic": f.dynamic, "title": f.title}
            if f.extra:
                entry.update(f.extra)
            out[f.name] = entry
        return out


def _f(name: str, ftype: str, title: str, flags: str = "", **extra: Any) -> Field:
    # flags: R required, O read-only, I immutable, M multiple, D dynamic (UF)
    return Field(name, ftype, title, "R" in flags, "O" in flags, "I" in flags, "M" in flags,
                 "D" in flags, extra=extra or None)


def _uf(name: str, ftype: str, label: str) -> Field:
    return _f(name, ftype, name, "D", listLabel=label, formLabel=label, filterLabel=label,
              settings={"DEFAULT_VALUE": ""})


def _status(name: str, title: str, status_type: str, flags: str = "") -> Field:
    return _f(name, "crm_status", title, flags, statusType=status_type)


_OWNERS = (
    _f("ASSIGNED_BY_ID", "user", "Responsible"),
    _f("CREATED_BY_ID", "user", "Created by", "O"),
    _f("MODIFY_BY_ID", "user", "Modified by", "O"),
    _f("DATE_CREATE", "datetime", "Created", "O"),
    _f("DATE_MODIFY", "datetime", "Modified", "O"),
)
_PERSON = (
    _status("HONORIFIC", "Salutation", "HONORIFIC"),
    _f("NAME", "string", "First name"),
    _f("SECOND_NAME", "string", "Second name"),
    _f("LAST_NAME", "string", "Last name"),
    _f("BIRTHDATE", "date", "Date of birth"),
)
_MULTI = (
    _f("PHONE", "crm_multifield", "Phone", "M"),
    _f("EMAIL", "crm_multifield", "E-mail", "M"),
)

SCHEMAS: Dict[str, Schema] = {
    "deal": Schema((
        _f("ID", "integer", "ID", "O"),
        _f("TITLE", "string", "Name"),
        _status("TYPE_ID", "Type", "DEAL_TYPE"),
        _f("CATEGORY_ID", "crm_category", "Pipeline", "I"),
        _status("STAGE_ID", "Stage", "DEAL_STAGE"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("OPPORTUNITY", "double", "Amount"),
        _f("IS_MANUAL_OPPORTUNITY", "char", "Manual amount"),
        _f("TAX_VALUE", "double", "Tax rate"),
        _f("COMPANY_ID", "crm_company", "Company", settings={"parentEntityTypeId": 4}),
        _f("CONTACT_ID", "crm_contact", "Contact", isDeprecated=True),
        _f("BEGINDATE", "date", "Start date"),
        _f("CLOSEDATE", "date", "End date"),
        _f("OPENED", "char", "Available to everyone"),
        _f("CLOSED", "char", "Closed"),
        _f("COMMENTS", "string", "Comment"),
        *_OWNERS,
        _status("SOURCE_ID", "Source", "SOURCE"),
        _uf("UF_CRM_1594289616952", "string", "District"),
        _uf("UF_CRM_1594289659496", "money", "Our estimate"),
        _uf("UF_CRM_1605533620303", "string", "Contract number"),
    )),
    "lead": Schema((
        _f("ID", "integer", "ID", "O"),
        _f("TITLE", "string", "Lead name", "R"),
        *_PERSON,
        _f("COMPANY_TITLE", "string", "Company name"),
        _status("SOURCE_ID", "Source", "SOURCE"),
        _status("STATUS_ID", "Status", "STATUS"),
        _f("STATUS_SEMANTIC_ID", "string", "Status group", "O"),
        _f("POST", "string", "Position"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("OPPORTUNITY", "double", "Amount"),
        _f("IS_MANUAL_OPPORTUNITY", "char", "Manual amount"),
        _f("OPENED", "char", "Available to everyone"),
        _f("COMMENTS", "string", "Comment"),
        _f("HAS_PHONE", "char", "Has phone", "O"),
        _f("HAS_EMAIL", "char", "Has e-mail", "O"),
        *_OWNERS,
        _f("COMPANY_ID", "crm_company", "Company", settings={"parentEntityTypeId": 4}),
        _f("CONTACT_ID", "crm_contact", "Contact", isDeprecated=True),
        _uf("UF_CRM_1594289813884", "string", "Agent"),
        _uf("UF_CRM_1594289783260", "money", "Benefit"),
        *_MULTI,
    )),
    "contact": Schema((
        _f("ID", "integer", "ID", "O"),
        *_PERSON,
        _status("TYPE_ID", "Contact type", "CONTACT_TYPE"),
        _status("SOURCE_ID", "Source", "SOURCE"),
        _f("POST", "string", "Position"),
        _f("COMMENTS", "string", "Comment"),
        _f("OPENED", "char", "Available to everyone"),
        _f("EXPORT", "char", "Included in export"),
        _f("HAS_PHONE", "char", "Has phone", "O"),
        _f("HAS_EMAIL", "char", "Has e-mail", "O"),
        *_OWNERS,
        _f("COMPANY_ID", "crm_company", "Company", settings={"parentEntityTypeId": 4}),
        _f("LEAD_ID", "crm_lead", "Lead", "O"),
        _uf("UF_CRM_1623415999295", "string", "Loyalty card"),
        _uf("UF_CRM_1624183704770", "date", "First purchase"),
        *_MULTI,
    )),
    "company": Schema((
        _f("ID", "integer", "ID", "O"),
        _f("TITLE", "string", "Company name", "R"),
        _status("COMPANY_TYPE", "Company type", "COMPANY_TYPE"),
        _status("INDUSTRY", "Industry", "INDUSTRY"),
        _status("EMPLOYEES", "Employees", "EMPLOYEES"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("REVENUE", "double", "Annual revenue"),
        _f("COMMENTS", "string", "Comment"),
        _f("OPENED", "char", "Available to everyone"),
        _f("IS_MY_COMPANY", "char", "My company"),
        _f("HAS_PHONE", "char", "Has phone", "O"),
        _f("HAS_EMAIL", "char", "Has e-mail", "O"),
        *_OWNERS,
        _uf("UF_CRM_1625140116421", "string", "District"),
        *_MULTI,
    )),
    "task": Schema((
        _f("ID", "integer", "ID", "O"),
        _f("PARENT_ID", "integer", "Parent task"),
        _f("TITLE", "string", "Title", "R"),
        _f("DESCRIPTION", "string", "Description"),
        _f("PRIORITY", "integer", "Priority"),
        _f("STATUS", "integer", "Status"),
        _f("MULTITASK", "char", "Multitask"),
        _f("GROUP_ID", "group", "Project"),
        _f("STAGE_ID", "integer", "Stage"),
        _f("RESPONSIBLE_ID", "user", "Responsible"),
        _f("CREATED_BY", "user", "Created by"),
        _f("CREATED_DATE", "datetime", "Created"),
        _f("CHANGED_BY", "user", "Changed by"),
        _f("CHANGED_DATE", "datetime", "Changed"),
        _f("CLOSED_BY", "user", "Closed by"),
        _f("CLOSED_DATE", "datetime", "Closed"),
        _f("DEADLINE", "datetime", "Deadline"),
        _f("TIME_ESTIMATE", "integer", "Time estimate"),
        _f("ALLOW_CHANGE_DEADLINE", "char", "Responsible may change deadline"),
        _f("TASK_CONTROL", "char", "Approve on completion"),
        _f("MARK", "string", "Mark"),
    )),
    "user": Schema((
        _f("ID", "integer", "ID", "O"),
        _f("XML_ID", "string", "External code"),
        _f("ACTIVE", "boolean", "Active"),
        _f("NAME", "string", "First name"),
        _f("LAST_NAME", "string", "Last name"),
        _f("SECOND_NAME", "string", "Second name"),
        _f("EMAIL", "string", "E-Mail"),
        _f("LAST_LOGIN", "datetime", "Last login"),
        _f("DATE_REGISTER", "datetime", "Registered"),
        _f("IS_ONLINE", "char", "Online"),
        _f("TIME_ZONE", "string", "Time zone"),
        _f("PERSONAL_GENDER", "string", "Gender"),
        _f("PERSONAL_BIRTHDAY", "date", "Birthday"),
        _f("WORK_POSITION", "string", "Position"),
        _f("UF_DEPARTMENT", "integer", "Departments", "M"),
        _f("USER_TYPE", "string", "User type"),
    )),
}


def _item_value(value: Any, kind: int) -> Any:
    # crm.item speaks ints and numbers where the legacy API speaks strings;
    # an empty numeric field is null there.
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if kind == 1 or number.is_integer():
        return int(number)
    return number


class ItemShape:
    """Converts internal records of ``names`` to the crm.item shape.

    camelCase keys, int IDs and references, numbers for amounts, null for
    empty numeric fields. Immutable; thread-safe.
    """

    def __init__(self, schema: Schema, names: Tuple[str, ...]):
        self.pairs = tuple((name, schema.camel[name]) for name in names)
        types = {name: schema.by_name[name].type for name in names}
        self.ints = tuple(camel for name, camel in self.pairs
                          if types[name] in _NUMERIC_TYPES and types[name] != "double")
        self.floats = tuple(camel for name, camel in self.pairs if types[name] == "double")

    def convert(self, record: Dict[str, Any]) -> Dict[str, Any]:
        out = {camel: record.get(name) for name, camel in self.pairs}
        for camel in self.ints:
            value = out[camel]
            if value is not None:
                try:
                    out[camel] = int(value)
                except (TypeError, ValueError):
                    out[camel] = _item_value(value, 1)
        for camel in self.floats:
            value = out[camel]
            if value is not None:
                out[camel] = _item_value(value, 2)
        return out


def to_task(record: Dict[str, Any], names: Tuple[str, ...], schema: Schema) -> Dict[str, Any]:
    """A record in the tasks.task shape: camelCase keys, string values."""
    camel = schema.camel
    return {camel[name]: record.get(name) for name in names}
