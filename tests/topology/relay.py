"""A loopback relay for the replication stream that can be held: a standby that lags.

The standby's ``primary_conninfo`` names the relay instead of the primary.
:meth:`ReplicationRelay.hold` stops forwarding what the primary sends (the
WAL); nothing sent after it returns reaches the standby. The standby's own
messages still flow. Closed, it drops what it held.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class ReplicationRelay:
    """Forward 127.0.0.1:``port`` to the primary's port, until held or closed."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = [self._listener]
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._spawn(self._accept_loop)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._guard:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            with self._guard:
                self._sockets += [client, upstream]
            self._spawn(self._pump, upstream, client, True)
            self._spawn(self._pump, client, upstream, False)

    def _pump(self, source: socket.socket, target: socket.socket, from_primary: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if from_primary:
                    self._flowing.wait()
                if self._closed:
                    return
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def hold(self) -> None:
        """Stop forwarding the primary's bytes: from now on the standby receives nothing."""
        self._flowing.clear()

    def close(self) -> None:
        """Drop everything held, close every socket, wait for the relay's threads."""
        self._closed = True
        self._flowing.set()
        with self._guard:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=10)

    def __enter__(self) -> ReplicationRelay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
