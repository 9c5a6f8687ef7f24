"""How responsive the event loop stays while AsyncBitrix runs a large get_all.

    python perf/async_lag.py                      # 100,000 deals, light and instant, 3 runs
    python perf/async_lag.py --profiles instant --runs 5 --deals 50000

A ticker coroutine asks to wake every ``--tick`` seconds; its lag is how late each
wake-up comes. The worst lag over the whole ``get_all`` is the figure (target: under
50 ms), with the median and the 99th percentile beside it. The portal runs in its own
process (as in bench.py), so only the client shares the interpreter with the loop.

Profiles: ``light`` with the standard limits at ``--time-scale`` (the real pace of an
export), and ``instant`` with limits off (pages as fast as the client takes them: the
most client work per second, so the hardest case for the loop). Figures are noisy on a
shared machine; read the medians over runs.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import PortalProcess, library_env  # noqa: E402,F401


async def _measure(webhook: str, profile: str, scale: float, tick: float) -> Dict[str, float]:
    from bitrix_threaded import AsyncBitrix

    if profile == "instant":
        options = dict(requests_per_second=1000.0, request_pool_size=1000)
    else:
        options = dict(requests_per_second=2.0 / scale, request_pool_size=50,
                       operating_time_limit=480.0 * scale)
    lags: List[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            due = time.perf_counter() + tick
            await asyncio.sleep(tick)
            lags.append(max(0.0, time.perf_counter() - due))

    async with AsyncBitrix(webhook, verbose=False, **options) as abx:
        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(tick * 2)
        lags.clear()
        started = time.perf_counter()
        records = await abx.get_all("crm.deal.list", {"select": ["*", "UF_*"]})
        wall = time.perf_counter() - started
        stop.set()
        await ticking
    ordered = sorted(lags)
    return {"records": len(records), "wall": wall, "ticks": len(lags),
            "worst_ms": 1000 * ordered[-1], "median_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


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
        rows = []
        for _ in range(options.runs):
            portal = PortalProcess(options.deals, profile, scale, enterprise=False,
                                   limits=None if profile != "instant" else False)
            try:
                row = asyncio.run(_measure(portal.webhook, profile, scale, options.tick))
            finally:
                portal.stop()
            rows.append(row)
            print(f"{profile:8} {row['records']:,} records in {row['wall']:.1f} s; "
                  f"loop lag worst {row['worst_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
                  f"median {row['median_ms']:.2f} ms over {row['ticks']} ticks", flush=True)
        worst = statistics.median(r["worst_ms"] for r in rows)
        verdict = "met" if worst < 50 else "MISSED"
        print(f"{profile:8} median of {len(rows)} runs: worst lag {worst:.1f} ms "
              f"(target < 50 ms: {verdict})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
