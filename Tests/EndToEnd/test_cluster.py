"""Cluster mode, end to end: three `tally serve --store postgresql://…` instances sharing one
PostgreSQL behind HAProxy, all real and started here (cluster.py). What a room notices: every
screen and phone sees the same events in the same order whichever instance it is on, every
acknowledged vote is counted once, a killed instance or a PostgreSQL outage loses nothing and
needs nobody to step in, credentials and guess budgets are the cluster's, not an instance's, and
an appliance's data moves into a cluster."""

import os
import queue
import signal
import subprocess
import threading
import time
import urllib.parse

import pytest

import cluster
import test_flow
import test_kinds
import test_proxy
import test_quiz
from cluster import Cluster, PostgreSQL, served_by, served_by_response, wait_for
from conftest import BINARY, PASSWORD, Server, SSEStream, WSStream, seq
from test_deb import snapshot_settled

if cluster.missing():
    pytest.skip(cluster.missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def postgresql():
    pg = PostgreSQL().init().start()
    yield pg
    pg.destroy()


@pytest.fixture(scope="module")
def tally_cluster(postgresql):
    c = Cluster(postgresql, "tally")
    try:
        c.start()
    except Exception as error:
        logs = c.logs()
        c.destroy()
        raise AssertionError(f"the cluster did not start: {error}\n{logs}") from error
    yield c
    c.destroy()


# -- helpers ------------------------------------------------------------------------------------

def strip(events):
    """What a client acts on: position, kind and content (not the SSE framing)."""
    return [(e["eventId"], e["eventType"], e["payload"]) for e in events]


def strictly_increasing(events):
    ids = [seq(e["eventId"]) for e in events]
    return all(a < b for a, b in zip(ids, ids[1:]))


def counts(snapshot, poll_id):
    poll = next(p for p in snapshot["polls"] if p["poll"]["id"] == poll_id)
    return [c["count"] for c in poll["results"]["counts"]]


def expected_counts(choices, options):
    return [sum(1 for choice in choices.values() if choice == option) for option in options]


def counts_everywhere(c, sid, presenter, poll_id, expected):
    """Every instance's snapshot reaches the expected counts (the last coalesced results land)."""
    for server in c.instances:
        if server.proc.poll() is None:
            wait_for(lambda: counts(server.ok("GET", f"/api/v1/sessions/{sid}", token=presenter), poll_id) == expected, 15,
                     f"{expected} on port {server.port}, it has "
                     f"{counts(server.ok('GET', f'/api/v1/sessions/{sid}', token=presenter), poll_id)}")


def results_published(server, sid, presenter, start, poll_id, expected):
    """Until a poll.results with these counts is in the log (results are coalesced: the last one
    comes a moment after the last vote, and a poll closed before it would not carry it)."""
    watcher = sse(server, sid, presenter, start)
    seen = []

    def final(e):
        if e["eventType"] == "poll.results" and e["payload"]["pollId"] == poll_id:
            seen.append([x["count"] for x in e["payload"]["counts"]])
        return bool(seen) and seen[-1] == expected
    try:
        watcher.collect(final, timeout=20)
    except queue.Empty:
        raise AssertionError(f"no poll.results with {expected}; the last published: {seen[-1:]}") from None
    finally:
        watcher.close()


def sse(server, sid, token, start, **query):
    q = urllib.parse.urlencode({"sessionId": sid, "token": token, "fromEventId": start, **query})
    stream = SSEStream(server.port, "/events?" + q)
    assert stream.status == 200, stream.body
    return stream


def ws(server, sid, token, start, **query):
    return WSStream(server.events_url("ws", sessionId=sid, token=token, fromEventId=start, **query))


def vote_until_acknowledged(server, sid, poll_id, token, option, tries=40):
    """A phone retrying a vote that was not acknowledged (refused connection, 502, 503)."""
    for _ in range(tries):
        try:
            status, body, response = server.vote(sid, poll_id, token, [option])
        except OSError:
            status = None
        if status in (200, 201):
            return status
        assert status in (None, 502, 503, 504), (status, body)
        time.sleep(0.25)
    raise AssertionError(f"vote never acknowledged (last {status})")


def room(front, voters, options=("a", "b", "c", "d"), **poll):
    s = front.new_session("Cluster hall")
    sid, presenter = s["sessionId"], s["presenterToken"]
    start = front.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    tokens = [front.join(s["joinCode"])["participantToken"] for _ in range(voters)]
    p = front.poll(sid, presenter, options=list(options), open=True, **poll)
    return s, sid, presenter, start, tokens, p["pollId"]


def close_all(*streams):
    for stream in streams:
        stream.close()


# -- the room -----------------------------------------------------------------------------------

def test_every_stream_through_haproxy_sees_the_same_events_in_the_same_order(tally_cluster):
    c, front = tally_cluster, tally_cluster.front
    s = front.new_session("Keynote")
    sid, presenter, display = s["sessionId"], s["presenterToken"], s["displayToken"]
    start = front.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    alice, bob, carol = (front.join(s["joinCode"]) for _ in range(3))
    # Opened back to back, so roundrobin gives each role's three streams three instances.
    roles = {
        "presenter": [ws(front, sid, presenter, start), sse(front, sid, presenter, start), ws(front, sid, presenter, start)],
        "display": [sse(front, sid, display, start), ws(front, sid, display, start), sse(front, sid, display, start)],
        "participant": [ws(front, sid, alice["participantToken"], start), sse(front, sid, bob["participantToken"], start),
                        ws(front, sid, carol["participantToken"], start)],
    }
    for role, streams in roles.items():
        assert sorted(served_by(st) for st in streams) == ["t1", "t2", "t3"], f"{role} streams all on one instance"

    draft = front.poll(sid, presenter, options=["Later", "Never"])
    live = front.poll(sid, presenter, options=["Pizza", "Salad", "Soup"], open=True)["pollId"]
    assert front.vote(sid, live, alice["participantToken"], ["o1"])[0] == 201
    assert front.vote(sid, live, bob["participantToken"], ["o2"])[0] == 201
    assert front.vote(sid, live, carol["participantToken"], ["o2"])[0] == 201
    assert front.vote(sid, live, alice["participantToken"], ["o2"])[0] == 200  # a change of mind
    results_published(c.instances[1], sid, presenter, start, live, [0, 3, 0])
    # Commands sent straight to one instance reach the subscribers on the other two, in order.
    first = c.instances[0]
    first.ok("POST", f"/api/v1/sessions/{sid}/polls/{live}/close", token=presenter)
    hidden = first.poll(sid, presenter, options=["A", "B"], open=True, resultsVisibility="hidden")["pollId"]
    assert c.instances[1].vote(sid, hidden, bob["participantToken"], ["o1"])[0] == 201
    c.instances[2].ok("POST", f"/api/v1/sessions/{sid}/polls/{hidden}/reveal", token=presenter)
    first.ok("POST", f"/api/v1/sessions/{sid}/end", token=presenter)

    seen = {role: [st.collect(lambda e: e["eventType"] == "session.ended", timeout=15) for st in streams]
            for role, streams in roles.items()}
    for role, lists in seen.items():
        for events in lists:
            assert strictly_increasing(events), f"{role}: event ids not strictly increasing"
            assert seq(events[0]["eventId"]) > seq(start), "resumed after the position asked for"
        # The same events, same order, same content, whichever instance served the stream.
        assert strip(lists[0]) == strip(lists[1]) == strip(lists[2]), f"{role} streams disagree"
    kinds = {role: [e["eventType"] for e in lists[0]] for role, lists in seen.items()}
    assert kinds["presenter"].index("poll.created") < kinds["presenter"].index("poll.opened") < kinds["presenter"].index("poll.closed")
    assert "poll.created" not in kinds["participant"] and "participant.joined" not in kinds["participant"]
    assert kinds["participant"].index("poll.closed") < kinds["participant"].index("poll.revealed")
    # The change of mind counted once, on every screen.
    finals = [e for e in seen["display"][0] if e["eventType"] == "poll.results" and e["payload"]["pollId"] == live]
    assert [c_["count"] for c_ in finals[-1]["payload"]["counts"]] == [0, 3, 0]
    # The hidden poll's counts reached the room only with the reveal (the presenter saw them before).
    room_results = [e["eventType"] for e in seen["participant"][0] if e["payload"].get("pollId") == hidden]
    assert room_results.index("poll.revealed") < room_results.index("poll.results")
    assert not any(p["poll"]["id"] == draft["pollId"] for p in front.ok("GET", f"/api/v1/sessions/{sid}", token=bob["participantToken"])["polls"])
    close_all(*(st for streams in roles.values() for st in streams))


def test_the_full_flow_and_hidden_results_pass_through_the_cluster_as_on_one_box(tally_cluster):
    # The single-appliance tests, unchanged, with HAProxy in front of three instances as the server.
    test_flow.test_full_flow_over_websocket_and_sse(tally_cluster.front)
    test_kinds.test_hidden_results_of_a_written_poll_wait_for_the_reveal(tally_cluster.front)


def test_concurrent_votes_on_three_instances_are_counted_exactly_in_one_order(tally_cluster):
    c = tally_cluster
    s, sid, presenter, start, tokens, poll_id = room(c.front, voters=60)
    display = s["displayToken"]
    presenters = [ws(server, sid, presenter, start) for server in c.instances]
    displays = [sse(server, sid, display, start) for server in c.instances]
    options = ["o1", "o2", "o3", "o4"]
    choices, statuses, lock = {}, [], threading.Lock()

    def phones(server, mine):
        for i, token in mine:
            first = options[i % 4]
            status = server.vote(sid, poll_id, token, [first])[0]
            with lock:
                statuses.append(status)
                if status == 201:
                    choices[token] = first
            if i % 3 == 0:  # a third change their mind, on the same instance
                second = options[(i + 1) % 4]
                status = server.vote(sid, poll_id, token, [second])[0]
                with lock:
                    statuses.append(status)
                    if status == 200:
                        choices[token] = second

    threads = [threading.Thread(target=phones, args=(server, [(i, t) for i, t in enumerate(tokens) if i % 3 == n]))
               for n, server in enumerate(c.instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(status in (200, 201) for status in statuses), statuses
    assert len(choices) == 60
    expected = expected_counts(choices, options)
    counts_everywhere(c, sid, presenter, poll_id, expected)
    results_published(c.instances[2], sid, presenter, start, poll_id, expected)
    c.instances[1].ok("POST", f"/api/v1/sessions/{sid}/polls/{poll_id}/close", token=presenter)

    closed = lambda e: e["eventType"] == "poll.closed"
    live = {"presenter": [st.collect(closed, timeout=20) for st in presenters],
            "display": [st.collect(closed, timeout=20) for st in displays]}
    # What each role should see, as the cluster stored it: a replay from the start, on any instance.
    replay = {"presenter": ws(c.instances[2], sid, presenter, start).collect(closed, timeout=20),
              "display": sse(c.instances[0], sid, display, start).collect(closed, timeout=20)}
    for role, lists in live.items():
        for events in lists:
            assert strictly_increasing(events)
            # No gap and no duplicate: exactly the stored events of this role.
            assert strip(events) == strip(replay[role]), f"a live {role} stream differs from the replay"
        results = [e for e in lists[0] if e["eventType"] == "poll.results"]
        assert [x["count"] for x in results[-1]["payload"]["counts"]] == expected
        assert results[-1]["payload"]["totalBallots"] == 60
    close_all(*presenters, *displays)


def test_a_credential_issued_by_one_instance_works_on_the_others(tally_cluster):
    a, b, c_ = tally_cluster.instances
    operator = a.operator_token()
    assert b.request("GET", "/api/v1/sessions", token=operator)[0] == 200
    s = b.ok("POST", "/api/v1/sessions", {"title": "Signed on A"}, operator, expect=201)
    sid, presenter = s["sessionId"], s["presenterToken"]
    poll_id = c_.poll(sid, presenter, open=True)["pollId"]  # the presenter link B issued, on C
    phone = a.join(s["joinCode"])
    assert b.vote(sid, poll_id, phone["participantToken"], ["o1"])[0] == 201
    assert c_.vote(sid, poll_id, phone["participantToken"], ["o2"])[0] == 200, "the same ballot, replaced"
    reset = ws(c_, sid, phone["participantToken"], "not-an-event").next(10)
    assert reset["eventType"] == "stream.reset" and reset["payload"]["role"] == "participant"
    # Signing out on one instance signs out everywhere.
    assert c_.request("GET", "/api/v1/sessions", token=operator)[0] == 200
    b.ok("POST", "/api/v1/auth/logout", {}, operator, expect=204)
    assert b.request("GET", "/api/v1/sessions", token=operator)[0] == 401, "at once where it was signed out"
    # The others hear of it by a notification (milliseconds); bounded, never a timed assertion.
    for server in (a, c_):
        wait_for(lambda: server.request("GET", "/api/v1/sessions", token=operator)[0] == 401, 5,
                 "the sign-out to reach every instance")


def test_reset_password_on_the_store_reaches_every_instance(postgresql):
    # Instances without --operator-password: the password is the cluster's, in PostgreSQL.
    venue = Cluster(postgresql, "reset", password=None)
    try:
        venue.start()
        a, b, c_ = venue.instances
        reset = subprocess.run([BINARY, "reset-password", "--store", venue.url, "--password-stdin"],
                               input="a brand new passphrase\n", capture_output=True, text=True, timeout=60)
        assert reset.returncode == 0, reset.stdout + reset.stderr
        token = b.ok("POST", "/api/v1/auth/login", {"password": "a brand new passphrase"})["token"]
        for server in (a, c_):
            assert server.request("GET", "/api/v1/sessions", token=token)[0] == 200, "signed in on B, valid on all"
        again = subprocess.run([BINARY, "reset-password", "--store", venue.url, "--password-stdin"],
                               input="another new passphrase\n", capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        for server in (a, b, c_):
            wait_for(lambda server=server: server.request("GET", "/api/v1/sessions", token=token)[0] == 401, 5,
                     "the reset to end earlier sign-ins on every instance")
        assert a.request("POST", "/api/v1/auth/login", {"password": "a brand new passphrase"})[0] == 401
        assert c_.request("POST", "/api/v1/auth/login", {"password": "another new passphrase"})[0] == 200
    finally:
        venue.destroy()


def test_wrong_join_codes_spread_over_the_instances_hit_the_one_lockout(tally_cluster, server):
    # The budget of one box, measured on one box (a direct client).
    single = test_proxy.guess_until_locked_out(server, lambda i: {})
    c, front = tally_cluster, tally_cluster.front
    code = front.new_session()["joinCode"]
    mallory = {"X-Forwarded-For": "192.0.2.66"}  # one client, through a trusted proxy
    for guess in range(single * 3 + 3):
        status = test_proxy.post_join(c.instances[guess % 3], test_proxy.WRONG, mallory)
        if status == 429:
            break
        assert status == 404, status
    assert guess == single, f"locked out after {guess} wrong codes over three instances; one box allows {single}"
    # Locked out everywhere, through HAProxy too, even with the right code; others still join.
    for instance in c.instances:
        assert test_proxy.post_join(instance, code, mallory) == 429
    status, body, response = front.request("POST", "/api/v1/join", {"joinCode": code}, headers=mallory)
    assert status == 429 and response.getheader("Retry-After"), (status, body)
    assert front.request("POST", "/api/v1/join", {"joinCode": code}, headers={"X-Forwarded-For": "192.0.2.67"})[0] == 201


# -- faults -------------------------------------------------------------------------------------

def test_an_instance_killed_in_a_vote_burst_loses_nothing_and_its_streams_resume_elsewhere(tally_cluster):
    c, front = tally_cluster, tally_cluster.front
    s, sid, presenter, start, tokens, poll_id = room(front, voters=45)
    # Back to back: one participant stream and one presenter stream on each instance.
    phones = [ws(front, sid, tokens[i], start) for i in range(3)]
    screens = [sse(front, sid, presenter, start) for _ in range(3)]
    victim = c.names["t2"]
    on_victim = [st for st in phones + screens if served_by(st) == "t2"]
    survivors = [st for st in phones + screens if served_by(st) != "t2"]
    assert len(on_victim) == 2, [served_by(st) for st in phones + screens]
    options = ["o1", "o2", "o3"]
    choices = {}
    try:
        for i, token in enumerate(tokens):
            if i == 15:
                victim.stop(signal.SIGKILL)  # mid-burst, no warning
            choices[token] = options[i % 3]
            vote_until_acknowledged(front, sid, poll_id, token, choices[token])
        # Its clients lost their connection; each resumes through HAProxy from the last event it had.
        resumed = []
        for old in on_victim:
            ended = old.closed if isinstance(old, WSStream) else old.ended
            assert ended.wait(30), "a stream of the killed instance stayed open"
            got = old.drain(0.2)
            last = got[-1]["eventId"] if got else start
            if isinstance(old, WSStream):
                new = ws(front, sid, tokens[phones.index(old)], last)
            else:
                q = urllib.parse.urlencode({"sessionId": sid, "token": presenter})
                new = SSEStream(front.port, "/events?" + q, headers={"Last-Event-ID": last})
                assert new.status == 200
            assert served_by(new) in ("t1", "t3")
            resumed.append((old, got, new))
        expected = expected_counts(choices, options + ["o4"])  # the room has four options; nobody chose the last
        results_published(front, sid, presenter, start, poll_id, expected)
        front.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll_id}/close", token=presenter)
        closed = lambda e: e["eventType"] == "poll.closed"
        reference = {"participant": None, "presenter": None}
        for st in survivors:
            events = st.collect(closed, timeout=20)
            role = "participant" if st in phones else "presenter"
            if reference[role] is None:
                reference[role] = events
            assert strip(events) == strip(reference[role])
        # Both roles kept a stream on a live instance (three of each, one killed).
        assert None not in reference.values()
        for old, before, new in resumed:
            after = new.collect(closed, timeout=20)
            assert after[0]["eventType"] != "stream.reset", "resumed, not reset"
            role = "participant" if old in phones else "presenter"
            # Exactly what it missed: before + after is what a stream that never broke received.
            assert strip(before + after) == strip(reference[role]), f"the {role} stream has a gap or a duplicate"
        counts_everywhere(c, sid, presenter, poll_id, expected)
        final = [e for e in reference["presenter"] if e["eventType"] == "poll.results"][-1]["payload"]
        assert [x["count"] for x in final["counts"]] == expected and final["totalBallots"] == 45
        close_all(*survivors, *(new for _, _, new in resumed))
    finally:
        if victim.proc.poll() is not None:
            victim.start()  # the same port and directory: it rejoins the cluster
        c.proxy.wait_servers({name: "UP" for name in c.names})


def test_postgresql_stopped_in_a_vote_burst_loses_no_acknowledged_vote_and_the_instances_recover_alone(tally_cluster, postgresql):
    c, front = tally_cluster, tally_cluster.front
    s, sid, presenter, start, tokens, poll_id = room(front, voters=30)
    # Open straight on each instance, and one through HAProxy: none may be dropped by the outage.
    streams = [ws(server, sid, tokens[i], start) for i, server in enumerate(c.instances)]
    through_proxy = sse(front, sid, s["displayToken"], start)
    options = ["o1", "o2", "o3", "o4"]
    acknowledged, refused = {}, []

    def vote(i):
        server = c.instances[i % 3]
        status, body, response = server.vote(sid, poll_id, tokens[i], [options[i % 4]])
        if status in (200, 201):
            acknowledged[tokens[i]] = options[i % 4]
        else:
            assert status == 503 and response.getheader("Retry-After"), (status, body)
            refused.append(i)

    try:
        for i in range(10):
            vote(i)
        assert len(acknowledged) == 10
        postgresql.stop()
        for server in c.instances:
            def unavailable(server=server):
                status, body, _ = server.request("GET", "/readyz")
                return (status, body) if status == 503 else None
            status, body = wait_for(unavailable, 30, f"/readyz on {server.port} to report the outage")
            assert body["status"] == "unavailable" and body["detail"], body
        for i in range(10, 20):
            vote(i)
        assert refused == list(range(10, 20)), "no vote can be acknowledged without PostgreSQL"
        # Through HAProxy too (every instance is out of its rotation: its own 503 says the same).
        c.proxy.wait_servers({name: "DOWN" for name in c.names})
        status, body, response = front.vote(sid, poll_id, tokens[20], ["o1"])
        assert status == 503 and response.getheader("Retry-After"), (status, body)
        # Commands and reads of state that needs the database say so, never a 500.
        assert front.request("POST", f"/api/v1/sessions/{sid}/polls", {"question": "Q", "options": ["a", "b"]}, presenter)[0] == 503
    finally:
        if not postgresql.running:
            postgresql.start()
    # Nobody restarts anything: each instance notices the database is back.
    for server in c.instances:
        wait_for(lambda server=server: server.request("GET", "/readyz")[0] == 200, 60, f"/readyz on {server.port} back to 200")
    c.proxy.wait_servers({name: "UP" for name in c.names})
    # The phones retry what was refused, the rest vote now.
    for i in range(10, 30):
        acknowledged[tokens[i]] = options[i % 4]
        vote_until_acknowledged(c.instances[i % 3], sid, poll_id, tokens[i], options[i % 4])
    expected = expected_counts(acknowledged, options)
    counts_everywhere(c, sid, presenter, poll_id, expected)
    results_published(c.instances[1], sid, presenter, start, poll_id, expected)
    c.instances[0].ok("POST", f"/api/v1/sessions/{sid}/polls/{poll_id}/close", token=presenter)
    # The streams opened before the outage are still the same connections, and deliver again.
    closed = lambda e: e["eventType"] == "poll.closed"
    lists = [st.collect(closed, timeout=30) for st in streams]
    assert not any(st.closed.is_set() for st in streams) and not through_proxy.ended.is_set()
    for events in lists:
        assert strictly_increasing(events) and strip(events) == strip(lists[0])
        assert events[0]["eventType"] != "stream.reset"
    final = [e for e in lists[0] if e["eventType"] == "poll.results"][-1]["payload"]
    assert [x["count"] for x in final["counts"]] == expected and final["totalBallots"] == 30
    display = through_proxy.collect(closed, timeout=30)
    assert [x["count"] for x in [e for e in display if e["eventType"] == "poll.results"][-1]["payload"]["counts"]] == expected
    close_all(*streams, through_proxy)


# -- moving in ----------------------------------------------------------------------------------

def test_a_quiz_question_closes_on_time_when_the_instance_that_opened_it_died(tally_cluster):
    c = tally_cluster
    opener, watcher = c.names["t2"], c.names["t1"]
    s = opener.new_session()
    sid, presenter = s["sessionId"], s["presenterToken"]
    body = {"question": "Capital of France?", "options": ["Paris", "Lyon"], "kind": "single", "open": True,
            "quiz": {"correctOptionIds": ["o1"], "timeLimitSeconds": 5, "points": 1000}}
    start = opener.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)["lastEventId"]
    created = opener.ok("POST", f"/api/v1/sessions/{sid}/polls", body, presenter, expect=201)
    poll, closes_at = created["pollId"], test_quiz.instant(created["poll"]["closesAt"])
    screen = sse(watcher, sid, presenter, start)
    try:
        # A player answers on a third instance, then the instance that opened the question dies.
        phone = c.names["t3"].join(s["joinCode"])["participantToken"]
        assert c.names["t3"].vote(sid, poll, phone, ["o1"])[0] == 201
        opener.stop(signal.SIGKILL)
        events = screen.collect(lambda e: e["eventType"] == "quiz.leaderboard", timeout=30)
    finally:
        screen.close()
    closed = next(e for e in events if e["eventType"] == "poll.closed")
    assert test_quiz.instant(closed["timestamp"]) >= closes_at, "never before closesAt"
    results = next(e for e in events if e["eventType"] == "quiz.results")
    assert results["payload"]["correct"] == 1 and results["payload"]["answered"] == 1
    # Closed once, whichever of the survivors got there first.
    snap = watcher.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)
    assert snap.get("openPollId") is None and [e["eventType"] for e in events].count("poll.closed") == 1


def without_position(snapshot):
    """A snapshot's content: event ids are the cluster's own after a move (streams start afresh),
    and the join link names the address that answered (another server, another port)."""
    content = {key: value for key, value in snapshot.items() if key != "lastEventId"}
    content["joinUrl"] = urllib.parse.urlsplit(content["joinUrl"])._replace(netloc="").geturl()
    return content


def test_tally_migrate_moves_an_appliance_into_an_empty_cluster_database(postgresql, tmp_path):
    os.makedirs(tmp_path / "appliance")
    appliance = Server(str(tmp_path / "appliance")).start()
    try:
        s = appliance.new_session("Before the move")
        sid, presenter = s["sessionId"], s["presenterToken"]
        voters = [appliance.join(s["joinCode"]) for _ in range(5)]
        closed = appliance.poll(sid, presenter, options=["a", "b", "c"], open=True)["pollId"]
        for v, option in zip(voters, ["o1", "o2", "o2", "o3", "o2"]):
            assert appliance.vote(sid, closed, v["participantToken"], [option])[0] == 201
        appliance.ok("POST", f"/api/v1/sessions/{sid}/polls/{closed}/close", token=presenter)
        live = appliance.poll(sid, presenter, options=["x", "y"], open=True)["pollId"]
        for v in voters[:2]:
            assert appliance.vote(sid, live, v["participantToken"], ["o2"])[0] == 201
        before = snapshot_settled(appliance, sid, presenter)
    finally:
        assert appliance.stop() == 0
    url = postgresql.createdb("moved")
    migrate = subprocess.run([BINARY, "migrate", "--data-dir", appliance.data_dir, "--to", url],
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    # The appliance's password was configured (--operator-password), not stored: the cluster's
    # instances are configured the same way. The signing secret came along with the data.
    os.makedirs(tmp_path / "instance")
    instance = Server(str(tmp_path / "instance"), extra_args=["--store", url]).start()
    try:
        after = instance.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)  # the old presenter link works
        assert without_position(after) == without_position(before)
        assert counts(after, closed) == [1, 3, 1] and counts(after, live) == [0, 2]
        assert after["openPollId"] == live and after["participantCount"] == 5
        assert instance.request("POST", "/api/v1/auth/login", {"password": PASSWORD})[0] == 200
        # The room carries on: a phone that joined on the appliance votes in the cluster.
        assert instance.vote(sid, live, voters[2]["participantToken"], ["o1"])[0] == 201
        assert counts_settled(instance, sid, presenter, live, [1, 2])
    finally:
        instance.stop()
    # Only into an empty database: a second copy would mix two histories.
    again = subprocess.run([BINARY, "migrate", "--data-dir", appliance.data_dir, "--to", url],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "empty" in (again.stdout + again.stderr), again.stdout + again.stderr


def counts_settled(server, sid, token, poll_id, expected):
    return wait_for(lambda: counts(server.ok("GET", f"/api/v1/sessions/{sid}", token=token), poll_id) == expected, 15,
                    f"counts {expected}")
