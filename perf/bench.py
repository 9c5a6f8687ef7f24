"""Side-by-side benchmarks: bitrix_threaded, fast_bitrix24, a plain loop, the ceiling.

    python perf/bench.py            # full suite (tens of minutes), updates perf/README.md
    python perf/bench.py --quick    # small sizes, under 3 minutes
    python perf/bench.py --only s1-light,s6-cpu --time-scale 1

Every run gets a fresh fake portal process (same seed, so the same data, an
empty bucket and an empty operating window) and a fresh client process. The
portal is started with ``python -m bitrix_threaded.testing serve``; its
counters come from ``GET /_portal/stats``. Times are reported in unscaled
portal seconds (wall / time scale). Raw results go to perf/results/.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = HERE / "README.md"
sys.path.insert(0, str(HERE))

import ceiling as ceil_model  # noqa: E402
import peer_env  # noqa: E402

SELECT = {"select": ["*", "UF_*"]}
#: Where ``bitrix_threaded`` is imported from: the work tree, or a commit's snapshot.
LIBRARY = {"root": ROOT, "label": ""}
MARK_START = "<!-- results:start -->"
MARK_END = "<!-- results:end -->"


def library_env() -> Dict[str, str]:
    """The environment for processes that import bitrix_threaded (portal, contenders)."""
    env = dict(os.environ)
    # Always first on the path: an installed copy elsewhere (another checkout's editable
    # install) must not be what gets measured.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(LIBRARY["root"]), os.environ.get("PYTHONPATH", "")) if p)
    return env


def use_commit(rev: str) -> None:
    """Import bitrix_threaded from ``rev`` (``git archive``; the work tree is untouched)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
    dest = RESULTS / f"lib-{sha[:12]}"
    if not (dest / "bitrix_threaded" / "__init__.py").exists():
        archive = subprocess.run(["git", "archive", sha, "bitrix_threaded"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest)
    LIBRARY["root"] = dest
    LIBRARY["label"] = f"commit {sha[:12]}"


def work_tree_label() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bitrix_threaded"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "work tree"
    return f"work tree at {sha}" + (" with uncommitted library changes" if dirty else "")


# -- the portal process ---------------------------------------------------------------------

class PortalProcess:
    """``python -m bitrix_threaded.testing serve ...`` in its own process group."""

    def __init__(self, deals: int, profile: str, time_scale: float, *, enterprise: bool,
                 limits: Optional[bool]):
        args = [sys.executable, "-m", "bitrix_threaded.testing", "serve",
                "--deals", str(deals), "--profile", profile, "--time-scale", str(time_scale)]
        if enterprise:
            args.append("--enterprise")
        if limits is False:
            args.append("--no-limits")
        elif limits is True:
            args.append("--limits")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=str(LIBRARY["root"]), env=library_env(),
                                     start_new_session=True)
        self.webhook = self.stats_url = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("portal exited: " + self.proc.stderr.read()[-2000:])
            m = re.match(r"webhook:\s+(\S+)", line)
            if m:
                self.webhook = m.group(1)
            m = re.match(r"stats:\s+(\S+)", line)
            if m:
                self.stats_url = m.group(1)
            if self.webhook and self.stats_url:
                break
        if not self.webhook:
            raise RuntimeError("the portal did not print its webhook")
        self.base = self.stats_url.rsplit("/_portal/", 1)[0]

    def _get(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())

    def stats(self) -> Dict[str, Any]:
        return self._get("/_portal/stats")

    def reset_stats(self) -> None:
        self._get("/_portal/reset_stats", "POST")

    def ids(self, entity: str = "deal") -> List[int]:
        return self._get(f"/_portal/ids/{entity}")["ids"]

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat)."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return 0.0
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait
    busy = sum(int(v) for i, v in enumerate(fields[1:9]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


# -- scenarios ------------------------------------------------------------------------------

@dataclasses.dataclass
class Contender:
    label: str
    client: str               # bitrix_threaded | fast_bitrix24 | plain
    job: str                  # get_all | iter_jsonl | update | get_by_id | id_list
    method: str
    params: Optional[dict] = None
    strategy: Optional[str] = None
    scale: Optional[str] = None   # "plain": runs at the plain-loop time scale
    env: Optional[Dict[str, str]] = None  # extra environment for the client process


@dataclasses.dataclass
class Scenario:
    key: str
    title: str
    deals: int
    profile: str
    enterprise: bool
    contenders: List[Contender]
    ceiling: Optional[ceil_model.Ceiling]
    budget: float             # per run, unscaled seconds
    sample: int = 0           # IDs drawn from the portal for update/get jobs
    repeat: int = 1           # runs per contender (plain loop: 1); the median-CPU one is shown
    limits: Optional[bool] = None
    scale: str = "base"       # "base", "stream", "offset", or "none" (instant: nothing sleeps)

    @property
    def limits_label(self) -> str:
        if self.limits is False or (self.limits is None and self.profile == "instant"):
            return "limits off"
        return "Enterprise 250/5/s" if self.enterprise else "standard 50/2/s"


def bt(label: str, job: str = "get_all", method: str = "crm.deal.list",
       strategy: Optional[str] = None, params: Optional[dict] = None) -> Contender:
    return Contender(label, "bitrix_threaded", job, method,
                     SELECT if params is None else params, strategy)


# The same client decoding with the standard library only (without the 'fast' extra).
STDLIB_JSON = {"BITRIX_THREADED_JSON": "stdlib"}


def bt_stdlib(label: str, **kwargs: Any) -> Contender:
    return dataclasses.replace(bt(label, **kwargs), env=STDLIB_JSON)


FB24 = Contender("fast_bitrix24", "fast_bitrix24", "get_all", "crm.deal.list", SELECT)
#: The async clients, side by side in scenario 1 (light).
BT_ASYNC = Contender("bitrix_threaded AsyncBitrix", "bitrix_threaded_async", "get_all",
                     "crm.deal.list", SELECT, "id_ranges")
FB24_ASYNC = Contender("fast_bitrix24 BitrixAsync", "fast_bitrix24_async", "get_all",
                       "crm.deal.list", SELECT)
PLAIN = Contender("plain loop", "plain", "get_all", "crm.deal.list", SELECT, scale="plain")


def scenarios(quick: bool) -> List[Scenario]:
    std, ent = ceil_model.STANDARD, ceil_model.ENTERPRISE
    n_list = 10_000 if quick else 100_000
    n_ids = 1_000 if quick else 5_000
    n_stream = 100_000 if quick else 1_000_000
    n_cpu = 20_000 if quick else 100_000
    budget = {"light": 240.0 if quick else 1200.0, "realistic": 240.0 if quick else 300.0}
    all_list = [bt("bitrix_threaded id_ranges", strategy="id_ranges"),
                bt("bitrix_threaded offset", strategy="offset"), FB24, PLAIN]
    # Light scenario 1 also measures the client without the 'fast' extra.
    light_list = all_list[:1] + [
        bt_stdlib("bitrix_threaded id_ranges stdlib", strategy="id_ranges")] + all_list[1:]
    fast_list = [bt("bitrix_threaded id_ranges", strategy="id_ranges"), FB24]
    out = []
    for profile in ("light", "realistic"):
        out.append(Scenario(
            f"s1-{profile}", f"1. get_all crm.deal.list, {n_list:,} deals, {profile}",
            n_list, profile, False,
            light_list + [BT_ASYNC, FB24_ASYNC] if profile == "light"
            else (fast_list if quick else all_list),
            ceil_model.export_ceiling(n_list, profile, std), budget[profile],
            # The light-profile targets compare single figures: take the median of 3.
            repeat=3 if profile == "light" and not quick else 1))
    for profile in ("light", "realistic"):
        if quick and profile == "realistic":
            continue
        out.append(Scenario(
            f"s2-{profile}", f"2. get_all crm.deal.list, {n_list:,} deals, {profile}",
            n_list, profile, True, fast_list if quick else all_list,
            ceil_model.export_ceiling(n_list, profile, ent), budget[profile]))
    for key, title, ours, job, method in (
            ("s3-update", "3. call", "bitrix_threaded", "update", "crm.deal.update"),
            ("s4-get", "4a. get_by_ID", "bitrix_threaded get_by_ID", "get_by_id",
             "crm.deal.get")):
        out.append(Scenario(
            key, f"{title} {method} x {n_ids:,}, light", max(n_list, n_ids), "light", False,
            [bt(ours, job, method),
             dataclasses.replace(FB24, job=job, method=method, params=None)],
            ceil_model.per_record_ceiling(n_ids, "light", std), budget["light"],
            sample=n_ids))
    out.append(Scenario(
        "s4-idlist", f"4b. get_all crm.deal.list ids=[{n_ids:,}] (ID list), light",
        max(n_list, n_ids), "light", False,
        [bt("bitrix_threaded id_list", "id_list")],
        ceil_model.export_ceiling(n_ids, "light", std), budget["light"], sample=n_ids))
    out.append(Scenario(
        "s5-stream", f"5. iter_all to JSONL, {n_stream:,} deals, realistic", n_stream,
        "realistic", False,
        [bt("bitrix_threaded iter_all", "iter_jsonl")],
        ceil_model.export_ceiling(n_stream, "realistic", std),
        720.0 if quick else 3000.0, scale="stream"))
    out.append(Scenario(
        "s6-cpu", f"6. client CPU: get_all {n_cpu:,} deals, instant, limits off", n_cpu,
        "instant", False, [bt("bitrix_threaded id_ranges", strategy="id_ranges"),
                           bt_stdlib("bitrix_threaded id_ranges stdlib",
                                     strategy="id_ranges"),
                           bt("bitrix_threaded offset", strategy="offset"),
                           dataclasses.replace(FB24)],
        None, 300.0, scale="none", repeat=3))
    # Offset pages in the server's order, an export several operating windows long: the
    # operating-time budget, not the bucket, sets the pace.
    n_offset = 20_000 if quick else 100_000
    out.append(Scenario(
        "s7-offset", f"7. get_all crm.deal.list order ID desc (offset pages), "
        f"{n_offset:,} deals, realistic", n_offset, "realistic", False,
        [bt("bitrix_threaded offset custom order", strategy="offset",
            params={**SELECT, "order": {"ID": "DESC"}})],
        ceil_model.offset_ceiling(n_offset, "realistic", std), 4500.0, scale="offset"))
    return out


# -- running --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scales:
    """Time scales: ``base`` for scenarios 1-4, ``stream`` for 5, ``offset`` for 7,
    ``plain`` for the loop."""

    base: float = 1.0
    stream: float = 0.25
    plain: float = 0.25
    offset: float = 0.05

    def of(self, scn: "Scenario", who: Optional[Contender] = None) -> float:
        if scn.scale == "none":
            return 1.0
        if who is not None and who.scale == "plain":
            return self.plain
        if scn.scale == "offset":
            return self.offset
        return self.stream if scn.scale == "stream" else self.base


def fingerprint(ids: List[int]) -> Dict[str, int]:
    mod = (1 << 61) - 1
    unique = set(ids)
    return {"records": len(ids), "unique": len(unique),
            "id_sum": sum(unique) % mod, "id_sq": sum(i * i for i in unique) % mod}


def run_contender(scn: Scenario, who: Contender, portal: PortalProcess, ts: float,
                  peer_python: Path, ids_file: Optional[Path], tag: str) -> Dict[str, Any]:
    capacity, rate = (250, 5.0) if scn.enterprise else (50, 2.0)
    spec = {
        "client": who.client, "job": who.job, "method": who.method, "params": who.params,
        "strategy": who.strategy, "webhook": portal.webhook, "time_scale": ts,
        "capacity": capacity, "rate": rate, "operating_limit": 480.0,
        "limits": scn.limits_label != "limits off",
        "ids_file": str(ids_file) if ids_file else None,
        "out": str(RESULTS / f"{tag}.jsonl"),
    }
    spec_file = RESULTS / f"{tag}.spec.json"
    spec_file.write_text(json.dumps(spec))
    peer = who.client.startswith("fast_bitrix24")
    python = str(peer_python) if peer else sys.executable
    env = library_env()
    if peer:
        env.pop("PYTHONPATH", None)
    env.update(who.env or {})
    timeout = scn.budget * ts + 15.0
    portal.reset_stats()
    cpu0 = portal.cpu()
    busy0 = machine_busy()
    t0 = time.monotonic()
    proc = subprocess.Popen([python, str(HERE / "contender.py"), str(spec_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(RESULTS), env=env, start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    busy = machine_busy() - busy0
    stats = portal.stats()
    portal_cpu = portal.cpu() - cpu0
    result: Dict[str, Any] = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                pass
    if timed_out:
        result.setdefault("error", None)
        result["error"] = f"over the time budget ({scn.budget:.0f} s)"
        result["wall"] = elapsed
    elif not result:
        result = {"error": "no result: " + stderr[-500:], "wall": elapsed}
    result["timed_out"] = timed_out
    result["stderr_tail"] = stderr[-1500:]
    result.update({
        "label": who.label, "client": who.client, "time_scale": ts,
        "requests": stats["requests"], "rejected_503": stats["rejected_503"],
        "rejected_429": stats["rejected_429"], "operating": stats["operating_total"],
        "portal_records": stats["records"], "skipped_rows": stats["skipped_rows"],
        "counted_rows": stats["counted_rows"], "commands": stats["commands"],
        "peak_concurrency": stats["peak_concurrency"], "portal_errors": stats["errors"],
        "internal_errors": stats["internal_errors"], "portal_cpu": portal_cpu,
        # Busy time of the machine that was neither the client's process nor the
        # portal's: other programs (and the kernel's loopback work) competing for the
        # same cores. CPU figures of runs with much of it are not comparable.
        # Unknown when the client's own figure is missing (a run stopped for its budget).
        "other_cpu": (max(0.0, busy - portal_cpu - result["cpu_total"])
                      if result.get("cpu_total") is not None else None),
    })
    result["unscaled"] = result.get("wall", elapsed) / ts
    spec_file.unlink(missing_ok=True)
    return result


def _run_once(scn: Scenario, who: Contender, ts: float, peer_python: Path,
              ids_file: Optional[Path], expected: Dict[str, int]) -> Dict[str, Any]:
    portal = PortalProcess(scn.deals, scn.profile, ts, enterprise=scn.enterprise,
                           limits=scn.limits)
    tag = f"{scn.key}-{re.sub(r'[^a-z0-9]+', '-', who.label.lower())}"
    try:
        row = run_contender(scn, who, portal, ts, peer_python, ids_file, tag)
    finally:
        portal.stop()
    row["exact"] = all(row.get(k) == expected[k] for k in expected)
    row["completed"] = not row.get("error") and row["exact"]
    jsonl = RESULTS / f"{tag}.jsonl"
    if jsonl.exists():
        row["jsonl_bytes"] = jsonl.stat().st_size
        jsonl.unlink()
    return row


def rotated(items: List[Any], turn: int) -> List[Any]:
    """``items`` starting ``turn`` places further on (wrapping round)."""
    if not items:
        return []
    shift = turn % len(items)
    return items[shift:] + items[:shift]


def run_scenario(scn: Scenario, scales: Scales, peer_python: Path,
                 only: Optional[List[str]] = None) -> Dict[str, Any]:
    ts = scales.of(scn)
    print(f"== {scn.key}: {scn.title} ({scn.limits_label}, time scale {ts})", flush=True)
    contenders = [who for who in scn.contenders
                  if not only or any(word in who.label for word in only)]
    # The expected IDs (and the sample for scenarios 3-4) from a portal with this seed.
    probe = PortalProcess(scn.deals, scn.profile, ts, enterprise=scn.enterprise,
                          limits=scn.limits)
    try:
        all_ids = probe.ids("deal")
    finally:
        probe.stop()
    ids_file = None
    if scn.sample:
        step = max(1, len(all_ids) // scn.sample)
        chosen = all_ids[::step][:scn.sample]
        ids_file = RESULTS / f"ids-{scn.key}.json"
        ids_file.write_text(json.dumps(chosen))
        expected = fingerprint(chosen)
    else:
        expected = fingerprint(all_ids)
    del all_ids
    # Repeated runs go round-robin so that drift in the machine's speed hits every
    # contender alike, and each round starts one contender further on (A B C, B C A,
    # C A B) so that no contender always has the same place in its round. The plain
    # loop runs once.
    runs: Dict[str, List[Dict[str, Any]]] = {who.label: [] for who in contenders}
    for round_ in range(scn.repeat):
        for who in rotated(contenders, round_):
            if round_ > 0 and who.scale == "plain":
                continue
            runs[who.label].append(
                _run_once(scn, who, scales.of(scn, who), peer_python, ids_file, expected))
    rows = []
    for who in contenders:
        done = sorted(runs[who.label], key=lambda r: r.get("cpu") or 0.0)
        row = done[len(done) // 2]
        if len(done) > 1:
            row["cpu_runs"] = [r.get("cpu") for r in done]
            row["wall_runs"] = [r["unscaled"] for r in done]
        known = [r["other_cpu"] for r in done if r.get("other_cpu") is not None]
        row["other_cpu_max"] = max(known) if known else None
        rows.append(row)
        print(f"   {who.label:28} {'ok ' if row['completed'] else 'NOT'} "
              f"{row['unscaled']:9.1f} s  req {row['requests']:5}  503 {row['rejected_503']}"
              f"  429 {row['rejected_429']}  op {row['operating']:.1f}  "
              f"cpu {row.get('cpu', float('nan')):.2f} (user {row.get('cpu_user', 0):.2f})"
              f"  rss {row.get('maxrss_kb', 0) / 1024:.0f}MB"
              f"  portal cpu {row['portal_cpu']:.1f}"
              f"  other cpu {_num(row['other_cpu_max'], '{:.2f}')}"
              + (f"  cpu runs {row['cpu_runs']}" if "cpu_runs" in row else "")
              + (f"  [{row['error'][:120]}]" if row.get("error") else ""), flush=True)
    return {"key": scn.key, "title": scn.title, "profile": scn.profile,
            "limits": scn.limits_label, "deals": scn.deals, "time_scale": ts,
            "budget": scn.budget, "expected": expected, "repeat": scn.repeat,
            "ceiling": scn.ceiling.as_dict() if scn.ceiling else None, "rows": rows}


# -- reporting ------------------------------------------------------------------------------

def _num(value: Optional[float], fmt: str = "{:,.1f}") -> str:
    return "—" if value is None else fmt.format(value)


def render_scenario(s: Dict[str, Any]) -> str:
    ceil = s["ceiling"]
    head = f"#### {s['title']} — {s['limits']}, time scale {s['time_scale']}"
    if ceil:
        head += (f"; ceiling {ceil['seconds']:,.1f} s ({ceil['requests']} request(s), "
                 f"{ceil['operating']:,.0f} operating s)")
    if s.get("repeat", 1) > 1:
        head += f"; each row the median of {s['repeat']} runs by client CPU"
    lines = [head, "",
             "| contender | done | wall s | x ceiling | records/s | requests | 503 | 429 "
             "| operating s | client CPU s | peak RSS MB | portal CPU s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["rows"]:
        wall = r["unscaled"]
        if r["completed"]:
            done = "yes"
        elif r.get("timed_out"):
            done = "no: over budget"
        elif r.get("error"):
            done = "no: " + r["error"].split(":")[0][:40]
        else:
            done = f"no: {r.get('unique', 0):,} of {s['expected']['unique']:,} unique"
        rps = r.get("records", 0) / wall if wall else None
        ratio = wall / ceil["seconds"] if ceil and r["completed"] else None
        shown_wall = f"{wall:,.1f}" if r["completed"] else f"({wall:,.1f})"
        label = r["label"]
        if r.get("time_scale") != s["time_scale"]:
            label += f" (time scale {r['time_scale']})"
        lines.append(
            f"| {label} | {done} | {shown_wall} | {_num(ratio, '{:.2f}')} | "
            f"{_num(rps, '{:,.0f}')} | {r['requests']:,} | {r['rejected_503']:,} | "
            f"{r['rejected_429']:,} | {r['operating']:,.1f} | {_num(r.get('cpu'), '{:.2f}')} | "
            f"{_num(r['maxrss_kb'] / 1024 if r.get('maxrss_kb') else None, '{:,.0f}')} | "
            f"{r['portal_cpu']:.1f} |")
    spreads = [f"{r['label']} {' / '.join(f'{c:.2f}' for c in r['cpu_runs'])} s"
               for r in s["rows"] if r.get("cpu_runs")]
    if spreads:
        lines += ["", "Client CPU of each run: " + "; ".join(spreads) + "."]
    others = [r["other_cpu_max"] for r in s["rows"]
              if r.get("other_cpu_max") is not None and r.get("cpu") is not None]
    if others:
        lines += ["", f"Other CPU on the machine during any one run (busy time that was "
                      f"neither the client's nor the portal's): at most {max(others):.2f} s."]
    return "\n".join(lines)


def _row(results: List[Dict[str, Any]], key: str, label: str) -> Optional[Dict[str, Any]]:
    for s in results:
        if s["key"] == key:
            for r in s["rows"]:
                if r["label"] == label:
                    return r
    return None


def targets(results: List[Dict[str, Any]]) -> List[List[str]]:
    out: List[List[str]] = []

    def verdict(ok: Optional[bool]) -> str:
        return "n/a (not run)" if ok is None else ("met" if ok else "**missed**")

    bt_rows = [(s["key"], r) for s in results for r in s["rows"]
               if r["client"].startswith("bitrix_threaded")]
    bad = [f"{k}/{r['label']}: {r['rejected_503']}x503 {r['rejected_429']}x429"
           for k, r in bt_rows if r["rejected_503"] or r["rejected_429"]]
    out.append(["zero 503/429 for bitrix_threaded, every scenario",
                verdict(not bad if bt_rows else None),
                "; ".join(bad) or f"{len(bt_rows)} runs, none rejected"])
    for profile in ("light", "realistic"):
        r = _row(results, f"s1-{profile}", "bitrix_threaded id_ranges")
        out.append([f"scenario 1 exact on {profile} (count and unique IDs = portal's)",
                    verdict(None if r is None else r["completed"]),
                    "—" if r is None else f"{r.get('records', 0):,} records, "
                    f"{r.get('unique', 0):,} unique"
                    + (f"; {r['error']}" if r.get("error") else "")])
    me = _row(results, "s1-light", "bitrix_threaded id_ranges")
    plain_json = _row(results, "s1-light", "bitrix_threaded id_ranges stdlib")
    peer = _row(results, "s1-light", "fast_bitrix24")
    checks = [
        (me, "light: wall <= 1/3 of fast_bitrix24's", "unscaled", 1 / 3,
         "{:.1f} s vs {:.1f} s"),
        (me, "light: operating s <= 0.3x fast_bitrix24's", "operating", 0.3,
         "{:.1f} vs {:.1f}"),
        (me, "light: client CPU <= 0.35x fast_bitrix24's ('fast' extra)", "cpu", 0.35,
         "{:.2f} s vs {:.2f} s"),
        (plain_json, "light: client CPU <= 0.45x fast_bitrix24's (standard library JSON)",
         "cpu", 0.45, "{:.2f} s vs {:.2f} s"),
        (me, "light: peak RSS <= 1/2 of fast_bitrix24's", "maxrss_kb", 0.5,
         "{:.0f} vs {:.0f} KB"),
    ]
    for row, name, key, bound, fmt in checks:
        if not row or not peer or not peer["completed"] or not row["completed"]:
            out.append([name, verdict(None) if not (row and peer) else "**missed**",
                        "a run did not complete"])
            continue
        a, b = row.get(key) or 0.0, peer.get(key) or 0.0
        ok = b > 0 and a <= bound * b
        out.append([name, verdict(ok), fmt.format(a, b) + (f" ({a / b:.2f}x)" if b else "")])
    sync_row = _row(results, "s1-light", "bitrix_threaded id_ranges")
    async_row = _row(results, "s1-light", BT_ASYNC.label)
    name = "light: AsyncBitrix within 5% of the sync client (wall, operating s, CPU, RSS)"
    if not sync_row or not async_row:
        out.append([name, verdict(None), "—"])
    elif not (sync_row["completed"] and async_row["completed"]):
        out.append([name, "**missed**", "a run did not complete"])
    else:
        figures = [(key, async_row.get(key) or 0.0, sync_row.get(key) or 0.0)
                   for key in ("unscaled", "operating", "cpu", "maxrss_kb")]
        ok = all(b > 0 and a <= 1.05 * b for _, a, b in figures)
        out.append([name, verdict(ok), "; ".join(
            f"{key} {a / b:.2f}x" if b else f"{key} n/a" for key, a, b in figures)])
    for key, label, bound, name in (
            ("s1-light", "bitrix_threaded id_ranges", 1.25,
             "light 100k: wall <= 1.25x the ceiling"),
            ("s5-stream", "bitrix_threaded iter_all", 1.05,
             "scenario 5: wall <= 1.05x the ceiling"),
            ("s7-offset", "bitrix_threaded offset custom order", 1.15,
             "scenario 7: wall <= 1.15x the operating-time ceiling, 0 429")):
        r = _row(results, key, label)
        scn = next((s for s in results if s["key"] == key), None)
        ceiling = (scn or {}).get("ceiling") or {}
        if r is None or not ceiling:
            out.append([name, verdict(None), "—"])
            continue
        ratio = r["unscaled"] / ceiling["seconds"]
        ok = r["completed"] and ratio <= bound and not r["rejected_429"]
        out.append([name, verdict(ok), f"{r['unscaled']:,.1f} s vs {ceiling['seconds']:,.1f} s "
                    f"({ratio:.2f}x), {r['rejected_429']} 429"
                    + ("" if r["completed"] else ", not completed")])
    r = _row(results, "s5-stream", "bitrix_threaded iter_all")
    out.append(["scenario 5 peak RSS <= 100 MB",
                verdict(None if r is None else (r["completed"] and r["maxrss_kb"] <= 100 * 1024)),
                "—" if r is None else f"{r['maxrss_kb'] / 1024:.0f} MB, "
                f"{'completed' if r['completed'] else 'not completed'}"])
    peer = _row(results, "s6-cpu", "fast_bitrix24")
    for label, bound, how in (("bitrix_threaded id_ranges", 2.5, "'fast' extra"),
                              ("bitrix_threaded id_ranges stdlib", 2.0, "standard library JSON")):
        me = _row(results, "s6-cpu", label)
        name = f"scenario 6: records per client CPU-s >= {bound}x fast_bitrix24's ({how})"
        if me and peer and me.get("cpu") and peer.get("cpu") and peer.get("records"):
            a = me["records"] / me["cpu"]
            b = peer["records"] / peer["cpu"]
            out.append([name, verdict(me["completed"] and peer["completed"] and a >= bound * b),
                        f"{a:,.0f} vs {b:,.0f} ({a / b:.2f}x)"])
        else:
            out.append([name, verdict(None), "—"])
    return out


def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"fast_bitrix24 {peer_env.version()}")


def render(results: List[Dict[str, Any]], command: str, started: str, took: float) -> str:
    parts = [f"Command: `{command}` — run {started}, took {took / 60:.1f} min; "
             f"bitrix_threaded from the {LIBRARY['label']}.",
             f"Machine: {machine()}.", "",
             "Times are unscaled portal seconds (wall / time scale); a figure in "
             "parentheses is a run that did not complete (time at which it stopped). "
             "*operating s*: server seconds charged by the portal's cost model; "
             "*client CPU s*: user+sys of the client process during the call; "
             "*portal CPU s*: the fake portal process (a diagnostic: when it approaches "
             "the wall time, the portal, not the client, was the bottleneck).", ""]
    for s in results:
        parts.append(render_scenario(s))
        parts.append("")
    parts.append("#### Targets")
    parts.append("")
    parts.append("| target | verdict | figures |")
    parts.append("|---|---|---|")
    for name, verdict, figures in targets(results):
        parts.append(f"| {name} | {verdict} | {figures} |")
    return "\n".join(parts) + "\n"


def update_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    block = f"{MARK_START}\n{table}{MARK_END}"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        text = text + "\n" + block + "\n"
    README.write_text(text, encoding="utf-8")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    parser.add_argument("--only", default="", help="comma-separated scenario keys")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="portal time scale for scenarios 1-4 (default 1: real time)")
    parser.add_argument("--stream-time-scale", type=float, default=0.25,
                        help="time scale for scenario 5 (default 0.25)")
    parser.add_argument("--plain-time-scale", type=float, default=0.25,
                        help="time scale for the plain loop's runs (default 0.25)")
    parser.add_argument("--offset-time-scale", type=float, default=0.05,
                        help="time scale for scenario 7 (default 0.05)")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not update perf/README.md (the full run does by default)")
    parser.add_argument("--contenders", default="",
                        help="comma-separated words; run only contenders whose label has one")
    parser.add_argument("--commit", default=None, metavar="REV",
                        help="benchmark the library (and portal) as of this commit, "
                             "extracted with git archive; default: the work tree")
    parser.add_argument("--render", default=None, metavar="JSON",
                        help="re-render the table of a saved results file "
                             "(perf/results/full-*.json) into perf/README.md and exit")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    options = parser.parse_args(argv)
    if options.render:
        saved = json.loads(Path(options.render).read_text())
        LIBRARY["label"] = saved.get("library", LIBRARY["label"])
        table = render(saved["results"], saved["command"], saved["started"], saved["took"])
        update_readme(table)
        print(table)
        return 0
    chosen = scenarios(options.quick)
    if options.list:
        for s in chosen:
            print(f"{s.key:12} {s.title}  [{', '.join(c.label for c in s.contenders)}]")
        return 0
    if options.only:
        keys = {k.strip() for k in options.only.split(",") if k.strip()}
        unknown = keys - {s.key for s in chosen}
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.key in keys]
    RESULTS.mkdir(exist_ok=True)
    if options.commit:
        use_commit(options.commit)
    else:
        LIBRARY["label"] = work_tree_label()
    print(f"bitrix_threaded from the {LIBRARY['label']}", flush=True)
    peer_python = peer_env.ensure()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    t0 = time.monotonic()
    only = [w.strip() for w in options.contenders.split(",") if w.strip()] or None
    scales = Scales(options.time_scale, options.stream_time_scale, options.plain_time_scale,
                    options.offset_time_scale)
    results = [run_scenario(s, scales, peer_python, only) for s in chosen]
    took = time.monotonic() - t0
    command = "python perf/bench.py" + (" " + " ".join(argv if argv is not None
                                                       else sys.argv[1:])).rstrip()
    table = render(results, command.strip(), started, took)
    mode = "quick" if options.quick else "full"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{mode}-{stamp}.json").write_text(json.dumps(
        {"command": command, "started": started, "took": took,
         "library": LIBRARY["label"], "results": results},
        indent=1, default=str))
    (RESULTS / f"latest-{mode}.md").write_text(table)
    print()
    print(table)
    if not (options.quick or options.only or options.contenders or options.no_readme):
        update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
