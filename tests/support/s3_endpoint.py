"""A faulty proxy to put in front of the tests' S3 endpoint (local_env.LocalS3)."""

from __future__ import annotations

import socket
import threading


class FaultyProxy:
    """TCP proxy to ``target_port`` that, once ``budget`` bytes went upstream, cuts every connection and
    refuses new ones, like an endpoint going away in the middle of an upload. ``heal()`` ends the fault."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.budget: int | None = None
        self.sent = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def fail_after(self, budget: int) -> None:
        with self.lock:
            self.budget, self.sent = budget, 0

    def heal(self) -> None:
        with self.lock:
            self.budget = None

    def _broken(self) -> bool:
        with self.lock:
            return self.budget is not None and self.sent >= self.budget

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._broken():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, counts: bool) -> None:
        try:
            while data := source.recv(65536):
                if counts:
                    with self.lock:
                        self.sent += len(data)
                if self._broken():
                    break
                target.sendall(data)
        except OSError:
            pass
        for s in (source, target):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
        for s in self.connections:
            s.close()
