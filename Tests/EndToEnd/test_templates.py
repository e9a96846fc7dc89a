"""A presenter prepares ahead: a session's polls out as a template file, into another session as
drafts (all or none, every bad entry named by position), and a whole session duplicated."""

import json

from conftest import PASSWORD  # noqa: F401  (the fixture's server signs in with it)

KINDS = [
    {"question": "Ship it?", "kind": "single", "options": ["Yes", "No"], "resultsVisibility": "hidden"},
    {"question": "Which days?", "kind": "multiple", "options": ["Mon", "Tue", "Wed"]},
    {"question": "How sure?", "kind": "scale", "scale": {"min": 1, "max": 5, "minLabel": "Not at all", "maxLabel": "Very"}},
    {"question": "Order these", "kind": "ranking", "options": ["A", "B", "C"]},
    {"question": "One word?", "kind": "wordcloud", "maxWords": 2},
    {"question": "Anything else?", "kind": "open", "maxAnswers": 3, "moderation": "pre"},
    {"question": "Capital of France?", "kind": "single", "options": ["Paris", "Lyon"],
     "quiz": {"correctOptionIds": ["o1"], "timeLimitSeconds": 20, "points": 500}},
]


def polls_of(server, sid, token):
    return [p["poll"] for p in server.ok("GET", f"/api/v1/sessions/{sid}", token=token)["polls"]]


def settings(poll):
    """What a template carries of a poll (not its id, state or results)."""
    keys = ("question", "kind", "resultsVisibility", "scale", "maxWords", "maxAnswers", "moderation", "quiz")
    out = {k: poll.get(k) for k in keys}
    out["options"] = [o["label"] for o in poll.get("options", [])]
    return out


def test_a_session_exported_and_imported_elsewhere_has_the_same_polls_as_drafts(server):
    source = server.new_session("Keynote")
    sid, presenter = source["sessionId"], source["presenterToken"]
    for body in KINDS:
        server.ok("POST", f"/api/v1/sessions/{sid}/polls", body, presenter, expect=201)
    # The room took part: none of it may travel with the template.
    first = polls_of(server, sid, presenter)[0]["id"]
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{first}/open", token=presenter)
    phone = server.join(source["joinCode"])
    assert server.vote(sid, first, phone["participantToken"], ["o2"])[0] == 201

    status, template, response = server.request("GET", f"/api/v1/sessions/{sid}/template", token=presenter)
    assert status == 200 and "attachment" in response.getheader("Content-Disposition")
    assert template["format"] == "tally-template" and template["version"] == 1 and template["title"] == "Keynote"
    assert [p["question"] for p in template["polls"]] == [k["question"] for k in KINDS]
    assert template["polls"][6]["quiz"]["correctOptionIds"] == ["o1"], "a quiz question's right answer travels"
    text = json.dumps(template)
    assert phone["participantId"] not in text and "count" not in text, "no ballots, nobody who took part"

    target = server.new_session("Same talk, room B")
    tid, other = target["sessionId"], target["presenterToken"]
    status, imported, _ = server.request("POST", f"/api/v1/sessions/{tid}/template", template, other)
    assert status == 201 and len(imported["pollIds"]) == len(KINDS)
    polls = polls_of(server, tid, other)
    assert [p["id"] for p in polls] == imported["pollIds"]
    assert all(p["state"] == "draft" for p in polls), "imported polls wait as drafts"
    assert [settings(p) for p in polls] == [settings(p) for p in polls_of(server, sid, presenter)]
    # Drafts like any other: the presenter opens one and the room votes.
    server.ok("POST", f"/api/v1/sessions/{tid}/polls/{polls[1]['id']}/open", token=other)
    phone = server.join(target["joinCode"])
    assert server.vote(tid, polls[1]["id"], phone["participantToken"], ["o1", "o3"])[0] == 201


