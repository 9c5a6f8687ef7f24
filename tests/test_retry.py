from __future__ import annotations

import dataclasses
import math
import random
import time

import pytest

from bitrix_threaded.errors import (
    AccessDenied,
    AuthError,
    BitrixError,
    ConnectionFailed,
    ExpiredToken,
    InvalidArgument,
    InvalidResponse,
    MethodNotFound,
    NotFound,
    OperationTimeLimit,
    OverloadLimit,
    QueryLimitExceeded,
    RequestTimeout,
    ServerError,
    TransportError,
)
from bitrix_threaded.retry import RetryDecision, RetryPolicy, is_write_method, jittered

# --- is_write_method -----------------------------------------------------------------------


@pytest.mark.parametrize("method", [
    "crm.deal.add", "crm.deal.update", "crm.deal.delete", "crm.item.productrow.set",
    "tasks.task.complete", "im.message.send", "lists.element.add", "batch",
    "crm.lead.merge", "some.unknown.method",
])
def test_writes(method):
    assert is_write_method(method) is True


@pytest.mark.parametrize("method", [
    "crm.deal.list", "crm.deal.get", "crm.deal.fields", "tasks.task.list",
    "task.elapseditem.getlist", "crm.dealcategory.stage.list", "user.get", "user.current",
    "server.time", "crm.item.list", "CRM.Deal.List", " user.get ", "scope", "methods",
    "app.info", "profile", "user.search", "crm.item.productrow.getAvailableForPayment",
    "disk.folder.getchildren", "crm.deal.userfield.list", "sonet_group.user.groupslist",
])
def test_reads(method):
    assert is_write_method(method) is False


def test_is_write_method_rejects_misuse():
    with pytest.raises(TypeError):
        is_write_method(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        is_write_method("  ")


# --- backoff -------------------------------------------------------------------------------


class FixedRandom(random.Random):
    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_without_jitter_doubles_up_to_the_cap():
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0, jitter=0.0)
    assert [policy.backoff(a) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_backoff_jitter_bounds():
    policy = RetryPolicy(backoff_base=1.0, backoff_max=30.0, jitter=0.5)
    assert policy.backoff(2, FixedRandom(0.0)) == 4.0
    assert policy.backoff(2, FixedRandom(0.999999)) == pytest.approx(2.0, abs=1e-5)
    rng = random.Random(7)
    for attempt in range(40):
        cap = min(30.0, 2.0 ** attempt)
        for _ in range(20):
            assert cap * 0.5 < policy.backoff(attempt, rng) <= cap


def test_backoff_is_deterministic_with_a_seeded_rng():
    policy = RetryPolicy()
    first = [policy.backoff(a, random.Random(1)) for a in range(10)]
    again = [policy.backoff(a, random.Random(1)) for a in range(10)]
    assert first == again


def test_backoff_survives_huge_attempt_numbers():
    policy = RetryPolicy(jitter=0.0)
    assert policy.backoff(10**6) == 30.0
    assert RetryPolicy(backoff_base=0.0, jitter=0.0).backoff(5000) == 0.0


def test_backoff_rejects_bad_attempt():
    with pytest.raises(ValueError):
        RetryPolicy().backoff(-1)
    with pytest.raises(TypeError):
        RetryPolicy().backoff(1.0)  # type: ignore[arg-type]


def test_jittered_is_pure():
    assert jittered(10.0, 0.5, 0.0) == 10.0
    assert jittered(10.0, 0.5, 0.5) == 7.5
    assert jittered(10.0, 0.0, 0.9) == 10.0
    assert jittered(10.0, 1.0, 0.25) == 7.5


# --- policy value --------------------------------------------------------------------------


def test_defaults_and_immutability():
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff_base, policy.backoff_max, policy.jitter,
            policy.retry_transport_errors, policy.limit_attempts) == (6, 0.5, 30.0, 0.5, True, 30)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 3  # type: ignore[misc]
    assert policy == RetryPolicy() and hash(policy) == hash(RetryPolicy())


