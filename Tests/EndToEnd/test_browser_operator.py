"""The operator console (/operator) in a real browser, against the real binary.

The operator signs in on the presenter page and opens the console; phones join and open their
streams (WebSocket and SSE) and vote; the console shows the right participants and connections
by transport, live, without a reload. A 1 MiB ring is then filled until replay reaches back
less than the 24 h retention, and the console shows that warning with what to do. Non-operators
are refused by the API and see a sign-in message on the page; the stream ends with the sign-in
and at shutdown. The screenshot lands in artifacts/screenshots (the README's is a copy)."""

import threading
import urllib.parse

import pytest

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

from conftest import PASSWORD, Server, SSEStream, WSStream  # noqa: E402
from test_browser import browsers, pytestmark, shot, text, wait  # noqa: E402, F401 (a fixture; chromium or skip)

STATUS = "/api/v1/operator/status"
# A connection cap the test machine's open-files limit covers, so the only warnings are real ones.
ARGS = ["--rate-limits", "no", "--max-connections", "4000", "--ring-size", "1MiB"]


@pytest.fixture
def appliance(data_dir):
    server = Server(data_dir, extra_args=ARGS).start()
    yield server
    server.stop()


def sign_in(driver, server):
    driver.get(f"http://127.0.0.1:{server.port}/presenter")
    wait(driver, lambda d: d.find_elements(By.ID, "password"), message="the sign-in form")
    assert driver.find_element(By.ID, "console-link").get_attribute("href").endswith("/operator")
    driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
    wait(driver, lambda d: d.find_elements(By.ID, "title"), message="signed in")


def row(driver, session_id):
    """The console's row for a session, read in one script call (the page re-renders every 2 s)."""
    return driver.execute_script(
        "const r = document.querySelector(`#sessions tr[data-session='${arguments[0]}']`);"
        "return r && Object.fromEntries(['title', 'participants', 'websocket', 'sse', 'poll'].map(c => [c, r.querySelector('.' + c).textContent]));",
        session_id)


def warning_codes(driver):
    return driver.execute_script("return [...document.querySelectorAll('#warnings li')].map(li => li.dataset.code)")


def fill_the_ring(server, token):
    """Writes large draft polls into a session of their own until the 1 MiB ring has dropped
    events younger than the retention to make room (then ends that session)."""
    filler = server.ok("POST", "/api/v1/sessions", {"title": "Filler"}, token, expect=201)["sessionId"]
    options = [f"{i:02d} " + "a long option to take room in the ring " * 5 for i in range(12)]
    for n in range(900):
        status, data, _ = server.request("POST", f"/api/v1/sessions/{filler}/polls",
                                         {"question": f"Filler {n}", "options": options}, token)
        assert status in (201, 503), data  # 503: the ring waits for the projection; go on
        if n % 25 == 24 and server.ok("GET", "/readyz")["ring"]["limitedByCapacity"]:
            break
    assert server.ok("GET", "/readyz")["ring"]["limitedByCapacity"], "the ring never filled"
    server.ok("POST", f"/api/v1/sessions/{filler}/end", token=token)


