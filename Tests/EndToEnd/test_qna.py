"""Audience Q&A end to end: questions from the room, upvotes, moderation and the highlight, with
role filtering on every path (live, replay, snapshot), coalesced upvote counts, exports, and no
acknowledged question or upvote lost to kill -9."""

import csv
import io
import signal
import threading
import time

from conftest import Server, SSEStream, WSStream


def qna(server, sid, token, action, body=None, expect=200):
    return server.ok("POST", f"/api/v1/sessions/{sid}/qna/{action}", body if body is not None else {}, token, expect=expect)


def ask(server, sid, token, text, name=None):
    body = {"text": text, **({"name": name} if name is not None else {})}
    return server.request("POST", f"/api/v1/sessions/{sid}/questions", body, token)


def upvote(server, sid, qid, token, on=True):
    return server.request("POST" if on else "DELETE", f"/api/v1/sessions/{sid}/questions/{qid}/upvote", {} if on else None, token)


def moderate(server, sid, qid, token, action):
    return server.request("POST", f"/api/v1/sessions/{sid}/questions/{qid}/{action}", {}, token)


def board(server, sid, token, order=None):
    return server.ok("GET", f"/api/v1/sessions/{sid}" + (f"?order={order}" if order else ""), token=token)["qna"]


def streams(server, s, participant_token):
    sid = s["sessionId"]
    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=s["presenterToken"])["lastEventId"]
    presenter = WSStream(server.events_url("ws", sessionId=sid, actorType="presenter", token=s["presenterToken"], fromEventId=start))
    display = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['displayToken']}&fromEventId={start}")
    phone = WSStream(server.events_url("ws", sessionId=sid, actorType="participant", token=participant_token, fromEventId=start))
    return presenter, display, phone, start


def types(events):
    return [e["eventType"] for e in events]


def test_questions_upvotes_and_the_highlight_reach_the_room(server):
    s = server.new_session("Town hall Q&A")
    sid, presenter = s["sessionId"], s["presenterToken"]
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(4)]
    ws, sse, phone, _ = streams(server, s, people[3])
    assert board(server, sid, people[0])["state"] == "off"
    status, body, _ = ask(server, sid, people[0], "Too early?")
    assert status == 409 and "not opened Q&A" in body["detail"]
    qna(server, sid, presenter, "open", {"moderation": "post", "anonymous": False})
    status, first, _ = ask(server, sid, people[0], "  When   do we ship v2? ", name="Ana")
    assert status == 201 and first["question"]["text"] == "When do we ship v2?" and first["question"]["mine"] is True
    status, second, _ = ask(server, sid, people[1], "Will there be pizza?")
    assert status == 201
    q1, q2 = first["questionId"], second["questionId"]

    # Upvotes: idempotent, not on one's own question, taken back with DELETE.
    for token in people[1:]:
        status, ack, _ = upvote(server, sid, q1, token)
        assert status == 200 and ack["upvoted"] is True
    again = upvote(server, sid, q1, people[1])
    assert again[0] == 200 and again[1]["upvotes"] == 3, "a repeated upvote changes nothing"
    own = upvote(server, sid, q1, people[0])
    assert own[0] == 409 and "your own question" in own[1]["detail"]
    assert upvote(server, sid, q2, people[2])[0] == 200
    assert upvote(server, sid, q2, people[2], on=False)[1]["upvotes"] == 0
    assert upvote(server, sid, q2, people[2], on=False)[0] == 200

    counts = lambda e: e["eventType"] == "question.upvotes" and {"questionId": q1, "upvotes": 3} in e["payload"]["counts"]
    for stream in (ws, sse, phone):
        got = stream.collect(counts)
        assert {"qna.opened", "question.asked", "question.upvotes"} <= set(types(got))
        assert "question.upvoted" not in types(got), "single upvotes never travel"
        asked = [e["payload"]["question"] for e in got if e["eventType"] == "question.asked"]
        assert asked[0]["name"] == "Ana" and "author" not in asked[0] and "participantId" not in str(asked)

    top = board(server, sid, people[3])
    assert [(q["text"], q["upvotes"]) for q in top["questions"]] == [("When do we ship v2?", 3), ("Will there be pizza?", 0)]
    assert top["questions"][0]["upvotedByMe"] is True and "mine" not in top["questions"][0]
    assert [q["questionId"] for q in board(server, sid, people[3], "newest")["questions"]] == [q2, q1]
    assert server.request("GET", f"/api/v1/sessions/{sid}?order=best", token=people[3])[0] == 400

    # The presenter highlights, then marks answered (which un-highlights); one highlight at a time.
    assert moderate(server, sid, q1, presenter, "highlight")[0] == 200
    assert moderate(server, sid, q2, presenter, "highlight")[0] == 200
    assert [q["highlighted"] for q in board(server, sid, s["displayToken"])["questions"]] == [False, True]
    assert moderate(server, sid, q2, presenter, "answered")[0] == 200
    view = board(server, sid, s["displayToken"])
    assert not any(q["highlighted"] for q in view["questions"]) and view["questions"][1]["state"] == "answered"
    got = sse.collect(lambda e: e["eventType"] == "question.answered")
    assert [e["payload"] for e in got if e["eventType"] == "question.highlighted"][-1] == {"questionId": q2}
    assert moderate(server, sid, q2, people[0], "highlight")[0] == 403, "only the presenter moderates"
    # Withdrawing one's own question takes it off every list.
    assert server.request("DELETE", f"/api/v1/sessions/{sid}/questions/{q1}", None, people[1])[0] == 404
    assert server.request("DELETE", f"/api/v1/sessions/{sid}/questions/{q1}", None, people[0])[0] == 200
    assert sse.collect(lambda e: e["eventType"] == "question.withdrawn")[-1]["payload"] == {"questionId": q1}
    assert [q["questionId"] for q in board(server, sid, presenter)["questions"]] == [q2]
    qna(server, sid, presenter, "close")
    status, body, _ = ask(server, sid, people[2], "Late one")
    assert status == 409 and "closed" in body["detail"]
    for stream in (ws, sse, phone):
        stream.close()


