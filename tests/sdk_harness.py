"""A real palm daemon for the SDK integration tests (tests/sdk_*_test.py).

As tests/harness.cc does: `palm daemon start --foreground --listen 127.0.0.1:0` with a temp
data dir, the endpoint read from <data-dir>/palmd.endpoint, the admin token from
<data-dir>/admin.token. `stop()` runs `palm daemon stop --all`, then makes sure the daemon
and every agent it started (found by PALM_ENDPOINT in their environment) are gone, and
removes the data dir. Waits poll against a deadline; nothing asserts how fast anything is.

Env: PALM_BIN (the palm binary), PALM_SOURCE_DIR (the source tree).
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

SRC = os.environ.get("PALM_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE_S = 60   # bound for "eventually" on a loaded 2-core machine


def palm_bin():
    path = os.environ.get("PALM_BIN")
    if not path:
        for candidate in ("build/src/palm/palm",):
            full = os.path.join(SRC, candidate)
            if os.access(full, os.X_OK):
                return full
        raise RuntimeError("set PALM_BIN to the palm binary")
    return os.path.abspath(path)


def wait_for(cond, timeout=DEADLINE_S, every=0.05):
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            return value
        time.sleep(every)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Daemon:
    def __init__(self):
        self.bin = palm_bin()
        self.dir = os.path.realpath(tempfile.mkdtemp(prefix="palm-sdk-test-"))
        self.proc = None
        self.endpoint = None
        self.token = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, *extra):
        out = open(os.path.join(self.dir, "daemon.out"), "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PALM_")}
        self.proc = subprocess.Popen(
            [self.bin, "daemon", "start", "--foreground", "--listen", "127.0.0.1:0",
             "--data-dir", self.dir, *extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=self.dir)
        out.close()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with open(os.path.join(self.dir, "palmd.endpoint")) as f:
                    ep = f.read().strip()
                with urllib.request.urlopen(ep + "/healthz", timeout=2) as r:
                    if r.status != 200:
                        return False
                self.endpoint = ep
                return True
            except OSError:
                return False

        if not wait_for(up):
            raise RuntimeError(f"daemon did not come up:\n{self.output()}")
        with open(os.path.join(self.dir, "admin.token")) as f:
            self.token = f.read().strip()
        return self

    def output(self):
        try:
            with open(os.path.join(self.dir, "daemon.out"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def agent_pids(self):
        """Live processes whose environment carries this daemon's endpoint."""
        pids = []
        if not self.endpoint:
            return pids
        needle = f"PALM_ENDPOINT={self.endpoint}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or not _alive(int(entry)):
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None and self.endpoint:
            subprocess.run([self.bin, "--endpoint", self.endpoint, "--data-dir", self.dir,
                            "--token", self.token or "", "daemon", "stop", "--all",
                            "--timeout", "30s"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=90, check=False)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = self.agent_pids()
        for pid in left:   # agents the daemon did not stop (it should have)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        if left:
            raise AssertionError(f"`palm daemon stop --all` left agents running: {left}")

    # ---- API -----------------------------------------------------------------------------

    def call(self, method, path, body=None, ok=(200, 201, 202, 204), timeout=90):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        parsed = json.loads(raw) if raw else None
        if ok and status not in ok:
            raise ApiError(status, parsed if parsed is not None else raw)
        return status, parsed

    def register_spec(self, spec):
        return self.call("POST", "/v1/specs", spec, ok=(200, 201))[1]

    def create_deployment(self, d):
        return self.call("POST", "/v1/deployments", d, ok=(201,))[1]

    def read_log(self, instance_id):
        """The instance's log file as text ("" when there is none yet)."""
        try:
            with open(os.path.join(self.dir, "logs", f"{instance_id}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def instances(self, deployment):
        return self.call("GET", f"/v1/instances?deployment={deployment}")[1]["items"]

    def wait_ready(self, deployment, n, timeout=DEADLINE_S):
        """Waits until `deployment` has exactly n instances, all Running and ready."""
        def ready():
            items = self.instances(deployment)
            return (len(items) == n and all(i["state"] == "Running" and i.get("ready")
                                            for i in items)) and items
        return wait_for(ready, timeout, every=0.2)

    def submit(self, deployment, task_input, **fields):
        body = dict(fields, deployment=deployment, input=task_input)
        return self.call("POST", "/v1/tasks", body, ok=(200, 201))[1]

    def wait_task(self, task_id, timeout=DEADLINE_S):
        """The task once it is finished (long-polls GET /v1/tasks/{id}?wait_s=)."""
        end = time.monotonic() + timeout
        while True:
            _, task = self.call("GET", f"/v1/tasks/{task_id}?wait_s=20")
            if task["state"] in ("Succeeded", "Failed", "TimedOut", "Cancelled"):
                return task
            if time.monotonic() > end:
                return task


class DeploymentTestCase(unittest.TestCase):
    """One real daemon per test class with one deployment: the subclass's `deploy(d)`
    registers what it needs and creates `deployment` with `replicas` instances; every test
    starts once all of them are ready (their ids in self.ids)."""
    deployment = ""
    replicas = 1

    @classmethod
    def deploy(cls, d):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        try:
            cls.d.start()
            cls.deploy(cls.d)
        except BaseException:
            cls.d.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def setUp(self):
        items = self.d.wait_ready(self.deployment, self.replicas)
        self.assertTrue(items, f"{self.deployment} not ready: "
                               f"{self.d.instances(self.deployment)}\n{self.d.output()}")
        self.ids = {i["id"] for i in items}

    def check_scale_down_is_a_clean_stop(self):
        """Scales to 1: the removed agent gets SIGTERM and logs a clean stop; then back."""
        name = self.deployment
        self.d.call("POST", f"/v1/deployments/{name}/scale", {"replicas": 1})
        self.assertTrue(self.d.wait_ready(name, 1), self.d.instances(name))
        gone = self.ids - {i["id"] for i in self.d.instances(name)}
        self.assertEqual(len(gone), 1)
        victim = gone.pop()
        self.assertTrue(wait_for(lambda: "stopped" in self.d.read_log(victim)),
                        self.d.read_log(victim)[-2000:])
        self.d.call("POST", f"/v1/deployments/{name}/scale", {"replicas": self.replicas})
