"""The fake portal's request processing, independent of HTTP.

For each /rest request, in the real server's order: leaky bucket (503) ->
injected fault -> method lookup (404, before any auth check) -> auth (401)
-> operating-time check (429) -> execution (a plain call, or a batch whose
commands each get their own lookup, operating check and time block) ->
the cost model's sleep -> reply.
"""
from __future__ import annotations

import dataclasses
import time as _time
import traceback
from typing import Any, Dict, Optional, Tuple

from . import faults as _faults
from .batch import run_batch
from .faults import FaultInjector
from .limits import LeakyBucket, OperatingWindow
from .oauth import TokenRegistry
from .profiles import CostProfile
from .protocol import ERRORS, error_body, time_block
from .stats import PortalStats

__all__ = ["Reply", "RestEngine", "normalize_method"]


@dataclasses.dataclass(frozen=True)
class Reply:
    """What to send back: a status and JSON body, or nothing at all (``disconnect``)."""

    status: int
    body: Any = None
    disconnect: bool = False


def normalize_method(method: str) -> str:
    """Method names are case-insensitive and may carry a ``.json`` suffix."""
    method = method.strip().lower()
    if method.endswith(".json"):
        method = method[:-5]
    return method


def _portal_error(exc: BaseException) -> Optional[Tuple[int, Dict[str, Any]]]:
    """(status, body) for a store's PortalError (recognised by its attributes), else None."""
    code = getattr(exc, "code", None)
    description = getattr(exc, "description", None)
    if not isinstance(code, str) or not isinstance(description, str):
        return None
    status = getattr(exc, "status", 400)
    extra = getattr(exc, "extra", None) or {}
    return (status if isinstance(status, int) else 400), error_body(code, description, **extra)


@dataclasses.dataclass
class EngineSettings:
    """The engine's tunables, already scaled (seconds are real seconds)."""

    profile: CostProfile
    time_scale: float = 1.0
    operating_limit: Optional[float] = None   # scaled; None = no blocking
    operating_min_seconds: float = 0.0        # compared with unscaled model seconds
    stall_seconds: float = 5.0                # unscaled
    webhook_user: str = "1"
    webhook_token: str = ""


