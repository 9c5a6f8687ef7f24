"""Argument checks done before any request: clear TypeError/ValueError, warnings for traps.

Types are checked with typeguard; its TypeCheckError is turned into a plain TypeError
naming the argument, so callers catch the exceptions they expect.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Mapping

from typeguard import TypeCheckError, check_type

_METHOD = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class BitrixWarning(UserWarning):
    """A call that will run, but probably not as the caller meant."""


def expect(name: str, value: Any, expected: Any) -> None:
    """Raise TypeError unless ``value`` matches the type hint ``expected``."""
    try:
        check_type(value, expected)
    except TypeCheckError as exc:
        raise TypeError(f"{name}: {exc}") from None


def check_method(method: Any) -> str:
    """A method name like ``crm.deal.list``; returns it stripped."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    name = method.strip()
    if name.endswith(".json"):
        name = name[: -len(".json")]
    if not _METHOD.match(name):
        raise ValueError(f"not a Bitrix24 method name: {method!r}")
    if name.lower() == "batch":
        raise ValueError("use call_batch() for the batch method")
    return name


# Clause name (lower-cased) -> (accepted types, description for the message).
_CLAUSES = {
    "select": ((list, tuple), "a list of field names"),
    "filter": ((Mapping,), "a dict"),
    # A string for methods that take sort=<field> with order=ASC|DESC (user.get).
    "order": ((Mapping, str), "a dict like {'ID': 'ASC'}, or 'ASC'/'DESC' with 'sort'"),
    "fields": ((Mapping,), "a dict"),
    "params": ((Mapping,), "a dict"),
}


def check_params(params: Any, *, where: str = "params") -> Mapping[str, Any]:
    """Validate a method's parameters; returns them. Warns about known traps."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(params).__name__}")
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} keys must be str, got {key!r}")
        lower = key.lower()
        clause = _CLAUSES.get(lower)
        if clause is not None and not isinstance(value, clause[0]):
            raise TypeError(f"{where}[{key!r}] must be {clause[1]}, got {type(value).__name__}")
        if lower == "select":
            for field in value:
                if not isinstance(field, str):
                    raise TypeError(f"{where}[{key!r}] must hold str field names, got {field!r}")
        elif lower == "start":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{where}[{key!r}] must be an int, got {type(value).__name__}")
            if value < -1:
                raise ValueError(f"{where}[{key!r}] must be -1 or >= 0, got {value}")
        elif lower == "order" and isinstance(value, str):
            if value.upper() not in ("ASC", "DESC"):
                raise ValueError(f"{where}[{key!r}] must be 'ASC' or 'DESC', got {value!r}")
            continue
        elif lower in ("filter", "order"):
            for sub in value:
                if not isinstance(sub, str):
                    raise TypeError(f"{where}[{key!r}] keys must be str, got {sub!r}")
        if lower == "filter":
            for sub, sub_value in value.items():
                if sub_value is None:
                    warnings.warn(
                        f"{where}['filter'][{sub!r}] is None: it is sent as an empty string, "
                        "which matches records where the field is empty",
                        BitrixWarning,
                        stacklevel=4,
                    )
        elif lower == "order":
            for sub, direction in value.items():
                if not isinstance(direction, str) or direction.upper() not in ("ASC", "DESC"):
                    raise ValueError(
                        f"{where}['order'][{sub!r}] must be 'ASC' or 'DESC', got {direction!r}"
                    )
        elif lower == "limit":
            warnings.warn(
                f"{where}['limit'] is ignored by Bitrix24 list methods (pages are always 50 "
                "records); use get_all()/iter_all() or 'start'",
                BitrixWarning,
                stacklevel=4,
            )
    return params
