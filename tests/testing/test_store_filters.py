"""DataStore filters: every operator, value typing, Y/N fields, ID fast paths."""
from __future__ import annotations

import pytest

from bitrix_threaded.testing import table as table_module
from bitrix_threaded.testing.store import DataStore, PortalError


@pytest.fixture(scope="module")
def store():
    store = DataStore(deals=240, leads=90, seed=5)
    # A few hand-made values to aim string filters at.
    first, second, third = store.ids("deal")[:3]
    store.call("crm.deal.update", {"id": first, "fields": {"TITLE": "Alpha Widget",
                                                           "COMMENTS": ""}})
    store.call("crm.deal.update", {"id": second, "fields": {"TITLE": "alpha gadget",
                                                            "COMMENTS": None}})
    store.call("crm.deal.update", {"id": third, "fields": {"TITLE": "Beta 100%_off"}})
    return store


@pytest.fixture(scope="module")
def deals(store):
    """Every deal, all standard fields, in ID order."""
    out = []
    for start in range(0, 300, 50):
        out.extend(store.call("crm.deal.list", {"start": start}).result)
    assert len(out) == 240
    return out


def listed(store, flt, method="crm.deal.list", **params):
    """IDs (ints) of every match, following `next`, and the reported total."""
    ids, start, total = [], 0, None
    while True:
        outcome = store.call(method, dict(params, filter=flt, start=start, select=["ID"]))
        total = outcome.total
        ids.extend(int(r["ID"]) for r in outcome.result)
        if outcome.next is None:
            return ids, total
        start = outcome.next


def expect(deals, predicate):
    return [int(d["ID"]) for d in deals if predicate(d)]


def check(store, deals, flt, predicate):
    ids, total = listed(store, flt)
    wanted = expect(deals, predicate)
    assert ids == wanted
    assert total == len(wanted)
    return wanted


# --- comparison operators ---------------------------------------------------------

@pytest.mark.parametrize("op, test", [
    (">", lambda a, b: a > b), (">=", lambda a, b: a >= b), ("<", lambda a, b: a < b),
    ("<=", lambda a, b: a <= b), ("=", lambda a, b: a == b), ("", lambda a, b: a == b),
    ("!", lambda a, b: a != b), ("!=", lambda a, b: a != b),
])
@pytest.mark.parametrize("typed", [True, False])
def test_id_comparisons(store, deals, op, test, typed):
    pivot = int(deals[120]["ID"])
    value = pivot if typed else str(pivot)
    check(store, deals, {op + "ID": value}, lambda d: test(int(d["ID"]), pivot))


@pytest.mark.parametrize("op, test", [
    (">", lambda a, b: a > b), (">=", lambda a, b: a >= b), ("<", lambda a, b: a < b),
    ("<=", lambda a, b: a <= b), ("=", lambda a, b: a == b), ("!=", lambda a, b: a != b),
])
def test_amount_comparisons_are_numeric(store, deals, op, test):
    pivot = float(deals[7]["OPPORTUNITY"])
    found = check(store, deals, {op + "OPPORTUNITY": deals[7]["OPPORTUNITY"]},
                  lambda d: test(float(d["OPPORTUNITY"]), pivot))
    assert found


def test_numeric_strings_compare_as_numbers_not_text(store, deals):
    # As text "9000.00" > "100000"; as numbers it is not.
    found = check(store, deals, {">OPPORTUNITY": "100000"},
                  lambda d: float(d["OPPORTUNITY"]) > 100000)
    assert found and any(float(d["OPPORTUNITY"]) < 100000 and d["OPPORTUNITY"] > "100000"
                         for d in deals)


def test_non_numeric_values_compare_as_text(store, deals):
    check(store, deals, {">=STAGE_ID": "PREP"}, lambda d: d["STAGE_ID"] >= "PREP")
    check(store, deals, {"<DATE_CREATE": deals[100]["DATE_CREATE"]},
          lambda d: d["DATE_CREATE"] < deals[100]["DATE_CREATE"])
    check(store, deals, {"=TITLE": "alpha gadget"}, lambda d: d["TITLE"] == "alpha gadget")


