#!/usr/bin/env python3
"""Vote ingestion over keep-alive HTTP against the real release server, on loopback.

Starts `tally serve` (release build) with a fresh data directory, creates a session, an open
poll and PARTICIPANTS participants, then drives `wrk` (Debian package) for SECONDS: every request
is a participant changing their ballot, so every one is accepted and durably logged. Reports
accepted votes/s, latency, and the server's CPU time per vote (from /proc).

    Appliance/bench/votes.py [--durability fsync|os] [--connections 64] [--seconds 10]
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def request(port, method, path, body=None, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"null")
    conn.close()
    assert resp.status < 300, (method, path, resp.status, data)
    return data


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--durability", default="fsync", choices=["fsync", "os"])
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--participants", type=int, default=500)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "tally"))
    args = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tempfile.mkdtemp(prefix="tally-votes-")
    server = subprocess.Popen(
        [args.binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data,
         "--operator-password", "benchmark-password", "--durability", args.durability, "--ring-size", "256MiB",
         "--log-level", "warning", "--rate-limits", "no"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                request(port, "GET", "/readyz")
                break
            except OSError:
                time.sleep(0.05)
        op = request(port, "POST", "/api/v1/auth/login", {"password": "benchmark-password"})["token"]
        session = request(port, "POST", "/api/v1/sessions", {"title": "bench"}, op)
        sid = session["sessionId"]
        poll = request(port, "POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q", "options": ["a", "b"], "open": True}, op)
        tokens = [request(port, "POST", "/api/v1/join", {"joinCode": session["joinCode"]})["participantToken"]
                  for _ in range(args.participants)]
        lua = os.path.join(data, "votes.lua")
        with open(lua, "w") as f:
            f.write("tokens = {" + ",".join(json.dumps(t) for t in tokens) + "}\n")
            f.write(f'path = "/api/v1/sessions/{sid}/polls/{poll["pollId"]}/votes"\n')
            f.write("""
counter = 0
request = function()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  local option = (math.floor(counter / #tokens) % 2 == 0) and "o1" or "o2"
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
                    '{"optionIds":["' .. option .. '"]}')
end
""")
        cpu_before = cpu_seconds(server.pid)
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "-s", lua,
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(server.pid) - cpu_before
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
        final = request(port, "GET", f"/api/v1/sessions/{sid}", token=op)["polls"][0]["results"]
        print(out)
        print(f"| votes/s accepted, durability {args.durability}, {args.connections} connections | {rate:.0f} |")
        print(f"| latency p50 / p90 / p99 | {lat.get('50')} / {lat.get('90')} / {lat.get('99')} |")
        print(f"| server CPU per accepted vote | {cpu / max(requests, 1) * 1e6:.0f} µs |")
        print(f"| non-2xx responses | {non2xx.group(1) if non2xx else 0} |")
        print(f"| server RSS after | {rss_mb(server.pid):.0f} MB |")
        print(f"| ballots counted at the end | {final['totalBallots']} of {args.participants} participants |")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
