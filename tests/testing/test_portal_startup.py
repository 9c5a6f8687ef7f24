"""The three ways to start the fake portal: Python, pytest fixtures, shell."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import requests

from bitrix_threaded.testing import FakePortal
from bitrix_threaded.testing.__main__ import build_parser, main, portal_arguments


def test_context_manager_and_addresses():
    with FakePortal(deals=10) as portal:
        assert portal.running
        assert portal.url == f"http://127.0.0.1:{portal.port}"
        assert portal.webhook.startswith(portal.url + "/rest/1/")
        assert portal.webhook.endswith("/") and len(portal.webhook.split("/")[-2]) == 16
        assert portal.endpoint == portal.url + "/rest/"
        assert requests.get(portal.webhook + "crm.deal.list").json()["total"] == 10
        assert portal.webhook not in repr(portal)
    assert not portal.running


def test_start_returns_the_portal_and_stop_frees_it():
    portal = FakePortal(leads=3).start()
    try:
        assert requests.get(portal.webhook + "crm.lead.list").json()["total"] == 3
    finally:
        portal.stop()


def test_fixtures_from_the_registered_pytest_plugin(fake_portal, fake_portal_factory):
    assert fake_portal.running
    assert [fake_portal.count(e) for e in ("deal", "lead", "contact", "task", "user")] == [
        120, 60, 30, 80, 10]
    assert fake_portal.profile.name == "instant"
    other = fake_portal_factory(deals=7, profile="light", limits=False)
    assert other.running and other.count("deal") == 7 and other.profile.name == "light"


def test_factory_stops_its_portals_at_teardown(tmp_path):
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent("""
        made = []

        def test_make(fake_portal_factory, fake_portal):
            made.append(fake_portal_factory(deals=2))
            made.append(fake_portal)
            assert all(portal.running for portal in made)

        def test_stopped():
            assert made and not any(portal.running for portal in made)
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT delivery")
def test_shell_serve_prints_urls_and_exits_cleanly_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "bitrix_threaded.testing", "serve", "--deals", "25",
         "--profile", "instant", "--seed", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("stats:") for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line.strip())
        webhook = next(line.split()[1] for line in lines if line.startswith("webhook:"))
        stats_url = next(line.split()[1] for line in lines if line.startswith("stats:"))
        assert requests.get(webhook + "crm.deal.list", timeout=5).json()["total"] == 25
        assert requests.get(stats_url, timeout=5).json()["requests"] == 1
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_shell_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--deals", "-5"])
    assert exit_info.value.code == 2
    assert "deals must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--profile", "turbo"])
    with pytest.raises(SystemExit):
        main([])


def test_shell_options_map_to_portal_arguments():
    options = build_parser().parse_args([
        "serve", "--deals", "3", "--leads", "2", "--contacts", "1", "--tasks", "4",
        "--users", "5", "--seed", "9", "--port", "0", "--profile", "light",
        "--time-scale", "0.25", "--enterprise", "--bucket-capacity", "99",
        "--bucket-rate", "3", "--operating-limit", "100", "--fault-rate", "0.1",
        "--fault-kinds", "error,stall", "--stall-seconds", "2", "--mutation-rate", "0.5"])
    arguments = portal_arguments(options)
    assert arguments["fault_kinds"] == ("error", "stall")
    portal = FakePortal(**arguments)
    assert portal.engine.bucket.capacity == 99
    assert portal.engine.bucket.rate == pytest.approx(3 / 0.25)
    assert portal.engine.settings.operating_limit == pytest.approx(25)
    assert portal.profile.name == "light" and portal.mutation_rate == 0.5
    assert portal.count("task") == 4 and portal.count("user") == 5
    defaults = portal_arguments(build_parser().parse_args(["serve", "--enterprise"]))
    enterprise = FakePortal(**defaults)  # realistic by default: standard limits on
    assert (enterprise.engine.bucket.capacity, enterprise.engine.bucket.rate) == (250, 5)
