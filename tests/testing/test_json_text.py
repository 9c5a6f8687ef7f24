"""Pre-written JSON text for pages of whole records (records.JSON_WRITERS, jsontext)."""
from __future__ import annotations

import random

import pytest
import requests

from bitrix_threaded.testing import FakePortal
from bitrix_threaded.testing import records
from bitrix_threaded.testing.batch import run_batch
from bitrix_threaded.testing.jsontext import ENCODER, JsonRows, encode_body
from bitrix_threaded.testing.store import DataStore


def plain(node):
    """``node`` with every JsonRows turned into a list of its records."""
    if isinstance(node, JsonRows):
        return [plain(row) for row in node]
    if isinstance(node, dict):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(value) for value in node]
    return node


# --- the writers ------------------------------------------------------------

REFS = [
    records.Refs(1),
    records.Refs(12, contacts=[3, 7, 19], companies=[5]),
    records.Refs(700, contacts=range(2, 20000, 3), companies=range(1, 900)),
    records.Refs(records.MAX_OWNER, contacts=range(10, 99999, 7), companies=range(1, 5000)),
]


@pytest.mark.parametrize("entity", sorted(records.JSON_WRITERS))
@pytest.mark.parametrize("users", REFS, ids=["no-refs", "few", "many", "most"])
def test_writer_text_is_the_encoded_record_for_every_template(entity, users):
    key = records.RecordKey(3, entity)
    generate, write = records.GENERATORS[entity], records.JSON_WRITERS[entity]
    rng = random.Random(entity)
    templates = set()
    checked = 0
    # Small, large and huge IDs until all 1024 templates have been seen.
    candidates = iter(list(range(1, 3000)) + [rng.randrange(1, 1 << 40) for _ in range(40000)])
    for record_id in candidates:
        h = key.hash(record_id)
        assert write(record_id, h, users) == ENCODER.encode(generate(record_id, h, users)), \
            (entity, record_id)
        templates.add(h & 1023)
        checked += 1
        if len(templates) == 1024 and checked >= 3000:
            break
    assert len(templates) == 1024


def test_writers_cover_the_legacy_crm_entities_only():
    assert set(records.JSON_WRITERS) == {"deal", "lead", "contact"}


# --- JsonRows ---------------------------------------------------------------

def make_rows(ids, built=None):
    built = [] if built is None else built

    def make(record_id):
        built.append(record_id)
        return {"ID": str(record_id), "N": record_id * 2}
    texts = [ENCODER.encode({"ID": str(i), "N": i * 2}) for i in ids]
    return JsonRows(list(ids), texts, make), built


def test_json_rows_build_records_only_when_read_and_once():
    rows, built = make_rows([5, 7, 9])
    assert built == [] and len(rows) == 3
    assert rows[1] == {"ID": "7", "N": 14}
    assert rows[1] is rows[1]
    assert built == [7]
    assert rows[-1]["ID"] == "9" and built == [7, 9]
    assert rows.json == '[{"ID":"5","N":10},{"ID":"7","N":14},{"ID":"9","N":18}]'


def test_json_rows_behave_as_a_read_only_sequence():
    rows, _ = make_rows([1, 2, 3, 4])
    assert rows == [{"ID": str(i), "N": i * 2} for i in (1, 2, 3, 4)]
    assert rows == tuple(rows) and [row["ID"] for row in rows] == ["1", "2", "3", "4"]
    assert rows != [{"ID": "1", "N": 2}]
    assert rows[1:3] == [{"ID": "2", "N": 4}, {"ID": "3", "N": 6}]
    assert isinstance(rows[::2], list) and len(rows[::2]) == 2
    assert {"ID": "4", "N": 8} in rows and rows.index({"ID": "3", "N": 6}) == 2
    assert [row["ID"] for row in reversed(rows)] == ["4", "3", "2", "1"]
    assert bool(make_rows([])[0]) is False
    assert "JsonRows" in repr(rows)
    with pytest.raises(IndexError):
        rows[4]
    with pytest.raises(IndexError):
        rows[-5]
    with pytest.raises(TypeError):
        rows["1"]
    with pytest.raises(TypeError):
        rows[0] = {}
    with pytest.raises(TypeError):
        hash(rows)


