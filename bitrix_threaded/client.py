"""The public facade: :class:`Bitrix`.

Thread safety: one ``Bitrix`` instance is meant to be shared by every thread of a
process (a Django or Flask worker, a script's own threads). All of them go through one
leaky bucket, one operating-time window and one concurrency gate, so together they
never exceed the portal's limits. Calls may be nested (a progress callback or
``token_func`` calling the client again) without deadlocking.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import warnings
import weakref
from itertools import chain
from typing import (
    Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union,
    cast,
)

import requests

from .auth import (
    DEFAULT_TOKEN_URL,
    Credentials,
    OAuthRefresher,
    TokenFunction,
    TokenSet,
    Webhook,
)
from .batch import MAX_BATCH_SIZE, Command, parse_batch_reply, prepare_encoded, split_reply
from .cancel import CancelToken, current_scope
from .clock import SYSTEM_CLOCK, Clock
from .driver import drive
from .encoding import encode_command, normalize
from .errors import BatchError, ClientClosed, InvalidResponse
from .limiter import ConcurrencyGate, LeakyBucket, OperatingWindow
from .methods import DETECT, list_method
from .pagination import (
    STRATEGIES,
    IdList,
    IdRanges,
    NotAList,
    OffsetPages,
    Step,
    Strategy,
    is_id_order,
    without_id_order,
)
from .progress import progress_bar
from .retry import RetryPolicy, is_write_method
from .runner import Runner
from .shared_limits import SharedLimits
from .transport import DEFAULT_MAX_REPLY_BYTES, DEFAULT_TIMEOUT, Timeout, Transport
from .validation import (
    BitrixWarning,
    check_method,
    check_number,
    check_params,
    check_ssl,
    check_timeout,
    expect,
    renamed_items,
)

log = logging.getLogger("bitrix_threaded")

Items = Union[Mapping[str, Any], Iterable[Any], None]
StrategyChoice = Union[str, type, None]


def _item_sequence(items: Any, what: str) -> List[Any]:
    """``items`` (any iterable but a string) as a list; generators are read once, here."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise TypeError(f"{what} must be a dict or a list (or other iterable) of dicts, "
                        f"got {type(items).__name__}")
    return list(items)


class _Collected:
    """The records of an export, gathered for :meth:`Bitrix.get_all` and put in key order.

    Runs (pages already in order) are kept as their first key and their page, in two
    flat lists: two objects for the garbage collector, not a tuple per page (the
    tuples lived as long as the export and made its full collections longer, which
    an event loop in the same process waits for). A single ``(key, record)`` pair is a
    run of one; keyless records go last, as they came.
    """

    def __init__(self) -> None:
        self.keys: List[Any] = []
        self.pages: List[List[Any]] = []
        self.keyless: List[Any] = []

    def add(self, step: Step) -> None:
        for key, record in step.records:
            if key is None:
                self.keyless.append(record)
            else:
                self.keys.append(key)
                self.pages.append([record])
        for key, page in step.runs:
            self.keys.append(key)
            self.pages.append(page)

    def in_order(self) -> List[Any]:
        # A C key function, and the join in C: no Python frame per record.
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        ordered = list(chain.from_iterable(map(self.pages.__getitem__, order)))
        ordered.extend(self.keyless)
        return ordered


