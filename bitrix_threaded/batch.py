"""The batch protocol: packing commands into ``batch`` calls and unpacking the replies.

The one place that knows the ``batch`` envelope (b24-rest-docs
``api-reference/how-to-call-rest-api/batch.md``): command labels, the
``result``/``result_error``/``result_total``/``result_next``/``result_time``
maps, the ``time`` blocks (each command's operating time is charged to its
own method), the label-to-method map and each command's cost class. The
runner, ``Bitrix.call_batch`` and the pagination driver all go through it.

Pure functions, no I/O, safe to call from any thread. The flow is::

    chunks = pack(commands)                 # [[(input index, Command), ...], ...]
    request = prepare(chunk)                # payload, label -> method / cost class
    reply = parse_batch_reply(envelope)     # the five result maps, normalised
    results, failures = split_reply(reply, chunk)

Commands are labelled by their input position (``c0``, ``c1``...), so the
results come back in input order without injecting anything into the
commands' parameters, and the labels are never ``0..n-1``, which would make
the portal answer with JSON lists instead of objects.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Tuple
from urllib.parse import parse_qs

from .encoding import encode_command, validate_method
from .errors import (
    BitrixError,
    CommandFailure,
    InvalidResponse,
    error_from_reply,
    reply_snippet,
)
from .paging import cost_class
from .retry import is_write_method

__all__ = [
    "MAX_BATCH_SIZE",
    "BatchReply",
    "BatchRequest",
    "Command",
    "TimeNumbers",
    "batch_payload",
    "command_label",
    "pack",
    "parse_batch_reply",
    "prepare",
    "prepare_encoded",
    "split_reply",
    "start_time",
    "time_numbers",
]

MAX_BATCH_SIZE = 50
NOT_EXECUTED = "NOT_EXECUTED"

Label = Callable[[int], str]


def command_label(index: int) -> str:
    """Return the batch key of the command at input position ``index`` (``"c7"``).

    The letter prefix keeps the portal from ever answering with a JSON list.
    Raises ``TypeError`` for a non-int and ``ValueError`` for a negative index.
    """
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"command index must be an int, not {type(index).__name__}")
    if index < 0:
        raise ValueError(f"command index must be >= 0, got {index}")
    return f"c{index}"


@dataclass(frozen=True)
class Command:
    """One REST call to run inside a batch: a method name and its parameters.

    Validated on creation: ``TypeError``/``ValueError`` for a bad method name
    or params that are not a mapping (``None`` means no params).
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_method(self.method)
        if self.params is None:
            object.__setattr__(self, "params", {})
        elif not isinstance(self.params, Mapping):
            raise TypeError(
                f"params of {self.method} must be a mapping, not {type(self.params).__name__}"
            )

    @classmethod
    def encoded(cls, method: str, params: Mapping[str, Any], text: str) -> "Command":
        """A command whose ``text`` is already known: ``text`` must be what
        :func:`~bitrix_threaded.encoding.encode_command` gives for ``method`` and
        ``params`` (a strategy that encodes its repeated parameters once)."""
        command = cls(method, params)
        object.__setattr__(command, "_text", text)
        return command

    def respliced(self, params: Mapping[str, Any], text: str) -> "Command":
        """A command of the same (already validated) method with other ``params`` and
        their ``text``, as :meth:`encoded` gives, without checking the method again (a
        strategy's chain of pages makes thousands of these at once)."""
        command = object.__new__(Command)
        setattr_ = object.__setattr__
        setattr_(command, "method", self.method)
        setattr_(command, "params", params)
        setattr_(command, "_text", text)
        return command

    @property
    def text(self) -> str:
        """The command as sent inside a batch, ``"method?query"``; encoded once, then kept.

        Raises ``TypeError``/``ValueError`` for unencodable params.
        """
        text = self.__dict__.get("_text")
        if text is None:
            text = encode_command(self.method, self.params)
            object.__setattr__(self, "_text", text)
        return text


def _check_batch_size(batch_size: object) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
    return batch_size


def pack(
    commands: Sequence[Command], batch_size: int = MAX_BATCH_SIZE
) -> list[list[tuple[int, Command]]]:
    """Split ``commands`` into chunks of at most ``batch_size``, keeping order.

    Each item is ``(input index, command)``. Raises ``ValueError`` unless
    ``1 <= batch_size <= 50`` and ``TypeError`` for items that are not
    :class:`Command`.
    """
    _check_batch_size(batch_size)
    if isinstance(commands, (str, bytes)) or not isinstance(commands, Sequence):
        raise TypeError(f"commands must be a sequence of Command, not {type(commands).__name__}")
    indexed = []
    for index, command in enumerate(commands):
        if not isinstance(command, Command):
            raise TypeError(f"commands[{index}] is {type(command).__name__}, not Command")
        indexed.append((index, command))
    return [indexed[start:start + batch_size] for start in range(0, len(indexed), batch_size)]


