"""Awaiting from blocking code: run an awaitable on a private event loop.

The engine is plain threads, yet some callers hand it coroutine functions (an
``async def token_func``, as fast_bitrix24 requires). :func:`resolve` runs such an
awaitable to completion on a new event loop in a helper thread, so it works the
same whether or not the calling thread already runs a loop (Jupyter, an ASGI
worker, the async facade's own threads), where ``asyncio.run`` would refuse.

Because the loop is private, the awaitable must not use objects bound to another
loop (an ``aiohttp.ClientSession`` created elsewhere, say); it may create its own.

Thread safety: every call gets its own thread and loop.
"""
from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Awaitable, Dict

__all__ = ["resolve"]


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def resolve(value: Any) -> Any:
    """``value`` itself, or, when it is awaitable, what awaiting it returns (or raises)."""
    if not inspect.isawaitable(value):
        return value
    outcome: Dict[str, Any] = {}

    def main() -> None:
        try:
            outcome["value"] = asyncio.run(_await(value))
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    helper = threading.Thread(target=main, name="bitrix_threaded-await", daemon=True)
    helper.start()
    helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
