from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from bitrix_threaded.batch import (
    MAX_BATCH_SIZE,
    BatchReply,
    Command,
    batch_payload,
    command_label,
    pack,
    parse_batch_reply,
    split_reply,
)
from bitrix_threaded.errors import (
    AccessDenied,
    BitrixError,
    CommandFailure,
    InsufficientScope,
    InvalidArgument,
    InvalidResponse,
    NotFound,
    OperationTimeLimit,
    QueryLimitExceeded,
)

FIXTURES = Path(__file__).parent / "fixtures" / "real_responses"


def envelope(name, page=None):
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data["response"] if page is None else data["responses"][page]


def chunk_of(methods):
    return [(i, Command(m)) for i, m in enumerate(methods)]


def labels_from(names):
    """A label function for recorded replies, whose labels were chosen by another client."""
    return lambda index: names[index]


def batch_body(results=None, errors=None, totals=None, nexts=None, times=None):
    # PHP sends every empty map as [].
    return {
        "result": {
            "result": results or [],
            "result_error": errors or [],
            "result_total": totals or [],
            "result_next": nexts or [],
            "result_time": times or [],
        },
        "time": {"start": 1.0, "finish": 1.1, "operating": 0},
    }


# -- labels and commands ---------------------------------------------------------------


def test_command_label():
    assert command_label(0) == "c0"
    assert command_label(49) == "c49"
    assert command_label(12345) == "c12345"


def test_labels_never_look_numeric():
    labels = [command_label(i) for i in range(1000)]
    assert len(set(labels)) == 1000
    assert not any(label.isdigit() for label in labels)


@pytest.mark.parametrize("index, exc", [(-1, ValueError), (1.0, TypeError), ("0", TypeError),
                                        (True, TypeError), (None, TypeError)])
def test_command_label_rejects(index, exc):
    with pytest.raises(exc):
        command_label(index)


def test_command_defaults_and_validation():
    assert Command("user.current").params == {}
    assert Command("crm.deal.get", None).params == {}
    assert Command("crm.deal.get", {"ID": 1}).params == {"ID": 1}
    with pytest.raises(ValueError):
        Command("crm deal get")
    with pytest.raises(TypeError):
        Command(None)
    with pytest.raises(TypeError, match="mapping"):
        Command("crm.deal.get", [("ID", 1)])
    with pytest.raises(AttributeError):
        Command("crm.deal.get").method = "x"


def test_command_default_params_are_not_shared():
    assert Command("a").params is not Command("b").params


# -- pack ----------------------------------------------------------------------------------


def test_pack_keeps_order_and_indices():
    commands = [Command("crm.deal.get", {"ID": i}) for i in range(120)]
    chunks = pack(commands)
    assert [len(c) for c in chunks] == [50, 50, 20]
    flat = [item for chunk in chunks for item in chunk]
    assert [i for i, _ in flat] == list(range(120))
    assert all(cmd is commands[i] for i, cmd in flat)


@pytest.mark.parametrize("size, lengths", [(1, [1, 1, 1]), (2, [2, 1]), (3, [3]), (50, [3])])
def test_pack_sizes(size, lengths):
    assert [len(c) for c in pack([Command("a")] * 3, size)] == lengths


def test_pack_empty():
    assert pack([]) == []


@pytest.mark.parametrize("size, exc", [(0, ValueError), (51, ValueError), (-1, ValueError),
                                       (True, TypeError), (10.0, TypeError), ("5", TypeError)])
def test_pack_rejects_bad_sizes(size, exc):
    with pytest.raises(exc, match="batch_size"):
        pack([Command("a")], size)


def test_pack_rejects_bad_items():
    with pytest.raises(TypeError, match=r"commands\[1\]"):
        pack([Command("a"), ("crm.deal.get", {})])
    with pytest.raises(TypeError):
        pack("crm.deal.get")
    with pytest.raises(TypeError):
        pack({Command("a")})


def test_max_batch_size():
    assert MAX_BATCH_SIZE == 50


# -- batch_payload --------------------------------------------------------------------------


def test_batch_payload():
    chunk = [(7, Command("crm.deal.list", {"filter": {">ID": 5, "CLOSED": False},
                                           "select": ["ID"], "start": -1})),
             (8, Command("user.current"))]
    assert batch_payload(chunk) == {
        "halt": 0,
        "cmd": {
            "c7": "crm.deal.list?filter%5B%3EID%5D=5&filter%5BCLOSED%5D=0&select%5B0%5D=ID"
                  "&start=-1",
            "c8": "user.current",
        },
    }
    assert batch_payload(chunk, halt=True)["halt"] == 1
    assert list(batch_payload(chunk)["cmd"]) == ["c7", "c8"]


