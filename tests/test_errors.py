from __future__ import annotations

import pickle

import pytest

from bitrix_threaded import errors
from bitrix_threaded.errors import (
    AccessDenied,
    AuthError,
    BatchError,
    BitrixError,
    CertificateFailed,
    CommandFailure,
    ConnectionFailed,
    ExpiredToken,
    InsufficientScope,
    InvalidArgument,
    InvalidCredentials,
    InvalidResponse,
    InvalidToken,
    MethodNotFound,
    NotFound,
    OperationTimeLimit,
    OverloadLimit,
    PortalMoved,
    QueryLimitExceeded,
    RequestTimeout,
    ServerError,
    TransportError,
    error_from_reply,
    reply_snippet,
)

ALL_CLASSES = [
    BitrixError, TransportError, ConnectionFailed, RequestTimeout, InvalidResponse,
    QueryLimitExceeded, OperationTimeLimit, OverloadLimit, ServerError, AuthError,
    ExpiredToken, InvalidToken, InvalidCredentials, InsufficientScope, AccessDenied,
    MethodNotFound, NotFound, InvalidArgument, PortalMoved, CertificateFailed,
]


def reply(code, description="", **extra):
    return {"error": code, "error_description": description, **extra}


# -- the tree -------------------------------------------------------------------------


@pytest.mark.parametrize("child, parent", [
    (TransportError, BitrixError),
    (ConnectionFailed, TransportError),
    (RequestTimeout, TransportError),
    (CertificateFailed, ConnectionFailed),
    (PortalMoved, BitrixError),
    (InvalidResponse, BitrixError),
    (QueryLimitExceeded, BitrixError),
    (OperationTimeLimit, BitrixError),
    (OverloadLimit, BitrixError),
    (ServerError, BitrixError),
    (AuthError, BitrixError),
    (ExpiredToken, AuthError),
    (InvalidToken, AuthError),
    (InvalidCredentials, AuthError),
    (InsufficientScope, AuthError),
    (AccessDenied, BitrixError),
    (MethodNotFound, BitrixError),
    (NotFound, BitrixError),
    (InvalidArgument, BitrixError),
    (BatchError, BitrixError),
    (BitrixError, Exception),
])
def test_hierarchy(child, parent):
    assert issubclass(child, parent)


def test_transport_errors_are_retryable_unless_the_edge_says_otherwise():
    assert TransportError("X").retryable is True
    assert CertificateFailed("CERTIFICATE_VERIFY_FAILED", retryable=False).retryable is False


def test_a_server_error_without_envelope_keeps_its_snippet():
    err = error_from_reply(502, "<html>Bad Gateway</html>", "crm.deal.get")
    assert type(err) is ServerError and err.snippet == "<html>Bad Gateway</html>"
    assert ServerError("X").snippet == ""


def test_misuse_errors_are_outside_the_tree():
    assert not issubclass(BitrixError, (TypeError, ValueError))


def test_module_docstring_draws_every_class():
    for cls in ALL_CLASSES + [BatchError]:
        assert cls.__name__ in errors.__doc__


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_class_accepts_the_base_signature(cls):
    err = cls("SOME_CODE", "some text", status=400, method="crm.deal.get", extra={"a": 1})
    assert (err.code, err.description, err.status, err.method, err.extra) == (
        "SOME_CODE", "some text", 400, "crm.deal.get", {"a": 1})
    bare = cls("X")
    assert (bare.description, bare.status, bare.method, bare.extra) == ("", None, None, {})


def test_subclass_fields_are_keyword_only_with_defaults():
    assert TransportError("X").executed is None
    assert ConnectionFailed("X", executed=False).executed is False
    assert RequestTimeout("X").executed is None
    assert InvalidResponse("X").snippet == ""
    assert InvalidResponse("X", snippet="a" * 500).snippet == "a" * 200
    assert OperationTimeLimit("X").reset_at is None
    assert OperationTimeLimit("X", reset_at=5.0).reset_at == 5.0
    with pytest.raises(TypeError):
        TransportError("X", "d", 500)  # status is keyword-only


def test_extra_is_copied():
    extra = {"argument": "filter"}
    err = BitrixError("X", extra=extra)
    extra["argument"] = "changed"
    assert err.extra == {"argument": "filter"}


# -- text -------------------------------------------------------------------------------


