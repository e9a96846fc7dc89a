"""The pages in a real browser: headless Chromium driven by WebDriver, against the real binary.

Presenter, display and three phones follow one session; the SSE fallback; a server restart in
the middle; a hostile question. Screenshots land in artifacts/screenshots (and the README's)."""

import os
import shutil
import tempfile
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from conftest import PASSWORD, ROOT, Server  # noqa: E402

SHOTS = os.path.join(ROOT, "artifacts", "screenshots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) or not os.path.exists(DRIVER), reason="chromium not installed")

NO_WEBSOCKET = """
window.WebSocket = class { constructor() { setTimeout(() => { this.onerror && this.onerror(new Event('error'));
  this.onclose && this.onclose({ code: 1006, reason: '' }); }, 10); } close() {} };
"""


class Browsers:
    def __init__(self):
        self.drivers = []
        self.dirs = []

    def open(self, phone=False, no_websocket=False):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        profile = tempfile.mkdtemp(prefix="tally-chromium-")
        self.dirs.append(profile)
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-extensions", "--disable-default-apps", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        if phone:
            options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}})
        else:
            options.add_argument("--window-size=1920,1080")
        driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
        driver.set_page_load_timeout(20)
        if no_websocket:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_WEBSOCKET})
        self.drivers.append(driver)
        return driver

    def close(self):
        for d in self.drivers:
            try:
                d.quit()
            except WebDriverException:
                pass
        for p in self.dirs:
            shutil.rmtree(p, ignore_errors=True)


@pytest.fixture
def browsers():
    b = Browsers()
    yield b
    b.close()


def wait(driver, predicate, timeout=15, message=""):
    # Pages re-render on every event; a handle that went stale just means "look again".
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: predicate(d), message)


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def shot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    driver.save_screenshot(os.path.join(SHOTS, name))


def bar_counts(driver):
    # Read in one script call: the page re-renders on every event, so element handles go stale.
    return driver.execute_script("return [...document.querySelectorAll('.bars .count')].map(e => e.textContent)")


def presenter_signs_in_and_creates(driver, server, title):
    driver.get(f"http://127.0.0.1:{server.port}/presenter")
    wait(driver, lambda d: d.find_elements(By.ID, "password"))
    driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
    wait(driver, lambda d: d.find_elements(By.ID, "title"))
    driver.find_element(By.ID, "title").send_keys(title + "\n")
    wait(driver, lambda d: "/presenter/" in d.current_url and d.find_elements(By.ID, "question"))
    session_id = driver.current_url.rsplit("/", 1)[1]
    code = driver.find_element(By.CSS_SELECTOR, ".session .code").text
    return session_id, code


def create_poll(driver, question, options, hidden=False, multiple=False):
    driver.find_element(By.ID, "question").send_keys(question)
    driver.find_element(By.ID, "options").send_keys("\n".join(options))
    if hidden:
        driver.find_element(By.CSS_SELECTOR, "#visibility option[value=hidden]").click()
    if multiple:
        driver.find_element(By.CSS_SELECTOR, "#kind option[value=multiple]").click()
    driver.find_element(By.CSS_SELECTOR, "#composer button[type=submit]").click()
    wait(driver, lambda d: question in text(d) and d.find_element(By.ID, "question").get_attribute("value") == "")


def join(driver, server, code):
    driver.get(f"http://127.0.0.1:{server.port}/")
    field = wait(driver, lambda d: d.find_element(By.ID, "code"))
    field.send_keys(code.lower() + "\n")
    wait(driver, lambda d: "/s/" in d.current_url and "live" in d.find_element(By.ID, "status").text)


def vote(driver, label):
    def click(d):
        choices = [c for c in d.find_elements(By.CSS_SELECTOR, ".choice") if c.text == label]
        if choices:
            choices[0].click()
        return bool(choices)
    wait(driver, click)
    wait(driver, lambda d: "Vote accepted" in text(d))


