"""Lambda's execution environments on this machine: a function's bootstrap
binary run as real processes under a loopback Lambda Runtime API (2018-06-01),
as Lambda runs a `provided.al2023` function.

`RuntimeApi` serves one process; `FunctionHost` keeps up to N processes of one
function (one per concurrent invocation, as Lambda scales), each with exactly
the environment Lambda would give it: the function's own variables and its
execution role's session credentials, nothing of the caller's shell.
"""

import ctypes
import ctypes.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class InvokeFailed(Exception):
    pass


def die_with_parent():
    """In the child: SIGTERM when the thread that started it ends, which for
    `spawn` is when this process ends, even if it cannot clean up."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    PR_SET_PDEATHSIG, SIGTERM = 1, 15
    libc.prctl(PR_SET_PDEATHSIG, SIGTERM)


_SPAWN = queue.Queue()


def _spawner():
    while True:
        argv, kwargs, answer = _SPAWN.get()
        try:
            answer.put(subprocess.Popen(argv, preexec_fn=die_with_parent, **kwargs))
        except BaseException as err:  # handed to the caller
            answer.put(err)


threading.Thread(target=_spawner, daemon=True, name="spawner").start()


def spawn(argv, **kwargs):
    """Popen from one thread that lives as long as this process: the parent-death
    signal follows the thread that forked, and request threads come and go."""
    answer = queue.Queue()
    _SPAWN.put((argv, kwargs, answer))
    out = answer.get()
    if isinstance(out, BaseException):
        raise out
    return out


class QuietServer(ThreadingHTTPServer):
    """A loopback server that does not print a traceback when a killed
    function process drops its long-poll connection."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FastHandler(BaseHTTPRequestHandler):
    """Keep-alive, one write per response and no Nagle: otherwise every
    answer waits out the client's delayed ACK (40 ms)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024


class RuntimeApi:
    """The Lambda Runtime API for one function process: hands out queued
    events on /next and records when the process asked and answered."""

    def __init__(self, function_name, function_arn=None):
        self.function_name = function_name
        self.function_arn = function_arn or f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.pending = queue.Queue()
        self.results = {}
        self.first_next_at = None
        self.init_error = None
        self.lock = threading.Lock()
        api = self

        class Handler(FastHandler):

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self._reply(404, b"{}")
                with api.lock:
                    if api.first_next_at is None:
                        api.first_next_at = time.perf_counter()
                request_id, body, deadline = api.pending.get()
                api.results[request_id]["delivered_at"] = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(deadline * 1000)))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", api.function_arn)
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("/")
                if "init" in parts:
                    api.init_error = body
                    for result in api.results.values():
                        result["error"] = body
                        result["done"].set()
                elif len(parts) >= 6 and parts[-1] in ("response", "error"):
                    result = api.results.get(parts[-2])
                    if result is not None:
                        result["answered_at"] = time.perf_counter()
                        result["ok"] = parts[-1] == "response"
                        result["body"] = body
                        result["done"].set()
                self._reply(202, b"{}")

            def _reply(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def submit(self, event, timeout):
        """Queues one event (bytes, or a value to send as JSON); returns its result record."""
        request_id = str(uuid.uuid4())
        result = {"done": threading.Event(), "queued_at": time.perf_counter()}
        self.results[request_id] = result
        body = event if isinstance(event, (bytes, bytearray)) else json.dumps(event).encode()
        self.pending.put((request_id, bytes(body), time.time() + timeout))
        return result

    def invoke(self, event, timeout=600):
        """Queues one event; returns (ok, parsed body, queued->answered seconds, record)."""
        result = self.submit(event, timeout)
        if not result["done"].wait(timeout):
            raise InvokeFailed(f"{self.function_name}: no answer in {timeout}s")
        if "error" in result and "ok" not in result:
            raise InvokeFailed(f"{self.function_name}: init failed: {result['error'][:300]!r}")
        body = json.loads(result["body"] or b"null")
        return result["ok"], body, result["answered_at"] - result["queued_at"], result

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def lambda_environment(name, variables, credentials, region, endpoint, runtime_api, memory=128):
    """What Lambda puts in a function's environment: its own variables, its
    execution role's session, the reserved AWS_LAMBDA_* names; plus the local
    cloud's endpoint, where AWS would resolve the service's own."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC"}
    env.update(variables)
    env.update({
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
    })
    return env