def test_str_with_method_and_status():
    err = QueryLimitExceeded("QUERY_LIMIT_EXCEEDED", "Too many requests",
                             status=503, method="crm.deal.list")
    assert str(err) == "QUERY_LIMIT_EXCEEDED: Too many requests (method crm.deal.list, HTTP 503)"


@pytest.mark.parametrize("kwargs, text", [
    ({}, "NOT_FOUND: Not found"),
    ({"method": "crm.deal.get"}, "NOT_FOUND: Not found (method crm.deal.get)"),
    ({"status": 400}, "NOT_FOUND: Not found (HTTP 400)"),
])
def test_str_leaves_out_missing_parts(kwargs, text):
    assert str(NotFound("NOT_FOUND", "Not found", **kwargs)) == text


def test_str_without_description():
    err = InsufficientScope("insufficient_scope", "", method="user.get")
    assert str(err) == "insufficient_scope (method user.get)"


def test_str_without_code():
    assert str(NotFound("", "Not found", status=400)) == "Not found (HTTP 400)"
    assert str(BitrixError("")) == "(no error code)"


def test_repr_names_class_and_fields():
    err = ExpiredToken("expired_token", "The access token provided has expired",
                       status=401, method="crm.deal.list")
    assert repr(err) == (
        "ExpiredToken(code='expired_token', description='The access token provided has "
        "expired', status=401, method='crm.deal.list')"
    )


# -- pickling -------------------------------------------------------------------------


@pytest.mark.parametrize("err", [
    BitrixError("X", "d", status=400, method="m", extra={"argument": "id"}),
    ConnectionFailed("CONNECTION_REFUSED", "refused", method="m", executed=False),
    RequestTimeout("READ_TIMEOUT", "slow", method="m", executed=None),
    InvalidResponse("INVALID_RESPONSE", "html", status=200, snippet="<html>"),
    OperationTimeLimit("OPERATION_TIME_LIMIT", "blocked", status=429, reset_at=1681570067.0),
    ExpiredToken("expired_token", "expired", status=401),
    NotFound("", "Not found", status=400, method="crm.deal.get"),
    PortalMoved("PORTAL_MOVED", "moved", status=301, location="https://new.example/rest/"),
    CertificateFailed("CERTIFICATE_VERIFY_FAILED", "self-signed", executed=False,
                      retryable=False),
    ServerError("HTTP_502", "html", status=502, extra={"snippet": "<html>"}),
])
def test_errors_pickle_round_trip(err):
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert copy.__dict__ == err.__dict__
    assert str(copy) == str(err)
    assert copy.args == err.args


def test_batch_error_pickles():
    failure = CommandFailure(1, "c1", "crm.deal.get", NotFound("", "Not found"))
    err = BatchError([failure], {0: {"ID": "1"}}, total=2, method="batch")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is BatchError
    (copied,) = copy.failures
    assert (copied.index, copied.label, copied.method) == (1, "c1", "crm.deal.get")
    assert type(copied.error) is NotFound and copied.error.description == "Not found"
    assert copy.results == {0: {"ID": "1"}}
    assert copy.total == 2
    assert str(copy) == str(err)


def test_pickles_after_args_are_rewritten():
    # The transport rewrites .args after redacting a description.
    err = AccessDenied("ACCESS_DENIED", "x", status=403)
    err.args = (str(err),)
    copy = pickle.loads(pickle.dumps(err))
    assert copy.args == err.args and copy.code == "ACCESS_DENIED"


# -- error_from_reply: every row of the protocol's error table -------------------------


