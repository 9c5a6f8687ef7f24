"""Small scriptable HTTP and HTTPS servers on 127.0.0.1 for the transport-edge tests.

A :class:`LocalServer` runs in a thread and answers every request with a
function of the test (``respond(exchange)``); it records each request it
received (method, path, headers, body) and each connection accepted, so a
test can assert that a server received nothing. :func:`make_certificates`
writes a private CA, a second unrelated CA and a server certificate for
127.0.0.1 signed by the first, using ``cryptography`` (a test dependency).
:func:`run_in_thread` runs a blocking call beside the test, to stop or close it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass
class Received:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes


class Exchange:
    """One request as the test's ``respond`` function sees it."""

    def __init__(self, handler: BaseHTTPRequestHandler, received: Received, server: "LocalServer"):
        self.handler = handler
        self.request = received
        self.server = server

    def send(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None,
             *, length: Optional[int] = -1) -> None:
        """Status, headers and body; ``length=None`` sends no Content-Length."""
        self.handler.send_response(status)
        for key, value in (headers or {}).items():
            self.handler.send_header(key, value)
        if length == -1:
            length = len(body)
        if length is not None:
            self.handler.send_header("Content-Length", str(length))
        else:
            self.handler.send_header("Connection", "close")
            self.handler.close_connection = True
        self.handler.end_headers()
        if body:
            self.handler.wfile.write(body)

    def json(self, payload: Any, status: int = 200) -> None:
        self.send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def write(self, data: bytes) -> bool:
        """Write more body bytes; False once the client has gone away."""
        try:
            self.handler.wfile.write(data)
            self.handler.wfile.flush()
            return True
        except OSError:
            return False


Respond = Callable[[Exchange], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = Received(self.command, self.path, dict(self.headers), body)
        owner = self.server.owner
        with owner.lock:
            owner.received.append(received)
        try:
            owner.respond(Exchange(self, received, owner))
        except OSError:
            self.close_connection = True

    do_GET = do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "LocalServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply is what several tests do on purpose.
        pass

    def get_request(self) -> Any:
        sock, address = super().get_request()
        with self.owner.lock:
            self.owner.connections += 1
        return sock, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.owner.tls
        if context is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self.owner.lock:
                self.owner.failed_handshakes += 1
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


@dataclass
class LocalServer:
    """A threaded HTTP(S) server on 127.0.0.1; use as a context manager."""

    respond: Respond
    tls: Optional[ssl.SSLContext] = None
    received: List[Received] = field(default_factory=list)
    connections: int = 0
    failed_handshakes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Certificates:
    ca: Path          # the CA that signed the server certificate
    other_ca: Path    # an unrelated CA: verifying against it must fail
    cert: Path        # server certificate for 127.0.0.1 and localhost
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def make_certificates(directory: Path) -> Certificates:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def pem(cert: Any) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def authority(name: str) -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = authority("bitrix_threaded test CA")
    _, other_cert = authority("an unrelated CA")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(directory / "ca.pem", directory / "other-ca.pem",
                         directory / "server.pem", directory / "server.key")
    paths.ca.write_bytes(pem(ca_cert))
    paths.other_ca.write_bytes(pem(other_cert))
    paths.cert.write_bytes(pem(leaf))
    paths.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def run_in_thread(fn: Callable[[], Any]) -> Tuple[threading.Thread, Dict[str, Any]]:
    """Start ``fn()`` in a thread; its result or exception lands in the returned box
    (``"result"`` or ``"error"``) once the thread ends."""
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box
