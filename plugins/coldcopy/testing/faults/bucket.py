"""A bucket that fails (issue 45): a small HTTP proxy in front of the S3 server that passes every request through
until it is armed, then answers the chosen requests with a fault:

- ``500``: InternalError; ``503``: ServiceUnavailable; ``slowdown``: 503 SlowDown (the throttle);
- ``reset``: the upstream's answer cut after half its body, the connection reset (RST, not a clean close);
- ``truncate``: a GET's body cut at half its declared length, the connection closed;
- ``slow``: the answer held back ``slow_s`` seconds (past the client's read timeout).

:meth:`FaultyBucket.arm` picks which: the ``count`` requests after the first ``after`` that match ``method`` (and
``key_part``, a substring of the path). Runs in the campaign's process, on threads; the jobs reach it as their
``coldcopy_spaces`` endpoint. Requests and their faults are counted for the report.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("500", "503", "slowdown", "reset", "truncate", "slow")
READ_TIMEOUT_S = 5  # the campaign's coldcopy_spaces connection: botocore's read timeout (config_kwargs)
SLOW_S = READ_TIMEOUT_S + 3
_ERRORS = {"500": (500, "InternalError", "We encountered an internal error. Please try again."),
           "503": (503, "ServiceUnavailable", "Please reduce your request rate."),
           "slowdown": (503, "SlowDown", "Please reduce your request rate.")}
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Plan:
    fault: str = ""
    method: str | None = None
    key_part: str = ""
    after: int = 0  # matching requests passed through first
    count: int = 0  # matching requests then faulted
    slow_s: float = 0.0
    seen: int = 0
    injected: list[str] = field(default_factory=list)


class FaultyBucket:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.plan, self.lock, self.requests = Plan(), threading.Lock(), 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultyBucket:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="faulty-bucket").start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def arm(self, fault: str, *, method: str | None = None, key_part: str = "", after: int = 0, count: int = 1,
            slow_s: float = 8.0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown bucket fault {fault!r} (those: {', '.join(FAULTS)})")
        with self.lock:
            self.plan = Plan(fault, method, key_part, after, count, slow_s)

    def arm_target(self, target: str) -> None:
        """``target`` as a plan writes it: ``<fault> <method or *> <after>+<count>``."""
        fault, method, window = target.split()
        after, count = window.split("+")
        self.arm(fault, method=None if method == "*" else method, after=int(after), count=int(count),
                 slow_s=SLOW_S)

    def disarm(self) -> list[str]:
        """No more faults; returns the requests that got one."""
        with self.lock:
            injected, self.plan = self.plan.injected, Plan()
        return injected

    def _fault_for(self, method: str, path: str) -> Plan | None:
        with self.lock:
            self.requests += 1
            p = self.plan
            if not p.fault or (p.method and p.method != method) or p.key_part not in path:
                return None
            p.seen += 1
            if p.after < p.seen <= p.after + p.count:
                p.injected.append(f"{p.fault} {method} {path.split('?')[0]}")
                return p
            return None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that gave up (its timeout): expected here
        pass


class _Handler(BaseHTTPRequestHandler):
    owner: FaultyBucket
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        plan = self.owner._fault_for(self.command, self.path)
        if plan is not None and plan.fault in _ERRORS:
            status, code, message = _ERRORS[plan.fault]
            return self._error(status, code, message)
        if plan is not None and plan.fault == "slow":
            time.sleep(plan.slow_s)
        up = self.owner.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "content-length"}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        conn.close()
        cut = plan is not None and plan.fault in ("reset", "truncate") and (plan.fault == "reset" or
                                                                            self.command == "GET")
        if cut and plan.fault == "reset" and not (self.command == "GET" and data):
            return self._reset()  # applied upstream, never acknowledged: the client sees the connection reset
        self.send_response(answer.status, answer.reason)
        for k, v in answer.getheaders():
            if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not cut:
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if plan.fault == "reset":
            return self._reset()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _reset(self) -> None:
        """SO_LINGER 0: the close sends RST."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _error(self, status: int, code: str, message: str) -> None:
        payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                   f"<Resource>{self.path.split('?')[0]}</Resource><RequestId>faulty-bucket</RequestId></Error>"
                   ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
