"""Every recorded real response, served at the wire with `responses`, parsed by the client.

Batch envelopes are replayed through ``call_batch`` with the labels they were recorded
with, and through ``call`` with a list (labels renamed to the client's own); list pages
are replayed through ``call`` and through ``get_all`` with offset pages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses

from bitrix_threaded import BatchError, Bitrix

FIXTURES = Path(__file__).parent / "fixtures" / "real_responses"
WEBHOOK = "https://example.bitrix24.com/rest/1/s3cretC0de/"
BASE = WEBHOOK


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def envelope(name: str) -> dict:
    return load(name)["response"]


@pytest.fixture
def bx():
    with Bitrix(WEBHOOK, verbose=False) as client:
        yield client


def batch_map(value):
    """The recorded map as a dict keyed by str label ([] -> {}, list -> index keys)."""
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {str(k): v for k, v in value.items()}


BATCH_FIXTURES = [
    "batch-list-empty.json",
    "call-batch.json",
    "call-several-success.json",
    "call-single-success.json",
    "crm-company-contact-items-get.json",
    "crm-contact-add-batch.json",
    "crm-dealcategory-stage-list-batch-of-one.json",
    "crm-dealcategory-stage-list.json",
    "crm-get-batch-mix-success-and-errors.json",
    "crm-get-batch-of-two-error.json",
    "crm-item-add.json",
    "crm-item-productrow-list.json",
    "crm-lead-get-batch-error.json",
    "crm-stagehistory-list.json",
    "lists-element-add-batch.json",
    "task-elapseditem-getlist-mixed-types.json",
]


def labels_of(name: str) -> list:
    """The labels a recorded batch was sent with (results, errors and totals together)."""
    data = load(name)
    request = data.get("request")
    if request:
        cmd = request.get("params", request).get("cmd")
        return [str(k) for k in cmd]
    inner = data["response"]["result"]
    labels: list = []
    for part in ("result", "result_error", "result_total"):
        for key in batch_map(inner[part]):
            if key not in labels:
                labels.append(key)
    return labels


@pytest.mark.parametrize("name", BATCH_FIXTURES)
@responses.activate
def test_batch_fixture_through_call_batch(bx, name):
    reply = envelope(name)
    inner = reply["result"]
    expected = batch_map(inner["result"])
    errors = batch_map(inner["result_error"])
    labels = labels_of(name)
    assert set(expected) | set(errors) <= set(labels)
    responses.post(BASE + "batch", json=reply)

    cmd = {label: "crm.lead.get?ID=1" for label in labels}
    if errors:
        with pytest.raises(BatchError) as info:
            bx.call_batch({"halt": 0, "cmd": cmd})
        err = info.value
        assert {f.label for f in err.failures} == set(errors)
        for failure in err.failures:
            assert failure.description == errors[failure.label]["error_description"]
        assert err.results_by_label == expected
    else:
        assert bx.call_batch({"halt": 0, "cmd": cmd}) == expected


def relabel(reply: dict, labels: list) -> dict:
    """The recorded batch envelope with its labels renamed to c0, c1, ... in order."""
    rename = {label: f"c{i}" for i, label in enumerate(labels)}
    inner = reply["result"]
    out: dict = {}
    for part in ("result", "result_error", "result_total", "result_next", "result_time"):
        mapped = batch_map(inner.get(part, []))
        out[part] = {rename[k]: v for k, v in mapped.items()} or []
    return {"result": out, "time": reply.get("time", {})}


@pytest.mark.parametrize("name", BATCH_FIXTURES)
@responses.activate
def test_batch_fixture_through_call_with_a_list(bx, name):
    reply = envelope(name)
    labels = labels_of(name)
    expected = batch_map(reply["result"]["result"])
    errors = batch_map(reply["result"]["result_error"])
    responses.post(BASE + "batch", json=relabel(reply, labels))
    items = [{"ID": i + 1} for i in range(len(labels))]
    if errors:
        with pytest.raises(BatchError) as info:
            bx.call("crm.lead.get", items)
        err = info.value
        assert [f.index for f in err.failures] == [labels.index(k) for k in sorted(
            errors, key=labels.index)]
        assert err.results == {labels.index(k): v for k, v in expected.items()}
        assert err.total == len(labels)
    else:
        assert bx.call("crm.lead.get", items) == tuple(expected[k] for k in labels)


def test_numeric_labels_come_back_as_a_list_and_are_mapped():
    reply = envelope("crm-dealcategory-stage-list-batch-of-one.json")
    assert isinstance(reply["result"]["result"], list)
    with responses.RequestsMock() as mock, Bitrix(WEBHOOK, verbose=False) as bx:
        mock.post(BASE + "batch", json=reply)
        result = bx.call_batch({"halt": 0, "cmd": {"0": "crm.dealcategory.stage.list?ID=0"}})
    assert list(result) == ["0"]
    assert result["0"][0]["STATUS_ID"] == "NEW"


def test_mixed_success_and_errors_name_each_failed_command():
    reply = envelope("crm-get-batch-mix-success-and-errors.json")
    labels = labels_of("crm-get-batch-mix-success-and-errors.json")
    with responses.RequestsMock() as mock, Bitrix(WEBHOOK, verbose=False) as bx:
        mock.post(BASE + "batch", json=relabel(reply, labels))
        with pytest.raises(BatchError) as info:
            bx.call("crm.deal.get", [{"ID": n} for n in range(len(labels))])
    err = info.value
    assert len(err.failures) == 2
    assert sorted(type(f.error).__name__ for f in err.failures) == ["InvalidArgument", "NotFound"]
    assert all(f.method == "crm.deal.get" for f in err.failures)
    assert err.results[labels.index("35943")]["ID"] == "35943"
    assert "ID is not defined or invalid" in str(err)


PLAIN_FIXTURES = {
    "crm-lead-fields-success.json": "crm.lead.fields",
    "user-fields.json": "user.fields",
    "single-add.json": "tasks.task.add",
    "crm-item-list.json": "crm.item.list",
    "crm-lead-list-one-page-success.json": "crm.lead.list",
    "crm-category-list.json": "crm.category.list",
}


@pytest.mark.parametrize("name,method", sorted(PLAIN_FIXTURES.items()))
@responses.activate
def test_plain_call_returns_result_untouched(bx, name, method):
    reply = envelope(name)
    responses.post(BASE + method, json=reply)
    assert bx.call(method, {}) == reply["result"]
    # raw=True returns the whole envelope, total and time included.
    assert bx.call(method, {}, raw=True) == reply


def test_a_single_key_result_is_not_unwrapped():
    reply = envelope("single-add.json")
    with responses.RequestsMock() as mock, Bitrix(WEBHOOK, verbose=False) as bx:
        mock.post(BASE + "tasks.task.add", json=reply)
        result = bx.call("tasks.task.add", {"fields": {"TITLE": "x"}})
    assert list(result) == ["task"]
    assert result["task"]["id"] == "456"


# -- list pages through get_all(strategy="offset") ------------------------------------------

LIST_FIXTURES = {
    "crm-lead-list-several-pages-success.json": ("crm.lead.list", None),
    "get-all-tasks.json": ("tasks.task.list", "tasks"),
    "stagehistory.json": ("crm.stagehistory.list", "items"),
    "catalog-document-element-list.json": ("catalog.document.element.list", "documentElements"),
    "socialnetwork-api-workgroup-list.json": ("socialnetwork.api.workgroup.list", "workgroups"),
    "crm-category-list.json": ("crm.category.list", "categories"),
    "crm-item-list.json": ("crm.item.list", "items"),
    "crm-lead-list-one-page-success.json": ("crm.lead.list", None),
}


def pages_of(name: str) -> list:
    """Recorded pages in order; a recorded batch of page commands counts as its pages."""
    data = load(name)
    pages = []
    for reply in data.get("responses") or [data["response"]]:
        result = reply["result"]
        if isinstance(result, dict) and "result_error" in result:
            inner = batch_map(result["result"])
            totals = batch_map(result["result_total"])
            for label in sorted(inner):
                pages.append({"result": inner[label], "total": totals.get(label)})
        else:
            pages.append(reply)
    return pages


def records_of(page: dict, key):
    result = page["result"]
    return result if key is None else result[key]


def serve_pages(mock, pages: list, key) -> None:
    """Answer batches of list commands with the recorded page for each ``start``."""
    recorded = sum(len(records_of(p, key)) for p in pages)
    by_start = {50 * i: p for i, p in enumerate(pages)}

    def reply(request):
        body = json.loads(request.body)
        out, totals = {}, {}
        for label, text in body["cmd"].items():
            query = parse_qs(text.split("?", 1)[1]) if "?" in text else {}
            start = int(query.get("start", ["0"])[0])
            page = by_start.get(start)
            if page is None:
                empty: object = [] if key is None else {key: []}
                out[label] = empty
            else:
                out[label] = page["result"]
            totals[label] = recorded
        envelope = {"result": {"result": out, "result_error": [], "result_total": totals,
                               "result_next": [], "result_time": []}, "time": {}}
        return 200, {}, json.dumps(envelope)

    mock.add_callback(responses.POST, re.compile(re.escape(BASE) + "batch"), callback=reply)


@pytest.mark.parametrize("name", sorted(LIST_FIXTURES))
def test_list_fixture_through_get_all_offset_pages(name):
    method, key = LIST_FIXTURES[name]
    pages = pages_of(name)
    expected = [r for p in pages for r in records_of(p, key)]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, \
            Bitrix(WEBHOOK, verbose=False) as bx:
        serve_pages(mock, pages, key)
        got = bx.get_all(method, strategy="offset")
    assert len(got) == len(expected)
    assert {json.dumps(r, sort_keys=True) for r in got} == {
        json.dumps(r, sort_keys=True) for r in expected}


def test_the_webhook_token_never_shows(bx):
    assert "s3cretC0de" not in repr(bx)
    assert "s3cretC0de" not in repr(bx.credentials)
