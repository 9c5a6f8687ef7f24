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


def test_hasten_cuts_an_armed_socket_earlier_and_never_a_disarmed_one():
    now = [100.0]
    dog = Watchdog(monotonic=lambda: now[0], background=False)
    hurried, b1 = pair()
    spared, b2 = pair()
    with hurried, b1, spared, b2:
        entry = dog.arm(1000.0, hurried)
        done = dog.arm(1000.0, spared)
        dog.disarm(done)
        dog.hasten(entry, 110.0)
        dog.hasten(done, 110.0)              # disarmed: nothing is pushed
        dog.hasten(entry, 500.0)             # later than its earliest: the earliest holds
        assert dog.sweep() == 10.0
        now[0] = 111.0
        assert dog.sweep() == math.inf       # cut once; its later deadlines just leave
        assert hurried.recv(1) == b""
        b2.sendall(b"x")
        assert spared.recv(1) == b"x"