# --- IN, NOT IN, lists ------------------------------------------------------------

def test_in_with_a_list_a_php_array_and_strings(store, deals):
    picked = [int(deals[i]["ID"]) for i in (3, 50, 51, 200)]
    missing = int(deals[-1]["ID"]) + 10
    for value in (picked + [missing], {str(i): str(v) for i, v in enumerate(picked)},
                  [str(v) for v in picked]):
        assert listed(store, {"@ID": value}) == (picked, 4)
    assert listed(store, {"ID": picked[::-1]}) == (picked, 4)
    assert listed(store, {"=ID": picked}) == (picked, 4)
    assert listed(store, {"@ID": []}) == ([], 0)


def test_in_on_ordinary_fields_and_not_in(store, deals):
    stages = ["WON", "LOSE"]
    check(store, deals, {"@STAGE_ID": stages}, lambda d: d["STAGE_ID"] in stages)
    check(store, deals, {"STAGE_ID": stages}, lambda d: d["STAGE_ID"] in stages)
    check(store, deals, {"!@STAGE_ID": stages}, lambda d: d["STAGE_ID"] not in stages)
    check(store, deals, {"!STAGE_ID": stages}, lambda d: d["STAGE_ID"] not in stages)
    picked = [int(deals[i]["ID"]) for i in (0, 1, 2)]
    check(store, deals, {"!@ID": picked}, lambda d: int(d["ID"]) not in picked)


def test_a_single_value_for_in_is_a_one_element_list(store, deals):
    check(store, deals, {"@STAGE_ID": "WON"}, lambda d: d["STAGE_ID"] == "WON")


# --- LIKE --------------------------------------------------------------------------

def test_percent_is_a_case_insensitive_substring(store, deals):
    found = check(store, deals, {"%TITLE": "ALPHA"}, lambda d: "alpha" in d["TITLE"].lower())
    assert len(found) == 2
    check(store, deals, {"!%TITLE": "alpha"}, lambda d: "alpha" not in d["TITLE"].lower())
    check(store, deals, {"%TITLE": "100%_"}, lambda d: "100%_" in d["TITLE"])


def test_like_patterns_use_percent_and_underscore(store, deals):
    for op in ("=%", "%="):
        found = check(store, deals, {op + "TITLE": "alpha%"},
                      lambda d: d["TITLE"].lower().startswith("alpha"))
        assert len(found) == 2
    check(store, deals, {"=%TITLE": "_lpha Widget"}, lambda d: d["TITLE"] == "Alpha Widget")
    check(store, deals, {"!=%TITLE": "alpha%"},
          lambda d: not d["TITLE"].lower().startswith("alpha"))
    check(store, deals, {"!%=TITLE": "alpha%"},
          lambda d: not d["TITLE"].lower().startswith("alpha"))


# --- Y/N fields -------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, 1, "1", "Y", "y"])
def test_yes_values(store, deals, value):
    assert check(store, deals, {"OPENED": value}, lambda d: d["OPENED"] == "Y")


@pytest.mark.parametrize("value", [False, 0, "0", "N", ""])
def test_no_values(store, deals, value):
    assert check(store, deals, {"OPENED": value}, lambda d: d["OPENED"] == "N")


@pytest.mark.parametrize("value", ["True", "False", "yes", "2", None])
def test_other_values_match_no_y_n_field(store, deals, value):
    assert listed(store, {"OPENED": value}) == ([], 0)
    assert listed(store, {"CLOSED": value}) == ([], 0)


def test_negated_y_n_filters(store, deals):
    check(store, deals, {"!OPENED": True}, lambda d: d["OPENED"] == "N")
    # The "boolean sent as the string True" bug: the negation matches everything.
    check(store, deals, {"!OPENED": "True"}, lambda _: True)
    check(store, deals, {"@CLOSED": [True, "N"]}, lambda _: True)


# --- null and empty -----------------------------------------------------------------

