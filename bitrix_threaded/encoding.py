"""Parameters as the portal's PHP reads them: normalisation and query encoding.

A request's parameters travel two ways: as a JSON body (a single call, the
first page of a list) and as the query string of a ``batch`` command (every
other page). Both must mean the same to the portal, so both start from
:func:`normalize`, which fixes the scalar conversions once:

============================  ====================================
Python value                  sent as
============================  ====================================
``True`` / ``False``          ``1`` / ``0``
``None``                      ``""`` (empty string; see below)
``datetime``, ``date``        ``value.isoformat()``
``decimal.Decimal``           ``str(value)``
``tuple``                     list
``int``, ``float``, ``str``   unchanged
============================  ====================================

:func:`http_build_query` then encodes exactly as PHP's
``http_build_query($params)`` does with default arguments (RFC 1738:
space as ``+``), with one deliberate deviation: PHP drops ``null`` values,
while here ``None`` becomes ``key=`` so that a batch page asks for the same
thing as the JSON first page, where ``None`` is sent as ``""``. Floats are
printed as PHP's ``(string)`` cast prints them (14 significant digits):
``1.5`` -> ``1.5``, ``1.0`` -> ``1``, ``1e20`` -> ``1.0E+20``, ``0.1 + 0.2``
-> ``0.3``; pass a ``str`` or ``Decimal`` to send more digits exactly. NaN
and infinities are rejected.

All functions are pure and thread-safe. Unsupported values raise
``TypeError`` (or ``ValueError`` for NaN/infinity) naming the key path,
e.g. ``filter[>ID]``.
"""
from __future__ import annotations

import datetime
import decimal
import functools
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

__all__ = [
    "encode_command",
    "http_build_query",
    "normalize",
    "php_float",
    "php_pairs",
    "validate_method",
]

_METHOD_RE = re.compile(r"[A-Za-z0-9_.]+")
# PHP's default float precision for string conversion (ini "precision").
_PHP_PRECISION = 14


def validate_method(method: object) -> str:
    """Return ``method`` if it is a plausible REST method name.

    Raises ``TypeError`` for a non-string and ``ValueError`` for an empty
    name or one with characters outside ``[A-Za-z0-9_.]``.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, not {type(method).__name__}")
    if not _METHOD_RE.fullmatch(method):
        raise ValueError(f"invalid REST method name: {method!r}")
    return method


def _path(prefix: str | None, key: str) -> str:
    # None marks the top level, where a key has no brackets.
    return key if prefix is None else f"{prefix}[{key}]"


def _key(key: object, prefix: str | None) -> str:
    # bool is an int subclass, but True/False as keys is almost surely a bug.
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key))
    where = "" if prefix is None else f" under {prefix!r}"
    raise TypeError(f"parameter keys must be str or int, got {type(key).__name__}{where}")


def _check_float(value: float, path: str | None) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"parameter {path!r} is {value!r}, which the portal cannot receive")
    return float(value)


def _normalize_value(value: Any, path: str | None) -> Any:
    # Plain str, int, dict and list first: every command of every page goes through here.
    kind = type(value)
    if kind is str or kind is int:
        return value
    if kind is dict:
        return _normalize_mapping(value, path)
    if kind is list:
        return _normalize_list(value, path)
    if isinstance(value, bool):
        return 1 if value else 0
    if value is None:
        return ""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _check_float(value, path)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"parameter {path!r} is {value!r}, which the portal cannot receive")
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return _normalize_mapping(value, path)
    if isinstance(value, (list, tuple)):
        return _normalize_list(value, path)
    raise TypeError(
        f"parameter {path!r} has unsupported type {type(value).__name__}; "
        "use str, int, float, bool, None, Decimal, date/datetime, dict, list or tuple"
    )


def _normalize_mapping(value: Mapping[Any, Any], path: str | None) -> dict[str, Any]:
    result = {}
    for raw_key, item in value.items():
        key = _key(raw_key, path)
        result[key] = _normalize_value(item, _path(path, key))
    return result


def _normalize_list(value: Any, path: str | None) -> list[Any]:
    return [_normalize_value(v, _path(path, str(i))) for i, v in enumerate(value)]


def normalize(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return a JSON-ready copy of ``params`` with the scalar conversions applied.

    Nested mappings become dicts with str keys (int keys are converted),
    tuples become lists. Raises ``TypeError`` for a non-mapping, keys that
    are neither str nor int, or values of unsupported types; ``ValueError``
    for NaN or infinite numbers.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, not {type(params).__name__}")
    normalized: dict[str, Any] = _normalize_value(params, None)
    return normalized


def php_float(value: float) -> str:
    """Format a finite float as PHP's ``(string)`` cast does (precision 14)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    mantissa, exponent = f"{abs(value):.{_PHP_PRECISION - 1}e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0")
    point = int(exponent) + 1  # digits before the decimal point
    if point < -3 or point > _PHP_PRECISION:
        rest = digits[1:] or "0"
        exp = point - 1
        return f"{sign}{digits[0]}.{rest}E{'-' if exp < 0 else '+'}{abs(exp)}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if len(digits) <= point:
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return php_float(value)
    return str(value)


def _flatten(value: Any, path: str | None, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, _path(path, k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, _path(path, str(i)), out)
    elif path is not None:
        out.append((path, _scalar_text(value)))


def php_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the flat ``(key, value)`` pairs PHP would receive, unencoded.

    ``{"filter": {">ID": 5}, "select": ["ID"]}`` gives
    ``[("filter[>ID]", "5"), ("select[0]", "ID")]``. Empty lists and dicts
    produce no pairs. Errors as in :func:`normalize`.
    """
    out: list[tuple[str, str]] = []
    _flatten(normalize(params), None, out)
    return out


@functools.lru_cache(maxsize=4096)
def _urlencode(text: str) -> str:
    # PHP's urlencode leaves only A-Za-z0-9 and "_.-" alone; Python's
    # quote_plus also keeps "~", which PHP encodes. Cached: pages of one export
    # repeat the same keys and most of the values.
    return quote_plus(text, safe="", encoding="utf-8").replace("~", "%7E")


def http_build_query(params: Mapping[str, Any]) -> str:
    """Encode ``params`` exactly as PHP's ``http_build_query($params)``.

    See the module docstring for the conversions and the one deviation
    (``None`` -> ``key=``). Errors as in :func:`normalize`.
    """
    return "&".join(f"{_urlencode(k)}={_urlencode(v)}" for k, v in php_pairs(params))


def encode_command(method: str, params: Mapping[str, Any] | None) -> str:
    """Return a batch command string: ``"method?query"``, or ``"method"`` alone.

    Raises ``TypeError``/``ValueError`` for a bad method name or bad params.
    """
    validate_method(method)
    if params is None:
        return method
    query = http_build_query(params)
    return f"{method}?{query}" if query else method
