"""The deadline watchdog: cuts armed sockets off past their deadline, never disarmed ones."""

from __future__ import annotations

import math
import socket

from bitrix_threaded.watchdog import Watchdog


def pair():
    a, b = socket.socketpair()
    a.settimeout(10)
    return a, b


def test_sweep_cuts_only_armed_sockets_past_their_deadline():
    now = [100.0]
    dog = Watchdog(monotonic=lambda: now[0], background=False)
    late, b1 = pair()
    early, b2 = pair()
    spared, b3 = pair()
    with late, b1, early, b2, spared, b3:
        dog.arm(150.0, late)
        dog.arm(120.0, early)
        dog.disarm(dog.arm(110.0, spared))
        assert dog.sweep() == 20.0
        now[0] = 130.0
        assert dog.sweep() == 20.0
        assert early.recv(1) == b""          # cut: the blocked read returns at once
        b3.sendall(b"x")
        assert spared.recv(1) == b"x"        # disarmed in time: untouched
        now[0] = 200.0
        assert dog.sweep() == math.inf
        assert late.recv(1) == b""


def test_the_background_thread_cuts_a_socket_past_its_deadline():
    now = [100.0]
    dog = Watchdog(monotonic=lambda: now[0])
    waiting, b = pair()
    with waiting, b:
        dog.disarm(dog.arm(1e9, waiting))   # starts the thread, which sleeps
        dog.arm(99.0, waiting)              # earlier: the thread is woken
        assert waiting.recv(1) == b""


def test_disarmed_entries_do_not_pile_up():
    dog = Watchdog(monotonic=lambda: 0.0, background=False)
    a, b = socket.socketpair()
    with a, b:
        for _ in range(10_000):
            dog.disarm(dog.arm(1e9, a))
        assert len(dog._heap) <= 4097