def test_none_and_empty_string_match_null_or_empty_fields(store, deals):
    blank = lambda d: d["COMMENTS"] in (None, "")  # noqa: E731
    found = check(store, deals, {"COMMENTS": None}, blank)
    assert len(found) > 2
    check(store, deals, {"COMMENTS": ""}, blank)
    check(store, deals, {"!COMMENTS": None}, lambda d: not blank(d))
    check(store, deals, {">COMMENTS": "A"}, lambda d: d["COMMENTS"] is not None
          and d["COMMENTS"] > "A")


def test_null_never_matches_comparisons_but_matches_negations(store, deals):
    check(store, deals, {"CONTACT_ID": "1"}, lambda d: d["CONTACT_ID"] == "1")
    check(store, deals, {">=CONTACT_ID": 0}, lambda d: d["CONTACT_ID"] is not None)
    check(store, deals, {"!CONTACT_ID": 0}, lambda d: d["CONTACT_ID"] != "0")


# --- combinations, odd keys ------------------------------------------------------------

def test_several_conditions_all_hold(store, deals):
    low, high = int(deals[30]["ID"]), int(deals[180]["ID"])
    check(store, deals, {">ID": low, "<=ID": high, "OPENED": "Y", "!STAGE_ID": "NEW"},
          lambda d: low < int(d["ID"]) <= high and d["OPENED"] == "Y" and d["STAGE_ID"] != "NEW")


def test_keys_are_case_insensitive_and_camel_case_is_understood(store, deals):
    check(store, deals, {"stage_id": "WON"}, lambda d: d["STAGE_ID"] == "WON")
    check(store, deals, {"stageId": "WON"}, lambda d: d["STAGE_ID"] == "WON")
    check(store, deals, {">id": deals[200]["ID"]}, lambda d: int(d["ID"]) > int(deals[200]["ID"]))


def test_unknown_fields_match_nothing_and_check_permissions_is_ignored(store, deals):
    assert listed(store, {"NO_SUCH_FIELD": 1}) == ([], 0)
    assert listed(store, {">ID": 0, "%TITEL": "a"}) == ([], 0)
    check(store, deals, {"CHECK_PERMISSIONS": "N", "OPENED": "Y"}, lambda d: d["OPENED"] == "Y")


@pytest.mark.parametrize("flt", [None, "", [], [""], {}])
def test_empty_filters_filter_nothing(store, flt):
    assert listed(store, flt)[1] == 240


@pytest.mark.parametrize("flt", ["OPENED=Y", 5, True])
def test_a_filter_that_is_not_an_array_is_refused(store, flt):
    with pytest.raises(PortalError) as info:
        store.call("crm.deal.list", {"filter": flt})
    assert (info.value.code, info.value.description) == ("", "Parameter 'filter' must be array.")


def test_logic_or_and_subfilters(store, deals):
    pivot = int(deals[100]["ID"])
    flt = {"LOGIC": "OR", "0": {"STAGE_ID": "WON"}, "1": {"<ID": pivot, "OPENED": "N"}}
    check(store, deals, flt, lambda d: d["STAGE_ID"] == "WON" or
          (int(d["ID"]) < pivot and d["OPENED"] == "N"))
    nested = {">ID": pivot, "0": {"LOGIC": "OR", "STAGE_ID": "WON", "CLOSED": "N"}}
    check(store, deals, nested, lambda d: int(d["ID"]) > pivot and
          (d["STAGE_ID"] == "WON" or d["CLOSED"] == "N"))
    either = {"LOGIC": "or", "NO_SUCH": 1, "STAGE_ID": "LOSE"}
    check(store, deals, either, lambda d: d["STAGE_ID"] == "LOSE")


def test_arfilter_alias_and_upper_case_parameter_names(store, deals):
    pivot = int(deals[200]["ID"])
    for name in ("arFilter", "FILTER", "Filter"):
        outcome = store.call("crm.deal.list", {name: {">ID": pivot}, "SELECT": ["ID"]})
        assert outcome.total == 39


