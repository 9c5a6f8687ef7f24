from __future__ import annotations

import datetime
import decimal
import json
from collections import OrderedDict
from urllib.parse import parse_qsl

import pytest

from bitrix_threaded.encoding import (
    encode_command,
    http_build_query,
    normalize,
    php_float,
    php_pairs,
    validate_method,
)


def flatten(value, prefix=None):
    """Test-only reference: the (key, text) pairs PHP's parser rebuilds a value from."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    elif isinstance(value, float):
        return [(prefix, php_float(value))]
    else:
        return [(prefix, str(value))]
    pairs = []
    for key, item in items:
        pairs.extend(flatten(item, key if prefix is None else f"{prefix}[{key}]"))
    return pairs


# -- PHP's http_build_query ------------------------------------------------------------


def test_flat_params():
    params = {"foo": "bar", "baz": "boom", "cow": "milk", "php": "hypertext processor"}
    assert http_build_query(params) == "foo=bar&baz=boom&cow=milk&php=hypertext+processor"


def test_nested_params_as_in_php_manual():
    params = {
        "user": {"name": "Bob Smith", "age": 47, "sex": "M", "dob": "5/12/1956"},
        "pastimes": ["golf", "opera", "poker", "rap"],
        "children": {"bobby": {"age": 12, "sex": "M"}, "sally": {"age": 8, "sex": "F"}},
    }
    assert http_build_query(params) == (
        "user%5Bname%5D=Bob+Smith&user%5Bage%5D=47&user%5Bsex%5D=M&user%5Bdob%5D=5%2F12%2F1956"
        "&pastimes%5B0%5D=golf&pastimes%5B1%5D=opera&pastimes%5B2%5D=poker&pastimes%5B3%5D=rap"
        "&children%5Bbobby%5D%5Bage%5D=12&children%5Bbobby%5D%5Bsex%5D=M"
        "&children%5Bsally%5D%5Bage%5D=8&children%5Bsally%5D%5Bsex%5D=F"
    )


def test_filter_prefix_keys():
    params = {"filter": {">ID": 5, ">=DATE_CREATE": "2024-01-01", "!STATUS_ID": "JUNK",
                         "%TITLE": "a&b", "@ID": [1, 2]}}
    assert http_build_query(params) == (
        "filter%5B%3EID%5D=5&filter%5B%3E%3DDATE_CREATE%5D=2024-01-01"
        "&filter%5B%21STATUS_ID%5D=JUNK&filter%5B%25TITLE%5D=a%26b"
        "&filter%5B%40ID%5D%5B0%5D=1&filter%5B%40ID%5D%5B1%5D=2"
    )


def test_multifield_list_of_dicts():
    params = {"fields": {"PHONE": [{"VALUE": "+7 999 000-00-00", "VALUE_TYPE": "WORK"},
                                   {"VALUE": "555", "VALUE_TYPE": "HOME"}]}}
    assert http_build_query(params) == (
        "fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=%2B7+999+000-00-00"
        "&fields%5BPHONE%5D%5B0%5D%5BVALUE_TYPE%5D=WORK"
        "&fields%5BPHONE%5D%5B1%5D%5BVALUE%5D=555"
        "&fields%5BPHONE%5D%5B1%5D%5BVALUE_TYPE%5D=HOME"
    )


def test_select_list_and_order():
    params = {"select": ["ID", "TITLE", "UF_*"], "order": {"ID": "ASC"}, "start": -1}
    assert http_build_query(params) == (
        "select%5B0%5D=ID&select%5B1%5D=TITLE&select%5B2%5D=UF_%2A&order%5BID%5D=ASC&start=-1"
    )


def test_unicode_is_utf8_percent_encoded():
    assert http_build_query({"NAME": "Новый лид"}) == (
        "NAME=%D0%9D%D0%BE%D0%B2%D1%8B%D0%B9+%D0%BB%D0%B8%D0%B4"
    )
    assert http_build_query({"ключ": "€"}) == "%D0%BA%D0%BB%D1%8E%D1%87=%E2%82%AC"
    assert http_build_query({"e": "😀"}) == "e=%F0%9F%98%80"


@pytest.mark.parametrize("text, encoded", [
    (" ", "+"),
    ("~", "%7E"),
    ("-_.", "-_."),
    ("azAZ09", "azAZ09"),
    ("*'()!", "%2A%27%28%29%21"),
    ("&=+/?#%", "%26%3D%2B%2F%3F%23%25"),
    ("[]", "%5B%5D"),
    ("$result[c0][49][ID]", "%24result%5Bc0%5D%5B49%5D%5BID%5D"),
    ("a\nb\tc", "a%0Ab%09c"),
    ("\x00", "%00"),
    ("", ""),
])
def test_urlencode_like_php(text, encoded):
    assert http_build_query({"v": text}) == f"v={encoded}"
    assert http_build_query({text + "k": 1}) == f"{encoded}k=1"


def test_booleans_are_1_and_0():
    assert http_build_query({"a": True, "b": False, "c": [True, False]}) == (
        "a=1&b=0&c%5B0%5D=1&c%5B1%5D=0"
    )


def test_none_is_an_empty_value():
    # Deliberate deviation from PHP (which drops nulls): JSON pages send "" too.
    assert http_build_query({"a": None, "f": {"X": None}, "l": [None]}) == (
        "a=&f%5BX%5D=&l%5B0%5D="
    )


def test_empty_containers_are_omitted_as_in_php():
    assert http_build_query({"a": [], "b": {}, "c": 1, "d": {"e": [], "f": {}}}) == "c=1"
    assert http_build_query({}) == ""
    assert http_build_query({"a": []}) == ""


def test_empty_string_value_and_key():
    assert http_build_query({"a": ""}) == "a="
    assert http_build_query({"": "x"}) == "=x"
    assert http_build_query({"a": {"": "x"}}) == "a%5B%5D=x"
    assert http_build_query({"": {"x": 1}}) == "%5Bx%5D=1"


def test_numbers():
    assert http_build_query({"i": 0, "n": -17, "big": 10 ** 20}) == (
        "i=0&n=-17&big=100000000000000000000"
    )
    assert http_build_query({"f": 1.5, "g": 1.0, "h": -0.25, "k": 0.1 + 0.2}) == (
        "f=1.5&g=1&h=-0.25&k=0.3"
    )
    assert http_build_query({"e": 1e20, "s": 1e-5}) == "e=1.0E%2B20&s=1.0E-5"


def test_float_one_point_zero_is_sent_as_1():
    # PHP prints (string)1.0 as "1"; documented in the encoding module.
    assert http_build_query({"OPPORTUNITY": 1.0}) == "OPPORTUNITY=1"


@pytest.mark.parametrize("value, text", [
    (1.5, "1.5"),
    (1.0, "1"),
    (0.0, "0"),
    (-0.0, "-0"),
    (100.0, "100"),
    (0.1, "0.1"),
    (0.1 + 0.2, "0.3"),
    (1 / 3, "0.33333333333333"),
    (2 / 3, "0.66666666666667"),
    (-2.5, "-2.5"),
    (123456789.125, "123456789.125"),
    (1e13, "10000000000000"),
    (1e14, "1.0E+14"),
    (1.5e15, "1.5E+15"),
    (12345678901234567.0, "1.2345678901235E+16"),
    (99999999999999.99, "1.0E+14"),
    (0.0001, "0.0001"),
    (0.00012345, "0.00012345"),
    (0.00001, "1.0E-5"),
    (1.5e-7, "1.5E-7"),
    (-1e100, "-1.0E+100"),
    (5e-324, "4.9406564584125E-324"),
])
def test_php_float(value, text):
    assert php_float(value) == text


def test_decimal_and_dates():
    params = {
        "d": decimal.Decimal("1000.50"),
        "day": datetime.date(2024, 2, 29),
        "at": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "tz": datetime.datetime(2024, 1, 2, 3, 4, 5, 123456,
                                tzinfo=datetime.timezone(datetime.timedelta(hours=3))),
    }
    assert http_build_query(params) == (
        "d=1000.50&day=2024-02-29&at=2024-01-02T03%3A04%3A05"
        "&tz=2024-01-02T03%3A04%3A05.123456%2B03%3A00"
    )


def test_tuples_and_int_keys():
    assert http_build_query({"select": ("ID", "TITLE")}) == "select%5B0%5D=ID&select%5B1%5D=TITLE"
    assert http_build_query({0: "a", "f": {5: "b"}}) == "0=a&f%5B5%5D=b"


def test_order_of_keys_is_kept():
    params = OrderedDict([("z", 1), ("a", 2), ("m", 3)])
    assert http_build_query(params) == "z=1&a=2&m=3"


# -- errors ---------------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize("params, path", [
    ({"a": {1, 2}}, "a"),
    ({"a": b"bytes"}, "a"),
    ({"filter": {">ID": Opaque()}}, "filter[>ID]"),
    ({"fields": {"PHONE": [{"VALUE": 1j}]}}, "fields[PHONE][0][VALUE]"),
    ({"a": (x for x in range(2))}, "a"),
    ({"a": range(3)}, "a"),
    ({"a": datetime.time(10, 0)}, "a"),
])
def test_unsupported_values_name_the_key_path(params, path):
    with pytest.raises(TypeError, match=repr(path).replace("[", r"\[").replace("]", r"\]")):
        http_build_query(params)
    with pytest.raises(TypeError):
        normalize(params)


@pytest.mark.parametrize("key", [1.5, True, None, ("a",), b"k"])
def test_bad_keys(key):
    with pytest.raises(TypeError, match="keys"):
        normalize({key: 1})
    with pytest.raises(TypeError, match="under 'filter'"):
        normalize({"filter": {key: 1}})


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), decimal.Decimal("NaN"), decimal.Decimal("Infinity"),
])
def test_non_finite_numbers_are_rejected(value):
    with pytest.raises(ValueError, match="'filter\\[>OPPORTUNITY\\]'"):
        http_build_query({"filter": {">OPPORTUNITY": value}})


@pytest.mark.parametrize("params", [None, [("a", 1)], "a=1", 5])
def test_params_must_be_a_mapping(params):
    with pytest.raises(TypeError, match="mapping"):
        http_build_query(params)
    with pytest.raises(TypeError, match="mapping"):
        normalize(params)


# -- normalize --------------------------------------------------------------------------------


def test_normalize_conversions():
    params = {
        "filter": {"ACTIVE": True, "CLOSED": False, "X": None, "@ID": (1, 2)},
        "d": decimal.Decimal("2.50"),
        "at": datetime.date(2024, 1, 1),
        "f": 1.5,
        "n": 7,
        "s": "text",
        "empty": [],
        7: "int key",
    }
    assert normalize(params) == {
        "filter": {"ACTIVE": 1, "CLOSED": 0, "X": "", "@ID": [1, 2]},
        "d": "2.50",
        "at": "2024-01-01",
        "f": 1.5,
        "n": 7,
        "s": "text",
        "empty": [],
        "7": "int key",
    }


def test_normalize_returns_plain_types():
    result = normalize({"a": True, "b": OrderedDict(x=(1,))})
    assert type(result["a"]) is int
    assert type(result["b"]) is dict and type(result["b"]["x"]) is list


def test_normalize_makes_a_copy():
    params = {"filter": {"ID": [1]}}
    result = normalize(params)
    result["filter"]["ID"].append(2)
    assert params == {"filter": {"ID": [1]}}


def test_normalize_unwraps_subclasses():
    import enum

    class Status(str, enum.Enum):
        NEW = "NEW"

    class Level(enum.IntEnum):
        HIGH = 2

    result = normalize({"s": Status.NEW, "l": Level.HIGH})
    assert result == {"s": "NEW", "l": 2}
    assert type(result["s"]) is str and type(result["l"]) is int
    assert http_build_query({"s": Status.NEW, "l": Level.HIGH}) == "s=NEW&l=2"


def test_normalized_params_are_json_ready():
    params = {"a": datetime.datetime(2024, 1, 1), "b": decimal.Decimal("1"), "c": (None, True)}
    assert json.loads(json.dumps(normalize(params))) == {
        "a": "2024-01-01T00:00:00", "b": "1", "c": ["", 1]}


# -- JSON pages and batch pages mean the same ---------------------------------------------


PARAMS_CASES = [
    {"filter": {"ACTIVE": True, "CLOSED": False, ">ID": 10, "X": None},
     "select": ["ID", "TITLE"], "order": {"ID": "ASC"}, "start": -1},
    {"fields": {"TITLE": "Сделка & co", "OPPORTUNITY": 1000.5, "OPENED": True,
                "PHONE": [{"VALUE": "+7 999", "VALUE_TYPE": "WORK"}, {"VALUE": None}],
                "UF_EMPTY": [], "UF_DATE": datetime.date(2024, 5, 1)},
     "params": {"REGISTER_SONET_EVENT": False}},
    {"entityTypeId": 2, "filter": {"logic": "OR", "0": {"=stageId": "NEW"},
                                   "1": {"@categoryId": (1, 2)}}},
    {"a": {"b": {"c": {"d": [[1, 2], [True]]}}}},
]


@pytest.mark.parametrize("params", PARAMS_CASES)
def test_query_decodes_to_the_normalized_params(params):
    decoded = parse_qsl(http_build_query(params), keep_blank_values=True, encoding="utf-8")
    assert decoded == flatten(normalize(params))
    assert decoded == php_pairs(params)


@pytest.mark.parametrize("params", PARAMS_CASES)
def test_json_scalars_read_as_the_query_values(params):
    # PHP reads a JSON 1 and a form "1" the same way; "True" or "None" would differ.
    json_pairs = flatten(json.loads(json.dumps(normalize(params))))
    query_pairs = parse_qsl(http_build_query(params), keep_blank_values=True)
    assert query_pairs == json_pairs
    assert not any(v in ("True", "False", "None") for _, v in query_pairs)


def test_boolean_filter_trap():
    # The same filter as JSON (first page) and as a batch command (later pages).
    params = {"filter": {"ACTIVE": True}}
    assert json.dumps(normalize(params)) == '{"filter": {"ACTIVE": 1}}'
    assert http_build_query(params) == "filter%5BACTIVE%5D=1"


def test_php_pairs():
    assert php_pairs({"filter": {">ID": 5}, "select": ["ID"], "x": None, "e": []}) == [
        ("filter[>ID]", "5"), ("select[0]", "ID"), ("x", "")]


# -- commands -------------------------------------------------------------------------------


def test_encode_command():
    assert encode_command("crm.deal.list", {"filter": {">ID": 5}, "start": -1}) == (
        "crm.deal.list?filter%5B%3EID%5D=5&start=-1")
    assert encode_command("crm.deal.get", {"ID": 7}) == "crm.deal.get?ID=7"


@pytest.mark.parametrize("params", [None, {}, {"select": []}, {"a": {}, "b": []}])
def test_encode_command_without_params(params):
    assert encode_command("user.current", params) == "user.current"


@pytest.mark.parametrize("method", ["", "crm deal", "crm.deal.list?x=1", "crm/deal", "метод",
                                    "crm.deal.list&x", " crm.deal.get", "crm.deal.get\n"])
def test_bad_method_names(method):
    with pytest.raises(ValueError, match="method"):
        encode_command(method, {})
    with pytest.raises(ValueError):
        validate_method(method)


@pytest.mark.parametrize("method", [None, 5, b"crm.deal.get", ["crm.deal.get"]])
def test_method_must_be_a_string(method):
    with pytest.raises(TypeError, match="method"):
        encode_command(method, {})


@pytest.mark.parametrize("method", ["crm.deal.list", "CRM.Deal.List", "user_get", "profile",
                                    "tasks.task.list", "crm.item.productrow.list", "batch"])
def test_good_method_names(method):
    assert validate_method(method) == method
    assert encode_command(method, None) == method


def test_encode_command_rejects_bad_params():
    with pytest.raises(TypeError, match="mapping"):
        encode_command("crm.deal.list", ["a"])
    with pytest.raises(TypeError, match="'filter\\[X\\]'"):
        encode_command("crm.deal.list", {"filter": {"X": object()}})
