"""Argument checks shared by the limiter modules (clear TypeError/ValueError)."""
from __future__ import annotations

import math

from .clock import Clock


def number(value: object, name: str, *, minimum: float | None = 0.0,
           strict: bool = False) -> float:
    """``value`` as a finite float, at least (or, ``strict``, above) ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {minimum}, got {value!r}")
    return value


def integer(value: object, name: str, *, minimum: int) -> int:
    """``value`` as an int of at least ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def clock(value: object) -> Clock:
    """``value`` if it provides ``monotonic()``, ``time()`` and ``sleep()``."""
    if not all(callable(getattr(value, attr, None)) for attr in ("monotonic", "time", "sleep")):
        raise TypeError("clock must provide monotonic(), time() and sleep()")
    return value  # type: ignore[return-value]
