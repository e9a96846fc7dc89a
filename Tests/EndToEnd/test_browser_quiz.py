"""A quiz in a real browser: the presenter requires nicknames and writes two quiz questions in the
composer, three phones join with nicknames and answer (some right, some wrong), the server closes
each question at its deadline on its own, and the room's 1080p screen shows the countdown, the
answers with the right ones marked, the leaderboard and, once the session ends, the podium.
Screenshots land in artifacts/screenshots."""

import os

import pytest

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

from test_browser import browsers, presenter_signs_in_and_creates, pytestmark, shot, text, wait  # noqa: E402, F401 (a fixture; chromium or skip)
from test_browser_kinds import click, script, settled  # noqa: E402
from test_browser_qna import accept_confirm  # noqa: E402


AXE = os.environ.get("E2E_AXE_JS")  # axe-core's axe.min.js: when set, each quiz screen is checked with it


def accessible(driver):
    """No axe-core violations on the page as it is now (only when E2E_AXE_JS names axe.min.js)."""
    if not AXE:
        return
    with open(AXE) as f:
        driver.execute_script(f.read())
    # radiogroup: a rule of axe-core 3 that axe-core 4 retired (radios in a fieldset with a legend are fine).
    found = driver.execute_async_script("const done = arguments[0]; axe.run(document, { rules: { radiogroup: { enabled: false } } })"
                                        ".then(r => done(r.violations.map(v => [v.id, v.nodes.map(n => n.html)])))")
    assert found == [], found


def ordinal(n):
    return f"{n}{'th' if 10 < n % 100 < 14 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def points(n):
    return f"{n:,} point{'' if n == 1 else 's'}"


def join_as(phone, server, code, nickname):
    """Joins by typing the code; the session asks for a nickname as a second step."""
    phone.get(f"http://127.0.0.1:{server.port}/")
    wait(phone, lambda d: d.find_element(By.ID, "code")).send_keys(code + "\n")
    field = wait(phone, lambda d: d.find_element(By.ID, "nickname").is_displayed() and d.find_element(By.ID, "nickname"), message="the nickname step")
    assert phone.switch_to.active_element == field
    field.clear()
    field.send_keys(nickname + "\n")


def joined(phone):
    wait(phone, lambda d: "/s/" in d.current_url and "live" in d.find_element(By.ID, "status").text, message="joined")


def compose_quiz(presenter, question, options, right, seconds, kind="single"):
    """A quiz question written in the composer as a draft: the right answers ticked by label."""
    presenter.find_element(By.ID, "question").send_keys(question)
    presenter.find_element(By.CSS_SELECTOR, f"#kind option[value={kind}]").click()
    presenter.find_element(By.ID, "options").send_keys("\n".join(options))
    if not presenter.find_element(By.ID, "quiz").is_selected():
        presenter.find_element(By.ID, "quiz").click()
    assert not presenter.find_element(By.ID, "visibility").is_displayed(), "a quiz question's results are hidden until it closes"
    for label in right:
        click(presenter, f"#right-o{options.index(label) + 1}")
    limit = presenter.find_element(By.ID, "time-limit")
    limit.clear()
    limit.send_keys(str(seconds))
    if presenter.find_element(By.ID, "open-now").is_selected():
        presenter.find_element(By.ID, "open-now").click()
    click(presenter, "#composer button[type=submit]")
    wait(presenter, lambda d: question in text(d) and d.find_element(By.ID, "question").get_attribute("value") == "", message="quiz question created")


def answer(phone, labels, multiple=False):
    wait(phone, lambda d: d.find_elements(By.CSS_SELECTOR, "button.answer:not([disabled])"), message="answer buttons")
    for label in labels:
        button = "#" + phone.execute_script("return [...document.querySelectorAll('button.answer')].find(b => b.lastChild.textContent === arguments[0]).id", label)
        click(phone, button)
        if multiple:
            wait(phone, lambda d: d.find_element(By.CSS_SELECTOR, button).get_attribute("aria-pressed") == "true", message="chosen")
    if multiple:
        click(phone, "form button[type=submit]")
    wait(phone, lambda d: "Answer locked in" in text(d), message="locked in")
    # No second answer: every button is off now.
    assert all(not b.is_enabled() for b in phone.find_elements(By.CSS_SELECTOR, "button.answer"))


def leaderboard(server, sid):
    return server.ok("GET", f"/api/v1/sessions/{sid}/leaderboard", token=server.operator_token())


