"""Shell entry: ``python -m bitrix_threaded.testing serve [options]``.

Serves a fake portal on loopback until Ctrl-C, with a data set big enough to try an
export on (10,000 deals by default, with the contacts, companies, leads, tasks and
users they refer to), after a banner naming the webhook, the counts and the limits.
Exits 0 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, Dict, List, Optional, Type

from .faults import FAULT_KINDS
from .profiles import PROFILES

__all__ = ["DEFAULT_COUNTS", "add_portal_options", "banner", "build_parser", "main",
           "portal_arguments", "serve"]

# Enough to see an export run for a while, generated in well under a second.
DEFAULT_COUNTS: Dict[str, int] = {
    "deals": 10_000, "leads": 2_000, "contacts": 5_000, "companies": 1_000, "tasks": 5_000,
    "users": 50,
}
_COUNT_HELP = {
    "deals": "CRM deals; each refers to an existing contact and company",
    "leads": "CRM leads; converted ones refer to an existing contact",
    "contacts": "CRM contacts; each may refer to an existing company",
    "companies": "CRM companies",
    "tasks": "tasks (tasks.task.*)",
    "users": "users; every record's owner fields refer to them",
}


def build_parser(prog: str = "python -m bitrix_threaded.testing",
                 parser_class: Type[argparse.ArgumentParser] = argparse.ArgumentParser,
                 ) -> argparse.ArgumentParser:
    """The ``serve`` command line, as its own program ``prog``."""
    parser = parser_class(
        prog=prog, description="Run a fake Bitrix24 portal on loopback.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve", help="serve a fake portal until Ctrl-C",
        description="Serve a fake Bitrix24 portal on loopback until Ctrl-C. It prints "
                    "the webhook to use (it contains the portal's secret), the record "
                    "counts and the limits in force.")
    add_portal_options(serve_parser)
    return parser


def add_portal_options(parser: argparse.ArgumentParser) -> None:
    """Add the FakePortal options to ``parser`` (reusable by other command lines)."""
    data = parser.add_argument_group("data (generated from --seed, the same on every run)")
    for name, default in DEFAULT_COUNTS.items():
        data.add_argument(f"--{name}", type=int, default=default, metavar="N",
                          help=f"{_COUNT_HELP[name]} (default {default:,})")
    data.add_argument("--seed", type=int, default=1,
                      help="seed of the generated records and IDs (default 1)")

    where = parser.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, loopback only)")
    where.add_argument("--port", type=int, default=0,
                       help="port to listen on (default 0: a free port, printed)")

    timing = parser.add_argument_group("timing and limits")
    timing.add_argument("--profile", choices=sorted(PROFILES), default="realistic",
                        help="cost profile: how long calls take and whether the standard "
                             "limits apply; instant never sleeps and has no limits "
                             "(default realistic)")
    timing.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="multiply every duration by X (0.1 runs ten times faster, "
                             "limits included; default 1)")
    timing.add_argument("--enterprise", action="store_true",
                        help="Enterprise bucket: 250 requests draining at 5/s")
    timing.add_argument("--limits", dest="limits", action="store_true", default=None,
                        help="force the standard limits on, whatever the profile")
    timing.add_argument("--no-limits", dest="limits", action="store_false",
                        help="force the standard limits off")
    timing.add_argument("--bucket-capacity", type=float, default=None, metavar="N",
                        help="leaky bucket size in requests (default 50; 250 Enterprise)")
    timing.add_argument("--bucket-rate", type=float, default=None, metavar="X",
                        help="leaky bucket drain in requests per second (default 2; 5 "
                             "Enterprise)")
    timing.add_argument("--operating-limit", type=float, default=None, metavar="S",
                        help="server seconds per method per 10 minutes before 429 "
                             "OPERATION_TIME_LIMIT (default 480)")

    faults = parser.add_argument_group("faults and changes")
    faults.add_argument("--fault-rate", type=float, default=0.0, metavar="P",
                        help="probability that a request fails (default 0)")
    faults.add_argument("--fault-kinds", default="error,disconnect",
                        help=f"comma-separated kinds of failure, from: {','.join(FAULT_KINDS)} "
                             "(default error,disconnect)")
    faults.add_argument("--stall-seconds", type=float, default=5.0, metavar="S",
                        help="how long a 'stall' fault waits before answering (default 5)")
    faults.add_argument("--mutation-rate", type=float, default=0.0, metavar="R",
                        help="records inserted and deleted per second while serving, to "
                             "test exports against a changing portal (default 0)")


def portal_arguments(options: argparse.Namespace) -> Dict[str, Any]:
    """FakePortal keyword arguments from options added by :func:`add_portal_options`."""
    return {
        "deals": options.deals, "leads": options.leads, "contacts": options.contacts,
        "companies": options.companies, "tasks": options.tasks, "users": options.users,
        "seed": options.seed,
        "host": options.host, "port": options.port, "profile": options.profile,
        "time_scale": options.time_scale, "enterprise": options.enterprise,
        "limits": options.limits, "bucket_capacity": options.bucket_capacity,
        "bucket_rate": options.bucket_rate, "operating_limit": options.operating_limit,
        "fault_rate": options.fault_rate,
        "fault_kinds": tuple(k.strip() for k in options.fault_kinds.split(",") if k.strip()),
        "stall_seconds": options.stall_seconds, "mutation_rate": options.mutation_rate,
    }


def banner(portal: Any) -> List[str]:
    """The lines printed when serving starts: where, what data, which limits."""
    counts = ", ".join(f"{portal.count(entity):,} {entity}s" for entity in
                       ("deal", "lead", "contact", "company", "task", "user"))
    counts = counts.replace("companys", "companies")
    return [
        f"Fake Bitrix24 portal ({portal.profile.name} profile) at {portal.url}",
        f"webhook: {portal.webhook}",
        f"data:    {counts}",
        f"limits:  {portal.describe_limits()}",
        f"stats:   {portal.url}/_portal/stats",
        "Press Ctrl-C to stop.",
    ]


SERVE_SWITCH_INTERVAL = 0.05


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status (0 after Ctrl-C)."""
    parser = build_parser()
    options = parser.parse_args(argv)
    from .portal import FakePortal

    try:
        FakePortal(**portal_arguments(options))
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    return serve(options)


def serve(options: argparse.Namespace) -> int:
    """Serve the portal ``options`` describe until Ctrl-C; returns the exit status.

    The options must already be valid (FakePortal raises TypeError/ValueError if not).
    """
    from .portal import FakePortal

    portal = FakePortal(**portal_arguments(options))
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
        print("\n".join(banner(portal)), flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        return 0
    finally:
        portal.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