@pytest.mark.parametrize("status, payload, cls", [
    (503, reply("QUERY_LIMIT_EXCEEDED", "Too many requests"), QueryLimitExceeded),
    (429, reply("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."),
     OperationTimeLimit),
    (503, reply("OVERLOAD_LIMIT", "REST API is blocked due to overload."), OverloadLimit),
    (401, reply("expired_token", "The access token provided has expired"), ExpiredToken),
    (401, reply("invalid_token", "The access token provided is invalid."), InvalidToken),
    (401, reply("NO_AUTH_FOUND", "Wrong authorization data"), InvalidCredentials),
    (401, reply("INVALID_CREDENTIALS", "Invalid request credentials"), InvalidCredentials),
    (403, reply("INVALID_CREDENTIALS", "Invalid request credentials"), InvalidCredentials),
    (401, reply("insufficient_scope", "The request requires higher privileges than provided "
                "by the webhook token"), InsufficientScope),
    (403, reply("insufficient_scope", "The request requires higher privileges than provided "
                "by the access token"), InsufficientScope),
    (None, reply("insufficient_scope", ""), InsufficientScope),
    (400, reply("INVALID_REQUEST", "Https required."), AccessDenied),
    (403, reply("ACCESS_DENIED", "REST is available only on commercial plans."), AccessDenied),
    (404, reply("ERROR_METHOD_NOT_FOUND", "Method not found!"), MethodNotFound),
    (400, reply("ERROR_ARGUMENT", "Filter operation not allowed: X", argument="filter"),
     InvalidArgument),
    (500, reply("ERROR_CORE", "SQL query error!"), ServerError),
    (500, reply("INTERNAL_SERVER_ERROR", "Internal server error"), ServerError),
    (500, reply("ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response."),
     ServerError),
    (403, reply("PORTAL_DELETED", "Portal was deleted"), AccessDenied),
    (500, reply("PORTAL_DELETED", "Portal was deleted"), AccessDenied),
    (400, reply("", "Not found"), NotFound),
    (400, reply("", "ID is not defined or invalid."), InvalidArgument),
    (400, reply("", "Access denied."), AccessDenied),
    (400, reply("", "Parameter 'filter' must be array."), InvalidArgument),
    (400, reply("NOT_FOUND", "Item not found"), NotFound),
    (400, reply("NOT_FOUND", "SPA not found"), NotFound),
    (400, reply("INVALID_ARG_VALUE", "Invalid value"), InvalidArgument),
    (400, reply("ACCESS_DENIED", "Access denied"), AccessDenied),
    (400, reply("ERROR_REQUIRED_PARAMETERS_MISSING", "Required parameter missing"),
     InvalidArgument),
    (400, reply("invalid_grant", "Invalid refresh token"), InvalidToken),
    (401, reply("invalid_client", "Invalid client"), InvalidToken),
])
def test_error_table(status, payload, cls):
    err = error_from_reply(status, payload, "crm.deal.list")
    assert type(err) is cls
    assert err.code == payload["error"]
    assert err.description == payload["error_description"]
    assert err.status == status
    assert err.method == "crm.deal.list"


@pytest.mark.parametrize("status, payload", [
    (400, reply("ERROR_CORE", "Something failed")),
    (400, reply("0", "Invalid sorting key (internal error)")),
    (200, reply("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")),
    (None, reply("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")),
    (400, reply("PAYMENT_REQUIRED", "Payment required")),
    (404, reply("SOMETHING_ELSE", "no such thing")),
    (429, reply("UNKNOWN", "")),
])
def test_unknown_codes_give_the_root_class(status, payload):
    assert type(error_from_reply(status, payload, "m")) is BitrixError


@pytest.mark.parametrize("code", [
    "query_limit_exceeded", "Query_Limit_Exceeded", "QUERY_LIMIT_EXCEEDED",
    " QUERY_LIMIT_EXCEEDED ",
])
def test_codes_compare_case_insensitively(code):
    err = error_from_reply(503, reply(code, "Too many requests"), None)
    assert type(err) is QueryLimitExceeded
    assert err.code == code  # kept as sent


@pytest.mark.parametrize("code, cls", [
    ("EXPIRED_TOKEN", ExpiredToken), ("Insufficient_Scope", InsufficientScope),
    ("error_method_not_found", MethodNotFound), ("not_found", NotFound),
])
def test_mixed_case_codes(code, cls):
    assert type(error_from_reply(400, reply(code), "m")) is cls


@pytest.mark.parametrize("text, cls", [
    ("Not found", NotFound),
    ("Not found.", NotFound),
    ("not found", NotFound),
    ("ID is not defined or invalid", InvalidArgument),
    ("ID is not defined or invalid.", InvalidArgument),
    ("Access denied", AccessDenied),
    ("Access denied.", AccessDenied),
    ("Parameter 'filter' must be array", InvalidArgument),
    ("Parameter 'order' must be array.", InvalidArgument),
    ("Deal not found in archive", BitrixError),
])
def test_legacy_texts(text, cls):
    assert type(error_from_reply(400, reply("", text), "crm.deal.get")) is cls


@pytest.mark.parametrize("status, cls", [
    (500, ServerError), (502, ServerError), (503, ServerError), (504, ServerError),
    (401, AuthError), (403, AccessDenied), (404, BitrixError), (400, BitrixError),
    (200, BitrixError), (None, BitrixError),
])
def test_status_fallback_for_unknown_codes(status, cls):
    assert type(error_from_reply(status, reply("WHATEVER", "text"), "m")) is cls


