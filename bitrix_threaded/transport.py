"""HTTP transport: one ``requests.Session`` per thread, JSON POSTs, and error mapping.

This is the only module that talks to ``requests``. What it guarantees at the edge:

* Credentials go to the configured portal only. Redirects are never followed
  silently: a 3xx to any other place raises :class:`~bitrix_threaded.errors.PortalMoved`
  (its ``location`` redacted). The one redirect followed is a same-host upgrade from
  ``http://`` to ``https://`` of the same path, once per request: it only moves the
  request onto TLS, and later requests to that origin go to ``https://`` directly.
* TLS verification is the caller's choice, passed with every request, so
  ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` in the environment cannot override
  ``ssl=False`` or a CA bundle path (with ``ssl=True`` requests' usual environment
  bundle still applies). A certificate that does not verify raises
  :class:`~bitrix_threaded.errors.CertificateFailed`, never retried.
* Every reply is read under an overall deadline (``deadline`` seconds from the send;
  ``timeout`` alone bounds each socket read, so a server dripping a byte at a time
  would never time out) and a cap on its decoded size (``max_reply_bytes``), checked
  while gzip/deflate bodies are inflated, so a compression bomb is stopped early. The
  body is read piece by piece with the clock checked in between
  (:mod:`~bitrix_threaded.bodies`), and from the status
  line on the :mod:`~bitrix_threaded.watchdog` cuts the connection at the deadline
  (the status line and headers are read inside ``http.client``, out of reach).
* Every exception is caught here and turned into a
  :class:`~bitrix_threaded.errors.BitrixError` whose text has passed through the
  credentials' redaction (foreign ones through
  :func:`~bitrix_threaded.edge_errors.map_exception`). Errors are raised outside the
  ``except`` block, so neither ``__cause__`` nor ``__context__`` holds a foreign
  exception (whose text carries the request URL, and with it the webhook secret).

Thread safety: :class:`Transport` is shared by all threads; each thread lazily gets its
own session (``threading.local``), so no session is ever used by two threads at once.
:meth:`Transport.close` closes every session created so far.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple,
                    Union)
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, get_netrc_auth

from . import jsoncodec
from ._version import __version__
from .auth import Credentials
from .bodies import BodyCorrupt, BodyPastDeadline, BodyTooLarge, read_body
from .edge_errors import map_exception
from .errors import (
    BitrixError,
    InvalidResponse,
    PortalMoved,
    RequestTimeout,
    ServerError,
    error_from_reply,
)
from .sessions import worker_session
from .watchdog import WATCHDOG

log = logging.getLogger("bitrix_threaded")

Timeout = Union[float, Tuple[float, float]]
# A request body: named parameters (a JSON object), or positional ones (a JSON array,
# which some legacy methods take, e.g. ``task.checklistitem.add``), or nothing.
Payload = Union[Mapping[str, Any], Sequence[Any], None]
DEFAULT_TIMEOUT: Tuple[float, float] = (10.0, 120.0)
#: The largest decoded reply accepted. A batch of 50 full list pages of wide CRM
#: records is a few MB; 64 MiB leaves a wide margin and still bounds memory.
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
_SNIPPET = 200
_REDIRECTS = (301, 302, 303, 307, 308)


def default_deadline(timeout: Timeout) -> float:
    """The overall deadline used when none is given: connect + twice the read timeout."""
    if isinstance(timeout, tuple):
        connect, read = timeout
        return float(connect) + 2.0 * float(read)
    return 3.0 * float(timeout)


@dataclass(frozen=True)
class Reply:
    """A successful JSON reply: the HTTP status, the decoded envelope, seconds taken."""

    status: int
    data: Dict[str, Any]
    elapsed: float
    size: int


def _json_dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _is_upgrade(source: str, target: str) -> bool:
    """True for http://host/path -> https://host/path (the port may change)."""
    old, new = urlsplit(source), urlsplit(target)
    return (
        old.scheme == "http"
        and new.scheme == "https"
        and bool(old.hostname)
        and old.hostname == new.hostname
        and old.path == new.path
        and old.query == new.query
        and not new.username
        and not new.password
    )


class _Exchange:
    """One request on the wire: its deadline, the watchdog entries armed for it, and
    the tag it was sent under (see :meth:`Transport.expire`). Its transport's
    ``lock`` guards ``deadline`` and ``entries``."""

    __slots__ = ("deadline", "entries", "tag", "lock")

    def __init__(self, deadline: float, tag: object, lock: threading.Lock):
        self.deadline = deadline
        self.entries: List[Any] = []
        self.tag = tag
        self.lock = lock

    def watch(self, sock: Any) -> None:
        with self.lock:
            self.entries.append(WATCHDOG.arm(self.deadline, sock))


