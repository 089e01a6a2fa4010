#!/usr/bin/env python3
"""Task agent on the Python SDK (sdk/python/palm_agent.py) for tests/tasks_e2e_test.cc.

Answers {"echo": input, "instance": PALM_INSTANCE_ID, "attempt": n}. Input (when an object):
  {"sleep_s": x}  takes x seconds first
  {"fail": true}  answers ok: false ("asked to fail")
PALM_CONFIG: {"heartbeat_s": 2, "wait_s": 30}. The SDK comes from PYTHONPATH (the spec's env).
"""
import sys
import time

from palm_agent import Agent


def main():
    agent = Agent.from_env()

    def handle(task_input, task):
        if isinstance(task_input, dict):
            if task_input.get("sleep_s"):
                time.sleep(float(task_input["sleep_s"]))
            if task_input.get("fail"):
                raise RuntimeError("asked to fail")
        return {"echo": task_input, "instance": agent.instance_id, "attempt": task["attempt"]}

    return agent.run(handle, heartbeat_every=float(agent.config.get("heartbeat_s", 2)),
                     wait_s=int(agent.config.get("wait_s", 30)))


if __name__ == "__main__":
    sys.exit(main())