def test_method_not_found_needs_the_code():
    assert type(error_from_reply(404, reply("ERROR_METHOD_NOT_FOUND"), "x.y")) is MethodNotFound
    assert type(error_from_reply(404, reply("OTHER"), "x.y")) is BitrixError


def test_code_wins_over_status():
    assert type(error_from_reply(403, reply("expired_token"), "m")) is ExpiredToken
    assert type(error_from_reply(500, reply("NOT_FOUND"), "m")) is NotFound


def test_extra_keys_are_kept():
    payload = reply("ERROR_ARGUMENT", "Filter operation not allowed: ?ID", argument="filter")
    err = error_from_reply(400, payload, "crm.item.list")
    assert err.extra == {"argument": "filter"}


def test_reset_at_from_the_time_block():
    payload = reply("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.",
                    time={"start": 1681569467.1, "operating_reset_at": 1681570067,
                          "operating": 481.2})
    err = error_from_reply(429, payload, "crm.deal.list")
    assert isinstance(err, OperationTimeLimit)
    assert err.reset_at == 1681570067.0
    assert isinstance(err.reset_at, float)
    assert err.extra["time"]["operating"] == 481.2


@pytest.mark.parametrize("time_block", [
    None, {}, {"operating": 1}, {"operating_reset_at": None}, {"operating_reset_at": "soon"},
    {"operating_reset_at": True}, [], "x",
])
def test_reset_at_missing_or_unusable(time_block):
    payload = reply("OPERATION_TIME_LIMIT", "blocked")
    if time_block is not None:
        payload["time"] = time_block
    assert error_from_reply(429, payload, "m").reset_at is None


def test_reset_at_accepts_a_numeric_string():
    payload = reply("OPERATION_TIME_LIMIT", "blocked", time={"operating_reset_at": "1681570067"})
    assert error_from_reply(429, payload, "m").reset_at == 1681570067.0


def test_description_may_be_missing_or_null():
    assert error_from_reply(400, {"error": "NOT_FOUND"}, "m").description == ""
    assert error_from_reply(400, reply("NOT_FOUND", None), "m").description == ""


def test_odd_codes_become_strings():
    assert error_from_reply(400, {"error": 0, "error_description": "x"}, "m").code == "0"
    assert error_from_reply(400, {"error": None, "error_description": "Not found"}, "m").code == ""


@pytest.mark.parametrize("payload", [
    "<html><body>Bad gateway</body></html>",
    b"<html>\xff</html>",
    None,
    [1, 2, 3],
    {"result": []},
    {"error_description": "no code"},
    42,
])
def test_non_envelopes_give_invalid_response(payload):
    err = error_from_reply(200, payload, "crm.deal.list")
    assert type(err) is InvalidResponse
    assert err.code == "INVALID_RESPONSE"
    assert err.status == 200 and err.method == "crm.deal.list"
    assert isinstance(err.snippet, str)


def test_invalid_response_snippet_is_truncated():
    body = "<html>" + "x" * 1000
    err = error_from_reply(400, body, "m")
    assert err.snippet == body[:200]


def test_non_envelope_with_5xx_is_a_server_error():
    err = error_from_reply(502, "<html>502 Bad Gateway</html>", "crm.deal.list")
    assert type(err) is ServerError
    assert err.status == 502
    assert err.code == "HTTP_502"
    assert err.extra["snippet"] == "<html>502 Bad Gateway</html>"


def test_reply_snippet():
    assert reply_snippet("abc") == "abc"
    assert reply_snippet(b"\xd0\x9f\xd1\x80") == "Пр"
    assert reply_snippet({"a": "б"}) == '{"a": "б"}'
    assert len(reply_snippet("x" * 999)) == 200
    assert "{1, 2}" in reply_snippet({1, 2})  # not JSON: repr, never raises


@pytest.mark.parametrize("payload", [
    {"error": {"nested": True}}, {"error": ["a"]}, {"error": "X", "time": 5},
    {"error": "OPERATION_TIME_LIMIT", "time": {"operating_reset_at": [1]}},
    float("nan"), object(), {"error": "X", "error_description": 12},
])
def test_error_from_reply_never_raises(payload):
    assert isinstance(error_from_reply(None, payload, None), BitrixError)


def test_no_url_in_errors():
    err = error_from_reply(401, reply("INVALID_CREDENTIALS", "Invalid request credentials"),
                           "crm.deal.list")
    assert "http" not in str(err) and "http" not in repr(err)
    assert not hasattr(err, "url")


