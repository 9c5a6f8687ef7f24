"""DataStore: seeded data, list pagination, select/order, CRUD, crm.item, tasks, users."""
from __future__ import annotations

import json
import random
import time

import pytest

from bitrix_threaded.testing.store import CallOutcome, DataStore, PortalError

DEAL_FIELDS = {
    "ID", "TITLE", "TYPE_ID", "STAGE_ID", "CATEGORY_ID", "CURRENCY_ID", "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY", "TAX_VALUE", "COMPANY_ID", "CONTACT_ID", "BEGINDATE",
    "CLOSEDATE", "OPENED", "CLOSED", "COMMENTS", "ASSIGNED_BY_ID", "CREATED_BY_ID",
    "MODIFY_BY_ID", "DATE_CREATE", "DATE_MODIFY", "SOURCE_ID",
}


@pytest.fixture(scope="module")
def store():
    return DataStore(deals=260, leads=120, contacts=80, tasks=130, users=12, seed=7)


def every(store, method, **params):
    """All records of a legacy list, by offset pages."""
    out, start = [], 0
    while True:
        outcome = store.call(method, dict(params, start=start))
        out.extend(outcome.result)
        if outcome.next is None:
            return out
        start = outcome.next


# --- construction, IDs, determinism -----------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    ({"deals": "10"}, TypeError), ({"deals": 1.5}, TypeError), ({"leads": True}, TypeError),
    ({"tasks": -1}, ValueError), ({"users": -2}, ValueError), ({"seed": "1"}, TypeError),
])
def test_constructor_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        DataStore(**kwargs)


def test_ids_and_count_reject_unknown_entities(store):
    with pytest.raises(ValueError, match="quote"):
        store.ids("quote")
    with pytest.raises(ValueError):
        store.count("deals")


def test_counts_match_the_requested_sizes(store):
    assert [store.count(e) for e in ("deal", "lead", "contact", "task", "user")] == \
        [260, 120, 80, 130, 12]
    assert len(store.ids("deal")) == 260


def test_ids_ascend_with_small_gaps_and_a_few_big_holes():
    ids = DataStore(deals=5000, seed=3).ids("deal")
    gaps = [b - a for a, b in zip(ids, ids[1:])]
    small = [g for g in gaps if g <= 3]
    big = [g for g in gaps if g > 3]
    assert min(gaps) >= 1
    assert len(small) == len(gaps) - len(big)
    assert 2 <= len(big) <= 3 and all(g > 1000 for g in big)
    assert {1, 2, 3} <= set(small)


def test_each_entity_has_its_own_id_sequence_and_users_are_dense(store):
    assert store.ids("deal") != store.ids("task")[:260]
    assert store.ids("user") == list(range(1, 13))


def test_same_seed_same_data_other_seed_other_data():
    a = DataStore(deals=120, leads=60, seed=11)
    b = DataStore(deals=120, leads=60, seed=11)
    c = DataStore(deals=120, leads=60, seed=12)
    assert a.ids("deal") == b.ids("deal") != c.ids("deal")
    assert every(a, "crm.deal.list") == every(b, "crm.deal.list")
    assert every(a, "crm.lead.list", select=["*", "PHONE"]) == \
        every(b, "crm.lead.list", select=["*", "PHONE"])
    shared = sorted(set(a.ids("deal")) & set(c.ids("deal")))[:20]
    titles_a = [a.call("crm.deal.get", {"id": i}).result["OPPORTUNITY"] for i in shared]
    titles_c = [c.call("crm.deal.get", {"id": i}).result["OPPORTUNITY"] for i in shared]
    assert titles_a != titles_c


def test_has_method_and_unknown_methods(store):
    for method in ("crm.deal.list", "crm.lead.get", "crm.contact.fields", "crm.deal.add",
                   "crm.item.list", "crm.item.get", "tasks.task.list", "user.get"):
        assert store.has_method(method)
    for method in ("crm.quote.list", "batch", "crm.deal.list.json", "CRM.DEAL.LIST"):
        assert not store.has_method(method)
    with pytest.raises(PortalError) as info:
        store.call("crm.quote.list", {})
    assert info.value.status == 404


