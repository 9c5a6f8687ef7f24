"""PHP parse_str compatibility of the fake portal's query parser."""
from __future__ import annotations

import pytest

from bitrix_threaded.testing.phpquery import (parse_pairs, parse_query, php_array_json, php_bool,
                                              php_key, php_string)


def test_nested_keys_lists_and_bracket_prefixes():
    assert parse_query("filter[>ID]=5&select[]=ID&select[]=TITLE&order[ID]=ASC") == {
        "filter": {">ID": "5"}, "select": ["ID", "TITLE"], "order": {"ID": "ASC"}}


def test_multi_field_values_become_lists_of_maps():
    assert parse_query("fields[PHONE][0][VALUE]=1&fields[PHONE][0][VALUE_TYPE]=WORK"
                       "&fields[PHONE][1][VALUE]=2") == {
        "fields": {"PHONE": [{"VALUE": "1", "VALUE_TYPE": "WORK"}, {"VALUE": "2"}]}}


def test_values_are_url_decoded_and_plus_is_space():
    assert parse_query("a=%D0%BF%D1%80%D0%B8+1&b%5Bc%5D=%24x") == {
        "a": "при 1", "b": {"c": "$x"}}


def test_pair_without_equals_sign_has_empty_value_and_empty_pairs_are_skipped():
    assert parse_query("a&&b=&c=1") == {"a": "", "b": "", "c": "1"}


def test_later_pairs_overwrite_earlier_ones_keeping_position():
    assert list(parse_query("a=1&b=2&a=3").items()) == [("a", "3"), ("b", "2")]
    assert parse_query("a=1&a[]=2") == {"a": ["2"]}
    assert parse_query("a[]=1&a=2") == {"a": "2"}


def test_php_name_mangling_rules():
    # spaces and dots in the top-level name become "_", leading spaces dropped
    assert parse_query(" a.b c=1") == {"a_b_c": "1"}
    # an unclosed bracket makes one flat name
    assert parse_query("x[y.z=1") == {"x_y_z": "1"}
    # text after the last closing bracket is ignored
    assert parse_query("z[q]junk=4") == {"z": {"q": "4"}}
    # no name at all: ignored
    assert parse_query("=1&[a]=2") == {}


def test_list_detection_follows_php_array_keys():
    assert parse_query("a[0]=x&a[1]=y") == {"a": ["x", "y"]}
    assert parse_query("a[1]=x&a[0]=y") == {"a": {"1": "x", "0": "y"}}
    assert parse_query("a[5]=x&a[]=y") == {"a": {"5": "x", "6": "y"}}
    assert parse_query("a[07]=x") == {"a": {"07": "x"}}  # not canonical: stays a string key
    assert parse_query("a[]=") == {"a": [""]}


def test_top_level_is_always_a_dict_even_with_positional_keys():
    assert parse_query("0=a&1[x]=b") == {"0": "a", "1": {"x": "b"}}


def test_bytes_input_and_bad_type():
    assert parse_query(b"a=1") == {"a": "1"}
    with pytest.raises(TypeError):
        parse_query(5)


def test_parse_pairs_uses_the_same_key_rules():
    assert parse_pairs([("select[]", "ID"), ("filter[>ID]", "3")]) == {
        "select": ["ID"], "filter": {">ID": "3"}}


@pytest.mark.parametrize("value, expected", [
    (None, False), ("", False), ("0", False), (0, False), (0.0, False), ([], False),
    ({}, False), (False, False), ("false", True), ("0.0", True), ("1", True), (1, True),
    (True, True), (["x"], True),
])
def test_php_bool(value, expected):
    assert php_bool(value) is expected


def test_php_key_and_string_and_array_json():
    assert php_key("12") == 12 and php_key("-3") == -3
    assert php_key("012") == "012" and php_key("-0") == "-0" and php_key("1.5") == "1.5"
    assert php_string(5) == "5" and php_string(5.0) == "5" and php_string(0.5) == "0.5"
    assert php_string("x") == "x"
    assert php_string(True) is None and php_string(None) is None and php_string([1]) is None
    assert php_array_json({}) == []
    assert php_array_json({"0": "a", "1": "b"}) == ["a", "b"]
    assert php_array_json({0: "a", 1: "b"}) == ["a", "b"]
    assert php_array_json({"1": "a"}) == {"1": "a"}
    assert php_array_json({"c0": 1}) == {"c0": 1}
