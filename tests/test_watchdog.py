"""The deadline watchdog: cuts armed sockets off past their deadline, never disarmed ones."""

from __future__ import annotations

import socket

from bitrix_threaded.watchdog import Watchdog


def test_a_socket_past_its_deadline_is_shut_down():
    now = [100.0]
    dog = Watchdog(monotonic=lambda: now[0])
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(10)
        dog.arm(99.0, a)
        # The blocked read returns as soon as the watchdog cuts the socket.
        assert a.recv(1) == b""


def test_a_disarmed_socket_is_left_alone():
    now = [100.0]
    dog = Watchdog(monotonic=lambda: now[0])
    a, b = socket.socketpair()
    with a, b:
        entry = dog.arm(500.0, a)
        dog.disarm(entry)
        now[0] = 1000.0
        # Another, later entry wakes the thread; the disarmed one must not fire.
        c, d = socket.socketpair()
        with c, d:
            c.settimeout(10)
            dog.arm(999.0, c)
            assert c.recv(1) == b""
        b.sendall(b"x")
        a.settimeout(10)
        assert a.recv(1) == b"x"


def test_disarmed_entries_do_not_pile_up():
    dog = Watchdog(monotonic=lambda: 0.0)
    a, b = socket.socketpair()
    with a, b:
        for _ in range(10_000):
            dog.disarm(dog.arm(1e9, a))
        assert len(dog._heap) <= 4097
