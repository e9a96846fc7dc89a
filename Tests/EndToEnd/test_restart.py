"""What survives a restart, a kill -9 mid-burst, and a graceful stop with clients attached."""

import signal
import threading
import time

from conftest import Server, SSEStream, WSStream, seq


def test_sessions_polls_and_ballots_survive_a_restart(data_dir):
    server = Server(data_dir).start()
    s = server.new_session("Survives")
    sid, presenter = s["sessionId"], s["presenterToken"]
    voters = [server.join(s["joinCode"]) for _ in range(3)]
    closed = server.poll(sid, presenter, options=["a", "b"], open=True)
    for v in voters:
        assert server.vote(sid, closed["pollId"], v["participantToken"], ["o2"])[0] == 201
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{closed['pollId']}/close", token=presenter)
    live = server.poll(sid, presenter, options=["x", "y", "z"], open=True)
    assert server.vote(sid, live["pollId"], voters[0]["participantToken"], ["o3"])[0] == 201
    # The vote's coalesced poll.results follows it by a moment: snapshot once it has landed.
    before, deadline = None, time.monotonic() + 5
    while time.monotonic() < deadline:
        snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)
        if snapshot == before:
            break
        before = snapshot
        time.sleep(0.2)
    assert server.stop() == 0

    again = Server(data_dir, port=server.port).start()
    after = again.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)  # old tokens still valid
    assert after == before
    assert [c["count"] for c in after["polls"][0]["results"]["counts"]] == [0, 3]
    assert after["openPollId"] == live["pollId"] and after["participantCount"] == 3
    # The session keeps working: the old participant token votes, the join code still joins.
    assert again.vote(sid, live["pollId"], voters[1]["participantToken"], ["o1"])[0] == 201
    assert again.join(s["joinCode"])["sessionId"] == sid
    mine = again.ok("GET", f"/api/v1/sessions/{sid}", token=voters[0]["participantToken"])
    assert next(p for p in mine["polls"] if p["poll"]["id"] == live["pollId"])["myBallot"] == ["o3"]
    again.stop()


def test_no_acknowledged_vote_is_lost_when_the_process_is_killed(data_dir):
    server = Server(data_dir).start()
    s = server.new_session("Crash")
    sid = s["sessionId"]
    poll = server.poll(sid, s["presenterToken"], options=["a", "b"], open=True)
    voters = [server.join(s["joinCode"])["participantToken"] for _ in range(60)]
    acknowledged = {}
    lock = threading.Lock()

    def vote(tokens, option):
        for token in tokens:
            try:
                status, _, _ = server.vote(sid, poll["pollId"], token, [option])
            except OSError:
                return  # the server died under us: this vote was never acknowledged
            if status in (200, 201):
                with lock:
                    acknowledged[token] = option

    threads = [threading.Thread(target=vote, args=(voters[i::4], "o1" if i % 2 else "o2")) for i in range(4)]
    for t in threads:
        t.start()
    while True:  # kill mid-burst: after some votes are acknowledged, before all are
        with lock:
            if len(acknowledged) >= 15:
                break
        time.sleep(0.002)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    for t in threads:
        t.join()

    again = Server(data_dir, port=server.port).start()
    for token, option in acknowledged.items():
        view = again.ok("GET", f"/api/v1/sessions/{sid}", token=token)
        assert view["polls"][0]["myBallot"] == [option]
    results = again.ok("GET", f"/api/v1/sessions/{sid}", token=s["presenterToken"])["polls"][0]["results"]
    assert results["totalBallots"] >= len(acknowledged)
    again.stop()


def test_sigterm_ends_every_stream_and_exits_quickly(server):
    s = server.new_session()
    sid = s["sessionId"]
    streams_ws = [WSStream(server.events_url("ws", sessionId=sid, token=s["displayToken"])) for _ in range(5)]
    streams_sse = [SSEStream(server.port, f"/events?sessionId={sid}&token={s['displayToken']}") for _ in range(5)]
    time.sleep(0.2)
    assert server.ok("GET", "/readyz")["streams"] == 10
    started = time.monotonic()
    code = server.stop(signal.SIGTERM, timeout=15)
    elapsed = time.monotonic() - started
    assert code == 0, server.logs()
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    for ws in streams_ws:
        assert ws.closed.wait(2)
        assert ws.close_code == 1001, "going away"
    for sse in streams_sse:
        assert sse.ended.wait(2)


def test_replay_after_restart_resumes_exactly_where_the_client_left(data_dir):
    server = Server(data_dir).start()
    s = server.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    mark = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    display = WSStream(server.events_url("ws", sessionId=sid, token=s["displayToken"], fromEventId=mark))
    p1 = server.poll(sid, presenter, open=True)
    seen = display.collect(lambda e: e["eventType"] == "poll.opened")
    last_seen = seen[-1]["eventId"]
    display.close()
    # While the display is away: more happens, then the server restarts.
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{p1['pollId']}/close", token=presenter)
    p2 = server.poll(sid, presenter, options=["c", "d"], open=True)
    server.stop()
    again = Server(data_dir, port=server.port).start()
    back = WSStream(again.events_url("ws", sessionId=sid, token=s["displayToken"], fromEventId=last_seen))
    missed = back.collect(lambda e: e["eventType"] == "poll.opened")
    assert [e["eventType"] for e in missed] == ["poll.closed", "poll.opened"]
    assert missed[1]["payload"]["poll"]["id"] == p2["pollId"]
    assert seq(missed[0]["eventId"]) > seq(last_seen)
    back.close()
    again.stop()
