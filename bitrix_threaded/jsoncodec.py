"""Decoding the portal's JSON replies, fast when the ``fast`` extra is installed.

``pip install bitrix_threaded[fast]`` adds msgspec, whose decoder builds the same
Python objects as :func:`json.loads` faster (a 1.6 MB batch reply of 2,500 deals:
about 3.6 ms against 6.5 ms on a 2-core benchmark machine). Without it the standard library
decodes.

Results are identical either way. msgspec is used only where it gives exactly what
``json.loads`` gives, and anything it refuses (``NaN``, ``Infinity``, numbers out of
the float range, lone surrogate escapes, a byte-order mark, malformed text) is decoded
again by ``json.loads``, so the same bytes give the same objects, or the same
``ValueError``, with or without the extra. msgspec was chosen over orjson because it
keeps integers wider than 64 bits exact, as ``json.loads`` does; orjson turns them into
floats.

Encoding stays with the standard library: the fast encoders spell float exponents
differently (``1e16`` for ``1e+16``), and request bodies are small.

``BITRIX_THREADED_JSON=stdlib`` in the environment (read at import) turns the fast path
off. Thread-safe: the decoder holds no state between calls.

Large texts (:data:`GATED_SIZE` bytes and more) are decoded one at a time in the
process. Either decoder holds the GIL for a whole text (5-10 ms for a batch reply of
2,500 deals), so decodes never ran side by side anyway; but when forty replies arrived
together, forty threads queued for the GIL with a decode each, and any other thread
of the program (an asyncio event loop, a GUI, a heartbeat) waited behind them: the
worst event-loop lag during a 100,000-deal export was about 100 ms. Waiting on the
gate instead, a decoder leaves the GIL queue, so others wait for one decode at most
(median worst lag about 40 ms in ``perf/async_lag.py``), and the total work is the
same. Interpreters without a GIL (free-threaded builds) are not gated.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Callable, Optional, Union

__all__ = ["BACKEND", "GATED_SIZE", "decode"]

Buffer = Union[bytes, bytearray, memoryview, str]


def _fast_decoder() -> Optional[Callable[[Buffer], Any]]:
    if os.environ.get("BITRIX_THREADED_JSON", "").strip().lower() == "stdlib":
        return None
    try:
        import msgspec
    except ImportError:
        return None
    decoder = msgspec.json.Decoder()
    refused = msgspec.DecodeError  # ValidationError (out-of-range numbers) is a subclass

    def decode_fast(data: Buffer) -> Any:
        try:
            return decoder.decode(data)
        except refused:
            # The standard library decides: it accepts what msgspec refuses (NaN,
            # lone surrogates, a BOM...) and raises its own error for the rest.
            return _stdlib(data)

    return decode_fast


def _stdlib(data: Buffer) -> Any:
    if isinstance(data, memoryview):
        data = data.tobytes()
    return json.loads(data)


_FAST = _fast_decoder()

#: ``"msgspec"`` when the fast decoder is in use, else ``"json"``.
BACKEND = "msgspec" if _FAST is not None else "json"

_DECODE: Callable[[Buffer], Any] = _FAST if _FAST is not None else _stdlib

#: Texts at least this long are decoded one at a time (see the module's docstring).
GATED_SIZE = 64 * 1024
_GATE: Optional[threading.Lock] = (
    threading.Lock() if getattr(sys, "_is_gil_enabled", lambda: True)() else None)


def _after_fork() -> None:
    # A child forked while another thread was decoding would inherit the gate held by
    # a thread it does not have, and wait for it forever: it starts with a free one.
    global _GATE
    if _GATE is not None:
        _GATE = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def decode(data: Buffer) -> Any:
    """Decode JSON bytes or text into Python objects; ``ValueError`` when it is not JSON."""
    if _GATE is None or len(data) < GATED_SIZE:
        return _DECODE(data)
    with _GATE:
        return _DECODE(data)
