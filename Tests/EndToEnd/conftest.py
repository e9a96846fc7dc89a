"""End-to-end harness: starts the real `tally` binary on a free loopback port with its own
data directory, and talks to it over real HTTP, WebSocket and SSE connections."""

import asyncio
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest
import websockets

# Test settings are E2E_* (never TALLY_*: the server refuses unknown TALLY_* variables).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("E2E_TALLY_BINARY", os.path.join(ROOT, ".build", "debug", "tally"))
PASSWORD = "correct horse battery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running `tally serve` process."""

    def __init__(self, data_dir, port=None, extra_args=(), env=None, mdns=False, password=PASSWORD, binary=None):
        self.binary = binary or BINARY  # another build, e.g. the one a .deb installed
        self.data_dir = data_dir
        self.password = password
        self.port = port or free_port()
        self.extra_args = list(extra_args) + ([] if mdns else ["--no-mdns"])
        self.env = env
        self.proc = None
        self.log_path = os.path.join(data_dir, f"server-{self.port}.log")

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data_dir,
             *(["--operator-password", self.password] if self.password else []), "--ring-size", "8MiB", *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.logs()}")
            try:
                status, _, _ = self.request("GET", "/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready: " + self.logs())

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- HTTP ---------------------------------------------------------------------------

    def connection(self):
        """A new HTTP connection to the server (a TLS server's test overrides this)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method, path, body=None, token=None, headers=None, raw=None):
        conn = self.connection()
        hdrs = dict(headers or {})
        data = None
        if raw is not None:
            data = raw
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        ctype = resp.getheader("Content-Type") or ""
        parsed = json.loads(payload) if payload and "json" in ctype else payload.decode(errors="replace")
        return resp.status, parsed, resp

    def ok(self, method, path, body=None, token=None, expect=(200, 201)):
        status, data, _ = self.request(method, path, body, token)
        assert status in ((expect,) if isinstance(expect, int) else expect), f"{method} {path} -> {status} {data}"
        return data

    # -- the domain, through the API ------------------------------------------------------

    def operator_token(self):
        return self.ok("POST", "/api/v1/auth/login", {"password": PASSWORD})["token"]

    def new_session(self, title="Town hall"):
        return self.ok("POST", "/api/v1/sessions", {"title": title}, self.operator_token(), expect=201)

    def join(self, code):
        return self.ok("POST", "/api/v1/join", {"joinCode": code}, expect=201)

    def poll(self, session, presenter, options=("Yes", "No"), **extra):
        body = {"question": "Ship it?", "options": list(options), **extra}
        return self.ok("POST", f"/api/v1/sessions/{session}/polls", body, presenter, expect=201)

    def vote(self, session, poll, token, options):
        return self.request("POST", f"/api/v1/sessions/{session}/polls/{poll}/votes", {"optionIds": options}, token)

    def events_url(self, scheme, **query):
        return f"{scheme}://127.0.0.1:{self.port}/events?" + urllib.parse.urlencode(query)


class WSStream:
    """A WebSocket client on its own thread; received envelopes land in a queue."""

    def __init__(self, url, headers=None, ssl=None):
        self.url = url
        self._ssl = {"ssl": ssl} if ssl is not None else {}  # wss:// with a test CA
        self.queue = queue.Queue()
        self.close_code = None
        self.error = None
        self.opened = threading.Event()
        self.closed = threading.Event()
        self._headers = headers or {}
        self._loop = asyncio.new_event_loop()
        self._ws = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.opened.wait(10):
            raise RuntimeError("websocket did not open")
        if self.error:
            raise self.error

    def _run(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self):
        try:
            async with websockets.connect(self.url, extra_headers=self._headers, max_size=2**22, **self._ssl) as ws:
                self._ws = ws
                self.opened.set()
                try:
                    async for message in ws:
                        self.queue.put(json.loads(message))
                except websockets.ConnectionClosed:
                    pass
                self.close_code = ws.close_code
        except Exception as error:  # handshake refused etc.
            self.error = error
        finally:
            self.opened.set()
            self.closed.set()

    def next(self, timeout=5):
        return self.queue.get(timeout=timeout)

    def collect(self, until, timeout=5):
        """Envelopes up to and including the first for which until(envelope) is true."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; received {[e['eventType'] for e in got]}")
            env = self.queue.get(timeout=remaining)
            got.append(env)
            if until(env):
                return got

    def drain(self, settle=0.3):
        got = []
        while True:
            try:
                got.append(self.queue.get(timeout=settle))
            except queue.Empty:
                return got

    def close(self):
        if self._ws is not None and not self.closed.is_set():
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop)
        self.closed.wait(5)


class SSEStream:
    """A Server-Sent Events client on its own thread."""

    def __init__(self, port, path, headers=None, ssl=None):
        self.queue = queue.Queue()
        self.ended = threading.Event()
        self.comments = 0
        self.ids = []
        self.conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=ssl) if ssl is not None
                     else http.client.HTTPConnection("127.0.0.1", port, timeout=60))
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        if self.status != 200:
            self.body = json.loads(self.response.read() or b"null")
            self.ended.set()
            return
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        fields = {}
        try:
            while True:
                # Through the response, not its raw socket file: a proxy may cut the body into
                # chunks anywhere (HAProxy does at its buffer size), and only the response
                # takes the chunk framing off. Empty once close() has released the connection.
                line = self.response.readline() if self.response.fp is not None else b""
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line == "":
                    if "data" in fields:
                        env = json.loads(fields["data"])
                        env["_sse_id"] = fields.get("id")
                        env["_sse_event"] = fields.get("event")
                        self.queue.put(env)
                    fields = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    key, _, value = line.partition(":")
                    fields[key] = value[1:] if value.startswith(" ") else value
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            # (AttributeError: http.client's own, when close() releases the socket mid-read.)
            pass
        finally:
            self.ended.set()

    next = WSStream.next
    collect = WSStream.collect
    drain = WSStream.drain

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="tally-e2e-") as d:
        yield d


@pytest.fixture
def server(data_dir):
    s = Server(data_dir).start()
    yield s
    s.stop()


def seq(event_id):
    """The ordering part of an opaque eventId (tests may peek; clients should not)."""
    return int(event_id.rsplit("-", 1)[1])
