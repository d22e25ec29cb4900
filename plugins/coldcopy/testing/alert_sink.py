"""A webhook endpoint on loopback that records what alerting POSTs to it (tests, `make airflow`)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class AlertSink:
    """Keeps every alert in ``received``; with ``record_to``, also appends it to that file as a JSON line.

    :param port: 0 for any free port.
    """

    def __init__(self, record_to: Path | None = None, port: int = 0) -> None:
        self.received: list[dict] = []
        self.record_to = record_to
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                alert = {"path": self.path, "body": json.loads(body or b"null")}
                sink.received.append(alert)
                if sink.record_to:
                    with open(sink.record_to, "a") as record:
                        record.write(json.dumps(alert["body"]) + "\n")
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AlertSink:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def airflow_connection(self) -> str:
        return json.dumps({"conn_type": "http", "host": self.url})

    def texts(self) -> list[str]:
        return [r["body"]["text"] for r in self.received]
