"""One benchmark run of one client, in its own process.

    python perf/contender.py SPEC.json

SPEC (written by bench.py) says which client (``bitrix_threaded``,
``fast_bitrix24``, their async clients ``bitrix_threaded_async`` and
``fast_bitrix24_async``, ``plain``), which job (``get_all``, ``iter_jsonl``,
``update``, ``get_by_id``, ``id_list``) and the portal's scaled limits. The
result is one JSON object on the last line of stdout:

    wall, records, unique, id_sum, id_sq (order-free fingerprint of the IDs),
    cpu (user+sys seconds spent in the job, imports and setup excluded),
    cpu_total, rss_before_kb, maxrss_kb (ru_maxrss of the process), error

Only the standard library is imported at the top: fast_bitrix24 runs from
its own virtual environment, where neither ``requests`` nor this project
is installed.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
import warnings
from typing import Any, Callable, Dict, Iterable, List

FINGERPRINT_MOD = (1 << 61) - 1
#: An operating-time limit no run reaches: how "limits off" is configured.
UNLIMITED = 10 ** 9


class Fingerprint:
    """Counts records and unique IDs; a bitmap keeps memory flat for a million IDs."""

    def __init__(self) -> None:
        self.records = 0
        self.unique = 0
        self.id_sum = 0
        self.id_sq = 0
        self._seen = bytearray(1 << 17)

    def add(self, raw_id: Any) -> None:
        self.records += 1
        try:
            value = int(raw_id)
        except (TypeError, ValueError):
            return
        byte, bit = divmod(value, 8)
        if byte >= len(self._seen):
            self._seen.extend(bytes(max(byte + 1 - len(self._seen), len(self._seen))))
        mask = 1 << bit
        if self._seen[byte] & mask:
            return
        self._seen[byte] |= mask
        self.unique += 1
        self.id_sum = (self.id_sum + value) % FINGERPRINT_MOD
        self.id_sq = (self.id_sq + value * value) % FINGERPRINT_MOD

    def add_all(self, records: Iterable[Any], key: str = "ID") -> None:
        for record in records:
            self.add(record.get(key) if isinstance(record, dict) else None)

    def as_dict(self) -> Dict[str, int]:
        return {"records": self.records, "unique": self.unique,
                "id_sum": self.id_sum, "id_sq": self.id_sq}


def _peak_rss_kb() -> int:
    """This process's own peak resident set, in KiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` also counts the pages of the parent
    that forked this process before it ran the client (the benchmark driver can hold
    a million IDs by then), so it can report the parent's size, not the client's.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_ids(spec: Dict[str, Any]) -> List[int]:
    with open(spec["ids_file"], encoding="utf-8") as handle:
        return json.load(handle)


# -- bitrix_threaded ------------------------------------------------------------------------

