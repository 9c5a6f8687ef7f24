"""Constructor arguments are checked when the client is made, never at the first call."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bitrix_threaded import Bitrix
from bitrix_threaded.validation import check_number, check_ssl, check_timeout

WEBHOOK = "https://portal.example.com/rest/1/abcdef123/"

NUMBERS = ["request_pool_size", "requests_per_second", "batch_size", "operating_time_limit",
           "operating_window", "max_workers", "deadline", "max_reply_bytes"]


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("value", [True, False])
def test_every_numeric_argument_refuses_bool(name, value):
    with pytest.raises(TypeError, match=name):
        Bitrix(WEBHOOK, **{name: value})


@pytest.mark.parametrize("name", ["requests_per_second", "operating_time_limit",
                                  "operating_window", "deadline"])
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
def test_seconds_and_rates_must_be_finite_and_positive(name, value):
    with pytest.raises(ValueError, match=name):
        Bitrix(WEBHOOK, **{name: value})


@pytest.mark.parametrize("name,value", [("batch_size", 51), ("batch_size", 0),
                                        ("request_pool_size", 0), ("max_workers", 0),
                                        ("max_reply_bytes", 0)])
def test_counts_out_of_range_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        Bitrix(WEBHOOK, **{name: value})


@pytest.mark.parametrize("name,value", [("batch_size", 2.0), ("max_workers", "4"),
                                        ("max_reply_bytes", 1.5), ("deadline", "30")])
def test_wrong_types_are_refused(name, value):
    with pytest.raises(TypeError, match=name):
        Bitrix(WEBHOOK, **{name: value})


def test_timeout_none_is_refused_because_it_removes_hang_protection():
    with pytest.raises(TypeError, match="hang"):
        Bitrix(WEBHOOK, timeout=None)


@pytest.mark.parametrize("value,error", [
    ((1,), ValueError), ((1, 2, 3), ValueError), ((0, 5), ValueError), ((5, -1), ValueError),
    ((5, math.inf), ValueError), (math.nan, ValueError), (0, ValueError), ("10", TypeError),
    (True, TypeError), ((True, 5), TypeError), ((5, None), TypeError),
])
def test_malformed_timeouts_are_refused_at_construction(value, error):
    with pytest.raises(error, match="timeout"):
        Bitrix(WEBHOOK, timeout=value)


@pytest.mark.parametrize("value,expected", [(5, 5.0), (2.5, 2.5), ((3, 30), (3.0, 30.0)),
                                            ([3, 30], (3.0, 30.0))])
def test_good_timeouts_are_normalised(value, expected):
    assert check_timeout(value) == expected
    with Bitrix(WEBHOOK, timeout=value, verbose=False) as bx:
        assert bx.transport.timeout == expected


def test_ssl_empty_string_is_refused_instead_of_turning_checks_off():
    with pytest.raises(ValueError, match="empty"):
        Bitrix(WEBHOOK, ssl="")
    with pytest.raises(ValueError):
        Bitrix(WEBHOOK, ssl="   ")


def test_ssl_missing_bundle_is_a_value_error_at_construction(tmp_path):
    with pytest.raises(ValueError, match="no CA bundle"):
        Bitrix(WEBHOOK, ssl=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("value", [1, 0, None, b"ca.pem"])
def test_ssl_of_another_type_is_a_type_error(value):
    with pytest.raises(TypeError, match="ssl"):
        Bitrix(WEBHOOK, ssl=value)


def test_ssl_accepts_bools_files_directories_and_paths(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not checked here")
    assert check_ssl(True) is True and check_ssl(False) is False
    assert check_ssl(str(bundle)) == str(bundle)
    assert check_ssl(Path(bundle)) == str(bundle)
    assert check_ssl(str(tmp_path)) == str(tmp_path)
    with Bitrix(WEBHOOK, ssl=bundle, verbose=False) as bx:
        assert bx.transport.verify == str(bundle)


def test_check_number_bounds():
    check_number("n", 1, integer=True, low=1, inclusive=True)
    check_number("n", None, optional=True)
    with pytest.raises(TypeError, match="an int or None"):
        check_number("n", 1.0, integer=True, optional=True)
    with pytest.raises(ValueError, match=">= 1"):
        check_number("n", 0, integer=True, low=1, inclusive=True)


def test_numeric_arguments_of_calls_refuse_bool_too():
    with Bitrix(WEBHOOK, verbose=False) as bx:
        with pytest.raises(TypeError, match="max_concurrent_requests"):
            with bx.slow(True):
                pass
        with pytest.raises(TypeError, match="max_in_flight"):
            bx.iter_all("crm.deal.list", max_in_flight=True)


def test_expect_refuses_bool_only_where_numbers_are_meant():
    from typing import Any, Optional, Union

    from bitrix_threaded.validation import expect

    for hint in (int, Optional[int], Union[int, float]):
        with pytest.raises(TypeError, match="got bool"):
            expect("n", True, hint)
    for hint in (bool, Union[bool, str], Any):
        expect("flag", True, hint)
