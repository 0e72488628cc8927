"""A local price feed for the pricewatcher example and the tutorial (docs/effects.md).

``python -m igor_p2p.effects.price_feed --port 8787`` serves ``GET /price``: a plain-text
decimal price that moves a little on every request. It prints one line per request with the
``Idempotency-Key`` the node sent, so you can see that a request is never sent twice.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PriceFeed(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], start: int = 50_000, quiet: bool = False) -> None:
        super().__init__(address, _Handler)
        self.price = start
        self.quiet = quiet
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def next_price(self, key: str) -> int:
        with self._lock:
            self.keys.append(key)
            step = (len(self.keys) * 7919) % 201 - 100
            self.price = max(1, self.price + step)
            return self.price


class _Handler(BaseHTTPRequestHandler):
    server: PriceFeed

    def do_GET(self) -> None:
        if self.path != "/price":
            self.send_error(404)
            return
        key = self.headers.get("Idempotency-Key", "")
        body = f"{self.server.next_price(key)}\n".encode()
        if not self.server.quiet:
            print(f"GET /price  Idempotency-Key: {key}  → {body.decode().strip()}", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: do_GET prints
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args()
    server = PriceFeed((args.host, args.port))
    print(f"price feed on http://{args.host}:{args.port}/price", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