def test_json_rows_take_prebuilt_rows_and_check_their_texts():
    built = []
    rows = JsonRows([1, 2], ['{"ID":"1"}', '{"ID":"two"}'], built.append, {1: {"ID": "two"}})
    assert rows[1] == {"ID": "two"} and built == []
    with pytest.raises(ValueError, match="one JSON text per record"):
        JsonRows([1, 2], ["{}"], built.append)


# --- encode_body -------------------------------------------------------------

def test_encode_body_splices_the_text_where_the_rows_are():
    first, _ = make_rows([1, 2])
    second, _ = make_rows([30])
    body = {"result": {"result": {"a": first, "b": [second, {"x": second}]},
                       "result_error": [], "note": "Срочный"},
            "time": {"start": 1.5}, "empty": make_rows([])[0]}
    text = encode_body(body)
    assert text == ENCODER.encode(plain(body))
    assert text.isascii() and "\\u0421" in text


def test_encode_body_without_rows_is_the_plain_encoding():
    body = {"result": [1, "two", None, True, {"x": [1.5]}], "total": 3}
    assert encode_body(body) == ENCODER.encode(body)
    assert encode_body([]) == "[]" and encode_body("\x00") == '"\\u0000"'


@pytest.mark.parametrize("where", ["value", "key", "both"])
def test_encode_body_with_a_nul_string_in_the_body_still_encodes_exactly(where):
    rows, _ = make_rows([1, 2])
    body = {"result": rows, "other": [rows]}
    if where in ("value", "both"):
        body["note"] = "\x00"
    if where in ("key", "both"):
        body["\x00"] = 1
    assert encode_body(body) == ENCODER.encode(plain(body))


def test_encode_body_refuses_unknown_objects():
    rows, _ = make_rows([1])
    with pytest.raises(TypeError, match="object"):
        encode_body({"rows": rows, "bad": object()})


# --- the store --------------------------------------------------------------

def stores():
    return (DataStore(deals=300, leads=120, contacts=90, users=12, seed=5),
            DataStore(deals=300, leads=120, contacts=90, users=12, seed=5, json_rows=True))


@pytest.mark.parametrize("method", ["crm.deal.list", "crm.lead.list", "crm.contact.list"])
@pytest.mark.parametrize("params", [
    {}, {"select": ["*", "UF_*"]}, {"start": 50}, {"start": -1, "order": {"ID": "DESC"}},
    {"filter": {">ID": 40}, "order": {"ID": "ASC"}, "start": -1},
    {"filter": {"OPENED": "Y"}, "order": {"DATE_CREATE": "DESC"}},
])
def test_json_rows_pages_equal_the_plain_pages(method, params):
    plain_store, text_store = stores()
    expected = plain_store.call(method, dict(params))
    outcome = text_store.call(method, dict(params))
    assert isinstance(outcome.result, JsonRows)
    assert (outcome.total, outcome.next, outcome.records) == \
        (expected.total, expected.next, expected.records)
    assert outcome.result == expected.result
    assert outcome.result.json == ENCODER.encode(expected.result)


@pytest.mark.parametrize("params", [
    {"select": ["ID", "TITLE"]}, {"select": ["*"]}, {"select": ["*", "UF_*", "PHONE"]},
])
def test_other_selections_stay_plain_lists(params):
    _, text_store = stores()
    outcome = text_store.call("crm.lead.list", params)
    assert type(outcome.result) is list


def test_entities_without_a_writer_stay_plain_lists():
    store = DataStore(tasks=60, users=60, json_rows=True)
    assert type(store.call("user.get", {}).result) is list
    assert type(store.call("tasks.task.list", {}).result["tasks"]) is list


