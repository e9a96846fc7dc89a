"""Quiz mode end to end: the server closes a question at `closesAt` on its own, scores it by the
server's clock, and sends each phone its own `quiz.score` (live over WebSocket and SSE, and on
replay) while every screen gets the same leaderboard; a kill -9 during a countdown or after it
changes neither the deadline nor a score; nicknames, rules and exports at the API."""

import csv
import io
import signal
import time
from datetime import datetime, timezone

from conftest import Server, SSEStream, WSStream


def new_quiz_session(server, nicknames="required"):
    return server.ok("POST", "/api/v1/sessions", {"title": "Pub quiz", "nicknames": nicknames}, server.operator_token(), expect=201)


def join(server, code, nickname=None):
    return server.request("POST", "/api/v1/join", {"joinCode": code, **({"nickname": nickname} if nickname is not None else {})})


def player(server, code, nickname):
    status, body, _ = join(server, code, nickname)
    assert status == 201, body
    return body["participantToken"]


def quiz_question(server, sid, presenter, correct=("o2",), seconds=5, kind="single", open=False, options=("Paris", "Lyon", "Nice")):
    body = {"question": "Capital of France?" if kind == "single" else "Which are French cities?", "options": list(options),
            "kind": kind, "quiz": {"correctOptionIds": list(correct), "timeLimitSeconds": seconds, "points": 1000}, "open": open}
    return server.request("POST", f"/api/v1/sessions/{sid}/polls", body, presenter)


