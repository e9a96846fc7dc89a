"""The authorization matrix, cell by cell, against the real server.

`MATRIX` below is the policy; README.md publishes the same table (the last test checks that
the two agree, so the document cannot drift from the behaviour). Each cell is one test: the
route is called with exactly one credential, on a fresh session, and must succeed (2xx, or
for /events a stream that opens and reports the expected role) or be refused with 401 (no
credential) or 403 (a credential that does not cover this)."""

import asyncio
import json
import os
import re
import urllib.parse

import pytest
import websockets

import cluster
from conftest import ROOT, Server, SSEStream

# Columns: who calls. "other" = the presenter, a participant and the display of a *different*
# session (each tried: none may touch this one).
CALLERS = ["anonymous", "operator", "presenter", "participant", "display", "other"]

# Row: (label, allowed callers). ✓ = allowed; anything else refused.
MATRIX = {
    "GET /api/v1/auth/status": {"anonymous", "operator", "presenter", "participant", "display", "other"},
    "POST /api/v1/sessions": {"operator"},
    "GET /api/v1/sessions": {"operator"},
    "GET /api/v1/sessions/{id}": {"operator", "presenter", "participant", "display"},
    # Before the reveal, a hidden poll's counts: the display shows the room what participants see.
    "GET /api/v1/sessions/{id} (counts of a hidden poll)": {"operator", "presenter"},
    "GET /events (SSE, counts of a hidden poll)": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/joining": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/links/rotate": {"operator", "presenter"},
    "POST /api/v1/auth/logout": {"operator"},
    "POST /api/v1/sessions/{id}/polls": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/polls/{poll}/open": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/polls/{poll}/close": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/polls/{poll}/reveal": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/polls/{poll}/votes": {"participant"},
    "POST /api/v1/sessions/{id}/polls/{poll}/words/hide": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/polls/{poll}/answers/{answer}/hide": {"operator", "presenter"},
    # An open poll's answers, to everyone taking part (the room only once results are visible).
    "GET /api/v1/sessions/{id}/polls/{poll}/answers": {"operator", "presenter", "participant", "display"},
    "POST /api/v1/sessions/{id}/qna/open": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/questions": {"participant"},
    "POST /api/v1/sessions/{id}/questions/{question}/upvote": {"participant"},
    "POST /api/v1/sessions/{id}/questions/{question}/highlight": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/end": {"operator", "presenter"},
    "GET /api/v1/sessions/{id}/export.csv": {"operator", "presenter"},
    "GET /api/v1/sessions/{id}/export.json": {"operator", "presenter"},
    "GET /api/v1/sessions/{id}/quiz.csv": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/nicknames": {"operator", "presenter"},
    # Templates: the presenter's polls out and in; duplicating makes a session (the operator's).
    "GET /api/v1/sessions/{id}/template": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/template": {"operator", "presenter"},
    "POST /api/v1/sessions/{id}/duplicate": {"operator"},
    # The quiz leaderboard is on the room's screen: everyone taking part may read it.
    "GET /api/v1/sessions/{id}/leaderboard": {"operator", "presenter", "participant", "display"},
    "POST /api/v1/sessions/{id}/leaderboard/reset": {"operator", "presenter"},
    "GET /api/v1/sessions/{id}/qr.svg": {"operator", "presenter", "participant", "display"},
    "POST /api/v1/join (with the join code)": {"anonymous", "operator", "presenter", "participant", "display", "other"},
    "POST /api/v1/display/pair (with the join code)": {"anonymous", "operator", "presenter", "participant", "display", "other"},
    "GET /events (WebSocket, own role)": {"operator", "presenter", "participant", "display"},
    "GET /events (SSE, own role)": {"operator", "presenter", "participant", "display"},
    "GET /events?actorType=presenter": {"operator", "presenter"},
    "GET /events?actorType=display": {"operator", "presenter", "display"},
    "GET /events?actorType=participant": {"participant"},
    # The room's Wi-Fi is on the room's screen anyway: open to anyone.
    "GET /api/v1/wifi": {"anonymous", "operator", "presenter", "participant", "display", "other"},
    "GET /api/v1/wifi.svg": {"anonymous", "operator", "presenter", "participant", "display", "other"},
    # The operator console's snapshot and stream: venue staff only (the /operator page itself is
    # public like every page; it shows non-operators how to sign in, never numbers).
    "GET /api/v1/operator/status": {"operator"},
    # The whole box's data, signing secret included: the operator's alone.
    "GET /api/v1/operator/backup": {"operator"},
}

# Routes a cluster answers differently once the caller's role is allowed: a backup of one
# instance would not be the cluster's data (that is PostgreSQL's, for pg_dump).
CLUSTER_ANSWERS = {"GET /api/v1/operator/backup": 409}

