"""How ``bitrix-threaded export`` writes records: JSONL and CSV sinks, safe against Ctrl-C.

A sink takes records one at a time and writes each one whole. :func:`export_records`
copies a client's records into a sink under an :class:`InterruptShield`, which defers
Ctrl-C while a record is being written, so a file cut short by Ctrl-C still ends with a
complete line: a valid JSONL (or CSV) file holding every record written so far.

Output files are opened on the first write (or when a sink is closed after a complete
export), so an export that fails before its first record leaves an existing file untouched.

Not thread-safe: one sink and one shield belong to the thread running the export.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import (
    IO, Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Sequence,
    Union,
)

from .errors import BitrixError

__all__ = [
    "CSV_HEADER_SAMPLE",
    "CsvSink",
    "ExportOutcome",
    "InterruptShield",
    "JsonLinesSink",
    "Output",
    "OutputError",
    "Sink",
    "csv_cell",
    "dump_json",
    "export_records",
]

#: Buffered output is flushed with the first record written this many seconds after the
#: last flush, so a reader following the file (``tail -f``) sees records as they arrive.
FLUSH_SECONDS = 1.0

#: The CSV header is the union of the keys of this many first records (ten pages).
CSV_HEADER_SAMPLE = 500


class OutputError(Exception):
    """The records cannot be written as asked (unwritable file, records unfit for CSV)."""


def dump_json(value: Any) -> str:
    """Compact JSON, non-ASCII characters kept as they are."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def csv_cell(value: Any) -> str:
    """One CSV cell: strings as they are, ``None`` empty, everything else as JSON.

    Numbers and booleans become ``12``, ``1.5``, ``true``; lists and objects their JSON
    text, which ``json.loads`` turns back into the value.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return dump_json(value)


class Output:
    """A text stream opened on first use: the file ``path``, or standard output.

    ``path`` ``None`` or ``"-"`` means standard output, written as UTF-8 whatever the
    terminal's encoding and left open afterwards. Files are UTF-8 and truncated.
    ``label`` names the destination in messages instead of its path.
    """

    def __init__(self, path: Optional[str], label: Optional[str] = None) -> None:
        self.path = None if path in (None, "-") else path
        self._label = label
        self._stream: Optional[IO[str]] = None
        self._wrapper: Optional[io.TextIOWrapper] = None
        #: True once the destination was opened (a file created or truncated).
        self.opened = False

    @property
    def name(self) -> str:
        """How to name the destination in messages."""
        if self._label:
            return self._label
        return self.path if self.path is not None else "standard output"

    def stream(self) -> IO[str]:
        """The open stream; opens it on the first call. Raises :class:`OutputError`."""
        if self._stream is None:
            self._stream = self._open()
            self.opened = True
        return self._stream

    def _open(self) -> IO[str]:
        # newline="" everywhere: JSONL writes "\n" itself and the csv module wants it.
        if self.path is not None:
            try:
                return open(self.path, "w", encoding="utf-8", newline="")
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        stdout = sys.stdout
        buffer = getattr(stdout, "buffer", None)
        if buffer is None:
            return stdout
        stdout.flush()
        self._wrapper = io.TextIOWrapper(buffer, encoding="utf-8", newline="")
        return self._wrapper

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    def close(self) -> None:
        """Flush and close a file; flush standard output but leave it open. Idempotent."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.flush()
        finally:
            if self._wrapper is not None:
                # Detaching keeps the wrapper from closing sys.stdout's buffer.
                self._wrapper.detach()
                self._wrapper = None
            elif self.path is not None:
                stream.close()