def test_pre_moderation_keeps_pending_questions_from_the_room_on_every_path(server):
    s = server.new_session("Moderated")
    sid, presenter = s["sessionId"], s["presenterToken"]
    author, other = server.join(s["joinCode"])["participantToken"], server.join(s["joinCode"])["participantToken"]
    ws, sse, phone, start = streams(server, s, other)
    qna(server, sid, presenter, "open", {"moderation": "pre", "anonymous": True})
    status, body, _ = ask(server, sid, author, "Why was the budget cut?", name="Bo")
    assert status == 400 and "anonymous" in body["detail"]
    status, pending, _ = ask(server, sid, author, "Why was the budget cut?")
    assert status == 201 and pending["question"]["state"] == "pending"
    qid = pending["questionId"]
    # The author sees their own question as pending; the room sees nothing; the presenter sees it.
    assert [(q["state"], q.get("mine")) for q in board(server, sid, author)["questions"]] == [("pending", True)]
    assert board(server, sid, other)["questions"] == [] and board(server, sid, s["displayToken"])["questions"] == []
    presenter_view = board(server, sid, presenter)
    assert presenter_view["pendingCount"] == 1 and presenter_view["questions"][0]["text"] == "Why was the budget cut?"
    assert upvote(server, sid, qid, other)[0] == 404, "a pending question cannot be found by the room"
    got = ws.collect(lambda e: e["eventType"] == "question.asked")
    assert got[-1]["payload"]["question"]["state"] == "pending"
    # Replay from the start, over both transports, for the room: no pending text anywhere.
    late_sse = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['displayToken']}&fromEventId={start}")
    late_ws = WSStream(server.events_url("ws", sessionId=sid, actorType="participant", token=other, fromEventId=start))
    for stream in (sse, phone, late_sse, late_ws):
        seen = stream.drain()
        assert "question.asked" not in types(seen) and "budget" not in str(seen)
    # stream.reset (an unusable position) carries the role's snapshot: still nothing pending.
    reset = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['displayToken']}&fromEventId=junk")
    assert reset.next()["payload"]["qna"]["questions"] == []
    # Approved: it reaches the room whole, at once.
    assert moderate(server, sid, qid, presenter, "approve")[0] == 200
    shown = sse.collect(lambda e: e["eventType"] == "question.approved")[-1]["payload"]["question"]
    assert shown["text"] == "Why was the budget cut?" and shown["state"] == "visible"
    assert moderate(server, sid, qid, presenter, "approve")[0] == 409
    assert moderate(server, sid, qid, presenter, "hide")[0] == 200
    assert sse.collect(lambda e: e["eventType"] == "question.hidden")[-1]["payload"] == {"questionId": qid}
    assert board(server, sid, other)["questions"] == []
    assert moderate(server, sid, qid, presenter, "unhide")[0] == 200
    assert board(server, sid, other)["questions"][0]["state"] == "visible"
    for stream in (ws, sse, phone, late_sse, late_ws, reset):
        stream.close()


