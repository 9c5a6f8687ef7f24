"""The bitrix-threaded command line, driven in-process and as real subprocesses.

Records are checked against the fake portal's own answers, fetched page by page with
plain HTTP (no client code involved).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import requests

from bitrix_threaded import Bitrix, InvalidCredentials, __version__
from bitrix_threaded.cli import main, merge_filters, merge_select
from bitrix_threaded.cli_output import (
    CsvSink, InterruptShield, JsonLinesSink, Output, export_records,
)
from bitrix_threaded.testing import FakePortal

DEALS = 300
USERS = 25
TASKS = 80
SUBPROCESS_TIMEOUT = 60


@pytest.fixture(scope="module")
def portal():
    # Read-only for every test of the module, so one instance serves them all.
    with FakePortal(deals=DEALS, users=USERS, tasks=TASKS, profile="instant") as started:
        yield started


@pytest.fixture
def webhook(portal, monkeypatch):
    """The portal's webhook, also set as BITRIX_WEBHOOK."""
    monkeypatch.setenv("BITRIX_WEBHOOK", portal.webhook)
    return portal.webhook


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def cli(capsys, *argv: str):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def reference(portal, method: str, params: Optional[Dict[str, Any]] = None,
              key: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every record of a list method, paged by offsets with plain HTTP."""
    records: List[Dict[str, Any]] = []
    start = 0
    while True:
        reply = requests.post(portal.webhook + method, json={**(params or {}), "start": start},
                              timeout=10).json()
        page = reply["result"][key] if key else reply["result"]
        records.extend(page)
        if "next" not in reply:
            return records
        start = reply["next"]


def by_id(records, field: str = "ID"):
    return sorted(records, key=lambda record: int(record[field]))


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def assert_clean_failure(code: int, expected: int, out: str, err: str, *secrets: str) -> str:
    """The exit status, one error line on stderr, no traceback, no secret; returns the line."""
    assert code == expected, err
    assert "Traceback" not in out + err
    for secret in secrets:
        assert secret not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bitrix-threaded: error: ")
    return lines[0]


# -- basics ------------------------------------------------------------------------------

def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"bitrix-threaded {__version__}"


def test_help_lists_the_commands(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("export", "call", "demo", "serve"):
        assert command in out


def test_no_command_is_a_usage_error(capsys):
    code, out, err = cli(capsys)
    assert_clean_failure(code, 2, out, err)


# -- export ------------------------------------------------------------------------------

def test_export_jsonl_file_holds_every_record(portal, webhook, capsys, tmp_path):
    target = tmp_path / "deals.jsonl"
    code, out, err = cli(capsys, "export", "crm.deal.list", "-o", str(target))
    assert code == 0, err
    assert out == ""
    assert by_id(read_jsonl(target)) == by_id(reference(portal, "crm.deal.list"))
    summary = err.strip().splitlines()[-1]
    assert summary.startswith(f"{DEALS} records of crm.deal.list written to {target} in ")
    assert summary.endswith("records/s)")
    assert token_of(webhook) not in err


def test_export_to_stdout_is_utf8_jsonl(portal, webhook, capsys):
    code, out, err = cli(capsys, "export", "crm.deal.list", "--quiet")
    assert code == 0
    assert err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert by_id(records) == by_id(reference(portal, "crm.deal.list"))
    titles = "".join(record["TITLE"] for record in records)
    assert any(ord(char) > 127 for char in titles)
    assert "\\u" not in out


def test_export_jsonl_of_a_nested_list_method(portal, webhook, capsys, tmp_path):
    target = tmp_path / "tasks.jsonl"
    code, _, err = cli(capsys, "export", "tasks.task.list", "-o", str(target), "-q")
    assert code == 0, err
    expected = reference(portal, "tasks.task.list", key="tasks")
    assert len(expected) == TASKS
    assert by_id(read_jsonl(target), "id") == by_id(expected, "id")


def test_export_offset_strategy_gives_the_same_records(portal, webhook, capsys, tmp_path):
    target = tmp_path / "deals.jsonl"
    code, _, err = cli(capsys, "export", "crm.deal.list", "--strategy", "offset",
                       "-o", str(target))
    assert code == 0, err
    assert by_id(read_jsonl(target)) == by_id(reference(portal, "crm.deal.list"))


def test_export_csv_round_trips_every_record(portal, webhook, capsys, tmp_path):
    target = tmp_path / "deals.csv"
    code, _, err = cli(capsys, "export", "crm.deal.list", "-o", str(target))
    assert code == 0, err
    expected = by_id(reference(portal, "crm.deal.list"))
    with open(target, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[0] == "ID"
        rows = by_id(list(reader))
    assert len(rows) == len(expected) == DEALS
    for row, record in zip(rows, expected):
        assert set(row) == set(record)
        assert row == {k: "" if v is None else v for k, v in record.items()}


def test_export_csv_encodes_non_strings_as_json(portal, webhook, capsys, tmp_path):
    target = tmp_path / "users.csv"
    code, _, err = cli(capsys, "export", "user.get", "--format", "csv", "-o", str(target))
    assert code == 0, err
    expected = by_id(reference(portal, "user.get"))
    with open(target, encoding="utf-8", newline="") as handle:
        rows = by_id(list(csv.DictReader(handle)))
    assert len(rows) == USERS
    for row, record in zip(rows, expected):
        for key, value in record.items():
            if isinstance(value, str):
                assert row[key] == value
            elif value is None:
                assert row[key] == ""
            else:  # booleans, numbers, lists (ACTIVE, UF_DEPARTMENT)
                assert json.loads(row[key]) == value


def test_select_and_filter(portal, webhook, capsys, tmp_path):
    target = tmp_path / "some.csv"
    code, _, err = cli(capsys, "export", "crm.deal.list", "--select", "TITLE,STAGE_ID",
                       "OPPORTUNITY", "--filter", ">ID=100", "-o", str(target))
    assert code == 0, err
    expected = by_id(reference(portal, "crm.deal.list", {
        "select": ["TITLE", "STAGE_ID", "OPPORTUNITY"], "filter": {">ID": "100"}}))
    assert 0 < len(expected) < DEALS
    with open(target, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        # The selected fields first, then the ID the portal adds to every record.
        assert reader.fieldnames[:3] == ["TITLE", "STAGE_ID", "OPPORTUNITY"]
        assert set(reader.fieldnames) == set(expected[0])
        rows = by_id(list(reader))
    assert rows == expected


def test_filter_merges_into_params_filter(portal, webhook, capsys):
    some = reference(portal, "crm.deal.list")[0]
    params = json.dumps({"FILTER": {"STAGE_ID": some["STAGE_ID"]}, "select": ["ID"]})
    code, out, err = cli(capsys, "export", "crm.deal.list", "--params", params,
                         "--filter", f"CURRENCY_ID={some['CURRENCY_ID']}", ">ID=10", "-q")
    assert code == 0, err
    expected = reference(portal, "crm.deal.list", {
        "filter": {"STAGE_ID": some["STAGE_ID"], "CURRENCY_ID": some["CURRENCY_ID"],
                   ">ID": "10"},
        "select": ["ID"]})
    assert expected
    assert by_id(json.loads(line) for line in out.splitlines()) == by_id(expected)


def test_library_warnings_are_one_line_messages(portal, webhook, capsys):
    code, out, err = cli(capsys, "export", "crm.deal.list", "--params", '{"start": 50}', "-q")
    assert code == 0
    assert len(out.splitlines()) == DEALS
    assert err.startswith("bitrix-threaded: warning: 'start' is ignored")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("items, expected", [
    (["STAGE_ID=WON"], {"STAGE_ID": "WON"}),
    ([">ID=100"], {">ID": "100"}),
    ([">=DATE_CREATE=2024-01-01T00:00:00+03:00"],
     {">=DATE_CREATE": "2024-01-01T00:00:00+03:00"}),
    (["!=STAGE_ID=LOSE", "%TITLE=shop"], {"!=STAGE_ID": "LOSE", "%TITLE": "shop"}),
    (["COMMENTS=a=b", "TITLE="], {"COMMENTS": "a=b", "TITLE": ""}),
    (["ID=1", "ID=2"], {"ID": "2"}),
])
def test_filter_items(items, expected):
    params: Dict[str, Any] = {"filter": {"OPENED": "Y"}}
    merge_filters(params, items)
    assert params == {"filter": {"OPENED": "Y", **expected}}


def test_select_items_extend_params_select():
    params: Dict[str, Any] = {"SELECT": ["ID"]}
    assert merge_select(params, ["TITLE,ID", "STAGE_ID"]) == ["TITLE", "ID", "STAGE_ID"]
    assert params == {"SELECT": ["ID", "TITLE", "STAGE_ID"]}


# -- bad input ---------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD_EXPORTS = [
    (["--params", '{"filter": '], 2, "--params is not valid JSON"),
    (["--params", "[1, 2]"], 2, "--params must be a JSON object"),
    (["--params", '{"filter": [1]}'], 2, "params['filter'] must be a dict"),
    (["--params", '{"filter": [1]}', "--filter", "ID=1"], 2,
     "'filter' in --params must be a JSON object"),
    (["--filter", "STAGE_ID"], 2, "--filter expects KEY=VALUE"),
    (["--format", "xml"], 2, "invalid choice"),
    (["--retries", "-1"], 2, "must be >= 0"),
    (["--no-such-option"], 2, "unrecognized arguments"),
]


@pytest.mark.parametrize("extra, status, message", BAD_EXPORTS)
def test_bad_export_arguments(webhook, capsys, tmp_path, extra, status, message):
    target = tmp_path / "out.jsonl"
    code, out, err = cli(capsys, "export", "crm.deal.list", "-o", str(target), *extra)
    line = assert_clean_failure(code, status, out, err, token_of(webhook))
    assert message in line
    assert not target.exists()


def test_missing_webhook(monkeypatch, capsys):
    monkeypatch.delenv("BITRIX_WEBHOOK", raising=False)
    code, out, err = cli(capsys, "export", "crm.deal.list")
    line = assert_clean_failure(code, 2, out, err)
    assert "--webhook" in line and "BITRIX_WEBHOOK" in line


@pytest.mark.parametrize("url", [
    "https://example.com/api/s3cr3tvalue/",
    "ftp://portal.example.com/rest/1/s3cr3tvalue/",
    "https://portal.example.com/rest/s3cr3tvalue/?x=1",
])
def test_not_a_webhook_url(monkeypatch, capsys, url):
    monkeypatch.delenv("BITRIX_WEBHOOK", raising=False)
    code, out, err = cli(capsys, "export", "crm.deal.list", "--webhook", url)
    line = assert_clean_failure(code, 2, out, err, "s3cr3tvalue")
    assert "not a Bitrix24 webhook URL" in line


def test_non_list_method(webhook, capsys):
    code, out, err = cli(capsys, "export", "crm.deal.get")
    line = assert_clean_failure(code, 2, out, err, token_of(webhook))
    assert "crm.deal.get is not a list method" in line


def test_unknown_method_is_the_portals_404(portal, webhook, capsys, tmp_path):
    target = tmp_path / "out.jsonl"
    code, out, err = cli(capsys, "export", "crm.nothing.list", "-o", str(target))
    line = assert_clean_failure(code, 1, out, err, token_of(webhook))
    # Inside a batch the portal reports the unknown method per command, without a status.
    assert "ERROR_METHOD_NOT_FOUND: Method not found!" in line
    assert not target.exists()


def test_invalid_credentials(portal, monkeypatch, capsys):
    wrong = portal.webhook.replace(token_of(portal.webhook), "wrongtoken42")
    monkeypatch.setenv("BITRIX_WEBHOOK", wrong)
    code, out, err = cli(capsys, "export", "crm.deal.list")
    line = assert_clean_failure(code, 1, out, err, "wrongtoken42", token_of(portal.webhook))
    assert "INVALID_CREDENTIALS" in line


def test_unreachable_portal(monkeypatch, capsys):
    url = f"http://127.0.0.1:{closed_port()}/rest/1/s3cr3tvalue/"
    code, out, err = cli(capsys, "export", "crm.deal.list", "--webhook", url, "--retries", "0")
    line = assert_clean_failure(code, 1, out, err, "s3cr3tvalue")
    assert "cannot reach the portal" in line


def test_unwritable_output(webhook, capsys, tmp_path):
    target = tmp_path / "missing-directory" / "out.jsonl"
    code, out, err = cli(capsys, "export", "crm.deal.list", "-o", str(target))
    line = assert_clean_failure(code, 1, out, err, token_of(webhook))
    assert f"cannot write {target}" in line


def test_bad_input_in_a_subprocess_prints_no_traceback(portal, tmp_path):
    wrong = portal.webhook.replace(token_of(portal.webhook), "wrongtoken42")
    env = {**os.environ, "BITRIX_WEBHOOK": wrong}
    for extra, status in ([], 1), (["--params", "{"], 2):
        done = subprocess.run(
            [sys.executable, "-m", "bitrix_threaded", "export", "crm.deal.list", *extra],
            env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
        assert_clean_failure(done.returncode, status, done.stdout, done.stderr,
                             "wrongtoken42")


# -- call --------------------------------------------------------------------------------

def test_call_prints_the_result(portal, webhook, capsys):
    deal_id = portal.ids("deal")[3]
    expected = requests.post(portal.webhook + "crm.deal.get", json={"id": deal_id},
                             timeout=10).json()["result"]
    code, out, err = cli(capsys, "call", "crm.deal.get", "--params", json.dumps({"id": deal_id}))
    assert code == 0, err
    assert json.loads(out) == expected


def test_call_raw_list_and_batch(portal, webhook, capsys):
    ids = portal.ids("deal")[:2]
    code, out, _ = cli(capsys, "call", "crm.deal.list", "--raw")
    assert code == 0
    envelope = json.loads(out)
    assert envelope["total"] == DEALS and "time" in envelope and len(envelope["result"]) == 50

    code, out, _ = cli(capsys, "call", "crm.deal.get",
                       "--params", json.dumps([{"id": i} for i in ids]))
    assert code == 0
    assert [deal["ID"] for deal in json.loads(out)] == [str(i) for i in ids]

    batch = {"cmd": {"first": f"crm.deal.get?id={ids[0]}", "count": "crm.deal.list?select[]=ID"}}
    code, out, _ = cli(capsys, "call", "batch", "--params", json.dumps(batch))
    assert code == 0
    replies = json.loads(out)
    assert replies["first"]["ID"] == str(ids[0]) and len(replies["count"]) == 50


def test_call_errors(portal, webhook, capsys):
    code, out, err = cli(capsys, "call", "crm.nothing.get")
    line = assert_clean_failure(code, 1, out, err, token_of(webhook))
    assert "ERROR_METHOD_NOT_FOUND" in line and "HTTP 404" in line
    code, out, err = cli(capsys, "call", "crm.deal.get", "--params", "{'id': 1}")
    assert_clean_failure(code, 2, out, err, token_of(webhook))
    code, out, err = cli(capsys, "call", "not a method!")
    assert_clean_failure(code, 2, out, err, token_of(webhook))


# -- export internals: sinks and Ctrl-C ---------------------------------------------------

def records_then(records, error: BaseException):
    """Yields ``records``, then raises ``error``, as a client's iterator may."""
    yield from records
    raise error


def test_export_interrupted_keeps_every_whole_record(tmp_path):
    target = tmp_path / "out.jsonl"
    records = [{"ID": str(i), "TITLE": "Сделка №%d" % i} for i in range(1, 1001)]
    sink = JsonLinesSink(Output(str(target)))
    outcome = export_records(records_then(records, KeyboardInterrupt()), sink)
    assert outcome.interrupted and outcome.error is None
    assert outcome.written == 1000
    assert read_jsonl(target) == records


def test_export_failing_midway_keeps_what_was_written(tmp_path):
    target = tmp_path / "out.jsonl"
    records = [{"ID": str(i)} for i in range(1, 121)]
    failure = InvalidCredentials("INVALID_CREDENTIALS", "Invalid request credentials",
                                 status=401, method="batch")
    outcome = export_records(records_then(records, failure), JsonLinesSink(Output(str(target))))
    assert outcome.error is failure and not outcome.interrupted
    assert read_jsonl(target) == records


def test_export_interrupted_before_the_header_still_writes_the_csv(tmp_path):
    target = tmp_path / "out.csv"
    records = [{"ID": str(i), "TAGS": ["a", i]} for i in range(1, 11)]
    sink = CsvSink(Output(str(target)))
    outcome = export_records(records_then(records, KeyboardInterrupt()), sink)
    assert outcome.interrupted and outcome.written == 10
    with open(target, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [{"ID": r["ID"], "TAGS": json.loads(r["TAGS"])} for r in rows] == records


def test_csv_fields_beyond_the_header_are_reported(monkeypatch):
    monkeypatch.setattr("bitrix_threaded.cli_output.CSV_HEADER_SAMPLE", 2)
    output = Output(None)
    buffer = io.StringIO()
    output._stream = buffer  # write to memory instead of stdout
    sink = CsvSink(output, ["NAME"])
    for record in ({"ID": 1}, {"ID": 2, "NAME": "x"}, {"ID": 3, "EXTRA": True}):
        sink.write(record)
    sink.close()
    assert buffer.getvalue().splitlines() == ["NAME,ID", ",1", "x,2", ",3"]
    assert "EXTRA" in sink.warnings()[0]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers live in the main thread")
def test_interrupt_shield_defers_ctrl_c_to_the_end_of_the_block():
    shield = InterruptShield()
    reached = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with shield.active():
            with pytest.raises(KeyboardInterrupt):
                with shield:
                    signal.raise_signal(signal.SIGINT)
                    reached.append("after the signal")
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)  # outside a block: at once
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert reached == ["after the signal"]


# -- real processes: serve, demo, Ctrl-C --------------------------------------------------

# A test run started in the background by a shell ignores SIGINT, and its children would
# inherit that; this runs ``python -m bitrix_threaded ARGS`` with Python's usual handler.
_WITH_SIGINT = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "runpy.run_module('bitrix_threaded', run_name='__main__', alter_sys=True)")


