"""Load of one export, ID ranges vs offset pages, on the family test server (127.0.0.1).

    python perf/families_load.py [--layout clustered|even|both] [--runs 3]

Prints requests and commands (batched calls) per strategy for 6,000 ``tasks.task.list``
records: ``clustered`` is IDs 1-3,040 dense, then 2,960 spread over 1,000,000-1,120,000;
``even`` is IDs 1-6,000. Counts are exact (no timing); several runs show the spread that
the thread pool's completion order brings.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from bitrix_threaded import Bitrix  # noqa: E402
from family_portal import FamilyPortal  # noqa: E402

LAYOUTS = {
    "clustered": lambda: list(range(1, 3041))
    + [1_000_000 + i * 120_000 // 2960 for i in range(2960)],
    "even": lambda: list(range(1, 6001)),
}


def measure(portal: FamilyPortal, strategy: str) -> tuple:
    with Bitrix(portal.webhook, verbose=False, requests_per_second=10_000.0,
                request_pool_size=10_000) as bx:
        portal.reset_counters()
        got = bx.get_all("tasks.task.list", strategy=strategy)
    return len(got), portal.requests, sum(portal.commands.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    portal = FamilyPortal().start()
    try:
        for layout in LAYOUTS if args.layout == "both" else [args.layout]:
            portal.load("tasks.task.list", LAYOUTS[layout]())
            for strategy in ("id_ranges", "offset"):
                rows = [measure(portal, strategy) for _ in range(args.runs)]
                records = {r[0] for r in rows}
                requests = sorted(r[1] for r in rows)
                commands = sorted(r[2] for r in rows)
                print(f"{layout:9} {strategy:9} records={sorted(records)} "
                      f"requests={requests} commands={commands}")
    finally:
        portal.stop()


if __name__ == "__main__":
    main()
