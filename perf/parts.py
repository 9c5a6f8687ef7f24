"""Where the client's CPU goes inside one export: thread CPU time of each part.

    python perf/parts.py [--runs 3] [--deals 100000] [--profile light] [--no-limits]
                         [--root PATH ...]

Each run starts a fresh portal and a fresh client process (as perf/bench.py does), and
times the parts of one ``get_all`` with ``time.thread_time()`` around the library's own
functions (so every thread's share is counted, and waiting is not): decoding, reading
the bodies, the ``requests`` layer, the batches' bookkeeping, the strategy's reading of
the pages, ordering the records, and the garbage collector (from ``gc.callbacks``; it
runs inside whatever allocated, mostly decoding, so it is part of those figures too).
Several ``--root`` directories (each holding a ``bitrix_threaded`` package, e.g. one
extracted with ``git archive``) are run in turn, A B A B, for a before/after table.
The wrappers cost about a microsecond per call; the figures are for comparing parts
and versions on one machine, not for the tables in README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: (label, module, attribute) of each timed part; ``Class.method`` for methods, and
#: ``a|b`` for a part named ``b`` in older versions.
PARTS = [
    ("export (main thread)", None, None),
    ("decoding replies", "bitrix_threaded.jsoncodec", "_DECODE"),
    ("reading bodies", "bitrix_threaded.transport", "Transport._read_body"),
    ("requests layer (send, headers)", "requests", "Session.request"),
    ("a request, all of it", "bitrix_threaded.transport", "Transport.post"),
    ("a batch, all of it", "bitrix_threaded.runner", "Runner.run_batch"),
    ("booking reported times", "bitrix_threaded.runner", "Runner._record"),
    ("reading pages (strategy)", "bitrix_threaded.pagination", "IdRanges.consume"),
    ("  checking a page's IDs", "bitrix_threaded.pagination",
     "_ascending_span|_ascending_ids"),
    ("ordering the records", "bitrix_threaded.client", "_Collected.in_order"),
    ("garbage collector", None, None),
]


def child(spec: Dict[str, Any]) -> None:
    """In the client process: wrap the parts, run the export, print one JSON line."""
    import gc
    import importlib
    import threading
    import time

    totals: Dict[str, float] = {}
    lock = threading.Lock()

    def wrap(label: str, owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with lock:
                    totals[label] = totals.get(label, 0.0) + spent

        setattr(owner, name, timed)

    for label, module_name, attribute in PARTS:
        if module_name is None or attribute is None:
            continue
        for choice in attribute.split("|"):
            owner: Any = importlib.import_module(module_name)
            *path, name = choice.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            if owner is not None and hasattr(owner, name):  # versions differ
                wrap(label, owner, name)
                break

    collecting: List[float] = [0.0, 0.0]

    def on_gc(phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            collecting[1] = time.thread_time()
        else:
            collecting[0] += time.thread_time() - collecting[1]

    from bitrix_threaded import Bitrix

    options: Dict[str, Any] = {"verbose": False}
    if not spec["limits"]:
        options.update(requests_per_second=1000.0, request_pool_size=1000,
                       operating_time_limit=1e9)
    with Bitrix(spec["webhook"], **options) as client:
        gc.callbacks.append(on_gc)
        cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        records = client.get_all("crm.deal.list", {"select": ["*", "UF_*"]})
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        totals["export (main thread)"] = time.thread_time() - main0
        gc.callbacks.remove(on_gc)
    totals["garbage collector"] = collecting[0]
    print(json.dumps({"cpu": cpu, "wall": wall, "records": len(records), "parts": totals}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--profile", default="light")
    parser.add_argument("--no-limits", action="store_true",
                        help="limits off on both sides (scenario 6's setting)")
    parser.add_argument("--root", action="append", default=None,
                        help="a directory holding the bitrix_threaded to time "
                             "(repeat for A/B; default: this work tree)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(json.loads(options.child))
        return 0
    sys.path.insert(0, str(HERE))
    import bench

    roots = options.root or [str(ROOT)]
    results: Dict[str, List[Dict[str, Any]]] = {root: [] for root in roots}
    for turn in range(options.runs):
        for root in roots:
            portal = bench.PortalProcess(options.deals, options.profile, 1.0, enterprise=False,
                                         limits=False if options.no_limits else None)
            try:
                spec = {"webhook": portal.webhook, "limits": not options.no_limits}
                env = dict(os.environ, PYTHONPATH=root)
                done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                      capture_output=True, text=True, env=env, timeout=600,
                                      cwd=str(HERE))
            finally:
                portal.stop()
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode or not lines:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            run = json.loads(lines[-1])
            results[root].append(run)
            print(f"run {turn + 1} {root}: {run['cpu']:.3f} s CPU, {run['wall']:.3f} s wall, "
                  f"{run['records']:,} records", flush=True)
    print()
    header = "| part | " + " | ".join(Path(r).name or r for r in roots) + " |"
    print(header)
    print("|---" * (len(roots) + 1) + "|")
    print("| process CPU (median) | " + " | ".join(
        f"{statistics.median(r['cpu'] for r in results[root]) * 1000:.0f} ms"
        for root in roots) + " |")
    for label, _, _ in PARTS:
        cells = []
        for root in roots:
            values = [r["parts"][label] for r in results[root] if label in r["parts"]]
            cells.append(f"{statistics.median(values) * 1000:.0f} ms" if values else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
