"""The pagination contract, for every strategy, over HTTP on the fake portal.

Each case compares ``get_all`` (and ``iter_all``) with a plain sequential fetch of
the same data: ``start`` pages one after another with ``requests``, until there is
no ``next``.
"""

from __future__ import annotations

import pytest
import requests

from bitrix_threaded import Bitrix
from bitrix_threaded.testing import FakePortal

UNLIMITED = {"requests_per_second": 10_000.0, "request_pool_size": 10_000}
SIZES = [0, 1, 49, 50, 51, 2500, 2501, 20000]


def sequential(portal, method, params=None, key=None):
    """Every record, the way people write it by hand: one page after another."""
    params = dict(params or {})
    out, start = [], 0
    while True:
        reply = requests.post(portal.webhook + method, json={**params, "start": start}).json()
        assert "error" not in reply, reply
        result = reply["result"]
        out.extend(result if key is None else result[key])
        if "next" not in reply:
            return out
        start = reply["next"]


def record_id(record):
    return int(record.get("ID", record.get("id")))


@pytest.fixture(scope="module")
def portals():
    made = {}

    def get(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            made[key] = FakePortal(seed=31, **kwargs).start()
        return made[key]

    yield get
    for portal in made.values():
        portal.stop()


@pytest.fixture(scope="module")
def client_for():
    made = {}

    def get(portal):
        if portal.webhook not in made:
            made[portal.webhook] = Bitrix(portal.webhook, verbose=False, **UNLIMITED)
        return made[portal.webhook]

    yield get
    for bx in made.values():
        bx.close()


STRATEGIES = ["id_ranges", "offset", "id_list"]


def fetch(bx, portal, method, params, strategy, key=None):
    if strategy == "id_list":
        every = sequential(portal, method, {k: v for k, v in params.items() if k == "entityTypeId"},
                           key)
        return bx.get_all(method, params, ids=[record_id(r) for r in every])
    return bx.get_all(method, params, strategy=strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("size", SIZES)
def test_every_record_once_in_id_order(portals, client_for, strategy, size):
    portal = portals(deals=size)
    bx = client_for(portal)
    params = {"select": ["ID", "TITLE", "OPPORTUNITY"]}
    got = fetch(bx, portal, "crm.deal.list", params, strategy)
    assert got == sequential(portal, "crm.deal.list", params)
    assert [record_id(r) for r in got] == portal.ids("deal")


@pytest.mark.parametrize("strategy", ["id_ranges", "offset"])
def test_iter_all_yields_the_same_records(portals, client_for, strategy):
    portal = portals(deals=2501)
    bx = client_for(portal)
    got = list(bx.iter_all("crm.deal.list", {"select": ["ID"]}, strategy=strategy))
    assert sorted(record_id(r) for r in got) == portal.ids("deal")


def test_ids_have_gaps_and_big_holes(portals):
    ids = portals(deals=20000).ids("deal")
    gaps = [b - a for a, b in zip(ids, ids[1:])]
    assert min(gaps) >= 1 and max(gaps) > 1000


FILTERS = [
    {">ID": 500},
    {">=ID": 500, "<ID": 3000},
    {"<=ID": 2000},
    {"=STAGE_ID": "WON"},
    {"STAGE_ID": "WON"},
    {"!STAGE_ID": "WON"},
    {"!=STAGE_ID": "LOSE"},
    {"@STAGE_ID": ["WON", "LOSE"]},
    {"!@STAGE_ID": ["WON", "LOSE"]},
    {"STAGE_ID": ["EXECUTING", "FINAL_INVOICE"]},
    {"%TITLE": "maintenance"},
    {">OPPORTUNITY": 50000},
    {"<=OPPORTUNITY": "20000.00"},
    {"CLOSED": "Y"},
    {"CLOSED": True},
    {"OPENED": False},
    {">ID": 100, "<=ID": 9000, "CLOSED": "N", "@STAGE_ID": ["EXECUTING", "WON"]},
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("filter_", FILTERS, ids=lambda f: ",".join(f))
def test_filters_with_every_operator(portals, client_for, strategy, filter_):
    portal = portals(deals=3000)
    bx = client_for(portal)
    params = {"filter": filter_, "select": ["ID", "STAGE_ID", "CLOSED"]}
    expected = sequential(portal, "crm.deal.list", {**params, "filter": {
        k: (1 if v is True else 0 if v is False else v) for k, v in filter_.items()}})
    if strategy == "id_list":
        got = bx.get_all("crm.deal.list", params, ids=portal.ids("deal"))
    else:
        got = bx.get_all("crm.deal.list", params, strategy=strategy)
    assert got == expected
    assert 0 < len(expected) < 3000 or filter_ in ({"<=ID": 2000},)


def test_select_star_and_user_fields(portals, client_for):
    portal = portals(deals=120)
    bx = client_for(portal)
    for select in (["*", "UF_*"], ["*"], ["ID", "UF_*"]):
        got = bx.get_all("crm.deal.list", {"select": select})
        assert got == sequential(portal, "crm.deal.list", {"select": select})
    assert any(k.startswith("UF_CRM_") for k in bx.get_all("crm.deal.list", {
        "select": ["*", "UF_*"]})[0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nested_crm_item_list(portals, client_for, strategy):
    portal = portals(deals=2600)
    bx = client_for(portal)
    params = {"entityTypeId": 2, "select": ["id", "title"]}
    got = fetch(bx, portal, "crm.item.list", params, strategy, key="items")
    assert got == sequential(portal, "crm.item.list", params, key="items")
    assert [r["id"] for r in got] == portal.ids("deal")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nested_tasks(portals, client_for, strategy):
    portal = portals(tasks=2600)
    bx = client_for(portal)
    params = {"select": ["ID", "TITLE"], "filter": {">ID": 10}}
    expected = sequential(portal, "tasks.task.list", {**params, "order": {"ID": "ASC"}},
                          key="tasks")
    if strategy == "id_list":
        got = bx.get_all("tasks.task.list", params, ids=[r["id"] for r in expected])
    else:
        got = bx.get_all("tasks.task.list", params, strategy=strategy)
    if strategy == "offset":
        # tasks.task.list orders by ID descending unless told otherwise.
        got = sorted(got, key=record_id)
    assert got == expected


@pytest.mark.parametrize("legacy_total_zero", [True, False])
def test_legacy_total_zero_or_absent_with_start_minus_one(portals, client_for,
                                                          legacy_total_zero):
    portal = portals(deals=777, legacy_total_zero=legacy_total_zero)
    probe = requests.post(portal.webhook + "crm.deal.list", json={"start": -1}).json()
    assert ("total" in probe) is legacy_total_zero
    got = client_for(portal).get_all("crm.deal.list", {"select": ["ID"]})
    assert [record_id(r) for r in got] == portal.ids("deal")


def test_offset_pages_keep_a_custom_order(portals, client_for):
    portal = portals(deals=300)
    params = {"select": ["ID", "OPPORTUNITY"], "order": {"OPPORTUNITY": "DESC", "ID": "ASC"}}
    got = client_for(portal).get_all("crm.deal.list", params)
    assert got == sequential(portal, "crm.deal.list", params)


def test_id_ranges_exactly_once_while_the_portal_mutates():
    with FakePortal(deals=20000, profile="light", time_scale=0.05, limits=False,
                    mutation_rate=400.0, seed=5) as portal, \
            Bitrix(portal.webhook, verbose=False, batch_size=10, **UNLIMITED) as bx:
        before = set(portal.ids("deal"))
        got = [record_id(r) for r in bx.get_all("crm.deal.list", {"select": ["ID"]})]
        after = set(portal.ids("deal"))
        stats = portal.stats()["mutations"]
    assert stats["inserted"] > 0 and stats["deleted"] > 0
    assert len(got) == len(set(got)), "no duplicate"
    assert before & after <= set(got), "every record that existed from start to end"
    assert set(got) <= before | after | set(range(max(before), max(after) + 1))