def test_batch_payload_references_survive_encoding():
    # The portal substitutes $result[...] after decoding each parameter value.
    chunk = [(0, Command("crm.deal.list", {"filter": {">ID": 0}, "start": -1})),
             (1, Command("crm.deal.list", {"filter": {">ID": "$result[c0][49][ID]"},
                                           "start": -1}))]
    query = batch_payload(chunk)["cmd"]["c1"].split("?", 1)[1]
    assert parse_qsl(query) == [("filter[>ID]", "$result[c0][49][ID]"), ("start", "-1")]


def test_batch_payload_is_json_serialisable():
    chunk = [(0, Command("crm.lead.add", {"fields": {"TITLE": "Лид", "OPENED": True}}))]
    body = json.loads(json.dumps(batch_payload(chunk)))
    assert body["cmd"]["c0"] == (
        "crm.lead.add?fields%5BTITLE%5D=%D0%9B%D0%B8%D0%B4&fields%5BOPENED%5D=1")


def test_batch_payload_rejects():
    with pytest.raises(ValueError, match="at least one"):
        batch_payload([])
    with pytest.raises(ValueError, match="at most 50"):
        batch_payload([(i, Command("a")) for i in range(51)])
    with pytest.raises(ValueError, match="label"):
        batch_payload([(0, Command("a")), (0, Command("b"))])
    with pytest.raises(TypeError, match="'X'"):
        batch_payload([(0, Command("a", {"X": {1}}))])


def test_batch_payload_custom_labels():
    body = batch_payload([(0, Command("a")), (1, Command("b"))], label=lambda i: f"order{i}")
    assert body["cmd"] == {"order0": "a", "order1": "b"}


# -- parse_batch_reply: recorded replies ------------------------------------------------------


def test_fixture_batch_list_empty():
    reply = parse_batch_reply(envelope("batch-list-empty"))
    assert reply.results == {"order0000000000": []}
    assert reply.errors == {}
    assert reply.totals == {"order0000000000": 0}
    assert reply.nexts == {}
    assert reply.times["order0000000000"]["operating"] == 0
    assert reply.times["order0000000000"]["duration"] == 0.06500720977783203


def test_fixture_call_batch():
    reply = parse_batch_reply(envelope("call-batch"))
    assert list(reply.results) == ["statuses", "sources"]
    assert len(reply.results["statuses"]) == 10
    assert reply.results["statuses"][0] == {"NAME": "Новый лид", "SORT": 10, "STATUS_ID": "NEW"}
    assert len(reply.results["sources"]) == 7
    assert reply.results["sources"][0]["STATUS_ID"] == "CALL"
    assert (reply.errors, reply.totals, reply.nexts) == ({}, {}, {})
    assert set(reply.times) == {"statuses", "sources"}


def test_fixture_call_several_success():
    reply = parse_batch_reply(envelope("call-several-success"))
    chunk = chunk_of(["crm.lead.get"] * 3)
    results, failures = split_reply(reply, chunk, label=lambda i: f"order{i}")
    assert failures == []
    assert [results[i]["ID"] for i in range(3)] == ["35943", "161", "171"]
    assert results[2]["TITLE"] == "вднх: 8.1 - 4.7 = 3.4 (71%)"
    assert reply.times["order0"]["operating"] == 2.6955912113189697
    assert reply.times["order1"]["operating"] == 0


def test_fixture_call_single_success():
    reply = parse_batch_reply(envelope("call-single-success"))
    results, failures = split_reply(reply, chunk_of(["crm.lead.get"]), label=lambda i: "order0")
    assert failures == []
    lead = results[0]
    assert lead["ID"] == "35943"
    assert lead["OPPORTUNITY"] == "3607999.00"
    assert lead["HONORIFIC"] is None
    assert lead["STATUS_ID"] == "3"


def test_fixture_catalog_document_element_list_second_page():
    reply = parse_batch_reply(envelope("catalog-document-element-list", page=1))
    rows = reply.results["cmd0000000000"]["documentElements"]
    assert len(rows) == 45
    assert rows[0]["id"] == 219
    assert reply.totals == {"cmd0000000000": 95}
    assert reply.nexts == {}


