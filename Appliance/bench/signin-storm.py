#!/usr/bin/env python3
"""Votes while someone hammers the operator sign-in, on loopback, against the real server.

Starts `tally serve` with a fresh data directory, creates a session with an open poll and
one participant, then measures vote latency (that participant changing their ballot, one
request at a time, for SECONDS) twice: quiet, and while STORM threads send wrong passwords as
fast as they can (each from its own 127.x address, so the per-address lockout does not stop
them before the hashing bound does). Reports p50/p99/max vote latency for both, and how the
sign-in attempts were answered (401 hashed, 429 locked out, 503 over the hashing bound).

    Appliance/bench/signin-storm.py [--binary .build/release/tally] [--storm 16] [--seconds 5]
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "bench-password"


def call(port, method, path, body=None, token=None, source="127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else None)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def measure_votes(port, sid, pid, token, seconds):
    latencies = []
    deadline = time.monotonic() + seconds
    option = 0
    while time.monotonic() < deadline and len(latencies) < 100_000:
        option = 1 - option
        began = time.perf_counter()
        status, _ = call(port, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/votes", {"optionIds": [f"o{option + 1}"]}, token)
        latencies.append((time.perf_counter() - began) * 1000)
        assert status in (200, 201), status
    return latencies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "tally"))
    ap.add_argument("--storm", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="tally-bench-") as data:
        server = subprocess.Popen(
            [args.binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data, "--no-mdns",
             "--operator-password", PASSWORD, "--ring-size", "64MiB", "--log-level", "warning", "--rate-limits", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if call(port, "GET", "/readyz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            op = call(port, "POST", "/api/v1/auth/login", {"password": PASSWORD})[1]["token"]
            session = call(port, "POST", "/api/v1/sessions", {"title": "Bench"}, op)[1]
            sid = session["sessionId"]
            pid = call(port, "POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q?", "options": ["A", "B"], "open": True}, session["presenterToken"])[1]["pollId"]
            voter = call(port, "POST", "/api/v1/join", {"joinCode": session["joinCode"]})[1]["participantToken"]

            quiet = measure_votes(port, sid, pid, voter, args.seconds)
            answers = Counter()
            stop = threading.Event()

            def storm(n):
                attempt = 0
                while not stop.is_set() and attempt < 100_000:
                    attempt += 1
                    # A fresh address for every attempt: only the hashing bound holds it back.
                    source = f"127.{10 + n}.{attempt // 250 % 250}.{attempt % 250 + 1}"
                    answers[call(port, "POST", "/api/v1/auth/login", {"password": "wrong"}, source=source)[0]] += 1

            threads = [threading.Thread(target=storm, args=(n,)) for n in range(args.storm)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            stormy = measure_votes(port, sid, pid, voter, args.seconds)
            stop.set()
            for t in threads:
                t.join()
        finally:
            server.terminate()
            server.wait(10)
    print(f"{'':28}{'votes':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values in (("quiet", quiet), (f"{args.storm} sign-in threads", stormy)):
        print(f"{name:28}{len(values):>8}{percentile(values, .5):>9.2f}{percentile(values, .99):>9.2f}{max(values):>9.2f}")
    print("sign-in answers during the storm:", dict(sorted(answers.items())))


if __name__ == "__main__":
    main()
