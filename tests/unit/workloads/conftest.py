"""Fixtures of the example workloads' tests: a media root, a local SMTP server, a local HTTP source."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@pytest.fixture
def media_root(settings: Any, tmp_path: Any) -> Any:
    """Report files go to a temporary directory, not the checkout's var/media."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def closed_port() -> int:
    """A local TCP port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    """A minimal SMTP server on 127.0.0.1: answers per command, queued per test, 250 by default."""

    def __init__(self) -> None:
        #: Replies to send, in order, for MAIL, RCPT and DATA_END (the answer after the message).
        self.replies: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA_END": []}
        self.messages: list[bytes] = []
        self.port = 0

    def reply(self, command: str) -> bytes:
        queued = self.replies[command]
        return (queued.pop(0) if queued else "250 OK").encode() + b"\r\n"


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpServer]:
    """A local SMTP server, and the default mailer pointed at it (the worker reads settings per call)."""
    server_state = SmtpServer()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 test ESMTP\r\n")
            for line in self.rfile:
                verb = line[:4].upper()
                if verb in (b"MAIL", b"RCPT"):
                    self.wfile.write(server_state.reply(verb.decode()))
                elif verb == b"DATA":
                    self.wfile.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    data = b"".join(iter(self.rfile.readline, b".\r\n"))
                    answer = server_state.reply("DATA_END")
                    if answer.startswith(b"250"):
                        server_state.messages.append(data)
                    self.wfile.write(answer)
                elif verb == b"QUIT":
                    self.wfile.write(b"221 Bye\r\n")
                    return
                else:  # EHLO, HELO, RSET, NOOP
                    self.wfile.write(b"250 OK\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": server_state.port, "timeout": 5},
        }
    }
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Source:
    """What the local HTTP server answers: a status and a JSON body per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.requests: list[str] = []


@pytest.fixture
def http_source() -> Iterator[tuple[str, Source]]:
    """A real HTTP server on 127.0.0.1 (random port) serving `source.routes`; yields (base URL, source)."""
    source = Source()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            source.requests.append(self.path)
            status, payload = source.routes.get(self.path, (404, {"error": "not found"}))
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", source
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