def test_portal_error_carries_code_description_status_and_extra():
    error = PortalError("ERROR_ARGUMENT", "bad", 400, argument="filter")
    assert (error.code, error.description, error.status, error.extra) == \
        ("ERROR_ARGUMENT", "bad", 400, {"argument": "filter"})
    assert error.body() == {"error": "ERROR_ARGUMENT", "error_description": "bad",
                            "argument": "filter"}


# --- legacy record shape and select ---------------------------------------

def test_deal_records_are_upper_case_strings_with_user_fields(store):
    deal = store.call("crm.deal.list", {}).result[0]
    assert DEAL_FIELDS <= set(deal)
    assert any(key.startswith("UF_CRM_") for key in deal)
    assert all(value is None or isinstance(value, str) for value in deal.values())
    assert deal["ID"] == str(store.ids("deal")[0])
    assert deal["OPENED"] in ("Y", "N") and deal["CLOSED"] in ("Y", "N")
    assert deal["OPPORTUNITY"].endswith((".00", "0")) and float(deal["OPPORTUNITY"]) >= 0
    assert len(deal["DATE_CREATE"]) == 25 and deal["DATE_CREATE"][10] == "T"
    assert deal["DATE_CREATE"].endswith("+03:00")


def test_records_are_a_few_hundred_bytes_and_some_fields_are_null(store):
    page = store.call("crm.deal.list", {"select": ["*", "UF_*"]}).result
    sizes = [len(json.dumps(r, ensure_ascii=False, separators=(",", ":"))) for r in page]
    assert 400 <= sum(sizes) / len(sizes) <= 800
    assert any(None in r.values() for r in page)


def test_default_select_is_star_and_user_fields_without_multi_fields(store):
    lead = store.call("crm.lead.list", {}).result[0]
    assert "UF_CRM_1594289813884" in lead and "NAME" in lead
    assert "PHONE" not in lead and "EMAIL" not in lead
    assert store.call("crm.lead.list", {"select": ["*", "UF_*"]}).result[0] == lead


def test_select_star_excludes_user_fields_and_uf_star_adds_only_them(store):
    plain = store.call("crm.deal.list", {"select": ["*"]}).result[0]
    assert DEAL_FIELDS == set(plain)
    user = store.call("crm.deal.list", {"select": ["UF_*"]}).result[0]
    assert {k for k in user if k != "ID"} == {k for k in user if k.startswith("UF_CRM_")}
    assert len(user) > 1


def test_select_names_always_include_id_and_ignore_unknown_names(store):
    rows = store.call("crm.deal.list", {"select": ["TITLE", "NOPE", "stage_id"]}).result
    assert set(rows[0]) == {"ID", "TITLE", "STAGE_ID"}


def test_select_accepts_a_php_array_of_strings(store):
    rows = store.call("crm.deal.list", {"select": {"0": "ID", "1": "OPENED"}}).result
    assert set(rows[0]) == {"ID", "OPENED"}
    rows = store.call("crm.deal.list", {"SELECT": ["ID"], "START": "0"}).result
    assert set(rows[0]) == {"ID"}


