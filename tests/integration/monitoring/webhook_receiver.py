"""A tiny Alertmanager webhook receiver: one JSON line per POST, with the time it arrived.

Run on the lab host by tests/integration/test_monitoring.py:
  python3 webhook_receiver.py PORT FILE
"""

from __future__ import annotations

import http.server
import json
import sys
import time

PORT = int(sys.argv[1])
OUT = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        received = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(OUT, "a", encoding="utf-8") as out:
            out.write(json.dumps({"received": received, "path": self.path, "body": json.loads(body)}) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
