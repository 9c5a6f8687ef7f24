"""The ``bitrix-threaded`` command line (also ``python -m bitrix_threaded``).

::

    bitrix-threaded export METHOD [--params JSON] [--select F ...] [--filter KEY=VALUE ...]
                           [--format jsonl|csv] [-o FILE] [--strategy id_ranges|offset]
                           [--webhook URL] [--retries N] [--shared-limits URL]
                           [--requests-per-second X] [--request-pool-size N] [--quiet]
    bitrix-threaded call METHOD [--params JSON] [--raw] [--webhook URL] [--retries N]
                         [--shared-limits URL]
    bitrix-threaded demo [--deals N] [--profile light|realistic] [--time-scale X]
                         [-o FILE] [--quiet]
    bitrix-threaded serve [the options of python -m bitrix_threaded.testing serve; --help]
    bitrix-threaded --version

The webhook comes from ``--webhook`` or the ``BITRIX_WEBHOOK`` environment variable.
``--shared-limits`` (or ``BITRIX_SHARED_LIMITS``) names a Redis shared with the other
processes and hosts calling the same portal.

``export`` writes records as pages arrive (in no set order), JSONL by default or CSV
(``--format csv``, or an output file named ``*.csv``); see :mod:`.cli_output` for the CSV
header rule and cell encoding. A progress bar shows on stderr when stderr is a terminal
and ``--quiet`` is not given; a summary line (records, seconds, records/s) ends every
export unless ``--quiet``. Ctrl-C stops it, keeps the records written so far, each one
whole, and exits 130.

Exit status: 0 on success; 1 when the command failed while running (portal unreachable
or refusing, output not writable, demo check failed); 2 for bad command-line input; 130
after Ctrl-C. Every error is one line on stderr, ``bitrix-threaded: error: ...``, with
webhook tokens masked; unexpected internal errors too (set ``BITRIX_THREADED_DEBUG=1``
to see their traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import warnings
from typing import (
    Any, Callable, Dict, Iterator, List, Mapping, NoReturn, Optional, Sequence, Set,
)

from ._version import __version__
from .auth import Webhook, redact_text
from .client import Bitrix
from .cli_output import (
    CSV_HEADER_SAMPLE,
    CsvSink,
    ExportOutcome,
    JsonLinesSink,
    Output,
    OutputError,
    Sink,
    export_records,
    silence_stdout,
)
from .errors import AuthError, BitrixError, TransportError
from .methods import known_list_methods
from .retry import RetryPolicy
from .validation import check_method

__all__ = ["main"]

PROG = "bitrix-threaded"
WEBHOOK_ENV = "BITRIX_WEBHOOK"
DEBUG_ENV = "BITRIX_THREADED_DEBUG"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEMO_DEALS = 20_000
DEMO_PROFILE = "light"
DEMO_TIME_SCALE = 0.1
# The standard plan's limits, as the fake portal applies them before its time scale.
STANDARD_RATE = 2.0
STANDARD_POOL = 50
STANDARD_OPERATING_LIMIT = 480.0

# An optional operator prefix (">", ">=", "!=", "%", "=%", "@", ...), a field name, "=",
# then the value, which may itself contain "=".
_FILTER_ITEM = re.compile(r"(?P<key>[!<>=@%]*[^!<>=@%][^=]*)=(?P<value>.*)", re.DOTALL)


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


class CommandFailed(Exception):
    """The command could not do its job: exit status 1."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class Console:
    """One-line messages on stderr, with every registered secret masked."""

    def __init__(self) -> None:
        self._secrets: List[str] = []

    def keep_secret(self, *secrets: str) -> None:
        self._secrets.extend(s for s in secrets if s)

    def redact(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def error(self, message: str) -> None:
        self.note(f"{PROG}: error: {message}")

    def warn(self, message: str) -> None:
        self.note(f"{PROG}: warning: {message}")

    def show_warning(self, message: Any, category: Any, filename: str, lineno: int,
                     file: Any = None, line: Optional[str] = None) -> None:
        """A :func:`warnings.showwarning` replacement: the text only, as one line."""
        self.warn(str(message))

    def note(self, message: str) -> None:
        line = " ".join(self.redact(str(message)).splitlines())
        print(line, file=sys.stderr, flush=True)


# -- argument helpers -------------------------------------------------------------------

def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, got 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def json_params(text: Optional[str], *, allow_list: bool = False) -> Any:
    """The ``--params`` value: a JSON object (or, with ``allow_list``, a list of them)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--params is not valid JSON: {exc}") from None
    if isinstance(value, dict):
        return value
    if allow_list and isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    wanted = "a JSON object or a list of objects" if allow_list else "a JSON object"
    raise UsageError(f"--params must be {wanted}, like '{{\"filter\": {{\"ID\": \"1\"}}}}'")


def _clause(params: Dict[str, Any], name: str, kind: type, default: Callable[[], Any]) -> Any:
    """The ``name`` clause of ``params`` (keys compared case-insensitively), created if absent."""
    for key, value in params.items():
        if key.lower() == name:
            if not isinstance(value, kind):
                raise UsageError(f"'{key}' in --params must be a JSON "
                                 f"{'object' if kind is dict else 'array'}")
            return value
    params[name] = default()
    return params[name]


def merge_filters(params: Dict[str, Any], items: Sequence[str]) -> None:
    """Merge ``KEY=VALUE`` items into ``params["filter"]``; values stay strings.

    ``KEY`` may start with an operator (``>ID=100``, ``>=DATE_CREATE=2024-01-01``,
    ``!STAGE_ID=WON``, ``%TITLE=shop``); the value is everything after the ``=`` that
    follows the field name. A later item for the same key replaces an earlier one.
    """
    if not items:
        return
    parsed = []
    for item in items:
        match = _FILTER_ITEM.fullmatch(item)
        if not match:
            raise UsageError("--filter expects KEY=VALUE (e.g. STAGE_ID=WON or '>ID=100'), "
                             f"got {item!r}")
        parsed.append((match.group("key").strip(), match.group("value")))
    target = _clause(params, "filter", dict, dict)
    for key, value in parsed:
        target[key] = value


def merge_select(params: Dict[str, Any], names: Sequence[str]) -> List[str]:
    """Add ``--select`` names (comma-separated lists allowed) to ``params["select"]``.

    Returns the names given on the command line, in order, without duplicates.
    """
    fields: List[str] = []
    for entry in names:
        fields.extend(part.strip() for part in entry.split(",") if part.strip())
    fields = list(dict.fromkeys(fields))
    if fields:
        target = _clause(params, "select", list, list)
        target.extend(f for f in fields if f not in target)
    return fields


def list_method_name(text: str, *, any_method: bool = False) -> str:
    """``text`` as a method name, refused unless it is a list method.

    Known list methods, and methods whose last part starts or ends with ``list``
    (``crm.deal.list``, ``task.elapseditem.getlist``), are list methods; ``any_method``
    (``--strategy offset``) accepts any name, for paged methods named otherwise.
    """
    try:
        name = check_method(text)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    lowered = name.lower()
    last = lowered.rsplit(".", 1)[-1]
    listing = last.startswith("list") or last.endswith("list")
    if any_method or listing or lowered in known_list_methods():
        return name
    raise UsageError(f"{name} is not a list method; export takes one such as crm.deal.list "
                     "(for a paged method named otherwise, add --strategy offset)")


def output_format(chosen: Optional[str], path: Optional[str]) -> str:
    """``--format`` if given, else ``csv`` for a ``.csv`` output file, else ``jsonl``."""
    if chosen:
        return chosen
    if path and path.lower().endswith(".csv"):
        return "csv"
    return "jsonl"


def resolve_webhook(value: Optional[str], console: Console) -> Webhook:
    """The webhook from ``--webhook`` or ``$BITRIX_WEBHOOK``; its token joins the secrets."""
    url = value if value is not None else os.environ.get(WEBHOOK_ENV, "")
    url = url.strip()
    if not url:
        raise UsageError(f"no webhook: pass --webhook URL or set {WEBHOOK_ENV}")
    console.keep_secret(url)
    try:
        webhook = Webhook(url)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"not a Bitrix24 webhook URL: {exc}") from None
    console.keep_secret(*webhook.secrets())
    return webhook


def describe(error: BaseException) -> str:
    """A one-line account of a failure while running."""
    if isinstance(error, TransportError):
        return f"cannot reach the portal: {error}"
    if isinstance(error, AuthError):
        return f"the portal refused the credentials: {error}"
    return str(error)


def _reader_left(error: BaseException, output: Output) -> bool:
    """True when standard output's reader closed it (``| head``): a normal end, not an error.

    Like any Unix filter, the command then stops quietly with status 0.
    """
    return isinstance(error, BrokenPipeError) and output.path is None


def _describe_output_error(error: OSError, where: str) -> str:
    if isinstance(error, BrokenPipeError):
        return f"{where} was closed by its reader (broken pipe)"
    return f"cannot write {where}: {error.strerror or error}"


def _progress_wanted(quiet: bool) -> bool:
    # The client draws bars only when stderr is a terminal (or BITRIX_THREADED_PROGRESS
    # forces it); redirected stderr gets the summary line alone.
    return not quiet


def _make_client(webhook_url: str, *, verbose: bool, retries: Optional[int] = None,
                 **limits: Any) -> Bitrix:
    kwargs = {k: v for k, v in limits.items() if v is not None}
    if retries is not None:
        kwargs["retry"] = RetryPolicy(max_attempts=retries + 1)
    try:
        return Bitrix(webhook_url, verbose=verbose, **kwargs)
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None


# -- exporting --------------------------------------------------------------------------

def _records(client: Bitrix, method: str, params: Mapping[str, Any],
             strategy: Optional[str]) -> Iterator[Any]:
    """The client's record iterator; misuse (raised before any request) is a usage error."""
    try:
        return client.iter_all(method, dict(params), strategy=strategy)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _sink(fmt: str, output: Output, fields: Sequence[str]) -> Sink:
    if fmt == "csv":
        return CsvSink(output, [f for f in fields if "*" not in f])
    return JsonLinesSink(output)


def _report_end(outcome: ExportOutcome, sink: Sink, console: Console) -> Optional[int]:
    """Print how an unfinished export ended; its exit status, or None if it finished."""
    for message in sink.warnings():
        console.warn(message)
    where = sink.output.name
    if outcome.interrupted:
        if sink.output.opened:
            console.note(f"{PROG}: interrupted: {outcome.written:,} records written to {where}")
        else:
            console.note(f"{PROG}: interrupted before the first record: nothing was written"
                         + (f" ({where} was not touched)" if sink.output.path else ""))
        return EXIT_INTERRUPTED
    if outcome.error is not None:
        error = outcome.error
        if _reader_left(error, sink.output):
            return EXIT_OK
        if isinstance(error, OSError):
            message = _describe_output_error(error, where)
        else:
            message = describe(error)
        if outcome.written:
            message += f" ({outcome.written:,} records written to {where} before that)"
        console.error(message)
        return EXIT_FAILURE
    return None


def run_export(options: argparse.Namespace, console: Console, argv: Sequence[str]) -> int:
    params = json_params(options.params)
    fields = merge_select(params, options.select or ())
    merge_filters(params, options.filter or ())
    method = list_method_name(options.method, any_method=options.strategy == "offset")
    fmt = output_format(options.format, options.output)
    webhook = resolve_webhook(options.webhook, console)
    output = Output(options.output)
    sink = _sink(fmt, output, fields)
    client = _make_client(
        webhook.base_url, verbose=_progress_wanted(options.quiet), retries=options.retries,
        requests_per_second=options.requests_per_second,
        request_pool_size=options.request_pool_size, shared_limits=options.shared_limits)
    with client:
        outcome = export_records(_records(client, method, params, options.strategy), sink)
        status = _report_end(outcome, sink, console)
        if status is not None:
            return status
        if not options.quiet:
            console.note(f"{outcome.written:,} records of {method} written to {output.name} "
                         f"in {outcome.seconds:.2f} s ({outcome.rate:,.0f} records/s)")
    return EXIT_OK


# -- call -------------------------------------------------------------------------------

def run_call(options: argparse.Namespace, console: Console, argv: Sequence[str]) -> int:
    params = json_params(options.params, allow_list=True)
    try:
        method = check_method(options.method) if options.method.lower() != "batch" else "batch"
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if method == "batch" and (options.raw or not isinstance(params, dict)):
        raise UsageError("batch takes --params '{\"cmd\": {...}}' and no --raw")
    if options.raw and not isinstance(params, dict):
        raise UsageError("--raw takes a JSON object in --params")
    webhook = resolve_webhook(options.webhook, console)
    with _make_client(webhook.base_url, verbose=False, retries=options.retries,
                      shared_limits=options.shared_limits) as client:
        try:
            if method == "batch":
                result: Any = client.call_batch(params)
            else:
                result = client.call(method, params, raw=options.raw)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    text = json.dumps(result, ensure_ascii=False, indent=2)
    out = Output(None)
    try:
        try:
            out.stream().write(text + "\n")
        finally:
            out.close()
    except BrokenPipeError as exc:
        if _reader_left(exc, out):
            silence_stdout()
            return EXIT_OK
        raise
    return EXIT_OK


# -- demo -------------------------------------------------------------------------------

def run_demo(options: argparse.Namespace, console: Console, argv: Sequence[str]) -> int:
    from .testing import FakePortal

    scale = options.time_scale
    fmt = output_format(None, options.output)
    rate = STANDARD_RATE / scale
    operating_limit = STANDARD_OPERATING_LIMIT * scale
    path = options.output
    temporary = None
    if path is None:
        handle, temporary = tempfile.mkstemp(prefix="bitrix-threaded-demo-", suffix=".jsonl")
        os.close(handle)
        path = temporary
    seen: Set[Any] = set()
    try:
        with FakePortal(deals=options.deals, profile=options.profile, time_scale=scale) as portal:
            print(f"Fake Bitrix24 portal at {portal.url}: {options.deals:,} deals, "
                  f"{options.profile} profile, time scale {scale:g} (standard limits: "
                  f"{STANDARD_POOL} requests, then {rate:g}/s; {operating_limit:g} s of "
                  "operating time per method)", flush=True)
            label = None if temporary is None else "a temporary file (deleted)"
            sink = _sink(fmt, Output(path, label), ())
            client = _make_client(portal.webhook, verbose=_progress_wanted(options.quiet),
                                  requests_per_second=rate,
                                  request_pool_size=STANDARD_POOL,
                                  operating_time_limit=operating_limit)
            with client:
                outcome = export_records(_records(client, "crm.deal.list", {}, None), sink,
                                         on_record=lambda record: seen.add(record.get("ID")))
                status = _report_end(outcome, sink, console)
                if status is not None:
                    return status
            stats = portal.stats()
            expected = {str(i) for i in portal.ids("deal")}
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
    where = sink.output.name
    rejected_503, rejected_429 = stats["rejected_503"], stats["rejected_429"]
    print(f"Exported {outcome.written:,} deals in {outcome.seconds:.2f} s: "
          f"{outcome.rate:,.0f} records/s, to {where}")
    print(f"HTTP requests: {stats['requests']:,}; rejected: {rejected_503 + rejected_429} "
          f"(503 QUERY_LIMIT_EXCEEDED: {rejected_503}, "
          f"429 OPERATION_TIME_LIMIT: {rejected_429})", flush=True)
    problems = []
    if outcome.written != len(expected) or seen != expected:
        problems.append(f"{outcome.written:,} records exported with {len(seen):,} distinct IDs, "
                        f"the portal holds {len(expected):,} deals")
    if rejected_503 or rejected_429:
        problems.append(f"the portal rejected {rejected_503 + rejected_429} requests")
    if problems:
        raise CommandFailed("demo check failed: " + "; ".join(problems))
    print(f"Check passed: all {len(expected):,} deals exported exactly once, "
          "no request rejected", flush=True)
    return EXIT_OK


# -- serve ------------------------------------------------------------------------------

def run_serve(options: argparse.Namespace, console: Console, argv: Sequence[str]) -> int:
    # The fake portal is imported only here (and in demo): every other command starts
    # without it.
    from .testing import FakePortal
    from .testing.__main__ import add_portal_options, portal_arguments, serve

    parser = _Parser(prog=f"{PROG} serve",
                     description="Run the built-in fake Bitrix24 portal on loopback until "
                                 "Ctrl-C, as 'python -m bitrix_threaded.testing serve' does.")
    add_portal_options(parser)
    served = parser.parse_args(options.portal_args)
    # Building an unstarted portal first (cheap: records are generated on read) reports
    # bad values here, in this command's words.
    try:
        FakePortal(**portal_arguments(served))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return serve(served)


# -- parser and entry point -------------------------------------------------------------

def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--webhook", metavar="URL",
                        help="inbound webhook https://PORTAL/rest/USER_ID/CODE/ (default: "
                             f"${WEBHOOK_ENV}, which keeps the token out of the process list)")
    parser.add_argument("--retries", type=_non_negative_int, metavar="N",
                        help="retries of a request after a transient failure (default 5)")
    parser.add_argument("--shared-limits", metavar="URL",
                        help="redis://HOST:PORT/DB shared by every process and host calling "
                             "the portal, so that together they keep its limits (default: "
                             "$BITRIX_SHARED_LIMITS; needs the redis extra)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets ``run`` to its handler.

    ``serve`` takes its options unparsed (``portal_args``): they belong to the fake
    portal's own command line, which is imported only when ``serve`` runs.
    """
    parser = _Parser(
        prog=PROG,
        description="Export Bitrix24 list methods fast without tripping the portal's limits; "
                    "try it on a built-in fake portal with 'bitrix-threaded demo'.",
        epilog="exit status: 0 ok, 1 failure, 2 bad usage, 130 Ctrl-C; "
               f"{DEBUG_ENV}=1 shows tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    export = commands.add_parser(
        "export", help="write every record of a list method to JSONL or CSV",
        description="Write every record of a list method (e.g. crm.deal.list) to a file "
                    "or standard output, one JSON object per line (jsonl) or one CSV row "
                    "per record, as pages arrive (in no set order). CSV header: the "
                    f"--select fields, then every other key of the first "
                    f"{CSV_HEADER_SAMPLE} records; "
                    "strings are written as they are, null as an empty cell, other values "
                    "as JSON. A progress bar shows on stderr when "
                    "it is a terminal; a summary line follows. Ctrl-C stops the export, "
                    "keeps every record written so far (each line complete) and exits 130.")
    export.add_argument("method", metavar="METHOD", help="a list method, e.g. crm.deal.list")
    export.add_argument("--params", metavar="JSON",
                        help="method parameters as a JSON object, e.g. "
                             "'{\"order\": {\"ID\": \"ASC\"}}'")
    export.add_argument("--select", nargs="+", action="extend", metavar="F",
                        help="fields to select (also comma-separated); added to the select "
                             "of --params")
    export.add_argument("--filter", nargs="+", action="extend", metavar="KEY=VALUE",
                        help="filter entries merged into the filter of --params; values "
                             "stay strings; KEY may carry an operator: '>ID=100'")
    export.add_argument("--format", choices=("jsonl", "csv"),
                        help="output format (default: csv for a .csv file, else jsonl)")
    export.add_argument("-o", "--output", metavar="FILE",
                        help="output file (default: standard output)")
    export.add_argument("--strategy", choices=("id_ranges", "offset"),
                        help="pagination: id_ranges (default where the method allows) or "
                             "offset (any method, any order)")
    _add_connection_options(export)
    export.add_argument("--requests-per-second", type=_positive_float, metavar="X",
                        help="the portal's request rate (default 2; Enterprise 5)")
    export.add_argument("--request-pool-size", type=_positive_int, metavar="N",
                        help="the portal's burst size (default 50; Enterprise 250)")
    export.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no summary line")
    export.set_defaults(run=run_export)

    call = commands.add_parser(
        "call", help="call one method and print its result as JSON",
        description="Call one REST method and print its result as JSON on standard output. "
                    "A JSON list in --params makes one call per item (batched); method "
                    "'batch' takes '{\"cmd\": {\"label\": \"method?query\"}}'.")
    call.add_argument("method", metavar="METHOD", help="e.g. crm.deal.get")
    call.add_argument("--params", metavar="JSON", help="parameters as a JSON object")
    call.add_argument("--raw", action="store_true",
                      help="print the whole reply (result, time, total, next)")
    _add_connection_options(call)
    call.set_defaults(run=run_call)

    demo = commands.add_parser(
        "demo", help="export deals from a built-in fake portal and show the speed",
        description="Start the built-in fake portal with the standard limits, export all "
                    "its deals with matching client limits, check that every deal arrived "
                    "exactly once and that no request was rejected. Time runs faster by "
                    "1/TIME_SCALE on both sides.")
    demo.add_argument("--deals", type=_positive_int, default=DEMO_DEALS, metavar="N",
                      help=f"deals on the fake portal (default {DEMO_DEALS:,})")
    demo.add_argument("--profile", choices=("light", "realistic"), default=DEMO_PROFILE,
                      help=f"the portal's cost profile (default {DEMO_PROFILE})")
    demo.add_argument("--time-scale", type=_positive_float, default=DEMO_TIME_SCALE,
                      metavar="X", help=f"portal time multiplier (default {DEMO_TIME_SCALE})")
    demo.add_argument("-o", "--output", metavar="FILE",
                      help="keep the export here (.csv for CSV; default: a temporary file, "
                           "deleted)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=run_demo)

    serve = commands.add_parser(
        "serve", help="run the fake portal and print its webhook (serve --help: options)",
        add_help=False)
    serve.set_defaults(run=run_serve, portal_args=[])
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console()
    try:
        parser = build_parser()
        options, rest = parser.parse_known_args(args)
        if options.command == "serve":
            options.portal_args = rest
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        with warnings.catch_warnings():
            warnings.showwarning = console.show_warning
            status: int = options.run(options, console, args)
            return status
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except UsageError as exc:
        console.error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.note(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except (CommandFailed, BitrixError, OutputError) as exc:
        console.error(describe(exc))
        return EXIT_FAILURE
    except OSError as exc:  # e.g. standard output closed, no room for a temporary file
        console.error(str(exc))
        return EXIT_FAILURE
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        console.error(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