def board_rows(display):
    # What the room reads, top to bottom (rows slide into place; the DOM follows them).
    return script(display, "return [...document.querySelectorAll('.board li')].sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)"
                           ".map(li => [...li.children].map(e => e.textContent))")


def standing(entries, nickname):
    return next(e for e in entries if e["nickname"] == nickname)


def test_a_three_player_quiz_from_phones_to_podium(server, browsers):
    presenter = browsers.open()
    sid, code = presenter_signs_in_and_creates(presenter, server, "Friday pub quiz")
    click(presenter, "#nicknames")
    wait(presenter, lambda d: server.ok("GET", f"/api/v1/sessions/{sid}", token=server.operator_token())["nicknames"] == "required", message="nicknames required")
    display = browsers.open()
    display.get(presenter.find_element(By.ID, "display-link").get_attribute("href"))
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big img"))

    phones = [browsers.open(phone=True) for _ in range(3)]
    join_as(phones[0], server, code, "Ana")
    joined(phones[0])
    join_as(phones[1], server, code, "Ben")
    joined(phones[1])
    join_as(phones[2], server, code, "ANA")  # taken: nicknames are unique whatever the case
    wait(phones[2], lambda d: "choose another nickname" in d.find_element(By.ID, "error").text, message="taken")
    assert phones[2].switch_to.active_element == phones[2].find_element(By.ID, "nickname")
    accessible(phones[2])
    field = phones[2].find_element(By.ID, "nickname")
    field.clear()
    field.send_keys("Cleo\n")
    joined(phones[2])
    wait(presenter, lambda d: d.find_element(By.ID, "participants").text == "3")

    compose_quiz(presenter, "Which planet is known as the Red Planet?", ["Venus", "Mars", "Jupiter", "Saturn"], ["Mars"], 15)
    compose_quiz(presenter, "Which of these are prime numbers?", ["2", "3", "4", "5"], ["2", "3", "5"], 12, kind="multiple")
    assert "No poll is open" in text(phones[0])

    # Question 1: opened with Next; Ana and Ben right, Cleo wrong.
    assert "Which planet" in presenter.find_element(By.CSS_SELECTOR, "[data-action=next]").text
    click(presenter, "[data-action=next]")
    wait(phones[0], lambda d: len(d.find_elements(By.CSS_SELECTOR, "button.answer")) == 4 and d.find_elements(By.CSS_SELECTOR, ".clock [role=timer]"), message="the question on the phone")
    shot(phones[0], "phone-quiz-question.png")
    accessible(phones[0])
    for phone, label in zip(phones, ["Mars", "Mars", "Venus"]):
        answer(phone, [label])
    wait(display, lambda d: "3 answered" in text(d) and d.find_elements(By.CSS_SELECTOR, ".clock [role=timer]"), message="the count answered on the display")
    assert [t.split("\n")[-1] for t in script(display, "return [...document.querySelectorAll('.tiles li')].map(e => e.innerText)")] == ["Venus", "Mars", "Jupiter", "Saturn"]
    assert "Mars" not in script(display, "return document.querySelector('main').innerHTML.match(/right answer/) || ''"), "no right answer before the close"
    shot(display, "display-quiz-countdown-1080p.png")
    accessible(display)

    # The server closes it at its deadline by itself: the room sees the answers with Mars marked.
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".bars.quiz li.right"), timeout=40, message="the answers with the right one marked")
    assert script(display, "return [...document.querySelectorAll('.bars.quiz li.right .label')].map(e => e.textContent)") == ["Mars ✓ right answer"]
    assert "2 of 3 answered right" in text(display)
    settled(display, "display-quiz-results-1080p.png")
    entries = leaderboard(server, sid)["entries"]
    wait(display, lambda d: board_rows(d) == [[ordinal(e["rank"]), e["nickname"], points(e["score"])] for e in entries], timeout=20, message="the leaderboard on the display")
    for phone, nickname, right in zip(phones, ["Ana", "Ben", "Cleo"], [True, True, False]):
        e = standing(entries, nickname)
        wait(phone, lambda d: f"{ordinal(e['rank'])} of 3" in text(d) and f"total {points(e['score'])}" in text(d), message=f"{nickname}'s rank")
        assert ("Right! +" in text(phone)) == right and ("Not right" in text(phone)) == (not right)
        assert "The right answer: Mars" in text(phone)
    assert standing(entries, "Cleo")["score"] == 0 and standing(entries, "Ana")["score"] >= 500

    # Question 2 (multiple choice: the exact set is right): Ana and Cleo right, Ben wrong.
    assert "prime" in presenter.find_element(By.CSS_SELECTOR, "[data-action=next]").text
    click(presenter, "[data-action=next]")
    for phone, labels in zip(phones, [["2", "3", "5"], ["2", "3"], ["2", "3", "5"]]):
        answer(phone, labels, multiple=True)
    wait(presenter, lambda d: "3 of 3 answered" in d.find_element(By.ID, "quiz-live").text, message="the live count on the presenter page")
    presenter.execute_script("document.querySelector('.quiz').scrollIntoView()")
    shot(presenter, "presenter-quiz.png")
    accessible(presenter)
    wait(phones[1], lambda d: "Not right" in text(d), timeout=40, message="closed by the server")
    shot(phones[1], "phone-quiz-result.png")
    accessible(phones[1])
    final = leaderboard(server, sid)
    assert final["players"] == 3 and [e["nickname"] for e in final["entries"]][0] == "Ana", "two right answers come first"
    expected = [[ordinal(e["rank"]), e["nickname"], points(e["score"])] for e in final["entries"]]
    wait(display, lambda d: board_rows(d) == expected, timeout=20, message="the new order on the display")
    settled(display, "display-quiz-leaderboard-1080p.png")
    accessible(display)
    wait(presenter, lambda d: script(d, "return [...document.querySelectorAll('.leaders li')].map(li => [...li.children].map(e => e.textContent))")
         == [[r, n, s] for r, n, s in expected], message="the same leaderboard on the presenter page")
    for phone, nickname in zip(phones, ["Ana", "Ben", "Cleo"]):
        e = standing(final["entries"], nickname)
        wait(phone, lambda d: f"{ordinal(e['rank'])} of 3" in text(d) and f"total {points(e['score'])}" in text(d), message=f"{nickname}'s final rank")

    # The end: the podium, first in the middle.
    click(presenter, ".session button.danger")
    accept_confirm(presenter)
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".steps3 li"), message="the podium")
    top3 = final["entries"][:3]
    assert script(display, "return [...document.querySelectorAll('.steps3 .name')].map(e => e.textContent)") == [e["nickname"] for e in top3]
    left_to_right = script(display, "return [...document.querySelectorAll('.steps3 li')].sort((a, b) => a.getBoundingClientRect().left - b.getBoundingClientRect().left)"
                                    ".map(li => li.querySelector('.name').textContent)")
    assert left_to_right == [top3[1]["nickname"], top3[0]["nickname"], top3[2]["nickname"]]
    settled(display, "display-quiz-podium-1080p.png")
    accessible(display)
    wait(phones[0], lambda d: "This session has ended" in text(d) and "1st of 3" in text(d), message="the final standing on the phone")


