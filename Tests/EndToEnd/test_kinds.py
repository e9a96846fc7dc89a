"""The four written and ordered kinds — scale, ranking, word cloud, open text — end to end: results
over WebSocket and SSE, replacement, hidden → reveal, moderation that hides at once, the blocklist,
bounded results, exports, and no acknowledged ballot lost to kill -9."""

import csv
import io
import json
import os
import signal
import time

import pytest

from conftest import Server, SSEStream, WSStream


def make_poll(server, sid, presenter, kind, question="How was it?", options=(), **extra):
    body = {"question": question, "kind": kind, "open": True, **extra}
    if options:
        body["options"] = list(options)
    return server.ok("POST", f"/api/v1/sessions/{sid}/polls", body, presenter, expect=201)


def ballot(server, sid, poll_id, token, body):
    return server.request("POST", f"/api/v1/sessions/{sid}/polls/{poll_id}/votes", body, token)


def results_of(server, sid, poll_id, token):
    view = server.ok("GET", f"/api/v1/sessions/{sid}", token=token)
    return next(p for p in view["polls"] if p["poll"]["id"] == poll_id)


def last_results(events, poll_id):
    got = [e["payload"] for e in events if e["eventType"] == "poll.results" and e["payload"]["pollId"] == poll_id]
    return got[-1] if got else None


def streams(server, s):
    """A presenter over WebSocket and a display over SSE, from the start of the session."""
    sid = s["sessionId"]
    start = server.ok("GET", f"/api/v1/sessions/{sid}", token=s["presenterToken"])["lastEventId"]
    presenter = WSStream(server.events_url("ws", sessionId=sid, actorType="presenter", token=s["presenterToken"], fromEventId=start))
    display = SSEStream(server.port, f"/events?sessionId={sid}&actorType=display&token={s['displayToken']}&fromEventId={start}")
    return presenter, display


def problem(response, status, *words):
    code, body, _ = response
    assert code == status, f"expected {status}, got {code} {body}"
    for w in words:
        assert w in body["detail"], body["detail"]
    return body


def test_a_scale_shows_its_distribution_mean_and_median(server):
    s = server.new_session("Scale")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, sse = streams(server, s)
    poll = make_poll(server, sid, presenter, "scale", "How useful was this talk?",
                     scale={"min": 1, "max": 5, "minLabel": " Not at all ", "maxLabel": "Very"})
    assert poll["poll"]["options"] == [] and poll["poll"]["scale"] == {"min": 1, "max": 5, "minLabel": "Not at all", "maxLabel": "Very"}
    pid = poll["pollId"]
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(4)]
    for token, value in zip(people, [5, 4, 4, 1]):
        assert ballot(server, sid, pid, token, {"value": value})[0] == 201
    status, ack, _ = ballot(server, sid, pid, people[3], {"value": 2})  # a change of mind replaces
    assert status == 200 and ack["replaced"] is True and ack["value"] == 2

    done = lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 4 and e["payload"]["mean"] == 3.75
    for stream in (ws, sse):
        r = last_results(stream.collect(done), pid)
        assert r["distribution"] == [{"value": v, "count": c} for v, c in [(1, 0), (2, 1), (3, 0), (4, 2), (5, 1)]]
        assert r["median"] == 4
    mine = results_of(server, sid, pid, people[3])
    assert mine["myValue"] == 2 and mine["results"]["mean"] == 3.75

    problem(ballot(server, sid, pid, people[0], {"value": 6}), 400, "1 to 5", "6")
    problem(ballot(server, sid, pid, people[0], {"optionIds": ["o1"]}), 400, "scale poll", "value")
    problem(ballot(server, sid, pid, people[0], {}), 400, "send a ballot")
    problem(ballot(server, sid, pid, people[0], {"value": 3, "words": ["x"]}), 400, "only one")
    for bad, words in [({"scale": {"min": 2, "max": 5}}, ["min", "0 or 1"]), ({"scale": {"min": 1, "max": 11}}, ["max", "2 to 10"]),
                       ({}, ["needs", "scale"]), ({"scale": {"min": 1, "max": 5}, "options": ["a", "b"]}, ["no options"]),
                       ({"scale": {"min": 1, "max": 5}, "maxWords": 2}, ["maxWords", "scale"])]:
        problem(server.request("POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q", "kind": "scale", **bad}, presenter), 400, *words)
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/close", token=presenter)
    problem(ballot(server, sid, pid, people[0], {"value": 3}), 409, "closed")
    ws.close(), sse.close()


