"""A LocalStack Lambda runtime executor that runs functions as host processes, without Docker.

LocalStack picks it with ``LAMBDA_RUNTIME_EXECUTOR=process``. Each execution environment LocalStack
asks for is one process of the function's ``bootstrap`` (``provided.al2023`` / ``provided.al2``),
talking to a Lambda Runtime API served by this module on a loopback port of its own:

- ``start`` spawns the process and returns once it asks for its first invocation
  (``GET /invocation/next``); an exit or ``/init/error`` before that is a startup error;
- ``invoke`` hands one invocation to the process and waits for ``/response`` or ``/error``, at most
  the function's timeout; a timeout or a crash kills the process, and the next invoke starts a fresh
  one, as Lambda does;
- the process's stdout and stderr go back with each result, so LocalStack writes them to CloudWatch
  Logs: every line the function printed before it answered goes with that answer (``_LogPipe``), so
  an environment's last invocation does not keep its last lines to itself;
- ``stop`` kills the process group, so nothing outlives LocalStack or a deleted function.

The Runtime API lives here rather than in a Rust binary because LocalStack calls ``invoke``
synchronously in-process: answering from the same process needs no second protocol hop, no extra
binary to build before LocalStack can start, and no port handshake.

Fault injection, for tests only: ``BUSLINE_LAMBDA_FAULTS_FILE`` names a JSON file mapping function
names to a queue of faults, one popped per invocation of that function::

    {"orders-consumer": [{"fault": "none"}, {"fault": "error", "errorType": "OutOfStock"}]}

A queued fault with ``when`` is taken only by an invocation whose payload contains that text (an
order id, say), and the first such fault in the queue is taken even when others come before it, so
cases that share a function can run at once, each with its own faults::

    {"take-payment": [{"fault": "error", "errorType": "PaymentDeclined", "when": "SO-1a2b3c"}]}

``error`` answers with that errorType without running the function; ``timeout`` runs it but
ignores its answer and times out; ``crash`` runs it (side effects happen) and then kills the process
before the response is returned.

Instead of a queue, a function's entry may be a rate: each invocation draws one of ``faults`` with
probability ``rate``, and the count of each kind drawn is kept in the entry's ``injected`` (and of
every invocation in ``invocations``), so the tooling can show that faults happened::

    {"split": {"rate": 0.05, "faults": [{"fault": "error"}, {"fault": "crash"}]}}

The same file's ``aws`` entry makes LocalStack's gateway refuse AWS calls for a while, as a bad day
at AWS does: every request to ``service`` (``operation``, if named)
from ``from_ms`` (if set) until ``until_ms`` (Unix ms) is answered with the error ``code`` and HTTP
``status``, and counted in ``refused``::

    {"aws": [{"service": "events", "operation": "PutEvents", "code": "ThrottlingException",
              "status": 400, "from_ms": 1764601190000, "until_ms": 1764601200000}]}

A window set ahead of time needs no write to the file while functions run. The executor writes the
file too (to pop and to count), always whole, by renaming a new copy over it; writers from outside
should do the same.

That covers every caller, the functions, Step Functions' integrations and the tooling alike. The
variable is set on LocalStack by the test tooling, never by a template.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import select
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from localstack.runtime import hooks
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

LOG = logging.getLogger(__name__)

SUPPORTED_RUNTIMES = ("provided.al2023", "provided.al2")
API_PREFIX = "/2018-06-01/runtime"
STARTUP_TIMEOUT_SECONDS = 30
FAULTS_FILE_VARIABLE = "BUSLINE_LAMBDA_FAULTS_FILE"
_faults_lock = threading.Lock()


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def take_fault(function_name: str, body: str = "") -> dict | None:
    """Pops the next fault queued for ``function_name`` that this invocation's ``body`` matches (a
    fault without ``when`` matches every body), if the test tooling queued any."""
    path = os.environ.get(FAULTS_FILE_VARIABLE)
    if not path:
        return None
    with _faults_lock:
        faults = _read_faults(path)
        if faults is None:
            return None
        queued = faults.get(function_name) or []
        if isinstance(queued, dict):
            fault = _draw(queued)
        else:
            index = next((i for i, f in enumerate(queued) if f.get("when", "") in body), None)
            if index is None:
                return None
            fault = queued.pop(index)
        _write_atomically(path, faults)
    return None if not fault or fault.get("fault") == "none" else fault


def _read_faults(path: str) -> dict | None:
    """The fault file's contents; None when there is none or it cannot be read (logged)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        LOG.warning("ignoring unreadable fault file %s: %s", path, e)
        return None


