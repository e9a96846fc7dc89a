"""Replay from fromEventId / Last-Event-ID: no gap, no duplicate, same role filter; and
stream.reset when a position cannot be served."""

import threading

from conftest import SSEStream, WSStream, seq


def run_room(server, s, polls=3, voters=5):
    sid, presenter = s["sessionId"], s["presenterToken"]
    tokens = [server.join(s["joinCode"])["participantToken"] for _ in range(voters)]
    for i in range(polls):
        p = server.poll(sid, presenter, options=["a", "b", "c"], open=True,
                        resultsVisibility="hidden" if i == 1 else "live")
        for j, t in enumerate(tokens):
            server.vote(sid, p["pollId"], t, [["o1", "o2", "o3"][(i + j) % 3]])
    return tokens


def test_replay_equals_what_a_live_client_received(server):
    s = server.new_session()
    sid = s["sessionId"]
    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=s["presenterToken"])["lastEventId"]
    participant = server.join(s["joinCode"])
    live_ws = WSStream(server.events_url("ws", sessionId=sid, token=participant["participantToken"], fromEventId=start))
    run_room(server, s)
    last_poll = server.poll(s["sessionId"], s["presenterToken"], options=["end", "now"], open=True)
    live = live_ws.collect(lambda e: e["eventType"] == "poll.opened" and e["payload"]["poll"]["id"] == last_poll["pollId"])
    live += live_ws.drain()

    replay_ws = WSStream(server.events_url("ws", sessionId=sid, token=participant["participantToken"], fromEventId=start))
    replay_sse = SSEStream(server.port, f"/events?sessionId={sid}&token={participant['participantToken']}",
                           headers={"Last-Event-ID": start})
    strip = lambda events: [(e["eventId"], e["eventType"], e["payload"]) for e in events]
    assert strip(replay_ws.collect(lambda e: e["eventId"] == live[-1]["eventId"])) == strip(live)
    assert strip(replay_sse.collect(lambda e: e["eventId"] == live[-1]["eventId"])) == strip(live)
    # The participant filter applied to replay exactly as live: no hidden counts before reveal.
    hidden_results = [e for e in live if e["eventType"] == "poll.results" and e["payload"]["pollId"] not in
                      {x["payload"]["poll"]["id"] for x in live if x["eventType"] == "poll.opened"
                       and x["payload"]["poll"]["resultsVisibility"] == "live"}]
    assert hidden_results == []
    for stream in (live_ws, replay_ws, replay_sse):
        stream.close()


def test_no_gap_or_duplicate_when_subscribing_during_a_burst(server):
    s = server.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    done = threading.Event()

    def burst():
        for i in range(30):
            server.poll(sid, presenter, options=[f"a{i}", f"b{i}"])  # drafts: presenter-only events
        done.set()

    threading.Thread(target=burst).start()
    streams = []
    while not done.is_set():  # subscribe repeatedly while events are being appended
        streams.append(WSStream(server.events_url("ws", sessionId=sid, token=presenter, fromEventId=start)))
    done.wait()
    final = server.poll(sid, presenter, options=["last", "one"])
    for stream in streams:
        got = stream.collect(lambda e: e["payload"].get("poll", {}).get("id") == final["pollId"], timeout=10)
        ids = [seq(e["eventId"]) for e in got]
        assert len(ids) == 31 and ids == sorted(set(ids)), "every poll.created exactly once, in order"
        stream.close()


def test_positions_that_cannot_be_served_get_a_reset_snapshot(server):
    s = server.new_session()
    sid = s["sessionId"]
    participant = server.join(s["joinCode"])
    server.poll(sid, s["presenterToken"], open=True)
    for position in ("deadbeef-3", "garbage", "0-0", f"{s['eventId'].split('-')[0]}-999999"):
        ws = WSStream(server.events_url("ws", sessionId=sid, token=participant["participantToken"], fromEventId=position))
        reset = ws.next()
        assert reset["eventType"] == "stream.reset", position
        snapshot = reset["payload"]
        assert snapshot["role"] == "participant" and snapshot["sessionId"] == sid
        assert snapshot["polls"][0]["poll"]["state"] == "open"
        assert snapshot["lastEventId"] == reset["eventId"]
        ws.close()
    # ...and the stream continues live after the reset.
    ws = WSStream(server.events_url("ws", sessionId=sid, token=participant["participantToken"], fromEventId="garbage"))
    poll_id = ws.next()["payload"]["polls"][0]["poll"]["id"]
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll_id}/close", token=s["presenterToken"])
    closed = ws.next()
    assert closed["eventType"] == "poll.closed" and closed["payload"]["pollId"] == poll_id
    ws.close()
    sse = SSEStream(server.port, f"/events?sessionId={sid}&token={participant['participantToken']}",
                    headers={"Last-Event-ID": "from-another-box"})
    assert sse.status == 200, "never an HTTP error: EventSource would stop reconnecting"
    assert sse.next()["eventType"] == "stream.reset"
    sse.close()