def test_fixture_crm_company_contact_items_get():
    reply = parse_batch_reply(envelope("crm-company-contact-items-get"))
    assert [c["CONTACT_ID"] for c in reply.results["205364"]] == [350354, 369658]
    assert reply.times["205364"]["operating_reset_at"] == 1739205751
    assert reply.times["205364"]["operating"] == 0.7021360397338867


def test_fixture_crm_contact_add_batch():
    reply = parse_batch_reply(envelope("crm-contact-add-batch"))
    assert reply.results == {"order0000000000": 58943}
    results, failures = split_reply(reply, chunk_of(["crm.contact.add"]),
                                    label=lambda i: f"order{i:010d}")
    assert results == {0: 58943} and failures == []


def test_fixture_dealcategory_stage_list_batch_of_one():
    # Labels 0..n-1 made the portal answer with JSON lists.
    data = json.loads((FIXTURES / "crm-dealcategory-stage-list-batch-of-one.json").read_text())
    assert data["request"]["cmd"] == {"0": "crm.dealcategory.stage.list?ID=0&"}
    reply = parse_batch_reply(data["response"])
    assert list(reply.results) == ["0"]
    stages = reply.results["0"]
    assert len(stages) == 8
    assert [stages[0]["STATUS_ID"], stages[-1]["STATUS_ID"]] == ["NEW", "APOLOGY"]
    assert reply.times["0"]["operating_reset_at"] == 1670596904
    results, failures = split_reply(reply, chunk_of(["crm.dealcategory.stage.list"]), label=str)
    assert results == {0: stages} and failures == []


def test_fixture_dealcategory_stage_list():
    data = json.loads((FIXTURES / "crm-dealcategory-stage-list.json").read_text())
    reply = parse_batch_reply(data["response"])
    assert list(reply.results) == ["2", "4", "8", "0"]
    assert {k: (len(v), v[0]["STATUS_ID"]) for k, v in reply.results.items()} == {
        "2": (16, "C2:NEW"), "4": (20, "C4:NEW"), "8": (8, "C8:NEW"), "0": (15, "NEW")}
    names = list(data["request"]["params"]["cmd"])
    results, failures = split_reply(reply, chunk_of(["crm.dealcategory.stage.list"] * 4),
                                    label=labels_from(names))
    assert failures == []
    assert results[3][0]["STATUS_ID"] == "NEW"  # the fourth command asked for ID=0


def test_fixture_mix_of_success_and_errors():
    reply = parse_batch_reply(envelope("crm-get-batch-mix-success-and-errors"))
    assert reply.results == {"35943": {"ID": "35943"}}
    assert reply.errors == {
        "0": {"error": "", "error_description": "ID is not defined or invalid."},
        "1": {"error": "", "error_description": "Not found"},
    }
    assert set(reply.times) == {"35943"}
    results, failures = split_reply(reply, chunk_of(["crm.lead.get"] * 3),
                                    label=labels_from(["0", "35943", "1"]))
    assert results == {1: {"ID": "35943"}}
    assert [(f.index, f.label, type(f.error)) for f in failures] == [
        (0, "0", InvalidArgument), (2, "1", NotFound)]
    assert failures[0].description == "ID is not defined or invalid."
    assert failures[0].error.method == "crm.lead.get"
    assert failures[0].error.status is None
    assert all(f.executed is False for f in failures)


def test_fixture_batch_of_two_errors():
    reply = parse_batch_reply(envelope("crm-get-batch-of-two-error"))
    assert reply.results == {} and reply.times == {}
    results, failures = split_reply(reply, chunk_of(["crm.lead.get"] * 2), label=str)
    assert results == {}
    assert [type(f.error) for f in failures] == [InvalidArgument, NotFound]
    assert [f.description for f in failures] == ["ID is not defined or invalid.", "Not found"]


def test_fixture_lead_get_batch_error():
    reply = parse_batch_reply(envelope("crm-lead-get-batch-error"))
    assert reply.errors == {
        "0": {"error": "", "error_description": "ID is not defined or invalid."}}
    results, failures = split_reply(reply, chunk_of(["crm.lead.get"]), label=str)
    assert results == {}
    (failure,) = failures
    assert isinstance(failure, CommandFailure)
    assert (failure.index, failure.method, failure.code) == (0, "crm.lead.get", "")
    assert isinstance(failure.error, InvalidArgument)


def test_fixture_crm_item_add():
    reply = parse_batch_reply(envelope("crm-item-add"))
    item = reply.results["order0000000000"]["item"]
    assert item["id"] == 247
    assert item["title"] == "Андрей Макарцев\n"


