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
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional, Union

__all__ = ["BACKEND", "decode"]

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

#: Decode JSON bytes or text into Python objects; raises ``ValueError`` when it is not JSON.
decode: Callable[[Buffer], Any] = _FAST if _FAST is not None else _stdlib