def test_a_ranking_adds_up_borda_points(server):
    s = server.new_session("Ranking")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, sse = streams(server, s)
    pid = make_poll(server, sid, presenter, "ranking", "Which topic first?", options=["Security", "Speed", "Price"])["pollId"]
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(3)]
    for token, order in zip(people, [["o2", "o1", "o3"], ["o2", "o3", "o1"], ["o1", "o2", "o3"]]):
        status, ack, _ = ballot(server, sid, pid, token, {"ranking": order})
        assert status == 201 and ack["ranking"] == order

    # Speed: 2+2+1 = 5; Security: 1+0+2 = 3; Price: 0+1+0 = 1.
    expected = [{"optionId": "o2", "points": 5, "averageRank": 1.33}, {"optionId": "o1", "points": 3, "averageRank": 2.0},
                {"optionId": "o3", "points": 1, "averageRank": 2.67}]
    done = lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 3
    for stream in (ws, sse):
        assert last_results(stream.collect(done), pid)["options"] == expected
    assert results_of(server, sid, pid, people[0])["myBallot"] == ["o2", "o1", "o3"]

    problem(ballot(server, sid, pid, people[0], {"ranking": ["o1", "o2"]}), 400, "o3 is missing")
    problem(ballot(server, sid, pid, people[0], {"ranking": ["o1", "o1", "o2"]}), 400, "o1 is ranked twice")
    problem(ballot(server, sid, pid, people[0], {"ranking": ["o1", "o2", "o9"]}), 400, "no option o9")
    empty = make_poll(server, sid, presenter, "ranking", "Nobody yet", options=["a", "b"])["pollId"]
    assert [o["averageRank"] for o in results_of(server, sid, empty, presenter)["results"]["options"]] == [None, None]
    ws.close(), sse.close()


def test_a_word_cloud_counts_words_as_people_mean_them(server):
    s = server.new_session("Words")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, sse = streams(server, s)
    poll = make_poll(server, sid, presenter, "wordcloud", "One word for today?")
    pid = poll["pollId"]
    assert poll["poll"]["maxWords"] == 3  # the default
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(5)]
    sent = [["Café", "  team   spirit "], ["CAFÉ", "cafe\u0301", "Pizza"], ["ｃａｆé", "Team Spirit"], ["Straße"], ["strasse"]]
    for token, words in zip(people, sent):
        status, ack, _ = ballot(server, sid, pid, token, {"words": words})
        assert status == 201, ack
    # "CAFÉ" and "café" written with a combining accent are one word in one ballot: counted once.
    assert ballot(server, sid, pid, people[1], {"words": ["CAFÉ", "cafe\u0301", "Pizza"]})[1]["words"] == ["CAFÉ", "Pizza"]

    done = lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 5
    for stream in (ws, sse):
        r = last_results(stream.collect(done), pid)
        counts = {w["text"]: w["count"] for w in r["words"]}
        # Three spellings of café, two of team spirit, Straße = strasse.
        # Equally used spellings: the first in code-point order, the same on every screen and replay.
        assert counts == {"CAFÉ": 3, "Team Spirit": 2, "Pizza": 1, "Straße": 2}, counts
        assert r["distinctWords"] == 4 and r["words"][0]["count"] == 3
    assert results_of(server, sid, pid, people[0])["myWords"] == ["Café", "team spirit"]

    problem(ballot(server, sid, pid, people[0], {"words": ["a", "b", "c", "d"]}), 400, "at most 3 words")
    problem(ballot(server, sid, pid, people[0], {"words": ["   "]}), 400, "word 1 is empty")
    problem(ballot(server, sid, pid, people[0], {"words": ["x" * 26]}), 400, "longer than 25")
    problem(ballot(server, sid, pid, people[0], {"words": ["e" + "\u0301" * 80]}), 400, "too long")
    problem(ballot(server, sid, pid, people[0], {"words": ["bell\u0007"]}), 400, "control characters")
    problem(ballot(server, sid, pid, people[0], {"words": []}), 400, "at least one word")
    ws.close(), sse.close()


