"""Reading a reply body under a deadline and a cap on its decoded size.

:func:`read_body` reads the raw (still encoded) bytes a piece at a time, checking the
clock between pieces, and inflates gzip/deflate itself with a bounded output per step,
so neither a slow drip nor a compression bomb (200 KB of gzip that inflates to 200 MB)
can hold the caller or its memory past the limits. It raises :class:`BodyError`
subclasses; the transport turns them into the library's errors.

Stateless and thread-safe; each call reads one response.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, Callable, List, Mapping, Optional

__all__ = ["BodyCorrupt", "BodyError", "BodyPastDeadline", "BodyTooLarge", "read_body"]

# Bytes asked of the socket per read: large enough that a 2 MB batch reply takes a few
# dozen reads, small enough that the deadline is checked often on a slow reply.
READ_SIZE = 256 * 1024
# The most bytes inflated from one piece of compressed input at a time.
_INFLATE_STEP = 1024 * 1024
_INFLATED = ("gzip", "x-gzip", "deflate")


class BodyError(Exception):
    """The body could not be read within the limits."""


class BodyTooLarge(BodyError):
    """Past the size cap; ``str()`` says how (declared, received or inflated)."""


class BodyPastDeadline(BodyError):
    """The deadline passed before the body was complete."""


class BodyCorrupt(BodyError):
    """The body's content encoding is corrupt, or one that was not asked for."""


class _Inflater:
    """Decodes one ``Content-Encoding`` (gzip or deflate) into size-capped pieces."""

    def __init__(self, encoding: str):
        self._gzip = encoding in ("gzip", "x-gzip")
        self._zlib = self._fresh()
        self._started = False
        self.size = 0  # bytes inflated so far

    def _fresh(self) -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes, out: List[bytes], limit: int) -> bool:
        """Inflate ``data`` onto ``out``; False as soon as the total passes ``limit``."""
        while data:
            room = min(limit - self.size + 1, _INFLATE_STEP)
            try:
                piece = self._zlib.decompress(data, room)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                # "deflate" is sent both zlib-wrapped and raw; try raw.
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                continue
            self._started = True
            out.append(piece)
            self.size += len(piece)
            if self.size > limit:
                return False
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                # gzip allows several members one after another.
                data = self._zlib.unused_data if self._gzip else b""
                if data:
                    self._zlib = self._fresh()
        return True

    def finish(self, out: List[bytes], limit: int) -> bool:
        tail = self._zlib.flush()
        out.append(tail)
        self.size += len(tail)
        return self.size <= limit


def read_body(
    read: Callable[[int], bytes],
    headers: Mapping[str, str],
    *,
    limit: int,
    deadline_at: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> bytes:
    """The decoded body: ``read(n)`` returns up to ``n`` raw bytes, ``b""`` at the end.

    ``headers`` are the reply's (``Content-Length``, ``Content-Encoding``); ``limit``
    caps the decoded size, and the raw size too; ``deadline_at`` is a ``monotonic``
    time. ``read`` should return as soon as some bytes arrive (``read1``), so that
    the deadline is checked between pieces. Raises :class:`BodyTooLarge`,
    :class:`BodyPastDeadline` or :class:`BodyCorrupt`.
    """
    length = headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"declares {int(length)} bytes")
    encoding = headers.get("Content-Encoding", "").strip().lower()
    inflater: Optional[_Inflater] = None
    if encoding in _INFLATED:
        inflater = _Inflater(encoding)
    elif encoding not in ("", "identity"):
        raise BodyCorrupt(f"uses the content encoding {encoding[:40]!r}, which was not "
                          "asked for")
    # The pieces (as received, or as inflated) are kept and joined once at the end:
    # one copy into a buffer of the final size, where growing a bytearray piece by
    # piece copies what it holds again each time it outgrows its allocation (about
    # three times over for a 1.5 MB body).
    pieces: List[bytes] = []
    received = 0
    try:
        while True:
            if monotonic() > deadline_at:
                raise BodyPastDeadline()
            chunk = read(READ_SIZE)
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge(f"is over {limit} bytes")
            if inflater is None:
                pieces.append(chunk)
            elif not inflater.feed(chunk, pieces, limit):
                raise BodyTooLarge(f"inflates to over {limit} bytes")
        if inflater is not None and not inflater.finish(pieces, limit):
            raise BodyTooLarge(f"inflates to over {limit} bytes")
    except zlib.error:
        raise BodyCorrupt(f"has a corrupt {encoding} body") from None
    if monotonic() > deadline_at:
        raise BodyPastDeadline()
    return b"".join(pieces)
