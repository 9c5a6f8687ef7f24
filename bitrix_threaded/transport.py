"""HTTP transport: one ``requests.Session`` per thread, JSON POSTs, and error mapping.

This is the only module that talks to ``requests``; every exception it can raise is
caught here and turned into a :class:`~bitrix_threaded.errors.BitrixError` whose text
has been passed through the credentials' redaction (request URLs carry the webhook
token, bodies carry OAuth tokens). Foreign exceptions are not chained (``from None``)
because their messages contain those URLs.

Thread safety: :class:`Transport` is shared by all threads; each thread lazily gets its
own session (``threading.local``), so no session is ever used by two threads at once.
:meth:`Transport.close` closes every session created so far.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import requests
import urllib3

from . import jsoncodec
from ._version import __version__
from .auth import Credentials
from .errors import (
    BitrixError,
    ConnectionFailed,
    InvalidResponse,
    RequestTimeout,
    TransportError,
    error_from_reply,
)
from .sessions import default_adapter, worker_session

log = logging.getLogger("bitrix_threaded")

Timeout = Union[float, Tuple[float, float]]
# A request body: named parameters (a JSON object), or positional ones (a JSON array,
# which some legacy methods take, e.g. ``task.checklistitem.add``), or nothing.
Payload = Union[Mapping[str, Any], Sequence[Any], None]
_SNIPPET = 200


@dataclass(frozen=True)
class Reply:
    """A successful JSON reply: the HTTP status, the decoded envelope, seconds taken."""

    status: int
    data: Dict[str, Any]
    elapsed: float
    size: int


def _json_dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Transport:
    """Posts JSON to the portal and returns decoded envelopes or raises BitrixError.

    ``verify`` is passed to requests (``True``, ``False`` or a CA bundle path);
    ``timeout`` is seconds, or a ``(connect, read)`` pair.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: Timeout = (10.0, 120.0),
        verify: Union[bool, str] = True,
        pool_size: int = 2,
        template: Optional[requests.Session] = None,
    ):
        self.credentials = credentials
        self.timeout = timeout
        self.verify = verify
        self._pool_size = pool_size
        self._template = template
        self._local = threading.local()
        # Each worker session with the adapters it owns (a template's are the caller's).
        self._sessions: List[Tuple[requests.Session, List[Any]]] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- sessions ---------------------------------------------------------------------
    def _session(self) -> requests.Session:
        if self._closed:
            raise RuntimeError("the client is closed")
        session = getattr(self._local, "session", None)
        if session is None:
            session, owned = worker_session(
                self._template, verify=self.verify,
                new_adapter=lambda: default_adapter(self._pool_size),
                headers={"User-Agent": f"bitrix_threaded/{__version__}"},
            )
            with self._lock:
                if self._closed:
                    _close(owned)
                    raise RuntimeError("the client is closed")
                self._sessions.append((session, owned))
            self._local.session = session
        return session

    def close(self) -> None:
        """Close every session; later requests raise RuntimeError."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = self._sessions, []
        for _, owned in sessions:
            _close(owned)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- requests ---------------------------------------------------------------------
    def post(self, method: str, payload: Payload = None) -> Reply:
        """POST ``payload`` as JSON to ``method`` (authenticated) and return the envelope.

        Raises a BitrixError subclass: the portal's own error (``error_from_reply``),
        :class:`InvalidResponse` for a reply that is not a JSON envelope, or a
        :class:`TransportError` when no reply arrived.
        """
        auth = self.credentials.auth_params()
        query: Optional[Dict[str, str]] = None
        if payload is None or isinstance(payload, Mapping):
            data = _json_dumps({**(payload or {}), **auth})
        else:
            # An array body has no room for named parameters: the token (OAuth only)
            # goes in the query string, where the portal reads it too.
            data = _json_dumps(list(payload))
            query = auth or None
        url = self.credentials.method_url(method)
        started = time.monotonic()
        try:
            # Streamed, then read in one call: requests' .content would gather a
            # 1-2 MB batch reply in 10 KB pieces, at twice the CPU.
            session = self._session()
            response = session.post(
                url,
                data=data,
                params=query,
                # Per request, or requests lets $REQUESTS_CA_BUNDLE override ssl=False.
                verify=session.verify,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.timeout,
                stream=True,
            )
            try:
                body = response.raw.read(decode_content=True)
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise self._map_exception(exc, method) from None
        elapsed = time.monotonic() - started
        return self._decode(response.status_code, body, method, elapsed)

    def get_json(self, url: str, params: Mapping[str, str]) -> Dict[str, Any]:
        """GET an absolute URL (the OAuth token endpoint) and return its JSON object."""
        try:
            session = self._session()
            response = session.get(url, params=dict(params), timeout=self.timeout,
                                   verify=session.verify)
            body = response.content
        except requests.RequestException as exc:
            raise self._map_exception(exc, "oauth.token") from None
        return self._decode(response.status_code, body, "oauth.token", 0.0).data

    def _decode(self, status: int, raw: bytes, method: str, elapsed: float) -> Reply:
        try:
            data = jsoncodec.decode(raw)
        except ValueError:
            snippet = self.credentials.redact(raw[:_SNIPPET].decode("utf-8", "replace"))
            raise InvalidResponse(
                "INVALID_RESPONSE",
                f"the portal replied with HTTP {status} and a body that is not JSON",
                status=status,
                method=method,
                snippet=snippet,
            ) from None
        if isinstance(data, dict) and "error" in data:
            raise self._scrub(error_from_reply(status, data, method))
        if status >= 400 or not isinstance(data, dict):
            err = error_from_reply(status, data, method)
            raise self._scrub(err)
        log.debug("%s: HTTP %s, %d bytes, %.3f s", method, status, len(raw), elapsed)
        return Reply(status=status, data=data, elapsed=elapsed, size=len(raw))

    def _scrub(self, err: BitrixError) -> BitrixError:
        redacted = self.credentials.redact(err.description)
        if redacted != err.description:
            err.description = redacted
            err.args = (str(err),)
        return err

    def _map_exception(self, exc: Exception, method: str) -> TransportError:
        detail = self.credentials.redact(f"{type(exc).__name__}: {exc}")
        if len(detail) > 300:
            detail = detail[:300] + "..."
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return RequestTimeout(
                "CONNECT_TIMEOUT", detail, method=method, executed=False
            )
        if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)):
            return RequestTimeout("READ_TIMEOUT", detail, method=method, executed=None)
        if isinstance(exc, requests.exceptions.SSLError):
            return ConnectionFailed("SSL_ERROR", detail, method=method, executed=False)
        if isinstance(exc, (requests.exceptions.ConnectionError,
                            urllib3.exceptions.ProtocolError)):
            if _never_connected(exc):
                return ConnectionFailed(
                    "CONNECTION_REFUSED", detail, method=method, executed=False
                )
            return ConnectionFailed("CONNECTION_LOST", detail, method=method, executed=None)
        return TransportError("TRANSPORT_ERROR", detail, method=method, executed=None)


def _close(adapters: List[Any]) -> None:
    # Closing a worker session means closing the adapters it owns; requests' own
    # Session.close() would also close the caller's template adapters.
    for adapter in adapters:
        adapter.close()


def _never_connected(exc: BaseException) -> bool:
    """True when the request certainly never reached the server (connect failed)."""
    # urllib3 wraps a failed connect in NewConnectionError (refused, DNS failure,
    # unreachable); a connection dropped mid-request shows up as ProtocolError instead.
    seen = set()
    stack: List[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        name = type(item).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectionRefusedError"):
            return True
        stack.extend([getattr(item, "reason", None), item.__cause__, item.__context__])
        stack.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
    return False