def instant(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def types(events):
    return [e["eventType"] for e in events]


def leaderboard(server, sid, token):
    return server.ok("GET", f"/api/v1/sessions/{sid}/leaderboard", token=token)


def test_the_server_closes_on_time_and_each_phone_gets_only_its_own_score(server):
    s = new_quiz_session(server)
    sid, presenter, code = s["sessionId"], s["presenterToken"], s["joinCode"]

    # Nicknames: required, unique without regard to case, 1 to 20 characters.
    status, body, _ = join(server, code)
    assert status == 400 and body["type"] == "/problems/nickname-required"
    ada, bob, cy = (player(server, code, n) for n in ("Ada", "Bob", "Cy"))
    status, body, _ = join(server, code, "ADA")
    assert status == 409 and body["type"] == "/problems/nickname-taken" and "taken" in body["detail"]
    assert join(server, code, "x" * 21)[0] == 400
    assert join(server, code, "   ")[0] == 400

    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    screens = {
        "presenter": WSStream(server.events_url("ws", sessionId=sid, actorType="presenter", token=presenter, fromEventId=start)),
        "display": SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['displayToken']}&fromEventId={start}"),
    }
    phones = {
        "Ada": WSStream(server.events_url("ws", sessionId=sid, actorType="participant", token=ada, fromEventId=start)),
        "Bob": SSEStream(server.port, f"/events?sessionId={sid}&actorType=participant&token={bob}&fromEventId={start}"),
        "Cy": WSStream(server.events_url("ws", sessionId=sid, actorType="participant", token=cy, fromEventId=start)),
    }
    status, created, _ = quiz_question(server, sid, presenter, open=True)
    assert status == 201, created
    poll = created["pollId"]
    assert created["poll"]["quiz"]["correctOptionIds"] == ["o2"], "the presenter sees the right answer"
    opened = phones["Ada"].collect(lambda e: e["eventType"] == "poll.opened")[-1]["payload"]["poll"]
    assert "correctOptionIds" not in opened["quiz"], "the room does not learn the answer from poll.opened"
    closes_at = instant(opened["closesAt"])
    assert (closes_at - instant(opened["openedAt"])).total_seconds() == 5
    snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=bob)
    assert "correctOptionIds" not in snapshot["polls"][0]["poll"]["quiz"], "nor from the snapshot"

    assert server.vote(sid, poll, ada, ["o2"])[0] == 201
    assert server.vote(sid, poll, bob, ["o1"])[0] == 201
    status, body, _ = server.vote(sid, poll, ada, ["o1"])
    assert status == 409 and "final" in body["detail"], "the first answer counts"
    assert server.vote(sid, poll, cy, ["o2"])[0] == 201

    # Nobody closes it: the server does, at closesAt.
    done = lambda e: e["eventType"] == "quiz.leaderboard"
    seen = {name: stream.collect(done, timeout=15) for name, stream in {**screens, **phones}.items()}
    for name, got in seen.items():
        closed = next(e for e in got if e["eventType"] == "poll.closed")
        assert instant(closed["timestamp"]) >= closes_at, f"{name}: closed before closesAt"
        assert types(got)[-3:] == ["poll.closed", "quiz.results", "quiz.leaderboard"] or "quiz.score" not in types(got)
    boards = {name: next(e for e in got if e["eventType"] == "quiz.leaderboard")["payload"] for name, got in seen.items()}
    assert all(b == boards["presenter"] for b in boards.values()), "every screen shows the same leaderboard"
    entries = boards["presenter"]["entries"]
    assert [e["nickname"] for e in entries] == ["Ada", "Cy", "Bob"], "right answers first, the faster one ahead"
    # A point is 10 ms here: two quick answers may tie, and then share the rank (Ada, first to it, ahead).
    tie = entries[0]["score"] == entries[1]["score"]
    assert [e["rank"] for e in entries] == [1, 1 if tie else 2, 3] and entries[2]["score"] == 0
    assert 500 <= entries[1]["score"] <= entries[0]["score"] <= 1000
    assert boards["presenter"]["players"] == 3
    results = next(e for e in seen["display"] if e["eventType"] == "quiz.results")["payload"]
    assert results["correctOptionIds"] == ["o2"] and results["answered"] == 3 and results["correct"] == 2
    assert {c["optionId"]: c["count"] for c in results["results"]["counts"]} == {"o1": 1, "o2": 2, "o3": 0}

    # Each phone: its own score, nobody else's; the screens: none.
    for name in ("presenter", "display"):
        assert "quiz.score" not in types(seen[name] + screens[name].drain())
    mine = {}
    for name, stream in phones.items():
        scores = [e["payload"] for e in seen[name] + stream.drain() if e["eventType"] == "quiz.score"]
        assert len(scores) == 1, f"{name} got {len(scores)} scores"
        assert "participantId" not in scores[0]
        mine[name] = scores[0]
    by_name = {e["nickname"]: e for e in entries}
    for name, score in mine.items():
        assert (score["total"], score["rank"], score["players"]) == (by_name[name]["score"], by_name[name]["rank"], 3)
    assert mine["Bob"]["answered"] and not mine["Bob"]["correct"] and mine["Bob"]["points"] == 0
    assert mine["Ada"]["correct"] and mine["Ada"]["points"] == by_name["Ada"]["score"]

    # A ballot after the close: refused.
    status, body, _ = server.vote(sid, poll, cy, ["o1"])
    assert status == 409

    # The same leaderboard through the API; a participant gets the top and their own row.
    full = leaderboard(server, sid, presenter)
    assert full["entries"] == entries and "me" not in full
    assert leaderboard(server, sid, s["displayToken"])["entries"] == entries
    own = leaderboard(server, sid, bob)
    assert own["entries"] == entries and own["me"] == by_name["Bob"]
    snap = server.ok("GET", f"/api/v1/sessions/{sid}", token=bob)
    assert snap["leaderboard"]["me"] == by_name["Bob"] and snap["myNickname"] == "Bob"
    assert snap["polls"][0]["myQuiz"] == {"correct": False, "points": 0}
    assert snap["polls"][0]["poll"]["quiz"]["correctOptionIds"] == ["o2"], "the answer is everyone's once closed"

    # Replay from before the quiz: the same, and still only one's own score.
    replays = {
        "Ada": SSEStream(server.port, f"/events?sessionId={sid}&actorType=participant&token={ada}&fromEventId={start}"),
        "Bob": WSStream(server.events_url("ws", sessionId=sid, actorType="participant", token=bob, fromEventId=start)),
        "display": WSStream(server.events_url("ws", sessionId=sid, actorType="display", token=s["displayToken"], fromEventId=start)),
    }
    for name, stream in replays.items():
        got = stream.collect(done)
        scores = [e["payload"] for e in got + stream.drain() if e["eventType"] == "quiz.score"]
        assert scores == ([] if name == "display" else [mine[name]]), name
    for stream in [*screens.values(), *phones.values(), *replays.values()]:
        stream.close()


