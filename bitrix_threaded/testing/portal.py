"""FakePortal: a fake Bitrix24 portal served over real HTTP on loopback."""
from __future__ import annotations

import random
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from .engine import EngineSettings, Reply, RestEngine
from .faults import FaultInjector
from .limits import LeakyBucket, OperatingWindow, as_clock
from .oauth import OAuthCredentials, TokenRegistry
from .profiles import CostProfile, resolve_profile
from .server import PortalHTTPServer
from .stats import PortalStats

__all__ = ["FakePortal"]

STANDARD_BUCKET = (50, 2.0)
ENTERPRISE_BUCKET = (250, 5.0)
DEFAULT_OPERATING_LIMIT = 480.0


def _number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False,
            maximum: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _bucket(standard: bool, enterprise: bool, capacity: Optional[float],
            rate: Optional[float], time_scale: float, clock: Any) -> Optional[LeakyBucket]:
    """The leaky bucket, or None when neither standard limits nor bucket settings ask for it."""
    if not standard and capacity is None and rate is None:
        return None
    default_capacity, default_rate = ENTERPRISE_BUCKET if enterprise else STANDARD_BUCKET
    capacity = default_capacity if capacity is None else _number(
        "bucket_capacity", capacity, minimum=1)
    rate = default_rate if rate is None else _number("bucket_rate", rate, strict=True)
    # Scaled time runs faster: the bucket drains proportionally faster.
    return LeakyBucket(capacity, rate / time_scale, clock)