def test_other_entities_filter_their_own_fields(store):
    leads = [r for s in (0, 50) for r in store.call("crm.lead.list", {"start": s}).result]
    converted = [int(r["ID"]) for r in leads if r["STATUS_ID"] == "CONVERTED"]
    assert listed(store, {"STATUS_ID": "CONVERTED"}, "crm.lead.list") == \
        (converted, len(converted))
    assert listed(store, {"STAGE_ID": "WON"}, "crm.lead.list") == ([], 0)


# --- ID fast paths --------------------------------------------------------------------

class _Counting:
    """Counts how many records the list engine materialises."""

    def __init__(self, monkeypatch):
        self.generated = 0
        original = table_module.RecordTable.iter_records

        def counting(table, ids):
            for pair in original(table, ids):
                self.generated += 1
                yield pair

        monkeypatch.setattr(table_module.RecordTable, "iter_records", counting)


def test_id_filters_and_offsets_on_a_large_table_touch_only_one_page(monkeypatch):
    store = DataStore(deals=200_000)
    ids = store.ids("deal")
    counter = _Counting(monkeypatch)
    outcome = store.call("crm.deal.list", {"filter": {">ID": ids[1000], "<=ID": ids[150_000]},
                                           "start": 100_000, "order": {"ID": "ASC"}})
    assert [int(r["ID"]) for r in outcome.result] == ids[101_001:101_051]
    assert outcome.total == 149_000 and outcome.next == 100_050
    desc = store.call("crm.deal.list", {"filter": {"<ID": ids[-10]}, "order": {"ID": "DESC"},
                                        "start": 50})
    assert [int(r["ID"]) for r in desc.result] == ids[-11::-1][50:100]
    picked = store.call("crm.deal.list", {"filter": {"@ID": ids[5:2000:40], ">=ID": ids[600]}})
    assert [int(r["ID"]) for r in picked.result] == ids[605:2000:40]
    tasks = store.call("crm.deal.list", {"filter": {"ID": ids[77]}, "start": -1})
    assert [int(r["ID"]) for r in tasks.result] == [ids[77]]
    assert counter.generated == 50 + 50 + len(ids[605:2000:40]) + 1


def test_start_minus_one_scan_stops_at_the_first_full_page(monkeypatch):
    store = DataStore(deals=5000)
    counter = _Counting(monkeypatch)
    outcome = store.call("crm.deal.list", {"filter": {"OPENED": "Y"}, "start": -1})
    assert len(outcome.result) == 50 and outcome.total == 0
    assert counter.generated < 200


@pytest.mark.parametrize("flt", [
    {">ID": "12abc"}, {">ID": None}, {"@ID": ["3", "x"]}, {">=ID": True}, {"<ID": [5, 9]},
])
def test_odd_id_values_fall_back_to_the_generic_rules(store, deals, flt):
    ids, total = listed(store, flt)
    assert total == len(ids) and ids == sorted(ids)


def test_fast_and_generic_paths_agree(store, deals):
    pivot_low, pivot_high = int(deals[40]["ID"]), int(deals[210]["ID"])
    fast = listed(store, {">ID": pivot_low, "<ID": pivot_high})
    # "!STAGE_ID": "x" holds for every record but forces the scanning path.
    generic = listed(store, {">ID": pivot_low, "<ID": pivot_high, "!STAGE_ID": "x"})
    assert fast == generic


def test_tasks_and_items_use_the_same_filters(store):
    items = DataStore(deals=120, tasks=120, seed=5)
    ids = items.ids("deal")
    outcome = items.call("crm.item.list", {"entityTypeId": 2, "filter": {
        "@id": ids[:5], "!=stageId": "NEW"}})
    legacy = items.call("crm.deal.list", {"filter": {"@ID": ids[:5], "!=STAGE_ID": "NEW"}})
    assert [i["id"] for i in outcome.result["items"]] == [int(r["ID"]) for r in legacy.result]
    task_ids = items.ids("task")
    outcome = items.call("tasks.task.list", {"filter": {"<=ID": task_ids[9], "%TITLE": "#"}})
    assert [int(t["id"]) for t in outcome.result["tasks"]] == task_ids[:10][::-1]