# The role a stream reports (in its stream.reset) for each allowed caller.
STREAM_ROLE = {"operator": "presenter", "presenter": "presenter", "participant": "participant", "display": "display"}


ARGS = ["--rate-limits", "no", "--wifi-ssid", "Tally", "--wifi-passphrase", "choose-a-long-one"]


@pytest.fixture(scope="module", params=["appliance", "cluster"])
def appliance(request, tmp_path_factory):
    """The same matrix on one box, and on three instances sharing PostgreSQL behind HAProxy
    (each cell's requests and streams then land on different instances)."""
    if request.param == "appliance":
        server = Server(str(tmp_path_factory.mktemp("authz")), extra_args=ARGS).start()
        yield server
        server.stop()
        return
    cluster.skip_unless_available()
    postgresql = cluster.PostgreSQL().init().start()
    venue = cluster.Cluster(postgresql, "authz", extra_args=ARGS)
    try:
        try:
            venue.start()
        except Exception as error:
            raise AssertionError(f"the cluster did not start: {error}\n{venue.logs()}") from error
        venue.front.clustered = True
        yield venue.front
    finally:
        venue.destroy()
        postgresql.destroy()


class Venue:
    """A fresh session with one credential of each kind, and another session beside it."""

    def __init__(self, server):
        self.server = server
        self.operator = server.operator_token()
        mine = server.ok("POST", "/api/v1/sessions", {"title": "Mine"}, self.operator, expect=201)
        other = server.ok("POST", "/api/v1/sessions", {"title": "Theirs"}, self.operator, expect=201)
        self.sid, self.code = mine["sessionId"], mine["joinCode"]
        self.tokens = {
            "anonymous": [None],
            "operator": [self.operator],
            "presenter": [mine["presenterToken"]],
            "display": [mine["displayToken"]],
            "participant": [server.join(mine["joinCode"])["participantToken"]],
            "other": [other["presenterToken"], other["displayToken"], server.join(other["joinCode"])["participantToken"]],
        }
        presenter = mine["presenterToken"]
        self.draft = server.poll(self.sid, presenter)["pollId"]
        self.hidden = server.poll(self.sid, presenter, resultsVisibility="hidden")["pollId"]
        # A word cloud and an open question, each with one entry to moderate (closed by the next).
        voter = self.tokens["participant"][0]
        self.words = server.poll(self.sid, presenter, options=(), kind="wordcloud", open=True)["pollId"]
        server.ok("POST", f"/api/v1/sessions/{self.sid}/polls/{self.words}/votes", {"words": ["hello"]}, voter)
        self.answers = server.poll(self.sid, presenter, options=(), kind="open", open=True)["pollId"]
        self.answer = server.ok("POST", f"/api/v1/sessions/{self.sid}/polls/{self.answers}/votes", {"text": "hi"}, voter)["answer"]["answerId"]
        # Q&A open, with a question from someone else (nobody may upvote their own).
        server.ok("POST", f"/api/v1/sessions/{self.sid}/qna/open", {}, presenter)
        asker = server.join(mine["joinCode"])["participantToken"]
        self.question = server.ok("POST", f"/api/v1/sessions/{self.sid}/questions", {"text": "Why?"}, asker, expect=201)["questionId"]
        # One open poll at a time: open the hidden one (reveal needs it opened, votes need it open).
        server.ok("POST", f"/api/v1/sessions/{self.sid}/polls/{self.hidden}/open", token=presenter)


# Callers who may read the session but not a hidden poll's counts: refused with this detail.
NO_COUNTS = "no counts"


def call(venue, row, token):
    """Makes the row's request with one credential. Returns (allowed?, detail)."""
    s, sid = venue.server, venue.sid
    if "counts of a hidden poll" in row:
        return hidden_counts(venue, row, token)
    if row.startswith("GET /events"):
        return stream(venue, row, token)
    method, path = row.split(" ")[0], row.split(" ")[1]
    body = None
    path = path.replace("{id}", sid)
    if "/qna/open" in path:
        # Open already (Venue): close it first, so opening again is what is being allowed.
        venue.server.request("POST", f"/api/v1/sessions/{sid}/qna/close", {}, venue.tokens["presenter"][0])
    if "{question}" in path:
        path = path.replace("{question}", venue.question)
    if path.endswith("/questions"):
        body = {"text": "How?"}
    if "/words/" in path or "/answers" in path:
        path = path.replace("{poll}", venue.words if "/words/" in path else venue.answers).replace("{answer}", venue.answer)
        if "/words/" in path:
            body = {"text": "hello"}
    elif "{poll}" in path:
        action = path.rsplit("/", 1)[1]
        poll = {"open": venue.draft, "close": venue.hidden, "reveal": venue.hidden, "votes": venue.hidden}[action]
        path = path.replace("{poll}", poll)
        if action == "votes":
            body = {"optionIds": ["o1"]}
    if path == "/api/v1/sessions" and method == "POST":
        body = {"title": "New"}
    if path.endswith("/polls"):
        body = {"question": "Lunch?", "options": ["Yes", "No"]}
    if path in ("/api/v1/join", "/api/v1/display/pair"):
        body = {"joinCode": venue.code}
    if path.endswith("/joining"):
        body = {"open": False}
    if path.endswith("/nicknames"):
        body = {"nicknames": "optional"}
    if path.endswith("/template") and method == "POST":
        body = {"format": "tally-template", "version": 1, "polls": [{"question": "Lunch?", "kind": "single", "options": ["Yes", "No"]}]}
    if path.endswith("/links/rotate"):
        body = {"link": "display"}
    if method == "POST" and body is None:
        body = {}
    status, data, _ = s.request(method, path, body, token)
    assert status < 500, (row, status, data)
    return 200 <= status < 300, status