class FakePortal:
    """A fake Bitrix24 portal: a real threaded HTTP server on ``host`` (loopback).

    Use as a context manager (``with FakePortal(deals=10_000) as portal``) or
    call :meth:`start` / :meth:`stop`. While running it serves the webhook
    URL :attr:`webhook`, the OAuth endpoint :attr:`oauth`, and control
    endpoints under ``/_portal/`` (``stats``, ``ids/<entity>``,
    ``reset_stats``, ``expire_tokens``, ``mutate``, ``oauth``).

    Data: ``deals``, ``leads``, ``contacts``, ``companies``, ``tasks``, ``users``
    records, generated from ``seed`` (or a ready ``store`` object with the data
    store's interface, in which case those arguments are ignored). References
    between generated records resolve: a deal's ``CONTACT_ID`` and ``COMPANY_ID``
    name records that exist.

    Timing: ``profile`` is ``"instant"`` (no sleeps, limits off unless asked
    for), ``"realistic"`` or ``"light"`` (see :mod:`.profiles`), or a
    :class:`CostProfile`; ``cost_*`` arguments override single coefficients.
    ``time_scale`` multiplies every sleep, the operating window and limit (and,
    under 1, the second ``operating_reset_at`` is rounded up to), and divides the
    bucket's drain rate, so a run at 0.25 is 4x faster with the same ratios.
    Operating seconds on the wire are scaled seconds.

    Limits: ``limits=None`` follows the profile; True/False force the standard
    limits on/off; an explicit ``bucket_capacity``/``bucket_rate`` enables the
    leaky bucket and an explicit ``operating_limit`` the per-method
    operating-time limit regardless. Defaults: 50 requests draining at 2/s
    (``enterprise=True``: 250 at 5/s), 480 s per method per ``operating_window``
    (600 s) in ten buckets. ``operating_min_seconds`` (model seconds) is the
    shortest call recorded; the real server skips calls under 0.1 s, but here
    the default is 0 so that every command counts (realistic list commands
    cost about 0.04 s and would otherwise never count).

    Faults: each /rest request fails with probability ``fault_rate``, with a
    kind drawn from ``fault_kinds``: ``"error"`` (503 INTERNAL_SERVER_ERROR,
    not executed), ``"disconnect"`` (connection closed with no reply, half of
    them *after* execution), ``"stall"`` (waits ``stall_seconds``, then
    answers).

    ``mutation_rate``: calls per second (real time, times ``time_scale``
    between calls) of a background thread inserting one record and deleting
    one, for exactly-once export tests. ``token_ttl``: OAuth access token
    lifetime. ``clock``: an object with ``time()`` (and optionally
    ``sleep(seconds)``) driving everything time-based on the server; default
    the :mod:`time` module; see :class:`~.limits.ManualClock`.

    Thread-safe: all methods may be called from any thread while it serves.
    Bad arguments raise TypeError/ValueError.
    """

    def __init__(self, *, deals: int = 0, leads: int = 0, contacts: int = 0, tasks: int = 0,
                 users: int = 10, seed: int = 1, companies: int = 0,
                 profile: Union[str, CostProfile] = "instant", time_scale: float = 1.0,
                 bucket_capacity: Optional[float] = None, bucket_rate: Optional[float] = None,
                 enterprise: bool = False,
                 operating_limit: Optional[float] = None, operating_window: float = 600.0,
                 limits: Optional[bool] = None, operating_min_seconds: float = 0.0,
                 fault_rate: float = 0.0, fault_kinds: Iterable[str] = ("error", "disconnect"),
                 stall_seconds: float = 5.0, mutation_rate: float = 0.0,
                 token_ttl: float = 3600.0, legacy_total_zero: bool = True,
                 host: str = "127.0.0.1", port: int = 0, clock: Any = None,
                 store: Any = None,
                 cost_base: Optional[float] = None, cost_per_record: Optional[float] = None,
                 cost_per_offset_row: Optional[float] = None,
                 cost_per_counted_row: Optional[float] = None,
                 cost_round_trip: Optional[float] = None) -> None:
        counts = {name: _count(name, value) for name, value in (
            ("deals", deals), ("leads", leads), ("contacts", contacts),
            ("companies", companies), ("tasks", tasks), ("users", users))}
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError("seed must be an int")
        if limits is not None and not isinstance(limits, bool):
            raise TypeError("limits must be None, True or False")
        if not isinstance(host, str) or not host:
            raise TypeError("host must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError("port must be an int between 0 and 65535")
        time_scale = _number("time_scale", time_scale, strict=True)
        costs = {name: _number(f"cost_{name}", value) for name, value in (
            ("base", cost_base), ("per_record", cost_per_record),
            ("per_offset_row", cost_per_offset_row), ("per_counted_row", cost_per_counted_row),
            ("round_trip", cost_round_trip)) if value is not None}
        cost_profile = resolve_profile(profile).with_costs(**costs)
        self._clock = as_clock(clock)
        self.profile = cost_profile
        self.time_scale = time_scale
        self.seed = seed
        self.host = host
        self._requested_port = port

        standard = cost_profile.limits if limits is None else limits
        bucket = _bucket(standard, enterprise, bucket_capacity, bucket_rate, time_scale,
                         self._clock)
        scaled_limit: Optional[float] = None
        if standard or operating_limit is not None:
            limit = DEFAULT_OPERATING_LIMIT if operating_limit is None else _number(
                "operating_limit", operating_limit, strict=True)
            scaled_limit = limit * time_scale
        window = _number("operating_window", operating_window, strict=True)
        self.operating_window = window
        self.mutation_rate = _number("mutation_rate", mutation_rate)
        faults = FaultInjector(fault_rate, fault_kinds, seed)
        ttl = _number("token_ttl", token_ttl, strict=True)
        settings = EngineSettings(
            profile=cost_profile, time_scale=time_scale, operating_limit=scaled_limit,
            operating_min_seconds=_number("operating_min_seconds", operating_min_seconds),
            stall_seconds=_number("stall_seconds", stall_seconds), webhook_user="1")

        if store is None:
            from .store import DataStore
            store = DataStore(seed=seed, legacy_total_zero=bool(legacy_total_zero),
                              json_rows=True, **counts)
        self.store = store
        self._stats = PortalStats()
        self.tokens = TokenRegistry(seed=seed, token_ttl=ttl, clock=self._clock)
        secrets = random.Random(f"webhook-{seed}")
        settings.webhook_token = "".join(
            secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
        self._initial_tokens = self.tokens.issue()
        self.engine = RestEngine(
            store=store, settings=settings, clock=self._clock, bucket=bucket,
            window=OperatingWindow(window * time_scale, 10, self._clock,
                                   resolution=min(1.0, time_scale)), faults=faults,
            tokens=self.tokens, stats=self._stats)
        self._mutation_rng = random.Random(f"mutations-{seed}")
        self._mutation_lock = threading.Lock()
        self._server: Optional[PortalHTTPServer] = None
        self._threads: List[threading.Thread] = []
        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> "FakePortal":
        """Bind and start serving in background threads; returns self.

        Raises RuntimeError if already running; OSError if the port is taken.
        """
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("the portal is already running")
            server = PortalHTTPServer((self.host, self._requested_port), self)
            self._stopping.clear()
            serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                     name=f"fake-portal-{server.server_port}", daemon=True)
            serve.start()
            self._threads = [serve]
            if self.mutation_rate > 0:
                mutator = threading.Thread(target=self._mutation_loop, daemon=True,
                                           name=f"fake-portal-mutations-{server.server_port}")
                mutator.start()
                self._threads.append(mutator)
            self._server = server
        return self

    def stop(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        with self._lifecycle:
            server, self._server = self._server, None
            if server is None:
                return
            self._stopping.set()
            server.shutdown()
            server.close_connections()
            server.server_close()
            for thread in self._threads:
                thread.join(timeout=5)
            self._threads = []

    def __enter__(self) -> "FakePortal":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- addresses ----------------------------------------------------------

    @property
    def port(self) -> int:
        server = self._server
        if server is None:
            raise RuntimeError("the portal is not running; call start() first")
        return server.server_port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running portal."""
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The REST endpoint for OAuth calls, ``http://HOST:PORT/rest/``."""
        return f"{self.url}/rest/"

    @property
    def domain(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def webhook(self) -> str:
        """The webhook URL ``http://HOST:PORT/rest/1/<token>/`` (contains a secret)."""
        return f"{self.url}/rest/1/{self.engine.settings.webhook_token}/"

    @property
    def oauth(self) -> OAuthCredentials:
        """The application's initial OAuth credentials (the refresh token rotates once used)."""
        access, refresh, _ = self._initial_tokens
        return self._credentials(access, refresh)

    def issue_oauth(self) -> OAuthCredentials:
        """Fresh, independent OAuth credentials for the same application."""
        access, refresh, _ = self.tokens.issue()
        return self._credentials(access, refresh)

    def _credentials(self, access: str, refresh: str) -> OAuthCredentials:
        return OAuthCredentials(
            client_id=self.tokens.client_id, client_secret=self.tokens.client_secret,
            refresh_token=refresh, access_token=access, endpoint=self.endpoint,
            token_url=f"{self.url}/oauth/token/")

    # -- state for tests ----------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """A snapshot of the counters (see :class:`~.stats.PortalStats`)."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def describe_limits(self) -> str:
        """The limits in force, in one line of unscaled portal seconds."""
        bucket = self.engine.bucket
        limit = self.engine.settings.operating_limit
        parts = []
        if bucket is None:
            parts.append("no request limit")
        else:
            parts.append(f"{bucket.capacity:g} requests at once, then "
                         f"{bucket.rate * self.time_scale:g}/s (503 beyond)")
        if limit is None:
            parts.append("no operating-time limit")
        else:
            parts.append(f"{limit / self.time_scale:g} s of operating time per method per "
                         f"{self.operating_window:g} s (429 beyond)")
        if self.time_scale != 1:
            parts.append(f"every duration times {self.time_scale:g}")
        return "; ".join(parts)

    def ids(self, entity: str) -> List[int]:
        """IDs of ``entity`` ("deal", "lead", "contact", "company", "task", "user") now."""
        ids: List[int] = self.store.ids(entity)
        return ids

    def count(self, entity: str) -> int:
        count: int = self.store.count(entity)
        return count

    def expire_tokens(self) -> int:
        """Expire every live access token now; returns how many there were."""
        return self.tokens.expire_all()

    def mutate(self, inserts: int = 1, deletes: int = 1) -> Tuple[List[int], List[int]]:
        """Insert and delete records now, as the mutation thread does; returns their IDs."""
        _count("inserts", inserts)
        _count("deletes", deletes)
        with self._mutation_lock:
            inserted, deleted = self.store.mutate(self._mutation_rng, inserts=inserts,
                                                  deletes=deletes)
        self._stats.count("inserted", len(inserted))
        self._stats.count("deleted", len(deleted))
        return inserted, deleted

    def _mutation_loop(self) -> None:
        interval = self.time_scale / self.mutation_rate
        while not self._stopping.wait(interval):
            try:
                self.mutate(1, 1)
            except Exception:
                self._record_internal_error()

    def _record_internal_error(self) -> None:
        self.engine.record_internal_error()

    @property
    def last_internal_error(self) -> Optional[str]:
        """Traceback of the last unexpected exception while serving (None if none)."""
        return self.engine.last_internal_error

    # -- control endpoints (/_portal/...) -----------------------------------

    def _control(self, http_method: str, name: str, params: Dict[str, Any]) -> Reply:
        if name == "stats":
            return Reply(200, self.stats())
        if name.startswith("ids/"):
            entity = name[len("ids/"):]
            try:
                ids = self.ids(entity)
            except (KeyError, ValueError):
                return Reply(404, {"error": "NOT_FOUND",
                                   "error_description": f"Unknown entity {entity!r}"})
            return Reply(200, {"entity": entity, "count": len(ids), "ids": ids})
        if name == "oauth":
            credentials = self.oauth
            return Reply(200, {field: getattr(credentials, field) for field in (
                "client_id", "client_secret", "refresh_token", "access_token", "endpoint",
                "token_url")})
        writers = {"reset_stats", "expire_tokens", "mutate"}
        if name in writers and http_method != "POST":
            return Reply(405, {"error": "METHOD_NOT_ALLOWED",
                               "error_description": f"use POST for /_portal/{name}"})
        if name == "reset_stats":
            self.reset_stats()
            return Reply(200, {"reset": True})
        if name == "expire_tokens":
            return Reply(200, {"expired": self.expire_tokens()})
        if name == "mutate":
            try:
                inserts = int(params.get("inserts", 1))
                deletes = int(params.get("deletes", 1))
                inserted, deleted = self.mutate(inserts, deletes)
            except (TypeError, ValueError) as exc:
                return Reply(400, {"error": "INVALID_REQUEST", "error_description": str(exc)})
            return Reply(200, {"inserted": inserted, "deleted": deleted})
        return Reply(404, {"error": "NOT_FOUND", "error_description": "Not found"})

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"FakePortal({where}, profile={self.profile.name!r})"