def _write_atomically(path: str, faults: dict) -> None:
    """Replaces the fault file in one step, so a reader (the test tooling, reading counts while
    functions run) never sees it half written."""
    temporary = Path(f"{path}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(faults))
    os.replace(temporary, path)


def _draw(entry: dict) -> dict | None:
    """One invocation under a rate entry: a fault drawn with the entry's probability (counted in
    the entry), or None."""
    entry["invocations"] = entry.get("invocations", 0) + 1
    choices = entry.get("faults") or []
    if not choices or random.random() >= float(entry.get("rate", 0)):
        return None
    fault = random.choice(choices)
    injected = entry.setdefault("injected", {})
    injected[fault.get("fault", "none")] = injected.get(fault.get("fault", "none"), 0) + 1
    return fault


# The fault file's ``aws`` rules as last read, under the file's (inode, mtime, size): every request
# through LocalStack's gateway asks for a refusal, and re-reading the file for each was 6 % of the
# time LocalStack held the GIL during the soak. Writers replace the file (a new inode) or rewrite it
# (a new mtime), so a change is always seen.
_aws_rules_seen: tuple[tuple[int, int, int], list] | None = None


def _aws_rules(path: str) -> list:
    """The fault file's ``aws`` rules, read again only when the file has changed."""
    global _aws_rules_seen
    try:
        stat = os.stat(path)
    except OSError:
        return []
    key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    seen = _aws_rules_seen
    if seen is not None and seen[0] == key:
        return seen[1]
    rules = list((_read_faults(path) or {}).get("aws") or [])
    _aws_rules_seen = (key, rules)
    return rules


def _refuses(rule: dict, service: str, operation: str, now_ms: int) -> bool:
    return (
        rule.get("service") == service
        and rule.get("operation", operation) == operation
        and int(rule.get("from_ms", 0)) <= now_ms < int(rule.get("until_ms", 0))
    )


def refusal_for(service: str, operation: str, now_ms: int) -> dict | None:
    """The ``aws`` rule of the fault file that refuses this call now, counted as refused; or None."""
    path = os.environ.get(FAULTS_FILE_VARIABLE)
    if not path:
        return None
    # Most calls match no rule: that is settled without the lock or a read of the file.
    if not any(_refuses(rule, service, operation, now_ms) for rule in _aws_rules(path)):
        return None
    with _faults_lock:
        faults = _read_faults(path)
        if faults is None:
            return None
        for rule in faults.get("aws") or []:
            if _refuses(rule, service, operation, now_ms):
                rule["refused"] = rule.get("refused", 0) + 1
                _write_atomically(path, faults)
                return rule
    return None


def _refuse_aws_calls(chain, context, response) -> None:
    """A gateway request handler: raises the error of the fault file's ``aws`` rule that matches
    the request, if one does."""
    service = context.service.service_name if context.service else None
    if service is None or context.operation is None or not os.environ.get(FAULTS_FILE_VARIABLE):
        return
    rule = refusal_for(service, context.operation.name, int(time.time() * 1000))
    if rule is None:
        return
    from localstack.aws.api import CommonServiceException

    raise CommonServiceException(
        code=rule.get("code", "ServiceUnavailable"),
        message=rule.get("message", "refused by BUSLINE_LAMBDA_FAULTS_FILE (a simulated outage)"),
        status_code=int(rule.get("status", 503)),
        sender_fault=int(rule.get("status", 503)) < 500,
    )


@hooks.on_infra_start()
def install_aws_refusals() -> None:
    """Adds the refusal handler to LocalStack's gateway, after requests are parsed."""
    from localstack.aws import handlers

    handlers.serve_custom_service_request_handlers.append(_refuse_aws_calls)


class _Invocation:
    def __init__(self, payload: dict, deadline_ms: int):
        self.request_id: str = payload["invoke-id"]
        self.body: bytes = (payload.get("payload") or "").encode()
        self.function_arn: str = payload.get("invoked-function-arn", "")
        self.trace_id: str = payload.get("trace-id", "")
        self.deadline_ms = deadline_ms
        self.done = threading.Event()
        self.result: bytes = b""
        self.is_error = False
        self.delivered_at: float | None = None  # monotonic: handed to the function by /next
        self.finished_at: float | None = None  # and answered

    def finish(self, result: bytes, is_error: bool) -> bool:
        if self.done.is_set():
            return False
        self.result, self.is_error = result, is_error
        self.finished_at = time.monotonic()
        self.done.set()
        return True

    def report(self, memory_mb: int, pid: int | None) -> str:
        """Lambda's REPORT line: the function's own duration, from /next to its answer, and the
        process's peak resident memory (VmHWM)."""
        duration = ((self.finished_at or 0) - (self.delivered_at or 0)) * 1000
        used = "?"
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        used = str(max(1, round(int(line.split()[1]) / 1024)))
        except (OSError, ValueError, TypeError):
            pass
        return (
            f"REPORT RequestId: {self.request_id}\tDuration: {duration:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(duration))} ms\tMemory Size: {memory_mb} MB\t"
            f"Max Memory Used: {used} MB\n"
        )


class RuntimeApi:
    """The Lambda Runtime API for one execution environment, on an ephemeral loopback port."""

    def __init__(self):
        self.pending: queue.Queue[_Invocation] = queue.Queue()
        self.in_flight: dict[str, _Invocation] = {}
        self.ready = threading.Event()
        self.init_error: bytes | None = None
        self.closed = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                LOG.debug("runtime api: " + format, *args)

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the process was killed (timeout, crash, stop) while we answered it

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self):
                if self.path != f"{API_PREFIX}/invocation/next":
                    return self._reply(404)
                api.ready.set()
                while not api.closed.is_set():
                    try:
                        invocation = api.pending.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    api.in_flight[invocation.request_id] = invocation
                    invocation.delivered_at = time.monotonic()
                    return self._reply(
                        200,
                        invocation.body,
                        {
                            "Content-Type": "application/json",
                            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                            "Lambda-Runtime-Trace-Id": invocation.trace_id,
                        },
                    )
                self._reply(410)

            def do_POST(self):
                body = self._body()
                if self.path == f"{API_PREFIX}/init/error":
                    api.init_error = body or _error_payload(
                        self.headers.get("Lambda-Runtime-Function-Error-Type", "Runtime.InitError"), ""
                    )
                    return self._reply(202, b'{"status":"OK"}')
                parts = self.path.removeprefix(f"{API_PREFIX}/invocation/").split("/")
                if len(parts) != 2 or parts[1] not in ("response", "error"):
                    return self._reply(404)
                invocation = api.in_flight.pop(parts[0], None)
                if invocation is None:
                    return self._reply(400, _error_payload("InvalidRequestID", "unknown request id"))
                if parts[1] == "error" and not body:
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "Unhandled")
                    body = _error_payload(error_type, "")
                invocation.finish(body, is_error=parts[1] == "error")
                self._reply(202, b'{"status":"OK"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name=f"runtime-api-{self.port}", daemon=True).start()

    def close(self):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
        for invocation in list(self.in_flight.values()):
            invocation.finish(_error_payload("Runtime.ExitError", "the execution environment stopped"), True)


class _LogPipe:
    """A process's stdout, read as it is written so the function never blocks on a full pipe.

    ``take`` returns every complete line written so far. It reads what is still in the pipe
    itself, under the same lock as the reader thread, rather than waiting for that thread to catch
    up: the function wrote its lines before it answered, so they are in the pipe by the time the
    answer arrives, and a loaded machine can keep the reader thread waiting longer than any fixed
    grace period (the last lines of an environment's last invocation then never reached CloudWatch).
    """

    POLL_SECONDS = 0.05

    def __init__(self, pipe):
        self.pipe = pipe  # kept open for as long as the descriptor is read
        self.fd = pipe.fileno()
        self.lock = threading.Lock()
        self.buffer = bytearray()
        self.closed = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _readable(self, wait: float) -> bool:
        # poll, not select: LocalStack holds well over a thousand descriptors after a long run,
        # and select cannot watch one numbered 1024 or above (ValueError). A poll object each call,
        # as the reader thread and ``take`` wait at the same time, which one object refuses.
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        try:
            return bool(poller.poll(wait * 1000))
        except OSError:
            self.closed = True
            return False

    def _drain(self) -> None:
        """Reads everything the pipe holds now; called with the lock held."""
        while not self.closed and self._readable(0):
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buffer += chunk

    def _pump(self) -> None:
        while not self.closed:
            # Wait outside the lock and read inside it, so ``take`` never waits on the poll.
            if self._readable(self.POLL_SECONDS):
                with self.lock:
                    self._drain()

    def take(self, consume: bool = True) -> str:
        """Every complete line written so far (all of it once the process has gone)."""
        with self.lock:
            self._drain()
            end = len(self.buffer) if self.closed else self.buffer.rfind(b"\n") + 1
            text = bytes(self.buffer[:end])
            if consume:
                del self.buffer[:end]
        return text.decode(errors="replace")


class ProcessRuntimeExecutor(RuntimeExecutor):
    """One execution environment: one ``bootstrap`` process and its Runtime API."""

    def __init__(self, id: str, function_version: FunctionVersion):
        super().__init__(id, function_version)
        self.env_vars: dict[str, str] = {}
        self.api: RuntimeApi | None = None
        self.process: subprocess.Popen | None = None
        self.logs: _LogPipe | None = None
        self.earlier_logs = ""
        self.invoke_lock = threading.Lock()

    # Preparation -------------------------------------------------------------------------------

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        runtime = function_version.config.runtime
        if runtime not in SUPPORTED_RUNTIMES:
            raise LambdaRuntimeException(
                f"the process executor runs only {' and '.join(SUPPORTED_RUNTIMES)} functions (a `bootstrap` "
                f"executable); {function_version.id.function_name} uses {runtime or 'a container image'}"
            )
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    def _code_dir(self) -> Path:
        return Path(self.function_version.config.code.get_unzipped_code_location())

    # Addresses ---------------------------------------------------------------------------------

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.api.port if self.api else 0}"

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        self.env_vars = {k: str(v) for k, v in env_vars.items()}
        self._spawn()

    def _spawn(self) -> None:
        code_dir = self._code_dir()
        bootstrap = code_dir / "bootstrap"
        if not bootstrap.is_file():
            raise StatusErrorException(
                "no bootstrap",
                _error_payload("Runtime.InvalidEntrypoint", f"the function's code has no `bootstrap` at its root ({code_dir})"),
            )
        self.api = RuntimeApi()
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **self.env_vars,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.api.port}",
            "LAMBDA_TASK_ROOT": str(code_dir),
        }
        self.process = subprocess.Popen(
            [str(bootstrap)],
            cwd=code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process, api = self.process, self.api
        # Lines a previous process left unread go with the next result, before this one's.
        if self.logs:
            self.earlier_logs += self.logs.take()
        self.logs = _LogPipe(process.stdout)
        threading.Thread(target=self._watch, args=(process, api), daemon=True).start()

        started = time.monotonic()
        while not api.ready.wait(0.005):
            if api.init_error is not None or process.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
                reason = api.init_error or _error_payload(
                    "Runtime.ExitError",
                    f"the function exited during init with status {process.poll()}"
                    if process.poll() is not None
                    else f"the function did not ask for an invocation within {STARTUP_TIMEOUT_SECONDS} s",
                )
                self._kill()
                raise StatusErrorException("Environment startup failed", payload=reason)

    def _watch(self, process: subprocess.Popen, api: RuntimeApi) -> None:
        status = process.wait()
        for invocation in list(api.in_flight.values()):
            invocation.finish(
                _error_payload("Runtime.ExitError", f"RequestId: {invocation.request_id} Error: Runtime exited with error: exit status {status}"),
                True,
            )

    def _kill(self) -> None:
        process, api = self.process, self.api
        if process and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        if api:
            api.close()

    def stop(self) -> None:
        self._kill()

    # Invocations -------------------------------------------------------------------------------

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        with self.invoke_lock:
            return self._invoke(payload)

    def _invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        timeout = float(self.function_version.config.timeout or 3)
        fault = take_fault(self.function_version.id.function_name, payload.get("payload") or "")
        if fault and fault.get("fault") == "error":
            message = fault.get("errorMessage", "injected by BUSLINE_LAMBDA_FAULTS_FILE")
            return InvocationResult(request_id, _error_payload(fault.get("errorType", "InjectedFault"), message), True, "")

        if self.process is None or self.process.poll() is not None:
            try:
                self._spawn()
            except StatusErrorException as e:
                return InvocationResult(request_id, e.payload, True, self._take_logs())

        deadline_ms = int((time.time() + timeout) * 1000)
        invocation = _Invocation(payload, deadline_ms)
        self.api.pending.put(invocation)

        kind = fault.get("fault") if fault else None
        finished = invocation.done.wait(timeout) if kind != "timeout" else (time.sleep(timeout) or False)
        if not finished:
            self._kill()
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            message = f"{stamp} {request_id} Task timed out after {timeout:.2f} seconds"
            return InvocationResult(request_id, _error_payload("Sandbox.Timedout", message), True, self._take_logs())
        if kind == "crash":
            self._kill()
            message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed (injected after the function's side effects)"
            return InvocationResult(request_id, _error_payload("Runtime.ExitError", message), True, self._take_logs())
        memory = int(self.function_version.config.memory_size or 128)
        report = invocation.report(memory, self.process.pid if self.process else None)
        return InvocationResult(request_id, invocation.result, invocation.is_error, self._take_logs() + report)

    def _take_logs(self) -> str:
        earlier, self.earlier_logs = self.earlier_logs, ""
        return earlier + (self.logs.take() if self.logs else "")

    def get_logs(self) -> str:
        return self.earlier_logs + (self.logs.take(consume=False) if self.logs else "")


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "process"

    def load(self, *args, **kwargs):
        return ProcessRuntimeExecutor
