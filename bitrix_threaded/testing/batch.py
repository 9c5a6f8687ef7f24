"""The ``batch`` method: up to 50 commands in one request, with result references.

Semantics follow the Bitrix24 server:

- ``cmd`` is a map (labels) or a list (labels ``0..n-1``) of strings
  ``"method?query"``; other values are skipped; top-level keys ``cmd`` and
  ``halt`` are case-insensitive; ``halt`` is a PHP boolean;
- commands past the 50th each fail with ``ERROR_BATCH_LENGTH_EXCEEDED``;
  a nested ``batch`` fails with ``ERROR_BATCH_METHOD_NOT_ALLOWED``;
- each query is parsed like PHP's ``parse_str``; then every string (keys
  and values, at any depth) has its references resolved:
  ``$result[label][k1]..``, ``$next[label]``, ``$total[label]``,
  ``$time[label][..]``, ``$error[label][..]``. A value that *is* a reference
  becomes the referenced value itself (possibly a list or map); a reference
  inside a longer string is spliced in when the value is a string or number.
  A missing key stops the walk at the last node reached;
- with ``halt`` set, the first failing command ends the batch.

The reply is ``{result, result_error, result_total, result_next,
result_time}``, each shaped like a PHP array (``[]`` when empty, a list when
the labels are ``0..n-1``).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from .jsontext import JsonRows
from .phpquery import parse_query, php_array_json, php_bool, php_key, php_string

__all__ = ["MAX_BATCH_LENGTH", "resolve_references", "run_batch", "split_command"]

MAX_BATCH_LENGTH = 50

_REFERENCE = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
_PATH_KEY = re.compile(r"\[([^\]]+)\]")

LENGTH_EXCEEDED = {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                   "error_description": "Max batch length exceeded"}
NOT_ALLOWED = {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
               "error_description": "Method is not allowed for batch usage"}

# execute(method, params) -> a command outcome as the server stores it:
# {"result": .., "total"?: .., "next"?: .., "time": {..}} or {"error": .., ...}.
Execute = Callable[[str, Dict[str, Any]], Dict[str, Any]]


def split_command(call: str) -> Tuple[str, Optional[str]]:
    """Split ``"method?query#fragment"`` into ``(method, query or None)``, like PHP's parse_url."""
    call = call.split("#", 1)[0]
    method, sep, query = call.partition("?")
    return method, (query if sep else None)


def _child(node: Any, key: str) -> Tuple[bool, Any]:
    """PHP's ``isset($node[$key])`` and the value found."""
    if isinstance(node, dict):
        value = node.get(key)
        return value is not None, value
    if isinstance(node, (list, str, JsonRows)):
        index = php_key(key)
        if isinstance(index, int) and 0 <= index < len(node):
            value = node[index]
            return value is not None, value
    return False, None


def resolve_references(value: str, refs: Mapping[str, Mapping[str, Any]]) -> Any:
    """Resolve the batch references in one string (see the module docstring)."""
    if "$" not in value:
        return value
    resolved: Any = value
    for match in _REFERENCE.finditer(value):
        keys = _PATH_KEY.findall(match.group(2))
        if not keys:
            continue
        node: Any = refs.get(match.group(1))
        for key in keys:
            found, child = _child(node, key)
            if not found:
                break
            node = child
        if match.group(0) == value:
            return list(node) if type(node) is JsonRows else node
        text = php_string(node)
        if text is not None and isinstance(resolved, str):
            resolved = resolved.replace(match.group(0), text)
    return resolved


def _resolve_tree(node: Any, refs: Mapping[str, Mapping[str, Any]]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, child in node.items():
            new_key = resolve_references(key, refs)
            new_key = php_string(new_key)
            out[key if new_key is None else new_key] = _resolve_tree(child, refs)
        return out
    if isinstance(node, list):
        return [_resolve_tree(child, refs) for child in node]
    if isinstance(node, str):
        return resolve_references(node, refs)
    return node


def _labelled_commands(cmd: Any) -> Iterator[Tuple[str, Any]]:
    if isinstance(cmd, dict):
        return ((str(label), call) for label, call in cmd.items())
    if isinstance(cmd, list):
        return ((str(index), call) for index, call in enumerate(cmd))
    return iter(())


def run_batch(params: Mapping[str, Any], execute: Execute) -> Dict[str, Any]:
    """Run a batch described by ``params`` (the batch call's own parameters).

    ``execute(method, params)`` runs one command (its method name exactly as
    written, lower-casing is the caller's job) and returns its outcome map.
    Returns the batch's ``result`` value, ready to be JSON-encoded.
    """
    upper = {str(key).upper(): value for key, value in params.items()}
    halt = php_bool(upper.get("HALT"))
    refs: Dict[str, Dict[str, Any]] = {
        "result": {}, "next": {}, "total": {}, "time": {}, "error": {}}
    position = 0
    for label, call in _labelled_commands(upper.get("CMD")):
        if not isinstance(call, str):
            continue
        position += 1
        if position > MAX_BATCH_LENGTH:
            outcome: Dict[str, Any] = dict(LENGTH_EXCEEDED)
        else:
            method, query = split_command(call)
            if method.strip().lower() == "batch":
                outcome = dict(NOT_ALLOWED)
            else:
                command_params = parse_query(query) if query else {}
                if query and ("$" in query or "%24" in query):
                    command_params = _resolve_tree(command_params, refs)
                outcome = execute(method, command_params)
        if "error" in outcome:
            refs["error"][label] = outcome
        else:
            for key in ("result", "next", "total", "time"):
                if key in outcome:
                    refs[key][label] = outcome[key]
        if halt and "error" in outcome:
            break
    return {
        "result": php_array_json(refs["result"]),
        "result_error": php_array_json(refs["error"]),
        "result_total": php_array_json(refs["total"]),
        "result_next": php_array_json(refs["next"]),
        "result_time": php_array_json(refs["time"]),
    }
