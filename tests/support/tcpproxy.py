"""A TCP proxy in front of PostgreSQL that a test can cut and restore: a database outage
for one server under test, without touching the machine's PostgreSQL (other tests use it).

`cut()` resets every connection through the proxy (those idle in a pool too) and refuses new
ones until `restore()`: what a server sees when its database restarts or fails over.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator


def _abort(sock: socket.socket) -> None:
    """Close with RST (no FIN handshake), waking any thread blocked on the socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._up = True
        self._closed = False
        self.accepted = 0  # connections accepted while up (forwarded)
        self.refused = 0  # connections reset because the proxy was cut
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="tcpproxy")
        self._thread.start()

    @property
    def up(self) -> bool:
        return self._up

    def cut(self) -> None:
        """Reset every open connection and every new one, until restore()."""
        with self._lock:
            self._up = False
            pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            _abort(client)
            _abort(upstream)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._closed = True
        self.cut()
        _abort(self._listener)
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the plumbing ------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _addr = self._listener.accept()
            except OSError:
                return
            if not self._up:
                self.refused += 1
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _abort(client)
                continue
            pair = (client, upstream)
            with self._lock:
                if not self._up:  # cut while connecting
                    _abort(client)
                    _abort(upstream)
                    continue
                self._pairs.add(pair)
                self.accepted += 1
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        peers = {client: upstream, upstream: client}
        try:
            while True:
                ready, _, _ = select.select(list(peers), [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _abort(client)
            _abort(upstream)


@contextlib.contextmanager
def proxy_to(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
