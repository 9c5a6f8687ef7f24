"""Parameter parsing and filter/order/select evaluation for the fake portal.

Values arrive either typed (JSON body) or as strings (PHP form parsing), so
every helper here accepts both: ``5`` and ``"5"``, a list and a dict of
values. Pure functions; thread-safe.

Filter semantics, as the portal applies them:

- key prefixes ``>=`` ``>`` ``<=`` ``<`` ``=`` (default), ``!``/``!=`` (not
  equal), ``@`` (IN), ``!@`` (NOT IN), ``%`` (substring, case-insensitive),
  ``=%``/``%=`` (LIKE pattern with ``%``/``_``), ``!%``, ``!=%``/``!%=``
  (their negations); a list value without a list operator means IN.
- numbers are compared as numbers when both sides are numeric (``"10"``
  included), otherwise as strings (case-sensitive, except LIKE).
- Y/N fields: ``True``, ``1``, ``"1"``, ``"Y"`` mean Y; ``False``, ``0``,
  ``"0"``, ``"N"``, ``""`` mean N; any other string (``"True"``) equals
  neither, so it matches nothing (and ``!`` matches everything).
- ``None``, and ``""`` on other fields, matches empty or null values.
- a null field never satisfies ``>``/``<``/``=``/LIKE; negations match it.
- a field the entity does not have makes its condition false, so a plain
  filter with a typo matches nothing (an empty result rather than an
  unfiltered export); ``CHECK_PERMISSIONS`` is accepted and ignored.
- numeric keys holding arrays are subfilters; ``LOGIC: "OR"`` turns a
  level into "any of" (crm.item / tasks style).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .schemas import Schema

__all__ = [
    "Condition", "as_list", "compile_condition", "get_param", "parse_filter", "parse_order",
    "php_intval", "resolve_select", "to_number",
]

Predicate = Callable[[Dict[str, Any]], bool]

# Longest prefixes first, so "!=%" is not read as "!" + "=%FIELD".
_PREFIXES = ("!=%", "!%=", "!@", "!=", "!%", ">=", "<=", "=%", "%=", ">", "<", "=", "!", "@", "%")
_NEGATED = {"!": "=", "!=": "=", "!@": "@", "!%": "%", "!=%": "=%", "!%=": "=%"}
_IGNORED_KEYS = frozenset({"CHECK_PERMISSIONS"})
_NUMERIC_RE = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*\Z")
_INT_PREFIX_RE = re.compile(r"\s*([+-]?\d+)")
_MINUS_INFINITY = float("-inf")


def get_param(params: Dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` present, matched case-insensitively."""
    lowered: Dict[str, str] = {}
    for key in params:
        if isinstance(key, str):
            lowered.setdefault(key.lower(), key)
    for name in names:
        found = lowered.get(name.lower())
        if found is not None:
            return params[found]
    return None


def php_intval(value: Any) -> int:
    """PHP ``intval``: leading integer of a string, 0 when there is none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e18 else 0
    if isinstance(value, str):
        match = _INT_PREFIX_RE.match(value)
        return int(match.group(1)) if match else 0
    return 0


def to_number(value: Any) -> Optional[float]:
    """The numeric value of an int, float or PHP-numeric string, else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _NUMERIC_RE.match(value):
        return float(value)
    return None


