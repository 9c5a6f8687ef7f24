"""Foreign exceptions at the transport edge, mapped to :class:`TransportError`.

requests and urllib3 wrap the cause of a failure several layers deep (a
``ConnectionError`` holding a ``MaxRetryError`` whose ``reason`` is a
``NewConnectionError`` caused by ``ConnectionRefusedError``); their messages quote
the request URL, webhook secret included. :func:`map_exception` walks that chain,
picks the most specific cause and writes one short line for it, e.g. ``cannot
connect to 127.0.0.1:1: connection refused`` or ``cannot resolve host
portal.example``, deciding too whether the request may have run and whether trying
again can help.

Pure functions; thread-safe.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any, Callable, List, Tuple
from urllib.parse import urlsplit

import requests
import urllib3

from .errors import CertificateFailed, ConnectionFailed, RequestTimeout, TransportError

__all__ = ["map_exception"]


def _host_port(url: str) -> Tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return host, port


def map_exception(exc: BaseException, method: str, url: str,
                  redact: Callable[[str], str]) -> TransportError:
    """The TransportError for ``exc``, raised by requests/urllib3 while talking to
    ``url``; every text that may quote the URL passes through ``redact``.

    The most specific cause wins: a certificate that did not verify, a name that did
    not resolve, a refused connection (these three are not retryable), a connect
    timeout (not executed), a read timeout, another TLS failure, another connect
    failure, a dropped connection (executed unknown).
    """
    host, port = _host_port(url)
    chain = _chain(exc)
    verify = _first(chain, ssl.SSLCertVerificationError)
    if verify is not None or any(type(e).__name__ == "CertificateError" for e in chain):
        reason = getattr(verify, "verify_message", "") or _short(
            verify or next(e for e in chain if type(e).__name__ == "CertificateError"))
        return CertificateFailed(
            "CERTIFICATE_VERIFY_FAILED",
            redact(f"the certificate of {host}:{port} did not verify: {reason}"),
            method=method, executed=False, retryable=False)
    resolve = _first(chain, socket.gaierror)
    if resolve is not None or any(type(e).__name__ == "NameResolutionError" for e in chain):
        # EAI_AGAIN is the resolver saying "try again later"; any other answer
        # (no such name) will not change within a call.
        temporary = resolve is not None and resolve.errno == getattr(
            socket, "EAI_AGAIN", object())
        return ConnectionFailed(
            "NAME_RESOLUTION_FAILED", f"cannot resolve host {host}",
            method=method, executed=False, retryable=temporary)
    refused = _first(chain, ConnectionRefusedError)
    if refused is not None or _has_errno(chain, errno.ECONNREFUSED):
        # Nothing listens there: trying again in a few seconds will not change that,
        # and the caller learns it at once instead of after a minute of backoff.
        return ConnectionFailed(
            "CONNECTION_REFUSED", f"cannot connect to {host}:{port}: connection refused",
            method=method, executed=False, retryable=False)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or any(
            type(e).__name__ == "ConnectTimeoutError" for e in chain):
        return RequestTimeout(
            "CONNECT_TIMEOUT", f"cannot connect to {host}:{port}: no answer in time",
            method=method, executed=False)
    if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)) \
            or _first(chain, socket.timeout) is not None:
        return RequestTimeout(
            "READ_TIMEOUT", f"{host}:{port} sent nothing within the read timeout",
            method=method, executed=None)
    if isinstance(exc, requests.exceptions.SSLError) or _first(chain, ssl.SSLError):
        # Unlike a failed verification, a TLS error may come after the request
        # was sent (while the reply is read): its fate is unknown.
        return ConnectionFailed(
            "SSL_ERROR",
            redact(f"TLS with {host}:{port} failed: {_reason(chain)}"),
            method=method, executed=None)
    if any(type(e).__name__ == "NewConnectionError" for e in chain):
        return ConnectionFailed(
            "CONNECT_FAILED",
            redact(f"cannot connect to {host}:{port}: {_reason(chain)}"),
            method=method, executed=False)
    if isinstance(exc, (requests.exceptions.ConnectionError,
                        urllib3.exceptions.ProtocolError, OSError)):
        return ConnectionFailed(
            "CONNECTION_LOST",
            redact(f"the connection to {host}:{port} was lost: {_reason(chain)}"),
            method=method, executed=None)
    return TransportError(
        "TRANSPORT_ERROR", redact(_short(exc)), method=method,
        executed=None)


def _chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and every exception it wraps (reason, args, cause, context)."""
    seen = set()
    found: List[BaseException] = []
    stack: List[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        stack.extend([getattr(item, "reason", None), item.__cause__, item.__context__])
        stack.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
    return found


def _first(chain: List[BaseException], kind: type) -> Any:
    return next((e for e in chain if isinstance(e, kind)), None)


def _has_errno(chain: List[BaseException], number: int) -> bool:
    return any(isinstance(e, OSError) and e.errno == number for e in chain)


def _reason(chain: List[BaseException]) -> str:
    """The innermost OS-level reason, e.g. "Network is unreachable"."""
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return _short(chain[-1]) if chain else "unknown error"


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:200] + "..."
