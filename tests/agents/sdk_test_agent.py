#!/usr/bin/env python3
"""Test agent on the Python SDK (sdk/python/palm_agent.py) for tests/sdk_python_test.py.

Task input {"op": ..., ...}:
  echo        -> {"input", "instance", "attempt", "revision", "tag" (config.tag)}
  fail        -> raises RuntimeError(input.message): the task fails with that text
  crash_once  -> the first time (no file at input.marker): creates it and exits 3 with the
                 task in hand; after that answers as echo
  hang_once   -> the first time: creates input.marker and sleeps input.s seconds (longer
                 than the task's lease), then answers as echo (a late result)
  sleep       -> sleeps input.s seconds, then answers as echo
Heartbeat metrics: the SDK's tasks_done/tasks_failed plus sdk_test_agent = 1.
The SDK finds itself through PYTHONPATH (set by the test's spec).
"""
import os
import sys
import time

from palm_agent import Agent


def main():
    agent = Agent.from_env()
    tag = agent.config.get("tag")

    def handle(task_input, task):
        op = (task_input or {}).get("op", "echo")
        if op == "fail":
            raise RuntimeError(task_input.get("message", "failed on purpose"))
        if op == "crash_once" and not os.path.exists(task_input["marker"]):
            open(task_input["marker"], "w").close()
            agent.log(f"{task['id']}: crashing with the task in hand")
            os._exit(3)
        if op == "hang_once" and not os.path.exists(task_input["marker"]):
            open(task_input["marker"], "w").close()
            agent.log(f"{task['id']}: hanging past the lease")
            time.sleep(float(task_input.get("s", 5)))
        if op == "sleep":
            time.sleep(float(task_input.get("s", 1)))
        return {"input": task_input, "instance": agent.instance_id, "attempt": task["attempt"],
                "revision": agent.revision, "tag": tag}

    return agent.run(handle, heartbeat_every=float(agent.config.get("heartbeat_s", 1)),
                     metrics=lambda: {"sdk_test_agent": 1})


if __name__ == "__main__":
    sys.exit(main())