def batch_payload(
    chunk: Sequence[tuple[int, Command]], *, halt: bool = False, label: Label = command_label
) -> dict[str, Any]:
    """Return the ``batch`` request body for one chunk from :func:`pack`.

    ``{"halt": 0 | 1, "cmd": {label(index): "method?query"}}``, in chunk
    order. ``label`` only needs replacing to match recorded replies.
    Raises ``ValueError`` for an empty chunk, more than 50 commands or a
    repeated label; ``TypeError``/``ValueError`` for unencodable params.
    """
    if not chunk:
        raise ValueError("a batch needs at least one command")
    if len(chunk) > MAX_BATCH_SIZE:
        raise ValueError(f"a batch holds at most {MAX_BATCH_SIZE} commands, got {len(chunk)}")
    cmd: dict[str, str] = {}
    for index, command in chunk:
        key = label(index)
        if key in cmd:
            raise ValueError(f"two commands share the batch label {key!r}")
        cmd[key] = command.text
    return {"halt": 1 if halt else 0, "cmd": cmd}


@dataclass(frozen=True)
class BatchRequest:
    """One ``batch`` request ready to send, with what the limiter needs to know of it.

    ``payload``: the body; ``labels``: label -> method (lower case), so each
    command's ``result_time`` is charged to its method; ``classes``: label ->
    cost class; ``counts``: ``(method, cost class)`` -> commands, for booking
    the operating window; ``write``: whether any command may change data.
    """

    payload: dict[str, Any]
    labels: dict[str, str]
    classes: dict[str, int]
    counts: dict[Any, int]
    write: bool


def prepare(chunk: Sequence[tuple[int, Command]], *, halt: bool = False,
            label: Label = command_label) -> BatchRequest:
    """The :class:`BatchRequest` for one chunk from :func:`pack` (see :func:`batch_payload`)."""
    payload = batch_payload(chunk, halt=halt, label=label)
    keys = list(payload["cmd"])
    labels = {key: command.method.lower() for key, (_, command) in zip(keys, chunk)}
    classes = {key: cost_class(command.params) for key, (_, command) in zip(keys, chunk)}
    return _request(payload, labels, classes)


def prepare_encoded(cmd: Mapping[str, str], *, halt: bool = False) -> BatchRequest:
    """The :class:`BatchRequest` for commands already encoded as ``label -> "method?query"``
    (``Bitrix.call_batch``); a list page's ``start`` is read back from its query."""
    if not cmd:
        raise ValueError("a batch needs at least one command")
    if len(cmd) > MAX_BATCH_SIZE:
        raise ValueError(f"a batch holds at most {MAX_BATCH_SIZE} commands, got {len(cmd)}")
    labels, classes = {}, {}
    for key, text in cmd.items():
        method, _, query = text.partition("?")
        labels[key] = method.lower()
        start = parse_qs(query).get("start") if "start=" in query else None
        classes[key] = cost_class({"start": start[-1]}) if start else 0
    return _request({"halt": 1 if halt else 0, "cmd": dict(cmd)}, labels, classes)


def _request(payload: dict[str, Any], labels: dict[str, str], classes: dict[str, int]
             ) -> BatchRequest:
    counts = Counter((labels[key], classes[key]) for key in labels)
    write = any(is_write_method(method) for method in set(labels.values()))
    return BatchRequest(payload, labels, classes, dict(counts), write)


TimeNumbers = Tuple[Optional[float], Optional[float], Optional[float], Optional[float]]


def _time_number(block: Mapping[str, Any], key: str, *, negative: bool = True
                 ) -> Optional[float]:
    """A finite number (at least 0 unless ``negative``) as a float; None for anything
    else, as for an absent figure (a hostile NaN or negative duration included)."""
    value: Any = block.get(key)
    kind = type(value)
    if kind is float:
        number: float = value
    elif kind is int:
        try:
            number = float(value)
        except OverflowError:  # past any float
            return None
    else:
        return None
    if not math.isfinite(number) or (number < 0 and not negative):
        return None
    return number


def time_numbers(block: Any) -> TimeNumbers:
    """``(operating, reset_in, finish, processing)`` from a ``time`` block, None when absent.

    ``reset_in`` is ``operating_reset_at - finish`` in server seconds (0 at least),
    so the two clocks' skew never matters (b24-rest-docs ``api-reference/data-types.md``,
    the ``time`` block).
    """
    if not isinstance(block, Mapping):
        return None, None, None, None
    operating = _time_number(block, "operating", negative=False)
    reset_at, finish = _time_number(block, "operating_reset_at"), _time_number(block, "finish")
    reset_in = None
    if reset_at is not None and finish is not None:
        reset_in = max(0.0, reset_at - finish)
    return operating, reset_in, finish, _time_number(block, "processing", negative=False)