def cli_process(*argv: str, **kwargs: Any) -> subprocess.Popen:
    """``python -m bitrix_threaded *argv`` that Ctrl-C (SIGINT) reaches."""
    return subprocess.Popen([sys.executable, "-c", _WITH_SIGINT, *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", **kwargs)


def interrupt(process: subprocess.Popen):
    """Send Ctrl-C and wait; kill the process if it does not end in time."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


def test_version_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "bitrix_threaded", "--version"],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0
    assert done.stdout.strip() == f"bitrix-threaded {__version__}"


def test_serve_rejects_bad_values_in_its_own_words(capsys):
    code, out, err = cli(capsys, "serve", "--deals", "-5")
    assert "deals must be >= 0" in assert_clean_failure(code, 2, out, err)


def test_serve_prints_a_webhook_that_works(capsys, tmp_path):
    server = cli_process("serve", "--profile", "instant", "--deals", "120", "--seed", "7")
    try:
        webhook = None
        for line in server.stdout:
            if line.startswith("webhook:"):
                webhook = line.split(None, 1)[1].strip()
                break
        assert webhook, "serve printed no webhook"
        target = tmp_path / "served.jsonl"
        code, _, err = cli(capsys, "export", "crm.deal.list", "--webhook", webhook,
                           "-o", str(target))
        assert code == 0, err
        records = read_jsonl(target)
        assert len(records) == 120 == len({r["ID"] for r in records})
    finally:
        _, err = interrupt(server)
    assert server.returncode == 0, err


def test_output_closed_by_its_reader_is_a_quiet_end(portal):
    # Like any Unix filter: `| head -1` closing the pipe is a normal end, status 0.
    export = cli_process("export", "crm.deal.list",
                         env={**os.environ, "BITRIX_WEBHOOK": portal.webhook})
    first = json.loads(export.stdout.readline())
    export.stdout.close()  # as `| head -1` does; 300 deals overflow the pipe's buffer
    err = export.stderr.read()
    export.wait(timeout=SUBPROCESS_TIMEOUT)
    assert first["ID"]
    assert export.returncode == 0, err
    assert err == ""


def test_call_output_closed_by_its_reader_is_a_quiet_end(portal):
    items = json.dumps([{"ID": i} for i in portal.ids("deal")[:150]])
    call = cli_process("call", "crm.deal.get", "--params", items,
                       env={**os.environ, "BITRIX_WEBHOOK": portal.webhook})
    assert call.stdout.readline().strip() == "["
    call.stdout.close()
    err = call.stderr.read()
    call.wait(timeout=SUBPROCESS_TIMEOUT)
    assert call.returncode == 0, err
    assert err == ""


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None,
                    reason="needs a POSIX shell with head")
def test_export_piped_into_head_exits_zero_quietly(portal):
    script = (f'"{sys.executable}" -m bitrix_threaded export crm.deal.list | head -2; '
              'echo "status ${PIPESTATUS[0]}" >&2')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT,
                          env={**os.environ, "BITRIX_WEBHOOK": portal.webhook})
    assert len(done.stdout.splitlines()) == 2
    assert done.stderr.strip() == "status 0"


def test_interrupted_before_the_first_record_says_nothing_was_written(
        webhook, capsys, tmp_path, monkeypatch):
    target = tmp_path / "deals.jsonl"

    def interrupted(self, *args, **kwargs):
        def records():
            raise KeyboardInterrupt
            yield  # a generator, as iter_all returns
        return records()

    monkeypatch.setattr(Bitrix, "iter_all", interrupted)
    code, out, err = cli(capsys, "export", "crm.deal.list", "-o", str(target))
    assert code == 130
    assert not target.exists()
    assert err.strip() == (f"bitrix-threaded: interrupted before the first record: nothing "
                           f"was written ({target} was not touched)")
    code, out, err = cli(capsys, "export", "crm.deal.list")
    assert code == 130 and out == ""
    assert err.strip() == "bitrix-threaded: interrupted before the first record: nothing " \
                          "was written"


def test_call_to_an_unreachable_portal(capsys):
    url = f"http://127.0.0.1:{closed_port()}/rest/1/s3cr3tvalue/"
    code, out, err = cli(capsys, "call", "crm.deal.get", "--params", '{"ID": 1}',
                         "--webhook", url, "--retries", "0")
    line = assert_clean_failure(code, 1, out, err, "s3cr3tvalue")
    assert "cannot reach the portal" in line


def test_commands_other_than_serve_and_demo_never_import_the_fake_portal():
    probe = ("import sys\n"
             "from bitrix_threaded.cli import build_parser, main\n"
             "assert main(['--version']) == 0\n"
             "build_parser().parse_known_args(['export', 'crm.deal.list'])\n"
             "main(['export', 'crm.deal.list', '--webhook', 'not a url'])\n"
             "loaded = [m for m in sys.modules if m.startswith('bitrix_threaded.testing')]\n"
             "print('loaded:' + ','.join(loaded))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "loaded:"


def test_serve_help_describes_every_option(capsys):
    code, out, _ = cli(capsys, "serve", "--help")
    assert code == 0
    assert out.startswith("usage: bitrix-threaded serve")
    from bitrix_threaded.testing.__main__ import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    for action in serve._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in out


def test_serve_defaults_and_banner():
    from bitrix_threaded.testing.__main__ import banner, build_parser, portal_arguments

    options = build_parser().parse_args(["serve"])
    with FakePortal(**{**portal_arguments(options), "profile": "instant",
                       "limits": True}) as served:
        lines = banner(served)
        webhook = served.webhook
    text = "\n".join(lines)
    assert lines[1] == f"webhook: {webhook}"
    assert ("10,000 deals, 2,000 leads, 5,000 contacts, 1,000 companies, 5,000 tasks, "
            "50 users") in text
    assert "50 requests at once, then 2/s" in text
    assert "480 s of operating time per method per 600 s" in text


def test_demo_runs_as_documented():
    done = subprocess.run([sys.executable, "-m", "bitrix_threaded", "demo", "--deals", "2000"],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Exported 2,000 deals" in done.stdout
    assert "rejected: 0 (503 QUERY_LIMIT_EXCEEDED: 0, 429 OPERATION_TIME_LIMIT: 0)" in done.stdout
    assert "Check passed" in done.stdout


def test_demo_keeps_its_output_when_asked(capsys, tmp_path):
    target = tmp_path / "demo.csv"
    code, out, err = cli(capsys, "demo", "--deals", "300", "--time-scale", "0.05",
                         "-o", str(target))
    assert code == 0, err
    assert "Check passed" in out
    with open(target, encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 300


def test_ctrl_c_leaves_a_valid_jsonl_prefix(tmp_path):
    target = tmp_path / "deals.jsonl"
    with FakePortal(deals=20_000, profile="realistic", time_scale=0.25) as slow:
        export = cli_process("export", "crm.deal.list", "-o", str(target),
                             env={**os.environ, "BITRIX_WEBHOOK": slow.webhook})
        try:
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT
            while not (target.exists() and target.stat().st_size > 0):
                assert export.poll() is None, export.communicate()
                assert time.monotonic() < deadline, "no record arrived"
                time.sleep(0.02)
        except BaseException:
            if export.poll() is None:
                export.kill()
                export.communicate()
            raise
        out, err = interrupt(export)
        expected = {str(i) for i in slow.ids("deal")}
        token = token_of(slow.webhook)
    assert export.returncode == 130, err
    assert "Traceback" not in err and out == ""
    assert token not in err
    records = read_jsonl(target)
    ids = [record["ID"] for record in records]
    assert 0 < len(ids) < len(expected)
    assert len(set(ids)) == len(ids) and set(ids) <= expected
    assert err.strip().splitlines()[-1] == (
        f"bitrix-threaded: interrupted: {len(records):,} records written to {target}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_export_stops_within_two_seconds_and_keeps_a_valid_file(tmp_path, signum):
    target = tmp_path / "deals.jsonl"
    with FakePortal(deals=20_000, profile="realistic", time_scale=0.25) as slow:
        export = cli_process("export", "crm.deal.list", "-o", str(target),
                             env={**os.environ, "BITRIX_WEBHOOK": slow.webhook})
        try:
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT
            while not (target.exists() and target.stat().st_size > 0):
                assert export.poll() is None, export.communicate()
                assert time.monotonic() < deadline, "no record arrived"
                time.sleep(0.02)
            sent = time.monotonic()
            export.send_signal(signum)
            out, err = export.communicate(timeout=SUBPROCESS_TIMEOUT)
            stop_seconds = time.monotonic() - sent
            requests = slow.stats()["requests"]
            time.sleep(0.3)
            assert slow.stats()["requests"] == requests  # nothing after the process ended
        finally:
            if export.poll() is None:
                export.kill()
                export.communicate()
    assert export.returncode == 130, err
    assert stop_seconds < 2.0
    records = read_jsonl(target)
    assert records and len({r["ID"] for r in records}) == len(records)
