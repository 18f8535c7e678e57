"""Real receivers on loopback for outgoing actions: an HTTP server that verifies the
Standard Webhooks signature (with the `standardwebhooks` library) and deduplicates on
`webhook-id` as a receiver should, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests import support


@dataclass
class Received:
    webhook_id: str
    body: dict[str, Any]
    status: int
    signature_ok: bool


@dataclass
class HttpSink:
    secret: str
    # Statuses to answer, in turn (then 200); each may carry a Retry-After.
    script: list[int | tuple[int, str]] = field(default_factory=list)
    delay_s: float = 0.0  # before answering (a slow receiver)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @property
    def effects(self) -> list[str]:
        """What a deduplicating receiver did: each webhook-id it accepted, once."""
        with self.lock:
            return list(dict.fromkeys(r.webhook_id for r in self.received if r.status < 300))

    def handle(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str]]:
        if self.delay_s:
            time.sleep(self.delay_s)
        try:  # with the scheme's own reference library, not the service's code
            Webhook(self.secret).verify(raw, headers)
            ok = True
        except WebhookVerificationError:
            ok = False
        with self.lock:
            answer = self.script.pop(0) if self.script else 200
            status, retry_after = answer if isinstance(answer, tuple) else (answer, None)
            if not ok:
                status = 401
            self.received.append(
                Received(headers.get("webhook-id", ""), json.loads(raw), status, ok)
            )
        return status, ({"Retry-After": retry_after} if retry_after else {})


@contextmanager
def http_sink(
    secret: str = "whsec_c2luay1zZWNyZXQtZm9yLXRlc3Rz", **options: Any
) -> Iterator[HttpSink]:
    sink = HttpSink(secret=secret, **options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = sink.handle(headers, raw)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", support.free_port()), Handler)
    server.daemon_threads = True
    sink.url = f"http://127.0.0.1:{server.server_port}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, list[EmailMessage]]]:
    mailbox = _Mailbox()
    port = support.free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox.messages
    finally:
        controller.stop()


class TcpProxy:
    """A TCP forwarder on a fixed local port: `stop()` makes the service behind it
    unreachable (connections cut, new ones refused), `start()` brings it back."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        """`upstream`: (host, port), or the path of a Unix socket."""
        self.upstream = upstream
        self.port = support.free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not,
            # and that thread would take one more connection.
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = _connect(self.upstream)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _connect(upstream: tuple[str, int] | str) -> socket.socket:
    if isinstance(upstream, str):
        unix = socket.socket(socket.AF_UNIX)
        unix.settimeout(5)
        unix.connect(upstream)
        return unix
    return socket.create_connection(upstream, timeout=5)
