"""Envelope pieces of the Bitrix24 wire protocol: the ``time`` block and error bodies."""
from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Dict, Optional

__all__ = ["error_body", "time_block", "ERRORS"]

# code -> (HTTP status, description) of the errors the portal itself raises: the leaky
# bucket (503), the operating-time limit (429), an unknown method (404) and bad
# credentials (401), each with the description the real portal sends.
ERRORS = {
    "QUERY_LIMIT_EXCEEDED": (503, "Too many requests"),
    "OPERATION_TIME_LIMIT": (429, "Method is blocked due to operation time limit."),
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "INVALID_CREDENTIALS": (401, "Invalid request credentials"),
    # The fault injector's transient failure; a 5xx the client should retry.
    "INTERNAL_SERVER_ERROR": (503, "Internal server error"),
}


def error_body(code: str, description: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    """``{"error": code, "error_description": ...}`` plus any extra keys."""
    if description is None:
        description = ERRORS[code][1]
    body: Dict[str, Any] = {"error": code, "error_description": description}
    body.update(extra)
    return body


@functools.lru_cache(maxsize=256)
def _php_date(second: int) -> str:
    # PHP date('c'): local time, whole seconds, numeric UTC offset.
    return datetime.fromtimestamp(second).astimezone().isoformat(timespec="seconds")


def time_block(start: float, finish: float, processing: float, operating: float = 0.0,
               reset_at: Optional[float] = None) -> Dict[str, Any]:
    """The ``time`` block of a reply, keys in the server's order."""
    block: Dict[str, Any] = {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": _php_date(int(start)),
        "date_finish": _php_date(int(finish)),
    }
    if reset_at is not None:
        block["operating_reset_at"] = reset_at
    block["operating"] = operating
    return block
