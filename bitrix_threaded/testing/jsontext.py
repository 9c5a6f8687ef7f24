"""JSON output of the fake portal, with pre-written text for pages of records.

Encoding is most of what a full batch reply costs: 2,500 generated deals
take several times longer to encode with :mod:`json` than to generate. A
store can instead hand back a page as :class:`JsonRows`, a list of records
that also carries its own JSON text, written straight from the generator's
tables (:data:`~.records.JSON_WRITERS`). :func:`encode_body` then splices
that text into the reply and encodes only the envelope around it.

The output is byte for byte what :data:`ENCODER` gives for the same body
(compact separators, ASCII with ``\\u`` escapes, as PHP's ``json_encode``).
"""
from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any, Callable, Dict, List, Optional

__all__ = ["ENCODER", "JsonRows", "encode_body"]

ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)

# What the encoder writes for the placeholder string "\x00".
_MARK = "\x00"
_MARK_TEXT = '"\\u0000"'


class JsonRows(Sequence[Any]):
    """A read-only sequence of records that carries ``json``, their JSON text.

    ``ids`` are the records' IDs in order and ``texts`` their JSON texts.
    A record is built by ``make(id)`` the first time it is read, unless
    ``rows`` (position -> record) already holds it. Compares equal to a list
    or tuple of the same records; slices are plain lists.
    """

    __slots__ = ("json", "_ids", "_make", "_rows")

    def __init__(self, ids: List[int], texts: List[str], make: Callable[[int], Any],
                 rows: Optional[Dict[int, Any]] = None):
        if len(texts) != len(ids):
            raise ValueError("one JSON text per record expected: %d IDs, %d texts"
                             % (len(ids), len(texts)))
        self.json = "[" + ",".join(texts) + "]"
        self._ids = ids
        self._make = make
        self._rows: Dict[int, Any] = dict(rows) if rows else {}

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._ids)))]
        position = operator.index(index)
        if position < 0:
            position += len(self._ids)
        if not 0 <= position < len(self._ids):
            raise IndexError("JsonRows index out of range")
        row = self._rows.get(position)
        if row is None:
            row = self._rows[position] = self._make(self._ids[position])
        return row

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, JsonRows)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "JsonRows(%r)" % (list(self),)


class _Text:
    __slots__ = ("json",)

    def __init__(self, text: str):
        self.json = text


def _swap(node: Any) -> Any:
    """``node`` with every JsonRows replaced by a _Text (containers copied as needed)."""
    kind = type(node)
    if kind is JsonRows:
        return _Text(node.json)
    if kind is dict:
        items: Any = node.items()
    elif kind is list:
        items = enumerate(node)
    else:
        return node
    copy: Any = None
    for key, value in items:
        if type(value) in _CONTAINERS:
            new = _swap(value)
            if new is not value:
                if copy is None:
                    copy = kind(node)
                copy[key] = new
    return node if copy is None else copy


_CONTAINERS = (dict, list, JsonRows)


def _as_list(value: Any) -> Any:
    if type(value) is JsonRows:
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# For bodies that hold JsonRows but cannot take spliced text.
_PLAIN = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=_as_list)


def encode_body(body: Any) -> str:
    """``body`` as compact ASCII JSON text, JsonRows included (as lists of their records).

    The same text as ``ENCODER.encode`` gives with plain lists in their place.
    """
    swapped = _swap(body)
    if swapped is body:
        return ENCODER.encode(body)
    texts: List[str] = []

    def placeholder(value: Any) -> str:
        if type(value) is _Text:
            texts.append(value.json)
            return _MARK
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=placeholder)
    pieces = encoder.encode(swapped).split(_MARK_TEXT)
    if len(pieces) != len(texts) + 1:
        # The body itself holds the string "\x00" somewhere: no splicing.
        return _PLAIN.encode(body)
    out = [pieces[0]]
    for text, piece in zip(texts, pieces[1:]):
        out.append(text)
        out.append(piece)
    return "".join(out)
