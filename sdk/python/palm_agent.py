"""palm_agent: the Python SDK for agents supervised by palm (standard library only).

palm starts an agent process with its identity and a scoped token in the environment
(DESIGN.md section 4). This module is the agent's side of that contract:

    from palm_agent import Agent

    def handle(task_input, task):          # task_input: the task's JSON `input`
        return {"answer": task_input["question"].upper()}   # -> the task's `output`

    if __name__ == "__main__":
        Agent.from_env().run(handle, metrics=lambda: {"queue_depth": 3})

`run` heartbeats in the background (which makes a heartbeat-readiness instance ready),
long-polls for tasks, calls the handler, posts each result (an exception becomes
`ok: false` with the exception text), serves GET /healthz on PALM_PORT_HTTP when that is
set, and returns once SIGTERM/SIGINT arrives or a heartbeat says `drain: true` -- after
finishing the task in hand.

The lower-level calls are there for agents that run their own loop:

    agent = Agent.from_env()
    agent.heartbeat(status="ok", metrics={"orders": 3})   # -> {"drain", "killed", "policy_version"}
    task = agent.next_task(wait_s=30)                     # -> dict, or None when none came
    agent.complete(task["id"], ok=True, output={...}, attempt=task["attempt"])

Transport: one keep-alive HTTP/1.1 connection per thread, reopened after any failure.
Connection errors, 5xx and 429 are retried with exponential backoff and full jitter
(429/503 honour Retry-After); other 4xx are not retried and raise `PalmError`. A 409 on
`complete` raises `LeaseLost` (the lease expired and the task went to someone else, it was
cancelled, or another attempt is current) and is never retried.

Delivery is at-least-once: a task whose lease expires comes back with `attempt + 1`.
`run` remembers the last results it posted (by task id) and answers a redelivered task with
the same result without calling the handler again, so side effects happen once per agent
process.
"""

import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Agent", "PalmError", "TransportError", "LeaseLost"]
__version__ = "1.0.0"


class PalmError(Exception):
    """The daemon refused a call (4xx), or kept failing (5xx/429) after every retry.

    `status` is the HTTP status (0 for a transport failure), `code` the palm error code
    (e.g. "TASK_NOT_FOUND"), `message` and `hint` as the daemon gave them.
    """

    def __init__(self, status, code, message, hint=None):
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint


class TransportError(PalmError):
    """The daemon could not be reached (connection refused/reset, timeout) after retries."""

    def __init__(self, message):
        super().__init__(0, "UNAVAILABLE", message)


class LeaseLost(PalmError):
    """409 on a result: this instance no longer holds the task (LEASE_NOT_HELD), or it is
    already finished (TASK_ALREADY_FINISHED). The result was not recorded; do not retry."""


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # not NaN


def _log_default(msg):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
          f"{os.environ.get('PALM_INSTANCE_ID', 'agent')} {msg}", file=sys.stderr, flush=True)


