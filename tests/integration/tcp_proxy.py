"""A loopback TCP proxy in front of PostgreSQL that can lose a COMMIT, on purpose.

It forwards bytes both ways. Armed, it watches the client's traffic for the
simple-query message psycopg2 sends to commit (``'Q'``, length 11,
``b"COMMIT\\0"``), then either

* lets the COMMIT through, drops the server's reply and closes the client's
  connection: the transaction committed, the client never hears it
  (``forward_commit=True``, the default); or
* swallows the COMMIT itself and closes both sides: the server rolls the
  transaction back (``forward_commit=False``).

With ``refuse_after=True`` it then closes every connection and stops
listening, so the database looks unreachable. One-shot: it disarms itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Final

COMMIT_MESSAGE: Final = b"Q" + (4 + len(b"COMMIT\0")).to_bytes(4, "big") + b"COMMIT\0"


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.drop_reply = False

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CommitLosingProxy:
    """Forward 127.0.0.1:<port> to ``upstream``; lose one COMMIT when armed."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._guard = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._armed = False
        self._forward_commit = True
        self._refuse_after = False
        self._closed = False
        self.commit_lost = threading.Event()
        """Set once a COMMIT (or its reply) has been lost."""

    def __enter__(self) -> CommitLosingProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def arm(self, *, forward_commit: bool = True, refuse_after: bool = False) -> None:
        """Lose the next COMMIT seen on any connection (see the module docstring)."""
        with self._guard:
            self._armed = True
            self._forward_commit = forward_commit
            self._refuse_after = refuse_after
            self.commit_lost.clear()

    def close(self) -> None:
        """Stop listening and close every connection."""
        with self._guard:
            self._closed = True
            links, self._links = self._links, []
        self._stop_listening()
        for link in links:
            link.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    # -- internals -------------------------------------------------------------

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _stop_listening(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._guard:
                if self._closed:
                    link.close()
                    return
                self._links.append(link)
            self._spawn(self._client_to_server, link)
            self._spawn(self._server_to_client, link)

    def _client_to_server(self, link: _Link) -> None:
        tail = b""
        while True:
            try:
                data = link.client.recv(65536)
            except OSError:
                data = b""
            if not data:
                link.close()
                return
            window = tail + data
            tail = window[-(len(COMMIT_MESSAGE) - 1) :]
            forward = True
            if COMMIT_MESSAGE in window:
                with self._guard:
                    if self._armed:
                        self._armed = False
                        link.drop_reply = True
                        forward = self._forward_commit
            if not forward:
                self._lost(link)
                return
            try:
                link.upstream.sendall(data)
            except OSError:
                link.close()
                return

    def _server_to_client(self, link: _Link) -> None:
        while True:
            try:
                data = link.upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                link.close()
                return
            if link.drop_reply:
                # The server answered the COMMIT: it committed. The client never knows.
                self._lost(link)
                return
            try:
                link.client.sendall(data)
            except OSError:
                link.close()
                return

    def _lost(self, link: _Link) -> None:
        with self._guard:
            refuse = self._refuse_after
            links = list(self._links) if refuse else []
            if refuse:
                self._closed = True
                self._links = []
        if refuse:
            # Before the client hears anything: its next connection must be refused.
            self._stop_listening()
            for other in links:
                other.close()
        self.commit_lost.set()
        link.close()