def test_json_rows_show_written_records_as_they_were_when_listed():
    plain_store, text_store = stores()
    ids = text_store.ids("deal")
    for store in (plain_store, text_store):
        store.call("crm.deal.update", {"id": ids[3], "fields": {"TITLE": "Новый \"quoted\""}})
        store.call("crm.deal.add", {"fields": {"TITLE": "added", "OPPORTUNITY": 5}})
        store.call("crm.deal.delete", {"id": ids[4]})
    query = {"filter": {">=ID": ids[290]}, "start": -1}
    expected = plain_store.call("crm.deal.list", dict(query)).result
    page = text_store.call("crm.deal.list", dict(query))
    first = text_store.call("crm.deal.list", {}).result
    text_store.call("crm.deal.update", {"id": ids[3], "fields": {"TITLE": "changed later"}})
    assert page.result == expected and page.result.json == ENCODER.encode(expected)
    assert page.result[-1]["TITLE"] == "added"
    assert first[3]["TITLE"] == "Новый \"quoted\"" and ids[4] not in [int(r["ID"]) for r in first]
    assert first.json == ENCODER.encode(plain_store.call("crm.deal.list", {}).result)


def test_batch_references_read_single_records_and_whole_pages():
    plain_store, text_store = stores()
    ids = text_store.ids("deal")
    cmd = {
        "a": "crm.deal.list?order[ID]=ASC&start=-1",
        "b": "crm.deal.list?order[ID]=ASC&start=-1&filter[>ID]=$result[a][49][ID]",
        "c": "crm.deal.get?id=$result[b][0][ID]",
        "d": "crm.deal.list?start=-1&filter[@ID]=$result[a]",
        "e": "crm.deal.list?start=-1&filter[TITLE]=$result[a][3][TITLE]",
    }

    def run(store):
        def execute(method, params):
            return {"result": store.call(method.lower(), params).result}
        return run_batch({"halt": 0, "cmd": cmd}, execute)["result"]

    result, expected = run(text_store), run(plain_store)
    assert isinstance(result["a"], JsonRows) and isinstance(result["b"], JsonRows)
    assert [int(r["ID"]) for r in result["b"]] == ids[50:100]
    assert result["c"]["ID"] == str(ids[50])
    assert [r["ID"] for r in result["e"]] == [str(ids[3])]
    assert result == expected


def test_the_server_sends_the_same_bytes_as_plain_encoding():
    with FakePortal(deals=400, seed=9) as portal:
        ids = portal.ids("deal")
        reply = requests.post(portal.webhook + "batch", json={"halt": 0, "cmd": {
            "p0": "crm.deal.list?order[ID]=ASC&start=-1",
            "p1": "crm.deal.list?order[ID]=ASC&start=-1&filter[>ID]=$result[p0][49][ID]",
            "one": "crm.deal.get?id=%d" % ids[7]}}, timeout=10)
        single = requests.post(portal.webhook + "crm.deal.list", json={"start": 100},
                               timeout=10).json()
    body = reply.json()["result"]
    plain_store = DataStore(deals=400, seed=9)
    assert body["result"]["p0"] == plain_store.call("crm.deal.list", {"start": -1}).result
    assert body["result"]["p1"] == plain_store.call(
        "crm.deal.list", {"start": -1, "filter": {">ID": ids[49]}}).result
    assert body["result"]["one"]["ID"] == str(ids[7])
    assert single["result"] == plain_store.call("crm.deal.list", {"start": 100}).result
    assert (single["total"], single["next"]) == (400, 150)
    # Byte for byte: the server wrote the plain encoding of the records.
    first = plain_store.call("crm.deal.list", {"start": -1}).result
    assert ('"p0":' + ENCODER.encode(first)).encode("ascii") in reply.content