def hidden_counts(venue, row, token):
    """Whether the caller sees per-option counts of the open hidden poll (REST snapshot, or the
    stream.reset a stream starts with)."""
    if row.startswith("GET /events"):
        query = {"sessionId": venue.sid, "fromEventId": "not-an-event", **({"token": token} if token else {})}
        stream = SSEStream(venue.server.port, "/events?" + urllib.parse.urlencode(query))
        try:
            if stream.status != 200:
                return False, stream.status
            snapshot = stream.next(5)["payload"]
        finally:
            stream.close()
    else:
        status, snapshot, _ = venue.server.request("GET", f"/api/v1/sessions/{venue.sid}", token=token)
        if status != 200:
            return False, status
    poll = next(p for p in snapshot["polls"] if p["poll"]["id"] == venue.hidden)
    return ("results" in poll), ("counts" if "results" in poll else NO_COUNTS)


def stream(venue, row, token):
    query = {"sessionId": venue.sid, "fromEventId": "not-an-event"}  # → an immediate stream.reset
    match = re.search(r"actorType=(\w+)", row)
    if match:
        query["actorType"] = match.group(1)
    if token:
        query["token"] = token
    if "SSE" in row:
        status, role = sse_first_event(venue.server, query)
        return status == 200, role if status == 200 else status
    url = f"ws://127.0.0.1:{venue.server.port}/events?" + urllib.parse.urlencode(query)

    async def first():
        async with websockets.connect(url, open_timeout=5) as ws:
            try:
                return json.loads(await asyncio.wait_for(ws.recv(), 5))
            except websockets.ConnectionClosed as closed:
                return closed.code
    got = asyncio.run(first())
    if isinstance(got, dict):
        return True, got["payload"]["role"]
    return False, got


def sse_first_event(server, query):
    """The status of an SSE request, and for an open stream the role its first event reports."""
    stream = SSEStream(server.port, "/events?" + urllib.parse.urlencode(query))
    try:
        if stream.status != 200:
            return stream.status, stream.body
        return 200, stream.next(5)["payload"]["role"]
    finally:
        stream.close()


CELLS = [(row, caller) for row in MATRIX for caller in CALLERS]


@pytest.mark.parametrize("row,caller", CELLS, ids=[f"{r} | {c}" for r, c in CELLS])
def test_cell(appliance, row, caller):
    venue = Venue(appliance)
    allowed = caller in MATRIX[row]
    for token in venue.tokens[caller]:
        ok, detail = call(venue, row, token)
        if allowed and row in CLUSTER_ANSWERS and getattr(appliance, "clustered", False):
            # Past the role check, a cluster has its own answer (README, under the matrix).
            assert detail == CLUSTER_ANSWERS[row], f"{caller} on {row} in a cluster: got {detail}"
        elif allowed:
            assert ok, f"{caller} should be allowed: {row} → {detail}"
            if row.startswith("GET /events") and "counts" not in row:
                # The stream carries exactly the requested role's view (or the caller's own).
                requested = re.search(r"actorType=(\w+)", row)
                role = requested.group(1) if requested else STREAM_ROLE[caller]
                assert detail == role, f"{caller} on {row} saw the {detail} stream"
        else:
            assert not ok, f"{caller} must be refused: {row} → {detail}"
            websocket = row.startswith("GET /events") and "SSE" not in row
            expected = (401 if token is None else 403) + (4000 if websocket else 0)
            if "counts of a hidden poll" in row and caller in ("participant", "display"):
                expected = NO_COUNTS
            assert detail == expected, f"{caller} on {row}: got {detail}, expected {expected}"


def test_the_readme_publishes_this_matrix():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    table = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(CALLERS) + 1 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = {caller for caller, mark in zip(CALLERS, cells[1:]) if mark == "✓"}
    assert table == MATRIX