def test_a_multiple_choice_question_needs_exactly_the_right_set_and_the_presenter_may_close_early(server):
    s = new_quiz_session(server, nicknames="optional")
    sid, presenter = s["sessionId"], s["presenterToken"]
    tokens = [server.join(s["joinCode"])["participantToken"] for _ in range(3)]
    status, created, _ = quiz_question(server, sid, presenter, correct=("o1", "o3"), kind="multiple", seconds=60, open=True)
    assert status == 201, created
    poll = created["pollId"]
    server.vote(sid, poll, tokens[0], ["o3", "o1"])
    server.vote(sid, poll, tokens[1], ["o1"])
    server.vote(sid, poll, tokens[2], ["o1", "o2", "o3"])
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll}/close", {}, presenter)
    board = leaderboard(server, sid, presenter)
    assert [e["nickname"] for e in board["entries"]] == ["Player 1", "Player 2", "Player 3"]
    assert board["entries"][0]["score"] > 500 and [e["score"] for e in board["entries"][1:]] == [0, 0]
    assert [e["rank"] for e in board["entries"]] == [1, 2, 2], "ties share a rank"


def test_quiz_rules_at_the_api(server):
    s = new_quiz_session(server, nicknames="optional")
    sid, presenter = s["sessionId"], s["presenterToken"]
    bad = [
        ({"correctOptionIds": [], "timeLimitSeconds": 20}, "at least one"),
        ({"correctOptionIds": ["o9"], "timeLimitSeconds": 20}, "not an option"),
        ({"correctOptionIds": ["o1"], "timeLimitSeconds": 4}, "5 to 300"),
        ({"correctOptionIds": ["o1"], "timeLimitSeconds": 301}, "5 to 300"),
        ({"correctOptionIds": ["o1"], "timeLimitSeconds": 20, "points": 0}, "points"),
    ]
    for quiz, words in bad:
        status, body, _ = server.request("POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q?", "options": ["A", "B"], "quiz": quiz}, presenter)
        assert status == 400 and words in body["detail"], (quiz, body)
    status, body, _ = server.request(
        "POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q?", "kind": "scale", "scale": {"min": 1, "max": 5},
                                                 "quiz": {"correctOptionIds": ["o1"], "timeLimitSeconds": 20}}, presenter)
    assert status == 400 and "single and multiple" in body["detail"]

    status, created, _ = quiz_question(server, sid, presenter, seconds=60, open=True)
    poll = created["pollId"]
    assert created["poll"]["resultsVisibility"] == "hidden"
    status, body, _ = server.request("POST", f"/api/v1/sessions/{sid}/polls/{poll}/reveal", {}, presenter)
    assert status == 409 and "when it closes" in body["detail"]
    status, body, _ = server.request("POST", f"/api/v1/sessions/{sid}/leaderboard/reset", {}, presenter)
    assert status == 409 and "close it" in body["detail"]
    phone = server.join(s["joinCode"])["participantToken"]
    assert server.vote(sid, poll, phone, ["o2"])[0] == 201
    assert leaderboard(server, sid, presenter)["entries"][0]["score"] == 0, "points count once the question closes"
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll}/close", {}, presenter)
    assert leaderboard(server, sid, presenter)["entries"][0]["score"] > 0

    # Reset: a new round, everyone at zero, the reset on every screen.
    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    display = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['displayToken']}&fromEventId={start}")
    server.ok("POST", f"/api/v1/sessions/{sid}/leaderboard/reset", {}, presenter)
    got = display.collect(lambda e: e["eventType"] == "quiz.leaderboard")
    assert types(got) == ["quiz.reset", "quiz.leaderboard"] and got[-1]["payload"]["entries"][0]["score"] == 0
    assert got[-1]["payload"]["pollId"] is None, "a reset's leaderboard belongs to no question"
    assert leaderboard(server, sid, phone)["me"]["score"] == 0
    again = server.ok("POST", f"/api/v1/sessions/{sid}/leaderboard/reset", {}, presenter)
    assert again["eventId"] == server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"], "a second reset changes nothing"

    # The presenter's nickname setting, for joins from now on; the room's screens hear of it.
    assert server.ok("POST", f"/api/v1/sessions/{sid}/nicknames", {"nicknames": "required"}, presenter) == {"nicknames": "required"}
    changed = display.collect(lambda e: e["eventType"] == "session.nicknames")[-1]
    assert changed["payload"] == {"nicknames": "required"}
    display.close()
    assert join(server, s["joinCode"])[1]["type"] == "/problems/nickname-required"
    assert server.ok("POST", f"/api/v1/sessions/{sid}/nicknames", {"nicknames": "required"}, presenter) == {"nicknames": "required"}
    assert server.request("POST", f"/api/v1/sessions/{sid}/nicknames", {"nicknames": "loud"}, presenter)[0] == 400
    assert server.request("POST", f"/api/v1/sessions/{sid}/nicknames", {"nicknames": "optional"}, phone)[0] == 403


