"""Authentication: webhook URLs, OAuth tokens, and keeping their secrets out of sight.

Three ways to authenticate, one small interface (:class:`Credentials`):

* :class:`Webhook` - ``https://portal/rest/USER/TOKEN/``: the token is part of the URL.
* :class:`TokenFunction` - a plain callable that returns an access token (fast_bitrix24's
  ``token_func``); called again when the portal says the token expired.
* :class:`OAuthRefresher` - the built-in refresh flow from client id, client secret and
  refresh token, persisting rotated tokens through an optional callback.

Every object here knows its secrets and offers :meth:`Credentials.redact`, which the
transport and the client apply to every log line and error message they build. Reprs
never show a secret.

Thread safety: all classes are safe to share between threads. Token renewal is coalesced:
the first thread to see an expired token renews it while the others wait for the result;
a thread that arrives with a token older than the current one simply takes the new one.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote, quote_plus, unquote, urlsplit

from .awaiting import resolve

MASK = "***"

# A webhook is https://host[/prefix]/rest/USER_ID/CODE/ ; USER_ID is numeric.
_WEBHOOK_PATH = re.compile(r"^(?P<prefix>.*?/rest)/(?P<user>\d+)/(?P<code>[^/]+)/?$")


def secret_forms(secret: str) -> List[str]:
    """Every spelling ``secret`` can take on the way to and from the portal.

    Raw; percent-encoded as in a URL path or query (``quote``, with and without
    ``/`` kept, and encoded twice as batch commands sent in a URL are);
    form-encoded (``quote_plus``); escaped inside JSON (with PHP's ``\\/``) and
    inside a Python repr. Hex digits of percent escapes match in either case
    when redacting.
    """
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote_plus(secret, safe=""),
        quote_plus(secret, safe="/"),
        quote(quote(secret, safe=""), safe=""),
        quote_plus(quote_plus(secret, safe=""), safe=""),
        repr(secret)[1:-1],
    }
    for ascii_only in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        forms.update((escaped, escaped.replace("/", "\\/")))
    return sorted(forms, key=len, reverse=True)


_HEX_ESCAPE = re.compile(r"%([0-9A-Fa-f])([0-9A-Fa-f])")


def _form_pattern(form: str) -> str:
    # Percent escapes may arrive as %2b or %2B; everything else matches exactly.
    pieces = []
    last = 0
    for match in _HEX_ESCAPE.finditer(form):
        pieces.append(re.escape(form[last:match.start()]))
        hi, lo = match.group(1), match.group(2)
        pieces.append(f"%[{hi.upper()}{hi.lower()}][{lo.upper()}{lo.lower()}]")
        last = match.end()
    pieces.append(re.escape(form[last:]))
    return "".join(pieces)


@functools.lru_cache(maxsize=256)
def _secrets_pattern(secrets: Tuple[str, ...]) -> Optional["re.Pattern[str]"]:
    forms = {form for secret in secrets for form in secret_forms(secret)}
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(_form_pattern(form) for form in ordered))


def redact_text(text: str, secrets: List[str]) -> str:
    """Replace every occurrence of each secret in ``text``, in any of its
    :func:`secret_forms`, by ``***``. Secrets shorter than 4 characters are
    left alone (they would mask ordinary words)."""
    usable = tuple(sorted({s for s in secrets if s and len(s) >= 4}))
    if not usable or not text:
        return text
    pattern = _secrets_pattern(usable)
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


class _RedactingFilter(logging.Filter):
    """Masks the secrets of every live client in records of the loggers it is put on.

    urllib3 logs each request line at DEBUG, and for a webhook that line holds the
    token; users who turn on DEBUG logging must not find it there.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: "weakref.WeakSet[Credentials]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, credentials: "Credentials") -> None:
        with self._lock:
            self._live.add(credentials)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            live = list(self._live)
        if not live:
            return True
        message = record.getMessage()
        redacted = message
        for credentials in live:
            try:
                redacted = credentials.redact(redacted)
            except Exception:  # a logging filter must never break the caller
                continue
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


# Filters act only on records logged to the logger they sit on, not on those
# propagated from its children: every urllib3 module that logs is listed.
_FOREIGN_LOGGERS = (
    "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry",
    "urllib3.poolmanager", "urllib3.response", "bitrix_threaded",
)
_REDACTOR = _RedactingFilter()
for _name in _FOREIGN_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTOR)


