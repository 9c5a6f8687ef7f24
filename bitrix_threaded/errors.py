"""Exceptions for everything that comes from, or on the way to, the portal.

::

    BitrixError                     .code .description .status .method .extra
    ├── TransportError              no usable HTTP reply; .executed (False / None), .retryable
    │   ├── ConnectionFailed        could not connect / connection dropped
    │   │   └── CertificateFailed   the portal's TLS certificate did not verify
    │   └── RequestTimeout          no reply in time, or past the request's deadline
    ├── PortalMoved                 a redirect (3xx) away from the portal; .location
    ├── InvalidResponse             body is not JSON or not an envelope; .snippet
    ├── QueryLimitExceeded          503 QUERY_LIMIT_EXCEEDED (leaky bucket)
    ├── OperationTimeLimit          429 OPERATION_TIME_LIMIT; .reset_at
    ├── OverloadLimit               OVERLOAD_LIMIT
    ├── ServerError                 5xx, INTERNAL_SERVER_ERROR, ERROR_UNEXPECTED_ANSWER
    ├── AuthError                   401 (and 403 auth codes)
    │   ├── ExpiredToken            expired_token
    │   ├── InvalidToken            invalid_token, invalid_grant, invalid_client
    │   ├── InvalidCredentials      INVALID_CREDENTIALS, NO_AUTH_FOUND
    │   └── InsufficientScope       insufficient_scope
    ├── AccessDenied                ACCESS_DENIED, PORTAL_DELETED, INVALID_REQUEST
    ├── MethodNotFound              ERROR_METHOD_NOT_FOUND
    ├── NotFound                    NOT_FOUND, legacy "Not found"
    ├── InvalidArgument             ERROR_ARGUMENT, INVALID_ARG_VALUE, ...
    ├── BatchError                  some commands of a multi-command call failed
    └── Cancelled                   the call was stopped (its token was cancelled)
        └── ClientClosed            the client was closed before or during the call

Misuse of the library (bad arguments) raises ``TypeError``/``ValueError``,
never a ``BitrixError``. :func:`error_from_reply` is the one place that turns
a server reply into an exception. Errors never carry the request URL, which
holds the webhook secret. All errors are picklable and immutable by
convention; they are safe to pass between threads.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = [
    "AccessDenied",
    "AuthError",
    "BatchError",
    "BitrixError",
    "Cancelled",
    "ClientClosed",
    "CertificateFailed",
    "CommandFailure",
    "ConnectionFailed",
    "ExpiredToken",
    "InsufficientScope",
    "InvalidArgument",
    "InvalidCredentials",
    "InvalidResponse",
    "InvalidToken",
    "MethodNotFound",
    "NotFound",
    "OperationTimeLimit",
    "OverloadLimit",
    "PortalMoved",
    "QueryLimitExceeded",
    "RequestTimeout",
    "ServerError",
    "TransportError",
    "error_from_reply",
    "reply_snippet",
]

SNIPPET_LENGTH = 200
_SHOWN_FAILURES = 3


def _headline(code: str, description: str) -> str:
    # Legacy handlers send an empty code; then the text alone says it all.
    if code and description:
        return f"{code}: {description}"
    return code or description or "(no error code)"


def _restore(cls: type[BitrixError], args: tuple[Any, ...], state: dict[str, Any]) -> BitrixError:
    # Bypasses __init__, whose signature differs between subclasses.
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class BitrixError(Exception):
    """Root of every error the portal (or the way to it) can produce.

    ``code`` is the server's error code as sent (case kept), ``description``
    its ``error_description``; ``status`` is the HTTP status (``None`` for a
    command inside a batch or when no reply came), ``method`` the REST
    method, ``extra`` any further keys of the error body (e.g. ``argument``).
    """

    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        status: int | None = None,
        method: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description
        self.status = status
        self.method = method
        self.extra = dict(extra) if extra else {}

    def __str__(self) -> str:
        text = _headline(self.code, self.description)
        where = []
        if self.method:
            where.append(f"method {self.method}")
        if self.status is not None:
            where.append(f"HTTP {self.status}")
        return f"{text} ({', '.join(where)})" if where else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, description={self.description!r}, "
            f"status={self.status!r}, method={self.method!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class TransportError(BitrixError):
    """No usable HTTP reply arrived.

    ``executed`` is ``False`` when the request certainly did not reach the
    portal, ``None`` when it may or may not have run (never ``True``).
    ``retryable`` is ``False`` when trying again cannot help (a refused
    connection, an unknown host, a certificate that does not verify): such
    errors end the call at once instead of spending seconds on backoff.
    """

    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        status: int | None = None,
        method: str | None = None,
        extra: dict[str, Any] | None = None,
        executed: bool | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(code, description, status=status, method=method, extra=extra)
        self.executed = executed
        self.retryable = retryable


class ConnectionFailed(TransportError):
    """Could not connect (``executed=False``) or the connection dropped (``None``)."""


class CertificateFailed(ConnectionFailed):
    """The portal's TLS certificate did not verify; never retried (``retryable=False``).

    The description names the host and the reason (e.g. a self-signed
    certificate); set ``ssl=`` to a CA bundle path to trust a private CA.
    """


class RequestTimeout(TransportError):
    """No reply within the timeout or the request's deadline (``executed=None``)."""


