"""Argument checks done before any request: clear TypeError/ValueError, warnings for traps.

Types are checked with typeguard; its TypeCheckError is turned into a plain TypeError
naming the argument, so callers catch the exceptions they expect.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any, Mapping, Set, Tuple, Union, get_args, get_origin

from typeguard import TypeCheckError, check_type

_METHOD = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class BitrixWarning(UserWarning):
    """A call that will run, but probably not as the caller meant."""


def expect(name: str, value: Any, expected: Any) -> None:
    """Raise TypeError unless ``value`` matches the type hint ``expected``.

    ``bool`` is refused where a number is expected, although it is an ``int``:
    ``batch_size=True`` is a slip, not 1.
    """
    if isinstance(value, bool) and _numbers_only(expected):
        raise TypeError(f"{name} must be a number, got bool")
    try:
        check_type(value, expected)
    except TypeCheckError as exc:
        raise TypeError(f"{name}: {exc}") from None


def _numbers_only(hint: Any) -> bool:
    """True when ``hint`` admits numbers but names neither bool nor Any/object."""
    args = _flat(hint)
    return (bool(args & {int, float, complex})
            and not args & {bool, Any, object})


def _flat(hint: Any) -> Set[Any]:
    if get_origin(hint) is Union:
        found: Set[Any] = set()
        for arg in get_args(hint):
            found |= _flat(arg)
        return found
    return {hint}


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


def check_number(name: str, value: Any, *, integer: bool = False, low: float = 0.0,
                 inclusive: bool = False, optional: bool = False) -> None:
    """Raise TypeError/ValueError unless ``value`` is a finite number above ``low``.

    ``bool`` is refused although it is an ``int`` (``batch_size=True`` is a slip, not
    1); ``integer`` asks for an int; ``inclusive`` allows ``low`` itself; ``optional``
    allows None.
    """
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = "an int" if integer else "a number"
        if optional:
            wanted += " or None"
        raise TypeError(f"{name} must be {wanted}, got {type(value).__name__}")
    if not math.isfinite(value) or value < low or (value == low and not inclusive):
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def check_timeout(value: Any) -> Union[float, Tuple[float, float]]:
    """Seconds, or a ``(connect, read)`` pair of seconds, each finite and > 0.

    None is refused: without a timeout a silent server hangs the caller forever.
    """
    if value is None:
        raise TypeError("timeout must be seconds or a (connect, read) pair; None would "
                        "let a silent server hang the call forever")
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"timeout must be a (connect, read) pair, got {len(value)} values")
        check_number("timeout[0] (connect)", value[0])
        check_number("timeout[1] (read)", value[1])
        return (float(value[0]), float(value[1]))
    check_number("timeout", value)
    return float(value)


def check_ssl(value: Any) -> Union[bool, str]:
    """``True``/``False``, or the path of an existing CA bundle file or directory."""
    if isinstance(value, bool):
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError("ssl must be True, False or the path of a CA bundle, "
                        f"got {type(value).__name__}")
    if not value.strip():
        raise ValueError("ssl must be True, False or the path of a CA bundle; an empty "
                         "string would turn certificate checks off")
    if not os.path.exists(value):
        raise ValueError(f"ssl: no CA bundle at {value!r}")
    return value


def renamed_items(items: Any, item_list: Any) -> Any:
    """``call()``'s ``items``, also given by its former name ``item_list`` (deprecated).

    Warns on behalf of the caller of ``call()``; both names at once is a TypeError.
    """
    if item_list is None:
        return items
    if items is not None:
        raise TypeError("pass items or item_list (its former name), not both")
    warnings.warn("call(item_list=...) is deprecated; the argument is now 'items'",
                  DeprecationWarning, stacklevel=3)
    return item_list