@pytest.mark.parametrize("kwargs, exc", [
    ({"max_attempts": 0}, ValueError),
    ({"max_attempts": 2.0}, TypeError),
    ({"max_attempts": True}, TypeError),
    ({"limit_attempts": -1}, ValueError),
    ({"backoff_base": -0.1}, ValueError),
    ({"backoff_max": math.inf}, ValueError),
    ({"backoff_base": "1"}, TypeError),
    ({"jitter": 1.5}, ValueError),
    ({"jitter": -0.5}, ValueError),
    ({"retry_transport_errors": 1}, TypeError),
])
def test_policy_validation(kwargs, exc):
    with pytest.raises(exc):
        RetryPolicy(**kwargs)


# --- decisions -----------------------------------------------------------------------------

NO_JITTER = RetryPolicy(jitter=0.0)


def qle():
    return QueryLimitExceeded("QUERY_LIMIT_EXCEEDED", "Too many requests", status=503)


def otl():
    return OperationTimeLimit("OPERATION_TIME_LIMIT", "blocked", status=429, reset_at=1.0)


def overload():
    return OverloadLimit("OVERLOAD_LIMIT", "REST API is blocked due to overload.", status=503)


def server_error():
    return ServerError("INTERNAL_SERVER_ERROR", "", status=500)


def bad_gateway():
    return InvalidResponse("INVALID_RESPONSE", "html", status=502)


def not_connected():
    return ConnectionFailed("CONNECTION_FAILED", "refused", executed=False)


def dropped():
    return ConnectionFailed("CONNECTION_FAILED", "reset by peer", executed=None)


def timed_out():
    return RequestTimeout("TIMEOUT", "read timed out", executed=None)


def bare_transport():
    return TransportError("TRANSPORT", "", executed=None)


# (factory, retried for reads, retried for writes, budget)
TABLE = [
    (qle, True, True, "limit"),
    (otl, True, True, "limit"),
    (overload, True, True, "ordinary"),
    (server_error, True, False, "ordinary"),
    (bad_gateway, True, False, "ordinary"),
    (not_connected, True, True, "ordinary"),
    (dropped, True, False, "ordinary"),
    (timed_out, True, False, "ordinary"),
    (bare_transport, True, False, "ordinary"),
    (lambda: AuthError("NO_AUTH_FOUND", "", status=401), False, False, None),
    (lambda: ExpiredToken("expired_token", "", status=401), False, False, None),
    (lambda: AccessDenied("ACCESS_DENIED", "", status=403), False, False, None),
    (lambda: MethodNotFound("ERROR_METHOD_NOT_FOUND", "", status=404), False, False, None),
    (lambda: NotFound("NOT_FOUND", "", status=400), False, False, None),
    (lambda: InvalidArgument("ERROR_ARGUMENT", "", status=400), False, False, None),
    (lambda: InvalidResponse("INVALID_RESPONSE", "", status=200), False, False, None),
    (lambda: InvalidResponse("INVALID_RESPONSE", ""), False, False, None),
    (lambda: BitrixError("ERROR_CORE", "", status=400), False, False, None),
]


@pytest.mark.parametrize("factory, read_ok, write_ok, budget", TABLE)
@pytest.mark.parametrize("write", [False, True])
def test_decision_table_with_budget_left(factory, read_ok, write_ok, budget, write):
    decision = NO_JITTER.decide(factory(), attempt=0, limit_attempt=0, write=write)
    assert isinstance(decision, RetryDecision)
    assert decision.retry is (write_ok if write else read_ok)
    assert decision.reason
    if not decision.retry:
        assert decision.delay == 0.0


