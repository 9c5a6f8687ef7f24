"""read_body on plain bytes: size caps, inflating, corrupt encodings, the deadline."""

from __future__ import annotations

import io
import zlib

import pytest

from bitrix_threaded.bodies import (
    BodyCorrupt,
    BodyPastDeadline,
    BodyTooLarge,
    read_body,
)


def packed(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def reader(data: bytes, piece: int = 1000):
    stream = io.BytesIO(data)
    return lambda size: stream.read(min(size, piece))


def read(data: bytes, headers=None, limit=10_000, **kwargs):
    return bytes(read_body(reader(data), headers or {}, limit=limit,
                           deadline_at=kwargs.pop("deadline_at", 1e18), **kwargs))


BODY = b'{"result": [' + b",".join(b'{"ID": "%d"}' % i for i in range(300)) + b"]}"


@pytest.mark.parametrize("encoding,wbits", [("gzip", 31), ("x-gzip", 31), ("deflate", 15),
                                            ("deflate", -15)])
def test_encoded_bodies_are_inflated(encoding, wbits):
    assert read(packed(BODY, wbits), {"Content-Encoding": encoding}) == BODY


def test_plain_and_identity_bodies_pass_through():
    assert read(BODY) == BODY
    assert read(BODY, {"Content-Encoding": "identity"}) == BODY


def test_gzip_members_one_after_another_are_all_read():
    assert read(packed(b"ab", 31) + packed(b"cd", 31), {"Content-Encoding": "gzip"}) == b"abcd"


def test_a_declared_length_past_the_cap_is_refused_before_reading():
    def never(size):
        raise AssertionError("nothing may be read")

    with pytest.raises(BodyTooLarge, match="declares 10001 bytes"):
        read_body(never, {"Content-Length": "10001"}, limit=10_000, deadline_at=1e18)


def test_raw_bytes_past_the_cap_stop_the_read():
    with pytest.raises(BodyTooLarge, match="is over 10000 bytes"):
        read(b" " * 20_000)


def test_inflating_stops_at_the_cap():
    bomb = packed(b" " * 50_000_000, 31)
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge, match="inflates to over"):
        read(bomb, {"Content-Encoding": "gzip"}, limit=1_000_000)


@pytest.mark.parametrize("encoding,data", [("gzip", b"\x1f\x8bnot really"),
                                           ("deflate", b"\x00\x01\x02 nothing"),
                                           ("br", b"{}"), ("gzip, br", b"{}")])
def test_corrupt_or_unasked_encodings(encoding, data):
    with pytest.raises(BodyCorrupt):
        read(data, {"Content-Encoding": encoding})


def test_the_deadline_is_checked_between_pieces():
    now = [0.0]

    def slow(size):
        now[0] += 1.0
        return b"x"

    with pytest.raises(BodyPastDeadline):
        read_body(slow, {}, limit=10_000, deadline_at=5.0, monotonic=lambda: now[0])
    assert now[0] == 6.0  # no read starts once the deadline has passed