def start_time(block: Any) -> Optional[float]:
    """A ``time`` block's ``start`` (server seconds), None when absent."""
    return _time_number(block, "start") if isinstance(block, Mapping) else None


@dataclass(frozen=True)
class BatchReply:
    """The five per-command maps of a ``batch`` reply, keyed by label (str).

    ``results``: label -> result; ``errors``: label -> error body
    (``{"error", "error_description"}``); ``totals`` / ``nexts``: label ->
    ``total`` / ``next`` of list commands; ``times``: label -> that
    command's ``time`` block (its ``operating`` counts under its own method).
    """

    results: dict[str, Any]
    errors: dict[str, dict[str, Any]]
    totals: dict[str, int]
    nexts: dict[str, int]
    times: dict[str, dict[str, Any]]


def _malformed(why: str, envelope: object) -> InvalidResponse:
    return InvalidResponse(
        "INVALID_RESPONSE", why, method="batch", snippet=reply_snippet(envelope)
    )


def _label_map(value: object, name: str, envelope: Mapping[str, Any]) -> dict[str, Any]:
    # PHP serialises an empty array as [] and an array with keys 0..n-1 as a
    # JSON list; both stand for the same label -> value map.
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(i): item for i, item in enumerate(value)}
    if isinstance(value, Mapping):
        return {str(k): item for k, item in value.items()}
    raise _malformed(f"batch reply field {name} is a {type(value).__name__}", envelope)


def _int_map(value: object, name: str, envelope: Mapping[str, Any]) -> dict[str, int]:
    result = {}
    for key, item in _label_map(value, name, envelope).items():
        if isinstance(item, bool):
            raise _malformed(f"batch reply field {name}[{key}] is not an integer", envelope)
        try:
            result[key] = int(item)
        except (TypeError, ValueError):
            raise _malformed(
                f"batch reply field {name}[{key}] is not an integer", envelope
            ) from None
    return result


def _dict_map(value: object, name: str, envelope: Mapping[str, Any]
              ) -> dict[str, dict[str, Any]]:
    result = {}
    for key, item in _label_map(value, name, envelope).items():
        if not isinstance(item, Mapping):
            raise _malformed(f"batch reply field {name}[{key}] is not an object", envelope)
        result[key] = dict(item)
    return result


def parse_batch_reply(envelope: Mapping[str, Any]) -> BatchReply:
    """Normalise the JSON envelope of a ``batch`` call into a :class:`BatchReply`.

    ``envelope`` is the whole decoded body, ``{"result": {"result": ...,
    "result_error": ..., "result_total": ..., "result_next": ...,
    "result_time": ...}, "time": ...}``. Missing maps become ``{}``.
    Raises the mapped :class:`BitrixError` for an error envelope and
    :class:`InvalidResponse` for anything else that is not a batch reply.
    """
    if not isinstance(envelope, Mapping):
        raise _malformed(f"batch reply is a {type(envelope).__name__}, not an object", envelope)
    if "error" in envelope and "result" not in envelope:
        raise error_from_reply(None, envelope, "batch")
    body = envelope.get("result")
    if not isinstance(body, Mapping):
        raise _malformed("batch reply has no result object", envelope)
    return BatchReply(
        results=_label_map(body.get("result"), "result", envelope),
        errors=_dict_map(body.get("result_error"), "result_error", envelope),
        totals=_int_map(body.get("result_total"), "result_total", envelope),
        nexts=_int_map(body.get("result_next"), "result_next", envelope),
        times=_dict_map(body.get("result_time"), "result_time", envelope),
    )


def split_reply(
    reply: BatchReply, chunk: Sequence[tuple[int, Command]], *, label: Label = command_label
) -> tuple[dict[int, Any], list[CommandFailure]]:
    """Map a reply back to the chunk's input positions.

    Returns ``({index: result}, [CommandFailure, ...])``, failures in chunk
    order. A label in ``reply.errors`` fails with the mapped error; a label
    found nowhere (skipped after a failure with ``halt=1``, or dropped)
    fails with a plain :class:`BitrixError` coded ``NOT_EXECUTED``. Labels
    the chunk does not know are ignored.
    """
    results: dict[int, Any] = {}
    failures: list[CommandFailure] = []
    for index, command in chunk:
        key = label(index)
        if key in reply.errors:
            error = error_from_reply(None, reply.errors[key], command.method)
        elif key in reply.results:
            results[index] = reply.results[key]
            continue
        else:
            error = BitrixError(
                NOT_EXECUTED,
                "the portal did not run this command (an earlier one failed with halt=1?)",
                method=command.method,
            )
        failures.append(CommandFailure(index, key, command.method, error))
    return results, failures