def test_hiding_a_word_takes_it_off_every_screen_at_once(server):
    s = server.new_session("Moderation")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, sse = streams(server, s)
    pid = make_poll(server, sid, presenter, "wordcloud", "Describe the keynote", maxWords=2)["pollId"]
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(3)]
    for token in people:
        assert ballot(server, sid, pid, token, {"words": ["boring", "inspiring"]})[0] == 201
    problem(ballot(server, sid, pid, people[0], {"words": ["a", "b", "c"]}), 400, "at most 2 words")
    sse.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 3)

    ack = server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/words/hide", {"text": "BORING"}, presenter)
    assert "eventId" in ack
    # The display's very next results leave it out — no waiting for the next ballot.
    room = sse.collect(lambda e: e["eventType"] == "poll.results")[-1]["payload"]
    assert [w["text"] for w in room["words"]] == ["inspiring"] and room["distinctWords"] == 1
    mod = ws.collect(lambda e: e["eventType"] == "poll.moderated")[-1]["payload"]
    assert mod == {"pollId": pid, "entry": "word", "target": "boring", "action": "hide"}
    marked = ws.collect(lambda e: e["eventType"] == "poll.results")[-1]["payload"]
    assert {"text": "boring", "count": 3, "hidden": True} in marked["words"]
    assert all(e["eventType"] != "poll.moderated" for e in sse.drain()), "the room never learns what was hidden"
    participant = results_of(server, sid, pid, people[0])
    assert [w["text"] for w in participant["results"]["words"]] == ["inspiring"]
    # A new ballot with the hidden word stays hidden; undo brings it back.
    assert ballot(server, sid, pid, server.join(s["joinCode"])["participantToken"], {"words": ["Boring"]})[0] == 201
    assert "boring" not in [w["text"] for w in sse.collect(lambda e: e["eventType"] == "poll.results")[-1]["payload"]["words"]]
    problem(server.request("POST", f"/api/v1/sessions/{sid}/polls/{pid}/words/hide", {"text": "boring"}, presenter), 409, "hidden already")
    problem(server.request("POST", f"/api/v1/sessions/{sid}/polls/{pid}/words/hide", {"text": "never sent"}, presenter), 404, "nobody has sent")
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/words/unhide", {"text": "boring"}, presenter)
    back = sse.collect(lambda e: e["eventType"] == "poll.results")[-1]["payload"]
    assert {"text": "boring", "count": 4} in back["words"]
    # Only the presenter moderates.
    assert server.request("POST", f"/api/v1/sessions/{sid}/polls/{pid}/words/hide", {"text": "boring"}, people[0])[0] == 403
    ws.close(), sse.close()