def as_list(value: Any) -> List[Any]:
    """A list from a list, tuple, dict of values (PHP array) or single value."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def _flag(value: Any) -> Any:
    """Y/N normalisation of a filter or record value; anything else as is."""
    if value is True:
        return "Y"
    if value is False:
        return "N"
    if isinstance(value, (int, float)):
        return "Y" if value == 1 else "N" if value == 0 else str(value)
    if isinstance(value, str):
        upper = value.upper()
        if upper in ("Y", "1"):
            return "Y"
        if upper in ("N", "0", ""):
            return "N"
    return value


@dataclass(frozen=True)
class Condition:
    """One filter entry: ``field`` is the internal name, or None if unknown.

    Groups have ``op`` "and"/"or", ``field`` "" and a list of conditions as value.
    """

    key: str
    op: str
    field: Optional[str]
    value: Any


def parse_filter(raw: Any, schema: Schema) -> Optional[List[Condition]]:
    """The filter as conditions (all must hold); None when it is not an array.

    Numeric keys holding arrays are subfilters and ``LOGIC: "OR"`` makes a
    level match when any of its entries does (crm.item, tasks); numeric keys
    holding scalars (``filter[]=`` for an empty array) are ignored.
    """
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        raw = {str(i): v for i, v in enumerate(raw)}
    if not isinstance(raw, dict):
        return None
    conditions = []
    any_of = False
    for key, value in raw.items():
        key = str(key)
        if key.upper() == "LOGIC":
            any_of = isinstance(value, str) and value.strip().upper() == "OR"
            continue
        if key.isdigit():
            if isinstance(value, (dict, list)) and value:
                conditions.append(Condition(key, "and", "", parse_filter(value, schema)))
            continue
        op = next((p for p in _PREFIXES if key.startswith(p)), "")
        name = key[len(op):]
        if name.upper() in _IGNORED_KEYS:
            continue
        conditions.append(Condition(key, op or "=", schema.resolve(name), value))
    if any_of:
        return [Condition("LOGIC", "or", "", conditions)]
    return conditions


class _Operand:
    """A filter value prepared once: its text and, if numeric, its number."""

    __slots__ = ("text", "number")

    def __init__(self, value: Any):
        if value is None:
            self.text = None
            self.number = None
        elif isinstance(value, bool):
            self.text = "1" if value else ""
            self.number = float(value)
        elif isinstance(value, (int, float)):
            self.text = str(value)
            self.number = float(value)
        else:
            self.text = value if isinstance(value, str) else str(value)
            self.number = to_number(self.text)


def _record_number(value: Any) -> Optional[float]:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _equals(value: Any, operand: _Operand) -> bool:
    if operand.text is None or operand.text == "":
        return value is None or value == ""
    if value is None:
        return False
    if operand.number is not None:
        number = _record_number(value)
        if number is not None:
            return number == operand.number
    return (value if isinstance(value, str) else str(value)) == operand.text


def _compare(value: Any, operand: _Operand, op: str) -> bool:
    if value is None or operand.text is None:
        return False
    left: Any
    right: Any
    number = _record_number(value) if operand.number is not None else None
    if number is not None:
        left, right = number, operand.number
    else:
        left, right = (value if isinstance(value, str) else str(value)), operand.text
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def _like_regex(pattern: str) -> "re.Pattern[str]":
    parts = []
    for char in pattern:
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _positive(op: str, value: Any, is_flag: bool) -> Callable[[Any], bool]:
    """A test of one (non-list) record value for a non-negated operator."""
    if op in ("%", "=%"):
        if op == "%":
            needles = [str(v).lower() for v in as_list(value) if v is not None]
            return lambda v: v is not None and any(n in str(v).lower() for n in needles)
        regexes = [_like_regex(str(v)) for v in as_list(value) if v is not None]
        return lambda v: v is not None and any(r.fullmatch(str(v)) for r in regexes)
    if is_flag:
        if isinstance(value, (list, tuple, dict)) or op == "@":
            wanted = {_flag(v) for v in as_list(value)}
            return lambda v: _flag(v) in wanted
        target = _flag(value)
        if op == "=":
            return lambda v: _flag(v) == target
        operand = _Operand(target)
        return lambda v: _compare(_flag(v), operand, op)
    if op in ("=", "@") and (op == "@" or isinstance(value, (list, tuple, dict))):
        operands = [_Operand(v) for v in as_list(value)]
        return lambda v: any(_equals(v, o) for o in operands)
    operand = _Operand(value)
    if op == "=":
        return lambda v: _equals(v, operand)
    return lambda v: _compare(v, operand, op)


def compile_condition(condition: Condition, schema: Schema) -> Predicate:
    """A predicate over internal records for one condition."""
    field = condition.field
    if field is None:
        return lambda record: False
    op = condition.op
    if op in ("and", "or"):
        parts = [compile_condition(c, schema) for c in condition.value]
        if op == "or":
            return lambda record: any(p(record) for p in parts)
        return lambda record: all(p(record) for p in parts)
    negated = op in _NEGATED
    base = _NEGATED.get(op, op)
    if base == "%=":
        base = "=%"
    test = _positive(base, condition.value, field in schema.flags)

    def holds(value: Any) -> bool:
        # Multi-valued fields (UF_DEPARTMENT) match if any element does.
        if isinstance(value, list):
            return any(test(v) for v in value)
        return test(value)

    if negated:
        return lambda record: not holds(record.get(field))
    return lambda record: holds(record.get(field))


def parse_order(raw: Any, schema: Schema) -> Tuple[List[Tuple[str, bool]], List[str]]:
    """``(resolved, unknown)``: ``[(field, descending)]`` and unresolved names."""
    if not isinstance(raw, dict):
        return [], []
    order, unknown = [], []
    for key, direction in raw.items():
        field = schema.resolve(str(key))
        if field is None:
            unknown.append(str(key))
            continue
        descending = isinstance(direction, str) and direction.strip().upper() == "DESC"
        order.append((field, descending))
    return order, unknown


def sort_key(field: str, numeric: bool) -> Callable[[Dict[str, Any]], Any]:
    """Sort key for one field: nulls first, numbers numerically ("9" < "10").

    Returns plain floats or strings (no tuples) to keep large sorts small;
    null sorts with the empty string, which is close enough to MySQL.
    """
    if numeric:
        def key(record: Dict[str, Any]) -> Any:
            number = _record_number(record.get(field))
            return _MINUS_INFINITY if number is None else number
    else:
        def key(record: Dict[str, Any]) -> Any:
            value = record.get(field)
            return "" if value is None else value if isinstance(value, str) else str(value)
    return key


def resolve_select(raw: Any, schema: Schema, *, uf_wildcards: Sequence[str] = ("UF_*",),
                   default_all: bool = True) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """``(fields, multi)``: standard fields in schema order, multi-fields named.

    Absent/empty select means every standard field (``["*", "UF_*"]``);
    ``*`` adds the plain fields, a UF wildcard the user fields, names add
    themselves; unknown names are ignored and ID is always included.
    """
    names = [str(v) for v in as_list(raw) if v is not None and v != ""] if raw else []
    if not names and default_all:
        return schema.standard, ()
    wanted = {"ID"}
    wildcards = {w.lower() for w in uf_wildcards}
    for name in names:
        if name == "*":
            wanted.update(schema.plain)
        elif name.lower() in wildcards:
            wanted.update(schema.user_fields)
        else:
            field = schema.resolve(name)
            if field is not None:
                wanted.add(field)
    fields = tuple(f for f in schema.standard if f in wanted)
    multi = tuple(f for f in schema.multi if f in wanted)
    return fields, multi