class PortalMoved(BitrixError):
    """The portal answered with a redirect (3xx) the client does not follow.

    A renamed cloud portal answers its old address with a 302 to the new one
    (b24-rest-docs ``settings/how-to-call-rest-api/change-domen.md``, which
    suggests re-sending the POST there). Credentials are only ever sent to the
    configured portal, so a redirect to another host ends the call instead:
    update the webhook or endpoint to ``location``. ``location`` is the redirect
    target with every secret masked; it is ``""`` when the reply named none.
    """

    def __init__(
        self,
        code: str = "PORTAL_MOVED",
        description: str = "",
        *,
        status: int | None = None,
        method: str | None = None,
        extra: dict[str, Any] | None = None,
        location: str = "",
    ) -> None:
        super().__init__(code, description, status=status, method=method, extra=extra)
        self.location = location


class InvalidResponse(BitrixError):
    """The reply is not JSON or not a REST envelope; ``snippet`` is its start."""

    def __init__(
        self,
        code: str = "INVALID_RESPONSE",
        description: str = "",
        *,
        status: int | None = None,
        method: str | None = None,
        extra: dict[str, Any] | None = None,
        snippet: str = "",
    ) -> None:
        super().__init__(code, description, status=status, method=method, extra=extra)
        self.snippet = snippet[:SNIPPET_LENGTH]


class QueryLimitExceeded(BitrixError):
    """503 QUERY_LIMIT_EXCEEDED: the portal's leaky bucket is full; slow down."""


class OperationTimeLimit(BitrixError):
    """429 OPERATION_TIME_LIMIT: this method is blocked for this app/webhook.

    ``reset_at`` is the server's unix time when the oldest bucket of the
    method's window expires, if the reply said so.
    """

    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        status: int | None = None,
        method: str | None = None,
        extra: dict[str, Any] | None = None,
        reset_at: float | None = None,
    ) -> None:
        super().__init__(code, description, status=status, method=method, extra=extra)
        self.reset_at = reset_at


class OverloadLimit(BitrixError):
    """OVERLOAD_LIMIT: REST is blocked on the portal because of overload."""


class ServerError(BitrixError):
    """The portal failed internally (5xx, INTERNAL_SERVER_ERROR, ...).

    A 5xx reply without a Bitrix24 envelope (a gateway's HTML page) keeps the
    start of its body in ``snippet`` (also ``extra["snippet"]``).
    """

    @property
    def snippet(self) -> str:
        value = self.extra.get("snippet", "")
        return value if isinstance(value, str) else ""


class AuthError(BitrixError):
    """Authentication failed (401, and auth codes sent with 403)."""


class ExpiredToken(AuthError):
    """expired_token: the OAuth access token must be refreshed."""


class InvalidToken(AuthError):
    """invalid_token / invalid_grant / invalid_client: the token cannot be used or refreshed."""


class InvalidCredentials(AuthError):
    """INVALID_CREDENTIALS / NO_AUTH_FOUND: wrong or missing webhook/user credentials."""


class InsufficientScope(AuthError):
    """insufficient_scope: the webhook or app lacks the scope of this method."""


class AccessDenied(BitrixError):
    """The portal refuses the operation (rights, plan, deleted portal, http)."""


class MethodNotFound(BitrixError):
    """ERROR_METHOD_NOT_FOUND: no such REST method on this portal."""