class Instance:
    """One execution environment: a process of the function and its Runtime API."""

    def __init__(self, host):
        self.api = RuntimeApi(host.name, host.arn)
        env = lambda_environment(host.name, host.variables, host.credentials, host.region, host.endpoint,
                                 self.api.address, host.memory)
        self.process = spawn([str(host.path)], env=env, stdout=host.log, stderr=host.log,
                             stdin=subprocess.DEVNULL)
        self.signature = host.signature

    def alive(self):
        return self.process.poll() is None

    def run(self, payload, timeout):
        result = self.api.submit(payload, timeout)
        deadline = time.time() + timeout
        while not result["done"].wait(0.2):
            if not self.alive():
                return False, json.dumps({"errorType": "Runtime.ExitError",
                                          "errorMessage": f"the process exited with {self.process.returncode}"}).encode()
            if time.time() > deadline:
                self.stop()
                return False, json.dumps({"errorType": "Sandbox.Timedout",
                                          "errorMessage": f"Task timed out after {timeout} seconds"}).encode()
        if "ok" not in result:
            return False, json.dumps({"errorType": "Runtime.InitError",
                                      "errorMessage": (result.get("error") or b"").decode(errors="replace")}).encode()
        return result["ok"], result["body"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.api.close()


class FunctionHost:
    """Up to `max_instances` execution environments of one function. An
    invocation takes an idle one or starts a new one; a changed configuration
    (variables or credentials) retires the old ones, as Lambda does."""

    def __init__(self, name, path, log, region, endpoint, arn, max_instances=8):
        self.name, self.path, self.log = name, path, log
        self.region, self.endpoint, self.arn = region, endpoint, arn
        self.max_instances = max_instances
        self.variables, self.credentials, self.memory, self.signature = {}, None, 128, None
        self.idle = []
        self.busy = 0
        self.cond = threading.Condition()

    def configure(self, variables, credentials, memory=128):
        signature = json.dumps([variables, credentials["AccessKeyId"], memory], sort_keys=True)
        with self.cond:
            if signature == self.signature:
                return
            self.variables, self.credentials, self.memory, self.signature = dict(variables), credentials, memory, signature
            retired, self.idle = self.idle, []
        for instance in retired:
            instance.stop()

    def invoke(self, payload, timeout):
        """Returns (ok, answer bytes)."""
        if not self.path.exists():
            return False, json.dumps({"errorType": "Runtime.InvalidEntrypoint",
                                      "errorMessage": f"{self.path} does not exist: build the workspace first"}).encode()
        instance = self._acquire()
        try:
            return instance.run(payload, timeout)
        finally:
            self._release(instance)

    def _acquire(self):
        with self.cond:
            while True:
                while self.idle:
                    instance = self.idle.pop()
                    if instance.alive() and instance.signature == self.signature:
                        self.busy += 1
                        return instance
                    threading.Thread(target=instance.stop, daemon=True).start()
                if self.busy < self.max_instances:
                    self.busy += 1
                    break
                self.cond.wait()
        try:
            return Instance(self)
        except BaseException:
            with self.cond:
                self.busy -= 1
                self.cond.notify()
            raise

    def _release(self, instance):
        with self.cond:
            self.busy -= 1
            if instance.alive() and instance.signature == self.signature:
                self.idle.append(instance)
            else:
                threading.Thread(target=instance.stop, daemon=True).start()
            self.cond.notify()

    def stop(self):
        with self.cond:
            retired, self.idle = self.idle, []
        for instance in retired:
            instance.stop()