# The request this thread is sending (each thread has its own session, so one
# connection in use at a time).
_current = threading.local()


class _Watched:
    """Connection mixin: from the status line on, the watchdog guards the reply.

    The status line and headers are read inside ``http.client``, out of the
    transport's reach: past the request's deadline the watchdog shuts the socket
    down and the read fails. The entry stays armed while the body is read and is
    disarmed by the transport when the request ends.
    """

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        exchange = getattr(_current, "exchange", None)
        sock = getattr(self, "sock", None)
        if exchange is not None and sock is not None:
            exchange.watch(sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter with connections that honour the request's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class Transport:
    """Posts JSON to the portal and returns decoded envelopes or raises BitrixError.

    ``verify`` is ``True``, ``False`` or a CA bundle path, sent with every request;
    ``timeout`` is seconds per connect and per socket read, or a ``(connect, read)``
    pair; ``deadline`` bounds a whole request, reply body included (default:
    :func:`default_deadline`); ``max_reply_bytes`` caps a reply's decoded size.
    ``template``: the caller's ``requests.Session`` whose settings every worker
    session copies (see :mod:`.sessions`); with it, ``verify=True`` means the
    template's own ``verify``. Adapters the template mounts itself are used as they
    are, without this module's deadline-aware connections.
    What ``requests`` takes from the environment for a session that trusts it
    (``trust_env``, the default): proxies and ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE``, ``~/.netrc`` credentials, is read once per origin (scheme and
    host) and applied with ``requests``' own precedence, instead of on every request.
    Arguments are validated by the client; the transport trusts them.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: Union[bool, str] = True,
        pool_size: int = 2,
        deadline: Optional[float] = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        template: Optional[requests.Session] = None,
    ):
        self.credentials = credentials
        self.timeout = timeout
        self.verify = verify
        self.deadline = float(deadline) if deadline is not None else default_deadline(timeout)
        self.max_reply_bytes = max_reply_bytes
        self._pool_size = pool_size
        self._template = template
        self._local = threading.local()
        # Each worker session with the adapters it owns (a template's are the caller's).
        self._sessions: List[Tuple[requests.Session, List[Any]]] = []
        self._lock = threading.Lock()
        self._closed = False
        # Requests on the wire, for expire(); the lock also guards each one's deadline.
        self._in_flight: Set[_Exchange] = set()
        self._flight_lock = threading.Lock()
        # (http origin, https origin) once the portal upgraded a request to TLS: later
        # requests go to https directly instead of sending credentials over http again.
        self._upgrade: Optional[Tuple[str, str]] = None
        # origin -> (proxies, CA bundle, .netrc auth) from the environment (_options).
        self._environment: Dict[str, Tuple[Dict[str, str], Optional[str], Any]] = {}

    # -- sessions ---------------------------------------------------------------------
    def _session(self) -> requests.Session:
        if self._closed:
            raise RuntimeError("the client is closed")
        session = getattr(self._local, "session", None)
        if session is None:
            session, owned = worker_session(
                self._template, verify=self.verify,
                new_adapter=lambda: _Adapter(
                    pool_connections=1, pool_maxsize=self._pool_size, max_retries=0
                ),
                # Only encodings this module inflates itself, under the size cap.
                headers={"User-Agent": f"bitrix_threaded/{__version__}",
                         "Accept-Encoding": "gzip, deflate"},
            )
            with self._lock:
                if self._closed:
                    _close(owned)
                    raise RuntimeError("the client is closed")
                self._sessions.append((session, owned))
            # requests would read the environment on every request (about 0.3 ms of
            # CPU, a quarter of a small request's); _options reads it once per origin.
            self._local.trust_env = session.trust_env
            session.trust_env = False
            self._local.session = session
        result: requests.Session = session
        return result

    def _options(self, session: requests.Session, target: str) -> Dict[str, Any]:
        """``verify`` for one request to ``target`` and, when the worker's session was
        made trusting the environment, what ``requests`` would have taken from it:
        proxies for the origin (they win over the session's own, as in ``requests``),
        the CA bundle variables (only where ``verify`` is True) and ``.netrc``
        credentials (only without the session's own ``auth``)."""
        verify = session.verify
        if not getattr(self._local, "trust_env", False):
            return {"verify": verify}
        scheme, _, rest = target.partition("://")
        origin = f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}/"
        known = self._environment.get(origin)
        if known is None:
            # Only the origin is passed on: never the path, which may hold the webhook.
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            known = (dict(get_environ_proxies(origin)), bundle or None,
                     get_netrc_auth(origin))
            self._environment[origin] = known
        proxies, bundle, netrc = known
        options: Dict[str, Any] = {"proxies": dict(proxies)}
        options["verify"] = bundle if bundle and (verify is True or verify is None) else verify
        if netrc and not session.auth:
            options["auth"] = netrc
        return options

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

    def expire(self, tag: object, seconds: float) -> int:
        """Cut off the requests sent under ``tag`` (every request when ``None``) that
        are still on the wire ``seconds`` from now; returns how many were found.

        A stopped call's requests get that long to finish; then the watchdog shuts
        their sockets down, so the threads waiting for the replies are free (a
        stalled portal would hold them until the request deadline). Whether such a
        request ran on the portal is unknown. Only the connections of this module's
        adapters are cut off: a ``client=`` session's own adapters run to their
        timeouts.
        """
        at = time.monotonic() + seconds
        found = 0
        with self._flight_lock:
            for exchange in self._in_flight:
                if tag is not None and exchange.tag is not tag:
                    continue
                found += 1
                if at < exchange.deadline:
                    exchange.deadline = at
                    for entry in exchange.entries:
                        WATCHDOG.hasten(entry, at)
        return found

    # -- requests ---------------------------------------------------------------------
    def post(self, method: str, payload: Payload = None, *, tag: object = None) -> Reply:
        """POST ``payload`` as JSON to ``method`` (authenticated) and return the envelope.

        Raises a BitrixError subclass: the portal's own error (``error_from_reply``),
        :class:`ServerError` for a 5xx without an envelope, :class:`InvalidResponse`
        for any other reply that is not a JSON envelope or is too large,
        :class:`PortalMoved` for a redirect, or a :class:`TransportError` when no
        reply arrived in time. ``tag``: what :meth:`expire` knows the request by.
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
        upgrade = self._upgrade
        if upgrade is not None and url.startswith(upgrade[0] + "/"):
            url = upgrade[1] + url[len(upgrade[0]):]
        started = time.monotonic()

        def send(session: requests.Session, target: str) -> requests.Response:
            return session.post(
                target,
                data=data,
                params=query,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.timeout,
                stream=True,
                allow_redirects=False,
                # verify: the worker session's own (ssl=, or a template's verify).
                **self._options(session, target),
            )

        status, raw = self._exchange(send, url, method, started, follow_upgrade=True,
                                     tag=tag)
        elapsed = time.monotonic() - started
        return self._decode(status, raw, method, elapsed)

    def get_json(self, url: str, params: Mapping[str, str]) -> Dict[str, Any]:
        """GET an absolute URL (the OAuth token endpoint) and return its JSON object.

        The query carries the client secret and refresh token, so no redirect of
        any kind is followed.
        """
        query = dict(params)

        def send(session: requests.Session, target: str) -> requests.Response:
            return session.get(
                target,
                params=query,
                timeout=self.timeout,
                stream=True,
                allow_redirects=False,
                **self._options(session, target),
            )

        status, raw = self._exchange(send, url, "oauth.token", time.monotonic(),
                                     follow_upgrade=False)
        return self._decode(status, raw, "oauth.token", 0.0).data

    def _exchange(
        self,
        send: Callable[[requests.Session, str], requests.Response],
        url: str,
        method: str,
        started: float,
        *,
        follow_upgrade: bool,
        tag: object = None,
    ) -> Tuple[int, bytes]:
        """Send, handle a redirect, read the body under the deadline and size cap."""
        failure: Optional[BitrixError] = None
        target = url
        deadline_at = started + self.deadline
        exchange = _Exchange(deadline_at, tag, self._flight_lock)
        with self._flight_lock:
            self._in_flight.add(exchange)
        _current.exchange = exchange
        try:
            session = self._session()
            response = send(session, target)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("Location", "")
                    moved_to = urljoin(target, location) if location else ""
                    if not (follow_upgrade and moved_to and _is_upgrade(target, moved_to)):
                        failure = self._moved(response.status_code, moved_to, method)
                    else:
                        self._note_upgrade(target, moved_to)
                        response.close()
                        target = moved_to
                        response = send(session, target)
                        if response.status_code in _REDIRECTS:
                            again = response.headers.get("Location", "")
                            failure = self._moved(
                                response.status_code,
                                urljoin(target, again) if again else "", method)
                if failure is None:
                    raw = self._read_body(response, method, deadline_at)
                    status = response.status_code
            finally:
                response.close()
        except BitrixError as err:
            failure = err
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            failure = map_exception(exc, method, target, self.credentials.redact)
            if time.monotonic() > deadline_at and failure.executed is None:
                # The watchdog cut the connection: say why, not how it looked.
                failure = self._deadline(method)
        finally:
            _current.exchange = None
            with self._flight_lock:
                self._in_flight.discard(exchange)
                entries = exchange.entries
            for entry in entries:
                WATCHDOG.disarm(entry)
        if failure is not None:
            # Outside the handler: the foreign exception must not become __context__.
            raise self._scrub(failure)
        return status, raw

    def _note_upgrade(self, source: str, target: str) -> None:
        old, new = urlsplit(source), urlsplit(target)
        pair = (f"{old.scheme}://{old.netloc}", f"{new.scheme}://{new.netloc}")
        if self._upgrade != pair:
            self._upgrade = pair
            log.warning(
                "the portal redirects http:// to https://; later requests go to https:// "
                "directly, and configuring the https:// address avoids the first one"
            )

    def _moved(self, status: int, location: str, method: str) -> PortalMoved:
        shown = self.credentials.redact(location)
        if shown:
            description = (f"the portal redirects to {shown}; credentials are only sent to "
                           "the configured portal: update the webhook or endpoint")
        else:
            description = "the portal answered with a redirect that names no location"
        return PortalMoved("PORTAL_MOVED", description, status=status, method=method,
                           location=shown)

    def _read_body(self, response: requests.Response, method: str,
                   deadline_at: float) -> bytes:
        """The decoded body, read under the deadline and the size cap."""
        raw = response.raw
        # read1 returns as soon as some bytes arrive, so the deadline is checked between
        # reads even when the server sends one byte at a time (urllib3 >= 2.1; with
        # older versions the watchdog alone ends such a reply).
        read1 = getattr(raw, "read1", None) or raw.read

        def read(size: int) -> bytes:
            chunk: bytes = read1(size, decode_content=False)
            return chunk

        status = response.status_code
        try:
            return read_body(read, response.headers, limit=self.max_reply_bytes,
                             deadline_at=deadline_at)
        except BodyPastDeadline:
            raise self._deadline(method) from None
        except BodyTooLarge as exc:
            raise InvalidResponse(
                "REPLY_TOO_LARGE",
                f"the reply {exc}, past the cap of {self.max_reply_bytes} bytes "
                "(max_reply_bytes)",
                status=status, method=method) from None
        except BodyCorrupt as exc:
            raise InvalidResponse("INVALID_RESPONSE", f"the reply {exc}",
                                  status=status, method=method) from None

    def _deadline(self, method: str) -> RequestTimeout:
        return RequestTimeout(
            "DEADLINE_EXCEEDED",
            f"no complete reply within the request's deadline of {self.deadline:g} s",
            method=method, executed=None)

    def _decode(self, status: int, raw: bytes, method: str, elapsed: float) -> Reply:
        data: Any = None
        parsed = True
        try:
            data = jsoncodec.decode(raw)
        except ValueError:
            parsed = False
        if not parsed:
            snippet = self.credentials.redact(bytes(raw[:_SNIPPET]).decode("utf-8", "replace"))
            if status >= 500:
                # A gateway's HTML error page: the portal failed, not the protocol.
                err: BitrixError = ServerError(
                    f"HTTP_{status}",
                    f"the portal replied with HTTP {status} and a body that is not JSON",
                    status=status, method=method, extra={"snippet": snippet})
            else:
                err = InvalidResponse(
                    "INVALID_RESPONSE",
                    f"the portal replied with HTTP {status} and a body that is not JSON",
                    status=status, method=method, snippet=snippet)
            raise self._scrub(err)
        if isinstance(data, dict) and "error" in data:
            raise self._scrub(error_from_reply(status, data, method))
        if status >= 400 or not isinstance(data, dict):
            raise self._scrub(error_from_reply(status, data, method))
        log.debug("%s: HTTP %s, %d bytes, %.3f s", method, status, len(raw), elapsed)
        return Reply(status=status, data=data, elapsed=elapsed, size=len(raw))

    def scrub(self, err: BitrixError) -> BitrixError:
        """``err`` with every secret masked in each text it carries (in place).

        For errors built outside the transport from a reply's content, such as the
        per-command errors of a batch, whose descriptions the server may have made
        from the request."""
        return self._scrub(err)

    def _scrub(self, err: BitrixError) -> BitrixError:
        """``err`` with every secret masked in each text it carries."""
        redact = self.credentials.redact
        description = redact(err.description)
        if description != err.description:
            err.description = description
            err.args = (str(err),)
        if err.extra:
            err.extra = _redact_value(err.extra, redact)
        snippet = getattr(err, "snippet", None)
        if isinstance(snippet, str) and "snippet" in vars(err):
            err.snippet = redact(snippet)  # type: ignore[attr-defined]
        if isinstance(err, PortalMoved):
            err.location = redact(err.location)
        return err

    # -- foreign exceptions -------------------------------------------------------------


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v, redact) for v in value)
    return value


def _close(adapters: List[Any]) -> None:
    # Closing a worker session means closing the adapters it owns; requests' own
    # Session.close() would also close the caller's template adapters.
    for adapter in adapters:
        adapter.close()