class NotFound(BitrixError):
    """The requested entity does not exist."""


class InvalidArgument(BitrixError):
    """The portal rejected a parameter (ERROR_ARGUMENT and relatives)."""


class Cancelled(BitrixError):
    """The call was stopped before it finished: nothing more is sent for it.

    Commands that never left the process were not executed; those on the wire
    when it stopped may have been (see :class:`BatchError`, which reports both
    when a multi-command call is stopped part-way). As a command's error,
    ``executed`` says which: ``False`` never sent, ``None`` on the wire.
    """

    def __init__(self, description: str = "the call was cancelled", *,
                 method: str | None = None, code: str = "CANCELLED",
                 executed: bool | None = False) -> None:
        super().__init__(code, description, method=method)
        self.executed = executed


class ClientClosed(Cancelled):
    """The client was closed: it sends nothing more and refuses new calls."""

    def __init__(self, description: str = "the client is closed", *,
                 method: str | None = None, code: str = "CLIENT_CLOSED",
                 executed: bool | None = False) -> None:
        super().__init__(description, method=method, code=code, executed=executed)


@dataclass(frozen=True)
class CommandFailure:
    """One failed command of a multi-command call.

    ``index`` is the command's position in the caller's input, ``label`` its
    key in the batch. ``executed`` says whether it may have changed data:
    ``False`` when the portal answered for this command (it ran and failed,
    or was skipped) or refused the whole call (limits, auth); ``None`` when
    the call's fate is unknown (no reply, an unreadable reply, or a 5xx for
    the whole call), i.e. a write may or may not have happened.
    """

    index: int
    label: str
    method: str
    error: BitrixError

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def description(self) -> str:
        return self.error.description

    @property
    def executed(self) -> bool | None:
        error = self.error
        if isinstance(error, (TransportError, Cancelled)):
            return error.executed
        if isinstance(error, InvalidResponse):
            return None
        # A ServerError with an HTTP status failed the whole call; without one
        # it is this command's own error entry inside a batch reply.
        if isinstance(error, ServerError) and error.status is not None:
            return None
        return False

    def __str__(self) -> str:
        return f"#{self.index} {self.label} {self.method} {_headline(self.code, self.description)}"


class BatchError(BitrixError):
    """Some commands of a multi-command call failed; the rest succeeded.

    ``failures`` are in input order; ``results`` maps the input position of
    every successful command to its result; ``total`` is the number of
    commands in the call; ``ambiguous`` lists failures whose writes may or
    may not have happened (``executed is None``), ``not_executed`` those that
    certainly changed nothing (``executed is False``: safe to send again). A
    call stopped part-way (``close()``, a cancelled scope, Ctrl-C) reports its
    unsent commands as not executed and those on the wire as ambiguous.
    """

    def __init__(
        self,
        failures: Sequence[CommandFailure],
        results: Mapping[int, Any],
        total: int,
        method: str | None = None,
    ) -> None:
        if isinstance(failures, (str, bytes)) or not all(
            isinstance(f, CommandFailure) for f in failures
        ):
            raise TypeError("failures must be a sequence of CommandFailure")
        ordered = tuple(sorted(failures, key=lambda f: f.index))
        super().__init__("BATCH_ERROR", _summary(ordered, total), method=method)
        self.failures = ordered
        self.results = dict(results)
        self.total = total

    @property
    def ambiguous(self) -> tuple[CommandFailure, ...]:
        return tuple(f for f in self.failures if f.executed is None)

    @property
    def not_executed(self) -> tuple[CommandFailure, ...]:
        return tuple(f for f in self.failures if f.executed is False)


def _summary(failures: Sequence[CommandFailure], total: int) -> str:
    text = f"{len(failures)} of {total} commands failed"
    unknown = sum(1 for f in failures if f.executed is None)
    if unknown:
        text += f" ({unknown} may have been executed)"
    shown = "; ".join(str(f) for f in failures[:_SHOWN_FAILURES])
    if shown:
        text += f": {shown}"
    if len(failures) > _SHOWN_FAILURES:
        text += f"; and {len(failures) - _SHOWN_FAILURES} more"
    return text


