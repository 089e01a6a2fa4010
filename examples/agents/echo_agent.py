#!/usr/bin/env python3
"""A small real palm agent (Python stdlib only).

Reads its config from PALM_CONFIG, heartbeats to the daemon every `heartbeat_s` seconds,
serves GET /healthz on PALM_PORT_HTTP when the spec declares an `http` port, and stops
cleanly on SIGTERM. It keeps running while the daemon is down and heartbeats again once the
daemon is back (palm re-adopts running agents after a restart).
"""
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTANCE = os.environ.get("PALM_INSTANCE_ID", "echo-local")
ENDPOINT = os.environ.get("PALM_ENDPOINT", "http://127.0.0.1:7070").rstrip("/")
TOKEN = os.environ.get("PALM_TOKEN", "")
stop = threading.Event()


def log(msg):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {INSTANCE} {msg}", flush=True)


def load_config():
    raw = os.environ.get("PALM_CONFIG", "{}")
    try:
        cfg = json.loads(raw)
        return cfg if isinstance(cfg, dict) else {}
    except ValueError:
        log(f"PALM_CONFIG is not JSON, ignoring it: {raw!r}")
        return {}


def heartbeat(beats, started):
    body = json.dumps({"status": "ok",
                       "metrics": {"uptime_s": round(time.monotonic() - started, 1),
                                   "beats": beats}}).encode()
    req = urllib.request.Request(f"{ENDPOINT}/v1/agent/heartbeat", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz"
        body = b"ok" if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the instance log for the agent's own lines
        pass


def serve_health(port):
    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"serving GET /healthz on 127.0.0.1:{port}")


def main():
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = load_config()
    period = float(config.get("heartbeat_s", 5) or 5)
    log(f"starting (deployment {os.environ.get('PALM_DEPLOYMENT', '-')}, "
        f"revision {os.environ.get('PALM_REVISION', '-')}, pid {os.getpid()})")
    log(f"config: {json.dumps(config, sort_keys=True)}")
    if config.get("greeting"):
        log(str(config["greeting"]))
    if os.environ.get("PALM_PORT_HTTP"):
        serve_health(int(os.environ["PALM_PORT_HTTP"]))

    started = time.monotonic()
    beats, failing, delay = 0, False, period
    while not stop.is_set():
        try:
            answer = heartbeat(beats + 1, started)
            beats += 1
            if failing:
                log("daemon reachable again, heartbeats resumed")
            failing, delay = False, period
            if answer.get("killed"):
                log("kill switch engaged: idling until released")
        except (urllib.error.URLError, OSError, ValueError) as e:
            if not failing:
                log(f"heartbeat failed ({e}); retrying with backoff")
            failing = True
            delay = min(max(delay * 2, 1.0), 60.0)
        stop.wait(delay if failing else period)
    log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
