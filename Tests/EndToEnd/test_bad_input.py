"""Bad input gets a precise 4xx problem, never a 500, and the server keeps serving."""

import http.client
import json
import socket

import pytest

from conftest import SSEStream, WSStream


@pytest.fixture
def room(server):
    s = server.new_session()
    participant = server.join(s["joinCode"])
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    return server, s, participant, poll


def problem(server, method, path, body=None, token=None, raw=None, headers=None):
    status, data, resp = server.request(method, path, body, token, raw=raw, headers=headers)
    assert resp.getheader("Content-Type") == "application/problem+json", (status, data)
    assert data["status"] == status and data["detail"], data
    return status, data["detail"]


def test_malformed_and_mistyped_bodies(room):
    server, s, _, _ = room
    polls = f"/api/v1/sessions/{s['sessionId']}/polls"
    token = s["presenterToken"]
    assert problem(server, "POST", polls, token=token, raw=b'{"question": "Q", "options": [') == (400, "the body is not valid JSON")
    assert problem(server, "POST", polls, token=token, raw=b"") == (400, "the request needs a JSON body")
    assert problem(server, "POST", polls, {"question": "Q", "options": "a,b"}, token) == (400, "'options' must be an array")
    assert problem(server, "POST", polls, {"question": 7, "options": ["a", "b"]}, token) == (400, "'question' must be a string")
    assert problem(server, "POST", polls, {"options": ["a", "b"]}, token) == (400, "missing field 'question'")
    assert problem(server, "POST", polls, {"question": "Q", "options": ["a", "b"], "kind": "ranked"}, token) == (400, "'kind' must be one of single, multiple, scale, ranking, wordcloud, open")
    assert problem(server, "POST", polls, {"question": "", "options": ["a", "b"]}, token) == (400, "question must not be empty")
    thirteen = [f"option {i}" for i in range(13)]
    assert problem(server, "POST", polls, {"question": "Q", "options": thirteen}, token) == (400, "a poll has 2 to 12 options, got 13")
    status, _ = problem(server, "POST", polls, {"question": "Q", "options": ["a", "b"]}, token,
                        headers={"Content-Type": "text/plain"})
    assert status == 415


def test_a_one_mebibyte_body_is_refused_with_413(room):
    server, s, _, _ = room
    big = json.dumps({"question": "x" * (1 << 20), "options": ["a", "b"]}).encode()
    status, detail = problem(server, "POST", f"/api/v1/sessions/{s['sessionId']}/polls", token=s["presenterToken"], raw=big)
    assert status == 413 and "larger than" in detail


def test_unknown_things_are_404(room):
    server, s, participant, _ = room
    sid = s["sessionId"]
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/zzzzzzzz/open", token=s["presenterToken"])[0] == 404
    assert problem(server, "GET", "/api/v1/sessions/nosuchsess", token=s["presenterToken"])[0] == 404
    assert problem(server, "GET", "/api/v1/sessions/..%2f..%2fetc", token=s["presenterToken"])[0] == 404
    assert problem(server, "POST", "/api/v1/join", {"joinCode": "ZZZZZZ"})[0] == 404
    assert problem(server, "POST", "/api/v1/join", {"joinCode": "nope"}) == (400, 'a join code is 6 letters and digits, like "K7QX2M"')
    assert problem(server, "GET", "/api/v1/nothing-here")[0] == 404
    status, detail = problem(server, "POST", f"/api/v1/sessions/{sid}/polls/zzzzzzzz/votes", {"optionIds": ["o1"]}, participant["participantToken"])
    assert status == 404 and "no poll" in detail


def test_roles_are_enforced(room):
    server, s, participant, poll = room
    sid, pid = s["sessionId"], poll["pollId"]
    p = participant["participantToken"]
    # A participant trying presenter actions.
    for action in ("open", "close", "reveal"):
        assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/{action}", token=p)[0] == 403
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q", "options": ["a", "b"]}, p)[0] == 403
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/end", token=p)[0] == 403
    assert problem(server, "POST", "/api/v1/sessions", {"title": "mine"}, p)[0] == 403
    assert problem(server, "GET", "/api/v1/sessions", token=p)[0] == 403
    # No credentials at all: 401 with a challenge.
    status, _, resp = server.request("POST", "/api/v1/sessions", {"title": "x"})
    assert status == 401 and resp.getheader("WWW-Authenticate") == "Bearer"
    # A presenter of another session is a stranger here.
    other = server.new_session("Other room")
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/close", token=other["presenterToken"])[0] == 403
    # A display may watch, not vote; a forged token is no token.
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/votes", {"optionIds": ["o1"]}, s["displayToken"])[0] == 403
    forged = p[:-4] + ("AAAA" if not p.endswith("AAAA") else "BBBB")
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/votes", {"optionIds": ["o1"]}, forged)[0] == 401
    assert problem(server, "POST", "/api/v1/auth/login", {"password": "guess"})[0] == 401


def test_votes_that_break_the_rules_are_refused(room):
    server, s, participant, poll = room
    sid, pid, p = s["sessionId"], poll["pollId"], participant["participantToken"]
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/votes", {"optionIds": ["o1", "o2"]}, p)[0] == 400
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/votes", {"optionIds": ["o7"]}, p)[0] == 400
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/close", token=s["presenterToken"])
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/votes", {"optionIds": ["o1"]}, p) == (409, f"poll {pid} is closed")
    assert problem(server, "POST", f"/api/v1/sessions/{sid}/polls/{pid}/close", token=s["presenterToken"])[0] == 409