_BY_CODE: dict[str, type[BitrixError]] = {
    "query_limit_exceeded": QueryLimitExceeded,
    "operation_time_limit": OperationTimeLimit,
    "overload_limit": OverloadLimit,
    "internal_server_error": ServerError,
    "error_unexpected_answer": ServerError,
    "expired_token": ExpiredToken,
    "invalid_token": InvalidToken,
    "invalid_grant": InvalidToken,
    "invalid_client": InvalidToken,
    "invalid_credentials": InvalidCredentials,
    "no_auth_found": InvalidCredentials,
    "insufficient_scope": InsufficientScope,
    "access_denied": AccessDenied,
    "portal_deleted": AccessDenied,
    "invalid_request": AccessDenied,
    "error_method_not_found": MethodNotFound,
    "not_found": NotFound,
    "error_argument": InvalidArgument,
    "invalid_arg_value": InvalidArgument,
    "error_required_parameters_missing": InvalidArgument,
}

# Legacy CRM handlers answer {"error": "", "error_description": TEXT}; the
# trailing period varies between versions, so it is stripped before matching.
_BY_LEGACY_TEXT: tuple[tuple[re.Pattern[str], type[BitrixError]], ...] = (
    (re.compile(r"not found"), NotFound),
    (re.compile(r"access denied"), AccessDenied),
    (re.compile(r"id is not defined or invalid"), InvalidArgument),
    (re.compile(r"parameter '[^']*' must be (an )?array"), InvalidArgument),
)


def _class_for(code: str, description: str, status: int | None) -> type[BitrixError]:
    key = code.strip().lower()
    if key == "error_core":
        # ERROR_CORE is the generic exception fallback: 400 for ordinary
        # failures, 500 for SQL errors.
        return ServerError if status is not None and status >= 500 else BitrixError
    if key in _BY_CODE:
        return _BY_CODE[key]
    text = description.strip().rstrip(".").strip().lower()
    for pattern, cls in _BY_LEGACY_TEXT:
        if pattern.fullmatch(text):
            return cls
    if status is not None:
        if status >= 500:
            return ServerError
        if status == 401:
            return AuthError
        if status == 403:
            return AccessDenied
    return BitrixError


def reply_snippet(payload: object) -> str:
    """Return the first ~200 characters of a reply body (str, bytes or decoded JSON)."""
    if isinstance(payload, bytes):
        return payload[:SNIPPET_LENGTH].decode("utf-8", "replace")
    if isinstance(payload, str):
        return payload[:SNIPPET_LENGTH]
    try:
        text = json.dumps(payload, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(payload)
    return text[:SNIPPET_LENGTH]


def _reset_at(payload: Mapping[str, Any]) -> float | None:
    time_block = payload.get("time")
    if not isinstance(time_block, Mapping):
        return None
    value = time_block.get("operating_reset_at")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def error_from_reply(status: int | None, payload: object, method: str | None) -> BitrixError:
    """Return the exception for an error reply; never raises.

    ``payload`` is the decoded body (``{"error": CODE, "error_description":
    TEXT, ...}``) or, for a command inside a batch, its ``result_error``
    entry with ``status=None``. The class is chosen by code
    (case-insensitive), then by legacy description text, then by HTTP
    status. A payload that is not an error envelope gives
    :class:`InvalidResponse`, except with a 5xx status, where it gives
    :class:`ServerError` (gateways answer 502/504 with HTML pages, and those
    are transient); the start of such a body is kept in ``extra["snippet"]``.
    """
    if not isinstance(payload, Mapping) or "error" not in payload:
        snippet = reply_snippet(payload)
        if status is not None and status >= 500:
            return ServerError(
                f"HTTP_{status}",
                "the portal answered without an error envelope",
                status=status,
                method=method,
                extra={"snippet": snippet},
            )
        return InvalidResponse(
            "INVALID_RESPONSE",
            "the reply is not a Bitrix24 error envelope",
            status=status,
            method=method,
            snippet=snippet,
        )
    raw_code = payload.get("error")
    code = "" if raw_code is None else str(raw_code)
    raw_description = payload.get("error_description")
    description = "" if raw_description is None else str(raw_description)
    extra = {k: v for k, v in payload.items() if k not in ("error", "error_description")}
    cls = _class_for(code, description, status)
    if cls is OperationTimeLimit:
        return OperationTimeLimit(
            code, description, status=status, method=method, extra=extra,
            reset_at=_reset_at(payload),
        )
    return cls(code, description, status=status, method=method, extra=extra)
