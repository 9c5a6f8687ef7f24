"""Wire-level list/CRUD behaviour of the fake portal: JSON and PHP-form bodies over HTTP."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
import requests

from bitrix_threaded.testing.portal import FakePortal

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def portal():
    with FakePortal(deals=260, leads=60, contacts=30, tasks=130, users=12, seed=4) as portal:
        yield portal


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def deal_ids(portal):
    return portal.ids("deal")


def post_json(http, portal, method, params=None, status=200):
    response = http.post(portal.webhook + method, json=params or {}, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def post_form(http, portal, method, body, status=200):
    response = http.post(portal.webhook + method, data=body, headers=FORM, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def ids_of(rows, key="ID"):
    return [int(row[key]) for row in rows]


# --- pagination -------------------------------------------------------------------

def test_first_page_carries_total_next_and_time(http, portal, deal_ids):
    body = post_json(http, portal, "crm.deal.list", {"select": ["ID"]})
    assert ids_of(body["result"]) == deal_ids[:50]
    assert body["total"] == 260 and body["next"] == 50
    assert "start" in body["time"] and "duration" in body["time"]


@pytest.mark.parametrize("start, offset", [(75, 50), ("120", 100), (250, 250)])
def test_start_is_floored_and_next_is_absent_on_the_last_page(http, portal, deal_ids,
                                                              start, offset):
    body = post_json(http, portal, "crm.deal.list", {"select": ["ID"], "start": start})
    assert ids_of(body["result"]) == deal_ids[offset:offset + 50]
    assert body["total"] == 260
    if offset + 50 < 260:
        assert body["next"] == offset + 50
    else:
        assert "next" not in body


def test_walking_next_returns_every_record_once(http, portal, deal_ids):
    seen, start = [], 0
    while start is not None:
        body = post_form(http, portal, "crm.deal.list", "select[]=ID&start=%d" % start)
        seen.extend(ids_of(body["result"]))
        start = body.get("next")
    assert seen == deal_ids


def test_start_minus_one_gives_total_zero_and_no_next_on_legacy_lists(http, portal, deal_ids):
    body = post_json(http, portal, "crm.deal.list", {
        "order": {"ID": "ASC"}, "filter": {">ID": deal_ids[99]}, "select": ["ID"], "start": -1})
    assert ids_of(body["result"]) == deal_ids[100:150]
    assert body["total"] == 0 and "next" not in body


def test_start_minus_one_as_a_form_value(http, portal, deal_ids):
    body = post_form(http, portal, "crm.deal.list",
                     "filter[>ID]=%d&select[]=ID&start=-1" % deal_ids[200])
    assert ids_of(body["result"]) == deal_ids[201:251]
    assert body["total"] == 0 and "next" not in body


def test_query_string_parameters_work_too(http, portal, deal_ids):
    # "=" inside a key must be percent-encoded, or PHP splits the pair there.
    query = urlencode({"filter[<=ID]": deal_ids[9], "select[]": "ID"})
    response = http.get(portal.webhook + "crm.deal.list?" + query, timeout=10)
    assert response.status_code == 200
    assert ids_of(response.json()["result"]) == deal_ids[:10]


def test_legacy_total_can_be_omitted_for_start_minus_one():
    with FakePortal(deals=60, legacy_total_zero=False) as portal:
        body = requests.post(portal.webhook + "crm.deal.list", json={"start": -1},
                             timeout=10).json()
    assert len(body["result"]) == 50 and "total" not in body and "next" not in body


# --- filters over the wire ------------------------------------------------------------

@pytest.fixture(scope="module")
def deals(http, portal):
    out = []
    for start in range(0, 300, 50):
        out.extend(post_json(http, portal, "crm.deal.list", {"start": start})["result"])
    return out


def form_ids(http, portal, query, method="crm.deal.list"):
    out, start = [], 0
    while start is not None:
        body = post_form(http, portal, method, query + "&select[]=ID&start=%d" % start)
        out.extend(ids_of(body["result"]))
        start = body.get("next")
    return out


def json_ids(http, portal, flt, method="crm.deal.list"):
    out, start = [], 0
    while start is not None:
        body = post_json(http, portal, method, {"filter": flt, "select": ["ID"], "start": start})
        out.extend(ids_of(body["result"]))
        start = body.get("next")
    return out


def where(deals, predicate):
    return [int(d["ID"]) for d in deals if predicate(d)]


def test_every_comparison_operator_in_form_and_json(http, portal, deals):
    pivot = int(deals[130]["ID"])
    cases = {
        ">": lambda d: int(d["ID"]) > pivot, ">=": lambda d: int(d["ID"]) >= pivot,
        "<": lambda d: int(d["ID"]) < pivot, "<=": lambda d: int(d["ID"]) <= pivot,
        "=": lambda d: int(d["ID"]) == pivot, "": lambda d: int(d["ID"]) == pivot,
        "!": lambda d: int(d["ID"]) != pivot, "!=": lambda d: int(d["ID"]) != pivot,
    }
    for op, predicate in cases.items():
        wanted = where(deals, predicate)
        assert form_ids(http, portal, urlencode({"filter[%sID]" % op: pivot})) == wanted, op
        assert json_ids(http, portal, {op + "ID": pivot}) == wanted, op


def test_numeric_comparison_of_amount_strings(http, portal, deals):
    wanted = where(deals, lambda d: float(d["OPPORTUNITY"]) >= 50000)
    assert form_ids(http, portal, "filter[%3E%3DOPPORTUNITY]=50000") == wanted
    assert json_ids(http, portal, {">=OPPORTUNITY": 50000}) == wanted


def test_in_and_not_in_with_php_arrays(http, portal, deals):
    picked = [int(deals[i]["ID"]) for i in (2, 60, 61, 199)]
    query = "&".join("filter[@ID][]=%d" % i for i in picked)
    assert form_ids(http, portal, query) == picked
    indexed = "&".join("filter[@ID][%d]=%d" % (n, i) for n, i in enumerate(picked))
    assert form_ids(http, portal, indexed) == picked
    assert json_ids(http, portal, {"ID": picked}) == picked
    stages = "filter[!@STAGE_ID][]=WON&filter[!@STAGE_ID][]=LOSE"
    assert form_ids(http, portal, stages) == where(
        deals, lambda d: d["STAGE_ID"] not in ("WON", "LOSE"))


def test_like_filters(http, portal, deals):
    needle = deals[5]["TITLE"].split()[0].upper()
    wanted = where(deals, lambda d: needle.lower() in d["TITLE"].lower())
    assert form_ids(http, portal, urlencode({"filter[%TITLE]": needle})) == wanted
    assert json_ids(http, portal, {"!%TITLE": needle}) == where(
        deals, lambda d: needle.lower() not in d["TITLE"].lower())


def test_boolean_filters_json_true_vs_form_strings(http, portal, deals):
    opened = where(deals, lambda d: d["OPENED"] == "Y")
    assert json_ids(http, portal, {"OPENED": True}) == opened
    assert form_ids(http, portal, "filter[OPENED]=1") == opened
    assert form_ids(http, portal, "filter[OPENED]=Y") == opened
    assert form_ids(http, portal, "filter[OPENED]=0") == where(deals, lambda d: d["OPENED"] == "N")
    # The boolean that a buggy client encodes as the string "True" matches nothing.
    assert form_ids(http, portal, "filter[OPENED]=True") == []


def test_null_filter_and_unknown_fields(http, portal, deals):
    assert json_ids(http, portal, {"COMMENTS": None}) == where(
        deals, lambda d: d["COMMENTS"] in (None, ""))
    body = post_json(http, portal, "crm.deal.list", {"filter": {"NO_SUCH": 1}})
    assert body["result"] == [] and body["total"] == 0


def test_a_filter_that_is_not_an_array_is_a_400(http, portal):
    body = post_form(http, portal, "crm.deal.list", "filter=abc", status=400)
    assert body == {"error": "", "error_description": "Parameter 'filter' must be array."}


def test_empty_array_encodings_mean_no_filter(http, portal):
    assert post_form(http, portal, "crm.deal.list", "filter[]=&select[]=ID")["total"] == 260
    assert post_json(http, portal, "crm.deal.list", {"filter": []})["total"] == 260


# --- select and order -----------------------------------------------------------------

def test_select_in_form_and_json(http, portal):
    row = post_form(http, portal, "crm.deal.list", "select[]=TITLE&select[]=STAGE_ID")["result"][0]
    assert set(row) == {"ID", "TITLE", "STAGE_ID"}
    row = post_json(http, portal, "crm.lead.list", {"select": ["ID", "PHONE"],
                                                    "filter": {"HAS_PHONE": "Y"}})["result"][0]
    assert set(row) == {"ID", "PHONE"} and row["PHONE"][0]["TYPE_ID"] == "PHONE"
    full = post_json(http, portal, "crm.deal.list", {})["result"][0]
    assert any(k.startswith("UF_CRM_") for k in full) and "TITLE" in full


def test_order_in_form_and_json(http, portal, deals):
    body = post_form(http, portal, "crm.deal.list",
                     "order[OPPORTUNITY]=desc&order[ID]=asc&select[]=OPPORTUNITY")
    expected = sorted(deals, key=lambda d: (-float(d["OPPORTUNITY"]), int(d["ID"])))[:50]
    assert ids_of(body["result"]) == [int(d["ID"]) for d in expected]
    body = post_json(http, portal, "crm.deal.list", {"order": {"ID": "DESC"}, "select": ["ID"]})
    assert ids_of(body["result"]) == [int(d["ID"]) for d in deals[::-1][:50]]


# --- nested results ------------------------------------------------------------------------

def test_crm_item_list_nests_items_and_keeps_total_next_at_the_top(http, portal, deal_ids):
    body = post_json(http, portal, "crm.item.list", {
        "entityTypeId": 2, "select": ["id", "title"], "start": 50})
    assert list(body["result"]) == ["items"]
    assert [i["id"] for i in body["result"]["items"]] == deal_ids[50:100]
    assert body["total"] == 260 and body["next"] == 100
    form = post_form(http, portal, "crm.item.list",
                     "entityTypeId=2&filter[>id]=%d&order[id]=ASC&start=-1" % deal_ids[0])
    assert [i["id"] for i in form["result"]["items"]] == deal_ids[1:51]
    assert "total" not in form and "next" not in form
    item = form["result"]["items"][0]
    assert isinstance(item["id"], int) and "stageId" in item and "opportunity" in item


def test_crm_item_get_and_errors(http, portal, deal_ids):
    body = post_json(http, portal, "crm.item.get", {"entityTypeId": 2, "id": deal_ids[3]})
    assert body["result"]["item"]["id"] == deal_ids[3]
    missing = post_json(http, portal, "crm.item.get", {"entityTypeId": 2, "id": 1}
                        if deal_ids[0] != 1 else {"entityTypeId": 2, "id": 10 ** 9},
                        status=400)
    assert missing == {"error": "NOT_FOUND", "error_description": "Item not found"}
    spa = post_form(http, portal, "crm.item.list", "entityTypeId=1040", status=400)
    assert spa == {"error": "NOT_FOUND", "error_description": "SPA not found"}


def test_tasks_nest_tasks_in_descending_id_order(http, portal):
    task_ids = portal.ids("task")
    body = post_json(http, portal, "tasks.task.list", {"select": ["ID", "TITLE"]})
    assert list(body["result"]) == ["tasks"]
    assert [int(t["id"]) for t in body["result"]["tasks"]] == task_ids[::-1][:50]
    assert isinstance(body["result"]["tasks"][0]["id"], str)
    assert body["total"] == 130 and body["next"] == 50
    form = post_form(http, portal, "tasks.task.list",
                     "filter[>ID]=%d&order[ID]=asc&start=-1" % task_ids[79])
    assert [int(t["id"]) for t in form["result"]["tasks"]] == task_ids[80:130]
    assert "total" not in form and "next" not in form


def test_user_get_plain_list_with_filters(http, portal):
    body = post_json(http, portal, "user.get", {"sort": "ID", "order": "DESC"})
    assert [u["ID"] for u in body["result"]] == [str(i) for i in range(12, 0, -1)]
    assert body["total"] == 12 and "next" not in body
    active = post_form(http, portal, "user.get", "FILTER[ACTIVE]=Y")["result"]
    flat = post_form(http, portal, "user.get", "ACTIVE=1")["result"]
    assert active == flat and all(u["ACTIVE"] is True for u in active) and len(active) == 10


# --- get / add / update / delete / fields -------------------------------------------------

def test_get_and_its_errors(http, portal, deal_ids):
    body = post_form(http, portal, "crm.deal.get", "id=%d" % deal_ids[0])
    assert body["result"]["ID"] == str(deal_ids[0])
    assert "total" not in body and "next" not in body
    assert post_json(http, portal, "crm.deal.get", {"ID": deal_ids[0]})["result"] == body["result"]
    assert post_json(http, portal, "crm.deal.get", {}, status=400) == {
        "error": "", "error_description": "ID is not defined or invalid."}
    assert post_json(http, portal, "crm.deal.get", {"id": deal_ids[-1] + 1}, status=400) == {
        "error": "", "error_description": "Not found"}


def test_add_update_delete_round_trip():
    with FakePortal(deals=10, contacts=5) as portal, requests.Session() as http:
        top = portal.ids("deal")[-1]
        body = post_form(http, portal, "crm.deal.add",
                         "fields[TITLE]=Wire+deal&fields[OPPORTUNITY]=250&fields[OPENED]=N")
        new_id = body["result"]
        assert new_id == top + 1 and isinstance(new_id, int)
        deal = post_json(http, portal, "crm.deal.get", {"id": new_id})["result"]
        assert (deal["TITLE"], deal["OPPORTUNITY"], deal["OPENED"]) == ("Wire deal", "250.00", "N")

        assert post_json(http, portal, "crm.deal.update", {
            "id": new_id, "fields": {"TITLE": "Renamed", "OPENED": True}})["result"] is True
        found = post_json(http, portal, "crm.deal.list", {"filter": {"TITLE": "Renamed"}})
        assert ids_of(found["result"]) == [new_id] and found["result"][0]["OPENED"] == "Y"
        item = post_json(http, portal, "crm.item.get", {"entityTypeId": 2, "id": new_id})
        assert item["result"]["item"]["title"] == "Renamed"
        assert item["result"]["item"]["opportunity"] == 250

        contact = post_form(http, portal, "crm.contact.add",
                            "fields[NAME]=Ann&fields[PHONE][0][VALUE]=%2B7123"
                            "&fields[PHONE][0][VALUE_TYPE]=WORK")["result"]
        phones = post_json(http, portal, "crm.contact.get", {"id": contact})["result"]["PHONE"]
        assert [p["VALUE"] for p in phones] == ["+7123"]

        assert post_form(http, portal, "crm.deal.delete", "id=%d" % new_id)["result"] is True
        assert post_json(http, portal, "crm.deal.get", {"id": new_id}, status=400)[
            "error_description"] == "Not found"
        assert post_json(http, portal, "crm.deal.list", {})["total"] == 10
        assert post_json(http, portal, "crm.deal.update", {"id": new_id, "fields": {}},
                         status=400)["error_description"] == "Not found"
        assert post_json(http, portal, "crm.deal.add", {}, status=400)["error"] == ""


def test_fields_over_the_wire(http, portal):
    fields = post_json(http, portal, "crm.contact.fields")["result"]
    assert fields["ID"] == {"type": "integer", "isRequired": False, "isReadOnly": True,
                            "isImmutable": False, "isMultiple": False, "isDynamic": False,
                            "title": "ID"}
    assert fields["EMAIL"]["isMultiple"] is True
    assert any(spec["isDynamic"] for spec in fields.values())


def test_method_names_are_case_insensitive_and_may_end_in_json(http, portal, deal_ids):
    body = post_json(http, portal, "CRM.Deal.List.json", {"select": ["ID"]})
    assert ids_of(body["result"]) == deal_ids[:50]
    response = http.post(portal.webhook + "crm.quote.list", json={}, timeout=10)
    assert response.status_code == 404
