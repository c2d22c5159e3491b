"""Run an app under uvicorn in a background thread (tests, benchmarks, notebooks)."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

from swift.utils.errors import SwiftError, require


class BackgroundServer:
    """A uvicorn server on a loopback port, serving in a daemon thread until `stop()`.

    Args:
        app: An ASGI app (e.g. from `swift.serve.build_app`).
        host: Address to bind (loopback by default).
        port: Port; 0 picks a free one.
        timeout: Seconds to wait for the server to start.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
        uvicorn = require("uvicorn", "serve", "serving an app")
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="swift-serve-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SwiftError(f"the server on {host}:{self.port} did not start within {timeout} s.")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        """The base URL of the OpenAI API (`http://host:port/v1`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