# -- CommandFailure ------------------------------------------------------------------------


def test_command_failure_properties():
    err = NotFound("", "Not found")
    failure = CommandFailure(index=3, label="c3", method="crm.deal.get", error=err)
    assert failure.code == ""
    assert failure.description == "Not found"
    assert failure.executed is False
    assert str(failure) == "#3 c3 crm.deal.get Not found"
    with pytest.raises(AttributeError):
        failure.index = 4  # frozen


@pytest.mark.parametrize("error, executed", [
    (NotFound("", "Not found"), False),
    (ServerError("INTERNAL_SERVER_ERROR", "x"), False),  # one command's entry in a batch
    (ServerError("INTERNAL_SERVER_ERROR", "x", status=500), None),  # the whole call failed
    (ServerError("HTTP_502", "gateway", status=502), None),
    (QueryLimitExceeded("QUERY_LIMIT_EXCEEDED", "x", status=503), False),
    (OverloadLimit("OVERLOAD_LIMIT", "x", status=503), False),
    (OperationTimeLimit("OPERATION_TIME_LIMIT", "x", status=429), False),
    (ExpiredToken("expired_token", "x", status=401), False),
    (BitrixError("NOT_EXECUTED", "skipped"), False),
    (ConnectionFailed("CONNECTION_REFUSED", executed=False), False),
    (ConnectionFailed("CONNECTION_LOST", executed=None), None),
    (RequestTimeout("READ_TIMEOUT"), None),
    (InvalidResponse("INVALID_RESPONSE", status=200), None),
])
def test_command_failure_executed(error, executed):
    assert CommandFailure(0, "c0", "crm.deal.add", error).executed is executed


# -- BatchError ------------------------------------------------------------------------------


def failure(index, error, method="crm.deal.get"):
    return CommandFailure(index, f"c{index}", method, error)


def test_batch_error_fields():
    failures = [
        failure(4, NotFound("", "Not found")),
        failure(1, InvalidArgument("", "ID is not defined or invalid.")),
    ]
    err = BatchError(failures, {0: {"ID": "1"}, 2: {"ID": "3"}}, total=5, method="crm.deal.get")
    assert err.code == "BATCH_ERROR"
    assert err.method == "crm.deal.get"
    assert err.status is None
    assert isinstance(err.failures, tuple)
    assert [f.index for f in err.failures] == [1, 4]  # input order
    assert err.results == {0: {"ID": "1"}, 2: {"ID": "3"}}
    assert err.total == 5
    assert err.ambiguous == ()
    assert err.description.startswith("2 of 5 commands failed: ")
    assert "#1 c1 crm.deal.get ID is not defined or invalid." in err.description
    assert "#4 c4 crm.deal.get Not found" in err.description


def test_batch_error_results_are_a_copy():
    results = {0: "a"}
    err = BatchError([failure(1, NotFound("NOT_FOUND", "Item not found"))], results, total=2)
    results[5] = "b"
    assert err.results == {0: "a"}


def test_batch_error_ambiguous():
    lost = failure(2, ConnectionFailed("CONNECTION_LOST", "dropped", executed=None), "crm.deal.add")
    refused = failure(3, ConnectionFailed("CONNECTION_REFUSED", "no", executed=False),
                      "crm.deal.add")
    err = BatchError([refused, lost], {}, total=4)
    assert err.ambiguous == (lost,)
    assert "(1 may have been executed)" in err.description


def test_batch_error_description_lists_the_first_few():
    failures = [failure(i, NotFound("NOT_FOUND", "Item not found")) for i in range(10)]
    err = BatchError(failures, {}, total=10, method="crm.item.get")
    assert err.description.startswith("10 of 10 commands failed: #0 c0 crm.deal.get NOT_FOUND: ")
    assert "#2 c2" in err.description and "#3 c3" not in err.description
    assert err.description.endswith("; and 7 more")
    assert str(err).startswith("BATCH_ERROR: 10 of 10 commands failed")
    assert str(err).endswith("(method crm.item.get)")


def test_batch_error_rejects_bad_failures():
    with pytest.raises(TypeError, match="CommandFailure"):
        BatchError("BATCH_ERROR", {}, total=1)
    with pytest.raises(TypeError, match="CommandFailure"):
        BatchError([NotFound("NOT_FOUND")], {}, total=1)
