"""The whole room over both transports: presenter, display and participants follow one
session while polls are created, opened, voted on, changed, closed and revealed."""

from conftest import SSEStream, WSStream, seq


def types(envelopes):
    return [e["eventType"] for e in envelopes]


def check_envelope(env, session_id):
    assert set(k for k in env if not k.startswith("_")) == {"eventId", "eventType", "timestamp", "sessionId", "payload"}
    assert env["sessionId"] == session_id
    assert env["timestamp"].endswith("Z") and "T" in env["timestamp"]


def test_full_flow_over_websocket_and_sse(server):
    s = server.new_session("Quarterly all-hands")
    sid, presenter, display = s["sessionId"], s["presenterToken"], s["displayToken"]
    assert len(s["joinCode"]) == 6

    snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)
    start = snapshot["lastEventId"]

    presenter_ws = WSStream(server.events_url("ws", sessionId=sid, actorType="presenter", token=presenter, fromEventId=start))
    display_sse = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={display}&fromEventId={start}")
    assert display_sse.status == 200

    alice = server.join(s["joinCode"])
    bob = server.join(s["joinCode"].lower())  # codes are case-insensitive
    alice_ws = WSStream(server.events_url("ws", sessionId=sid, actorType="participant", actorId=alice["participantId"],
                                          token=alice["participantToken"], fromEventId=start))
    bob_sse = SSEStream(server.port, f"/events?sessionId={sid}&actorType=participant&token={bob['participantToken']}&fromEventId={start}")

    # A draft (presenter only), then a live poll opened at once, then a hidden one.
    draft = server.poll(sid, presenter, options=["Later", "Never"])
    live = server.poll(sid, presenter, options=["Pizza", "Salad", "Soup"], open=True)
    status, ack, _ = server.vote(sid, live["pollId"], alice["participantToken"], ["o1"])
    assert status == 201 and ack["replaced"] is False
    status, _, _ = server.vote(sid, live["pollId"], bob["participantToken"], ["o1"])
    assert status == 201
    status, ack, _ = server.vote(sid, live["pollId"], alice["participantToken"], ["o2"])  # change of mind
    assert status == 200 and ack["replaced"] is True

    final = lambda e: e["eventType"] == "poll.results" and [c["count"] for c in e["payload"]["counts"]] == [1, 1, 0]
    display_events = display_sse.collect(final)
    presenter_events = presenter_ws.collect(final)
    alice_events = alice_ws.collect(final)
    bob_events = bob_sse.collect(final)

    for stream in (display_events, presenter_events, alice_events, bob_events):
        for env in stream:
            check_envelope(env, sid)
        ids = [seq(e["eventId"]) for e in stream]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "strictly increasing eventIds"
        assert stream[-1]["payload"]["totalBallots"] == 2

    # Drafts and join counts only where they belong; ballots never travel.
    assert "poll.created" in types(presenter_events)
    assert "poll.created" not in types(display_events) + types(alice_events) + types(bob_events)
    assert "participant.joined" in types(display_events) and "participant.joined" not in types(alice_events)
    assert all("participantId" not in e["payload"] for e in presenter_events if e["eventType"] == "participant.joined")
    assert "ballot.cast" not in types(presenter_events) + types(display_events) + types(alice_events)
    opened = next(e for e in alice_events if e["eventType"] == "poll.opened")
    assert opened["payload"]["poll"]["question"] == "Ship it?"
    assert [o["label"] for o in opened["payload"]["poll"]["options"]] == ["Pizza", "Salad", "Soup"]

    # SSE frames carry id: and event:
    assert all(e["_sse_id"] == e["eventId"] and e["_sse_event"] == e["eventType"] for e in display_events)

    # Hidden poll: counts reach only the presenter until reveal; the room (display and
    # participants) gets the ballot count.
    hidden = server.poll(sid, presenter, options=["A", "B"], open=True, resultsVisibility="hidden")
    assert server.vote(sid, hidden["pollId"], bob["participantToken"], ["o2"])[0] == 201
    turnout = display_sse.collect(lambda e: e["eventType"] == "poll.ballots" and e["payload"]["pollId"] == hidden["pollId"])
    assert turnout[-1]["payload"] == {"pollId": hidden["pollId"], "totalBallots": 1}
    assert not [e for e in turnout if e["eventType"] == "poll.results" and e["payload"]["pollId"] == hidden["pollId"]]
    presenter_ws.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["pollId"] == hidden["pollId"])
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{hidden['pollId']}/close", token=presenter)
    alice_before = alice_ws.collect(lambda e: e["eventType"] == "poll.closed" and e["payload"]["pollId"] == hidden["pollId"])
    assert not [e for e in alice_before if e["eventType"] == "poll.results" and e["payload"]["pollId"] == hidden["pollId"]]
    snap = server.ok("GET", f"/api/v1/sessions/{sid}", token=alice["participantToken"])
    assert next(p for p in snap["polls"] if p["poll"]["id"] == hidden["pollId"]).get("results") is None

    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{hidden['pollId']}/reveal", token=presenter)
    revealed = alice_ws.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["pollId"] == hidden["pollId"])
    assert "poll.revealed" in types(revealed)
    assert [c["count"] for c in revealed[-1]["payload"]["counts"]] == [0, 1]
    bob_sse.collect(lambda e: e["eventType"] == "poll.revealed")

    # Ending the session reaches everyone.
    server.ok("POST", f"/api/v1/sessions/{sid}/end", token=presenter)
    for stream in (presenter_ws, display_sse, alice_ws, bob_sse):
        stream.collect(lambda e: e["eventType"] == "session.ended")

    # The presenter saw the draft; participants never did.
    assert any(p["poll"]["id"] == draft["pollId"] for p in server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["polls"])
    assert not any(p["poll"]["id"] == draft["pollId"] for p in server.ok("GET", f"/api/v1/sessions/{sid}", token=bob["participantToken"])["polls"])

    for stream in (presenter_ws, alice_ws, display_sse, bob_sse):
        stream.close()


