#!/usr/bin/env python3
"""Offline tests of the agent SDKs against a fake palm daemon (http.server on loopback).

    python3 tests/sdk_python_unit_test.py [-v]

Covers the Python SDK (sdk/python/palm_agent.py): retries with backoff on connection errors,
5xx and 429 (and none on other 4xx), 204 from the long poll, 409 on a result (LeaseLost),
keep-alive reuse and reconnects, the run() loop (results, handler errors, redeliveries,
drain, stop, SIGTERM, /healthz). When PALM_CPP_AGENT names the built C++ example agent
(palm_cpp_example_agent), the same fake daemon also drives it, with chunked responses.

Env: PALM_SOURCE_DIR (default: this file's parent's parent).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SRC = os.environ.get("PALM_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK = os.path.join(SRC, "sdk", "python")
sys.path.insert(0, SDK)
sys.path.insert(0, os.path.join(SRC, "examples", "agents"))

import palm_agent  # noqa: E402
from palm_agent import Agent, LeaseLost, PalmError, TransportError  # noqa: E402

DEADLINE_S = 20  # generous bound for "eventually"; never a claim about speed


def wait_for(cond, timeout=DEADLINE_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeDaemon:
    """The agent endpoints of a palm daemon, scriptable.

    - `script[(method, path_prefix)]`: a list of canned answers consumed in order before the
      default behaviour: (status, body_dict_or_None, headers) or the string "drop" (read the
      request, close the connection without answering).
    - default heartbeat: answers {drain, killed, policy_version} from the attributes.
    - default next: pops `tasks` (waits up to min(wait_s, max_wait) for one), else 204.
    - default result: records it; 409 LEASE_NOT_HELD for ids in `lease_lost`.
    - `chunked`: JSON answers use Transfer-Encoding: chunked.
    """

    def __init__(self, chunked=False):
        self.lock = threading.Condition()
        self.script = {}
        self.requests = []        # (method, path, body, headers)
        self.heartbeats = []
        self.results = []         # (task id, body)
        self.tasks = []
        self.lease_lost = set()
        self.drain = False
        self.killed = False
        self.connections = 0
        self.chunked = chunked
        self.max_wait = 30.0
        self.closed = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections += 1

            def log_message(self, *args):
                pass

            def _answer(self, status, body=None, headers=None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if data and fake.chunked:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = len(data) // 2
                    for part in (data[:half], data[half:]):
                        if part:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    if data:
                        self.send_header("Content-Type", "application/json")
                    if status != 204:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                self.wfile.flush()

            def _handle(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                path = self.path
                with fake.lock:
                    fake.requests.append((method, path, body, dict(self.headers)))
                    canned = None
                    for (m, prefix), answers in fake.script.items():
                        if m == method and path.startswith(prefix) and answers:
                            canned = answers.pop(0)
                            break
                    fake.lock.notify_all()
                if canned == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if canned is not None:
                    status, cbody, headers = (list(canned) + [None, None])[:3]
                    return self._answer(status, cbody, headers)
                if self.headers.get("Authorization") != "Bearer tok":
                    return self._answer(401, {"error": {"code": "UNAUTHORIZED", "message": "bad token"}})
                if method == "POST" and path == "/v1/agent/heartbeat":
                    with fake.lock:
                        fake.heartbeats.append(body)
                        fake.lock.notify_all()
                    return self._answer(200, {"drain": fake.drain, "killed": fake.killed,
                                              "policy_version": 7})
                def take_task(wait_s):
                    end = time.monotonic() + min(wait_s, fake.max_wait)
                    with fake.lock:
                        while (not fake.tasks and not fake.drain and not fake.closed
                               and time.monotonic() < end):
                            fake.lock.wait(0.05)
                        return fake.tasks.pop(0) if fake.tasks and not fake.drain else None

                if method == "GET" and path.startswith("/v1/agent/tasks/next"):
                    wait_s = float(path.split("wait_s=")[1]) if "wait_s=" in path else 30
                    task = take_task(wait_s)
                    return self._answer(200, task) if task else self._answer(204)
                route, _, query = path.partition("?")
                if method == "POST" and route.startswith("/v1/agent/tasks/") and route.endswith("/result"):
                    task_id = route.split("/")[4]
                    if task_id in fake.lease_lost:
                        return self._answer(409, {"error": {"code": "LEASE_NOT_HELD", "message": "lease expired"}})
                    with fake.lock:
                        fake.results.append((task_id, body))
                        fake.lock.notify_all()
                    answer = {"id": task_id, "state": "Succeeded", "accepted": True}
                    if query.startswith("next_wait_s="):   # the result also asks for the next task
                        answer["next"] = take_task(float(query.split("=")[1]))
                    return self._answer(200, answer)
                return self._answer(404, {"error": {"code": "NOT_FOUND", "message": path}})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass   # clients that went away (stop(), SIGTERM) are part of the tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_task(self, task_id, task_input, attempt=1, timeout_s=60):
        with self.lock:
            self.tasks.append({"id": task_id, "deployment": "d", "mode": "route",
                               "input": task_input, "attempt": attempt, "max_attempts": 3,
                               "timeout_s": timeout_s, "lease_expires_at": "x", "created_at": "x"})
            self.lock.notify_all()

    def set_drain(self):
        with self.lock:
            self.drain = True
            self.lock.notify_all()

    def count(self, method, prefix):
        with self.lock:
            return sum(1 for m, p, _, _ in self.requests if m == method and p.startswith(prefix))

    def close(self):
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()


AGENTS = []


def make_agent(fake, **kw):
    args = dict(endpoint=fake.endpoint, token="tok", instance_id="t-001", deployment="t",
                max_retries=3, backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5,
                log=None)
    args.update(kw)
    agent = Agent(**args)
    AGENTS.append(agent)
    return agent


def close_agents():
    while AGENTS:
        AGENTS.pop().close()


class TransportTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeDaemon()
        self.addCleanup(self.fake.close)
        self.addCleanup(close_agents)

    def test_from_env(self):
        a = Agent.from_env({"PALM_ENDPOINT": "http://127.0.0.1:9/", "PALM_TOKEN": "t",
                            "PALM_INSTANCE_ID": "x-001", "PALM_DEPLOYMENT": "x",
                            "PALM_REVISION": "3", "PALM_CONFIG": '{"a": 1}'}, log=None)
        self.assertEqual((a.endpoint, a.token, a.instance_id, a.deployment, a.revision),
                         ("http://127.0.0.1:9", "t", "x-001", "x", 3))
        self.assertEqual(a.config, {"a": 1})
        self.assertEqual(Agent.from_env({"PALM_CONFIG": "[1]"}, log=None).config, {})
        self.assertEqual(Agent.from_env({"PALM_CONFIG": "nope"}, log=None).config, {})

    def test_heartbeat_answer_and_metrics(self):
        a = make_agent(self.fake)
        out = a.heartbeat(metrics={"x": 1, "y": 2.5, "bad": "s", "flag": True}, cost_usd=0.5)
        self.assertEqual(out, {"drain": False, "killed": False, "policy_version": 7})
        self.assertEqual(self.fake.heartbeats[-1],
                         {"status": "ok", "metrics": {"x": 1, "y": 2.5}, "cost_usd": 0.5})
        a.heartbeat(status="degraded", reason="slow")
        self.assertEqual(self.fake.heartbeats[-1]["reason"], "slow")

    def test_retries_5xx_then_succeeds(self):
        self.fake.script[("POST", "/v1/agent/heartbeat")] = [
            (503, {"error": {"code": "STORE_UNAVAILABLE", "message": "x"}}), (500, None)]
        self.assertFalse(make_agent(self.fake).heartbeat()["drain"])
        self.assertEqual(self.fake.count("POST", "/v1/agent/heartbeat"), 3)

    def test_retries_429_with_retry_after(self):
        self.fake.script[("GET", "/v1/agent/tasks/next")] = [
            (429, {"error": {"code": "RATE_LIMITED", "message": "slow down"}}, {"Retry-After": "0"})]
        self.assertIsNone(make_agent(self.fake).next_task(wait_s=0))
        self.assertEqual(self.fake.count("GET", "/v1/agent/tasks/next"), 2)

    def test_gives_up_after_max_retries(self):
        self.fake.script[("POST", "/v1/agent/heartbeat")] = [(502, None)] * 10
        with self.assertRaises(PalmError) as cm:
            make_agent(self.fake, max_retries=2).heartbeat()
        self.assertEqual(cm.exception.status, 502)
        self.assertEqual(self.fake.count("POST", "/v1/agent/heartbeat"), 3)

    def test_no_retry_on_4xx(self):
        self.fake.script[("POST", "/v1/agent/heartbeat")] = [
            (400, {"error": {"code": "BAD_REQUEST", "message": "heartbeat.status", "hint": "h"}})]
        with self.assertRaises(PalmError) as cm:
            make_agent(self.fake).heartbeat()
        self.assertEqual((cm.exception.status, cm.exception.code, cm.exception.hint),
                         (400, "BAD_REQUEST", "h"))
        self.assertEqual(self.fake.count("POST", "/v1/agent/heartbeat"), 1)
        with self.assertRaises(PalmError) as cm:
            make_agent(self.fake, token="wrong").heartbeat()
        self.assertEqual(cm.exception.code, "UNAUTHORIZED")

    def test_connection_refused_raises_transport_error(self):
        a = make_agent(self.fake, endpoint=f"http://127.0.0.1:{free_port()}", max_retries=2)
        with self.assertRaises(TransportError):
            a.heartbeat()

    def test_dropped_connection_is_retried_on_a_new_one(self):
        self.fake.script[("POST", "/v1/agent/heartbeat")] = ["drop"]
        a = make_agent(self.fake)
        a.heartbeat()
        self.assertEqual(self.fake.count("POST", "/v1/agent/heartbeat"), 2)
        self.assertEqual(self.fake.connections, 2)

    def test_keep_alive_reuses_one_connection_per_thread(self):
        a = make_agent(self.fake)
        for _ in range(5):
            a.heartbeat()
        self.assertEqual(self.fake.connections, 1)
        t = threading.Thread(target=lambda: (a.heartbeat(), a.close()))
        t.start()
        t.join()
        self.assertEqual(self.fake.connections, 2)

    def test_reconnects_after_server_closes(self):
        self.fake.script[("POST", "/v1/agent/heartbeat")] = [(200, {"drain": True}, {"Connection": "close"})]
        a = make_agent(self.fake)
        self.assertTrue(a.heartbeat()["drain"])
        self.assertFalse(a.heartbeat()["drain"])
        self.assertEqual(self.fake.connections, 2)

    def test_next_task_204_and_task(self):
        a = make_agent(self.fake)
        self.assertIsNone(a.next_task(wait_s=0))
        self.fake.add_task("task-00000001", {"q": 1})
        task = a.next_task(wait_s=5)
        self.assertEqual((task["id"], task["input"], task["attempt"]), ("task-00000001", {"q": 1}, 1))
        self.assertIn("wait_s=5", self.fake.requests[-1][1])
        self.fake.max_wait = 0
        a.next_task(wait_s=500)
        self.assertIn("wait_s=60", self.fake.requests[-1][1])

    def test_complete_posts_result(self):
        a = make_agent(self.fake)
        self.assertTrue(a.complete("task-00000001", True, output={"a": 1}, cost_usd=0.25, attempt=2))
        self.assertTrue(a.complete("task-00000002", False, error="boom"))
        self.assertEqual(self.fake.results, [
            ("task-00000001", {"ok": True, "output": {"a": 1}, "cost_usd": 0.25, "attempt": 2}),
            ("task-00000002", {"ok": False, "error": "boom"})])

    def test_complete_409_is_lease_lost_not_retried(self):
        self.fake.lease_lost.add("task-00000009")
        with self.assertRaises(LeaseLost) as cm:
            make_agent(self.fake).complete("task-00000009", True, output=1)
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "LEASE_NOT_HELD"))
        self.assertEqual(self.fake.count("POST", "/v1/agent/tasks/"), 1)

    def test_complete_already_finished_after_a_lost_answer_is_success(self):
        self.fake.script[("POST", "/v1/agent/tasks/")] = [
            "drop", (409, {"error": {"code": "TASK_ALREADY_FINISHED", "message": "done"}})]
        self.assertTrue(make_agent(self.fake).complete("task-00000003", True))
        self.assertEqual(self.fake.count("POST", "/v1/agent/tasks/"), 2)
        # Without a retry before it, TASK_ALREADY_FINISHED is a LeaseLost.
        self.fake.script[("POST", "/v1/agent/tasks/")] = [
            (409, {"error": {"code": "TASK_ALREADY_FINISHED", "message": "done"}})]
        with self.assertRaises(LeaseLost):
            make_agent(self.fake).complete("task-00000003", True)

    def test_serve_health(self):
        a = make_agent(self.fake)
        port = free_port()
        server = a.serve_health(port)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            self.assertEqual((r.status, r.read()), (200, b"ok"))


class RunLoopTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeDaemon()
        self.addCleanup(self.fake.close)
        self.addCleanup(close_agents)

    def start(self, handler, **kw):
        agent = make_agent(self.fake)
        kw.setdefault("install_signals", False)
        kw.setdefault("serve_health", False)
        kw.setdefault("heartbeat_every", 0.2)
        kw.setdefault("wait_s", 2)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("rc", agent.run(handler, **kw)))
        t.start()
        self.addCleanup(lambda: (agent.stop(), t.join(DEADLINE_S)))
        return agent, t, result

    def test_results_errors_redeliveries_and_drain(self):
        calls = []

        def handler(task_input, task):
            calls.append(task["id"])
            if task_input.get("fail"):
                raise ValueError("no such symbol")
            if task_input.get("bad_output"):
                return {1, 2}
            return {"echo": task_input, "attempt": task["attempt"]}

        self.fake.add_task("task-00000001", {"x": 1})
        self.fake.add_task("task-00000002", {"fail": True})
        self.fake.add_task("task-00000003", {"bad_output": True})
        self.fake.add_task("task-00000001", {"x": 1}, attempt=2)   # a redelivery
        agent, t, result = self.start(handler, metrics=lambda: {"custom": 4, "cost_usd": 0.1})
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 4), self.fake.results)
        self.assertEqual(calls, ["task-00000001", "task-00000002", "task-00000003"])
        r = dict((i, b) for i, b in self.fake.results[:3])
        self.assertEqual(r["task-00000001"], {"ok": True, "output": {"echo": {"x": 1}, "attempt": 1}, "attempt": 1})
        self.assertEqual(r["task-00000002"], {"ok": False, "error": "ValueError: no such symbol", "attempt": 1})
        self.assertFalse(r["task-00000003"]["ok"])
        self.assertIn("TypeError", r["task-00000003"]["error"])
        self.assertEqual(self.fake.results[3], ("task-00000001",
                         {"ok": True, "output": {"echo": {"x": 1}, "attempt": 1}, "attempt": 2}))
        self.assertTrue(wait_for(lambda: any(
            (h["metrics"].get("tasks_done"), h["metrics"].get("tasks_failed")) == (1, 2)
            for h in list(self.fake.heartbeats))))
        hb = self.fake.heartbeats[-1]
        self.assertEqual((hb["metrics"]["custom"], hb["cost_usd"]), (4, 0.1))
        self.fake.set_drain()
        t.join(DEADLINE_S)
        self.assertFalse(t.is_alive(), "run() did not return after drain")
        self.assertEqual(result["rc"], 0)

    def test_drain_waits_for_the_task_in_hand(self):
        release = threading.Event()
        started = threading.Event()

        def handler(task_input, task):
            started.set()
            release.wait(DEADLINE_S)
            return "done"

        self.fake.add_task("task-00000001", {})
        agent, t, _ = self.start(handler)
        self.assertTrue(started.wait(DEADLINE_S))
        self.fake.set_drain()
        self.assertTrue(wait_for(lambda: agent.drain))
        self.assertTrue(t.is_alive())
        release.set()
        t.join(DEADLINE_S)
        self.assertFalse(t.is_alive())
        self.assertEqual(self.fake.results, [("task-00000001", {"ok": True, "output": "done", "attempt": 1})])

    def test_stop_ends_a_long_poll(self):
        self.fake.max_wait = 60
        agent, t, _ = self.start(lambda i, task: i, wait_s=60)
        self.assertTrue(wait_for(lambda: self.fake.count("GET", "/v1/agent/tasks/next") >= 1))
        agent.stop()
        t.join(DEADLINE_S)
        self.assertFalse(t.is_alive(), "stop() did not end the long poll")

    def test_lease_lost_result_is_logged_and_loop_goes_on(self):
        self.fake.lease_lost.add("task-00000001")
        self.fake.add_task("task-00000001", {})
        self.fake.add_task("task-00000002", {})
        self.start(lambda i, task: "ok")
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 1))
        self.assertEqual(self.fake.results[0][0], "task-00000002")
        self.assertEqual(self.fake.count("POST", "/v1/agent/tasks/task-00000001"), 1)

    def test_daemon_outage_during_polling_is_survived(self):
        self.fake.script[("GET", "/v1/agent/tasks/next")] = [(503, None)] * 12
        self.fake.add_task("task-00000001", {"n": 1})
        self.start(lambda i, task: i)
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 1))

    def test_killed_agent_does_not_poll(self):
        self.fake.killed = True
        self.fake.add_task("task-00000001", {})
        agent, t, _ = self.start(lambda i, task: i)
        self.assertTrue(wait_for(lambda: len(self.fake.heartbeats) >= 3))
        self.assertEqual(self.fake.count("GET", "/v1/agent/tasks/next"), 0)
        self.fake.killed = False
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 1))


AGENT_SCRIPT = """
import sys
sys.path.insert(0, {sdk!r})
from palm_agent import Agent
sys.exit(Agent.from_env().run(lambda i, task: {{"got": i}}, heartbeat_every=0.2))
"""


class ProcessBase(unittest.TestCase):
    """Real agent processes against the fake daemon."""

    def setUp(self):
        self.fake = FakeDaemon(chunked=getattr(self, "chunked", False))
        self.addCleanup(self.fake.close)

    def spawn(self, argv, port=None, config=None):
        env = dict(os.environ, PALM_ENDPOINT=self.fake.endpoint, PALM_TOKEN="tok",
                   PALM_INSTANCE_ID="p-001", PALM_DEPLOYMENT="p", PALM_REVISION="1",
                   PALM_CONFIG=json.dumps(dict(config or {"k": "v"}, heartbeat_s=0.2)))
        env.pop("PALM_PORT_HTTP", None)
        if port:
            env["PALM_PORT_HTTP"] = str(port)
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def cleanup():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
        self.addCleanup(cleanup)
        return proc

    def check_health(self, port):
        def ok():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        self.assertTrue(wait_for(ok), "no /healthz")


class ProcessTest(ProcessBase):
    def test_python_agent_sigterm_during_long_poll(self):
        self.fake.max_wait = 60
        port = free_port()
        proc = self.spawn([sys.executable, "-c", AGENT_SCRIPT.format(sdk=SDK)], port)
        self.fake.add_task("task-00000001", [1, 2])
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 1))
        self.assertEqual(self.fake.results[0][1]["output"], {"got": [1, 2]})
        self.check_health(port)
        # Its result's answer is the long poll for the next task (?next_wait_s=).
        posted = [p for m, p, _, _ in self.fake.requests if m == "POST" and "/result" in p]
        self.assertTrue(posted and "next_wait_s=" in posted[-1], posted)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(DEADLINE_S), 0)
        self.assertIn(b"stopped", proc.stdout.read())


@unittest.skipUnless(os.environ.get("PALM_CPP_AGENT"), "PALM_CPP_AGENT not set")
class CppAgentTest(ProcessBase):
    """The C++ example agent (sdk/cpp), with chunked answers from the fake daemon."""
    chunked = True

    def test_cpp_example_agent(self):
        self.fake.max_wait = 60
        port = free_port()
        proc = self.spawn([os.environ["PALM_CPP_AGENT"]], port)
        self.fake.add_task("task-00000001", {"text": "hello palm"})
        self.fake.add_task("task-00000002", {"fail": "bad input"})
        self.fake.add_task("task-00000001", {"text": "hello palm"}, attempt=2)
        self.fake.lease_lost.add("task-00000004")
        self.fake.add_task("task-00000004", {"text": "lost"})
        self.fake.add_task("task-00000005", {"echo": 1})
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 4), self.fake.results)
        r = self.fake.results
        self.assertEqual(r[0], ("task-00000001", {"ok": True, "output": {"text": "HELLO PALM", "instance": "p-001"}, "attempt": 1}))
        self.assertEqual(r[1][1]["ok"], False)
        self.assertIn("bad input", r[1][1]["error"])
        self.assertEqual(r[2], ("task-00000001", {"ok": True, "output": {"text": "HELLO PALM", "instance": "p-001"}, "attempt": 2}))
        self.assertEqual(r[3][1]["output"]["echo"], {"echo": 1})
        self.check_health(port)
        self.assertTrue(wait_for(lambda: any(h["metrics"].get("tasks_done") == 3 for h in list(self.fake.heartbeats))),
                        self.fake.heartbeats[-1:])
        self.assertEqual(self.fake.connections, 2)   # keep-alive: main + heartbeat threads
        # SIGTERM during a long poll (the last result's answer waits for the next task): a
        # clean exit.
        posted = [p for m, p, _, _ in self.fake.requests if m == "POST" and "/result" in p]
        self.assertTrue(posted and "next_wait_s=" in posted[-1], posted)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(DEADLINE_S), 0)

    def test_cpp_agent_exits_on_drain_and_retries_5xx(self):
        self.fake.script[("POST", "/v1/agent/heartbeat")] = [(503, None), (500, None)]
        self.fake.script[("POST", "/v1/agent/tasks/")] = [(503, None)]
        proc = self.spawn([os.environ["PALM_CPP_AGENT"]])
        self.fake.add_task("task-00000001", {"text": "x"})
        self.assertTrue(wait_for(lambda: len(self.fake.results) == 1))
        self.assertEqual(self.fake.count("POST", "/v1/agent/tasks/"), 2)
        self.fake.set_drain()
        self.assertEqual(proc.wait(DEADLINE_S), 0)


class ExampleAgentsTest(ProcessBase):
    """examples/agents/{support,buyer,seller}_agent.py against the fake daemon."""

    def run_agent(self, name, tasks, config=None):
        for i, task_input in enumerate(tasks, 1):
            self.fake.add_task(f"task-{i:08d}", task_input)
        proc = self.spawn([sys.executable, os.path.join(SRC, "examples", "agents", name)],
                          config=config)
        self.assertTrue(wait_for(lambda: len(self.fake.results) == len(tasks)),
                        self.fake.results)
        self.fake.set_drain()
        self.assertEqual(proc.wait(DEADLINE_S), 0)
        results = dict(self.fake.results)
        return [results[f"task-{i:08d}"] for i in range(1, len(tasks) + 1)]

    def test_support_agent(self):
        r = self.run_agent("support_agent.py", [
            {"question": "How do I reset my password?"},
            "Where is my package? No tracking yet",
            {"question": "What is the meaning of life?"},
            {"question": ""}])
        self.assertEqual(r[0]["output"]["topic"], "password")
        self.assertFalse(r[0]["output"]["escalate"])
        self.assertEqual(r[1]["output"]["topic"], "shipping")
        self.assertTrue(r[2]["output"]["escalate"])
        self.assertFalse(r[3]["ok"])
        self.assertTrue(any(h["metrics"].get("tickets_answered") == 2 and
                            h["metrics"].get("tickets_escalated") == 1
                            for h in self.fake.heartbeats))

    def test_buyer_agent(self):
        r = self.run_agent("buyer_agent.py", [
            {"action": "quote", "symbol": "ACME"},
            {"action": "trade", "symbol": "acme", "qty": 10},
            {"action": "trade", "symbol": "ACME", "qty": 5, "limit": 0.01},
            {"action": "trade", "symbol": "NOPE", "qty": 1},
            {"action": "trade", "symbol": "GLOBEX", "qty": 1000},
            {"action": "portfolio"}], config={"funding": 5000})
        q = r[0]["output"]
        self.assertLess(q["bid"], q["ask"])
        t = r[1]["output"]
        self.assertEqual((t["status"], t["side"], t["qty"], t["position"]), ("filled", "buy", 10, 10))
        self.assertAlmostEqual(t["cash"], round(5000 - t["price"] * 10, 2), places=2)
        self.assertEqual(r[2]["output"]["status"], "not_filled")
        self.assertFalse(r[3]["ok"])
        self.assertIn("unknown symbol", r[3]["error"])
        self.assertFalse(r[4]["ok"])
        self.assertIn("insufficient cash", r[4]["error"])
        p = r[5]["output"]
        self.assertEqual((p["positions"]["ACME"], p["orders_total"]), (10, 2))
        m = self.fake.heartbeats[-1]["metrics"]
        for key in ("pnl_usd", "orders_total", "orders_per_second", "position_ACME"):
            self.assertIn(key, m)

    def test_seller_agent_and_determinism(self):
        tasks = [{"action": "trade", "symbol": "ACME", "qty": 3},
                 {"action": "trade", "symbol": "ACME", "qty": 900}]
        r = self.run_agent("seller_agent.py", tasks, config={"inventory": {"ACME": 100}})
        self.assertEqual((r[0]["output"]["side"], r[0]["output"]["position"]), ("sell", 97))
        self.assertIn("insufficient inventory", r[1]["error"])
        # The same instance id replays the same prices.
        from market import Desk
        desk = Desk("seller", "p-001", {"inventory": {"ACME": 100}})
        self.assertEqual(desk.handle(tasks[0])["price"], r[0]["output"]["price"])


if __name__ == "__main__":
    unittest.main()