def test_multi_fields_only_when_named(store):
    rows = every(store, "crm.lead.list", select=["ID", "PHONE", "EMAIL", "HAS_PHONE"])
    with_phone = [r for r in rows if r["HAS_PHONE"] == "Y"]
    assert with_phone and len(with_phone) < len(rows)
    for row in rows:
        assert ("PHONE" in row) == (row["HAS_PHONE"] == "Y")
    phone = with_phone[0]["PHONE"]
    assert phone[0]["TYPE_ID"] == "PHONE" and phone[0]["VALUE"].startswith("+7")
    assert set(phone[0]) == {"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}


# --- pagination -------------------------------------------------------------

def test_first_page_has_total_and_next(store):
    outcome = store.call("crm.deal.list", {"select": ["ID"]})
    assert isinstance(outcome, CallOutcome)
    assert [int(r["ID"]) for r in outcome.result] == store.ids("deal")[:50]
    assert (outcome.total, outcome.next) == (260, 50)
    assert (outcome.records, outcome.skipped, outcome.counted) == (50, 0, 260)


@pytest.mark.parametrize("start, offset", [(50, 50), (75, 50), (99, 50), ("100", 100),
                                           (" 149", 100), ("150abc", 150), (0.0, 0)])
def test_start_is_floored_to_a_multiple_of_50(store, start, offset):
    outcome = store.call("crm.deal.list", {"select": ["ID"], "start": start})
    assert [int(r["ID"]) for r in outcome.result] == store.ids("deal")[offset:offset + 50]
    assert outcome.next == offset + 50 and outcome.total == 260
    assert outcome.skipped == offset and outcome.records == 50


def test_last_page_has_no_next(store):
    outcome = store.call("crm.deal.list", {"select": ["ID"], "start": 250})
    assert len(outcome.result) == 10 and outcome.total == 260 and outcome.next is None


def test_start_beyond_the_end_gives_an_empty_page_with_total(store):
    outcome = store.call("crm.deal.list", {"select": ["ID"], "start": 1000})
    assert outcome.result == [] and outcome.total == 260 and outcome.next is None
    assert outcome.skipped == 260 and outcome.records == 0


def test_exactly_one_full_page_has_no_next():
    store = DataStore(deals=50)
    outcome = store.call("crm.deal.list", {})
    assert len(outcome.result) == 50 and outcome.total == 50 and outcome.next is None


def test_empty_entity_lists_are_empty(store):
    empty = DataStore()
    outcome = empty.call("crm.deal.list", {})
    assert outcome.result == [] and outcome.total == 0 and outcome.next is None


@pytest.mark.parametrize("start", [-1, "-1", -50])
def test_start_minus_one_on_legacy_lists_gives_total_zero_and_no_next(store, start):
    outcome = store.call("crm.deal.list", {"select": ["ID"], "start": start,
                                           "filter": {">ID": store.ids("deal")[9]}})
    assert [int(r["ID"]) for r in outcome.result] == store.ids("deal")[10:60]
    assert outcome.total == 0 and outcome.next is None
    assert (outcome.records, outcome.skipped, outcome.counted) == (50, 0, 0)


def test_start_minus_one_without_legacy_total_zero_has_no_total():
    store = DataStore(deals=80, legacy_total_zero=False)
    outcome = store.call("crm.deal.list", {"start": -1})
    assert outcome.total is None and outcome.next is None and len(outcome.result) == 50


def test_counted_rows_reflect_the_filter(store):
    ids = store.ids("deal")
    outcome = store.call("crm.deal.list", {"filter": {">ID": ids[199]}, "select": ["ID"]})
    assert (outcome.total, outcome.next, outcome.counted) == (60, 50, 60)


# --- order ------------------------------------------------------------------

def test_default_order_is_id_ascending_and_desc_reverses(store):
    ids = store.ids("deal")
    desc = store.call("crm.deal.list", {"order": {"ID": "desc"}, "select": ["ID"]})
    assert [int(r["ID"]) for r in desc.result] == ids[::-1][:50]
    second = store.call("crm.deal.list", {"order": {"id": "DESC"}, "start": 50})
    assert [int(r["ID"]) for r in second.result] == ids[::-1][50:100]


def test_order_by_amount_is_numeric(store):
    rows = every(store, "crm.deal.list", order={"OPPORTUNITY": "DESC"},
                 select=["ID", "OPPORTUNITY"])
    amounts = [float(r["OPPORTUNITY"]) for r in rows]
    assert amounts == sorted(amounts, reverse=True)
    assert len(rows) == 260 and len({r["ID"] for r in rows}) == 260
    # Numeric, not string order: as strings "9..." would sort above "1...".
    assert sorted(r["OPPORTUNITY"] for r in rows) != [r["OPPORTUNITY"] for r in rows[::-1]]


def test_order_by_several_keys_and_unknown_keys_are_ignored(store):
    rows = every(store, "crm.deal.list", order={"STAGE_ID": "asc", "NOPE": "asc", "ID": "desc"},
                 select=["ID", "STAGE_ID"])
    keys = [(r["STAGE_ID"], -int(r["ID"])) for r in rows]
    assert keys == sorted(keys)


def test_numeric_order_puts_9_before_10():
    store = DataStore(deals=3)
    first, second, third = store.ids("deal")
    store.call("crm.deal.update", {"id": first, "fields": {"COMPANY_ID": "10"}})
    store.call("crm.deal.update", {"id": second, "fields": {"COMPANY_ID": "9"}})
    store.call("crm.deal.update", {"id": third, "fields": {"COMPANY_ID": "100"}})
    rows = store.call("crm.deal.list", {"order": {"COMPANY_ID": "ASC"},
                                        "select": ["COMPANY_ID"]}).result
    assert [r["COMPANY_ID"] for r in rows] == ["9", "10", "100"]


# --- get / add / update / delete / fields --------------------------------------

def test_get_returns_the_listed_record_with_multi_fields(store):
    lead_id = store.ids("lead")[3]
    listed = store.call("crm.lead.list", {"filter": {"ID": lead_id},
                                          "select": ["*", "UF_*", "PHONE", "EMAIL"]}).result[0]
    got = store.call("crm.lead.get", {"id": str(lead_id)})
    assert got.result == listed and got.total is None and got.next is None
    assert store.call("crm.lead.get", {"ID": lead_id}).result == listed


@pytest.mark.parametrize("params", [{}, {"id": 0}, {"id": "abc"}, {"id": -5}, {"id": None}])
def test_get_without_a_valid_id(store, params):
    with pytest.raises(PortalError) as info:
        store.call("crm.deal.get", params)
    assert (info.value.code, info.value.description, info.value.status) == \
        ("", "ID is not defined or invalid.", 400)


def test_get_of_a_missing_record(store):
    missing = store.ids("deal")[-1] + 1
    with pytest.raises(PortalError) as info:
        store.call("crm.deal.get", {"id": missing})
    assert (info.value.code, info.value.description, info.value.status) == \
        ("", "Not found", 400)


def test_add_returns_a_new_id_above_the_maximum_and_stores_strings():
    store = DataStore(deals=30)
    top = store.ids("deal")[-1]
    outcome = store.call("crm.deal.add", {"fields": {
        "TITLE": "Big one", "OPPORTUNITY": 1500, "OPENED": False, "ASSIGNED_BY_ID": 3,
        "ID": 5, "DATE_CREATE": "2000-01-01T00:00:00+03:00", "NOT_A_FIELD": "x"}})
    assert outcome.result == top + 1 and isinstance(outcome.result, int)
    deal = store.call("crm.deal.get", {"id": outcome.result}).result
    assert deal["ID"] == str(top + 1) and deal["TITLE"] == "Big one"
    assert deal["OPPORTUNITY"] == "1500.00" and deal["OPENED"] == "N"
    assert deal["ASSIGNED_BY_ID"] == "3" and deal["STAGE_ID"] == "NEW"
    assert deal["DATE_CREATE"] != "2000-01-01T00:00:00+03:00"
    assert "NOT_A_FIELD" not in deal
    assert store.call("crm.deal.add", {"fields": {}}).result == top + 2
    assert store.ids("deal")[-2:] == [top + 1, top + 2]
    assert store.call("crm.deal.get", {"id": top + 2}).result["TITLE"] == "Deal #%d" % (top + 2)


def test_added_records_appear_in_lists_and_filters():
    store = DataStore(deals=60)
    new_id = store.call("crm.deal.add", {"fields": {"TITLE": "Needle", "STAGE_ID": "WON"}}).result
    outcome = store.call("crm.deal.list", {"filter": {"TITLE": "Needle"}})
    assert [r["ID"] for r in outcome.result] == [str(new_id)] and outcome.total == 1
    last = store.call("crm.deal.list", {"start": 50, "select": ["ID"]}).result
    assert last[-1]["ID"] == str(new_id)
    full = store.call("crm.deal.list", {"filter": {"ID": new_id}}).result[0]
    assert full == store.call("crm.deal.get", {"id": new_id}).result


def test_add_with_multi_fields_sets_has_phone():
    store = DataStore(contacts=5)
    new_id = store.call("crm.contact.add", {"fields": {
        "NAME": "Ann", "PHONE": {"0": {"VALUE": "+100", "VALUE_TYPE": "MOBILE"}}}}).result
    contact = store.call("crm.contact.get", {"id": new_id}).result
    assert contact["HAS_PHONE"] == "Y" and contact["HAS_EMAIL"] == "N"
    assert [(p["VALUE"], p["VALUE_TYPE"]) for p in contact["PHONE"]] == [("+100", "MOBILE")]
    assert "EMAIL" not in contact


@pytest.mark.parametrize("params", [{}, {"fields": "TITLE"}, {"fields": ["x"]}])
def test_add_without_a_fields_array(params):
    with pytest.raises(PortalError, match="fields"):
        DataStore(deals=1).call("crm.deal.add", params)


def test_update_changes_a_generated_record_and_keeps_the_rest():
    store = DataStore(deals=20, leads=20)
    deal_id = store.ids("deal")[4]
    before = store.call("crm.deal.get", {"id": deal_id}).result
    assert store.call("crm.deal.update", {"id": deal_id, "fields": {
        "TITLE": "Renamed", "OPPORTUNITY": "12.5", "CLOSED": "Y"}}).result is True
    after = store.call("crm.deal.get", {"id": deal_id}).result
    assert after["TITLE"] == "Renamed" and after["OPPORTUNITY"] == "12.50"
    assert after["CLOSED"] == "Y"
    unchanged = {k: v for k, v in before.items() if k not in ("TITLE", "OPPORTUNITY", "CLOSED")}
    assert {k: after[k] for k in unchanged} == unchanged
    assert store.call("crm.deal.list", {"filter": {"TITLE": "Renamed"}}).total == 1


def test_update_of_multi_fields_adds_changes_and_removes_entries():
    store = DataStore(leads=40)
    lead = next(r for r in every(store, "crm.lead.list", select=["ID", "PHONE"])
                if "PHONE" in r)
    lead_id, phone = int(lead["ID"]), lead["PHONE"][0]
    store.call("crm.lead.update", {"id": lead_id, "fields": {"PHONE": [
        {"ID": phone["ID"], "VALUE": "+7000"}, {"VALUE": "+7111", "VALUE_TYPE": "HOME"}]}})
    phones = store.call("crm.lead.get", {"id": lead_id}).result["PHONE"]
    assert [(p["VALUE"], p["VALUE_TYPE"]) for p in phones] == [("+7000", "WORK"),
                                                               ("+7111", "HOME")]
    store.call("crm.lead.update", {"id": lead_id, "fields": {"PHONE": [
        {"ID": p["ID"], "VALUE": ""} for p in phones]}})
    got = store.call("crm.lead.get", {"id": lead_id}).result
    assert "PHONE" not in got and got["HAS_PHONE"] == "N"


def test_update_errors():
    store = DataStore(deals=3)
    with pytest.raises(PortalError, match="ID is not defined"):
        store.call("crm.deal.update", {"fields": {"TITLE": "x"}})
    with pytest.raises(PortalError, match="Not found"):
        store.call("crm.deal.update", {"id": 999999, "fields": {"TITLE": "x"}})
    with pytest.raises(PortalError, match="fields"):
        store.call("crm.deal.update", {"id": store.ids("deal")[0]})


def test_delete_removes_the_record_everywhere():
    store = DataStore(deals=70)
    victim = store.ids("deal")[10]
    assert store.call("crm.deal.delete", {"id": victim}).result is True
    assert victim not in store.ids("deal") and store.count("deal") == 69
    with pytest.raises(PortalError, match="Not found"):
        store.call("crm.deal.get", {"id": victim})
    with pytest.raises(PortalError, match="Not found"):
        store.call("crm.deal.delete", {"id": victim})
    assert store.call("crm.deal.list", {}).total == 69
    assert store.call("crm.deal.list", {"filter": {"ID": victim}}).result == []


def test_deleting_an_updated_record_forgets_the_update():
    store = DataStore(deals=5)
    target = store.ids("deal")[0]
    store.call("crm.deal.update", {"id": target, "fields": {"TITLE": "gone"}})
    store.call("crm.deal.delete", {"id": target})
    assert store.call("crm.deal.list", {"filter": {"TITLE": "gone"}}).total == 0


def test_fields_describes_every_field_like_the_real_portal(store):
    with open("tests/fixtures/real_responses/crm-lead-fields-success.json",
              encoding="utf-8") as handle:
        real = json.load(handle)["response"]["result"]
    fields = store.call("crm.lead.fields", {}).result
    shape = {"type", "isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic",
             "title"}
    for name, spec in fields.items():
        assert shape <= set(spec), name
        if name in real:
            assert spec["type"] == real[name]["type"], name
            assert spec["isMultiple"] == real[name]["isMultiple"], name
    assert fields["ID"]["isReadOnly"] is True and fields["PHONE"]["isMultiple"] is True
    uf = [spec for name, spec in fields.items() if name.startswith("UF_CRM_")]
    assert uf and all(spec["isDynamic"] and "listLabel" in spec for spec in uf)
    deal_fields = store.call("crm.deal.fields", {}).result
    assert DEAL_FIELDS <= set(deal_fields)
    assert deal_fields["STAGE_ID"]["statusType"] == "DEAL_STAGE"


def test_listed_deal_keys_are_described_by_fields(store):
    described = set(store.call("crm.deal.fields", {}).result)
    assert set(store.call("crm.deal.list", {}).result[0]) <= described


# --- crm.item -----------------------------------------------------------------

def test_crm_item_list_is_the_same_records_in_camel_case_with_ints(store):
    outcome = store.call("crm.item.list", {"entityTypeId": 2})
    items = outcome.result["items"]
    legacy = store.call("crm.deal.list", {}).result
    assert set(outcome.result) == {"items"}
    assert (outcome.total, outcome.next) == (260, 50)
    assert [i["id"] for i in items] == [int(d["ID"]) for d in legacy]
    first, deal = items[0], legacy[0]
    assert first["title"] == deal["TITLE"] and first["stageId"] == deal["STAGE_ID"]
    assert first["assignedById"] == int(deal["ASSIGNED_BY_ID"])
    assert first["opportunity"] == float(deal["OPPORTUNITY"])
    assert isinstance(first["opportunity"], (int, float)) and isinstance(first["id"], int)
    assert first["createdTime"] == deal["DATE_CREATE"]
    assert first["ufCrm_1594289616952"] == deal["UF_CRM_1594289616952"]
    assert all(k[0].islower() for k in first)


@pytest.mark.parametrize("entity_type, entity", [(1, "lead"), ("2", "deal"), (3, "contact")])
def test_crm_item_entity_types(store, entity_type, entity):
    outcome = store.call("crm.item.list", {"entityTypeId": entity_type, "select": ["id"]})
    assert [i["id"] for i in outcome.result["items"]] == store.ids(entity)[:50]
    assert all(set(i) == {"id"} for i in outcome.result["items"])


def test_crm_item_filter_order_select_and_start(store):
    ids = store.ids("deal")
    outcome = store.call("crm.item.list", {
        "entityTypeId": 2, "filter": {">id": ids[99], "<=ID": ids[200]},
        "order": {"id": "DESC"}, "select": ["id", "title", "stageId"], "start": 60})
    assert [i["id"] for i in outcome.result["items"]] == ids[100:201][::-1][50:100]
    assert outcome.total == 101 and outcome.next == 100
    assert set(outcome.result["items"][0]) == {"id", "title", "stageId"}
    won = store.call("crm.item.list", {"entityTypeId": 2, "filter": {"stageId": "WON"}})
    legacy_won = store.call("crm.deal.list", {"filter": {"STAGE_ID": "WON"}})
    assert won.total == legacy_won.total > 0
    assert [i["id"] for i in won.result["items"]] == [int(d["ID"]) for d in legacy_won.result]


def test_crm_item_select_wildcards(store):
    star = store.call("crm.item.list", {"entityTypeId": 2, "select": ["*"]}).result["items"][0]
    assert "ufCrm_1594289616952" in star and "title" in star
    uf = store.call("crm.item.list", {"entityTypeId": 2,
                                      "select": ["id", "ufCrm*"]}).result["items"][0]
    assert {k for k in uf if k != "id"} and all(k.startswith("ufCrm_") for k in uf if k != "id")


def test_crm_item_start_minus_one_has_no_total_and_no_next(store):
    ids = store.ids("deal")
    outcome = store.call("crm.item.list", {"entityTypeId": 2, "start": -1,
                                           "filter": {">id": ids[0]}, "order": {"id": "ASC"}})
    assert outcome.total is None and outcome.next is None
    assert [i["id"] for i in outcome.result["items"]] == ids[1:51]


def test_crm_item_get_and_errors(store):
    deal_id = store.ids("deal")[7]
    item = store.call("crm.item.get", {"entityTypeId": 2, "id": deal_id}).result
    assert set(item) == {"item"} and item["item"]["id"] == deal_id
    listed = store.call("crm.item.list", {"entityTypeId": 2, "filter": {"id": deal_id}})
    assert listed.result["items"] == [item["item"]]
    for params in ({"entityTypeId": 2, "id": deal_id + 100000}, {"entityTypeId": 2}):
        with pytest.raises(PortalError) as info:
            store.call("crm.item.get", params)
        assert (info.value.code, info.value.description, info.value.status) == \
            ("NOT_FOUND", "Item not found", 400)
    for method in ("crm.item.get", "crm.item.list"):
        for entity_type in (7, 128, None, "x"):
            with pytest.raises(PortalError) as info:
                store.call(method, {"entityTypeId": entity_type, "id": deal_id})
            assert (info.value.code, info.value.description) == ("NOT_FOUND", "SPA not found")


def test_crm_item_reflects_legacy_writes():
    store = DataStore(deals=3)
    deal_id = store.ids("deal")[0]
    store.call("crm.deal.update", {"id": deal_id, "fields": {"OPPORTUNITY": "99.5",
                                                             "COMPANY_ID": ""}})
    item = store.call("crm.item.get", {"entityTypeId": 2, "id": deal_id}).result["item"]
    assert item["opportunity"] == 99.5 and item["companyId"] is None


# --- tasks ----------------------------------------------------------------------

def test_tasks_are_nested_camel_case_strings_in_descending_id_order(store):
    outcome = store.call("tasks.task.list", {})
    tasks = outcome.result["tasks"]
    assert set(outcome.result) == {"tasks"}
    assert [int(t["id"]) for t in tasks] == store.ids("task")[::-1][:50]
    assert (outcome.total, outcome.next) == (130, 50)
    first = tasks[0]
    assert {"id", "title", "responsibleId", "status", "createdBy", "createdDate"} <= set(first)
    assert all(v is None or isinstance(v, str) for v in first.values())


def test_tasks_filter_select_order_and_start(store):
    ids = store.ids("task")
    outcome = store.call("tasks.task.list", {
        "filter": {">ID": ids[9]}, "select": ["ID", "TITLE", "RESPONSIBLE_ID"],
        "order": {"ID": "asc"}, "start": 50})
    assert [int(t["id"]) for t in outcome.result["tasks"]] == ids[60:110]
    assert set(outcome.result["tasks"][0]) == {"id", "title", "responsibleId"}
    assert (outcome.total, outcome.next) == (120, 100)
    mine = store.call("tasks.task.list", {"filter": {"RESPONSIBLE_ID": 2}, "select": ["ID"]})
    everyone = [t for page in (0, 50, 100) for t in store.call(
        "tasks.task.list", {"select": ["RESPONSIBLE_ID"], "start": page}).result["tasks"]]
    assert mine.total == sum(t["responsibleId"] == "2" for t in everyone) > 0


def test_tasks_start_minus_one_and_bad_order(store):
    outcome = store.call("tasks.task.list", {"start": -1, "order": {"ID": "ASC"},
                                             "filter": {">ID": 0}})
    assert outcome.total is None and outcome.next is None
    assert [int(t["id"]) for t in outcome.result["tasks"]] == store.ids("task")[:50]
    with pytest.raises(PortalError) as info:
        store.call("tasks.task.list", {"order": {"NO_SUCH": "asc"}})
    assert (info.value.code, info.value.description) == \
        ("0", "Invalid sorting key (internal error)")


# --- users ----------------------------------------------------------------------

def test_user_get_is_a_plain_list_with_typed_fields(store):
    outcome = store.call("user.get", {})
    users = outcome.result
    assert [u["ID"] for u in users] == [str(i) for i in range(1, 13)]
    assert outcome.total == 12 and outcome.next is None
    assert all(isinstance(u["ACTIVE"], bool) for u in users)
    assert all(isinstance(u["UF_DEPARTMENT"], list) and
               all(isinstance(d, int) for d in u["UF_DEPARTMENT"]) for u in users)
    assert [u["ID"] for u in users if not u["ACTIVE"]] == ["5", "11"]


def test_user_get_sort_order_and_filters(store):
    desc = store.call("user.get", {"sort": "ID", "order": "DESC"}).result
    assert [u["ID"] for u in desc] == [str(i) for i in range(12, 0, -1)]
    active = store.call("user.get", {"FILTER": {"ACTIVE": True}}).result
    flat = store.call("user.get", {"ACTIVE": "Y"}).result
    assert active == flat and all(u["ACTIVE"] for u in active)
    inactive = store.call("user.get", {"filter": {"ACTIVE": False}}).result
    assert len(active) + len(inactive) == 12
    department = store.call("user.get", {"UF_DEPARTMENT": 1}).result
    assert department and all(1 in u["UF_DEPARTMENT"] for u in department)
    assert store.call("user.get", {"ID": "1"}).result[0]["ID"] == "1"


def test_user_get_pages_many_users():
    store = DataStore(users=120)
    outcome = store.call("user.get", {"start": 100})
    assert [u["ID"] for u in outcome.result] == [str(i) for i in range(101, 121)]
    assert outcome.total == 120 and outcome.next is None
    first = store.call("user.get", {})
    assert first.next == 50


# --- mutate -----------------------------------------------------------------------

def test_mutate_inserts_above_the_maximum_and_deletes_existing_records():
    store = DataStore(deals=100, tasks=40)
    before_deals, before_tasks = store.ids("deal"), store.ids("task")
    added, deleted = store.mutate(random.Random(5), inserts=3, deletes=2)
    assert len(added) == 6 and len(deleted) == 4
    deals = store.ids("deal")
    new_deals, new_tasks = added[:3], added[3:]
    assert all(i > before_deals[-1] for i in new_deals)
    assert all(i > before_tasks[-1] for i in new_tasks)
    steps = [b - a for a, b in zip([before_deals[-1]] + new_deals, new_deals)]
    assert all(1 <= s <= 3 for s in steps)
    assert store.count("deal") == 101 and store.count("task") == 41
    assert store.count("lead") == 0 and store.count("contact") == 0
    assert set(new_deals) <= set(deals)
    for record_id in deleted[:2]:
        assert record_id not in deals
        with pytest.raises(PortalError):
            store.call("crm.deal.get", {"id": record_id})
    got = store.call("crm.deal.get", {"id": new_deals[0]}).result
    assert got["ID"] == str(new_deals[0])


def test_mutate_is_deterministic_for_the_same_rng():
    a, b = DataStore(deals=50, leads=50), DataStore(deals=50, leads=50)
    assert a.mutate(random.Random(9), 2, 2) == b.mutate(random.Random(9), 2, 2)
    assert a.ids("deal") == b.ids("deal") and a.ids("lead") == b.ids("lead")


def test_mutate_entity_and_its_argument_checks():
    store = DataStore(contacts=3)
    added, deleted = store.mutate_entity("contact", random.Random(1), inserts=0, deletes=5)
    assert added == [] and len(deleted) == 3 and store.count("contact") == 0
    added, _ = store.mutate_entity("contact", random.Random(1), inserts=1, deletes=0)
    assert store.ids("contact") == added
    with pytest.raises(ValueError):
        store.mutate_entity("contact", random.Random(1), inserts=-1)
    with pytest.raises(TypeError):
        store.mutate_entity("contact", random.Random(1), inserts="1")
    with pytest.raises(ValueError):
        store.mutate_entity("quote", random.Random(1))


def test_add_after_mutation_stays_above_every_id():
    store = DataStore(deals=10)
    added, _ = store.mutate(random.Random(3), inserts=2, deletes=0)
    new_id = store.call("crm.deal.add", {"fields": {}}).result
    assert new_id > max(added)


# --- speed (printed, not asserted) ------------------------------------------------

def test_speed_of_a_million_deals(capsys):
    started = time.perf_counter()
    store = DataStore(deals=1_000_000)
    built = time.perf_counter() - started
    cursor = store.ids("deal")[500_000]
    params = {"filter": {">ID": cursor}, "order": {"ID": "ASC"}, "start": -1}
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        page = store.call("crm.deal.list", params)
    per_page = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    counted = store.call("crm.deal.list", {"filter": {">=ID": cursor}, "start": 400_000})
    count_time = time.perf_counter() - started
    assert len(page.result) == 50 and counted.total == 500_000
    with capsys.disabled():
        print("\n[store] 1M deals built in %.2f s; 50 full deals in %.3f ms (%.0f records/s);"
              " offset 400000 + count in %.3f ms"
              % (built, per_page * 1e3, 50 / per_page, count_time * 1e3))