def test_fixture_crm_item_productrow_list():
    reply = parse_batch_reply(envelope("crm-item-productrow-list"))
    rows = reply.results["cmd0000000000"]["productRows"]
    assert [r["id"] for r in rows] == [6563, 6564]
    assert rows[0]["quantity"] == 0.06
    assert reply.totals == {"cmd0000000000": 2}
    assert reply.nexts == {}


def test_fixture_crm_stagehistory_list():
    reply = parse_batch_reply(envelope("crm-stagehistory-list"))
    items = reply.results["order0000000000"]["items"]
    assert len(items) == 9
    assert [items[0]["ID"], items[-1]["ID"]] == ["10653", "12045"]
    assert reply.totals == {"order0000000000": 9}


def test_fixture_lead_list_pages_add_up_to_total():
    first = envelope("crm-lead-list-several-pages-success", page=0)
    assert (first["total"], first["next"], len(first["result"])) == (7531, 50, 50)
    count = len(first["result"])
    for page in (1, 2, 3):
        reply = parse_batch_reply(envelope("crm-lead-list-several-pages-success", page=page))
        assert set(reply.totals.values()) == {7531}
        count += sum(len(v) for v in reply.results.values())
    assert count == 7531
    assert reply.nexts["cmd48"] == 7500
    assert "cmd49" not in reply.nexts  # the last page has no next
    assert reply.results["cmd49"][-1]["ID"] == "35929"
    second = parse_batch_reply(envelope("crm-lead-list-several-pages-success", page=1))
    assert (second.nexts["cmd0"], second.nexts["cmd49"]) == (100, 2550)
    assert second.results["cmd0"][0] == {
        "ID": "1261", "TITLE": "31%: хорошево, 2к, 43.2м, кв, 10.7 - 8.2 = 2.5"}


def test_fixture_get_all_tasks_batch_page():
    reply = parse_batch_reply(envelope("get-all-tasks", page=1))
    assert len(reply.results) == 31
    assert set(reply.totals.values()) == {1570}
    assert reply.nexts["cmd0000000029"] == 1550 and "cmd0000000030" not in reply.nexts
    assert reply.results["cmd0000000000"]["tasks"][0]["id"] == "88134"
    assert reply.results["cmd0000000030"]["tasks"][-1]["id"] == "484484"
    count = sum(len(v["tasks"]) for v in reply.results.values())
    assert 50 + count == 1570


def test_fixture_lists_element_add_batch():
    reply = parse_batch_reply(envelope("lists-element-add-batch"))
    results, failures = split_reply(reply, chunk_of(["lists.element.add"] * 2),
                                    label=lambda i: f"order{i:010d}")
    assert results == {0: 53, 1: 55} and failures == []
    assert reply.times["order0000000001"]["operating_reset_at"] == 1753131758


def test_fixture_stagehistory_batch_page():
    reply = parse_batch_reply(envelope("stagehistory", page=1))
    assert set(reply.totals.values()) == {490}
    assert len(reply.results) == 9 and len(reply.nexts) == 8
    assert reply.results["cmd0000000000"]["items"][0]["ID"] == "8041"
    assert 50 + sum(len(v["items"]) for v in reply.results.values()) == 490


def test_fixture_elapseditem_getlist_mixed_types():
    reply = parse_batch_reply(envelope("task-elapseditem-getlist-mixed-types"))
    assert len(reply.results) == 50
    assert reply.results["145572"] == []  # an empty result stays a list
    assert reply.results["145620"][0]["SECONDS"] == "2100"
    assert reply.totals["144518"] == 2 and reply.totals["142635"] == 15
    assert "operating" not in reply.times["145572"]


ALL_BATCH_FIXTURES = [
    ("batch-list-empty", None), ("call-batch", None), ("call-several-success", None),
    ("call-single-success", None), ("catalog-document-element-list", 1),
    ("crm-company-contact-items-get", None), ("crm-contact-add-batch", None),
    ("crm-dealcategory-stage-list-batch-of-one", None), ("crm-dealcategory-stage-list", None),
    ("crm-get-batch-mix-success-and-errors", None), ("crm-get-batch-of-two-error", None),
    ("crm-item-add", None), ("crm-item-productrow-list", None),
    ("crm-lead-get-batch-error", None), ("crm-lead-list-several-pages-success", 1),
    ("crm-lead-list-several-pages-success", 2), ("crm-lead-list-several-pages-success", 3),
    ("crm-stagehistory-list", None), ("get-all-tasks", 1), ("lists-element-add-batch", None),
    ("stagehistory", 1), ("task-elapseditem-getlist-mixed-types", None),
]