def test_the_blocklist_applies_to_questions_and_names(data_dir):
    import os
    path = os.path.join(data_dir, "blocklist.txt")
    with open(path, "w") as f:
        f.write("idiot\n")
    server = Server(data_dir, extra_args=["--blocklist", path]).start()
    try:
        s = server.new_session("Blocked")
        sid, presenter = s["sessionId"], s["presenterToken"]
        author, other = server.join(s["joinCode"])["participantToken"], server.join(s["joinCode"])["participantToken"]
        qna(server, sid, presenter, "open", {"anonymous": False})
        status, asked, _ = ask(server, sid, author, "Who planned this, an IDIOT?")
        assert status == 201 and asked["question"]["state"] == "visible", "looks accepted to its author"
        assert ask(server, sid, other, "Fair question", name="idiot")[0] == 201
        assert board(server, sid, other)["questions"] == [q for q in board(server, sid, other)["questions"] if q.get("mine")]
        marked = board(server, sid, presenter)["questions"]
        assert len(marked) == 2 and all(q["blocked"] and q["state"] == "hidden" for q in marked)
    finally:
        server.stop()


def test_limits_on_asking(server):
    s = server.new_session("Limits")
    sid, presenter = s["sessionId"], s["presenterToken"]
    token = server.join(s["joinCode"])["participantToken"]
    qna(server, sid, presenter, "open")
    assert ask(server, sid, token, "x" * 281)[1]["detail"] == "the question is longer than 280 characters"
    assert ask(server, sid, token, "   ")[1]["detail"] == "the question is empty"
    assert ask(server, sid, token, "A real one")[0] == 201
    # Three attempts a minute, refused ones included (a script cannot probe for free).
    status, body, resp = ask(server, sid, token, "One too many")
    assert status == 429 and "3 questions a minute" in body["detail"] and int(resp.getheader("Retry-After")) > 0


def test_exports_carry_the_questions(server):
    s = server.new_session("Export")
    sid, presenter = s["sessionId"], s["presenterToken"]
    a, b = server.join(s["joinCode"])["participantToken"], server.join(s["joinCode"])["participantToken"]
    qna(server, sid, presenter, "open")
    qid = ask(server, sid, a, "=HYPERLINK(\"x\")")[1]["questionId"]
    assert upvote(server, sid, qid, b)[0] == 200
    rows = [r for r in csv.DictReader(io.StringIO(server.request("GET", f"/api/v1/sessions/{sid}/export.csv", token=presenter)[1]))
            if r["kind"] == "question"]
    assert [(r["question"], r["votes"], r["state"]) for r in rows] == [("'=HYPERLINK(\"x\")", "1", "visible")]
    assert rows[0]["asked_at"].endswith("Z")
    doc = server.ok("GET", f"/api/v1/sessions/{sid}/export.json", token=presenter)
    assert [(q["text"], q["upvotes"], q["state"]) for q in doc["questions"]] == [("=HYPERLINK(\"x\")", 1, "visible")]


def test_no_acknowledged_question_or_upvote_is_lost_to_kill_9(data_dir):
    server = Server(data_dir).start()
    s = server.new_session("Crash")
    sid, presenter = s["sessionId"], s["presenterToken"]
    qna(server, sid, presenter, "open")
    asker = server.join(s["joinCode"])["participantToken"]
    questions = [ask(server, sid, asker, f"Question {i}")[1]["questionId"] for i in range(3)]
    voters = [server.join(s["joinCode"])["participantToken"] for _ in range(60)]
    acknowledged, lock = set(), threading.Lock()

    def burst(tokens):
        for i, token in enumerate(tokens):
            qid = questions[i % 3]
            try:
                status, _, _ = upvote(server, sid, qid, token)
            except OSError:
                return  # the server died under us: not acknowledged
            if status == 200:
                with lock:
                    acknowledged.add((qid, token))

    threads = [threading.Thread(target=burst, args=(voters[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while True:  # kill in the middle of the burst
        with lock:
            if len(acknowledged) >= 15:
                break
        time.sleep(0.002)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    for t in threads:
        t.join()

    again = Server(data_dir, port=server.port).start()
    try:
        for qid, token in acknowledged:
            mine = next(q for q in board(again, sid, token)["questions"] if q["questionId"] == qid)
            assert mine.get("upvotedByMe") is True
        counts = {q["questionId"]: q["upvotes"] for q in board(again, sid, presenter)["questions"]}
        for qid in questions:
            assert counts[qid] >= sum(1 for q, _ in acknowledged if q == qid)
        # A graceful restart (from the projection) shows exactly the same board.
        before = board(again, sid, presenter)
        assert again.stop() == 0
        third = Server(data_dir, port=server.port).start()
        assert board(third, sid, presenter) == before
        third.stop()
    finally:
        again.stop()
