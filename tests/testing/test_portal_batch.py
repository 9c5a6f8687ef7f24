"""The fake portal's batch method: references, halt, limits and reply shapes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from bitrix_threaded.testing.batch import resolve_references, run_batch, split_command

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real_responses"

REFS: dict = {
    "result": {"c0": [{"ID": "7", "TITLE": "a"}, {"ID": "9", "TITLE": "b"}],
               "one": {"ID": "3", "PHONE": [{"VALUE": "+1"}]}, "n": 5, "f": 2.0},
    "next": {"c0": 50},
    "total": {"c0": 120},
    "time": {"c0": {"operating": 1.5}},
    "error": {"bad": {"error": "", "error_description": "Not found"}},
}


def load(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["response"]


# -- references (pure) ------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("$result[c0][1][ID]", "9"),
    ("$result[c0]", REFS["result"]["c0"]),                   # whole value: raw list
    ("$result[one][PHONE]", [{"VALUE": "+1"}]),
    ("$next[c0]", 50),
    ("$total[c0]", 120),
    ("$time[c0][operating]", 1.5),
    ("$error[bad][error_description]", "Not found"),
    ("$result[c0][99][ID]", REFS["result"]["c0"]),           # walk stops at the last node
    ("$result[missing]", REFS["result"]),
    ("$result", "$result"),                                  # no path: left alone
    ("plain", "plain"),
    ("id=$result[c0][0][ID]", "id=7"),                       # embedded: spliced as a string
    ("p$next[c0]", "p50"),
    ("p$result[f]", "p2"),
    ("x $result[c0] y", "x $result[c0] y"),                  # embedded array: left as is
    ("x$result[c0][0][ID]tail", "x7"),                       # greedy \S* swallows the tail
    ("$result[c0][0][ID] and $next[c0]", "7 and 50"),
    ("$RESULT[c0]", None),                                   # case-insensitive match, no data
])
def test_reference_resolution(value, expected):
    assert resolve_references(value, REFS) == expected


def test_split_command():
    assert split_command("crm.deal.list?a=1&b=2") == ("crm.deal.list", "a=1&b=2")
    assert split_command("user.get") == ("user.get", None)
    assert split_command("user.get?") == ("user.get", "")
    assert split_command("user.get?x=1#frag") == ("user.get", "x=1")


# -- run_batch with a stand-in executor --------------------------------------

def executor(log):
    def execute(method, params):
        log.append((method, params))
        if method == "fail":
            return {"error": "E", "error_description": "failed"}
        reply = {"result": {"method": method, "params": params}, "time": {"t": 1}}
        if method == "list":
            reply.update(total=3, next=2)
        return reply
    return execute


def test_run_batch_maps_and_references_between_commands():
    log = []
    reply = run_batch({"cmd": {"a": "list?x=1", "b": "get?id=$result[a][params][x]",
                               "c": "fail", "d": "get?n=$next[a]&t[]=$total[a]"}},
                      executor(log))
    assert log[1] == ("get", {"id": "1"})
    assert log[3] == ("get", {"n": 2, "t": [3]})
    assert list(reply["result"]) == ["a", "b", "d"]
    assert reply["result_error"] == {"c": {"error": "E", "error_description": "failed"}}
    assert reply["result_total"] == {"a": 3}
    assert reply["result_next"] == {"a": 2}
    assert list(reply["result_time"]) == ["a", "b", "d"]


def test_run_batch_numeric_labels_give_lists_and_empty_maps_are_lists():
    reply = run_batch({"cmd": ["get", "get"]}, executor([]))
    assert isinstance(reply["result"], list) and len(reply["result"]) == 2
    assert reply["result_error"] == [] and reply["result_total"] == []
    assert reply["result_next"] == [] and isinstance(reply["result_time"], list)
    reply = run_batch({"cmd": {"0": "get", "1": "get"}}, executor([]))
    assert isinstance(reply["result"], list)
    reply = run_batch({"cmd": {"1": "get", "0": "get"}}, executor([]))
    assert reply["result"].keys() == {"1", "0"}


def test_run_batch_without_commands_returns_five_empty_lists():
    empty = {"result": [], "result_error": [], "result_total": [], "result_next": [],
             "result_time": []}
    assert run_batch({}, executor([])) == empty
    assert run_batch({"cmd": "user.get"}, executor([])) == empty


def test_run_batch_skips_non_string_commands_and_reads_keys_case_insensitively():
    log = []
    reply = run_batch({"CMD": {"a": 5, "b": ["x"], "c": "get"}, "Halt": 1}, executor(log))
    assert [method for method, _ in log] == ["get"]
    assert list(reply["result"]) == ["c"]


@pytest.mark.parametrize("halt, stops", [
    (1, True), ("1", True), (True, True), ("false", True), ("Y", True),
    (0, False), ("0", False), ("", False), (False, False), (None, False),
])
def test_halt_uses_php_boolean_semantics(halt, stops):
    log = []
    reply = run_batch({"halt": halt, "cmd": {"a": "get", "b": "fail", "c": "get"}},
                      executor(log))
    assert len(log) == (2 if stops else 3)
    assert list(reply["result_error"]) == ["b"]
    assert ("c" in reply["result"]) is not stops
    assert ("c" in reply["result_time"]) is not stops


def test_more_than_50_commands_fail_one_by_one():
    log = []
    cmd = {f"c{i}": "get" for i in range(55)}
    reply = run_batch({"cmd": cmd}, executor(log))
    assert len(log) == 50
    assert len(reply["result"]) == 50
    assert list(reply["result_error"]) == [f"c{i}" for i in range(50, 55)]
    assert reply["result_error"]["c54"] == {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                                            "error_description": "Max batch length exceeded"}


def test_nested_batch_is_not_allowed():
    log = []
    reply = run_batch({"cmd": {"a": "BATCH?cmd[x]=user.get", "b": "get"}}, executor(log))
    assert [method for method, _ in log] == ["get"]
    assert reply["result_error"] == {"a": {
        "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "error_description": "Method is not allowed for batch usage"}}


# -- wire level ---------------------------------------------------------------

def post_batch(portal, cmd, **extra):
    reply = requests.post(portal.webhook + "batch", json={"cmd": cmd, **extra})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_chained_cursor_walks_ids_in_one_batch(fake_portal_factory):
    portal = fake_portal_factory(deals=230)
    base = "crm.deal.list?order[ID]=ASC&select[]=ID&start=-1"
    cmd = {"c0": base + "&filter[>ID]=0"}
    for number in range(1, 4):
        cmd[f"c{number}"] = base + f"&filter[>ID]=$result[c{number - 1}][49][ID]"
    body = post_batch(portal, cmd)
    seen = [int(row["ID"]) for label in cmd for row in body["result"]["result"][label]]
    assert seen == portal.ids("deal")[:200]
    assert body["result"]["result_next"] == []


def test_next_and_total_references(fake_portal):
    ids = fake_portal.ids("deal")
    body = post_batch(fake_portal, {
        "first": "crm.deal.list?order[ID]=ASC&select[]=ID",
        "second": "crm.deal.list?order[ID]=ASC&select[]=ID&start=$next[first]",
        "past_end": "crm.deal.list?order[ID]=ASC&select[]=ID&start=$total[first]",
        "one": "crm.deal.get?id=$result[first][3][ID]",
    })["result"]
    assert body["result_total"]["first"] == len(ids)
    assert body["result_next"]["first"] == 50
    assert [int(row["ID"]) for row in body["result"]["second"]] == ids[50:100]
    assert int(body["result"]["one"]["ID"]) == ids[3]


def test_form_encoded_batch_with_double_encoded_commands(fake_portal):
    reply = requests.post(fake_portal.webhook + "batch", data={
        "halt": "0",
        "cmd[a]": "crm.deal.list?order[ID]=ASC&select[]=ID&select[]=TITLE",
        "cmd[b]": "crm.deal.get?id=$result[a][0][ID]",
    })
    body = reply.json()["result"]
    assert reply.status_code == 200
    assert set(body["result"]["a"][0]) == {"ID", "TITLE"}
    assert body["result"]["b"]["ID"] == body["result"]["a"][0]["ID"]


def test_batch_via_query_string_only(fake_portal):
    reply = requests.get(fake_portal.webhook + "batch",
                         params={"cmd[x]": "user.get?FILTER[ID]=1", "halt": "1"})
    assert reply.status_code == 200
    assert reply.json()["result"]["result"]["x"][0]["ID"] == "1"


def _shape(value):
    """Type skeleton of a batch reply: labels dropped, container kinds kept."""
    if isinstance(value, list):
        return ["list", len(value) == 0]
    if isinstance(value, dict):
        return ["dict", len(value) == 0]
    return type(value).__name__


TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish",
             "operating"}


def _check_time_block(block):
    assert TIME_KEYS <= set(block) <= TIME_KEYS | {"operating_reset_at"}
    assert list(block)[-1] == "operating"
    assert block["duration"] == pytest.approx(block["finish"] - block["start"])


def test_empty_list_in_batch_matches_recorded_reply(fake_portal):
    recorded = load("batch-list-empty.json")
    ours = post_batch(fake_portal, {"order0000000000": "crm.deal.list?filter[ID]=0"})
    for key in ("result", "result_error", "result_total", "result_next", "result_time"):
        assert _shape(ours["result"][key]) == _shape(recorded["result"][key]), key
    assert ours["result"]["result"] == {"order0000000000": []}
    assert ours["result"]["result_total"] == {"order0000000000": 0}
    _check_time_block(ours["result"]["result_time"]["order0000000000"])
    _check_time_block(ours["time"])
    assert set(ours) == set(recorded) == {"result", "time"}


def test_numeric_labels_give_lists_like_recorded_batch_of_one(fake_portal):
    recorded = load("crm-dealcategory-stage-list-batch-of-one.json")
    for cmd in ({"0": "crm.lead.fields"}, ["crm.lead.fields"]):
        ours = post_batch(fake_portal, cmd, halt=0)["result"]
        for key in ("result", "result_error", "result_next", "result_time", "result_total"):
            assert _shape(ours[key]) == _shape(recorded["result"][key]), key
        assert len(ours["result"]) == 1
        _check_time_block(ours["result_time"][0])


def test_several_gets_match_recorded_reply(fake_portal):
    recorded = load("call-several-success.json")
    ids = fake_portal.ids("deal")
    ours = post_batch(fake_portal, {f"order{i}": f"crm.deal.get?id={ids[i]}" for i in range(3)})
    for key in recorded["result"]:
        assert _shape(ours["result"][key]) == _shape(recorded["result"][key]), key
    assert list(ours["result"]["result"]) == ["order0", "order1", "order2"]
    assert ours["result"]["result"]["order1"]["ID"] == str(ids[1])


def test_mixed_success_and_errors_match_recorded_reply(fake_portal):
    recorded = load("crm-get-batch-mix-success-and-errors.json")["result"]
    deal = fake_portal.ids("deal")[-1]  # a label that is neither 0 nor 1
    ours = post_batch(fake_portal, {"0": "crm.deal.get?id=0", "1": "crm.deal.get?id=999999",
                                    str(deal): f"crm.deal.get?id={deal}"})["result"]
    assert ours["result_error"] == recorded["result_error"]
    assert list(ours["result"]) == [str(deal)] and list(ours["result_time"]) == [str(deal)]
    assert ours["result_total"] == ours["result_next"] == []


def test_all_errors_match_recorded_reply(fake_portal):
    recorded = load("crm-get-batch-of-two-error.json")["result"]
    ours = post_batch(fake_portal, ["crm.deal.get?id=0", "crm.deal.get?id=999999"])["result"]
    assert ours == recorded


def test_unknown_method_and_nested_batch_inside_a_batch(fake_portal):
    body = post_batch(fake_portal, {"a": "no.such.method", "b": "batch?cmd[0]=user.get",
                                    "c": "USER.GET"})["result"]
    assert body["result_error"] == {
        "a": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
        "b": {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
              "error_description": "Method is not allowed for batch usage"}}
    assert list(body["result"]) == ["c"]


def test_halt_on_the_wire(fake_portal):
    cmd = {"a": "user.get", "b": "crm.deal.get?id=0", "c": "user.get"}
    halted = post_batch(fake_portal, cmd, halt=1)["result"]
    assert list(halted["result"]) == ["a"] and list(halted["result_time"]) == ["a"]
    assert list(halted["result_error"]) == ["b"]
    assert "c" not in halted["result_total"]
    full = post_batch(fake_portal, cmd, halt=0)["result"]
    assert list(full["result"]) == ["a", "c"]


def test_over_50_commands_on_the_wire(fake_portal):
    fake_portal.reset_stats()
    body = post_batch(fake_portal, [f"user.get?FILTER[ID]={i % 10 + 1}" for i in range(52)])
    result = body["result"]
    assert isinstance(result["result"], list) and len(result["result"]) == 50
    assert result["result_error"] == {
        "50": {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
               "error_description": "Max batch length exceeded"},
        "51": {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
               "error_description": "Max batch length exceeded"}}
    stats = fake_portal.stats()
    assert stats["commands"] == 50 and stats["requests"] == 1


def test_nested_list_results_and_totals_in_batch(fake_portal):
    body = post_batch(fake_portal, {
        "tasks": "tasks.task.list?select[]=ID&order[ID]=asc",
        "items": "crm.item.list?entityTypeId=2&select[]=id",
    })["result"]
    assert isinstance(body["result"]["tasks"]["tasks"], list)
    assert isinstance(body["result"]["items"]["items"], list)
    assert body["result_total"] == {"tasks": 80, "items": 120}
    assert body["result_next"] == {"tasks": 50, "items": 50}
