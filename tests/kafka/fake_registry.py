"""A minimal Confluent-compatible schema registry (the two endpoints the ledger uses), in a
thread, for tests: POST /subjects/{subject}/versions and GET /schemas/ids/{id}."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


class FakeRegistry:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # schema text (normalised JSON) -> id
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.calls: Counter[str] = Counter()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                    return self.answer(404, {"error_code": 404, "message": "not found"})
                registry.calls["register"] += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = json.dumps(json.loads(body["schema"]), sort_keys=True)
                sid = registry.ids.setdefault(text, len(registry.ids) + 1)
                registry.schemas[sid] = body["schema"]
                registry.subjects.setdefault(unquote(parts[1]), []).append(sid)
                self.answer(200, {"id": sid})

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                    registry.calls["lookup"] += 1
                    schema = registry.schemas.get(int(parts[2]))
                    if schema is not None:
                        return self.answer(200, {"schema": schema})
                self.answer(404, {"error_code": 40403, "message": "Schema not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def foreign(self, schema: dict[str, Any]) -> int:
        """Registers a schema that is not a ledger schema; returns its id."""
        text = json.dumps(schema, sort_keys=True)
        sid = self.ids.setdefault(text, len(self.ids) + 1)
        self.schemas[sid] = json.dumps(schema)
        return sid

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