class Credentials:
    """How requests are authenticated. Subclasses are thread-safe."""

    def _watch_logs(self) -> None:
        """Mask these secrets in urllib3's log lines too; call once fully built."""
        _REDACTOR.add(self)

    #: The base URL methods are appended to, e.g. ``https://portal/rest/1/TOKEN/``.
    base_url: str

    def method_url(self, method: str) -> str:
        """The URL to POST ``method`` to."""
        return self.base_url + method

    def auth_params(self) -> Dict[str, str]:
        """Parameters to add to the request body (``{"auth": token}`` for OAuth)."""
        return {}

    def generation(self) -> int:
        """A counter that changes each time the token is renewed (fetching the first)."""
        return 0

    def renew(self, seen_generation: int) -> None:
        """Renew the token after the portal rejected it as expired.

        ``seen_generation`` is the :meth:`generation` the failed request was made with;
        when it is older than the current one, another thread has already renewed and
        nothing is done. Raises :class:`~bitrix_threaded.errors.AuthError` when renewal
        is impossible or fails.
        """
        from .errors import AuthError

        raise AuthError("expired_token", "The credentials cannot be renewed")

    def secrets(self) -> List[str]:
        """Every secret string these credentials hold, for redaction."""
        return []

    def redact(self, text: str) -> str:
        """``text`` with every secret masked."""
        return redact_text(text, self.secrets())

    @property
    def renewable(self) -> bool:
        return False


class Webhook(Credentials):
    """An inbound webhook URL ``https://portal/rest/USER_ID/CODE/``."""

    def __init__(self, url: str):
        if not isinstance(url, str):
            raise TypeError(f"webhook must be a str URL, got {type(url).__name__}")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("webhook must be an http(s) URL like https://portal/rest/1/code/")
        if parts.query or parts.fragment:
            raise ValueError("webhook must not carry a query string or fragment")
        match = _WEBHOOK_PATH.match(parts.path)
        if not match:
            raise ValueError(
                "webhook must look like https://portal.bitrix24.com/rest/USER_ID/CODE/ "
                f"(got {parts.scheme}://{parts.netloc}/...)"
            )
        self.portal = f"{parts.scheme}://{parts.netloc}"
        self.user_id = int(match.group("user"))
        self._code = match.group("code")
        self.base_url = f"{self.portal}{match.group('prefix')}/{self.user_id}/{self._code}/"
        self._watch_logs()

    def secrets(self) -> List[str]:
        # A code written percent-encoded in the URL is the same secret as its decoded
        # text, which is what the server sees and may quote back.
        decoded = unquote(self._code)
        return [self._code] if decoded == self._code else [self._code, decoded]

    def __repr__(self) -> str:
        return f"Webhook('{self.redact(self.base_url)}')"


def _rest_base(url: str) -> str:
    """Normalise a portal REST endpoint to ``scheme://host/.../rest/``."""
    if not isinstance(url, str):
        raise TypeError(f"the portal endpoint must be a str URL, got {type(url).__name__}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the portal endpoint must be an http(s) URL like https://portal/rest/")
    path = parts.path.rstrip("/")
    if not path.endswith("/rest"):
        path += "/rest"
    return f"{parts.scheme}://{parts.netloc}{path}/"


class TokenFunction(Credentials):
    """Access tokens supplied by a user callable (``token_func``).

    The callable takes no arguments and returns the current access token as a str (an
    ``async def`` one is awaited on a private event loop in a helper thread). It is
    called once before the first request and again, once per expiry, when the portal
    answers ``expired_token``; calls are serialised, so it need not be thread-safe.
    """

    def __init__(self, endpoint: str, token_func: Callable[[], str]):
        if not callable(token_func):
            raise TypeError("token_func must be a callable returning an access token")
        self.base_url = _rest_base(endpoint)
        self._func = token_func
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._retired: List[str] = []
        self._generation = 0
        self._watch_logs()

    def _fetch(self) -> None:
        from .errors import AuthError

        failure = None
        try:
            # An ``async def`` token_func is awaited on a private loop (see awaiting.py).
            token = resolve(self._func())
        except Exception as exc:  # the user's code failed: report it without its text
            failure = type(exc).__name__
        if failure is not None:
            # Raised outside the handler so that no __context__ carries the user's
            # exception, whose text may hold a token.
            raise AuthError("TOKEN_FUNC_FAILED", f"token_func raised {failure}")
        if not isinstance(token, str) or not token:
            raise AuthError("TOKEN_FUNC_FAILED", "token_func must return a non-empty str")
        if self._token:
            self._retired.append(self._token)
            del self._retired[:-16]
        self._token = token
        self._generation += 1

    def auth_params(self) -> Dict[str, str]:
        with self._lock:
            if self._token is None:
                self._fetch()
            assert self._token is not None
            return {"auth": self._token}

    def generation(self) -> int:
        with self._lock:
            if self._token is None:
                self._fetch()
            return self._generation

    def renew(self, seen_generation: int) -> None:
        with self._lock:
            if self._generation == seen_generation:
                self._fetch()

    @property
    def renewable(self) -> bool:
        return True

    def secrets(self) -> List[str]:
        token = self._token
        return ([token] if token else []) + list(self._retired)

    def __repr__(self) -> str:
        return f"TokenFunction('{self.base_url}')"