def test_a_room_follows_one_session(server, browsers):
    presenter = browsers.open()
    session_id, code = presenter_signs_in_and_creates(presenter, server, "Quarterly town hall")
    display_url = presenter.find_element(By.ID, "display-link").get_attribute("href")
    display = browsers.open()
    display.get(display_url)
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big img"))  # idle: the QR code
    assert code in text(display)
    qr = display.find_element(By.CSS_SELECTOR, ".join img")
    assert display.execute_script("return arguments[0].naturalWidth", qr) > 0, "the QR code image loaded"
    shot(display, "display-idle-1080p.png")

    phones = [browsers.open(phone=True) for _ in range(3)]
    for phone in phones:
        join(phone, server, code)
    assert "No poll is open" in text(phones[0])
    wait(presenter, lambda d: d.find_element(By.ID, "participants").text == "3")

    create_poll(presenter, "Where should the offsite be?", ["Lisbon", "Oslo", "Porto"])
    for phone, place in zip(phones, ["Lisbon", "Oslo", "Lisbon"]):
        vote(phone, place)
    wait(display, lambda d: bar_counts(d) == ["2 · 67%", "1 · 33%", "0 · 0%"], message="display counts")
    assert "3 votes" in text(display)
    shot(display, "display-live-1080p.png")
    vote(phones[1], "Lisbon")  # a change of mind
    wait(display, lambda d: bar_counts(d) == ["3 · 100%", "0 · 0%", "0 · 0%"])
    wait(presenter, lambda d: "3 ballots" in text(d))
    shot(phones[0], "participant-phone.png")
    shot(presenter, "presenter.png")

    # Hidden results: counts reach only the presenter until the reveal; the display shows the
    # room what the phones see (the question, the options, how many voted).
    create_poll(presenter, "Rate the keynote", ["Great", "Fine", "Meh"], hidden=True)
    vote(phones[0], "Great")
    vote(phones[2], "Meh")
    wait(display, lambda d: "Rate the keynote" in text(d) and "2 votes" in text(d), message="display turnout")
    assert "hidden until the presenter reveals them" in text(display)
    assert not display.find_elements(By.CSS_SELECTOR, ".bars"), "no counts on the room's screen"
    assert all(label in text(display) for label in ("Great", "Fine", "Meh"))
    shot(display, "display-hidden-1080p.png")
    wait(presenter, lambda d: "2 ballots" in text(d))
    assert "reveals them" in text(phones[1]) and not phones[1].find_elements(By.CSS_SELECTOR, ".bars")
    presenter.find_element(By.CSS_SELECTOR, "[data-action=close]").click()
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-action=reveal]"))
    presenter.find_element(By.CSS_SELECTOR, "[data-action=reveal]").click()
    wait(phones[1], lambda d: bar_counts(d) == ["1 · 50%", "0 · 0%", "1 · 50%"], message="revealed to participants")

    # Closing joining: a phone scanning the QR code now is told why it cannot join.
    presenter.find_element(By.ID, "joining").click()
    wait(presenter, lambda d: d.find_elements(By.ID, "joining-note"))
    late = browsers.open(phone=True)
    link = presenter.find_element(By.CSS_SELECTOR, ".session a").get_attribute("href")
    late.get(f"http://127.0.0.1:{server.port}/j/" + link.split("/j/", 1)[1])
    wait(late, lambda d: "closed joining" in text(d), message="join page explains closed joining")


def test_a_scanned_join_link_joins_at_once(server, browsers):
    s = server.new_session("Scan me")
    url = server.ok("GET", f"/api/v1/sessions/{s['sessionId']}", token=s["presenterToken"])["joinUrl"]
    assert "?k=" in url
    phone = browsers.open(phone=True)
    phone.get(f"http://127.0.0.1:{server.port}/j/" + url.split("/j/", 1)[1])
    wait(phone, lambda d: "/s/" in d.current_url and "live" in d.find_element(By.ID, "status").text)


def test_first_run_set_up_with_the_code_on_the_box_screen(data_dir, browsers):
    server = Server(data_dir, password=None).start()
    try:
        screen = browsers.open()
        screen.get(f"http://127.0.0.1:{server.port}/display")  # the kiosk, on the box itself
        code = wait(screen, lambda d: d.find_element(By.ID, "setup-code")).text
        assert f"set-up code {code}" in server.logs()
        shot(screen, "display-setup-1080p.png")
        laptop = browsers.open()
        laptop.get(f"http://127.0.0.1:{server.port}/presenter")
        wait(laptop, lambda d: d.find_elements(By.ID, "setup-code"))
        laptop.find_element(By.ID, "setup-code").send_keys("WRONG-CODE")
        laptop.find_element(By.ID, "password").send_keys("venue-staff-pw\n")
        wait(laptop, lambda d: "wrong set-up code" in text(d))
        field = laptop.find_element(By.ID, "setup-code")
        field.clear()
        field.send_keys(code)
        laptop.find_element(By.ID, "password").send_keys("venue-staff-pw\n")
        wait(laptop, lambda d: d.find_elements(By.ID, "title"), message="signed in after set-up")
    finally:
        server.stop()


