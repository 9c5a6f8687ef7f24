"""Throughput of the fake portal itself, in the ``instant`` profile (no sleeps, no limits).

The portal runs in its own process (``python -m bitrix_threaded.testing
serve``), as it would for a benchmark; client threads load it from this
process over keep-alive ``http.client`` connections (lighter than
``requests``, so the client steals less CPU from the server). Two figures:

- small requests/s: ``crm.deal.get`` of one record;
- records/s in full batch responses: batches of 50 ``crm.deal.list``
  commands of 50 records each (2,500 records with all fields per reply),
  counted by the server's own counters.

The clients share the machine with the server, so the wall-clock rates are
lower bounds; the server's CPU time is read from /proc to also give rates
per CPU-second of the portal process, which do not depend on the load.
Run: ``python perf/portal_throughput.py [--seconds 3] [--threads 4] [--deals 50000]``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Tuple
from urllib.parse import urlsplit

import requests


class Connection:
    """One keep-alive connection posting JSON to the webhook."""

    def __init__(self, webhook: str) -> None:
        parts = urlsplit(webhook)
        self.path = parts.path
        self.http = http.client.HTTPConnection(parts.hostname, parts.port)

    def post(self, method: str, params: Dict[str, Any]) -> bytes:
        self.http.request("POST", self.path + method, body=json.dumps(params),
                          headers={"Content-Type": "application/json"})
        reply = self.http.getresponse()
        body = reply.read()
        assert reply.status == 200, body[:200]
        return body


def start_portal(deals: int) -> Tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bitrix_threaded.testing", "serve", "--profile", "instant",
         "--deals", str(deals)],
        stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("webhook:"):
            return process, line.split()[1]
    raise RuntimeError("the portal did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(threads: int, seconds: float,
            make_work: Callable[[int], Callable[[], None]]) -> Tuple[int, float]:
    """Run ``make_work(i)()`` in a loop on ``threads`` threads; return (calls, elapsed)."""
    stop = threading.Event()
    calls: List[int] = [0] * threads

    def worker(index: int) -> None:
        work = make_work(index)
        while not stop.is_set():
            work()
            calls[index] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(calls), time.perf_counter() - started


def small_requests(webhook: str, ids: List[int], threads: int, seconds: float) -> float:
    def make_work(index: int) -> Callable[[], None]:
        connection = Connection(webhook)
        counter = [index]

        def work() -> None:
            counter[0] += 1
            connection.post("crm.deal.get", {"id": ids[counter[0] % len(ids)]})
        return work

    calls, elapsed = measure(threads, seconds, make_work)
    return calls / elapsed


def full_batches(webhook: str, ids: List[int], threads: int, seconds: float) -> Tuple[int, float]:
    # Independent pages: each command starts after a known ID boundary.
    boundaries = [0] + ids[49::50]
    pages = len(boundaries) - 1
    batches = [
        {f"c{k}": "crm.deal.list?order[ID]=ASC&start=-1"
                  f"&filter[>ID]={boundaries[(first + k) % pages]}" for k in range(50)}
        for first in range(0, pages, 50)
    ]

    def make_work(index: int) -> Callable[[], None]:
        connection = Connection(webhook)
        counter = [index]

        def work() -> None:
            counter[0] += 1
            connection.post("batch", {"halt": 0, "cmd": batches[counter[0] % len(batches)]})
        return work

    return measure(threads, seconds, make_work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--deals", type=int, default=50_000)
    options = parser.parse_args()
    process, webhook = start_portal(options.deals)
    control = webhook.split("/rest/")[0] + "/_portal/"
    try:
        ids = requests.get(control + "ids/deal").json()["ids"]
        cpu = cpu_seconds(process.pid)
        rate = small_requests(webhook, ids, options.threads, options.seconds)
        cpu, spent = cpu_seconds(process.pid), cpu_seconds(process.pid) - cpu
        served = requests.get(control + "stats").json()["requests"] - 1
        print(f"small requests: {rate:10,.0f} requests/s ({options.threads} client threads); "
              f"server CPU: {served / spent:,.0f} requests per CPU-second")
        requests.post(control + "reset_stats")
        batches, elapsed = full_batches(webhook, ids, options.threads, options.seconds)
        spent = cpu_seconds(process.pid) - cpu
        stats = requests.get(control + "stats").json()
        records = stats["records"]
        print(f"full batches:   {records / elapsed:10,.0f} records/s  "
              f"({batches / elapsed:.1f} batches/s, {records / max(batches, 1):.0f} records "
              f"each); server CPU: {records / spent:,.0f} records per CPU-second")
        print(f"server: peak concurrency {stats['peak_concurrency']}, "
              f"internal errors {stats['internal_errors']}")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