@pytest.mark.parametrize("factory, read_ok, write_ok, budget", TABLE)
def test_ordinary_budget_exhausted(factory, read_ok, write_ok, budget):
    policy = RetryPolicy(max_attempts=3, jitter=0.0)
    retried = policy.decide(factory(), attempt=1, write=False).retry
    last = policy.decide(factory(), attempt=2, write=False)
    assert retried is read_ok
    # Limit errors ignore the ordinary budget; everything else stops at max_attempts.
    assert last.retry is (budget == "limit")
    if read_ok and budget == "ordinary":
        assert "giving up after 3 of 3" in last.reason


@pytest.mark.parametrize("factory", [qle, otl])
@pytest.mark.parametrize("write", [False, True])
def test_limit_budget_is_separate_and_larger(factory, write):
    policy = RetryPolicy(max_attempts=2, limit_attempts=30)
    assert policy.decide(factory(), attempt=50, limit_attempt=29, write=write).retry
    stop = policy.decide(factory(), attempt=0, limit_attempt=30, write=write)
    assert stop.retry is False
    assert "30 limit retries used up" in stop.reason


def test_query_limit_waits_by_backoff_of_its_own_counter():
    decision = NO_JITTER.decide(qle(), attempt=0, limit_attempt=3, write=True)
    assert decision == RetryDecision(True, 4.0, decision.reason)
    assert "limit retry 4 of 30" in decision.reason


def test_operation_time_limit_retries_without_delay():
    for n in range(30):
        decision = NO_JITTER.decide(otl(), attempt=0, limit_attempt=n, write=True)
        assert decision.retry and decision.delay == 0.0


def test_ordinary_retry_delay_is_backoff_of_attempt():
    decision = NO_JITTER.decide(server_error(), attempt=2, write=False)
    assert decision.delay == 2.0
    assert "try 4 of 6" in decision.reason
    jittery = RetryPolicy(jitter=0.5).decide(
        server_error(), attempt=2, write=False, rng=FixedRandom(0.5))
    assert jittery.delay == 1.5


def test_single_attempt_policy_never_retries_ordinary_failures():
    policy = RetryPolicy(max_attempts=1)
    assert not policy.decide(not_connected(), attempt=0, write=False).retry
    assert policy.decide(qle(), attempt=0, write=False).retry


def test_zero_limit_budget_never_retries_limits():
    policy = RetryPolicy(limit_attempts=0)
    assert not policy.decide(qle(), attempt=0, write=False).retry
    assert not policy.decide(otl(), attempt=0, write=False).retry


@pytest.mark.parametrize("factory", [server_error, bad_gateway, dropped, timed_out])
def test_ambiguous_write_says_why(factory):
    decision = NO_JITTER.decide(factory(), attempt=0, write=True)
    assert decision.retry is False
    assert "ambiguous" in decision.reason and "may have been executed" in decision.reason


def test_transport_retries_can_be_switched_off():
    policy = RetryPolicy(retry_transport_errors=False)
    for factory in (not_connected, dropped, timed_out):
        decision = policy.decide(factory(), attempt=0, write=False)
        assert not decision.retry
        assert "retry_transport_errors=False" in decision.reason
    assert policy.decide(server_error(), attempt=0, write=False).retry


def test_decide_never_sleeps(monkeypatch):
    def forbidden(seconds):
        raise AssertionError("retry decisions must not sleep")

    monkeypatch.setattr(time, "sleep", forbidden)
    for factory, *_ in TABLE:
        for attempt in range(8):
            NO_JITTER.decide(factory(), attempt=attempt, limit_attempt=attempt, write=False)


@pytest.mark.parametrize("kwargs, exc", [
    ({"error": ValueError("x"), "attempt": 0, "write": False}, TypeError),
    ({"error": qle(), "attempt": -1, "write": False}, ValueError),
    ({"error": qle(), "attempt": 0, "limit_attempt": -1, "write": False}, ValueError),
    ({"error": qle(), "attempt": 0, "write": "no"}, TypeError),
    ({"error": qle(), "attempt": 0.0, "write": False}, TypeError),
])
def test_decide_rejects_misuse(kwargs, exc):
    with pytest.raises(exc):
        RetryPolicy().decide(**kwargs)
