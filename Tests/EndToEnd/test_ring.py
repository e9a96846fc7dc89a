"""The event ring at process level: resume after kill -9 over both transports, expiry, and
what /readyz says about how far replay reaches."""

import signal
import threading
import time

from conftest import Server, SSEStream, WSStream, seq


def test_after_kill_9_clients_resume_exactly_where_they_left(data_dir):
    server = Server(data_dir).start()
    s = server.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    mark = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    ws = WSStream(server.events_url("ws", sessionId=sid, token=presenter, fromEventId=mark))
    sse = SSEStream(server.port, f"/events?sessionId={sid}&token={presenter}&fromEventId={mark}")
    first = server.poll(sid, presenter, options=["a", "b"])
    ws_seen = ws.collect(lambda e: e["eventType"] == "poll.created")
    sse_seen = sse.collect(lambda e: e["eventType"] == "poll.created")
    assert ws_seen[-1]["payload"]["poll"]["id"] == first["pollId"] == sse_seen[-1]["payload"]["poll"]["id"]

    # The clients drop off; the presenter keeps working; the box is killed mid-burst.
    ws.close()
    sse.close()
    acked = []
    stop = threading.Event()

    def burst():
        while not stop.is_set():
            try:
                status, body, _ = server.request("POST", f"/api/v1/sessions/{sid}/polls",
                                                 {"question": "Q", "options": ["x", "y"]}, presenter)
            except OSError:
                return
            if status == 201:
                acked.append(body)

    t = threading.Thread(target=burst)
    t.start()
    while len(acked) < 20:
        time.sleep(0.005)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    stop.set()
    t.join()

    again = Server(data_dir, port=server.port).start()
    last = ws_seen[-1]["eventId"]
    ws2 = WSStream(again.events_url("ws", sessionId=sid, token=presenter, fromEventId=last))
    sse2 = SSEStream(again.port, f"/events?sessionId={sid}&token={presenter}", headers={"Last-Event-ID": last})
    for stream in (ws2, sse2):
        missed = stream.drain(0.5)
        assert missed and missed[0]["eventType"] != "stream.reset"
        ids = [seq(e["eventId"]) for e in missed]
        assert ids == sorted(set(ids)) and ids[0] > seq(last), "no duplicate of what was seen, in order"
        created = [e["payload"]["poll"]["id"] for e in missed if e["eventType"] == "poll.created"]
        acked_ids = [a["pollId"] for a in acked]
        assert created[:len(acked_ids)] == acked_ids, "every acknowledged poll is replayed, in order"
        assert len(created) <= len(acked_ids) + 1, "at most the one in flight at the kill is extra"
    # The replayed stream continues live.
    again.poll(sid, presenter, options=["live", "again"])
    ws2.collect(lambda e: e["eventType"] == "poll.created" and e["payload"]["poll"]["options"][0]["label"] == "live")
    ws2.close()
    sse2.close()
    again.stop()


def test_positions_older_than_the_retention_get_a_reset(data_dir):
    server = Server(data_dir, extra_args=["--retention-hours", "0.0005"]).start()  # 1.8 s
    s = server.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    old = server.poll(sid, presenter, options=["a", "b"])
    time.sleep(2.5)
    fresh = server.poll(sid, presenter, options=["c", "d"])
    ws = WSStream(server.events_url("ws", sessionId=sid, token=presenter, fromEventId=s["eventId"]))
    reset = ws.next()
    assert reset["eventType"] == "stream.reset"
    assert [p["poll"]["id"] for p in reset["payload"]["polls"]] == [old["pollId"], fresh["pollId"]]
    ws.close()
    ready = server.ok("GET", "/readyz")["ring"]
    assert ready["oldestEventId"] == fresh["eventId"]
    assert ready["retentionSeconds"] == 1
    server.stop()


def test_readyz_reports_how_far_back_replay_reaches(server):
    ring = server.ok("GET", "/readyz")["ring"]
    assert ring["sizeBytes"] == 8 << 20 and ring["retainedEvents"] == 0 and ring.get("oldestEventId") is None
    s = server.new_session()
    ring = server.ok("GET", "/readyz")["ring"]
    assert ring["retainedEvents"] == 1 and ring["oldestEventId"] == s["eventId"]
    assert ring["limitedByCapacity"] is False and 0 <= ring["oldestEventAgeSeconds"] < 60