def test_reset_scores_starts_a_new_round(server, browsers):
    presenter = browsers.open()
    sid, code = presenter_signs_in_and_creates(presenter, server, "Two rounds")
    display = browsers.open()
    display.get(presenter.find_element(By.ID, "display-link").get_attribute("href"))
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big img"))
    operator = server.operator_token()
    player = server.join(code)  # nicknames optional here: the leaderboard calls them "Player N"
    body = {"question": "2 + 2?", "options": ["3", "4"], "kind": "single", "quiz": {"correctOptionIds": ["o2"], "timeLimitSeconds": 5}, "open": True}
    poll = server.ok("POST", f"/api/v1/sessions/{sid}/polls", body, operator, expect=201)
    assert server.vote(sid, poll["pollId"], player["participantToken"], ["o2"])[0] in (200, 201)
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".board li"), timeout=30, message="the leaderboard after the close")
    name = leaderboard(server, sid)["entries"][0]["nickname"]
    assert name.startswith("Player ") and name in text(display)
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-action=reset-scores]"))
    click(presenter, "[data-action=reset-scores]")
    accept_confirm(presenter)
    wait(presenter, lambda d: script(d, "return [...document.querySelectorAll('.leaders .count')].map(e => e.textContent)") == ["0 points"], message="scores back to 0")
    assert leaderboard(server, sid)["entries"][0]["score"] == 0
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big img") and not d.find_elements(By.CSS_SELECTOR, ".board"), message="a new round: the display is idle again")