def test_a_kill_during_the_countdown_keeps_the_deadline_and_a_later_restart_keeps_the_scores(data_dir):
    server = Server(data_dir).start()
    s = new_quiz_session(server)
    sid, presenter = s["sessionId"], s["presenterToken"]
    ada, bob = player(server, s["joinCode"], "Ada"), player(server, s["joinCode"], "Bob")
    _, created, _ = quiz_question(server, sid, presenter, seconds=6, open=True)
    poll, closes_at = created["pollId"], instant(created["poll"]["closesAt"])
    assert server.vote(sid, poll, ada, ["o2"])[0] == 201
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    # Restarted before closesAt: still open, same deadline, and it closes on its own.
    server = Server(data_dir, port=server.port).start()
    snap = server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)
    assert snap["openPollId"] == poll and snap["polls"][0]["poll"]["closesAt"] == created["poll"]["closesAt"]
    display = WSStream(server.events_url("ws", sessionId=sid, actorType="display", token=s["displayToken"], fromEventId=snap["lastEventId"]))
    assert server.vote(sid, poll, bob, ["o2"])[0] == 201
    status, body, _ = server.vote(sid, poll, ada, ["o1"])
    assert status == 409 and "final" in body["detail"], "the answer given before the crash still counts"
    got = display.collect(lambda e: e["eventType"] == "quiz.leaderboard", timeout=15)
    closed = next(e for e in got if e["eventType"] == "poll.closed")
    assert instant(closed["timestamp"]) >= closes_at, (closed, created["poll"])
    display.close()
    before = leaderboard(server, sid, presenter)
    assert [e["nickname"] for e in before["entries"]] == ["Ada", "Bob"] and before["entries"][1]["score"] >= 500

    # A second question, killed mid-countdown, restarted after its closesAt: closed at once.
    _, second, _ = quiz_question(server, sid, presenter, seconds=5, open=True)
    assert server.vote(sid, second["pollId"], bob, ["o2"])[0] == 201
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    wait_until = instant(second["poll"]["closesAt"]).timestamp() + 0.5
    time.sleep(max(0, wait_until - time.time()))
    server = Server(data_dir, port=server.port).start()
    deadline = time.monotonic() + 10
    while server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter).get("openPollId") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter).get("openPollId") is None, "closed at start: its time had passed"
    after = leaderboard(server, sid, presenter)
    assert after["entries"][0]["nickname"] == "Bob" and after["entries"][0]["score"] > before["entries"][1]["score"]
    assert {e["nickname"]: e["score"] for e in after["entries"]}["Ada"] == before["entries"][0]["score"], "no earned score changed"

    # And once more, with nothing happening in between: the same leaderboard.
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server = Server(data_dir, port=server.port).start()
    assert leaderboard(server, sid, presenter) == after
    server.stop()


def test_the_quiz_export_has_every_player_and_answer(server):
    s = new_quiz_session(server)
    sid, presenter = s["sessionId"], s["presenterToken"]
    ada, bob = player(server, s["joinCode"], "Ada"), player(server, s["joinCode"], "=Bob")
    _, created, _ = quiz_question(server, sid, presenter, seconds=60, open=True)
    poll = created["pollId"]
    server.vote(sid, poll, ada, ["o2"])
    server.vote(sid, poll, bob, ["o3"])
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll}/close", {}, presenter)
    status, text, resp = server.request("GET", f"/api/v1/sessions/{sid}/quiz.csv", token=presenter)
    assert status == 200 and resp.getheader("Content-Type").startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["rank"], r["nickname"], r["answer"], r["correct"]) for r in rows] == [("1", "Ada", "Lyon", "yes"), ("2", "'=Bob", "Nice", "no")]
    assert int(rows[0]["points"]) == int(rows[0]["score"]) > 500 and 0 <= float(rows[0]["time_seconds"]) < 60
    document = server.ok("GET", f"/api/v1/sessions/{sid}/export.json", token=presenter)
    ranking = document["quiz"]["ranking"]
    assert [p["nickname"] for p in ranking] == ["Ada", "=Bob"]
    assert ranking[1]["answers"] == [{"pollId": poll, "optionIds": ["o3"], "answered": True, "correct": False, "timeMs": ranking[1]["answers"][0]["timeMs"], "points": 0, "counts": True}]
    assert server.request("GET", f"/api/v1/sessions/{sid}/quiz.csv", token=ada)[0] == 403
