"""A FAKE HTTP server that misbehaves on purpose.

Used only to test how the probe handles broken responses (the standards allow a fake server for
exactly this and nothing else). Every throughput claim is tested against the real llama-server.

Besides a fixed ``status`` and ``body``, it can misbehave in time, the ways a hung server does:
never answer at all, stall mid-stream with the connection open, or keep a stalled stream looking
alive with SSE comments. A handler that holds a connection waits on an event set when the block
exits, so leaving the block closes every connection and a client that hung is released.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

# What the server does after the request is read: "answer" (headers, body, close); "never" (no
# byte at all); after the headers and the body, "stall" (silence) or "trickle" (a comment line
# every 0.1 s, as a proxy's keep-alive does), both with the connection held open.
Behaviour = Literal["answer", "never", "stall", "trickle"]
HOLD_MAX_S = 120.0  # a held connection is closed after this at the latest


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
def fake_broken_server(status: int = 200, body: bytes = b"", then: Behaviour = "answer") -> Iterator[str]:
    """Serve ``body`` (with ``status``) to every POST, behaving as ``then`` says; yield the base URL."""
    released = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            if then == "never":
                released.wait(HOLD_MAX_S)
                return
            self.send_response(status)
            self.send_header("content-type", "text/event-stream")
            if then == "answer":
                self.send_header("content-length", str(len(body)))
            self.end_headers()  # otherwise HTTP/1.0 without a length: the body ends at close
            self.wfile.write(body)
            self.wfile.flush()
            if then == "stall":
                released.wait(HOLD_MAX_S)
            elif then == "trickle":
                try:
                    while not released.wait(0.1):
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: as it should
                    return

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        released.set()
        server.shutdown()
        server.server_close()