def test_a_file_with_bad_entries_is_refused_whole_with_each_one_named(server):
    s = server.new_session("Workshop")
    sid, presenter = s["sessionId"], s["presenterToken"]
    template = {"format": "tally-template", "version": 1, "polls": [
        {"question": "Fine?", "kind": "single", "options": ["Yes", "No"]},
        {"question": "   ", "kind": "single", "options": ["Yes", "No"]},
        {"question": "Also fine", "kind": "wordcloud"},
        {"question": "Too wide", "kind": "scale", "scale": {"min": 1, "max": 11}},
        {"question": "Quiz on words", "kind": "wordcloud", "quiz": {"correctOptionIds": ["o1"], "timeLimitSeconds": 20}},
    ]}
    status, body, response = server.request("POST", f"/api/v1/sessions/{sid}/template", template, presenter)
    assert status == 422 and response.getheader("Content-Type").startswith("application/problem+json")
    assert body["type"] == "/problems/template-invalid" and "nothing was imported" in body["detail"]
    assert [e["position"] for e in body["errors"]] == [2, 4, 5]
    assert "empty" in body["errors"][0]["detail"] and "scale.max" in body["errors"][1]["detail"]
    assert polls_of(server, sid, presenter) == [], "all or none"

    for bad, words in [
        ({"format": "something-else", "version": 1, "polls": template["polls"][:1]}, "not a Tally template"),
        ({"format": "tally-template", "version": 9, "polls": template["polls"][:1]}, "newer Tally"),
        ({"format": "tally-template", "version": 1, "polls": []}, "no polls"),
    ]:
        status, body, _ = server.request("POST", f"/api/v1/sessions/{sid}/template", bad, presenter)
        assert status == 422 and words in body["detail"], (bad, body)
    status, body, _ = server.request("POST", f"/api/v1/sessions/{sid}/template", {"polls": "no"}, presenter)
    assert status == 400, body
    assert polls_of(server, sid, presenter) == []


def test_a_duplicated_session_has_the_polls_as_drafts_and_its_own_code(server):
    operator = server.operator_token()
    s = server.ok("POST", "/api/v1/sessions", {"title": "Quiz night", "nicknames": "required"}, operator, expect=201)
    sid, presenter = s["sessionId"], s["presenterToken"]
    for body in KINDS[:3]:
        server.ok("POST", f"/api/v1/sessions/{sid}/polls", {**body, "open": body is KINDS[0]}, presenter, expect=201)
    server.ok("POST", f"/api/v1/sessions/{sid}/end", token=presenter)

    copy = server.ok("POST", f"/api/v1/sessions/{sid}/duplicate", {}, operator, expect=201)
    assert copy["sessionId"] != sid and copy["joinCode"] != s["joinCode"]
    snapshot = server.ok("GET", f"/api/v1/sessions/{copy['sessionId']}", token=copy["presenterToken"])
    assert snapshot["title"] == "Quiz night (copy)" and snapshot["nicknames"] == "required"
    assert [p["poll"]["state"] for p in snapshot["polls"]] == ["draft"] * 3
    assert [settings(p["poll"]) for p in snapshot["polls"]] == [settings(p) for p in polls_of(server, sid, presenter)]
    # A live session to run again, unlike the ended original (and it still asks for nicknames).
    status, joined, _ = server.request("POST", "/api/v1/join", {"joinCode": copy["joinCode"], "nickname": "Ada"})
    assert status == 201 and joined["participantToken"]
    named = server.ok("POST", f"/api/v1/sessions/{sid}/duplicate", {"title": "Round two"}, operator, expect=201)
    assert server.ok("GET", f"/api/v1/sessions/{named['sessionId']}", token=named["presenterToken"])["title"] == "Round two"
    # The session's presenter may export and import, but making sessions is the operator's.
    assert server.request("POST", f"/api/v1/sessions/{sid}/duplicate", {}, presenter)[0] == 403
    assert server.request("POST", "/api/v1/sessions/nosuchsess/duplicate", {}, operator)[0] == 404
