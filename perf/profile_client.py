"""Where a client's CPU goes: one contender run under py-spy (all threads).

    python perf/profile_client.py [--client bitrix_threaded|fast_bitrix24]
                                  [--deals 100000] [--strategy id_ranges] [--rate 250]

Starts an ``instant`` fake portal with limits off (nothing sleeps, so the
client's own work is all there is), runs perf/contender.py under py-spy
(installed on first use into perf/.venv-tools) and prints the top functions
by own time (``--top``) and the py-spy summary. Raw output goes to
perf/results/profile-*.txt.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402
import peer_env  # noqa: E402

TOOLS = HERE / ".venv-tools"
PYSPY = TOOLS / "bin" / "py-spy"


def ensure_pyspy() -> Path:
    if not PYSPY.exists():
        venv.EnvBuilder(with_pip=True).create(TOOLS)
        subprocess.run([str(TOOLS / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "py-spy"], check=True, timeout=900)
    return PYSPY


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", default="bitrix_threaded")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--strategy", default=None)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    options = parser.parse_args()
    pyspy = ensure_pyspy()
    bench.RESULTS.mkdir(exist_ok=True)
    portal = bench.PortalProcess(options.deals, "instant", 1.0, enterprise=False, limits=False)
    try:
        spec = {"client": options.client, "job": "get_all", "method": "crm.deal.list",
                "params": bench.SELECT, "strategy": options.strategy,
                "webhook": portal.webhook, "time_scale": 1.0, "capacity": 50, "rate": 2.0,
                "operating_limit": 480.0, "limits": False, "ids_file": None, "out": None}
        spec_file = bench.RESULTS / "profile.spec.json"
        spec_file.write_text(json.dumps(spec))
        python = (str(peer_env.ensure()) if options.client == "fast_bitrix24"
                  else sys.executable)
        out = bench.RESULTS / f"profile-{options.client}.txt"
        raw = bench.RESULTS / f"profile-{options.client}.folded"
        subprocess.run([str(pyspy), "record", "--format", "raw", "--threads", "--gil", "--rate",
                        str(options.rate), "--output", str(raw), "--",
                        python, str(HERE / "contender.py"), str(spec_file)],
                       check=True, timeout=600, capture_output=True)
        own: dict = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            n = int(count)
            total += n
            leaf = frames[-1]
            own[leaf] = own.get(leaf, 0) + n
        lines = [f"{options.client}: {total} samples at {options.rate} Hz"]
        for leaf, n in sorted(own.items(), key=lambda kv: -kv[1])[:40]:
            lines.append(f"{100 * n / total:5.1f}%  {leaf}")
        out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        spec_file.unlink(missing_ok=True)
    finally:
        portal.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
