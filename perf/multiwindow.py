"""The multi-window export: an ID-range export that needs several windows' operating budget.

Realistic profile, 50,000 deals, an operating budget of 20 s per 10-minute window
(so the export spends several windows), the client given the portal's exact limit and
window. Prints, per run, the 429 rejections, the 503s, the requests and the wall time
(real seconds, and unscaled: wall / time scale). The promise is 0 rejections.

    python perf/multiwindow.py --time-scale 0.1 --runs 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from bitrix_threaded import Bitrix
from bitrix_threaded.testing import FakePortal

LIMIT = 20.0
WINDOW = 600.0


def run(time_scale: float, deals: int, seed: int) -> dict:
    with FakePortal(deals=deals, profile="realistic", time_scale=time_scale,
                    operating_limit=LIMIT, operating_window=WINDOW, seed=seed) as portal:
        bx = Bitrix(portal.webhook, verbose=False, requests_per_second=2.0 / time_scale,
                    request_pool_size=50, operating_time_limit=LIMIT * time_scale,
                    operating_window=WINDOW * time_scale)
        with bx:
            t0 = time.monotonic()
            records = bx.get_all("crm.deal.list", {"select": ["ID"]}, strategy="id_ranges")
            wall = time.monotonic() - t0
        stats = portal.stats()
        ids = {int(r["ID"]) for r in records}
        return {"time_scale": time_scale, "seed": seed, "rejected_429": stats["rejected_429"],
                "rejected_503": stats["rejected_503"], "requests": stats["requests"],
                "wall": round(wall, 2), "unscaled": round(wall / time_scale, 1),
                "exact": ids == set(portal.ids("deal")) and len(records) == deals,
                "operating_total": round(stats["operating_total"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, action="append")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deals", type=int, default=50_000)
    parser.add_argument("--first-seed", type=int, default=1)
    options = parser.parse_args()
    for scale in options.time_scale or [0.1, 0.02]:
        seeds = range(options.first_seed, options.first_seed + options.runs)
        results = [run(scale, options.deals, seed) for seed in seeds]
        for result in results:
            print(json.dumps(result), flush=True)
        print(json.dumps({"time_scale": scale,
                          "429": [r["rejected_429"] for r in results],
                          "median_wall": statistics.median(r["wall"] for r in results),
                          "median_unscaled": statistics.median(r["unscaled"] for r in results)}),
              flush=True)


if __name__ == "__main__":
    main()
