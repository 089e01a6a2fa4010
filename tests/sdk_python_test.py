#!/usr/bin/env python3
"""The Python SDK (sdk/python/palm_agent.py) against a real palm daemon.

    PALM_BIN=build/src/palm/palm python3 tests/sdk_python_test.py [-v]

A daemon on a free loopback port with a temp data dir; a deployment of
tests/agents/sdk_test_agent.py (which runs on the SDK); tasks submitted over the HTTP API:
routed and broadcast results, handler errors, redelivery after an agent crash and after a
lease expiry (the late result gets 409 LEASE_NOT_HELD), heartbeat metrics, drain and
SIGTERM. Stops the daemon and its agents (`palm daemon stop --all`) at the end.
"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdk_harness import SRC, ApiError, DeploymentTestCase, wait_for  # noqa: E402

DEPLOYMENT = "sdkpy"
REPLICAS = 2


class PythonSdkTest(DeploymentTestCase):
    deployment = DEPLOYMENT
    replicas = REPLICAS

    @classmethod
    def deploy(cls, d):
        cls.markers = tempfile.mkdtemp(prefix="palm-sdk-markers-", dir=d.dir)
        d.register_spec({
            "kind": "AgentSpec", "name": "sdk-test-agent", "version": "1.0.0",
            "command": ["python3", os.path.join(SRC, "tests", "agents", "sdk_test_agent.py")],
            "workdir": d.dir,
            "env": {"PYTHONPATH": os.path.join(SRC, "sdk", "python")},
            "config": {"tag": "from-spec", "heartbeat_s": 1},
            "ports": ["http"],
            "health_check": {
                "liveness": {"http": {"port": "http", "path": "/healthz"},
                             "initial_delay_s": 1, "period_s": 2},
                "readiness": {"heartbeat": {"max_age_s": 10}, "period_s": 1}},
            "stop": {"signal": "SIGTERM", "grace_s": 10}})
        d.create_deployment({
            "name": DEPLOYMENT, "spec": "sdk-test-agent@1.0.0", "replicas": REPLICAS,
            "config": {"tag": "from-deployment"},
            "restart_policy": {"policy": "always", "backoff_initial_s": 1, "backoff_max_s": 2}})

    def marker(self, name):
        return os.path.join(self.markers, name)

    def test_route_tasks(self):
        tasks = [self.d.submit(DEPLOYMENT, {"op": "echo", "n": n}) for n in range(8)]
        for n, t in enumerate(tasks):
            done = self.d.wait_task(t["id"])
            self.assertEqual(done["state"], "Succeeded", done)
            out = done["output"]
            self.assertEqual(out["input"], {"op": "echo", "n": n})
            self.assertEqual((out["attempt"], out["tag"], out["revision"]), (1, "from-deployment", 1))
            self.assertIn(out["instance"], self.ids)
            self.assertEqual(done["instance"], out["instance"])
            self.assertEqual(done["attempts"], 1)

    def test_handler_error_fails_the_task(self):
        t = self.d.submit(DEPLOYMENT, {"op": "fail", "message": "the knowledge base is empty"})
        done = self.d.wait_task(t["id"])
        self.assertEqual(done["state"], "Failed", done)
        self.assertIn("the knowledge base is empty", done["error"])
        self.assertEqual(done["attempts"], 1)

    def test_broadcast(self):
        t = self.d.submit(DEPLOYMENT, {"op": "echo"}, mode="broadcast")
        done = self.d.wait_task(t["id"])
        self.assertEqual(done["state"], "Succeeded", done)
        deliveries = done["deliveries"]
        self.assertEqual({x["instance"] for x in deliveries}, self.ids)
        for x in deliveries:
            self.assertEqual((x["state"], x["output"]["instance"]), ("Succeeded", x["instance"]))

    def test_idempotency_key_returns_the_same_task(self):
        a = self.d.submit(DEPLOYMENT, {"op": "echo"}, idempotency_key="sdk-once")
        b = self.d.submit(DEPLOYMENT, {"op": "echo"}, idempotency_key="sdk-once")
        self.assertEqual(a["id"], b["id"])
        self.assertEqual(self.d.wait_task(a["id"])["state"], "Succeeded")

    def test_crash_with_task_in_hand_redelivers(self):
        t = self.d.submit(DEPLOYMENT, {"op": "crash_once", "marker": self.marker("crash")},
                          max_attempts=3)
        done = self.d.wait_task(t["id"])
        self.assertEqual(done["state"], "Succeeded", done)
        self.assertGreaterEqual(done["attempts"], 2)
        self.assertEqual(done["output"]["attempt"], done["attempts"])

    def test_lease_expiry_redelivers_and_late_result_is_refused(self):
        t = self.d.submit(DEPLOYMENT, {"op": "hang_once", "marker": self.marker("hang"), "s": 6},
                          timeout_s=2, max_attempts=5)
        done = self.d.wait_task(t["id"])
        self.assertEqual(done["state"], "Succeeded", done)
        self.assertGreaterEqual(done["attempts"], 2)
        # The instance that hung posts its result late: 409, which the SDK logs, not retries.
        self.assertTrue(wait_for(lambda: any(
            f"{t['id']} result not recorded: LEASE_NOT_HELD" in self.d.read_log(i)
            or f"{t['id']} result not recorded: TASK_ALREADY_FINISHED" in self.d.read_log(i)
            for i in self.ids)), [self.d.read_log(i)[-2000:] for i in self.ids])

    def test_heartbeat_metrics(self):
        t = self.d.submit(DEPLOYMENT, {"op": "echo"})
        self.assertEqual(self.d.wait_task(t["id"])["state"], "Succeeded")

        def reported():
            items = self.d.instances(DEPLOYMENT)
            return (all(i["metrics"].get("sdk_test_agent") == 1 for i in items) and
                    sum(i["metrics"].get("tasks_done", 0) for i in items) >= 1)
        self.assertTrue(wait_for(reported), self.d.instances(DEPLOYMENT))

    def test_zz_drain_stops_the_agent_and_a_replacement_serves(self):
        victim = sorted(self.ids)[0]
        status, body = self.d.call("POST", f"/v1/instances/{victim}/drain", ok=None)
        if status == 404 and "ROUTE_NOT_FOUND" in str(body):
            self.skipTest("the daemon has no drain endpoint")
        self.assertEqual(status, 202, body)
        self.assertTrue(wait_for(lambda: victim not in {
            i["id"] for i in self.d.instances(DEPLOYMENT) if i["state"] not in ("Stopped",)}),
            self.d.instances(DEPLOYMENT))
        self.assertTrue(wait_for(lambda: "stopped" in self.d.read_log(victim)),
                        self.d.read_log(victim)[-2000:])
        self.assertTrue(self.d.wait_ready(DEPLOYMENT, REPLICAS), self.d.instances(DEPLOYMENT))
        t = self.d.submit(DEPLOYMENT, {"op": "echo"})
        done = self.d.wait_task(t["id"])
        self.assertEqual(done["state"], "Succeeded", done)
        self.assertNotEqual(done["instance"], victim)

    def test_zz_scale_down_sigterm_is_a_clean_stop(self):
        self.check_scale_down_is_a_clean_stop()


if __name__ == "__main__":
    try:
        unittest.main()
    except ApiError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