def test_the_same_flow_over_the_sse_fallback(server, browsers):
    s = server.new_session("No WebSocket here")
    phone = browsers.open(phone=True, no_websocket=True)
    join(phone, server, s["joinCode"])
    poll = server.poll(s["sessionId"], s["presenterToken"], options=["Tea", "Coffee"], open=True)
    wait(phone, lambda d: "Ship it?" in text(d))
    vote(phone, "Coffee")
    wait(phone, lambda d: bar_counts(d) == ["0 · 0%", "1 · 100%"])
    assert "transport=sse" in server.logs() and "role=participant" in server.logs()
    server.ok("POST", f"/api/v1/sessions/{s['sessionId']}/polls/{poll['pollId']}/close", token=s["presenterToken"])
    wait(phone, lambda d: "No poll is open" in text(d))


def test_pages_recover_by_themselves_after_a_server_restart(data_dir, browsers):
    server = Server(data_dir).start()
    try:
        s = server.new_session("Restart drill")
        phone = browsers.open(phone=True)
        join(phone, server, s["joinCode"])
        display = browsers.open()
        display.get(f"http://127.0.0.1:{server.port}/display/{s['sessionId']}?token={s['displayToken']}")
        wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big"))
        poll = server.poll(s["sessionId"], s["presenterToken"], options=["Red", "Blue"], open=True)
        vote(phone, "Blue")
        server.stop()
        wait(phone, lambda d: "reconnecting" in d.find_element(By.ID, "status").text)
        # While the box is down, nothing is lost; when it comes back, the pages catch up alone.
        server = Server(data_dir, port=server.port).start()
        server.vote(s["sessionId"], poll["pollId"], server.join(s["joinCode"])["participantToken"], ["o1"])
        wait(display, lambda d: bar_counts(d) == ["1 · 50%", "1 · 50%"], timeout=30, message="display counts")
        wait(phone, lambda d: "live" in d.find_element(By.ID, "status").text, timeout=30)
        phone.refresh()  # the participant reloads: same identity, same ballot
        wait(phone, lambda d: d.execute_script("return [...document.querySelectorAll('.choice.on')].map(e => e.textContent)") == ["Blue"])
    finally:
        server.stop()


def test_a_hostile_question_is_shown_as_text(server, browsers):
    s = server.new_session("<b>bold</b> title")
    hostile = '<img src=x onerror="document.title=\'pwned\'"><script>alert(1)</script>'
    server.poll(s["sessionId"], s["presenterToken"], options=[hostile, "fine"], open=True)
    phone = browsers.open(phone=True)
    join(phone, server, s["joinCode"])
    wait(phone, lambda d: hostile in text(d))
    assert "<b>bold</b> title" in text(phone)
    assert not phone.find_elements(By.CSS_SELECTOR, "main img, main script, main b")
    assert phone.title != "pwned"
    with pytest.raises(NoAlertPresentException):
        phone.switch_to.alert.text


def test_pages_are_small_and_strict(server):
    status, body, resp = server.request("GET", "/")
    csp = resp.getheader("Content-Security-Policy")
    assert status == 200 and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.getheader("X-Content-Type-Options") == "nosniff" and resp.getheader("Referrer-Policy") == "no-referrer"
    # Everything a phone loads for the participant page, uncompressed.
    total = 0
    for path in ("/s/abc", "/assets/tally.js", "/assets/participant.js", "/assets/style.css"):
        status, body, _ = server.request("GET", path)
        assert status == 200
        total += len(body.encode())
        assert "http://" not in body.replace("http://www.w3.org", "") and "https://" not in body, f"{path} references another host"
    # The display's and the presenter's own styles are in display.css and presenter.css: phones never load them.
    assert total < 48 * 1024, f"participant page is {total} bytes"