class Agent:
    """A client of palm's agent endpoints (/v1/agent/*), bound to one instance token.

    Thread-safe: each thread uses its own connection. Construct with `Agent.from_env()` in an
    agent palm started; the constructor is for tests and tools.
    """

    def __init__(self, endpoint="http://127.0.0.1:7070", token="", instance_id="",
                 deployment="", revision=0, config=None, tenant="default",
                 timeout_s=10.0, max_retries=5, backoff_initial_s=0.2, backoff_max_s=5.0,
                 log=_log_default):
        """endpoint: base URL (http or https). timeout_s: per request (long polls add their
        wait). max_retries: extra tries for retryable failures; the n-th waits a random time
        in [0, min(backoff_max_s, backoff_initial_s * 2**n)]. log: a callable(str), or None.
        """
        url = urllib.parse.urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"PALM_ENDPOINT: unsupported scheme {url.scheme!r}")
        self.endpoint = endpoint.rstrip("/")
        self._scheme = url.scheme
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._base = url.path.rstrip("/")
        self.token = token
        self.instance_id = instance_id
        self.deployment = deployment
        self.revision = int(revision or 0)
        self.tenant = tenant
        self.config = dict(config or {})
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.log = log or (lambda msg: None)

        # What the last heartbeat answered.
        self.drain = False
        self.killed = False
        self.policy_version = 0

        self._local = threading.local()
        self._stop = threading.Event()
        self._wake = threading.Event()   # asks the heartbeat thread for a beat now
        self._polling = None    # the connection of a long poll in flight (stop() ends it)
        self._beat_failing = False
        self._status = ("ok", None)
        self._counts = {"tasks_done": 0, "tasks_failed": 0}
        self._health_server = None

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """An Agent from the environment palm gives an instance: PALM_ENDPOINT, PALM_TOKEN,
        PALM_INSTANCE_ID, PALM_DEPLOYMENT, PALM_REVISION, PALM_TENANT and PALM_CONFIG (JSON;
        anything but a JSON object is logged and ignored). Keyword arguments override."""
        env = os.environ if environ is None else environ
        log = overrides.get("log", _log_default)
        config = {}
        raw = env.get("PALM_CONFIG", "")
        if raw:
            try:
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    config = parsed
                else:
                    raise ValueError("not a JSON object")
            except ValueError as e:
                if log:
                    log(f"PALM_CONFIG ignored ({e}): {raw[:200]!r}")
        kwargs = dict(endpoint=env.get("PALM_ENDPOINT", "http://127.0.0.1:7070"),
                      token=env.get("PALM_TOKEN", ""),
                      instance_id=env.get("PALM_INSTANCE_ID", ""),
                      deployment=env.get("PALM_DEPLOYMENT", ""),
                      revision=int(env.get("PALM_REVISION", "0") or 0),
                      tenant=env.get("PALM_TENANT", "default") or "default",
                      config=config)
        kwargs.update(overrides)
        return cls(**kwargs)

    # ---- the agent endpoints -------------------------------------------------------------

    def heartbeat(self, status="ok", reason=None, metrics=None, cost_usd=None, retries=None):
        """POST /v1/agent/heartbeat. `metrics` maps names to numbers (anything else is
        dropped: the daemon refuses non-numbers). Returns {"drain", "killed",
        "policy_version"} and remembers them in `self.drain` / `self.killed`."""
        body = {"status": status,
                "metrics": {str(k): v for k, v in (metrics or {}).items() if _is_number(v)}}
        if reason:
            body["reason"] = str(reason)
        if cost_usd is not None:
            body["cost_usd"] = float(cost_usd)
        _, answer = self._call("POST", "/v1/agent/heartbeat", body, retries=retries)
        answer = answer if isinstance(answer, dict) else {}
        self.drain = bool(answer.get("drain", False))
        self.killed = bool(answer.get("killed", False))
        self.policy_version = answer.get("policy_version", 0)
        return {"drain": self.drain, "killed": self.killed,
                "policy_version": self.policy_version}

    def next_task(self, wait_s=30):
        """GET /v1/agent/tasks/next?wait_s=N (0..60): a task dict ({id, deployment, mode,
        input, attempt, max_attempts, timeout_s, lease_expires_at, created_at}) or None when
        none came within the wait (also at once while draining or not ready). Returns None
        too when `stop()` interrupted the poll."""
        wait_s = max(0, min(60, int(wait_s)))
        try:
            status, task = self._call("GET", f"/v1/agent/tasks/next?wait_s={wait_s}",
                                      extra_timeout=wait_s, long_poll=True)
        except TransportError:
            if self._stop.is_set():
                return None
            raise
        if status == 204 or not isinstance(task, dict):
            return None
        return task

    def complete(self, task_id, ok, output=None, error=None, cost_usd=None, attempt=None,
                 retries=None):
        """POST /v1/agent/tasks/{id}/result. Returns True once the daemon recorded it.
        Raises LeaseLost on 409 (not retried), PalmError on other refusals. When a retry
        follows a failure that may have reached the daemon (the answer was lost), a 409
        TASK_ALREADY_FINISHED means the first try was recorded, and True is returned."""
        self._post_result(task_id, ok, output, error, cost_usd, attempt, retries, None)
        return True

    def complete_and_next(self, task_id, ok, output=None, error=None, cost_usd=None,
                          attempt=None, wait_s=30, retries=None):
        """Posts the result like `complete`, and in the same round trip long-polls for the
        next task (POST .../result?next_wait_s=N): returns that task dict, or None when none
        came within `wait_s` (or the first try was recorded but its answer lost)."""
        return self._post_result(task_id, ok, output, error, cost_usd, attempt, retries,
                                 max(0, min(60, int(wait_s))))

    def _post_result(self, task_id, ok, output, error, cost_usd, attempt, retries, next_wait_s):
        body = {"ok": bool(ok)}
        if output is not None:
            body["output"] = output
        if error is not None:
            body["error"] = str(error)
        elif not ok:
            body["error"] = "failed"
        if cost_usd is not None:
            body["cost_usd"] = float(cost_usd)
        if attempt is not None:
            body["attempt"] = int(attempt)
        path = "/v1/agent/tasks/" + urllib.parse.quote(str(task_id), safe="") + "/result"
        extra = {}
        if next_wait_s is not None:
            path += f"?next_wait_s={next_wait_s}"
            extra = {"extra_timeout": next_wait_s, "long_poll": True}
        sent_before = []
        try:
            _, answer = self._call("POST", path, body, retries=retries, conflict=LeaseLost,
                                   on_retry=lambda: sent_before.append(True), **extra)
        except LeaseLost as e:
            if sent_before and e.code == "TASK_ALREADY_FINISHED":
                return None
            raise
        except TransportError:
            if next_wait_s is not None and self._stop.is_set():
                # stop() cut the call short: make sure the result itself is recorded.
                self._post_result(task_id, ok, output, error, cost_usd, attempt, retries, None)
                return None
            raise
        nxt = answer.get("next") if isinstance(answer, dict) else None
        return nxt if isinstance(nxt, dict) else None

    # ---- the loop ------------------------------------------------------------------------

    def set_status(self, status="ok", reason=None):
        """What the next heartbeats of `run` report: "ok" or "degraded" (with a reason)."""
        if status not in ("ok", "degraded"):
            raise ValueError('status must be "ok" or "degraded"')
        self._status = (status, reason)

    def stop(self):
        """Asks `run` to return after the task in hand; ends a long poll in flight at once.
        Safe from signal handlers and other threads."""
        self._stop.set()
        self._wake.set()
        conn = self._polling    # no lock: this may run in a signal handler
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def stopping(self):
        return self._stop.is_set()

    def run(self, handler, heartbeat_every=5, metrics=None, wait_s=30, exit_on_drain=True,
            serve_health=True, install_signals=True, remember=1024):
        """Serves tasks until stopped. Returns 0.

        handler(task_input, task) -> output (any JSON value); raising makes the result
            ok:false with the exception text as `error`.
        heartbeat_every: seconds between heartbeats (a background thread; the first is sent
            before the first poll).
        metrics: callable() -> {name: number}, merged over the SDK's own tasks_done and
            tasks_failed counters in every heartbeat. It may also return "cost_usd".
        exit_on_drain: return once a heartbeat says drain and no task is in hand.
        serve_health: serve GET /healthz on PALM_PORT_HTTP when it is set.
        install_signals: SIGTERM/SIGINT call stop() (main thread only).
        remember: how many posted results are kept to answer redeliveries.
        """
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        port = os.environ.get("PALM_PORT_HTTP")
        if serve_health and port:
            self.serve_health(int(port))
        self.log(f"starting: deployment {self.deployment or '-'}, revision "
                 f"{self.revision}, pid {os.getpid()}")

        beat = threading.Thread(target=self._heartbeat_loop, args=(heartbeat_every, metrics),
                                name="palm-heartbeat", daemon=True)
        self._beat_once(metrics)
        beat.start()

        done = OrderedDict()   # task id -> (ok, output, error): answers redeliveries
        pending = None         # the next task, handed over with the last result's answer
        failing_since = None
        delay = 0.5
        while not self._stop.is_set():
            if exit_on_drain and self.drain:
                self.log("drain requested and no task in hand: stopping")
                break
            if self.killed:
                self._stop.wait(min(1.0, heartbeat_every))   # kill switch: idle, keep beating
                continue
            if pending is not None:
                # The answer to the last result carried the next task already.
                task, pending = pending, None
                pending = self._handle(handler, task, done, remember, wait_s, exit_on_drain)
                continue
            started = time.monotonic()
            try:
                task = self.next_task(wait_s)
                if failing_since is not None:
                    self.log("daemon reachable again")
                failing_since, delay = None, 0.5
            except PalmError as e:
                if failing_since is None:
                    failing_since = time.monotonic()
                    self.log(f"polling for tasks failed ({e}); retrying with backoff")
                self._stop.wait(random.uniform(0, delay))
                delay = min(delay * 2, 30.0)
                continue
            if task is None:
                # An empty answer that came at once (not ready yet, or draining): beat now
                # (the answer says whether to drain), and do not spin.
                if time.monotonic() - started < 0.5 and not self._stop.is_set():
                    self._wake.set()
                    self._stop.wait(0.5)
                continue
            pending = self._handle(handler, task, done, remember, wait_s, exit_on_drain)
        self.stop()
        beat.join(timeout=2)
        if self._health_server is not None:
            self._health_server.shutdown()
            self._health_server.server_close()
            self._health_server = None
        self.close()
        self.log("stopped")
        return 0

    def _handle(self, handler, task, done, remember, wait_s, exit_on_drain):
        """Runs the handler and posts the result; returns the next task when the daemon
        handed one over with the result's answer (one round trip per task), else None."""
        task_id = task.get("id")
        attempt = task.get("attempt")
        if task_id in done:
            ok, output, error = done[task_id]
            self.log(f"{task_id} redelivered (attempt {attempt}): sending the same result")
        else:
            t0 = time.monotonic()
            try:
                output, ok, error = handler(task.get("input"), task), True, None
                json.dumps(output)   # fail here, as the task's error, not in complete()
            except Exception as e:  # the agent answered: the task fails, the agent lives on
                output, ok, error = None, False, f"{type(e).__name__}: {e}"
            self._counts["tasks_done" if ok else "tasks_failed"] += 1
            done[task_id] = (ok, output, error)
            while len(done) > remember:
                done.popitem(last=False)
            if not ok:
                self.log(f"{task_id} failed after {time.monotonic() - t0:.3f}s: {error}")
        # Keep trying to post through a daemon outage for as long as the lease may last
        # (leases survive a daemon restart).
        deadline = time.monotonic() + max(10.0, float(task.get("timeout_s") or 60))
        while True:
            try:
                if self._stop.is_set() or self.killed or (exit_on_drain and self.drain):
                    self.complete(task_id, ok, output=output, error=error, attempt=attempt)
                    return None
                return self.complete_and_next(task_id, ok, output=output, error=error,
                                              attempt=attempt, wait_s=wait_s)
            except LeaseLost as e:
                self.log(f"{task_id} result not recorded: {e.code} ({e.message})")
                return None
            except TransportError as e:
                if time.monotonic() > deadline:
                    self.log(f"{task_id} result lost: {e}")
                    return None
                time.sleep(random.uniform(0.5, 2.0))
            except PalmError as e:
                self.log(f"{task_id} result refused: {e}")
                return None

    def _beat_once(self, metrics):
        values = dict(self._counts)
        cost = None
        if metrics is not None:
            try:
                extra = dict(metrics() or {})
                cost = extra.pop("cost_usd", None)
                values.update(extra)
            except Exception as e:
                self.log(f"metrics callback failed: {type(e).__name__}: {e}")
        status, reason = self._status
        try:
            answer = self.heartbeat(status, reason, values, cost_usd=cost, retries=1)
            if self._beat_failing:
                self.log("heartbeats resumed")
            self._beat_failing = False
            return answer
        except PalmError as e:
            if not self._beat_failing:
                self.log(f"heartbeat failed ({e}); will keep trying")
            self._beat_failing = True
            return None

    def _heartbeat_loop(self, every, metrics):
        was_killed = self.killed
        last = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(max(0.0, every - (time.monotonic() - last)))
            self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() - last < min(1.0, every):
                continue   # an early beat was asked for just after a beat: wait the period
            last = time.monotonic()
            self._beat_once(metrics)
            if self.killed != was_killed:
                self.log("kill switch engaged: idling" if self.killed else "kill switch lifted")
                was_killed = self.killed
        self.close()

    # ---- GET /healthz --------------------------------------------------------------------

    def serve_health(self, port, host="127.0.0.1"):
        """Serves GET /healthz (200 "ok"; 503 once stopping) on host:port in a thread."""
        agent = self

        class Health(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] == "/healthz":
                    code, body = (503, b"stopping") if agent.stopping else (200, b"ok")
                else:
                    code, body = 404, b"not found"
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer((host, port), Health)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="palm-healthz", daemon=True).start()
        self._health_server = server
        return server

    # ---- transport -----------------------------------------------------------------------

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (http.client.HTTPSConnection if self._scheme == "https"
                   else http.client.HTTPConnection)
            conn = cls(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _drop_connection(self):
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self):
        """Closes this thread's connection (reopened on the next call)."""
        self._drop_connection()

    def _backoff(self, n, retry_after=None, interruptible=False):
        """Full jitter: a random wait in [0, min(max, initial * 2**n)], at least Retry-After
        (capped). A long poll's wait ends early on stop()."""
        cap = min(self.backoff_max_s, self.backoff_initial_s * (2 ** n))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s * 4))
        if interruptible:
            self._stop.wait(delay)
        else:
            time.sleep(delay)

    def _call(self, method, path, body=None, retries=None, extra_timeout=0, long_poll=False,
              conflict=None, on_retry=None):
        """One API call with retries. Returns (status, parsed JSON or None) for 2xx."""
        retries = self.max_retries if retries is None else retries
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        last = None
        for n in range(retries + 1):
            if n > 0:
                if on_retry is not None:
                    on_retry()
                self._backoff(n - 1, getattr(last, "retry_after", None), interruptible=long_poll)
            if long_poll and self._stop.is_set():
                raise TransportError("stopping")
            conn = self._connection()
            try:
                conn.timeout = self.timeout_s + extra_timeout
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                if long_poll:
                    if conn.sock is None:
                        conn.connect()
                    self._polling = conn
                    if self._stop.is_set():   # stop() ran before _polling was set
                        raise TransportError("stopping")
                conn.request(method, self._base + path, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                retry_after = resp.getheader("Retry-After")
                if resp.will_close:
                    self._drop_connection()
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                last = TransportError(f"{method} {path}: {type(e).__name__}: {e}")
                if long_poll and self._stop.is_set():
                    raise TransportError("stopping")
                continue
            finally:
                if long_poll:
                    self._polling = None
            if 200 <= status < 300:
                if status == 204 or not data:
                    return status, None
                try:
                    return status, json.loads(data)
                except ValueError:
                    raise PalmError(status, "BAD_RESPONSE", f"not JSON: {data[:200]!r}")
            err = self._error(status, data)
            if status == 429 or status >= 500:
                try:
                    err.retry_after = float(retry_after) if retry_after else None
                except ValueError:
                    err.retry_after = None
                last = err
                continue
            if status == 409 and conflict is not None:
                raise conflict(err.status, err.code, err.message, err.hint)
            raise err
        raise last

    @staticmethod
    def _error(status, data):
        code, message, hint = f"HTTP_{status}", data.decode("utf-8", "replace")[:500], None
        try:
            e = json.loads(data).get("error") or {}
            code = e.get("code") or code
            message = e.get("message") or message
            hint = e.get("hint")
        except (ValueError, AttributeError):
            pass
        return PalmError(status, code, message, hint)


def main():
    """`python3 palm_agent.py`: an echo agent (answers each task with its input)."""
    return Agent.from_env().run(lambda task_input, task: task_input)


if __name__ == "__main__":
    sys.exit(main())