def test_the_console_shows_the_room_live_and_warns_when_replay_runs_short(appliance, browsers):
    server = appliance
    console = browsers.open()
    console.set_window_size(1280, 1000)
    sign_in(console, server)
    console.get(f"http://127.0.0.1:{server.port}/operator")
    wait(console, lambda d: "live" in d.find_element(By.ID, "status").text, message="the console's stream is live")
    assert "No session is running" in text(console)
    assert console.find_element(By.ID, "backup").get_attribute("href").endswith("/api/v1/operator/backup")
    assert console.find_element(By.ID, "backup").get_attribute("download") is not None
    assert "0.1.0" in console.find_element(By.ID, "box").text

    token = server.operator_token()
    session = server.ok("POST", "/api/v1/sessions", {"title": "Town hall"}, token, expect=201)
    sid, presenter = session["sessionId"], session["presenterToken"]
    poll = server.poll(sid, presenter, options=("Coffee", "Tea"), question="Coffee or tea?", open=True)["pollId"]

    # Four phones join; three open their streams: two over WebSocket, one over SSE.
    phones = [server.join(session["joinCode"]) for _ in range(4)]
    streams = [WSStream(server.events_url("ws", sessionId=sid, token=p["participantToken"])) for p in phones[:2]]
    sse = SSEStream(server.port, "/events?" + urllib.parse.urlencode({"sessionId": sid, "token": phones[2]["participantToken"]}))
    assert sse.status == 200
    for phone in phones:
        assert server.vote(sid, poll, phone["participantToken"], ["o1"])[0] == 201

    expected = {"title": "Town hall", "participants": "4", "websocket": "2", "sse": "1", "poll": "Coffee or tea?"}
    wait(console, lambda d: row(d, sid) == expected, timeout=20, message=f"the session's row: {row(console, sid)}")
    wait(console, lambda d: "2 WebSocket · 1 SSE" in d.find_element(By.ID, "delivery").text, message="streams by transport")

    # A phone goes away: the console follows without a reload.
    streams[1].close()
    wait(console, lambda d: (row(d, sid) or {}).get("websocket") == "1", timeout=20, message="one WebSocket fewer")
    assert "replay-short" not in warning_codes(console)

    fill_the_ring(server, token)
    wait(console, lambda d: "replay-short" in warning_codes(d), timeout=20, message="the replay warning")
    warning = console.find_element(By.CSS_SELECTOR, "#warnings li[data-code=replay-short]").text
    assert "Replay reaches back only" in warning and "the ring is full" in warning, warning
    assert "What to do: Give the ring more space" in warning, warning
    assert "(ring full)" in console.find_element(By.ID, "storage").text

    # The sparklines (SVG drawn by the page, no library) fill in, a point every 10 s, while the
    # room keeps voting: wait for a minute of them for the screenshot.
    voting = threading.Event()

    def keep_voting():
        n = 0
        while not voting.is_set():
            phone = phones[n % len(phones)]
            server.vote(sid, poll, phone["participantToken"], ["o1" if (n // 7) % 3 else "o2"])
            n += 1
            voting.wait(0.05 + 0.25 * ((n // 40) % 3))

    voter = threading.Thread(target=keep_voting, daemon=True)
    voter.start()
    try:
        wait(console, lambda d: d.execute_script("return document.querySelectorAll('#history svg polyline')[0].getAttribute('points').split(' ').length") >= 7,
             timeout=120, message="a minute of sparkline points")
    finally:
        voting.set()
        voter.join()
    height = console.execute_script("return document.documentElement.scrollHeight")
    console.set_window_size(1280, min(max(height + 140, 900), 2400))
    wait(console, lambda d: row(d, sid) and "replay-short" in warning_codes(d), message="settled for the screenshot")
    shot(console, "operator-console.png")

    for stream in [streams[0], sse]:
        stream.close()


def test_non_operators_are_refused(appliance, browsers):
    server = appliance
    session = server.new_session("Keynote")
    participant = server.join(session["joinCode"])["participantToken"]

    status, body, _ = server.request("GET", STATUS)
    assert status == 401 and "sign in" in body["detail"], body
    for token in (session["presenterToken"], session["displayToken"], participant):
        assert server.request("GET", STATUS, token=token)[0] == 403
        stream = SSEStream(server.port, STATUS, headers={"Authorization": f"Bearer {token}"})
        assert stream.status == 403, "no stream for a non-operator either"

    # In the browser: nobody signed in sees how to sign in, never numbers.
    visitor = browsers.open()
    visitor.set_window_size(1280, 900)
    visitor.get(f"http://127.0.0.1:{server.port}/operator")
    wait(visitor, lambda d: d.find_elements(By.ID, "signin-needed"), message="the sign-in message")
    assert "Sign in as the operator" in text(visitor)
    assert visitor.find_element(By.ID, "signin-link").get_attribute("href").endswith("/presenter")
    assert not visitor.find_elements(By.ID, "sessions")


def test_the_stream_ends_with_the_sign_in_and_at_shutdown(appliance, browsers):
    server = appliance
    token = server.operator_token()
    stream = SSEStream(server.port, STATUS, headers={"Authorization": f"Bearer {token}"})
    assert stream.status == 200
    assert stream.response.getheader("Content-Type") == "text/event-stream"
    first = stream.next(5)
    assert first["_sse_event"] == "operator.status" and first["box"]["version"] == "0.1.0"
    assert stream.next(10)["_sse_event"] == "operator.status", "another snapshot follows (the heartbeat)"
    assert server.request("POST", "/api/v1/auth/logout", token=token)[0] == 204
    assert stream.ended.wait(15), "the stream ends with the sign-in"

    # In the browser: signing out elsewhere turns the console into the sign-in message.
    console = browsers.open()
    sign_in(console, server)
    console.get(f"http://127.0.0.1:{server.port}/operator")
    wait(console, lambda d: "live" in d.find_element(By.ID, "status").text, message="live")
    console.execute_script("fetch('/api/v1/auth/logout', {method: 'POST', credentials: 'same-origin'})")
    wait(console, lambda d: d.find_elements(By.ID, "signin-needed"), timeout=20, message="signed out: the sign-in message")

    # Shutdown ends an open console stream, so the server drains and exits cleanly.
    stream = SSEStream(server.port, STATUS, headers={"Authorization": f"Bearer {server.operator_token()}"})
    assert stream.next(5)["_sse_event"] == "operator.status"
    assert server.stop() == 0
    assert stream.ended.wait(5)
