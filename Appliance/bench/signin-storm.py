#!/usr/bin/env python3
"""Votes while someone hammers the operator sign-in, on loopback, against the real server.

Starts `tally serve` (rate limits off, so the voter's own limit does not interfere) with a fresh
data directory, creates a session with an open poll and one participant, then measures that
participant's vote latency (one request at a time, for SECONDS) three times: quiet; while STORM
client processes hit `/healthz` as fast as they can; and while they send wrong passwords as fast
as they can, each attempt from a fresh 127.x address so that only the hashing bound holds them
back. On one machine the attackers' own CPU shows in both loaded phases; what the sign-in path
costs the room is the difference between them. Prints p50/p99/max and how requests were answered
(401 hashed and refused, 503 over the hashing bound).

    Appliance/bench/signin-storm.py [--binary .build/release/tally] [--storm 4] [--seconds 5]
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import tempfile
import multiprocessing
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


def storm(port, n, stop, results, login):
    answers = Counter()
    attempt = 0
    while not stop.is_set() and attempt < 100_000:
        attempt += 1
        # A fresh address for every attempt: only the hashing bound holds it back.
        source = f"127.{10 + n}.{attempt // 250 % 250}.{attempt % 250 + 1}"
        if login:
            answers[call(port, "POST", "/api/v1/auth/login", {"password": "wrong"}, source=source)[0]] += 1
        else:
            answers[call(port, "GET", "/healthz", source=source)[0]] += 1
    results.put(answers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "tally"))
    ap.add_argument("--storm", type=int, default=4)
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
            # The attackers are processes of their own, so the measuring client is not starved
            # of Python's interpreter lock. The same load on /healthz first: on one machine the
            # attackers' own CPU shows up in both, the sign-in work only in the second.
            phases = {}
            for name, login in (("same load on /healthz", False), ("wrong sign-ins", True)):
                stop = multiprocessing.Event()
                results = multiprocessing.Queue()
                workers = [multiprocessing.Process(target=storm, args=(port, n, stop, results, login)) for n in range(args.storm)]
                for w in workers:
                    w.start()
                time.sleep(0.5)
                latencies = measure_votes(port, sid, pid, voter, args.seconds)
                stop.set()
                answers = Counter()
                for _ in workers:
                    answers.update(results.get(timeout=60))
                for w in workers:
                    w.join()
                phases[f"{args.storm} clients: {name}"] = (latencies, answers)
        finally:
            server.terminate()
            server.wait(10)
    print(f"{'':40}{'votes':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  answers")
    rows = [("quiet", quiet, Counter())] + [(name, lat, ans) for name, (lat, ans) in phases.items()]
    for name, values, answers in rows:
        print(f"{name:40}{len(values):>8}{percentile(values, .5):>9.2f}{percentile(values, .99):>9.2f}{max(values):>9.2f}  {dict(sorted(answers.items()))}")


if __name__ == "__main__":
    main()
