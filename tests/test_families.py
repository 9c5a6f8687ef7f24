"""Every documented list family exported exactly, or refused clearly, over HTTP.

The server (``family_portal.FamilyPortal``, on 127.0.0.1) pages each method the way its
documentation page describes; see the table in ``family_portal.py``. Each case compares
the exact multiset of records ``get_all`` and ``iter_all`` return with the records the
server holds.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter

import pytest

from bitrix_threaded import Bitrix
from bitrix_threaded.errors import InvalidResponse
from bitrix_threaded.validation import BitrixWarning
from family_portal import BY_NAME, FAMILIES, FamilyPortal

UNLIMITED = {"requests_per_second": 10_000.0, "request_pool_size": 10_000}
# 237 records with a hole in the IDs: pages of 50 and of 10 both end part-full.
NUMBERS = list(range(1, 121)) + list(range(500, 617))
NAMES = [f.name for f in FAMILIES]
REAL = [n for n in NAMES if not n.startswith("vendor.")]
CALLS = ["get_all", "iter_all"]


def params_for(name, filter_=None):
    """The parameters a caller passes: positional task methods need all five, in order."""
    family = BY_NAME[name]
    if family.positional:
        # An empty FILTER would vanish from the query string (as with PHP's
        # http_build_query) and shift SELECT into its place: give a real one.
        return {"TASKID": 7, "ORDER": {"ID": "asc"}, "FILTER": filter_ or {"!KIND": "x"},
                "SELECT": ["*"], "PARAMS": {"NAV_PARAMS": {"nPageSize": 50}}}
    return {family.filter_param: filter_} if filter_ else {}


def kind_filter(name, value):
    return {"KIND" if BY_NAME[name].string_ids else "kind": value}


def multiset(records):
    return Counter(json.dumps(r, sort_keys=True) for r in records)


@pytest.fixture(scope="module")
def portal():
    server = FamilyPortal().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bx(portal):
    client = Bitrix(portal.webhook, verbose=False, **UNLIMITED)
    yield client
    client.close()


def export(bx, call, name, params=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", BitrixWarning)  # no "records changed" false alarm
        return list(getattr(bx, call)(name, params, **kwargs))


def test_the_table_covers_forty_real_families_and_two_made_up_ones():
    assert len(REAL) >= 40
    assert {"vendor.widget.list", "vendor.gadget.list"} <= set(NAMES)
    areas = {n.split(".")[0] for n in REAL} | {n.split(".")[1] for n in REAL if "." in n}
    for area in ("crm", "task", "tasks", "user", "department", "lists", "disk", "catalog",
                 "sale", "bizproc", "timeline"):
        assert area in areas


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name", NAMES)
def test_every_family_is_exported_exactly(portal, bx, name, call):
    expected = portal.load(name, NUMBERS)
    got = export(bx, call, name, params_for(name))
    assert multiset(got) == multiset(expected)


@pytest.mark.parametrize("name", NAMES)
def test_the_callers_filter_is_kept_on_every_page(portal, bx, name):
    everything = portal.load(name, NUMBERS)
    kind = "KIND" if BY_NAME[name].string_ids else "kind"
    wanted = [r for r in everything if str(r[kind]) == "1"]
    got = export(bx, "get_all", name, params_for(name, kind_filter(name, 1)))
    assert multiset(got) == multiset(wanted)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name", NAMES)
def test_records_added_during_an_offset_export_neither_repeat_nor_push_others_out(
        portal, bx, name, call):
    """Offset pages: the default for families without an ID cursor, asked for the rest."""
    expected = portal.load(name, NUMBERS)
    added = []

    def insert_once(method, params):
        if method == name and not added and str(params.get("start")) == "0":
            added.append(True)
            portal.insert_front(name, list(range(9000, 9007)))

    params = params_for(name)
    if BY_NAME[name].positional:
        params["ORDER"] = {"ID": "desc"}  # newest first: the new records come first
    portal.after_command = insert_once
    try:
        got = export(bx, call, name, params, strategy="offset")
    finally:
        portal.after_command = None
    assert added
    # The new records sort before the first page already read: every page after it
    # shifts by seven, which brings repeats (dropped by ID or identifying fields) and
    # pushes seven records past the first count (fetched from the pages past it).
    assert multiset(got) == multiset(expected)


def test_positional_task_arguments_keep_their_order(portal, bx):
    name = "task.elapseditem.getlist"
    everything = portal.load(name, list(range(1, 1235)))
    wanted = [r for r in everything if r["KIND"] == "2"]
    params = {"TASKID": 7, "ORDER": {"ID": "desc"}, "FILTER": {"KIND": "2"},
              "SELECT": ["ID", "KIND"], "PARAMS": {"NAV_PARAMS": {"nPageSize": 50}}}
    portal.reset_counters()
    got = bx.get_all(name, params)
    assert multiset(got) == multiset(wanted)
    for _, sent in portal.calls:
        assert list(sent)[:5] == ["TASKID", "ORDER", "FILTER", "SELECT", "PARAMS"]


def test_ten_record_pages_step_by_ten(portal, bx):
    expected = portal.load("crm.timeline.logmessage.list", NUMBERS)
    portal.reset_counters()
    got = export(bx, "get_all", "crm.timeline.logmessage.list")
    assert multiset(got) == multiset(expected)
    starts = sorted(int(p["start"]) for _, p in portal.calls)
    assert starts == list(range(0, 237, 10))


def test_records_without_an_id_refuse_ids_and_id_ranges_before_any_request(portal, bx):
    portal.load("crm.address.list", NUMBERS)
    portal.reset_counters()
    with pytest.raises(ValueError, match="cannot be filtered by ID"):
        bx.get_all("crm.address.list", ids=[1, 2])
    with pytest.raises(ValueError, match="ID ranges"):
        bx.get_all("crm.address.list", strategy="id_ranges")
    assert portal.requests == 0


@pytest.mark.parametrize("name", ["im.recent.list", "im.dialog.messages.get",
                                  "im.search.user.list"])
@pytest.mark.parametrize("call", CALLS)
def test_chat_families_with_their_own_navigation_are_refused_naming_the_call(
        portal, bx, name, call):
    portal.reset_counters()
    with pytest.raises(ValueError, match=r"call\('" + name.replace(".", r"\.")):
        getattr(bx, call)(name, {})
    assert portal.requests == 0


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("result, keys", [
    ({"items": [{"id": 1}], "messagesAutoDeleteConfigs": [{"chatId": 1}]},
     "'items', 'messagesAutoDeleteConfigs'"),
    ({"chat_id": 5, "messages": [{"id": 1}], "users": [{"id": 2}], "files": []},
     "'chat_id', 'messages', 'users', 'files'"),
    ({"103": {"id": 103}, "104": {"id": 104}}, "'103', '104'"),
])
def test_unknown_shapes_raise_naming_the_keys(portal, bx, call, result, keys):
    portal.static["vendor.odd.list"] = {"result": result, "total": 2}
    with pytest.raises(InvalidResponse, match=keys):
        list(getattr(bx, call)("vendor.odd.list"))


def test_get_all_on_a_method_that_is_not_a_list_returns_its_result(portal, bx):
    fields = {"ID": {"type": "integer", "isRequired": False},
              "TITLE": {"type": "string", "isRequired": False}}
    deal = {"ID": "5", "TITLE": "x", "PHONE": [{"VALUE": "1"}], "EMAIL": [{"VALUE": "a@b"}]}
    portal.static["crm.deal.fields"] = {"result": fields}
    portal.static["crm.deal.get"] = {"result": deal}
    with pytest.warns(BitrixWarning, match="not a list"):
        assert bx.get_all("crm.deal.fields") == fields
    with pytest.warns(BitrixWarning, match="not a list"):
        assert bx.get_all("crm.deal.get", {"id": 5}) == deal
    with pytest.raises(InvalidResponse, match="not a list"):
        list(bx.iter_all("crm.deal.fields"))


def test_id_lists_keep_only_what_was_asked_for(portal, bx):
    everything = portal.load("user.get", NUMBERS)
    wanted = [r for r in everything if int(r["ID"]) % 7 == 0]
    got = export(bx, "get_all", "user.get", ids=[r["ID"] for r in wanted])
    assert multiset(got) == multiset(wanted)
    sent = [p for _, p in portal.calls if "FILTER" in p and "@ID" in p["FILTER"]]
    assert sent, "user.get documents @ID inside FILTER"


def test_a_portal_that_ignores_the_id_filter_is_an_error(portal, bx):
    portal.load("crm.deal.list", NUMBERS)
    portal.ignoring_in.add("crm.deal.list")
    try:
        with pytest.raises(InvalidResponse, match="ignored the @ID filter"):
            bx.get_all("crm.deal.list", ids=[1, 2, 3])
    finally:
        portal.ignoring_in.discard("crm.deal.list")


def test_user_get_pages_by_id_cursor_with_sort_and_order(portal, bx):
    expected = portal.load("user.get", list(range(1, 3001)))
    portal.reset_counters()
    got = bx.get_all("user.get", {"FILTER": {"KIND": "0"}, "sort": "ID", "order": "ASC"})
    assert got == [r for r in expected if r["KIND"] == "0"]
    cursor_pages = [p for _, p in portal.calls if ">ID" in p.get("FILTER", {})]
    assert cursor_pages and all(p["sort"] == "ID" and p["order"] == "ASC"
                                for p in cursor_pages)


def clustered():
    """6,000 task IDs: 1-3,040 dense, then 2,960 spread over 1,000,000-1,120,000."""
    return list(range(1, 3041)) + [1_000_000 + i * 120_000 // 2960 for i in range(2960)]


def load_of(portal, bx, strategy):
    portal.reset_counters()
    got = bx.get_all("tasks.task.list", strategy=strategy)
    return got, portal.requests, sum(portal.commands.values())


LAYOUTS = {
    "clustered": clustered,
    "even": lambda: list(range(1, 6001)),
    # One stray record far above the rest.
    "outlier": lambda: list(range(1, 5000)) + [10 ** 9],
    # Ever sparser: gaps that double every 50 records.
    "geometric": lambda: sorted({int(1.0025 ** i * i) + i for i in range(1, 4001)}),
    # Dense runs of 700 separated by wide gaps.
    "islands": lambda: [k * 400_000 + j for k in range(8) for j in range(1, 701)],
    # Both ends as sparse as the average, all the rest packed in the middle: the probe
    # cannot tell this from even IDs.
    "hidden cluster": lambda: ([200 * i for i in range(1, 151)] + list(range(600_001, 605_701))
                               + [1_200_000 - 200 * i for i in range(150)]),
    # Evenly spread at first, then packed at the top.
    "dense top": lambda: [200 * i for i in range(1, 301)] + list(range(1_194_001, 1_199_701)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_id_ranges_cost_at_most_twice_offset_pages_on_any_layout(portal, layout):
    numbers = sorted(LAYOUTS[layout]())
    expected = portal.load("tasks.task.list", numbers)
    with Bitrix(portal.webhook, verbose=False, **UNLIMITED) as bx:
        by_ranges, ranges_requests, ranges_commands = load_of(portal, bx, "id_ranges")
        by_offset, offset_requests, offset_commands = load_of(portal, bx, "offset")
    assert by_ranges == expected
    assert multiset(by_offset) == multiset(expected)
    assert ranges_requests <= 2 * offset_requests
    assert ranges_commands <= 2 * offset_commands
    if layout == "even":
        # Evenly spread IDs: pages are chained at once, with little to spare.
        assert ranges_commands <= 1.25 * offset_commands
        assert ranges_requests <= offset_requests + 3