@pytest.mark.parametrize("name, page", ALL_BATCH_FIXTURES)
def test_every_batch_fixture_parses_to_string_keyed_dicts(name, page):
    reply = parse_batch_reply(envelope(name, page))
    for field in (reply.results, reply.errors, reply.totals, reply.nexts, reply.times):
        assert type(field) is dict
        assert all(type(k) is str for k in field)
    assert all(type(v) is int for v in reply.totals.values())
    assert all(type(v) is int for v in reply.nexts.values())
    assert set(reply.times) <= set(reply.results)  # only successes carry a time
    assert not set(reply.errors) & set(reply.results)


def test_every_batch_fixture_is_covered():
    names = set()
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        pages = [data["response"]] if "response" in data else data["responses"]
        for page in pages:
            if isinstance(page.get("result"), dict) and "result_error" in page["result"]:
                names.add(path.stem)
    assert names == {name for name, _ in ALL_BATCH_FIXTURES}


# -- parse_batch_reply: shapes -------------------------------------------------------------


def test_empty_arrays_and_lists_become_dicts():
    reply = parse_batch_reply(batch_body(
        results=["a", "b"], errors=[], totals=[5, 6], nexts=[50], times=[{"operating": 1}]))
    assert reply == BatchReply(
        results={"0": "a", "1": "b"}, errors={}, totals={"0": 5, "1": 6}, nexts={"0": 50},
        times={"0": {"operating": 1}})


def test_missing_maps_become_empty():
    assert parse_batch_reply({"result": {}}) == BatchReply({}, {}, {}, {}, {})
    assert parse_batch_reply({"result": {"result": None}}).results == {}


def test_int_keys_become_strings():
    reply = parse_batch_reply({"result": {"result": {1: "x"}, "result_total": {1: "7"}}})
    assert reply.results == {"1": "x"}
    assert reply.totals == {"1": 7}


@pytest.mark.parametrize("envelope_value, why", [
    (None, "NoneType"),
    ([], "list"),
    ("<html>", "str"),
    ({}, "no result"),
    ({"result": []}, "no result"),
    ({"result": 5}, "no result"),
    ({"result": {"result": "x"}}, "result"),
    ({"result": {"result_error": 5}}, "result_error"),
    ({"result": {"result_error": {"c0": "oops"}}}, r"result_error\[c0\]"),
    ({"result": {"result_total": {"c0": "many"}}}, r"result_total\[c0\]"),
    ({"result": {"result_total": {"c0": True}}}, r"result_total\[c0\]"),
    ({"result": {"result_next": {"c0": None}}}, r"result_next\[c0\]"),
    ({"result": {"result_time": {"c0": 5}}}, r"result_time\[c0\]"),
])
def test_malformed_envelopes(envelope_value, why):
    with pytest.raises(InvalidResponse, match=why) as info:
        parse_batch_reply(envelope_value)
    assert info.value.method == "batch"
    assert isinstance(info.value.snippet, str)