def test_a_burst_of_votes_is_coalesced_but_the_last_count_always_arrives(server):
    s = server.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)
    voters = [server.join(s["joinCode"])["participantToken"] for _ in range(40)]
    poll = server.poll(sid, presenter, options=["A", "B"], open=True)
    display = WSStream(server.events_url("ws", sessionId=sid, token=s["displayToken"], actorType="display",
                                         fromEventId=snapshot["lastEventId"]))
    for i, token in enumerate(voters):
        assert server.vote(sid, poll["pollId"], token, ["o1" if i % 4 else "o2"])[0] == 201
    events = display.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 40)
    results = [e for e in events if e["eventType"] == "poll.results"]
    assert [c["count"] for c in results[-1]["payload"]["counts"]] == [30, 10]
    assert len(results) < 40, "results are coalesced, not one event per ballot"
    assert not [e for e in display.drain(0.3) if e["eventType"] == "poll.results"], "nothing after the final count"
    display.close()


def test_display_can_follow_with_the_join_code(server):
    s = server.new_session()
    sid = s["sessionId"]
    snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=s["presenterToken"])
    screen = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['joinCode']}&fromEventId={snapshot['lastEventId']}")
    assert screen.status == 200
    server.join(s["joinCode"])
    env = screen.collect(lambda e: e["eventType"] == "participant.joined")[-1]
    assert env["payload"] == {"participantCount": 1}
    screen.close()


def test_rejoining_keeps_the_same_identity_and_ballot(server):
    s = server.new_session()
    first = server.join(s["joinCode"])
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    assert server.vote(s["sessionId"], poll["pollId"], first["participantToken"], ["o2"])[0] == 201
    status, again, _ = server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]}, token=first["participantToken"])
    assert status == 200 and again["participantId"] == first["participantId"]
    snap = server.ok("GET", f"/api/v1/sessions/{s['sessionId']}", token=again["participantToken"])
    assert snap["polls"][0]["myBallot"] == ["o2"]


def test_browser_cookies_are_httponly_and_samesite_strict(server):
    s = server.new_session()
    status, body, resp = server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})
    cookie = resp.getheader("Set-Cookie")
    assert status == 201
    assert cookie.startswith(f"tally_pa_{s['sessionId']}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on the venue Wi-Fi: a Secure cookie would never come back
    # The cookie alone authorizes the participant (what a browser sends).
    value = cookie.split(";")[0]
    status, snap, _ = server.request("GET", f"/api/v1/sessions/{s['sessionId']}", headers={"Cookie": value})
    assert status == 200 and snap["role"] == "participant" and snap["participantId"] == body["participantId"]


def test_cookies_are_secure_when_the_public_url_is_https(data_dir):
    from conftest import Server
    server = Server(data_dir, extra_args=["--public-url", "https://tally.example.lan"]).start()
    try:
        s = server.new_session()
        status, _, resp = server.request("POST", "/api/v1/join", {"joinCode": s["joinCode"]})
        assert status == 201
        assert resp.getheader("Set-Cookie").endswith("; Secure")
    finally:
        server.stop()
