"""Trust on an open Wi-Fi: what a hostile participant (or a web page a visitor opens) can and
cannot do, tried against the real binary as they would try it."""

import asyncio
import http.client
import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest
import websockets

from conftest import BINARY, PASSWORD, Server, SSEStream, WSStream


def call_from(server, source_ip, method, path, body=None, token=None, headers=None):
    """One request from a chosen loopback address (each 127.x.y.z is a different phone)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30, source_address=(source_ip, 0))
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    data = json.loads(raw) if raw and "json" in (resp.getheader("Content-Type") or "") else raw
    return resp.status, data, resp


def wrong_code(right):
    return "ZZZZZZ" if right != "ZZZZZZ" else "YYYYYY"


# -- 1. Hidden is hidden in the room ---------------------------------------------------------


def hidden_poll_of(snapshot, poll_id):
    return next(p for p in snapshot["polls"] if p["poll"]["id"] == poll_id)


def test_hidden_results_reach_only_the_presenter_on_every_path(server):
    s = server.new_session()
    sid, presenter, code = s["sessionId"], s["presenterToken"], s["joinCode"]
    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    # A participant pairs a "display" with the join code they were given: the old leak.
    paired = server.ok("POST", "/api/v1/display/pair", {"joinCode": code})["displayToken"]
    displays = {"display link": s["displayToken"], "paired with the join code": paired}
    live_ws = WSStream(server.events_url("ws", sessionId=sid, actorType="display", token=paired, fromEventId=start))
    live_sse = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={code}&fromEventId={start}")
    assert live_sse.status == 200
    poll = server.poll(sid, presenter, options=["A", "B", "C"], open=True, resultsVisibility="hidden")
    pid = poll["pollId"]
    voters = [server.join(code)["participantToken"] for _ in range(3)]
    for token in voters:
        assert server.vote(sid, pid, token, ["o1"])[0] == 201

    def no_counts(events, where):
        leaked = [e for e in events if e["eventType"] in ("poll.results", "poll.revealed") and e["payload"].get("pollId") == pid]
        assert not leaked, f"{where}: hidden counts leaked: {leaked}"

    # Live: the room gets the turnout, never the counts.
    for stream, where in ((live_ws, "live WebSocket"), (live_sse, "live SSE with the join code")):
        got = stream.collect(lambda e: e["eventType"] == "poll.ballots" and e["payload"]["totalBallots"] == 3, timeout=10)
        no_counts(got + stream.drain(0.5), where)
    # The presenter sees the counts.
    counts = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)
    assert [c["count"] for c in hidden_poll_of(counts, pid)["results"]["counts"]] == [3, 0, 0]

    # REST snapshot, for every display credential and for a participant.
    for where, token in [*displays.items(), ("participant", voters[0])]:
        view = hidden_poll_of(server.ok("GET", f"/api/v1/sessions/{sid}", token=token), pid)
        assert "results" not in view, f"{where}: {view}"
        assert view["totalBallots"] == 3
    # Replay from memory, and a stream.reset snapshot.
    replay = WSStream(server.events_url("ws", sessionId=sid, actorType="display", token=paired, fromEventId=start))
    replayed = replay.collect(lambda e: e["eventType"] == "poll.ballots" and e["payload"]["totalBallots"] == 3)
    no_counts(replayed + replay.drain(0.3), "replay from memory")
    replay.close()
    reset = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={paired}&fromEventId=garbage")
    snapshot = reset.next(5)
    assert snapshot["eventType"] == "stream.reset"
    assert "results" not in hidden_poll_of(snapshot["payload"], pid) and hidden_poll_of(snapshot["payload"], pid)["totalBallots"] == 3
    reset.close()
    # Exports are the presenter's, not a display's.
    assert server.request("GET", f"/api/v1/sessions/{sid}/export.json", token=paired)[0] == 403
    for stream in (live_ws, live_sse):
        stream.close()

    # Replay from the ring, after a restart emptied the in-memory cache.
    server.stop()
    server.start()
    ring = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={paired}&fromEventId={start}")
    assert ring.status == 200
    from_ring = ring.collect(lambda e: e["eventType"] == "poll.ballots" and e["payload"]["totalBallots"] == 3)
    no_counts(from_ring + ring.drain(0.3), "replay from the ring")

    # The reveal shows the counts to the room.
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/reveal", token=presenter)
    shown = ring.collect(lambda e: e["eventType"] == "poll.revealed")
    assert [c["count"] for c in shown[-1]["payload"]["results"]["counts"]] == [3, 0, 0]
    assert hidden_poll_of(server.ok("GET", f"/api/v1/sessions/{sid}", token=paired), pid)["results"]["totalBallots"] == 3
    ring.close()


# -- 2. First-run set-up and DNS rebinding ---------------------------------------------------


@pytest.fixture
def fresh(data_dir):
    """A box on its first start: no operator password."""
    s = Server(data_dir, password=None).start()
    yield s
    s.stop()


def setup_code_in_log(server):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        match = re.search(r"set-up code ([A-Z0-9]{4}-[A-Z0-9]{4})", server.logs())
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise AssertionError("no set-up code in the log: " + server.logs())


def test_first_run_set_up_needs_the_code_from_the_box(fresh):
    code = setup_code_in_log(fresh)
    status = fresh.ok("GET", "/api/v1/auth/status")
    assert status == {"operatorPasswordSet": False, "signedInAsOperator": False}, "status reveals nothing to race on"
    # The box's own screen (a page opened from the box itself) can show the code.
    assert fresh.ok("GET", "/api/v1/auth/setup-code") == {"setupCode": code}

    attacker = "127.0.0.66"
    st, body, _ = call_from(fresh, attacker, "POST", "/api/v1/auth/setup", {"password": "attacker-password"})
    assert st == 403 and "set-up code is required" in body["detail"]
    # Wrong codes count as guesses: a growing lockout, with Retry-After.
    statuses = [call_from(fresh, attacker, "POST", "/api/v1/auth/setup", {"password": "attacker-password", "setupCode": f"AAAA-AAA{i}"})[0] for i in range(2, 8)]
    assert statuses[:5] == [403] * 5
    st, body, resp = call_from(fresh, attacker, "POST", "/api/v1/auth/setup", {"password": "attacker-password", "setupCode": code})
    assert st == 429 and int(resp.getheader("Retry-After")) >= 1, "even the right code waits out the lockout"

    # Whoever reads the code off the box sets the password (typed in lower case, without the dash).
    st, body, _ = call_from(fresh, "127.0.0.67", "POST", "/api/v1/auth/setup", {"password": "venue-staff-pw", "setupCode": code.replace("-", "").lower()})
    assert st == 200 and body["token"]
    assert fresh.request("GET", "/api/v1/auth/setup-code")[0] == 404
    st, body, _ = fresh.request("POST", "/api/v1/auth/setup", {"password": "another-one", "setupCode": code})
    assert st == 409
    assert fresh.ok("POST", "/api/v1/auth/login", {"password": "venue-staff-pw"})["token"]


def raw_request(server, head):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head.encode())
        return s.recv(65536).decode(errors="replace")


def test_requests_for_a_foreign_host_name_are_refused(fresh):
    """DNS rebinding: a page on evil.example re-pointed at the box still says Host: evil.example."""
    for host in ("evil.example", "evil.example:8080", "tally.local.evil.example"):
        reply = raw_request(fresh, f"POST /api/v1/auth/setup HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}")
        assert reply.startswith("HTTP/1.1 421"), reply[:200]
        assert "does not answer to" in reply
    # A WebSocket upgrade naming a foreign host is refused before any upgrade.
    reply = raw_request(fresh, f"GET /events?sessionId=x HTTP/1.1\r\nHost: evil.example:{fresh.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert re.match(r"HTTP/1.1 4\d\d ", reply) and "101" not in reply.split("\r\n")[0], reply[:200]
    # The box's own names and addresses work.
    for host in (f"localhost:{fresh.port}", f"127.0.0.1:{fresh.port}", "127.0.0.1", f"[::1]:{fresh.port}"):
        reply = raw_request(fresh, f"GET /api/v1/auth/status HTTP/1.1\r\nHost: {host}\r\n\r\n")
        assert reply.startswith("HTTP/1.1 200"), (host, reply[:200])


def test_allowed_hosts_and_public_url_name_the_box(data_dir):
    server = Server(data_dir, extra_args=["--allowed-hosts", "polls.venue.example", "--public-url", "http://tally.example.org"]).start()
    try:
        for host in ("polls.venue.example", "tally.example.org", "POLLS.venue.example."):
            reply = raw_request(server, f"GET /api/v1/auth/status HTTP/1.1\r\nHost: {host}\r\n\r\n")
            assert reply.startswith("HTTP/1.1 200"), (host, reply[:200])
        assert raw_request(server, "GET /api/v1/auth/status HTTP/1.1\r\nHost: other.example\r\n\r\n").startswith("HTTP/1.1 421")
    finally:
        server.stop()


# -- 3. Operator sign-in ---------------------------------------------------------------------


def test_failed_sign_ins_lock_out_that_address_only(server):
    attacker = "127.0.0.70"
    statuses = [call_from(server, attacker, "POST", "/api/v1/auth/login", {"password": f"guess-{i}"})[0] for i in range(6)]
    assert statuses == [401] * 6
    st, body, resp = call_from(server, attacker, "POST", "/api/v1/auth/login", {"password": PASSWORD})
    assert st == 429 and int(resp.getheader("Retry-After")) >= 1 and "failed sign-ins" in body["detail"]
    # The honest operator at another address signs in at once.
    st, body, _ = call_from(server, "127.0.0.71", "POST", "/api/v1/auth/login", {"password": PASSWORD})
    assert st == 200 and body["token"]


def test_parallel_sign_ins_are_bounded_and_never_stall_the_room(server):
    s = server.new_session()
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    voter = server.join(s["joinCode"])["participantToken"]
    results = []

    def attempt(i):
        results.append(call_from(server, f"127.0.1.{i + 1}", "POST", "/api/v1/auth/login", {"password": "wrong-password"}))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    # While the hashes run, votes are still accepted (hashing is off the event loops).
    assert server.vote(s["sessionId"], poll["pollId"], voter, ["o1"])[0] == 201
    for t in threads:
        t.join(30)
    statuses = sorted(r[0] for r in results)
    assert set(statuses) <= {401, 503}, statuses
    assert 503 in statuses, f"more sign-ins hashed at once than the bound allows: {statuses}"
    busy = next(r for r in results if r[0] == 503)
    assert busy[2].getheader("Retry-After") == "1"


def test_logout_ends_that_sign_in(server):
    token = server.operator_token()
    other = server.operator_token()
    s = server.ok("POST", "/api/v1/sessions", {"title": "Signed in"}, token, expect=201)
    mine = WSStream(server.events_url("ws", sessionId=s["sessionId"], token=token))
    theirs = WSStream(server.events_url("ws", sessionId=s["sessionId"], token=other))
    time.sleep(0.2)
    st, _, resp = server.request("POST", "/api/v1/auth/logout", token=token)
    assert st == 204
    assert mine.closed.wait(5) and mine.close_code == 4401, "its streams end too"
    assert not theirs.closed.wait(0.3)
    theirs.close()
    assert "tally_op=;" in resp.getheader("Set-Cookie") and "Max-Age=0" in resp.getheader("Set-Cookie")
    assert server.request("GET", "/api/v1/sessions", token=token)[0] == 401
    assert server.request("GET", "/api/v1/sessions", token=other)[0] == 200, "other sign-ins continue"
    assert server.request("POST", "/api/v1/auth/logout", token=token)[0] == 401


def test_a_password_change_or_reset_ends_every_earlier_sign_in(fresh):
    code = setup_code_in_log(fresh)
    first = fresh.ok("POST", "/api/v1/auth/setup", {"password": "first-password", "setupCode": code})["token"]
    laptop = fresh.ok("POST", "/api/v1/auth/login", {"password": "first-password"})["token"]
    st, body, _ = fresh.request("POST", "/api/v1/auth/password", {"currentPassword": "nope-nope", "newPassword": "second-password"}, token=first)
    assert st == 403
    changed = fresh.ok("POST", "/api/v1/auth/password", {"currentPassword": "first-password", "newPassword": "second-password"}, token=first)["token"]
    for old in (first, laptop):
        assert fresh.request("GET", "/api/v1/sessions", token=old)[0] == 401
    assert fresh.request("GET", "/api/v1/sessions", token=changed)[0] == 200
    assert fresh.request("POST", "/api/v1/auth/login", {"password": "first-password"})[0] == 401

    # `tally reset-password` at the console, while the server runs.
    subprocess.run([BINARY, "reset-password", "--data-dir", fresh.data_dir, "--password-stdin"],
                   input=b"third-password\n", check=True, capture_output=True)
    deadline = time.monotonic() + 5
    while fresh.request("GET", "/api/v1/sessions", token=changed)[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fresh.request("GET", "/api/v1/sessions", token=changed)[0] == 401
    assert fresh.ok("POST", "/api/v1/auth/login", {"password": "third-password"})["token"]


def test_rotating_a_link_ends_the_old_one_and_its_streams(server):
    s = server.new_session()
    sid, presenter, display = s["sessionId"], s["presenterToken"], s["displayToken"]
    ws = WSStream(server.events_url("ws", sessionId=sid, actorType="display", token=display))
    sse = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={display}")
    assert sse.status == 200
    time.sleep(0.2)
    rotated = server.ok("POST", f"/api/v1/sessions/{sid}/links/rotate", {"link": "display"}, token=presenter)
    assert rotated["link"] == "display" and rotated["token"] != display
    assert ws.closed.wait(5) and ws.close_code == 4401
    assert sse.ended.wait(5)
    assert server.request("GET", f"/api/v1/sessions/{sid}", token=display)[0] == 401
    assert server.ok("GET", f"/api/v1/sessions/{sid}", token=rotated["token"])["role"] == "display"
    assert server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["displayToken"] == rotated["token"]
    # The operator replaces a leaked presenter link: streams on the old link end, the
    # operator's own stays; the rotation survives a restart.
    operator = server.operator_token()
    own = WSStream(server.events_url("ws", sessionId=sid, token=operator))
    leaked = WSStream(server.events_url("ws", sessionId=sid, token=presenter))
    time.sleep(0.2)
    new_presenter = server.ok("POST", f"/api/v1/sessions/{sid}/links/rotate", {"link": "presenter"}, token=operator)["token"]
    assert leaked.closed.wait(5) and leaked.close_code == 4401
    assert not own.closed.wait(0.5), "the operator's stream does not rest on the presenter link"
    own.close()
    server.stop()
    server.start()
    assert server.request("POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q?", "options": ["a", "b"]}, token=presenter)[0] == 401
    assert server.request("GET", f"/api/v1/sessions/{sid}", token=display)[0] == 401
    assert server.ok("GET", f"/api/v1/sessions/{sid}", token=new_presenter)["role"] == "presenter"
    assert server.request("POST", f"/api/v1/sessions/{sid}/links/rotate", {"link": "everything"}, token=new_presenter)[0] == 400
    ws.close()
    sse.close()


# -- 4. Join codes one phone cannot weaponise ------------------------------------------------


def join_key(server, s):
    url = server.ok("GET", f"/api/v1/sessions/{s['sessionId']}", token=s["presenterToken"])["joinUrl"]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert url.split("?")[0].endswith("/j/" + s["joinCode"])
    return query["k"][0]


def test_a_flood_of_wrong_codes_does_not_keep_a_scanned_join_out(server):
    s = server.new_session()
    key = join_key(server, s)
    nat = "127.0.0.80"  # the attacker and the honest phone share the venue's NAT address
    stop = threading.Event()
    flood = []

    def attacker():
        deadline = time.monotonic() + 8
        while not stop.is_set() and time.monotonic() < deadline and len(flood) < 3000:
            flood.append(call_from(server, nat, "POST", "/api/v1/join", {"joinCode": wrong_code(s["joinCode"])})[0])

    t = threading.Thread(target=attacker)
    t.start()
    try:
        while len(flood) < 30:
            time.sleep(0.01)
        assert 429 in flood, "the typed-code lockout engaged"
        began = time.monotonic()
        st, body, _ = call_from(server, nat, "POST", "/api/v1/join", {"joinCode": s["joinCode"], "joinKey": key})
        took = time.monotonic() - began
        assert st == 201 and body["sessionId"] == s["sessionId"], (st, body)
        print(f"scanned join during a wrong-code flood: {took * 1000:.0f} ms")
        # A typed code from that address waits; the lockout is per address, not per hall.
        assert call_from(server, nat, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 429
        assert call_from(server, "127.0.0.81", "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 201
    finally:
        stop.set()
        t.join()
    assert set(flood) <= {404, 429}, set(flood)


def test_a_wrong_key_tells_nothing_and_counts_as_a_guess(server):
    s = server.new_session()
    answers = set()
    for code in (s["joinCode"], wrong_code(s["joinCode"])):
        st, body, _ = call_from(server, "127.0.0.82", "POST", "/api/v1/join", {"joinCode": code, "joinKey": "x" * 22})
        answers.add((st, body["detail"]))
    assert len(answers) == 1 and answers.pop()[0] == 404, "the same answer whether the code exists or not"
    for _ in range(8):
        call_from(server, "127.0.0.82", "POST", "/api/v1/join", {"joinCode": s["joinCode"], "joinKey": "y" * 22})
    assert call_from(server, "127.0.0.82", "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 429


def test_a_right_code_never_clears_the_failures(server):
    s = server.new_session()
    ip = "127.0.0.83"
    assert [call_from(server, ip, "POST", "/api/v1/join", {"joinCode": wrong_code(s["joinCode"])})[0] for _ in range(9)] == [404] * 9
    assert call_from(server, ip, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 201
    assert call_from(server, ip, "POST", "/api/v1/join", {"joinCode": wrong_code(s["joinCode"])})[0] == 404
    assert call_from(server, ip, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 429, "9 wrong + 1 right + 1 wrong is 10 wrong"


def test_pairing_and_stream_join_codes_count_as_guesses(server):
    s = server.new_session()
    wrong = wrong_code(s["joinCode"])
    pairer = "127.0.0.84"
    assert [call_from(server, pairer, "POST", "/api/v1/display/pair", {"joinCode": wrong})[0] for _ in range(10)] == [404] * 10
    assert call_from(server, pairer, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 429
    streamer = "127.0.0.85"
    path = f"/events?sessionId={s['sessionId']}&actorType=display&token={wrong}"
    assert [call_from(server, streamer, "GET", path)[0] for _ in range(10)] == [403] * 10
    assert call_from(server, streamer, "GET", f"/events?sessionId={s['sessionId']}&actorType=display&token={s['joinCode']}")[0] == 429


def test_an_ended_sessions_code_joins_nobody(server):
    s = server.new_session()
    key = join_key(server, s)
    server.ok("POST", f"/api/v1/sessions/{s['sessionId']}/end", token=s["presenterToken"])
    st, body, _ = server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})
    assert st == 410 and "ended" in body["detail"]
    assert server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"], "joinKey": key})[0] == 410
    assert server.request("POST", "/api/v1/display/pair", {"joinCode": s["joinCode"]})[0] == 410


def test_the_appliance_wide_budget_bounds_guessing_from_any_number_of_addresses(server):
    # With 100 live sessions the budget refills at 30^6 / (100 × 1.25 years) ≈ 0.19 wrong codes/s.
    operator = server.operator_token()
    sessions = [server.ok("POST", "/api/v1/sessions", {"title": f"Room {i}"}, operator, expect=201) for i in range(100)]
    taken = {x["joinCode"] for x in sessions}
    wrong = next(c for c in ("ZZZZZZ", "YYYYYY", "XXXXXX", "WWWWWW") if c not in taken)
    # One wrong code from each of many addresses (none is locked out on its own) spends the
    # burst of 50; from then on every typed code waits, whatever its address.
    sent, first_wait = 0, None
    for n in range(80):
        st = call_from(server, f"127.0.2.{n + 1}", "POST", "/api/v1/join", {"joinCode": wrong})[0]
        if st == 429:
            first_wait = n
            break
        assert st == 404
    assert first_wait is not None and first_wait >= 50, f"the appliance budget held back after {first_wait} wrong codes"
    st, body, resp = call_from(server, "127.0.2.200", "POST", "/api/v1/join", {"joinCode": sessions[0]["joinCode"]})
    assert st == 429 and int(resp.getheader("Retry-After")) >= 1, "a fresh address typing waits too"
    # The room still joins by scanning: a link join is not a guess.
    key = join_key(server, sessions[0])
    st, body, _ = call_from(server, "127.0.2.201", "POST", "/api/v1/join", {"joinCode": sessions[0]["joinCode"], "joinKey": key})
    assert st == 201


# -- 5. Ballot stuffing ----------------------------------------------------------------------


def test_flat_network_mode_limits_new_participants_per_address(data_dir):
    server = Server(data_dir, extra_args=["--network", "flat", "--joins-per-minute", "2"]).start()
    try:
        s = server.new_session()
        phone = "127.0.0.90"
        first = call_from(server, phone, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})
        assert first[0] == 201
        assert call_from(server, phone, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 201
        st, body, resp = call_from(server, phone, "POST", "/api/v1/join", {"joinCode": s["joinCode"]})
        assert st == 429 and "new participants" in body["detail"] and int(resp.getheader("Retry-After")) >= 1
        # Coming back with its own identity costs nothing.
        again = call_from(server, phone, "POST", "/api/v1/join", {"joinCode": s["joinCode"]}, token=first[1]["participantToken"])
        assert again[0] == 200 and again[1]["participantId"] == first[1]["participantId"]
        assert call_from(server, "127.0.0.91", "POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 201
    finally:
        server.stop()


def test_a_presenter_can_close_joining(server):
    s = server.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    early = server.join(s["joinCode"])
    poll = server.poll(sid, presenter, open=True)
    watcher = WSStream(server.events_url("ws", sessionId=sid, token=early["participantToken"]))
    server.ok("POST", f"/api/v1/sessions/{sid}/joining", {"open": False}, token=presenter)
    assert watcher.collect(lambda e: e["eventType"] == "session.joining")[-1]["payload"] == {"joiningOpen": False}
    st, body, _ = server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})
    assert st == 403 and "closed this session to new participants" in body["detail"]
    assert server.vote(sid, poll["pollId"], early["participantToken"], ["o1"])[0] == 201, "those who joined keep voting"
    assert server.ok("GET", f"/api/v1/sessions/{sid}", token=early["participantToken"])["joiningOpen"] is False
    assert server.request("POST", f"/api/v1/sessions/{sid}/joining", {"open": False}, token=early["participantToken"])[0] == 403
    server.stop()
    server.start()
    assert server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 403, "closed survives a restart"
    server.ok("POST", f"/api/v1/sessions/{sid}/joining", {"open": True}, token=presenter)
    assert server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})[0] == 201
    watcher.close()


# -- 6. Streams ------------------------------------------------------------------------------


def test_one_participant_holds_at_most_four_streams(server):
    s = server.new_session()
    p = server.join(s["joinCode"])
    sid, token = s["sessionId"], p["participantToken"]
    streams = [SSEStream(server.port, f"/events?sessionId={sid}&token={token}") for _ in range(4)]
    assert [x.status for x in streams] == [200] * 4
    fifth = SSEStream(server.port, f"/events?sessionId={sid}&token={token}")
    assert fifth.status == 429 and "4 open streams" in fifth.body["detail"]

    async def ws_close_code():
        async with websockets.connect(server.events_url("ws", sessionId=sid, token=token), open_timeout=5) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                return closed.code
    assert asyncio.run(ws_close_code()) == 4429
    # Another participant is unaffected; closing one stream frees a place.
    other = server.join(s["joinCode"])["participantToken"]
    assert SSEStream(server.port, f"/events?sessionId={sid}&token={other}").status == 200
    streams[0].close()
    # The server learns that a stream's client hung up when it next writes to it (an event).
    server.poll(sid, s["presenterToken"], open=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        again = SSEStream(server.port, f"/events?sessionId={sid}&token={token}")
        if again.status == 200:
            break
        time.sleep(0.1)
    assert again.status == 200
    for x in streams[1:] + [again]:
        x.close()


def test_an_sse_client_that_stops_reading_is_cut_off_by_size(data_dir):
    # Count bound out of the way: only the byte bound can end this stream.
    server = Server(data_dir, extra_args=["--stream-queue-limit", "1000000", "--rate-limits", "no"]).start()
    try:
        s = server.new_session()
        sid, presenter = s["sessionId"], s["presenterToken"]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /events?sessionId={sid}&token={presenter} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n".encode())
        # ~6 KB of events per poll (created, opened, and closed by the next one; big labels):
        # 1,000 polls are well past 4 MiB plus what the socket buffers hold.
        options = [f"{i:02d} " + "x" * 190 for i in range(12)]
        polls = 0
        while polls < 1000 and float(metric(server, "tally_slow_consumer_disconnects_total") or 0) < 1:
            for _ in range(25):
                server.poll(sid, presenter, options=options, open=True, question="q" * 490 + f" {polls}")
                polls += 1
        assert float(metric(server, "tally_slow_consumer_disconnects_total") or 0) >= 1, f"not cut off after {polls} polls"
        # Reading now drains what was queued before the cut, then the stream's end (the final
        # chunk): nothing after the cut is sent to it. It resumes with Last-Event-ID.
        sock.settimeout(20)
        data = b""
        try:
            while not data.endswith(b"\r\n0\r\n\r\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pytest.fail(f"the stream did not end; {len(data)} bytes read")
        assert data.endswith(b"\r\n0\r\n\r\n"), data[-200:]
        assert data.count(b"event: poll.opened") < polls, "cut off, not everything sent"
        sock.close()
    finally:
        server.stop()


def metric(server, name):
    text = server.request("GET", "/metrics")[1]
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return line.rsplit(" ", 1)[1]
    return ""


def test_probing_the_stream_with_head_holds_no_place(server):
    """HEAD /events answers like the stream would (access checked) but subscribes nobody: a
    phone that probes it, or hangs up before the stream starts, does not use up its four places."""
    s = server.new_session()
    sid, token = s["sessionId"], server.join(s["joinCode"])["participantToken"]
    for _ in range(6):
        status, _, response = server.request("HEAD", f"/events?sessionId={sid}&token={token}")
        assert status == 200 and (response.getheader("Content-Type") or "").startswith("text/event-stream")
    assert server.request("HEAD", f"/events?sessionId={sid}&token=pa.forged.AAAA")[0] == 401
    streams = [SSEStream(server.port, f"/events?sessionId={sid}&token={token}") for _ in range(4)]
    assert [x.status for x in streams] == [200] * 4, "all four places are still free"
    for stream in streams:
        stream.close()


def test_a_display_on_the_join_code_is_capped_per_address(server):
    """Every participant knows the join code; following the session as a display with it is capped
    per address like a participant's streams, so one phone cannot open thousands."""
    s = server.new_session()
    sid, code = s["sessionId"], s["joinCode"]
    streams = [SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={code}") for _ in range(16)]
    assert [x.status for x in streams] == [200] * 16
    refused = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={code}")
    assert refused.status == 429 and "join code" in refused.body["detail"]
    for stream in streams:
        stream.close()
    # A display link is not counted against the join-code cap.
    assert SSEStream(server.port, f"/events?sessionId={sid}&token={s['displayToken']}").status == 200