def test_event_stream_refusals_are_precise(room):
    server, s, participant, _ = room
    sid = s["sessionId"]
    assert SSEStream(server.port, "/events").status == 400
    assert SSEStream(server.port, "/events?sessionId=nosuchsess").status == 404
    assert SSEStream(server.port, f"/events?sessionId={sid}").status == 401
    bad_role = SSEStream(server.port, f"/events?sessionId={sid}&actorType=janitor&token={s['displayToken']}")
    assert bad_role.status == 400
    # A participant cannot listen as the presenter, nor claim another participant's id.
    assert SSEStream(server.port, f"/events?sessionId={sid}&actorType=presenter&token={participant['participantToken']}").status == 403
    assert SSEStream(server.port, f"/events?sessionId={sid}&actorType=participant&actorId=someoneelse&token={participant['participantToken']}").status == 403
    # Over WebSocket the same refusals arrive as close codes 4000 + HTTP status, which a
    # browser can read (it cannot read the status of a refused handshake).
    for query, code in (({"sessionId": sid, "token": "pr.forged.AAAA"}, 4401), ({"sessionId": "nosuchsess"}, 4404),
                        ({"token": s["displayToken"]}, 4400),
                        ({"sessionId": sid, "actorType": "presenter", "token": participant["participantToken"]}, 4403)):
        refused = WSStream(server.events_url("ws", **query))
        assert refused.closed.wait(5)
        assert refused.close_code == code, query
        assert refused.queue.empty()


def test_garbage_on_the_socket_does_not_hurt_the_server(room):
    server, s, _, _ = room
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n")
        try:
            raw.recv(1024)
        except OSError:
            pass
    status, _, _ = server.request("GET", "/healthz")
    assert status == 200
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/readyz")
    assert conn.getresponse().status == 200


def test_server_logs_never_contain_tokens(room):
    server, s, participant, poll = room
    server.vote(s["sessionId"], poll["pollId"], participant["participantToken"], ["o1"])
    stream = SSEStream(server.port, f"/events?sessionId={s['sessionId']}&token={participant['participantToken']}")
    stream.close()
    logs = server.logs()
    assert "request" in logs
    for secret in (s["presenterToken"], s["displayToken"], participant["participantToken"], "correct horse"):
        assert secret not in logs


def test_cross_site_requests_riding_on_cookies_are_refused(server):
    s = server.new_session()
    status, body, resp = server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    me = f"http://127.0.0.1:{server.port}"
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    path = f"/api/v1/sessions/{s['sessionId']}/polls/{poll['pollId']}/votes"
    evil = {"Cookie": cookie, "Origin": "http://evil.example"}
    status, detail = problem(server, "POST", path, {"optionIds": ["o1"]}, headers=evil)
    assert status == 403 and "cross-site" in detail
    assert problem(server, "POST", path, {"optionIds": ["o1"]}, headers={"Cookie": cookie, "Origin": "null"})[0] == 403
    assert server.request("POST", path, {"optionIds": ["o1"]}, headers={"Cookie": cookie, "Origin": me})[0] == 201
    # A bearer-token client is not a browser riding on cookies: no Origin rule for it.
    assert server.request("POST", path, {"optionIds": ["o2"]}, token=body["participantToken"],
                          headers={"Origin": "http://evil.example"})[0] == 200
    # Cross-site WebSocket hijacking: refused with 4403; our own origin is fine.
    hijack = WSStream(server.events_url("ws", sessionId=s["sessionId"]), headers=evil)
    assert hijack.closed.wait(5) and hijack.close_code == 4403
    mine = WSStream(server.events_url("ws", sessionId=s["sessionId"]), headers={"Cookie": cookie, "Origin": me})
    server.ok("POST", f"/api/v1/sessions/{s['sessionId']}/polls/{poll['pollId']}/close", token=s["presenterToken"])
    # (The vote's coalesced poll.results may arrive first.)
    assert mine.collect(lambda e: e["eventType"] == "poll.closed")[-1]["payload"] == {"pollId": poll["pollId"]}
    mine.close()


def _join_from(server, source_ip, code):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source_ip, 0))
    conn.request("POST", "/api/v1/join", body=json.dumps({"joinCode": code}), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("Retry-After"), body


def test_guessing_join_codes_is_slowed_down_without_locking_out_the_room(server):
    s = server.new_session()
    wrong = "ZZZZZZ" if s["joinCode"] != "ZZZZZZ" else "YYYYYY"
    statuses = [_join_from(server, "127.0.0.9", wrong)[0] for _ in range(10)]
    assert statuses == [404] * 10
    status, retry_after, _ = _join_from(server, "127.0.0.9", wrong)
    assert status == 429 and int(retry_after) >= 1
    # Even the right code waits out the lockout from that address…
    assert _join_from(server, "127.0.0.9", s["joinCode"])[0] == 429
    # …while honest phones on other addresses join as usual.
    assert _join_from(server, "127.0.0.10", s["joinCode"])[0] == 201
    # Display pairing guesses count too.
    assert server.request("POST", "/api/v1/display/pair", {"joinCode": wrong})[0] in (404, 429)


def test_one_phone_voting_in_a_loop_is_rate_limited_alone(server):
    s = server.new_session()
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    flooder = server.join(s["joinCode"])["participantToken"]
    honest = server.join(s["joinCode"])["participantToken"]
    results = [server.vote(s["sessionId"], poll["pollId"], flooder, ["o1" if i % 2 else "o2"]) for i in range(40)]
    limited = [r for r in results if r[0] == 429]
    assert limited, "a phone voting 40 times in a burst is slowed down"
    assert limited[0][2].getheader("Retry-After") and "too fast" in limited[0][1]["detail"]
    assert server.vote(s["sessionId"], poll["pollId"], honest, ["o1"])[0] == 201, "others are unaffected"