def test_open_answers_add_up_to_the_limit_and_pre_moderation_waits_for_approval(server):
    s = server.new_session("Open")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, sse = streams(server, s)
    pid = make_poll(server, sid, presenter, "open", "What should we improve?", maxAnswers=2, moderation="pre")["pollId"]
    ana, ben = server.join(s["joinCode"])["participantToken"], server.join(s["joinCode"])["participantToken"]
    first = ballot(server, sid, pid, ana, {"text": "  More   coffee breaks  "})
    assert first[0] == 201 and first[1]["answer"]["text"] == "More coffee breaks"
    second = ballot(server, sid, pid, ana, {"text": "Shorter talks"})
    assert second[0] == 200 and second[1]["replaced"] is True  # the participant's ballot grew
    problem(ballot(server, sid, pid, ana, {"text": "A third"}), 409, "at most 2 answers")
    replaced = ballot(server, sid, pid, ana, {"text": "Longer lunch", "answerId": first[1]["answer"]["answerId"]})
    assert replaced[0] == 200
    assert [a["text"] for a in results_of(server, sid, pid, ana)["myAnswers"]] == ["Shorter talks", "Longer lunch"]
    problem(ballot(server, sid, pid, ben, {"text": "x", "answerId": replaced[1]["answer"]["answerId"]}), 404, "no answer")
    problem(ballot(server, sid, pid, ben, {"text": "y" * 281}), 400, "longer than 280")
    assert ballot(server, sid, pid, ben, {"text": "Better Wi-Fi"})[0] == 201

    # Pre-moderation: the presenter sees three pending answers; the room none yet.
    pending = ws.collect(lambda e: e["eventType"] == "poll.results" and e["payload"].get("totalAnswers") == 3)[-1]["payload"]
    assert [a["text"] for a in pending["answers"]] == ["Better Wi-Fi", "Longer lunch", "Shorter talks"]  # newest first
    assert all(a["pending"] for a in pending["answers"])
    assert results_of(server, sid, pid, ben)["results"]["answers"] == []
    wifi = pending["answers"][0]["answerId"]
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/answers/{wifi}/approve", token=presenter)
    shown = sse.collect(lambda e: e["eventType"] == "poll.results" and e["payload"].get("totalAnswers") == 1)[-1]["payload"]
    assert shown["answers"] == [{"answerId": wifi, "text": "Better Wi-Fi"}]
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/answers/{wifi}/hide", token=presenter)
    assert sse.collect(lambda e: e["eventType"] == "poll.results")[-1]["payload"]["answers"] == []
    problem(server.request("POST", f"/api/v1/sessions/{sid}/polls/{pid}/answers/{wifi}/hide", token=presenter), 409, "hidden already")
    problem(server.request("POST", f"/api/v1/sessions/{sid}/polls/{pid}/answers/nosuchanswer/approve", token=presenter), 404, "no answer")

    # Every answer through the answers endpoint: the presenter all, the room the shown ones.
    page = server.ok("GET", f"/api/v1/sessions/{sid}/polls/{pid}/answers?limit=2", token=presenter)
    assert [a["text"] for a in page["answers"]] == ["Shorter talks", "Longer lunch"] and page["next"]
    rest = server.ok("GET", f"/api/v1/sessions/{sid}/polls/{pid}/answers?after={page['next']}", token=presenter)
    assert rest == {"answers": [{"answerId": wifi, "text": "Better Wi-Fi", "hidden": True}], "next": None}
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/answers/{wifi}/unhide", token=presenter)
    assert server.ok("GET", f"/api/v1/sessions/{sid}/polls/{pid}/answers", token=s["displayToken"])["answers"] == [
        {"answerId": wifi, "text": "Better Wi-Fi"}]
    problem(server.request("GET", f"/api/v1/sessions/{sid}/polls/{pid}/answers?limit=0", token=presenter), 400, "limit")
    for bad in ({"maxAnswers": 6}, {"maxAnswers": 0}, {"moderation": "later"}):
        assert server.request("POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q", "kind": "open", **bad}, presenter)[0] == 400
    problem(server.request("POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q", "kind": "wordcloud", "moderation": "pre"}, presenter),
            400, "moderation does not apply")
    ws.close(), sse.close()


def test_hidden_results_of_a_written_poll_wait_for_the_reveal(server):
    s = server.new_session("Hidden")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, sse = streams(server, s)
    pid = make_poll(server, sid, presenter, "open", "Anonymous feedback", resultsVisibility="hidden")["pollId"]
    token = server.join(s["joinCode"])["participantToken"]
    assert ballot(server, sid, pid, token, {"text": "Great venue"})[0] == 201
    assert ballot(server, sid, pid, token, {"text": "Great venue, cold room"})[0] == 200  # one answer each: replaced
    turnout = sse.collect(lambda e: e["eventType"] == "poll.ballots")[-1]["payload"]
    assert turnout == {"pollId": pid, "totalBallots": 1}
    assert all(e["eventType"] != "poll.results" for e in sse.drain())
    assert "results" not in results_of(server, sid, pid, token)
    problem(server.request("GET", f"/api/v1/sessions/{sid}/polls/{pid}/answers", token=token), 403, "hidden until")
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{pid}/reveal", token=presenter)
    revealed = sse.collect(lambda e: e["eventType"] == "poll.results")[-1]["payload"]
    assert [a["text"] for a in revealed["answers"]] == ["Great venue, cold room"] and revealed["totalAnswers"] == 1
    assert len(server.ok("GET", f"/api/v1/sessions/{sid}/polls/{pid}/answers", token=token)["answers"]) == 1
    ws.close(), sse.close()