@dataclass(frozen=True)
class TokenSet:
    """What a successful OAuth refresh returns. ``repr`` masks the tokens."""

    access_token: str
    refresh_token: str
    expires: Optional[int] = None
    expires_in: Optional[int] = None
    client_endpoint: Optional[str] = None
    member_id: Optional[str] = None
    raw: Optional[Mapping[str, Any]] = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token='{MASK}', refresh_token='{MASK}', expires={self.expires}, "
            f"client_endpoint={self.client_endpoint!r})"
        )


DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"


class OAuthRefresher(Credentials):
    """OAuth 2.0 access token with built-in, coalesced refresh.

    ``refresh(refresh_token) -> TokenSet`` performs the HTTP exchange; the client passes a
    function bound to its transport so the exchange shares timeouts and TLS settings.
    ``on_refresh(token_set)`` (optional) is called after every refresh so the caller can
    persist the rotated refresh token; it runs outside the lock.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token: Optional[str] = None,
        token_url: str = DEFAULT_TOKEN_URL,
        on_refresh: Optional[Callable[[TokenSet], None]] = None,
    ):
        for name, value in (
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("refresh_token", refresh_token),
        ):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name} must be a non-empty str")
        if access_token is not None and not isinstance(access_token, str):
            raise TypeError("access_token must be a str or None")
        if on_refresh is not None and not callable(on_refresh):
            raise TypeError("on_refresh must be callable")
        self.base_url = _rest_base(endpoint)
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._access_token = access_token or None
        self.token_url = token_url
        self._on_refresh = on_refresh
        self._lock = threading.Lock()
        self._generation = 0
        self._exchange: Optional[Callable[[Dict[str, str]], Mapping[str, Any]]] = None
        self.refresh_count = 0
        self._retired: List[str] = []
        self._watch_logs()

    def bind(self, exchange: Callable[[Dict[str, str]], Mapping[str, Any]]) -> None:
        """Set the function that GETs the token URL with the given query and returns JSON."""
        self._exchange = exchange

    def _current(self) -> Tuple[str, int]:
        """The access token and its generation, refreshing first when there is none."""
        token_set = None
        with self._lock:
            if self._access_token is None:
                token_set = self._refresh_locked()
            token, generation = self._access_token, self._generation
        if token_set is not None and self._on_refresh is not None:
            self._on_refresh(token_set)
        assert token is not None
        return token, generation

    def auth_params(self) -> Dict[str, str]:
        return {"auth": self._current()[0]}

    def generation(self) -> int:
        return self._current()[1]

    def renew(self, seen_generation: int) -> None:
        token_set = None
        with self._lock:
            if self._generation == seen_generation:
                token_set = self._refresh_locked()
        if token_set is not None and self._on_refresh is not None:
            self._on_refresh(token_set)

    def _refresh_locked(self) -> TokenSet:
        from .errors import AuthError, InvalidToken

        if self._exchange is None:
            raise AuthError("NO_TOKEN_EXCHANGE", "OAuth refresh is not bound to a transport")
        reply = self._exchange(
            {
                "grant_type": "refresh_token",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "refresh_token": self._refresh_token,
            }
        )
        access = reply.get("access_token") if isinstance(reply, Mapping) else None
        refresh = reply.get("refresh_token") if isinstance(reply, Mapping) else None
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise InvalidToken("invalid_grant", "The token endpoint returned no tokens")
        # Rotated-away tokens may still sit in an error text or a user's log: keep
        # masking them.
        self._retired.extend(t for t in (self._access_token, self._refresh_token) if t)
        del self._retired[:-16]
        self._access_token = access
        self._refresh_token = refresh
        self._generation += 1
        self.refresh_count += 1
        return TokenSet(
            access_token=access,
            refresh_token=refresh,
            expires=reply.get("expires"),
            expires_in=reply.get("expires_in"),
            client_endpoint=reply.get("client_endpoint"),
            member_id=reply.get("member_id"),
            raw=dict(reply),
        )

    @property
    def renewable(self) -> bool:
        return True

    def secrets(self) -> List[str]:
        current = (self._access_token, self._refresh_token, self._client_secret)
        return [s for s in current if s] + list(self._retired)

    def __repr__(self) -> str:
        return f"OAuthRefresher('{self.base_url}', client_id={self.client_id!r})"
