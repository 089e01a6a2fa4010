#!/usr/bin/env python3
"""Task agent on the Python SDK (sdk/python/palm_agent.py) for tests/tasks_e2e_test.cc and
tests/rollout_e2e_test.cc.

Answers {"echo": input, "instance": PALM_INSTANCE_ID, "revision": PALM_REVISION,
"attempt": n}. Input (when an object):
  {"sleep_s": x}  takes x seconds first
  {"fail": true}  answers ok: false ("asked to fail")
PALM_CONFIG: {"heartbeat_s": 2, "wait_s": 30, "fail_rate": 0}. With "fail_rate": r (0..1)
that fraction of this process's tasks answer ok: false ("fail_rate"), deterministically:
the n-th task (n = 1, 2, ...) fails when floor(n * r) > floor((n - 1) * r), so r = 0.6 fails
exactly 3 of any 5 consecutive tasks. The SDK comes from PYTHONPATH (the spec's env).
"""
import math
import sys
import threading
import time
from fractions import Fraction

from palm_agent import Agent


def main():
    agent = Agent.from_env()
    # Exact arithmetic, so 0.6 * 5 is 3 and not 2.9999...
    fail_rate = Fraction(str(agent.config.get("fail_rate", 0) or 0))
    if not 0 <= fail_rate <= 1:
        print(f"task_agent: fail_rate must be within 0..1, got {fail_rate}", file=sys.stderr)
        return 2
    lock = threading.Lock()
    count = [0]

    def scheduled_failure():
        with lock:
            count[0] += 1
            n = count[0]
        return math.floor(n * fail_rate) > math.floor((n - 1) * fail_rate)

    def handle(task_input, task):
        if isinstance(task_input, dict):
            if task_input.get("sleep_s"):
                time.sleep(float(task_input["sleep_s"]))
            if task_input.get("fail"):
                raise RuntimeError("asked to fail")
        if fail_rate and scheduled_failure():
            raise RuntimeError(f"fail_rate {float(fail_rate)}")
        return {"echo": task_input, "instance": agent.instance_id, "revision": agent.revision,
                "attempt": task["attempt"]}

    return agent.run(handle, heartbeat_every=float(agent.config.get("heartbeat_s", 2)),
                     wait_s=int(agent.config.get("wait_s", 30)))


if __name__ == "__main__":
    sys.exit(main())
