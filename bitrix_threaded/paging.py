"""Paging facts the engine's limiter and batches share (pure, thread-safe).

The server pages every list method by 50 records (``LIST_LIMIT``; b24-rest-docs
``api-reference/how-to-call-rest-api/list-methods-pecularities.md``): a
page at offset ``start`` makes the server skip, and count, that many rows,
so deeper pages cost more operating time.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["PAGE_SIZE", "class_depth", "cost_class"]

PAGE_SIZE = 50


def cost_class(params: object) -> int:
    """The operating-time cost class of a command with ``params``.

    List pages cost more the deeper their ``start`` (the server skips that many
    rows, and counts them all): class ``1 + floor(4 * log2(page + 1))``, so the
    pages of one class lie within a factor of 2 ** (1/4) in depth. Anything
    else is class 0.
    """
    if not isinstance(params, Mapping):
        return 0
    start = params.get("start")
    if isinstance(start, str) and start.isdigit():
        start = int(start)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        return 0
    return 1 + int(4 * math.log2(start // PAGE_SIZE + 1))


def class_depth(cost_class: int) -> float:
    """Pages before the deepest page of ``cost_class``, plus one (0 for class 0)."""
    return 0.0 if cost_class <= 0 else 2.0 ** (cost_class / 4.0)