def test_the_blocklist_counts_but_never_shows(data_dir):
    path = os.path.join(data_dir, "blocklist.txt")
    with open(path, "w") as f:
        f.write("# words the venue never shows\nidiot\n\nshut up\n")
    server = Server(data_dir, extra_args=["--blocklist", path]).start()
    try:
        s = server.new_session("Blocklist")
        sid, presenter = s["sessionId"], s["presenterToken"]
        ws, sse = streams(server, s)
        words = make_poll(server, sid, presenter, "wordcloud", "Your mood?")["pollId"]
        people = [server.join(s["joinCode"])["participantToken"] for _ in range(2)]
        assert ballot(server, sid, words, people[0], {"words": ["IDIOT", "happy"]})[0] == 201  # accepted, as if shown
        assert ballot(server, sid, words, people[1], {"words": ["Happy"]})[0] == 201
        room = sse.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 2)[-1]["payload"]
        assert [w["text"] for w in room["words"]] == ["Happy"]
        marked = ws.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 2)[-1]["payload"]
        assert {"text": "IDIOT", "count": 1, "blocked": True} in marked["words"]
        answers = make_poll(server, sid, presenter, "open", "Questions?")["pollId"]
        assert ballot(server, sid, answers, people[0], {"text": "Oh just SHUT   UP already"})[0] == 201
        assert ballot(server, sid, answers, people[1], {"text": "When is lunch?"})[0] == 201
        shown = sse.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["pollId"] == answers
                            and e["payload"]["totalBallots"] == 2)[-1]["payload"]
        assert [a["text"] for a in shown["answers"]] == ["When is lunch?"]
        assert results_of(server, sid, answers, people[0])["myAnswers"][0]["text"] == "Oh just SHUT UP already"
        ws.close(), sse.close()
    finally:
        server.stop()
    assert "blocklist loaded" in server.logs()


def test_results_stay_under_16_kib_whatever_the_room_writes(server):
    s = server.new_session("Big")
    sid, presenter = s["sessionId"], s["presenterToken"]
    ws, _ = streams(server, s)
    words = make_poll(server, sid, presenter, "wordcloud", "Longest words you know")["pollId"]
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(70)]
    # 210 distinct words of 25 four-byte characters: the 100 most frequent would take more than 16 KiB.
    for i, token in enumerate(people):
        ws_words = [chr(0x1F400 + i) + chr(0x1F330 + j) + "\U0001F600" * 23 for j in range(3)]
        assert ballot(server, sid, words, token, {"words": ws_words})[0] == 201
    answers = make_poll(server, sid, presenter, "open", "Tell us everything")["pollId"]
    for i, token in enumerate(people):
        assert ballot(server, sid, answers, token, {"text": f"{i:03d}" + "\U0001F600" * 277})[0] == 201
    got = ws.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["pollId"] == answers and e["payload"]["totalBallots"] == 70,
                     timeout=20)
    results = [e for e in got if e["eventType"] == "poll.results"]
    assert results
    for e in results:
        size = len(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode())
        assert size <= 16 * 1024, f"poll.results of {size} bytes"
    last_words = [e for e in results if e["payload"]["pollId"] == words][-1]["payload"]
    assert last_words["distinctWords"] == 210 and 0 < len(last_words["words"]) < 100
    last_answers = results[-1]["payload"]
    assert last_answers["totalAnswers"] == 70 and 0 < len(last_answers["answers"]) < 50
    # The newest answers are the ones kept.
    assert last_answers["answers"][0]["text"].startswith("069")
    ws.close()