class RestEngine:
    """Serves /rest requests and the OAuth token endpoint. Thread-safe.

    Each request runs on its caller's thread (one per HTTP connection), so
    separate requests are processed and sleep in parallel.
    """

    def __init__(self, *, store: Any, settings: EngineSettings, clock: Any,
                 bucket: Optional[LeakyBucket], window: OperatingWindow,
                 faults: FaultInjector, tokens: TokenRegistry, stats: PortalStats) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.bucket = bucket
        self.window = window
        self.faults = faults
        self.tokens = tokens
        self.stats = stats
        self._sleep = getattr(clock, "sleep", None) or _time.sleep
        self.last_internal_error: Optional[str] = None  # traceback text, for debugging

    def record_internal_error(self) -> None:
        """Count an unexpected exception (call from an ``except`` block) and keep its traceback."""
        self.stats.count("internal_errors")
        self.last_internal_error = traceback.format_exc()

    # -- entry points -------------------------------------------------------

    def handle_rest(self, method: str, params: Dict[str, Any],
                    webhook: Optional[Tuple[str, str]] = None,
                    bearer: Optional[str] = None) -> Reply:
        """Serve one /rest request.

        ``method`` is the raw name from the URL; ``webhook`` is ``(user, token)``
        for a webhook URL, None for the OAuth form (token in ``params`` as
        ``auth``/``access_token``, or ``bearer`` from the Authorization header).
        ``params`` is consumed (auth keys are removed).
        """
        self.stats.request_started()
        try:
            return self._handle_rest(method, params, webhook, bearer)
        finally:
            self.stats.request_finished()

    def handle_token(self, params: Dict[str, Any], endpoint: str, domain: str) -> Reply:
        """Serve the OAuth token endpoint (refresh-token grant)."""
        reply = self.tokens.refresh(params, endpoint, domain)
        if reply.status == 200:
            self.stats.count("oauth_refreshes")
        return Reply(reply.status, reply.body)

    # -- request flow -------------------------------------------------------

    def _error(self, code: str, status: Optional[int] = None,
               description: Optional[str] = None, **extra: Any) -> Reply:
        self.stats.count_error(code)
        if status is None:
            status = ERRORS[code][0]
        return Reply(status, error_body(code, description, **extra))

    def _handle_rest(self, raw_method: str, params: Dict[str, Any],
                     webhook: Optional[Tuple[str, str]], bearer: Optional[str]) -> Reply:
        settings = self.settings
        arrival = self.clock.time()
        if self.bucket is not None and not self.bucket.try_acquire():
            self.stats.count("rejected_503")
            return self._error("QUERY_LIMIT_EXCEEDED")
        fault = self.faults.draw()
        if fault is not None:
            self.stats.count_fault("disconnect" if fault.startswith("disconnect") else fault)
            if fault == _faults.ERROR:
                return self._error("INTERNAL_SERVER_ERROR")
            if fault == _faults.DISCONNECT_BEFORE:
                return Reply(0, disconnect=True)
            if fault == _faults.STALL:
                self._sleep(settings.stall_seconds * settings.time_scale)
        # The modelled times count from here: each sleep below waits until a point
        # measured from this moment, so a thread that wakes late (the portal's other
        # threads hold the interpreter) does not make the later commands, or the reply,
        # later still. With a sleep per command, 45 commands of a batch overslept by
        # 0.05-0.16 s in all while 49 such batches ran side by side.
        begun = self.clock.time()

        seconds = 0.0  # modelled processing time of the request (scaled)
        method = normalize_method(raw_method)
        reply: Optional[Reply]
        if method != "batch" and not self._has_method(method):
            reply = self._error("ERROR_METHOD_NOT_FOUND")
        else:
            reply = self._authenticate(params, webhook, bearer)
            if reply is None:
                self.stats.count_method_request(method)
                if method == "batch":
                    reply, seconds = self._batch(params, arrival, begun,
                                                 oauth=webhook is None)
                else:
                    reply, seconds = self._plain(method, params, arrival)

        profile = settings.profile
        if profile.sleeps:
            self._sleep_until(begun, seconds + profile.round_trip * settings.time_scale)
        if fault == _faults.DISCONNECT_AFTER:
            self.stats.count("disconnects_after_execution")
            return Reply(0, disconnect=True)
        return reply

    def _sleep_until(self, begun: float, offset: float) -> None:
        """Sleep until ``offset`` seconds after the clock read ``begun``."""
        # The small difference first: Unix seconds keep only about 0.2 us of precision.
        wait = offset - (self.clock.time() - begun)
        if wait > 0:
            self._sleep(wait)

    def _has_method(self, method: str) -> bool:
        return bool(method) and self.store.has_method(method)

    def _authenticate(self, params: Dict[str, Any], webhook: Optional[Tuple[str, str]],
                      bearer: Optional[str]) -> Optional[Reply]:
        if webhook is not None:
            user, secret = webhook
            if user != self.settings.webhook_user or secret != self.settings.webhook_token:
                return self._error("INVALID_CREDENTIALS")
            return None
        token: Any = None
        for key in ("auth", "access_token"):
            value = params.pop(key, None)
            if token is None and value not in (None, ""):
                token = value
        if token is None:
            token = bearer
        if not token:
            return self._error("NO_AUTH_FOUND")
        problem = self.tokens.check(str(token))
        if problem is not None:
            return self._error(problem[0], 401, problem[1])
        return None

    def _plain(self, method: str, params: Dict[str, Any], start: float) -> Tuple[Reply, float]:
        outcome, status, seconds = self._command(method, params, start)
        if status == 429:
            used, reset_at = self.window.state(method)
            body = dict(outcome)
            body["time"] = time_block(start, start, 0.0, used, reset_at)
            return Reply(429, body), seconds
        return Reply(status, outcome), seconds

    def _batch(self, params: Dict[str, Any], start: float, begun: float,
               oauth: bool = False) -> Tuple[Reply, float]:
        """Run a batch's commands one after another; returns the reply and the scaled
        seconds they took (already slept through: each command until its modelled end,
        measured from ``begun``)."""
        spent = 0.0  # seconds since ``start``; kept small, away from Unix seconds' rounding
        sleeps = self.settings.profile.sleeps

        def execute(method: str, command_params: Dict[str, Any]) -> Dict[str, Any]:
            nonlocal spent
            if oauth:
                # The server gives each command the batch's own auth, then strips it.
                command_params.pop("auth", None)
                command_params.pop("access_token", None)
            outcome, _, seconds = self._command(normalize_method(method), command_params,
                                                start + spent)
            spent += seconds
            if sleeps and seconds > 0:
                # Commands run one after another: the next one is checked against the
                # operating limit, and charged, when this one has finished.
                self._sleep_until(begun, spent)
            return outcome

        result = run_batch(params, execute)
        body = {"result": result, "time": time_block(start, start + spent, spent)}
        return Reply(200, body), spent

    # -- one command --------------------------------------------------------

    def _command(self, method: str, params: Dict[str, Any],
                 start: float) -> Tuple[Dict[str, Any], int, float]:
        """Run one method call; return (outcome map, HTTP status, scaled seconds spent).

        The outcome map is the reply body of a plain call and the per-command
        entry of a batch: ``{"result", "total"?, "next"?, "time"}`` or an error.
        """
        if not self._has_method(method):
            self.stats.count_error("ERROR_METHOD_NOT_FOUND")
            return error_body("ERROR_METHOD_NOT_FOUND"), 404, 0.0
        settings = self.settings
        if settings.operating_limit is not None:
            used, _ = self.window.state(method)
            if used > settings.operating_limit:
                self.stats.count("rejected_429")
                self.stats.count_error("OPERATION_TIME_LIMIT")
                return error_body("OPERATION_TIME_LIMIT"), 429, 0.0
        profile = settings.profile
        try:
            outcome = self.store.call(method, params)
        except Exception as exc:  # the store's PortalError, or a bug worth reporting
            failure = _portal_error(exc)
            if failure is None:
                self.record_internal_error()
                failure = 500, error_body("INTERNAL_SERVER_ERROR",
                                          f"{type(exc).__name__}: {exc}")
            status, body = failure
            self.stats.count_error(body["error"])
            model_seconds = profile.base
            self._charge(method, model_seconds, 0, 0, 0)
            return body, status, model_seconds * settings.time_scale
        records, skipped, counted = outcome.records, outcome.skipped, outcome.counted
        model_seconds = profile.command_seconds(records, skipped, counted)
        self._charge(method, model_seconds, records, skipped, counted)
        scaled = model_seconds * settings.time_scale
        used, reset_at = self.window.state(method)
        reply: Dict[str, Any] = {"result": outcome.result}
        if outcome.total is not None:
            reply["total"] = outcome.total
        if outcome.next is not None:
            reply["next"] = outcome.next
        reply["time"] = time_block(start, start + scaled, scaled, used, reset_at)
        return reply, 200, scaled

    def _charge(self, method: str, model_seconds: float, records: int, skipped: int,
                counted: int) -> None:
        settings = self.settings
        # Like the real server, short calls may go unrecorded (operating_min_seconds).
        if model_seconds >= settings.operating_min_seconds:
            self.window.record(method, model_seconds * settings.time_scale)
        self.stats.count_command(method, records, skipped, counted, model_seconds)
