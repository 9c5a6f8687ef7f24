"""HTTP transport of the fake portal: a threaded HTTP/1.1 server on the standard library.

Routes:

- ``/rest/USER/TOKEN/METHOD[.json][/]`` (webhook) and ``/rest/METHOD[.json][/]``
  (OAuth): the Bitrix24 REST API, GET or POST, parameters from the query
  string and the body (JSON, urlencoded or multipart form; body wins);
- ``/oauth/token/``: the OAuth token endpoint;
- ``/_portal/...``: control endpoints for tests (stats, ids, ...), no auth.
"""
from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import unquote, urlsplit

from .engine import Reply
from .jsontext import encode_body
from .phpquery import parse_pairs, parse_query

__all__ = ["PortalHTTPServer", "PortalRequestHandler"]

_MAX_BODY = 64 * 1024 * 1024


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _multipart(content_type: str, body: bytes) -> Dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    pairs = []
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name or part.get_filename():
                continue  # files go to $_FILES in PHP, not to the parameters
            payload = part.get_payload(decode=True) or b""
            if isinstance(payload, bytes):
                pairs.append((str(name), payload.decode("utf-8", errors="replace")))
    return parse_pairs(pairs)


def decode_body(content_type: str, body: bytes) -> Dict[str, Any]:
    """Body parameters as the Bitrix24 server reads them (invalid JSON gives ``{}``)."""
    if not body:
        return {}
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    if kind == "multipart/form-data":
        return _multipart(content_type, body)
    return parse_query(body)


class PortalHTTPServer(ThreadingHTTPServer):
    """One thread per connection (daemon threads), a large listen backlog.

    ``app`` is the :class:`~bitrix_threaded.testing.FakePortal` it serves.
    :meth:`close_connections` ends idle keep-alive connections at shutdown.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: Tuple[str, int], app: Any) -> None:
        self.app = app
        self._connections: Set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, PortalRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn): slow and useless here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-reply (timeouts, injected faults): not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        self.app._record_internal_error()


class PortalRequestHandler(BaseHTTPRequestHandler):
    """Parses one HTTP request at a time on a keep-alive connection and dispatches it."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeBitrix24"
    sys_version = ""
    timeout = 300  # seconds an idle keep-alive connection is kept open
    server: PortalHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        self.server.app._stats.count("connections")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    # -- reading ------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: List[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > _MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _params(self, query: str, body: bytes) -> Dict[str, Any]:
        params = parse_query(query) if query else {}
        params.update(decode_body(self.headers.get("Content-Type", ""), body))
        return params

    # -- writing ------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        if reply.disconnect:
            self.close_connection = True
            return
        body = encode_body(reply.body).encode("ascii")
        head = (
            f"HTTP/1.1 {reply.status} {_reason(reply.status)}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Access-Control-Allow-Origin: *\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    # -- routing ------------------------------------------------------------

    def _dispatch(self) -> None:
        app = self.server.app
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(Reply(400, {"error": "INVALID_REQUEST",
                                   "error_description": "Malformed request body"}))
            return
        try:
            parts = urlsplit(self.path)
            path = parts.path
            if path.startswith("/rest/"):
                reply = self._rest(path[len("/rest/"):], parts.query, body)
            elif path.rstrip("/") == "/oauth/token":
                reply = app.engine.handle_token(
                    self._params(parts.query, body), app.endpoint, app.domain)
            elif path.startswith("/_portal/"):
                tail = path[len("/_portal/"):].strip("/")
                reply = app._control(self.command, tail, self._params(parts.query, body))
            else:
                reply = Reply(404, {"error": "NOT_FOUND", "error_description": "Not found"})
        except Exception:  # a bug in the portal must still produce a reply
            app._record_internal_error()
            reply = Reply(500, {"error": "INTERNAL_SERVER_ERROR",
                                "error_description": "Internal server error"})
        self._send(reply)

    def _rest(self, tail: str, query: str, body: bytes) -> Reply:
        segments = [unquote(segment) for segment in tail.rstrip("/").split("/")]
        webhook: Optional[Tuple[str, str]] = None
        if len(segments) == 3:
            webhook = (segments[0], segments[1])
            method = segments[2]
        elif len(segments) == 1:
            method = segments[0]
        else:
            method = ""  # not a method URL: answered as an unknown method
        bearer = None
        authorization = self.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            bearer = authorization[7:].strip()
        reply: Reply = self.server.app.engine.handle_rest(
            method, self._params(query, body), webhook=webhook, bearer=bearer)
        return reply
