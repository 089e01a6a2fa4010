#!/usr/bin/env python3
"""Test agent for health probes: serves /healthz and /ready on PALM_PORT_HTTP.

PALM_CONFIG keys:
  fail_file       /healthz answers 503 while this file exists (else 200)
  never_ready     /ready always answers 503
  listen_after_s  wait this long before listening (a slow starter)
"""
import http.server
import json
import os
import sys
import time

config = json.loads(os.environ.get("PALM_CONFIG", "{}"))
port = int(os.environ["PALM_PORT_HTTP"])
time.sleep(float(config.get("listen_after_s", 0)))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            failing = config.get("fail_file") and os.path.exists(config["fail_file"])
            code = 503 if failing else 200
        elif self.path == "/ready":
            code = 503 if config.get("never_ready") else 200
        else:
            code = 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"no")

    def log_message(self, *args):
        pass


print(f"{os.environ.get('PALM_INSTANCE_ID')} listening on {port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
