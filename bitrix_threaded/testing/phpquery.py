"""PHP ``parse_str``-compatible parsing of query strings and form bodies.

Bitrix24 is a PHP application: every query string, form body and batch
command reaches its methods through PHP's ``parse_str``. This module
reproduces that parser so the fake portal sees exactly what a real portal
would:

- pairs are split on ``&``; a pair without ``=`` has the value ``""``;
  keys and values are URL-decoded (``+`` is a space);
- ``filter[>ID]=5`` nests, ``select[]=ID`` appends, ``a[x]junk=1`` ignores
  what follows the last ``]``, an unclosed ``a[b=1`` becomes the plain key
  ``a_b``; spaces and dots in the top-level name become ``_``;
- later pairs overwrite earlier ones, keeping the first position;
- canonical decimal keys (``"7"``, not ``"07"``) are integers, as in PHP.

Results are plain Python values: every leaf is a string, every PHP array is
a ``list`` when its keys are exactly ``0..n-1`` in order (so ``key[]=`` and
``key[0]=..&key[1]=..`` both give lists) and a ``dict`` with string keys
otherwise. The top level is always a ``dict``.

All functions are pure and thread-safe.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import unquote_plus

__all__ = ["parse_pairs", "parse_query", "php_array_json", "php_bool", "php_key", "php_string"]

_CANONICAL_INT = re.compile(r"-?[1-9][0-9]*|0")
_PHP_INT_MAX = 2 ** 63 - 1


class _PhpArray(Dict[Any, Any]):
    """An ordered PHP array under construction (keys are ``int`` or ``str``)."""

    __slots__ = ("next_index",)

    def __init__(self) -> None:
        super().__init__()
        self.next_index = 0

    def put(self, key: Union[int, str, None], value: Any) -> None:
        if key is None:
            key = self.next_index
        if isinstance(key, int) and key >= self.next_index:
            self.next_index = key + 1
        self[key] = value


def php_key(key: str) -> Union[int, str]:
    """Return ``key`` as PHP stores it in an array: canonical integers become ``int``."""
    if _CANONICAL_INT.fullmatch(key):
        number = int(key)
        if -_PHP_INT_MAX - 1 <= number <= _PHP_INT_MAX:
            return number
    return key


def _split_key(raw: str) -> Optional[Tuple[str, List[Optional[str]]]]:
    """Split a decoded key into (name, [index | None, ...]) as PHP does; None if ignored."""
    var = raw.lstrip(" ")
    bracket = var.find("[")
    if bracket == -1:
        name = var.replace(" ", "_").replace(".", "_")
        return (name, []) if name else None
    name = var[:bracket].replace(" ", "_").replace(".", "_")
    if not name:
        return None
    indexes: List[Optional[str]] = []
    pos = bracket
    length = len(var)
    while True:
        start = pos + 1
        if start < length and var[start] == "]":
            close = start
            indexes.append(None)
        else:
            close = var.find("]", start)
            if close == -1:
                if not indexes:
                    # PHP gives up on the brackets and keeps one flat name.
                    tail = var[start:]
                    for char in " .[":
                        tail = tail.replace(char, "_")
                    name = name + "_" + tail
                break
            indexes.append(var[start:close])
        following = close + 1
        if following < length and var[following] == "[":
            pos = following
        else:
            break
    return name, indexes


def _assign(root: _PhpArray, raw_key: str, value: Any) -> None:
    parts = _split_key(raw_key)
    if parts is None:
        return
    name, indexes = parts
    target = root
    key: Optional[str] = name
    for index in indexes:
        if key is None:
            child = _PhpArray()
            target.put(None, child)
        else:
            normalized = php_key(key)
            found = target.get(normalized)
            if isinstance(found, _PhpArray):
                child = found
            else:
                child = _PhpArray()
                target.put(normalized, child)
        target = child
        key = index
    target.put(None if key is None else php_key(key), value)


def php_array_json(array: Dict[Any, Any]) -> Union[List[Any], Dict[Any, Any]]:
    """Shape a PHP array as ``json_encode`` would: a list when keys are ``0..n-1`` in order.

    Keys may be ``int`` or ``str`` (``"3"`` counts as 3); an empty array is ``[]``.
    Values are returned as they are (not converted recursively).
    """
    expected = 0
    for key in array:
        if isinstance(key, str):
            key = php_key(key)
        if key != expected:
            return {str(k): v for k, v in array.items()}
        expected += 1
    return list(array.values())


def _finish(value: Any) -> Any:
    if isinstance(value, _PhpArray):
        return php_array_json({k: _finish(v) for k, v in value.items()})
    return value


def parse_query(query: Union[str, bytes]) -> Dict[str, Any]:
    """Parse ``query`` (a query string or form body) exactly like PHP's ``parse_str``.

    Raises TypeError if ``query`` is not ``str`` or ``bytes``. Never fails on
    malformed input: PHP does not either.
    """
    if isinstance(query, bytes):
        query = query.decode("utf-8", errors="replace")
    elif not isinstance(query, str):
        raise TypeError(f"query must be str or bytes, not {type(query).__name__}")
    pairs = []
    for pair in query.split("&"):
        if pair:
            raw_key, _, raw_value = pair.partition("=")
            pairs.append((unquote_plus(raw_key, errors="replace"),
                          unquote_plus(raw_value, errors="replace")))
    return parse_pairs(pairs)


def parse_pairs(pairs: Iterable[Tuple[str, Any]]) -> Dict[str, Any]:
    """Build parameters from already-decoded ``(key, value)`` pairs with PHP's key rules.

    Used for multipart form fields; :func:`parse_query` is this plus URL decoding.
    """
    root = _PhpArray()
    for key, value in pairs:
        _assign(root, key, value)
    return {str(k): _finish(v) for k, v in root.items()}


def php_bool(value: Any) -> bool:
    """PHP's ``(bool)`` cast: ``"0"``, ``""``, ``0``, ``0.0``, empty arrays and null are false.

    Note that the string ``"false"`` is true, as in PHP.
    """
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (list, dict, tuple)):
        return len(value) > 0
    return bool(value)


def php_string(value: Any) -> Optional[str]:
    """PHP's string form of a numeric value; the string itself; None for anything else.

    Mirrors how batch references are spliced into a larger string: numbers are
    converted, strings kept, arrays/booleans/null are not splice-able.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value).replace("e+", "E+").replace("e-", "E-")
    return None
