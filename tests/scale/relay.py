"""A TCP relay on loopback between the Rasa processes and PostgreSQL, which a test cuts to make
the database unreachable (every open connection dropped, new ones refused) and restores on the
same port, or holds (bytes wait in the relay: a query hangs) and lets flow again, without
touching the PostgreSQL server other tests share."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from stack.services import free_port

CONNECT_TIMEOUT_SECONDS = 5.0
CHUNK_BYTES = 65536
HOLD_LIMIT_SECONDS = 60.0  # a test that forgets to let bytes flow again loses the connection


class TcpRelay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()

    def hold(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def restore(self) -> None:
        """Listen (again) on `port`."""
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._listener is not None:
            _close(self._listener)  # shut down first: a bare close() leaves accept() running on Linux
            self._listener = None
        with self._guard:
            dropped, self._open = self._open, set()
        for connection in dropped:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:  # until cut() closes the listener
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_SECONDS)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._guard:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Bytes one way until either side closes (or a hold outlasts its limit)."""
        try:
            while data := source.recv(CHUNK_BYTES):
                if not self._flowing.wait(HOLD_LIMIT_SECONDS):
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(connection: socket.socket) -> None:
    with suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


@contextmanager
def relaying(target_host: str, target_port: int) -> Iterator[TcpRelay]:
    relay = TcpRelay(target_host, target_port)
    relay.restore()
    try:
        yield relay
    finally:
        relay.cut()
