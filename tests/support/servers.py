"""Real `ivr serve` processes for the tests of several instances and faults, and the HTTP
transports that stand in for a load balancer in front of them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

IVR = str(Path(sys.executable).parent / "ivr")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving_app(app: ASGIApp) -> Iterator[str]:
    """`app` behind a real uvicorn server in this process, on a free local port; yields its
    base URL. Unlike a TestClient, a client gets each answer when the server sends it, not
    when the app returns."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def server_env(**values: str) -> dict[str, str]:
    """The process environment without the caller's IVR_/TWILIO_ settings, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_"))}
    env.update(values)
    return env


class ServerProcess:
    """`ivr serve` on a port of its own, started with `start()`, stopped however the test says.

    The working directory is a temporary one: no `.env` of the checkout is read."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, port: int | None = None):
        self.name = name
        self.env = env
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 45) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            self.proc = subprocess.Popen(
                [IVR, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not come up:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, whatever it was doing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def serving(*servers: ServerProcess) -> Iterator[None]:
    """Start the servers (one at a time: each upgrades the schema first); always stop them."""
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


class Balancer(httpx.BaseTransport):
    """A load balancer for tests: each request goes to the next backend in turn.

    A backend that refuses the connection (killed, restarting) is skipped for the next one,
    as a balancer's health checks would; when all refuse, it keeps trying until `patience`
    runs out (Twilio's webhook limit is 15 s). `served` counts requests per backend URL;
    `timings` has (path, status, seconds) per answered request, retries included."""

    def __init__(self, backends: Callable[[], list[str]] | list[str], patience: float = 30):
        self._backends = backends if callable(backends) else (lambda: list(backends))
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self._turn = 0
        self.patience = patience
        self.served: Counter[str] = Counter()
        self.order: list[str] = []
        self.timings: list[tuple[str, int, float]] = []

    def _next(self) -> str:
        with self._lock:
            backends = self._backends()
            backend = backends[self._turn % len(backends)]
            self._turn += 1
            return backend

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        deadline = started + self.patience
        while True:
            backend = httpx.URL(self._next())
            request.url = request.url.copy_with(
                scheme=backend.scheme, host=backend.host, port=backend.port
            )
            try:
                response = self._inner.handle_request(request)
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            key = f"{backend.scheme}://{backend.host}:{backend.port}"
            response.read()
            with self._lock:
                self.served[key] += 1
                self.order.append(key)
                elapsed = time.monotonic() - started
                self.timings.append((request.url.path, response.status_code, elapsed))
            return response

    def close(self) -> None:
        self._inner.close()