def _bt_options(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The client arguments for the portal's (scaled) limits, or for "limits off"."""
    ts = spec["time_scale"]
    if spec["limits"]:
        return dict(verbose=False, requests_per_second=spec["rate"] / ts,
                    request_pool_size=int(spec["capacity"]),
                    operating_time_limit=spec["operating_limit"] * ts)
    return dict(verbose=False, requests_per_second=1000.0, request_pool_size=1000,
                operating_time_limit=float(UNLIMITED))


def _note_json_backend(spec: Dict[str, Any]) -> None:
    try:
        from bitrix_threaded import jsoncodec
        spec["json_backend"] = jsoncodec.BACKEND
    except ImportError:  # a commit from before the 'fast' extra
        spec["json_backend"] = "json"


def _bitrix_threaded(spec: Dict[str, Any]):
    import bitrix_threaded
    from bitrix_threaded import Bitrix

    spec["library_file"] = bitrix_threaded.__file__
    _note_json_backend(spec)
    client = Bitrix(spec["webhook"], **_bt_options(spec))
    job = spec["job"]
    params = spec.get("params") or {}
    fp = Fingerprint()

    if job == "get_all":
        def run() -> Any:
            return client.get_all(spec["method"], params, strategy=spec.get("strategy"))
    elif job == "id_list":
        ids = _load_ids(spec)

        def run() -> Any:
            return client.get_all(spec["method"], params, ids=ids)
    elif job == "iter_jsonl":
        def run() -> None:
            with open(spec["out"], "w", encoding="utf-8") as out:
                for record in client.iter_all(spec["method"], params,
                                              strategy=spec.get("strategy")):
                    out.write(json.dumps(record, ensure_ascii=False))
                    out.write("\n")
                    fp.add(record.get("ID"))
    elif job in ("get_by_id", "update"):
        run = _id_job(client, spec, fp)
    else:
        raise ValueError(f"unknown job {job!r}")
    return client, run, fp


def _id_job(client: Any, spec: Dict[str, Any], fp: "Fingerprint") -> Callable[[], Any]:
    """get_by_ID or a batched update over the sampled IDs: same calls in both libraries."""
    ids = _load_ids(spec)
    if spec["job"] == "get_by_id":
        return lambda: list(client.get_by_ID(spec["method"], ids).values())
    items = [{"ID": i, "fields": _update_fields(i)} for i in ids]

    def run() -> None:
        results = client.call(spec["method"], items)
        for i, ok in zip(ids, results):
            if ok is True:
                fp.add(i)
            else:
                fp.records += 1
    return run


def _bitrix_threaded_async(spec: Dict[str, Any]):
    """AsyncBitrix: the same engine awaited from a coroutine (get_all only)."""
    import asyncio

    import bitrix_threaded
    from bitrix_threaded import AsyncBitrix

    spec["library_file"] = bitrix_threaded.__file__
    _note_json_backend(spec)
    if spec["job"] != "get_all":
        raise ValueError(f"the async contender has no job {spec['job']!r}")
    client = AsyncBitrix(spec["webhook"], **_bt_options(spec))
    params = spec.get("params") or {}

    async def export() -> Any:
        return await client.get_all(spec["method"], params, strategy=spec.get("strategy"))

    return client, lambda: asyncio.run(export()), Fingerprint()


# -- fast_bitrix24 --------------------------------------------------------------------------

def _fast_bitrix24(spec: Dict[str, Any]):
    from fast_bitrix24 import Bitrix
    from fast_bitrix24 import srh

    ts = spec["time_scale"]
    # Its sliding operating window is a hard-coded 600 s; the portal's window is
    # scaled like every other duration, so scale this one the same way.
    srh.BITRIX_MEASUREMENT_PERIOD = 600 * ts
    if spec["limits"]:
        client = Bitrix(spec["webhook"], verbose=False,
                        requests_per_second=spec["rate"] / ts,
                        request_pool_size=int(spec["capacity"]),
                        operating_time_limit=max(1, int(round(spec["operating_limit"] * ts))),
                        ssl=False)
    else:
        # (respect_velocity_policy=False makes 1.8.14 fail with a KeyError in its
        # throttler bookkeeping, so "limits off" is an unreachable operating limit.)
        client = Bitrix(spec["webhook"], verbose=False, requests_per_second=1000.0,
                        request_pool_size=1000, operating_time_limit=UNLIMITED, ssl=False)
    job = spec["job"]
    params = spec.get("params") or {}
    fp = Fingerprint()

    if job == "get_all":
        def run() -> Any:
            return client.get_all(spec["method"], params)
    elif job in ("get_by_id", "update"):
        run = _id_job(client, spec, fp)
    else:
        raise ValueError(f"fast_bitrix24 has no job {job!r}")
    return client, run, fp


def _fast_bitrix24_async(spec: Dict[str, Any]):
    """fast_bitrix24's BitrixAsync awaited from a coroutine (get_all only)."""
    import asyncio

    from fast_bitrix24 import BitrixAsync
    from fast_bitrix24 import srh

    ts = spec["time_scale"]
    srh.BITRIX_MEASUREMENT_PERIOD = 600 * ts  # scaled like the portal's window (see above)
    if spec["job"] != "get_all":
        raise ValueError(f"the async contender has no job {spec['job']!r}")
    if spec["limits"]:
        options = dict(requests_per_second=spec["rate"] / ts,
                       request_pool_size=int(spec["capacity"]),
                       operating_time_limit=max(1, int(round(spec["operating_limit"] * ts))))
    else:
        options = dict(requests_per_second=1000.0, request_pool_size=1000,
                       operating_time_limit=UNLIMITED)
    params = spec.get("params") or {}

    async def export() -> Any:
        client = BitrixAsync(spec["webhook"], verbose=False, ssl=False, **options)
        return await client.get_all(spec["method"], params)

    return None, lambda: asyncio.run(export()), Fingerprint()


# -- a plain requests loop ------------------------------------------------------------------

def _plain(spec: Dict[str, Any]):
    """What people write by hand: one page after another, following ``next``.

    A 503 is retried after 1/rate seconds, a 429 after 60 s (both scaled);
    anything else ends the loop with an error.
    """
    import requests

    if spec["job"] != "get_all":
        raise ValueError("the plain loop only pages through a list")
    ts = spec["time_scale"]
    session = requests.Session()
    url = spec["webhook"] + spec["method"]
    params = dict(spec.get("params") or {})
    params.setdefault("order", {"ID": "ASC"})
    fp = Fingerprint()
    records: List[Any] = []

    def run() -> None:
        start = 0
        while True:
            reply = session.post(url, json={**params, "start": start}, timeout=300)
            if reply.status_code == 503:
                time.sleep(ts / spec["rate"])
                continue
            if reply.status_code == 429:
                time.sleep(60 * ts)
                continue
            reply.raise_for_status()
            data = reply.json()
            records.extend(data["result"])
            if "next" not in data:
                break
            start = data["next"]
        return records

    return session, run, fp


def _update_fields(record_id: int) -> Dict[str, Any]:
    return {"COMMENTS": f"benchmark update of {record_id}", "OPPORTUNITY": record_id % 1000}


CLIENTS = {"bitrix_threaded": _bitrix_threaded, "fast_bitrix24": _fast_bitrix24,
           "bitrix_threaded_async": _bitrix_threaded_async,
           "fast_bitrix24_async": _fast_bitrix24_async, "plain": _plain}


def main(argv: List[str]) -> int:
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    warnings.simplefilter("ignore")
    result: Dict[str, Any] = {"client": spec["client"], "error": None}
    fp = None
    marks: Dict[str, float] = {}
    try:
        client, run, fp = CLIENTS[spec["client"]](spec)
        before = resource.getrusage(resource.RUSAGE_SELF)
        marks["user0"], marks["sys0"] = before.ru_utime, before.ru_stime
        cpu0 = _cpu()
        result["rss_before_kb"] = _peak_rss_kb()
        t0 = time.perf_counter()
        got = None
        try:
            got = run()
        except BaseException as exc:  # report, never hang
            result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            result["traceback"] = traceback.format_exc()[-3000:]
        result["wall"] = time.perf_counter() - t0
        result["cpu"] = _cpu() - cpu0
        after = resource.getrusage(resource.RUSAGE_SELF)
        marks["user1"], marks["sys1"] = after.ru_utime, after.ru_stime
        if got is not None:  # checking the result is not part of the measured call
            fp.add_all(got)
        try:
            close = getattr(client, "close", None)
            if callable(close) and not spec["client"].startswith("fast_bitrix24"):
                close()
        except Exception:
            pass
    except BaseException as exc:
        result["error"] = f"setup: {type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_total"] = usage.ru_utime + usage.ru_stime
    if "user0" in marks:
        result["cpu_user"] = marks["user1"] - marks["user0"]
        result["cpu_sys"] = marks["sys1"] - marks["sys0"]
    result["maxrss_kb"] = _peak_rss_kb()
    for key in ("library_file", "json_backend"):
        if key in spec:
            result[key] = spec[key]
    result.update(fp.as_dict() if fp else {"records": 0, "unique": 0, "id_sum": 0, "id_sq": 0})
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of thread pools / event loops


if __name__ == "__main__":
    sys.exit(main(sys.argv))