def test_error_envelope_raises_the_mapped_error():
    with pytest.raises(QueryLimitExceeded):
        parse_batch_reply({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many"})


# -- split_reply ---------------------------------------------------------------------------


def test_split_reply_in_input_order_with_our_labels():
    chunk = [(10, Command("crm.deal.get", {"ID": 1})), (11, Command("crm.deal.get", {"ID": 2})),
             (12, Command("user.get")), (13, Command("crm.deal.add"))]
    body = batch_body(
        results={"c10": {"ID": "1"}, "c12": [{"ID": "1"}]},
        errors={"c11": {"error": "NOT_FOUND", "error_description": "Not found"},
                "c13": {"error": "OPERATION_TIME_LIMIT",
                        "error_description": "Method is blocked due to operation time limit."}},
        totals={"c12": 1},
        times={"c10": {"operating": 0}, "c12": {"operating": 0}},
    )
    results, failures = split_reply(parse_batch_reply(body), chunk)
    assert results == {10: {"ID": "1"}, 12: [{"ID": "1"}]}
    assert [(f.index, f.label, f.method, f.code) for f in failures] == [
        (11, "c11", "crm.deal.get", "NOT_FOUND"),
        (13, "c13", "crm.deal.add", "OPERATION_TIME_LIMIT"),
    ]
    assert isinstance(failures[0].error, NotFound)
    assert isinstance(failures[1].error, OperationTimeLimit)
    assert failures[1].error.reset_at is None
    assert [f.executed for f in failures] == [False, False]


def test_split_reply_halt_leaves_later_commands_not_executed():
    chunk = chunk_of(["crm.deal.add", "crm.deal.add", "crm.deal.add"])
    body = batch_body(results={"c0": 101},
                      errors={"c1": {"error": "ACCESS_DENIED", "error_description": "denied"}})
    results, failures = split_reply(parse_batch_reply(body), chunk)
    assert results == {0: 101}
    assert isinstance(failures[0].error, AccessDenied)
    skipped = failures[1]
    assert (skipped.index, skipped.label, skipped.code) == (2, "c2", "NOT_EXECUTED")
    assert type(skipped.error) is BitrixError
    assert skipped.error.method == "crm.deal.add"
    assert skipped.executed is False


def test_split_reply_null_and_false_results_are_successes():
    chunk = chunk_of(["a", "b", "c"])
    body = batch_body(results={"c0": None, "c1": False, "c2": []})
    results, failures = split_reply(parse_batch_reply(body), chunk)
    assert results == {0: None, 1: False, 2: []} and failures == []


def test_split_reply_error_wins_over_a_result():
    body = batch_body(results={"c0": 1}, errors={"c0": {"error": "X", "error_description": ""}})
    results, failures = split_reply(parse_batch_reply(body), chunk_of(["a"]))
    assert results == {} and failures[0].code == "X"


def test_split_reply_ignores_unknown_labels():
    body = batch_body(results={"c0": 1, "zzz": 2},
                      errors={"other": {"error": "X", "error_description": ""}})
    assert split_reply(parse_batch_reply(body), chunk_of(["a"])) == ({0: 1}, [])


def test_split_reply_scope_error_inside_batch():
    body = batch_body(errors={"c0": {"error": "insufficient_scope", "error_description": ""}})
    _, (failure,) = split_reply(parse_batch_reply(body), chunk_of(["task.item.list"]))
    assert isinstance(failure.error, InsufficientScope)
    assert str(failure) == "#0 c0 task.item.list insufficient_scope"


def test_round_trip_through_a_php_like_portal():
    # A minimal stand-in for the portal: decode each command as PHP would, echo it back.
    commands = [Command("crm.deal.list", {"filter": {">ID": i * 50, "ACTIVE": True},
                                          "select": ["ID"], "start": -1}) for i in range(120)]
    seen = {}
    for chunk in pack(commands, 50):
        body = json.loads(json.dumps(batch_payload(chunk)))
        results = {}
        for label, command in body["cmd"].items():
            method, _, query = command.partition("?")
            results[label] = {"method": method, "params": dict(parse_qsl(query))}
        got, failures = split_reply(parse_batch_reply(batch_body(results=results)), chunk)
        assert failures == []
        seen.update(got)
    assert sorted(seen) == list(range(120))
    assert seen[77] == {"method": "crm.deal.list", "params": {
        "filter[>ID]": "3850", "filter[ACTIVE]": "1", "select[0]": "ID", "start": "-1"}}


@pytest.mark.parametrize("block, expected", [
    ({"operating": 2, "operating_reset_at": 1600, "finish": 1000.5, "processing": 0.25},
     (2.0, 599.5, 1000.5, 0.25)),
    ({"operating": 2.5, "operating_reset_at": 900, "finish": 1000}, (2.5, 0.0, 1000.0, None)),
    ({}, (None, None, None, None)),
    (None, (None, None, None, None)),
    ([1, 2], (None, None, None, None)),
    ({"operating": "2", "finish": True, "processing": None}, (None, None, None, None)),
    ({"operating": float("nan"), "processing": float("inf")}, (None, None, None, None)),
    ({"operating": -1.0, "processing": -0.5, "finish": -3}, (None, None, -3.0, None)),
    ({"operating": 10 ** 400, "finish": 1.0, "operating_reset_at": -10 ** 400},
     (None, None, 1.0, None)),
])
def test_time_numbers_take_finite_figures_and_leave_the_rest_out(block, expected):
    from bitrix_threaded.batch import start_time, time_numbers
    assert time_numbers(block) == expected
    assert start_time({"start": float("nan")}) is None
    assert start_time({"start": 12}) == 12.0
