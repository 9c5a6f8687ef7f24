"""Where the shared limiter keeps its state in Redis: one key family per portal.

Every key of a portal carries the hash tag ``{bt:<portal host>}``, so the keys one
Lua script touches always live in one Redis Cluster slot. Nothing secret goes into
a key: an application (a webhook, an OAuth client) is named by a keyed hash that
cannot be turned back into its token.

Layout (``P`` = ``{bt:<host>}``)::

    P:bucket[:<bucket_key>]      hash  the leaky bucket (GCRA) and its adaptive rate
    P:win:<app>:<method>         hash  one method's operating-time report
    P:lease:<app>:<method>       zset  commands in flight (members expire by score)
    P:oauth:<app>                hash  the current OAuth token set, sealed
    P:oauth-lock:<app>           str   the refresh lock

Immutable value objects; thread-safe.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlsplit

__all__ = ["KeySpace", "app_fingerprint"]

_BUCKET_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_FINGERPRINT_SALT = b"bitrix_threaded shared limits: application fingerprint v1"


def app_fingerprint(*parts: str) -> str:
    """A short, one-way name for an application, e.g. from a webhook's user and code.

    A keyed SHA-256 cut to 16 hex digits: stable across processes and hosts, and
    too short to carry the secret it was made from.
    """
    message = "\x1f".join(parts).encode("utf-8")
    return hmac.new(_FINGERPRINT_SALT, message, hashlib.sha256).hexdigest()[:16]


def portal_host(base_url: str) -> str:
    """The ``host[:port]`` of a portal URL, lower-cased (the portal's identity)."""
    netloc = urlsplit(base_url).netloc.lower()
    # A URL with user info would put it into a key; portal URLs have none, but be sure.
    return netloc.rsplit("@", 1)[-1]


def check_bucket_key(bucket_key: object) -> str:
    """Validate an optional ``bucket_key`` (None or a short token); return it or ""."""
    if bucket_key is None:
        return ""
    if not isinstance(bucket_key, str):
        raise TypeError(f"bucket_key must be a str or None, got {type(bucket_key).__name__}")
    if not _BUCKET_KEY.match(bucket_key):
        raise ValueError("bucket_key must be 1-64 characters of letters, digits, '_.:-'")
    return bucket_key


class KeySpace:
    """The Redis key names of one portal, one application and one bucket."""

    __slots__ = ("prefix", "app", "bucket")

    def __init__(self, host: str, app: str, bucket_key: str = "") -> None:
        if not host or any(c in host for c in "{} "):
            raise ValueError("the portal host must be non-empty, without braces or spaces")
        self.prefix = "{bt:" + host + "}"
        self.app = app
        self.bucket = self.prefix + ":bucket" + (":" + bucket_key if bucket_key else "")

    def window(self, method: str) -> str:
        return f"{self.prefix}:win:{self.app}:{method}"

    def leases(self, method: str) -> str:
        return f"{self.prefix}:lease:{self.app}:{method}"

    @property
    def oauth(self) -> str:
        return f"{self.prefix}:oauth:{self.app}"

    @property
    def oauth_lock(self) -> str:
        return f"{self.prefix}:oauth-lock:{self.app}"

    def __repr__(self) -> str:
        return f"KeySpace({self.prefix!r}, app={self.app!r}, bucket={self.bucket!r})"
