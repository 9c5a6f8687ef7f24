"""Shell entry: ``python -m bitrix_threaded.testing serve [options]``.

Prints the webhook and stats URLs, serves until Ctrl-C, exits 0.
"""
from __future__ import annotations

import argparse
import sys
import threading
from typing import List, Optional

from .faults import FAULT_KINDS
from .profiles import PROFILES

__all__ = ["add_portal_options", "build_parser", "main", "portal_arguments"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bitrix_threaded.testing",
        description="Run a fake Bitrix24 portal on loopback.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a fake portal until Ctrl-C")
    add_portal_options(serve)
    return parser


def add_portal_options(parser: argparse.ArgumentParser) -> None:
    """Add the FakePortal options to ``parser`` (reusable by other command lines)."""
    for name in ("deals", "leads", "contacts", "tasks"):
        parser.add_argument(f"--{name}", type=int, default=0, metavar="N")
    parser.add_argument("--users", type=int, default=10, metavar="N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="realistic")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X")
    parser.add_argument("--enterprise", action="store_true",
                        help="Enterprise bucket: 250 requests draining at 5/s")
    parser.add_argument("--limits", dest="limits", action="store_true", default=None,
                        help="force the standard limits on")
    parser.add_argument("--no-limits", dest="limits", action="store_false",
                        help="force the standard limits off")
    parser.add_argument("--bucket-capacity", type=float, default=None, metavar="N")
    parser.add_argument("--bucket-rate", type=float, default=None, metavar="X")
    parser.add_argument("--operating-limit", type=float, default=None, metavar="S")
    parser.add_argument("--fault-rate", type=float, default=0.0, metavar="P")
    parser.add_argument("--fault-kinds", default="error,disconnect",
                        help=f"comma-separated, from: {','.join(FAULT_KINDS)}")
    parser.add_argument("--stall-seconds", type=float, default=5.0, metavar="S")
    parser.add_argument("--mutation-rate", type=float, default=0.0, metavar="R")


def portal_arguments(options: argparse.Namespace) -> dict:
    """FakePortal keyword arguments from options added by :func:`add_portal_options`."""
    return {
        "deals": options.deals, "leads": options.leads, "contacts": options.contacts,
        "tasks": options.tasks, "users": options.users, "seed": options.seed,
        "host": options.host, "port": options.port, "profile": options.profile,
        "time_scale": options.time_scale, "enterprise": options.enterprise,
        "limits": options.limits, "bucket_capacity": options.bucket_capacity,
        "bucket_rate": options.bucket_rate, "operating_limit": options.operating_limit,
        "fault_rate": options.fault_rate,
        "fault_kinds": tuple(k.strip() for k in options.fault_kinds.split(",") if k.strip()),
        "stall_seconds": options.stall_seconds, "mutation_rate": options.mutation_rate,
    }


SERVE_SWITCH_INTERVAL = 0.05


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status (0 after Ctrl-C)."""
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        return _serve(parser, options)
    except KeyboardInterrupt:
        return 0


def _serve(parser: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    from .portal import FakePortal

    try:
        portal = FakePortal(**portal_arguments(options))
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    # This process only serves: let a thread encoding a large reply keep the
    # interpreter longer before handing over (the default 5 ms makes the connection
    # threads thrash; 50 ms serves about 40% more records per second).
    sys.setswitchinterval(SERVE_SWITCH_INTERVAL)
    try:
        portal.start()
    except OSError as exc:
        print(f"cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"Fake Bitrix24 portal ({portal.profile.name}) at {portal.url}")
        print(f"webhook: {portal.webhook}")
        print(f"stats:   {portal.url}/_portal/stats")
        print("Press Ctrl-C to stop.", flush=True)
        threading.Event().wait()
    finally:
        portal.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
