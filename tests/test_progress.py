"""Progress bars: drawn on a terminal, silent in files and pipes, forced by the environment."""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
from typing import List

import pytest

from bitrix_threaded import Bitrix
from bitrix_threaded.progress import PROGRESS_ENV, forced_choice


@pytest.fixture(autouse=True)
def no_forced_choice(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)


class LogFile:
    """Standard error redirected to a file, as in a cron job or a service log.

    Redirected inside the test body: pytest's own capture replaces ``sys.stderr``
    when the test starts, after fixtures have run.
    """

    def __init__(self, path) -> None:
        self._path = path
        self._previous = sys.stderr
        self.stream = open(path, "w", encoding="utf-8")
        sys.stderr = self.stream

    def output(self) -> str:
        if sys.stderr is self.stream:
            sys.stderr = self._previous
            self.stream.close()
        with open(self._path, encoding="utf-8") as handle:
            return handle.read()


class Terminal:
    """Standard error on a pseudo-terminal; :meth:`output` is what it received."""

    def __init__(self, pty) -> None:
        self._master, slave = pty.openpty()
        # A new pseudo-terminal is 0 columns wide, and tqdm fits its bar to that.
        fcntl = pytest.importorskip("fcntl")
        termios = pytest.importorskip("termios")
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        self._received: List[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.stream = io.TextIOWrapper(io.FileIO(slave, "w", closefd=True), encoding="utf-8",
                                       line_buffering=True, write_through=True)
        self._previous = sys.stderr
        sys.stderr = self.stream

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self._received.append(chunk)

    def output(self) -> str:
        if sys.stderr is self.stream:
            sys.stderr = self._previous
            self.stream.close()  # the reader sees the end: the whole output is in
            self._reader.join(timeout=5)
            os.close(self._master)
        return b"".join(self._received).decode("utf-8", "replace")


def on_terminal() -> Terminal:
    return Terminal(pytest.importorskip("pty"))


def _export(portal) -> None:
    with Bitrix(portal.webhook) as bx:  # verbose=True, fast_bitrix24's default
        assert len(bx.get_all("crm.deal.list")) == portal.count("deal")
        bx.get_by_ID("crm.deal.get", portal.ids("deal")[:60])


def test_nothing_is_written_when_stderr_is_a_file(fake_portal, tmp_path):
    log = LogFile(tmp_path / "stderr.log")
    try:
        _export(fake_portal)
    finally:
        text = log.output()
    assert text == ""


def test_a_bar_is_drawn_on_a_terminal(fake_portal):
    terminal = on_terminal()
    assert terminal.stream.isatty()
    try:
        _export(fake_portal)
    finally:
        text = terminal.output()
    assert "crm.deal.list" in text and "rec" in text
    assert "crm.deal.get" in text


def test_verbose_false_draws_nothing_even_on_a_terminal(fake_portal, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    terminal = on_terminal()
    try:
        with Bitrix(fake_portal.webhook, verbose=False) as bx:
            bx.get_all("crm.deal.list")
    finally:
        text = terminal.output()
    assert text == ""


def test_the_environment_forces_bars_into_a_file(fake_portal, tmp_path, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    log = LogFile(tmp_path / "stderr.log")
    try:
        _export(fake_portal)
    finally:
        text = log.output()
    assert "crm.deal.list" in text


def test_the_environment_turns_bars_off_on_a_terminal(fake_portal, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "0")
    terminal = on_terminal()
    try:
        _export(fake_portal)
    finally:
        text = terminal.output()
    assert text == ""


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("ON", True), ("0", False), ("no", False),
    ("", None), ("maybe", None),
])
def test_forced_choice_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(PROGRESS_ENV, value)
    assert forced_choice() is expected