class Bitrix:
    """A blocking, thread-pool client for one Bitrix24 portal.

    ``webhook`` is an inbound webhook URL (``https://portal/rest/1/code/``), or, with
    ``token_func`` or the OAuth arguments, the portal's REST endpoint
    (``https://portal/rest/``).

    Limits: ``request_pool_size`` and ``requests_per_second`` mirror the portal's leaky
    bucket (50 and 2 by default; Enterprise plans: 250 and 5); ``operating_time_limit``
    is the per-method budget of server seconds in a 10-minute window (480), honoured
    when ``respect_velocity_policy`` is true; ``operating_window`` is that window's
    length (600 s; by default ``operating_time_limit * 1.25``, the standard ratio, so
    that scaling the limit scales the window too). ``max_workers`` bounds concurrent
    requests; ``batch_size`` (1..50) is the number of commands per batch.

    OAuth: either ``token_func`` (a callable returning the access token, called again
    when it expires) or ``client_id`` + ``client_secret`` + ``refresh_token`` (and
    optionally ``access_token``), refreshed through ``oauth_token_url``; rotated tokens
    are passed to ``on_token_refresh(token_set)`` so they can be stored.

    The first ten parameters, up to ``ssl``, may be passed by position in
    fast_bitrix24's order; every other one is keyword-only.

    ``client``: a ``requests.Session`` used as the template of every worker thread's
    session: its headers, proxies, certificates, cookies, auth and mounted adapters
    apply to every request. It stays the caller's to close.

    ``ssl``: True to verify certificates, False not to, or a CA bundle path (checked
    to exist); it is applied to every request, so ``REQUESTS_CA_BUNDLE`` in the
    environment cannot override False or a path. With ``client``, True means the
    template's own ``verify``.

    ``timeout``: seconds per connect and per socket read, or a ``(connect, read)``
    pair; ``deadline``: seconds for a whole request, reply included (default: connect
    + twice the read timeout); ``max_reply_bytes``: the largest decoded reply accepted
    (64 MiB). Redirects are not followed (see :class:`PortalMoved`), except a same-host
    upgrade from http to https.

    ``verbose``: progress bars on multi-item calls and list exports, drawn only where
    someone watches (standard error is a terminal, or a Jupyter notebook);
    ``BITRIX_THREADED_PROGRESS=1`` or ``0`` forces them on or off, and
    ``verbose=False`` turns them off whatever the environment says.

    Several processes or hosts: ``shared_limits`` (a ``redis://`` URL or a
    ``redis.Redis`` client; default ``$BITRIX_SHARED_LIMITS``; False: never) makes
    every client on the same Redis and portal share one leaky bucket, one
    operating window per application and method, and OAuth rotations (needs the
    ``redis`` extra). ``shared_limits_fallback``: while Redis is unavailable,
    ``"local"`` limits each process to a quarter of the rate (a number in (0, 1]:
    that share), ``"raise"`` stops with ``SharedLimitsUnavailable``. ``bucket_key``
    separates the bucket of hosts with their own public address.
    """

    def __init__(
        self,
        webhook: str,
        token_func: Optional[Callable[[], str]] = None,
        verbose: bool = True,
        respect_velocity_policy: bool = True,
        request_pool_size: int = 50,
        requests_per_second: float = 2.0,
        batch_size: int = MAX_BATCH_SIZE,
        operating_time_limit: float = 480.0,
        client: Optional[requests.Session] = None,
        ssl: Union[bool, str] = True,
        *,
        operating_window: Optional[float] = None,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        refresh_token: Optional[str] = None,
        access_token: Optional[str] = None,
        on_token_refresh: Optional[Callable[[TokenSet], None]] = None,
        oauth_token_url: str = DEFAULT_TOKEN_URL,
        timeout: Timeout = DEFAULT_TIMEOUT,
        deadline: Optional[float] = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        max_workers: Optional[int] = None,
        retry: Optional[RetryPolicy] = None,
        clock: Clock = SYSTEM_CLOCK,
        shared_limits: Any = None,
        shared_limits_fallback: Union[str, float] = "local",
        bucket_key: Optional[str] = None,
    ):
        expect("verbose", verbose, bool)
        expect("respect_velocity_policy", respect_velocity_policy, bool)
        if client is not None and not isinstance(client, requests.Session):
            raise TypeError(f"client must be a requests.Session, got {type(client).__name__}")
        check_number("request_pool_size", request_pool_size, integer=True, low=1,
                     inclusive=True)
        check_number("requests_per_second", requests_per_second)
        check_number("batch_size", batch_size, integer=True, low=1, inclusive=True)
        if batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        check_number("operating_time_limit", operating_time_limit)
        check_number("operating_window", operating_window, optional=True)
        check_number("max_workers", max_workers, integer=True, low=1, inclusive=True,
                     optional=True)
        check_number("deadline", deadline, optional=True)
        check_number("max_reply_bytes", max_reply_bytes, integer=True, low=1, inclusive=True)
        timeout = check_timeout(timeout)
        ssl = check_ssl(ssl)
        expect("retry", retry, Optional[RetryPolicy])

        shared = SharedLimits.resolve(
            shared_limits, fallback=shared_limits_fallback, bucket_key=bucket_key, clock=clock)
        self.credentials = self._credentials(
            webhook, token_func, client_id, client_secret, refresh_token, access_token,
            oauth_token_url, on_token_refresh,
        )
        self.shared_limits = shared
        shared_keys = None
        if self.shared_limits is not None:
            shared_keys = self.shared_limits.keyspace(
                self.credentials.base_url, *_app_identity(self.credentials))
            if isinstance(self.credentials, OAuthRefresher):
                # The same credentials, with refreshes coordinated through Redis.
                self.credentials = self.shared_limits.oauth(
                    shared_keys, webhook, client_id=client_id, client_secret=client_secret,
                    refresh_token=refresh_token, access_token=access_token,
                    token_url=oauth_token_url, on_refresh=on_token_refresh)
        self.verbose = verbose
        self.batch_size = batch_size
        self.respect_velocity_policy = respect_velocity_policy
        # Enough workers to spend the bucket's whole burst at once.
        workers = max_workers or min(64, request_pool_size)
        self.transport = Transport(self.credentials, timeout=timeout, verify=ssl,
                                   deadline=deadline, max_reply_bytes=max_reply_bytes,
                                   template=client)
        if isinstance(self.credentials, OAuthRefresher):
            token_url = oauth_token_url
            self.credentials.bind(lambda query: self.transport.get_json(token_url, query))
        # The portal counts a request when it arrives, not when we send it: requests
        # sent apart can arrive together. Keep one request plus 0.1 s of drain free.
        margin = min(request_pool_size - 1.0, 1.0 + 0.1 * float(requests_per_second))
        bucket_settings = dict(capacity=request_pool_size, rate=float(requests_per_second),
                               clock=clock, margin=max(0.0, margin))
        # A method blocked (429) with no reset time known is held for the whole window:
        # only then is its time certainly freed. Cost estimates decay as the portal
        # frees time, one minute-bucket (a tenth of the window) at a time.
        span = float(operating_window) if operating_window is not None else \
            float(operating_time_limit) * 1.25
        self._bars: List[Any] = []
        self._bars_lock = threading.Lock()  # guards the bars and the waits announced
        self._announced: Dict[Tuple[str, str], float] = {}
        window_settings = dict(
            limit=float(operating_time_limit), clock=clock, enabled=respect_velocity_policy,
            default_block=span, cost_half_life=span / 10, span=span,
            on_wait=self._announce_wait,
        )
        self.bucket: Any
        self.window: Any
        if self.shared_limits is None or shared_keys is None:
            self.bucket = LeakyBucket(**bucket_settings)  # type: ignore[arg-type]
            self.window = OperatingWindow(**window_settings)  # type: ignore[arg-type]
        else:
            del bucket_settings["clock"], window_settings["clock"]
            self.bucket = self.shared_limits.bucket(shared_keys, **bucket_settings)
            self.window = self.shared_limits.window(shared_keys, **window_settings)
        self.gate = ConcurrencyGate(workers)
        self._runner = Runner(
            self.transport,
            self.credentials,
            bucket=self.bucket,
            window=self.window,
            gate=self.gate,
            policy=retry or RetryPolicy(),
            clock=clock,
            max_workers=workers,
            on_wait=self._announce_wait,
        )
        # Cancelled by close(): every call's token is a child of it.
        self._root = CancelToken()

    @staticmethod
    def _credentials(
        webhook: Any,
        token_func: Optional[Callable[[], str]],
        client_id: Optional[str],
        client_secret: Optional[str],
        refresh_token: Optional[str],
        access_token: Optional[str],
        token_url: str,
        on_refresh: Optional[Callable[[TokenSet], None]],
    ) -> Credentials:
        if not isinstance(webhook, str):
            raise TypeError(f"webhook must be a str URL, got {type(webhook).__name__}")
        oauth = (client_id, client_secret, refresh_token)
        if token_func is not None:
            if any(oauth):
                raise ValueError("pass either token_func or OAuth client credentials, not both")
            return TokenFunction(webhook, token_func)
        if any(oauth):
            if not all(oauth):
                raise ValueError("OAuth needs client_id, client_secret and refresh_token")
            return OAuthRefresher(
                webhook,
                client_id=client_id,  # type: ignore[arg-type]
                client_secret=client_secret,  # type: ignore[arg-type]
                refresh_token=refresh_token,  # type: ignore[arg-type]
                access_token=access_token,
                token_url=token_url,
                on_refresh=on_refresh,
            )
        return Webhook(webhook)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop every call, the worker threads and the HTTP sessions. Idempotent; any thread.

        Calls running in other threads stop promptly: nothing new is sent for them,
        requests already on the wire get a second to finish (then their connections are
        cut off), and they raise :class:`ClientClosed`
        (or :class:`BatchError` reporting unsent writes as not executed and those
        on the wire as ambiguous). Later calls raise :class:`ClientClosed`.
        """
        self._root.cancel("the client was closed", closed=True)
        self._runner.close()
        self.transport.close()
        if self.shared_limits is not None:
            self.shared_limits.close()

    @property
    def closed(self) -> bool:
        return self._root.cancelled

    def _call_token(self) -> CancelToken:
        """The token of one public call: cancelled by close() or by the calling context's
        :func:`~bitrix_threaded.cancel.cancel_scope`, read here, at call entry. Detach it
        when the call ends."""
        if self._root.cancelled:
            raise ClientClosed()
        token = self._root.child()
        scope = current_scope()
        if scope is not None:
            token.follow(scope)
        return token

    @contextlib.contextmanager
    def _call(self) -> Iterator[CancelToken]:
        token = self._call_token()
        try:
            yield token
        finally:
            token.detach()

    def _announce_wait(self, method: str, reason: str, seconds: float) -> None:
        """A long wait is visible: an INFO line, and the progress bars say why.

        Many threads wait together (a held method, a slowed bucket): a wait is told
        once, not again until it is over or a longer one begins.
        """
        now = self._runner.clock.monotonic()
        with self._bars_lock:
            if now + seconds <= self._announced.get((method, reason), -1.0):
                return
            self._announced[(method, reason)] = now + seconds
            bars = list(self._bars)
        whole = int(round(seconds))
        shown = f"{whole // 60:02d}:{whole % 60:02d}"
        log.info("%s: %s (%s)", method, reason, shown)
        for bar in bars:
            bar.set_postfix_str(f"{reason} ({shown})", refresh=True)

    @contextlib.contextmanager
    def _bar(self, *, total: Optional[int], desc: str, unit: str) -> Iterator[Any]:
        bar = progress_bar(total, desc, unit)
        with self._bars_lock:
            self._bars.append(bar)
        try:
            yield bar
        finally:
            with self._bars_lock:
                self._bars.remove(bar)
            bar.close()

    def __enter__(self) -> "Bitrix":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Bitrix({self.credentials.redact(self.credentials.base_url)!r}, "
            f"requests_per_second={self.bucket.rate}, request_pool_size={self.bucket.capacity})"
        )

    # -- calls ---------------------------------------------------------------------------
    def call(
        self,
        method: str,
        items: Items = None,
        *,
        raw: bool = False,
        item_list: Items = None,
    ) -> Any:
        """Call ``method`` once, or once per item of a list.

        * ``items`` a dict (or None): one call; returns its ``result``.
        * ``items`` a list, tuple, generator or other iterable of dicts: one command
          per item, sent in batches; returns a tuple of results in input order. If any
          command fails, raises :class:`BatchError` listing every failure with the
          successful results in ``.results``.
        * ``raw=True``: one unbatched JSON call with ``items`` sent as given (a dict,
          or a list for methods that take positional parameters); returns the whole
          reply envelope (``result``, ``time``, ``total``, ``next``...).

        ``item_list`` is the former name of ``items`` (deprecated).
        """
        items = renamed_items(items, item_list)
        name = check_method(method)
        expect("raw", raw, bool)
        if raw:
            payload: Any = items
            if payload is not None and not isinstance(payload, Mapping):
                payload = _item_sequence(payload, "with raw=True, items")
            elif payload is not None:
                payload = dict(payload)
            try:
                json.dumps(payload)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"with raw=True, items must be JSON-serializable: {exc}") from None
            with self._call() as token:
                return self._runner.request(
                    name, payload, write=is_write_method(name), token=token
                ).data
        if items is None or isinstance(items, Mapping):
            params = check_params(items)
            payload = normalize(params)
            with self._call() as token:
                reply = self._runner.request(name, payload, write=is_write_method(name),
                                             token=token)
            if "result" not in reply.data:
                raise InvalidResponse(
                    "INVALID_RESPONSE", "the reply has no 'result'", status=reply.status,
                    method=name,
                )
            return reply.data["result"]
        listed = _item_sequence(items, "items")
        commands = []
        for i, item in enumerate(listed):
            command = Command(name, check_params(item, where=f"items[{i}]"))
            command.text  # encoded once, here: bad values raise before any request
            commands.append(command)
        results = self._run(commands, desc=name)
        return tuple(results[i] for i in range(len(commands)))

    def _run(self, commands: Sequence[Command], *, desc: str, unit: str = "item") -> Dict[int, Any]:
        with self._call() as token, self._progress(len(commands), desc, unit) as advance:
            results, failures = self._runner.run_commands(
                commands, batch_size=self.batch_size, progress=advance, token=token,
                method=desc,
            )
        if failures:
            raise BatchError(failures, results, total=len(commands), method=desc)
        return results

    @contextlib.contextmanager
    def _progress(self, total: int, desc: str, unit: str) -> Iterator[Callable[[int], None]]:
        if not self.verbose or total <= 1:
            yield lambda n: None
            return
        with self._bar(total=total, desc=desc, unit=unit) as bar:
            yield lambda n: _advance(bar, n)

    def call_batch(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Send one ``batch`` request as given: ``{"halt": 0, "cmd": {label: "method?query"}}``.

        ``cmd`` values are ``"method?query"`` strings (``$result[label]`` references
        allowed) or ``(method, params)`` pairs, which are encoded for you. Returns
        ``{label: result}``. If any command failed, raises :class:`BatchError` whose
        ``.results_by_label`` holds the successful ones.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"call_batch takes a dict, got {type(params).__name__}")
        unknown = set(params) - {"halt", "cmd"}
        if unknown:
            raise ValueError(f"call_batch: unexpected keys {sorted(unknown)}")
        cmd = params.get("cmd")
        if not isinstance(cmd, Mapping) or not cmd:
            raise TypeError("call_batch: 'cmd' must be a non-empty dict of label -> command")
        if len(cmd) > MAX_BATCH_SIZE:
            raise ValueError(f"call_batch: at most {MAX_BATCH_SIZE} commands per batch")
        halt = params.get("halt", 0)
        if halt not in (0, 1, True, False):
            raise ValueError("call_batch: 'halt' must be 0, 1, True or False")
        encoded: Dict[str, str] = {}
        for label, command in cmd.items():
            if not isinstance(label, str) or not label:
                raise TypeError(f"call_batch: labels must be non-empty str, got {label!r}")
            if isinstance(command, str):
                check_method(command.split("?", 1)[0])
                encoded[label] = command
            elif isinstance(command, (tuple, list)) and len(command) == 2:
                encoded[label] = encode_command(check_method(command[0]),
                                                check_params(command[1]))
            else:
                raise TypeError(
                    f"call_batch: cmd[{label!r}] must be 'method?query' or (method, params)"
                )
        batch = prepare_encoded(encoded, halt=bool(halt))
        with self._call() as token:
            reply = self._runner.send_batch(batch, token)
        order = list(encoded)
        chunk = [(i, Command(batch.labels[name])) for i, name in enumerate(order)]
        results, failures = split_reply(parse_batch_reply(reply.data), chunk,
                                        label=order.__getitem__)
        for failure in failures:
            self.transport.scrub(failure.error)
        by_label = {order[i]: value for i, value in sorted(results.items())}
        if failures:
            error = BatchError(failures, results, total=len(order), method="batch")
            error.results_by_label = by_label  # type: ignore[attr-defined]
            raise error
        return by_label

    def get_by_ID(
        self,
        method: str,
        ID_list: Iterable[Union[int, str]],
        ID_field_name: str = "ID",
        params: Optional[Mapping[str, Any]] = None,
    ) -> Dict[Union[int, str], Any]:
        """Call ``method`` (e.g. ``crm.deal.get``) once per ID; returns ``{ID: result}``.

        ``ID_list`` is any iterable of IDs (a generator is read once). The dict keeps
        its order and the IDs as given (``1`` and ``"1"`` are different keys;
        duplicates are fetched once); failures raise :class:`BatchError`. ``params``
        are added to every command.
        """
        name = check_method(method)
        if isinstance(ID_list, (str, bytes, Mapping)) or not isinstance(ID_list, Iterable):
            raise TypeError("ID_list must be a list (or other iterable) of IDs")
        expect("ID_field_name", ID_field_name, str)
        extra = dict(check_params(params))
        ids: List[Union[int, str]] = []
        seen = set()
        for value in ID_list:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise TypeError(f"IDs must be int or str, got {value!r}")
            if isinstance(value, str) and not value.strip().isdigit():
                raise ValueError(f"not an ID: {value!r}")
            if value not in seen:
                seen.add(value)
                ids.append(value)
        commands = [Command(name, {**extra, ID_field_name: value}) for value in ids]
        results = self._run(commands, desc=name)
        return {value: results[i] for i, value in enumerate(ids)}

    # -- lists -------------------------------------------------------------------------
    def get_all(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        strategy: StrategyChoice = None,
        ids: Optional[Sequence[Union[int, str]]] = None,
    ) -> List[Any]:
        """Every record of a list method, as a list.

        Records come in ID order (for offset pages with a custom ``order``: the
        server's order). Nested results (``result.items``, ``result.tasks``...) are
        flattened. ``strategy``: ``"id_ranges"`` (the default where the method can
        filter and order by ID), ``"offset"`` (any method, any ``order``) or
        ``"id_list"`` with ``ids`` (records with those IDs through the list method, 50
        per command). Passing ``ids`` alone picks ``"id_list"``.

        Methods whose paging get_all cannot do exactly (their own cursors, records
        keyed by ID) raise ValueError before any request, naming the call to use. A
        method that is not a list (``crm.deal.fields``, ``crm.deal.get``) gives its
        ``result`` back unchanged, with a :class:`BitrixWarning`, as fast_bitrix24 does.
        """
        pager = self._pager(method, params, strategy, ids, parallel=self._runner.max_workers)
        collected = _Collected()
        with self._call() as token:
            try:
                for step in self._pages(pager, max_in_flight=self._runner.max_workers,
                                        token=token):
                    collected.add(step)
            except NotAList as reply:
                warnings.warn(f"{reply.method} is not a list method: get_all() returns its "
                              "result unchanged (use call() for single calls)",
                              BitrixWarning, stacklevel=2)
                # Returned unchanged, as fast_bitrix24 does; typed as the usual list so
                # callers of list methods need no narrowing.
                return cast(List[Any], reply.result)
        return collected.in_order()

    def iter_all(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        strategy: StrategyChoice = None,
        ids: Optional[Sequence[Union[int, str]]] = None,
        max_in_flight: Optional[int] = None,
    ) -> Iterator[Any]:
        """Like :meth:`get_all`, but yields records as pages arrive (in no set order).

        Memory stays bounded by ``max_in_flight`` batches in flight (default: 6, or
        fewer workers) and the one whose records are being handed out (a batch of 2,500
        full deals is about 10 MB once decoded), whatever the size of the export. At
        the standard limits six pace a long export as fast as eight did, in less
        memory; a larger bucket (Enterprise) may use more. Stopping the iteration
        early cancels the requests not yet sent.
        """
        limit = min(6, self._runner.max_workers) if max_in_flight is None else max_in_flight
        expect("max_in_flight", limit, int)
        if limit < 1:
            raise ValueError("max_in_flight must be >= 1")
        pager = self._pager(method, params, strategy, ids, parallel=limit)
        # The token (and the scope it follows) is taken now, at creation, not at the
        # first next(): a generator runs in whatever context consumes it. An iterator
        # dropped unstarted never runs its finally: let it go when it is collected.
        token = self._call_token()
        records = self._iter_records(pager, limit, token)
        weakref.finalize(records, token.detach)
        return records

    def _iter_records(self, pager: Strategy, limit: int,
                      token: CancelToken) -> Iterator[Any]:
        try:
            for step in self._pages(pager, max_in_flight=limit, token=token):
                yield from step.items()
        except NotAList as reply:
            raise InvalidResponse(
                "INVALID_RESPONSE", f"{reply.method} is not a list method: its result is "
                "no page of records (use call() for it)", method=reply.method,
            ) from None
        finally:
            token.detach()

    def _pages(self, pager: Strategy, *, max_in_flight: int,
               token: CancelToken) -> Iterator[Step]:
        pager.retry_policy = self._runner.policy
        with contextlib.ExitStack() as stack:
            bar = None
            if self.verbose:
                bar = stack.enter_context(
                    self._bar(total=pager.total, desc=pager.method.name, unit="rec"))
            for step in drive(self._runner, pager, max_in_flight=max_in_flight,
                              token=token):
                if bar is not None:
                    if pager.total is not None and bar.total != pager.total:
                        bar.total = pager.total
                        bar.refresh()
                    _advance(bar, step.count())
                yield step

    def _pager(
        self,
        method: str,
        params: Optional[Mapping[str, Any]],
        strategy: StrategyChoice,
        ids: Optional[Sequence[Union[int, str]]],
        *,
        parallel: int,
    ) -> Strategy:
        name = check_method(method)
        checked = dict(check_params(params))
        described = list_method(name)
        if described.refused is not None:
            raise ValueError(f"get_all()/iter_all() cannot page {described.name}: "
                             f"{described.refused}")
        for key in list(checked):
            if key.lower() == "start":
                warnings.warn("'start' is ignored by get_all()/iter_all(): they page "
                              "through every record", BitrixWarning, stacklevel=3)
                del checked[key]
        if isinstance(strategy, str):
            if strategy not in STRATEGIES:
                raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
            chosen: Optional[type] = STRATEGIES[strategy]
        elif strategy is None or (isinstance(strategy, type) and issubclass(strategy, Strategy)):
            chosen = strategy
        else:
            raise TypeError("strategy must be a strategy name or class")
        if ids is not None:
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
                raise TypeError("ids must be a list of IDs")
            if chosen not in (None, IdList):
                raise ValueError("ids goes with the id_list strategy")
            return IdList(described, checked, self.batch_size, ids=ids)
        if chosen is IdList:
            raise ValueError("the id_list strategy needs ids=[...]")
        if chosen is None:
            by_id = described.id_cursor and is_id_order(described, checked)
            chosen = IdRanges if by_id else OffsetPages
        if chosen is IdRanges:
            if described.id_cursor:
                checked = without_id_order(described, checked)
            budget = int(self.bucket.capacity - self.bucket.margin - self.bucket.level)
            return IdRanges(described, checked, self.batch_size, parallel=parallel,
                            request_budget=max(1, budget))
        return OffsetPages(described, checked, self.batch_size)

    def list_and_get(self, method_branch: str, ID_field_name: str = "ID") -> Dict[Any, Any]:
        """``{ID: record}`` for every record of ``method_branch`` (e.g. ``"crm.deal"``).

        Lists the IDs with ``<branch>.list`` (ID ranges, ``select`` of the ID only),
        then fetches each record with ``<branch>.get``, as fast_bitrix24 does. With the
        default ``ID_field_name``, families that name the ID otherwise are handled:
        ``list_and_get("tasks.task")`` reads ``id`` from the list and passes
        ``taskId`` to ``tasks.task.get``.
        """
        branch = check_method(method_branch)
        expect("ID_field_name", ID_field_name, str)
        described = list_method(f"{branch}.list")
        key, param = ID_field_name, ID_field_name
        if ID_field_name == "ID":
            if described.record_id not in (None, DETECT):
                key = described.record_id
            param = described.get_id_param
        listed = self.get_all(f"{branch}.list", {"select": [ID_field_name]})
        ids = []
        for record in listed:
            value = record.get(key) if isinstance(record, Mapping) else None
            if value is None:
                raise InvalidResponse("INVALID_RESPONSE",
                                      f"a listed record has no {key!r}",
                                      method=f"{branch}.list")
            ids.append(value)
        return self.get_by_ID(f"{branch}.get", ids, param)

    @contextlib.contextmanager
    def slow(self, max_concurrent_requests: int = 1) -> Iterator["Bitrix"]:
        """Temporarily cap concurrent requests (for every thread using this client)."""
        expect("max_concurrent_requests", max_concurrent_requests, int)
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        with self.gate.cap(max_concurrent_requests):
            yield self

    def stats(self) -> Dict[str, Any]:
        """The limiter's view: bucket rate, concurrency, per-method operating budgets."""
        stats = {
            "requests_per_second": self.bucket.current_rate,
            "concurrency": self.gate.effective_limit,
            "operating": self.window.snapshot(),
        }
        if self.shared_limits is not None:
            stats["shared_limits"] = {
                "redis_up": self.shared_limits.link.up,
                "round_trips": self.shared_limits.round_trips,
                "outages": self.shared_limits.link.outages,
            }
        return stats


def _app_identity(credentials: Credentials) -> Tuple[str, ...]:
    """What names the application whose operating time the portal counts; only its
    hash reaches Redis."""
    if isinstance(credentials, Webhook):
        return ("webhook", str(credentials.user_id), *credentials.secrets())
    if isinstance(credentials, OAuthRefresher):
        return ("oauth", credentials.client_id)
    return ("token", type(credentials).__name__)


def _advance(bar: Any, n: int) -> None:
    """Count ``n`` more; records flowing again clear a waiting notice."""
    if getattr(bar, "postfix", None):
        bar.set_postfix_str("", refresh=False)
    bar.update(n)


__all__: Tuple[str, ...] = ("Bitrix",)
