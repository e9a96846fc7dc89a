"""The appliance around the server: systemd readiness and watchdog through a real notify
socket, layered configuration, password reset, export, captive portal, and the units."""

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BINARY, PASSWORD, ROOT, Server, free_port


class NotifySocket:
    """What systemd would be: an AF_UNIX datagram socket collecting sd_notify messages."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, {key: value})

    def poll(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def first(self, key, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if key in m:
                    return t, m
            self.poll(0.1)
        raise AssertionError(f"no {key} in {self.messages}")

    def times(self, key, since=0):
        return [t for t, m in self.messages if key in m and t >= since]


def test_readiness_watchdog_and_stopping_over_a_real_notify_socket(data_dir):
    notify = NotifySocket(data_dir)
    health = os.path.join(data_dir, "unhealthy")
    server = Server(data_dir, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "TALLY_HEALTH_FILE": health})
    server.proc = subprocess.Popen(
        [BINARY, "serve", "--host", "127.0.0.1", "--port", str(server.port), "--data-dir", data_dir, "--no-mdns",
         "--ring-size", "8MiB", "--operator-password", PASSWORD],
        env={**os.environ, **server.env}, stdout=open(server.log_path, "ab"), stderr=subprocess.STDOUT)
    try:
        extend = notify.first("EXTEND_TIMEOUT_USEC")
        ready_at, ready = notify.first("READY")
        assert ready["READY"] == "1" and extend[0] <= ready_at
        with socket.create_connection(("127.0.0.1", server.port), timeout=1):
            pass  # READY=1 means the port accepts connections
        assert "listening on port" in ready.get("STATUS", "")

        notify.poll(3.2)  # WATCHDOG_USEC=1 s → a ping every 0.5 s while healthy
        pings = notify.times("WATCHDOG", since=ready_at)
        assert 4 <= len(pings) <= 9, pings
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert all(0.3 < g < 0.9 for g in gaps), gaps
        assert "sessions" in [m for _, m in notify.messages if "STATUS" in m][-1]["STATUS"]

        open(health, "w").close()  # the appliance turns unhealthy: the pings must stop
        notify.poll(0.7)
        sick_from = time.monotonic()
        notify.poll(2.0)
        assert notify.times("WATCHDOG", since=sick_from) == []
        assert any("unhealthy" in m.get("STATUS", "") for _, m in notify.messages)
        os.remove(health)
        notify.poll(1.5)
        assert notify.times("WATCHDOG", since=sick_from), "pings resume once healthy"

        server.proc.send_signal(signal.SIGTERM)
        notify.poll(1.5)
        assert any(m.get("STOPPING") == "1" for _, m in notify.messages)
        assert server.proc.wait(10) == 0
    finally:
        server.stop()


def run_tally(*args, env=None, input=None):
    return subprocess.run([BINARY, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, input=input, timeout=30)


def test_configuration_file_then_environment_then_command_line(data_dir):
    conf = os.path.join(data_dir, "tally.conf")
    file_port, env_port, cli_port = free_port(), free_port(), free_port()
    with open(conf, "w") as f:
        f.write(f"# comment\nhost = 127.0.0.1\nport = {file_port}\nmdns = no\nring-size = 8MiB\n"
                f'operator-password = "{PASSWORD}"\ndata-dir = {data_dir}\n')
    for env, args, expected in (({}, [], file_port), ({"TALLY_PORT": str(env_port)}, [], env_port),
                                ({"TALLY_PORT": str(env_port)}, ["--port", str(cli_port)], cli_port)):
        proc = subprocess.Popen([BINARY, "serve", "--config", conf, *args], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", expected), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nothing listening on {expected} ({env}, {args})"
                    time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.mark.parametrize("line, message", [
    ("prot = 80", 'unknown key "prot"'),
    ("port = eighty", 'port = "eighty"'),
    ("durability = maybe", "durability"),
    ("ring-size = 3 bananas", "ring-size"),
    ("just words", "expected `key = value`"),
])
def test_bad_configuration_refuses_to_start_naming_the_key(data_dir, line, message):
    conf = os.path.join(data_dir, "tally.conf")
    with open(conf, "w") as f:
        f.write(f"mdns = no\n{line}\n")
    out = run_tally("serve", "--config", conf, "--data-dir", data_dir)
    assert out.returncode != 0
    assert message in out.stderr and "tally.conf:2" in out.stderr, out.stderr


def test_bad_environment_is_refused_too(data_dir):
    out = run_tally("serve", "--data-dir", data_dir, env={"TALLY_DURABLITY": "os"})
    assert out.returncode != 0 and "TALLY_DURABLITY" in out.stderr


def test_reset_password_refuses_a_weak_password(server):
    bad = run_tally("reset-password", "--data-dir", server.data_dir, "--password-stdin", input="short\n")
    assert bad.returncode != 0 and "8 to 256 characters" in bad.stderr


def test_reset_password_then_sign_in(data_dir):
    first = subprocess.run([BINARY, "reset-password", "--data-dir", data_dir, "--password-stdin"], input="x" * 10, text=True,
                           capture_output=True)
    assert first.returncode != 0 and "no Tally data" in first.stderr
    server = Server(data_dir).start()
    server.stop()
    assert run_tally("reset-password", "--data-dir", data_dir, "--password-stdin", input="a brand new secret\n").returncode == 0
    # Start without a configured password: the stored one applies.
    s = Server(data_dir, password=None).start()
    try:
        assert s.request("POST", "/api/v1/auth/login", {"password": "a brand new secret"})[0] == 200
        assert s.request("POST", "/api/v1/auth/login", {"password": PASSWORD})[0] == 401
        assert run_tally("reset-password", "--data-dir", data_dir, "--password-stdin", input="changed again!\n").returncode == 0
        assert s.request("POST", "/api/v1/auth/login", {"password": "changed again!"})[0] == 200, "at once, no restart"
    finally:
        s.stop()


def test_export_matches_the_votes_cast(server):
    s = server.new_session("Export, \"quoted\"")
    poll = server.poll(s["sessionId"], s["presenterToken"], options=["=SUM(A1)", "Plain, with comma"], open=True)
    votes = ["o1", "o2", "o2", "o2"]
    for option in votes:
        assert server.vote(s["sessionId"], poll["pollId"], server.join(s["joinCode"])["participantToken"], [option])[0] == 201
    status, body, resp = server.request("GET", f"/api/v1/sessions/{s['sessionId']}/export.csv", token=s["presenterToken"])
    assert status == 200 and "attachment" in resp.getheader("Content-Disposition")
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["option"], r["votes"]) for r in rows] == [("'=SUM(A1)", "1"), ("Plain, with comma", "3")]
    assert all(r["total_ballots"] == "4" and r["session_title"] == 'Export, "quoted"' for r in rows)
    assert server.request("GET", f"/api/v1/sessions/{s['sessionId']}/export.csv", token=server.join(s["joinCode"])["participantToken"])[0] == 403

    time.sleep(0.5)  # the database projection trails the ring by ~100 ms
    out = run_tally("export", "--data-dir", server.data_dir, "--session", s["joinCode"], "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert list(csv.DictReader(io.StringIO(out.stdout))) == rows
    js = run_tally("export", "--data-dir", server.data_dir, "--session", s["sessionId"], "--format", "json")
    import json
    doc = json.loads(js.stdout)
    ballots = doc["polls"][0]["ballots"]
    assert [b["optionIds"][0] for b in ballots] == votes, "ballots in the order they were cast"
    assert all(b["castAt"].endswith("Z") for b in ballots)
    assert [b["castAt"] for b in ballots] == sorted(b["castAt"] for b in ballots)


def test_phones_checking_for_internet_land_on_the_join_page(server):
    for path in ("/generate_204", "/hotspot-detect.html"):
        status, _, resp = server.request("GET", path)
        assert status == 302 and resp.getheader("Location") == "/"
    status, _, resp = server.request("GET", "/some/typo", headers={"Accept": "text/html"})
    assert status == 302
    assert server.request("GET", "/api/v1/nothing", headers={"Accept": "text/html"})[0] == 404


def test_first_run_password_set_up_happens_once(data_dir):
    s = Server(data_dir, password=None).start()
    try:
        assert s.ok("GET", "/api/v1/auth/status") == {"operatorPasswordSet": False, "signedInAsOperator": False}
        code = s.ok("GET", "/api/v1/auth/setup-code")["setupCode"]  # as the box's own screen shows it
        assert s.request("POST", "/api/v1/auth/setup", {"password": "short", "setupCode": code})[0] == 400
        assert s.request("POST", "/api/v1/auth/setup", {"password": "first password", "setupCode": code})[0] == 200
        assert s.request("POST", "/api/v1/auth/setup", {"password": "second password", "setupCode": code})[0] == 409
        assert s.request("POST", "/api/v1/auth/login", {"password": "first password"})[0] == 200
    finally:
        s.stop()


def test_the_systemd_units_verify_and_are_hardened():
    if not os.path.exists("/usr/bin/systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run([os.path.join(ROOT, "Appliance", "check-units.sh")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verify tally.service: ok" in out.stdout and "OK" in out.stdout


def test_the_shipped_example_configuration_is_valid(data_dir):
    example = os.path.join(ROOT, "Appliance", "etc", "tally.conf")
    s = Server(data_dir, extra_args=["--config", example])
    s.start()  # its port 80 is overridden by the command line: the file itself must parse
    s.stop()
