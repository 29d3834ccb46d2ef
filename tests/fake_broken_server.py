"""A FAKE HTTP server that misbehaves on purpose.

Used only to test how the probe handles broken responses (the standards allow a fake server for
exactly this and nothing else). Every throughput claim is tested against the real llama-server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sse(obj: object) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def token_chunk(text: str) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}}]})


def usage_chunk(prompt: int, completion: int, cached: int = 0) -> bytes:
    return sse(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }
    )


@contextmanager
def fake_broken_server(status: int = 200, body: bytes = b"") -> Iterator[str]:
    """Serve ``body`` (with ``status``) to every POST; yield the base URL on 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
