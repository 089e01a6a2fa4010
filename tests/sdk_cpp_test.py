#!/usr/bin/env python3
"""The C++ SDK (sdk/cpp/palm_agent.h) against a real palm daemon, through its example agent.

    PALM_BIN=build/src/palm/palm PALM_CPP_AGENT=build/sdk/palm_cpp_example_agent \\
        python3 tests/sdk_cpp_test.py [-v]

A daemon on a free loopback port with a temp data dir; a deployment of
palm_cpp_example_agent (uppercases input.text, fails on input.fail, echoes the rest);
tasks submitted over the HTTP API; heartbeat metrics; SIGTERM on scale-down. Stops the
daemon and its agents (`palm daemon stop --all`) at the end.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdk_harness import DeploymentTestCase, wait_for  # noqa: E402

DEPLOYMENT = "sdkcpp"
REPLICAS = 2
AGENT = os.environ.get("PALM_CPP_AGENT", "")


class CppSdkTest(DeploymentTestCase):
    deployment = DEPLOYMENT
    replicas = REPLICAS

    @classmethod
    def setUpClass(cls):
        if not AGENT or not os.access(AGENT, os.X_OK):
            raise unittest.SkipTest(f"PALM_CPP_AGENT is not an executable: {AGENT!r}")
        super().setUpClass()

    @classmethod
    def deploy(cls, d):
        d.register_spec({
            "kind": "AgentSpec", "name": "cpp-example", "version": "1.0.0",
            "command": [os.path.abspath(AGENT)],
            "workdir": d.dir,
            "config": {"heartbeat_s": 1},
            "ports": ["http"],
            "health_check": {
                "liveness": {"http": {"port": "http", "path": "/healthz"},
                             "initial_delay_s": 1, "period_s": 2},
                "readiness": {"heartbeat": {"max_age_s": 10}, "period_s": 1}},
            "stop": {"signal": "SIGTERM", "grace_s": 10}})
        d.create_deployment({"name": DEPLOYMENT, "spec": "cpp-example@1.0.0",
                             "replicas": REPLICAS})

    def test_uppercase_tasks(self):
        words = ["hello", "palm", "fleet", "agents", "c++ sdk", "ünïcode stays"]
        tasks = [self.d.submit(DEPLOYMENT, {"text": w}) for w in words]
        for w, t in zip(words, tasks):
            done = self.d.wait_task(t["id"])
            self.assertEqual(done["state"], "Succeeded", done)
            self.assertEqual(done["output"]["text"], w.encode().upper().decode())
            self.assertIn(done["output"]["instance"], self.ids)
            self.assertEqual(done["attempts"], 1)

    def test_echo(self):
        done = self.d.wait_task(self.d.submit(DEPLOYMENT, [1, {"a": None}])["id"])
        self.assertEqual(done["state"], "Succeeded", done)
        self.assertEqual(done["output"]["echo"], [1, {"a": None}])

    def test_exception_fails_the_task(self):
        done = self.d.wait_task(self.d.submit(DEPLOYMENT, {"fail": "no such symbol"})["id"])
        self.assertEqual(done["state"], "Failed", done)
        self.assertIn("no such symbol", done["error"])

    def test_broadcast(self):
        done = self.d.wait_task(self.d.submit(DEPLOYMENT, {"text": "all"}, mode="broadcast")["id"])
        self.assertEqual(done["state"], "Succeeded", done)
        self.assertEqual({x["instance"] for x in done["deliveries"]}, self.ids)
        for x in done["deliveries"]:
            self.assertEqual(x["output"], {"text": "ALL", "instance": x["instance"]})

    def test_heartbeat_metrics(self):
        done = self.d.wait_task(self.d.submit(DEPLOYMENT, {"text": "count me"})["id"])
        self.assertEqual(done["state"], "Succeeded")
        who = done["instance"]

        def reported():
            m = next((i["metrics"] for i in self.d.instances(DEPLOYMENT) if i["id"] == who), {})
            return m.get("chars_uppercased", 0) >= 8 and m.get("tasks_done", 0) >= 1
        self.assertTrue(wait_for(reported), self.d.instances(DEPLOYMENT))

    def test_zz_scale_down_sigterm_is_a_clean_stop(self):
        self.check_scale_down_is_a_clean_stop()


if __name__ == "__main__":
    unittest.main()
