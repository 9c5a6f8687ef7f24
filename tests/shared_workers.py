"""Work done by each spawned process of the shared-limits tests and benchmark.

Top-level functions only (spawned processes import this module by name). Each
process builds one ``Bitrix``, waits at the barrier so that all start together,
does its job and puts a plain dict on the queue.
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any, Dict, List, Optional


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _client(settings: Dict[str, Any], on_refresh: Any = None) -> Any:
    from bitrix_threaded import Bitrix

    common = dict(verbose=False, requests_per_second=settings["rate"],
                  request_pool_size=settings.get("capacity", 50),
                  shared_limits=settings.get("redis") or False)
    if "oauth" in settings:
        oauth = settings["oauth"]
        return Bitrix(oauth["endpoint"], client_id=oauth["client_id"],
                      client_secret=oauth["client_secret"],
                      refresh_token=oauth["refresh_token"],
                      access_token=oauth["access_token"], oauth_token_url=oauth["token_url"],
                      on_token_refresh=on_refresh, **common)
    return Bitrix(settings["webhook"], **common)


def run_job(index: int, settings: Dict[str, Any], barrier: Any, queue: Any) -> None:
    """``settings``: webhook or oauth, redis (URL or None), rate, ids (deal IDs to get
    one command each), adds (deals to add, titled ``p<index>-<n>``)."""
    warnings = _Warnings()
    logging.getLogger("bitrix_threaded").addHandler(warnings)
    result: Dict[str, Any] = {"index": index, "pid": os.getpid()}
    refreshed: List[Any] = []
    try:
        with _client(settings, on_refresh=refreshed.append) as client:
            barrier.wait(60)
            result["started_at"] = time.monotonic()
            ids = settings.get("ids") or []
            if ids:
                got = client.call("crm.deal.get", [{"id": i} for i in ids])
                result["got"] = [int(record["ID"]) for record in got]
            adds = settings.get("adds", 0)
            if adds:
                added = client.call("crm.deal.add", [
                    {"fields": {"TITLE": f"p{index}-{n}"}} for n in range(adds)])
                result["added"] = len(added)
            result["done_at"] = time.monotonic()
            stats = client.stats()
            shared = stats.get("shared_limits") or {}
            result["round_trips"] = shared.get("round_trips", 0)
            result["outages"] = shared.get("outages", 0)
            result["refreshes"] = len(refreshed)
    except BaseException as exc:  # reported to the test instead of dying silently
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    result["closed_at"] = time.monotonic()
    result["warnings"] = warnings.messages
    queue.put(result)


def run_processes(count: int, settings_for: Any, timeout: float = 120.0,
                  on_started: Optional[Any] = None) -> List[Dict[str, Any]]:
    """Spawn ``count`` processes running :func:`run_job`; return their results by index.

    ``settings_for(i)`` gives each process's settings; ``on_started()`` runs in this
    process once all of them passed the barrier (e.g. to kill Redis mid-run).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count + 1)
    queue = ctx.Queue()
    processes = [ctx.Process(target=run_job, args=(i, settings_for(i), barrier, queue),
                             daemon=True) for i in range(count)]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout)
        if on_started is not None:
            on_started()
        results = [queue.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    return sorted(results, key=lambda r: r["index"])
