"""Suite-wide guard: no secret in any log line or client error, in any test.

Every ``Bitrix`` created during a test registers its credentials; every
``BitrixError`` created is remembered; every record logged under
``bitrix_threaded`` or ``urllib3`` is captured at DEBUG. After the test, none of them may
contain a secret those credentials held (webhook codes, OAuth tokens, client
secrets, including rotated-away ones), in any of the forms it takes on the wire.
"""

from __future__ import annotations

import functools
import json
import logging
import time

import pytest

from bitrix_threaded import client as client_module
from urllib.parse import quote, quote_plus
from bitrix_threaded import errors as errors_module


def _spellings(secret: str) -> list:
    """A secret's forms on the wire (raw, percent/form-encoded, JSON), lower-cased."""
    forms = [secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret)[1:-1].replace("/", "\\/")]
    return [form.lower() for form in forms]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.created, self.format(record)))


@pytest.fixture(autouse=True)
def no_secret_leaks(monkeypatch):
    clients: list = []
    raised: list = []
    original_init = client_module.Bitrix.__init__
    original_error_init = errors_module.BitrixError.__init__

    @functools.wraps(original_init)
    def init(self, *args, **kwargs):
        clients.append((self, time.time()))
        original_init(self, *args, **kwargs)

    def error_init(self, *args, **kwargs):
        raised.append(self)
        original_error_init(self, *args, **kwargs)

    monkeypatch.setattr(client_module.Bitrix, "__init__", init)
    monkeypatch.setattr(errors_module.BitrixError, "__init__", error_init)
    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(message)s"))
    # Our own logger, and urllib3's, which logs every request line at DEBUG.
    loggers = [logging.getLogger(name) for name in ("bitrix_threaded", "urllib3")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(capture)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.removeHandler(capture)
            logger.setLevel(level)
    texts = [str(err) for err in raised] + [repr(err) for err in raised]
    texts += [str(getattr(err, "snippet", "")) for err in raised]
    texts += [repr(getattr(err, "extra", "")) + str(getattr(err, "location", ""))
              for err in raised]
    texts += [repr(bx) for bx, _ in clients if hasattr(bx, "credentials")]
    for bx, created in clients:
        credentials = getattr(bx, "credentials", None)
        if credentials is None:
            continue
        secrets = [s for s in credentials.secrets() if len(s) >= 6]
        # A test's own raw requests may log a URL before any client knew the secret;
        # from the client's creation on, no log line may show it.
        lines = [text for name, when, text in capture.lines
                 if name.startswith("bitrix_threaded") or when >= created]
        # Every spelling counts: raw, percent- and form-encoded, JSON-escaped.
        joined = "\n".join(texts + lines).lower()
        for secret in secrets:
            for form in _spellings(secret):
                assert form not in joined, "a secret leaked into a log line or an error"


# Real Redis servers for the shared-limits tests.
from redis_server import own_redis_server, redis_server, redis_url  # noqa: E402,F401