class JsonLinesSink:
    """One JSON object per line, UTF-8, flushed at least every :data:`FLUSH_SECONDS`."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.written = 0
        self._flushed_at = time.monotonic()

    def write(self, record: Any) -> None:
        """Write one record as one line (a single write call)."""
        line = dump_json(record) + "\n"
        self.output.stream().write(line)
        self.written += 1
        now = time.monotonic()
        if now - self._flushed_at >= FLUSH_SECONDS:
            self.output.flush()
            self._flushed_at = now

    def warnings(self) -> List[str]:
        return []

    def close(self, complete: bool = True) -> None:
        """Flush and close; a ``complete`` export without records leaves an empty file."""
        if complete:
            self.output.stream()
        self.output.close()


class CsvSink:
    """Records (JSON objects) as CSV rows under one header line.

    The header is ``fields`` (the explicit ``--select`` names, wildcards left out)
    followed by every other key of the first :data:`CSV_HEADER_SAMPLE` records, in the
    order first seen; those records are held back until the header is known. A later
    record's key outside the header is left out of its row; :meth:`warnings` names such
    keys. Cells are made by :func:`csv_cell`; a missing key gives an empty cell.
    """

    def __init__(self, output: Output, fields: Sequence[str] = ()) -> None:
        self.output = output
        self.written = 0
        self._fields = list(dict.fromkeys(fields))
        self._held: List[Mapping[str, Any]] = []
        self._header: Optional[List[str]] = None
        self._columns: FrozenSet[str] = frozenset()
        self._writer: Any = None
        self._left_out: Dict[str, int] = {}
        self._flushed_at = time.monotonic()

    def write(self, record: Any) -> None:
        if not isinstance(record, Mapping):
            raise OutputError(
                f"CSV needs records that are JSON objects, got {type(record).__name__}; "
                "use --format jsonl")
        if self._header is None:
            self._held.append(record)
            if len(self._held) >= CSV_HEADER_SAMPLE:
                self._start()
        else:
            self._row(record)
        self.written += 1
        now = time.monotonic()
        if self._header is not None and now - self._flushed_at >= FLUSH_SECONDS:
            self.output.flush()
            self._flushed_at = now

    def _start(self) -> None:
        header = list(self._fields)
        for record in self._held:
            header.extend(key for key in record if key not in header)
        self._header = header
        self._columns = frozenset(header)
        self._writer = csv.writer(self.output.stream())
        if header:
            self._writer.writerow(header)
        held, self._held = self._held, []
        for record in held:
            self._row(record)

    def _row(self, record: Mapping[str, Any]) -> None:
        for key in record:
            if key not in self._columns:
                self._left_out[key] = self._left_out.get(key, 0) + 1
        self._writer.writerow([csv_cell(record.get(key)) for key in self._header or ()])

    def warnings(self) -> List[str]:
        """Messages about values the CSV could not hold (empty when every value fit)."""
        if not self._left_out:
            return []
        names = ", ".join(sorted(self._left_out))
        return [f"fields missing from the CSV header were left out: {names} "
                "(name them with --select, or use --format jsonl)"]

    def close(self, complete: bool = True) -> None:
        """Write the held records (header first), flush and close.

        Without records, a ``complete`` export leaves a file holding just the header
        (empty when no fields were named); an incomplete one leaves no file.
        """
        if self._header is None and (complete or self._held):
            self._start()
        self.output.close()


Sink = Union[JsonLinesSink, CsvSink]


class InterruptShield:
    """Defers Ctrl-C (SIGINT, and SIGTERM) during ``with shield:`` blocks, raising it when
    they end.

    Outside a block, Ctrl-C raises :class:`KeyboardInterrupt` at once, as usual. Inside,
    it is remembered and raised as the outermost block exits, unless that block is
    already leaving with an exception. Takes effect only while :meth:`active`, only in
    the main thread (the only one Python delivers signals to), and only when SIGINT has
    Python's default handler (a process that ignores Ctrl-C keeps ignoring it).
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    @contextlib.contextmanager
    def active(self) -> Iterator["InterruptShield"]:
        """Install the handlers for the duration of the ``with`` block.

        SIGTERM (a service manager stopping the export) is handled as Ctrl-C, when it
        has its default action: the export stops the same way and its file stays valid.
        """
        previous = {}
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
            sigterm = getattr(signal, "SIGTERM", None)
            if sigterm is not None and signal.getsignal(sigterm) == signal.SIG_DFL:
                previous[sigterm] = signal.signal(sigterm, self._on_sigint)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    def __enter__(self) -> "InterruptShield":
        self._depth += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._pending:
            self._pending = False
            if exc_type is None:
                raise KeyboardInterrupt


@dataclass
class ExportOutcome:
    """How an export ended: records written, seconds taken, and why it stopped early."""

    written: int
    seconds: float
    interrupted: bool = False
    error: Optional[BaseException] = None

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def silence_stdout() -> None:
    # After a broken pipe, later flushes of stdout (ours and the interpreter's at exit)
    # would fail again; pointing the descriptor at /dev/null lets them succeed quietly.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def export_records(records: Iterable[Any], sink: Sink,
                   on_record: Optional[Callable[[Any], None]] = None) -> ExportOutcome:
    """Write every record of ``records`` (e.g. ``Bitrix.iter_all(...)``) to ``sink``.

    Each record is written whole, inside an :class:`InterruptShield`; ``on_record(record)``
    is called after each write. Ctrl-C, a portal error (:class:`BitrixError`) or an output
    error end the export and are reported in the outcome rather than raised; the records
    written before stay in the output. The sink is always closed, and ``records`` too
    when it is a generator (which cancels the client's requests not sent yet).
    """
    shield = InterruptShield()
    started = time.perf_counter()
    interrupted = finished = False
    error: Optional[BaseException] = None
    with shield.active():
        try:
            for record in records:
                with shield:
                    sink.write(record)
                    if on_record is not None:
                        on_record(record)
            finished = True
        except KeyboardInterrupt:
            interrupted = True
        except (BitrixError, OutputError, OSError) as exc:
            if isinstance(exc, BrokenPipeError) and sink.output.path is None:
                silence_stdout()
            error = exc
        finally:
            try:
                with shield:
                    close = getattr(records, "close", None)
                    if close is not None:
                        close()
                    try:
                        sink.close(complete=finished)
                    except (OutputError, OSError) as exc:
                        error = error or exc
            except KeyboardInterrupt:
                interrupted = True
    return ExportOutcome(sink.written, time.perf_counter() - started, interrupted, error)
