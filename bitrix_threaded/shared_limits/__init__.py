"""Shared limits: one leaky bucket and one operating window for many processes and hosts.

``Bitrix(webhook, shared_limits="redis://host:6379/0")`` (or a ``redis.Redis``
client, or the ``BITRIX_SHARED_LIMITS`` environment variable) makes every process
using the same Redis and the same portal book its requests from one shared bucket
and one operating-time window per application and method. The pieces:

- :mod:`.keys` - key names, hash-tagged per portal; applications named by a hash;
- :mod:`.scripts` - the Lua scripts (bucket booking, rate cut/restore, window leases);
- :mod:`.link` - Redis up/down, the fallback warning and re-probing;
- :mod:`.bucket`, :mod:`.window` - drop-ins for the in-process limiter classes;
- :mod:`.oauth`, :mod:`.seal` - OAuth refresh once across processes, tokens sealed.

Needs the optional ``redis`` package (``pip install "bitrix_threaded[redis]"``).
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ..clock import SYSTEM_CLOCK, Clock
from .bucket import SharedBucket
from .keys import KeySpace, app_fingerprint, check_bucket_key, portal_host
from .link import RedisLink, SharedLimitsUnavailable
from .oauth import SharedOAuthRefresher
from .scripts import Scripts
from .window import SharedWindow

__all__ = ["ENV_VAR", "SharedBucket", "SharedLimits", "SharedLimitsUnavailable",
           "SharedOAuthRefresher", "SharedWindow"]

#: The environment variable read when ``shared_limits`` is not given.
ENV_VAR = "BITRIX_SHARED_LIMITS"

DEFAULT_FALLBACK_SHARE = 0.25
#: Socket timeouts of a client made from a URL: a stalled Redis costs one request
#: this long, once per probe, never the export.
SOCKET_TIMEOUT = 0.5

_SCHEMES = ("redis://", "rediss://", "unix://")


def _client_from_url(url: str) -> Any:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ImportError('shared_limits needs the redis package: '
                          'pip install "bitrix_threaded[redis]"') from None
    if not url.lower().startswith(_SCHEMES):
        raise ValueError("shared_limits must be a redis://, rediss:// or unix:// URL "
                         "or a redis.Redis client")
    try:
        return redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)
    except ValueError:
        # redis-py's message may repeat the URL, password included.
        raise ValueError("shared_limits: the Redis URL could not be parsed") from None


def _fallback(value: object) -> tuple[str, float]:
    """``shared_limits_fallback`` as (mode, share)."""
    if value == "local":
        return "local", DEFAULT_FALLBACK_SHARE
    if value == "raise":
        return "raise", DEFAULT_FALLBACK_SHARE
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0.0 < float(value) <= 1.0:
            raise ValueError("shared_limits_fallback as a share of the rate must be in (0, 1]")
        return "local", float(value)
    if isinstance(value, str):
        raise ValueError('shared_limits_fallback must be "local", "raise" or a share in (0, 1]')
    raise TypeError('shared_limits_fallback must be "local", "raise" or a number in (0, 1]')


class SharedLimits:
    """A Redis connection for shared limits, with its link state and scripts.

    ``target``: a ``redis://``/``rediss://``/``unix://`` URL or a ``redis.Redis``
    client (used as given: set short socket timeouts on it, or a stalled Redis
    stalls the requests that wait on it). ``fallback``: ``"local"`` (the in-process
    limiter at a quarter of the rate while Redis is unavailable), a share in (0, 1]
    for the same at that share, or ``"raise"``. ``bucket_key``: separates the bucket
    of hosts that reach the portal from different public addresses (the portal
    counts per portal and source address).

    Thread-safe; one per :class:`~bitrix_threaded.Bitrix`.
    """

    def __init__(self, target: Any, *, fallback: object = "local",
                 bucket_key: Optional[str] = None, clock: Clock = SYSTEM_CLOCK) -> None:
        mode, share = _fallback(fallback)
        self.bucket_key = check_bucket_key(bucket_key)
        self._owned = isinstance(target, str)
        if isinstance(target, str):
            client = _client_from_url(target.strip())
        elif callable(getattr(target, "register_script", None)):
            client = target
        else:
            raise TypeError("shared_limits must be a Redis URL or a redis.Redis client, got "
                            f"{type(target).__name__}")
        self.client = client
        self.fallback_mode = mode
        self.fallback_share = share
        self.clock = clock
        self.link = RedisLink(clock=clock, fallback=mode)
        self.scripts = Scripts(client)

    @classmethod
    def resolve(cls, target: Any, *, fallback: object = "local",
                bucket_key: Optional[str] = None,
                clock: Clock = SYSTEM_CLOCK) -> Optional["SharedLimits"]:
        """``target`` as given, else ``$BITRIX_SHARED_LIMITS``; None when neither
        (or ``target`` is False): the in-process limiter."""
        if target is False:
            return None
        if target is None:
            target = os.environ.get(ENV_VAR, "").strip() or None
            if target is None:
                if bucket_key is not None:
                    raise ValueError("bucket_key goes with shared_limits")
                return None
        return cls(target, fallback=fallback, bucket_key=bucket_key, clock=clock)

    def keyspace(self, base_url: str, *app: str) -> KeySpace:
        """Key names for the portal at ``base_url`` and the application named by ``app``."""
        host = portal_host(base_url)
        return KeySpace(host, app_fingerprint(host, *app), self.bucket_key)

    def bucket(self, keys: KeySpace, **kwargs: Any) -> SharedBucket:
        return SharedBucket(self.scripts, self.link, keys, clock=self.clock,
                            fallback_share=self.fallback_share, **kwargs)

    def window(self, keys: KeySpace, **kwargs: Any) -> SharedWindow:
        return SharedWindow(self.scripts, self.link, keys, clock=self.clock, **kwargs)

    def oauth(self, keys: KeySpace, endpoint: str, **kwargs: Any) -> SharedOAuthRefresher:
        return SharedOAuthRefresher(endpoint, scripts=self.scripts, link=self.link, keys=keys,
                                    clock=self.clock, **kwargs)

    @property
    def round_trips(self) -> int:
        """Redis round trips made so far (scripts and plain commands)."""
        return self.scripts.round_trips

    def close(self) -> None:
        """Disconnect a client made from a URL (a client passed in is left alone)."""
        if self._owned:
            self.client.close()

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return (f"SharedLimits(fallback={self.fallback_mode!r}, share={self.fallback_share}, "
                f"bucket_key={self.bucket_key!r})")
