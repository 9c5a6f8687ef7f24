"""How responsive the event loop stays while AsyncBitrix runs a large get_all.

    python perf/async_lag.py             # 100,000 deals, light and instant, 3 runs
    python perf/async_lag.py --profiles instant --runs 5 --deals 50000

A ticker coroutine asks to wake every ``--tick`` seconds; its lag is how late each
wake-up comes. The worst lag over the whole ``get_all`` is the figure (target: under
50 ms), with the median and the 99th percentile beside it. The portal runs in its own
process (as in bench.py), so only the client shares the interpreter with the loop.

Beside it, two references. "sync thread": the sync client's get_all in a plain
thread of this process (what ``asyncio.to_thread`` does): the same engine sharing the
interpreter, without the facade. "control": the same export by the sync client in a
separate process while the ticker runs here. That work shares the CPUs but not the
interpreter, so its lag is what the machine's load alone costs; the difference to the
AsyncBitrix figure is the lag that sharing the interpreter (the GIL) adds.

Profiles: ``light`` with the standard limits at ``--time-scale`` (the real pace of an
export), and ``instant`` with limits off (pages as fast as the client takes them: the
most client work per second, so the hardest case for the loop). Figures are noisy on a
shared machine; read the medians over runs.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import PortalProcess, library_env  # noqa: E402,F401


_SYNC_EXPORT = """
import sys
from bitrix_threaded import Bitrix
webhook, options = sys.argv[1], eval(sys.argv[2])
with Bitrix(webhook, verbose=False, **options) as bx:
    print(len(bx.get_all("crm.deal.list", {"select": ["*", "UF_*"]})))
"""


def _options(profile: str, scale: float) -> Dict[str, float]:
    if profile == "instant":
        return dict(requests_per_second=1000.0, request_pool_size=1000)
    return dict(requests_per_second=2.0 / scale, request_pool_size=50,
                operating_time_limit=480.0 * scale)


def _summary(lags: List[float], records: int, wall: float) -> Dict[str, float]:
    ordered = sorted(lags)
    return {"records": records, "wall": wall, "ticks": len(lags),
            "worst_ms": 1000 * ordered[-1], "median_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


async def _control(webhook: str, profile: str, scale: float, tick: float) -> Dict[str, float]:
    """The ticker's lag while the sync client exports in another process."""
    lags: List[float] = []
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _SYNC_EXPORT, webhook,
                             repr(_options(profile, scale))],
                            stdout=subprocess.PIPE, text=True, env=env)
    while proc.poll() is None:
        due = time.perf_counter() + tick
        await asyncio.sleep(tick)
        lags.append(max(0.0, time.perf_counter() - due))
    out = proc.stdout.read() if proc.stdout else ""
    return _summary(lags, int(out.strip() or 0), time.perf_counter() - started)


async def _measure(webhook: str, profile: str, scale: float, tick: float, *,
                   in_thread: bool = False) -> Dict[str, float]:
    """The ticker's lag during ``AsyncBitrix.get_all`` (``in_thread``: during the sync
    client's ``get_all`` in a plain thread of this process, as ``asyncio.to_thread``)."""
    from bitrix_threaded import AsyncBitrix, Bitrix

    options = _options(profile, scale)
    lags: List[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            due = time.perf_counter() + tick
            await asyncio.sleep(tick)
            lags.append(max(0.0, time.perf_counter() - due))

    async with AsyncBitrix.from_client(Bitrix(webhook, verbose=False, **options)) as abx:
        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(tick * 2)
        lags.clear()
        started = time.perf_counter()
        select = {"select": ["*", "UF_*"]}
        if in_thread:
            done: "concurrent.futures.Future[List[Any]]" = concurrent.futures.Future()
            threading.Thread(target=lambda: done.set_result(
                abx.sync.get_all("crm.deal.list", select))).start()
            records = await asyncio.wrap_future(done)
        else:
            records = await abx.get_all("crm.deal.list", select)
        wall = time.perf_counter() - started
        stop.set()
        await ticking
    abx.sync.close()
    return _summary(lags, len(records), wall)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--profiles", default="light,instant")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--tick", type=float, default=0.005, help="ticker period, seconds")
    options = parser.parse_args(argv)
    for profile in [p.strip() for p in options.profiles.split(",") if p.strip()]:
        scale = options.time_scale if profile != "instant" else 1.0
        kinds = (("AsyncBitrix", _measure),
                 ("sync thread", functools.partial(_measure, in_thread=True)),
                 ("control", _control))
        rows: Dict[str, List[Dict[str, float]]] = {kind: [] for kind, _ in kinds}
        for _ in range(options.runs):  # round-robin, so drift in the load hits all alike
            for kind, measure in kinds:
                portal = PortalProcess(options.deals, profile, scale, enterprise=False,
                                       limits=None if profile != "instant" else False)
                try:
                    row = asyncio.run(measure(portal.webhook, profile, scale, options.tick))
                finally:
                    portal.stop()
                rows[kind].append(row)
                print(f"{profile:8} {kind:11} {row['records']:,} records in "
                      f"{row['wall']:.1f} s; loop lag worst {row['worst_ms']:.1f} ms, "
                      f"p99 {row['p99_ms']:.1f} ms, median {row['median_ms']:.2f} ms "
                      f"over {row['ticks']} ticks", flush=True)
        for kind, done in rows.items():
            worst = statistics.median(r["worst_ms"] for r in done)
            p99 = statistics.median(r["p99_ms"] for r in done)
            verdict = "" if kind != "AsyncBitrix" else (
                " (target < 50 ms: " + ("met" if worst < 50 else "MISSED") + ")")
            print(f"{profile:8} {kind:11} median of {len(done)} runs: worst lag "
                  f"{worst:.1f} ms, p99 {p99:.1f} ms{verdict}", flush=True)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