def test_exports_carry_every_kind(server):
    s = server.new_session("Export")
    sid, presenter = s["sessionId"], s["presenterToken"]
    scale = make_poll(server, sid, presenter, "scale", "Rate it", scale={"min": 0, "max": 2, "maxLabel": "Great"})["pollId"]
    token = server.join(s["joinCode"])["participantToken"]
    assert ballot(server, sid, scale, token, {"value": 2})[0] == 201
    ranking = make_poll(server, sid, presenter, "ranking", "Order", options=["A", "B"])["pollId"]
    assert ballot(server, sid, ranking, token, {"ranking": ["o2", "o1"]})[0] == 201
    cloud = make_poll(server, sid, presenter, "wordcloud", "Word")["pollId"]
    assert ballot(server, sid, cloud, token, {"words": ["=SUM(A1)", "fine"]})[0] == 201
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{cloud}/words/hide", {"text": "fine"}, presenter)
    answers = make_poll(server, sid, presenter, "open", "Anything else?")["pollId"]
    assert ballot(server, sid, answers, token, {"text": "Thanks, all good"})[0] == 201

    status, body, _ = server.request("GET", f"/api/v1/sessions/{sid}/export.csv", token=presenter)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body)))
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    assert [(r["option"], r["votes"], r["mean"]) for r in by_kind["scale"]] == [("0", "0", "2"), ("1", "0", "2"), ("2 (Great)", "1", "2")]
    assert [(r["option"], r["points"], r["average_rank"]) for r in by_kind["ranking"]] == [("B", "1", "1"), ("A", "0", "2")]
    assert sorted((r["option"], r["votes"], r["moderation"]) for r in by_kind["wordcloud"]) == [("'=SUM(A1)", "1", ""), ("fine", "1", "hidden")]
    assert [r["option"] for r in by_kind["open"]] == ["Thanks, all good"]

    doc = server.ok("GET", f"/api/v1/sessions/{sid}/export.json", token=presenter)
    polls = {p["poll"]["id"]: p for p in doc["polls"]}
    assert polls[scale]["ballots"][0]["value"] == 2 and polls[scale]["results"]["median"] == 2
    assert polls[ranking]["ballots"][0]["ranking"] == ["o2", "o1"]
    assert polls[cloud]["ballots"][0]["words"] == ["=SUM(A1)", "fine"]
    assert polls[answers]["ballots"][0]["answers"][0]["text"] == "Thanks, all good"
    assert all("participantId" not in json.dumps(p["ballots"]) for p in doc["polls"])


def test_no_acknowledged_ballot_of_any_kind_is_lost_to_kill_9(data_dir):
    server = Server(data_dir).start()
    s = server.new_session("Crash")
    sid, presenter = s["sessionId"], s["presenterToken"]
    people = [server.join(s["joinCode"])["participantToken"] for _ in range(12)]
    kinds = {
        "scale": (dict(scale={"min": 1, "max": 10}), lambda i: {"value": 1 + i % 10}),
        "ranking": (dict(options=["a", "b", "c"]), lambda i: {"ranking": [["o1", "o2", "o3"], ["o3", "o1", "o2"]][i % 2]}),
        "wordcloud": ({}, lambda i: {"words": [f"w{i % 7}", "same"]}),
        "open": (dict(maxAnswers=3), lambda i: {"text": f"answer {i}"}),
    }
    polls = {}
    for kind, (settings, body) in kinds.items():  # one open poll at a time: each in turn
        pid = polls[kind] = make_poll(server, sid, presenter, kind, kind, **settings)["pollId"]
        for i, token in enumerate(people):
            status, ack, _ = ballot(server, sid, pid, token, body(i))
            assert status in (200, 201), (kind, ack)
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{polls['wordcloud']}/words/hide", {"text": "w0"}, presenter)
    before = {kind: results_of(server, sid, pid, presenter)["results"] for kind, pid in polls.items()}
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    again = Server(data_dir, port=server.port).start()
    try:
        for kind, pid in polls.items():
            after = results_of(again, sid, pid, presenter)["results"]
            assert after == before[kind], kind
        assert before["wordcloud"]["totalBallots"] == 12 and {"text": "w0", "count": 2, "hidden": True} in before["wordcloud"]["words"]
        assert before["open"]["totalAnswers"] == 12
        mine = results_of(again, sid, polls["open"], people[5])["myAnswers"]
        assert [a["text"] for a in mine] == ["answer 5"]
        # A graceful restart (the projection, not the ring tail) rebuilds the same.
        assert again.stop() == 0
        third = Server(data_dir, port=server.port).start()
        for kind, pid in polls.items():
            assert results_of(third, sid, pid, presenter)["results"] == before[kind], kind
        third.stop()
    finally:
        again.stop()
