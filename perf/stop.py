"""Stop figures: how fast a call stops after close() from another thread or Ctrl-C.

Standard limits on the fake portal (realistic profile, real time by default). For each
call: start it, let it run ``--after`` seconds, stop it; report the seconds until the
calling thread got its exception, how long close() took (it waits for the requests on
the wire: with deep offset pages one batch runs for many seconds), the requests the
portal saw after the stop began and after close() returned, and the worker threads left.

    python perf/stop.py
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time

from bitrix_threaded import Bitrix
from bitrix_threaded.testing import FakePortal


def workers() -> int:
    return sum(1 for t in threading.enumerate()
               if t.name.startswith("bitrix_threaded") and not t.daemon)


CALLS = {
    "get_by_ID": lambda bx, ids, items: bx.get_by_ID("crm.deal.get", ids),
    "call(list)": lambda bx, ids, items: bx.call("crm.deal.get", [{"ID": i} for i in ids]),
    "get_all": lambda bx, ids, items: bx.get_all("crm.deal.list"),
    "get_all(offset)": lambda bx, ids, items: bx.get_all("crm.deal.list", strategy="offset"),
    "call(add)": lambda bx, ids, items: bx.call("crm.deal.add", items),
}


#: ID ranges fetch 20,000 deals in about 1.5 s: stop that call sooner.
SOONER = {"get_all": 0.2}


def by_close(name: str, scale: float, after: float) -> dict:
    after = SOONER.get(name, after)
    with FakePortal(deals=20_000, profile="realistic", time_scale=scale) as portal:
        bx = Bitrix(portal.webhook, verbose=False, requests_per_second=2.0 / scale,
                    operating_time_limit=480 * scale)
        ids = portal.ids("deal")[:10_000]
        items = [{"fields": {"TITLE": f"d{i}"}} for i in range(5000)]
        box = {}

        def run():
            try:
                CALLS[name](bx, ids, items)
            except BaseException as exc:  # reported
                box["error"] = exc
            box["ended"] = time.monotonic()

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(after)
        at_stop = portal.stats()["requests"]
        stopped = time.monotonic()
        bx.close()
        closed = portal.stats()["requests"]
        thread.join()
        time.sleep(0.5)
        return {"call": name, "stop": "close()",
                "seconds_to_stop": round(box["ended"] - stopped, 2),
                "close_seconds": round(time.monotonic() - stopped - 0.5, 2),
                "requests_during_stop": closed - at_stop,
                "requests_after_close": portal.stats()["requests"] - closed,
                "threads_left": workers(), "error": type(box.get("error")).__name__}


def by_ctrl_c(name: str, scale: float, after: float) -> dict:
    after = SOONER.get(name, after)
    with FakePortal(deals=20_000, profile="realistic", time_scale=scale) as portal:
        bx = Bitrix(portal.webhook, verbose=False, requests_per_second=2.0 / scale,
                    operating_time_limit=480 * scale)
        ids = portal.ids("deal")[:10_000]
        items = [{"fields": {"TITLE": f"d{i}"}} for i in range(5000)]
        before_deals = portal.count("deal")
        state = {}

        def fire():
            state["fired"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(after, fire)
        timer.start()
        try:
            CALLS[name](bx, ids, items)
        except KeyboardInterrupt as exc:
            state["stopped"] = time.monotonic()
            state["cause"] = exc.__cause__
        at_stop = portal.stats()["requests"]
        deals_at_stop = portal.count("deal")
        time.sleep(1.0)
        later = portal.stats()["requests"]
        bx.close()
        result = {"call": name, "stop": "Ctrl-C",
                  "seconds_to_stop": round(state["stopped"] - state["fired"], 2),
                  "requests_after_interrupt": later - at_stop, "threads_left": workers()}
        if name == "call(add)":
            cause = state.get("cause")
            result["deals_created_after_interrupt"] = portal.count("deal") - deals_at_stop
            result["reported"] = None if cause is None else {
                "done": len(cause.results), "not_executed": len(cause.not_executed),
                "ambiguous": len(cause.ambiguous),
                "created": deals_at_stop - before_deals}
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--after", type=float, default=1.5)
    options = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in CALLS:
        print(json.dumps(by_close(name, options.time_scale, options.after)), flush=True)
    for name in CALLS:
        print(json.dumps(by_ctrl_c(name, options.time_scale, options.after)), flush=True)


if __name__ == "__main__":
    main()
