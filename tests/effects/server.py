"""A local HTTP server on 127.0.0.1 that the effect tests start: scripted routes, every request
recorded, responses that can be held back until the test lets them go."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    hold: threading.Event | None = None
    """The response waits for this event (at most ``hold_s``)."""
    hold_s: float = 30.0
    chunked: bool = False


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FeedServer:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> Seen:
        with self.arrived:
            ok = self.arrived.wait_for(lambda: len(self.requests(path)) >= count, timeout)
        assert ok, f"no request {count} for {path} within {timeout} s"
        return self.requests(path)[count - 1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with state.arrived:
            state.seen.append(seen)
            state.arrived.notify_all()
        route = state.routes.get(self.path)
        if route is None:
            route = Route(404, b"no such route")
        if route.hold is not None:
            route.hold.wait(route.hold_s)
        try:
            self.send_response(route.status)
            for name, value in route.headers:
                self.send_header(name, value)
            if route.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(route.body), 4096):
                    chunk = route.body[start : start + 4096]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FeedServer


@contextmanager
def http_server() -> Iterator[FeedServer]:
    """A server on 127.0.0.1 (a free port), stopped (and held responses released) on exit."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FeedServer(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        for route in server.state.routes.values():
            if route.hold is not None:
                route.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
