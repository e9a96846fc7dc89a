"""Audience Q&A in a real browser: three phones ask and upvote, a crowd joins through the API,
the room's 1080p screen shows the top questions (or the highlighted one, large), and the presenter
opens, moderates and closes it. Screenshots land in artifacts/screenshots."""

import pytest

pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from test_browser import browsers, join, pytestmark, shot, text, wait  # noqa: E402, F401 (a fixture; chromium or skip)
from test_browser_kinds import click, crowd, room, script, settled  # noqa: E402


def open_qna(presenter, pre=False, anonymous=True):
    click(presenter, "#qna-pre" if pre else "#qna-post")
    box = presenter.find_element(By.ID, "qna-anonymous")
    if box.is_selected() != anonymous:
        box.click()
    click(presenter, "[data-action=qna-open]")
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-action=qna-close]"), message="Q&A open")


def ask(phone, question, name=None):
    wait(phone, lambda d: d.find_element(By.ID, "ask").is_displayed(), message="the ask form")
    phone.find_element(By.ID, "ask").send_keys(question)
    if name:
        phone.find_element(By.ID, "ask-name").send_keys(name)
    click(phone, "#qna-pane form button[type=submit]")
    wait(phone, lambda d: "sent" in d.find_element(By.CSS_SELECTOR, "#qna-pane .note").text.lower(), message="question sent")


def api_ask(server, sid, token, question):
    status, data, _ = server.request("POST", f"/api/v1/sessions/{sid}/questions", {"text": question}, token)
    assert status == 201, data
    return data["questionId"]


def api_upvote(server, sid, token, question_id):
    status, data, _ = server.request("POST", f"/api/v1/sessions/{sid}/questions/{question_id}/upvote", None, token)
    assert status == 200 and data["upvoted"], data


def upvote(phone, question):
    selector = f"[aria-label^='Upvote “{question}”']"
    click(phone, selector)
    wait(phone, lambda d: d.find_element(By.CSS_SELECTOR, selector).get_attribute("aria-pressed") == "true", message="upvoted")


def top_rows(display):
    return script(display, "return [...document.querySelectorAll('.top li:not(.empty)')].map(li => [li.querySelector('.t').textContent, li.querySelector('.n').textContent])")


def phone_questions(phone):
    return script(phone, "return [...document.querySelectorAll('.questions li')].map(li => li.querySelector('.q p').textContent)")


def accept_confirm(driver):
    def accept(d):
        try:
            d.switch_to.alert.accept()
            return True
        except NoAlertPresentException:
            return False
    wait(driver, accept, message="confirmation asked")


def test_three_phones_ask_and_upvote_and_the_room_sees_the_top_five(server, browsers):
    presenter, display, first, sid, code = room(server, browsers, "Engineering all-hands")
    phones = [first] + [browsers.open(phone=True) for _ in range(2)]
    for phone in phones[1:]:
        join(phone, server, code)
    assert not first.find_elements(By.ID, "tab-qna"), "no Q&A tab before the presenter opens it"
    open_qna(presenter, anonymous=False)
    wait(display, lambda d: "Top questions" in text(d), message="the display switches to Q&A")
    assert display.find_elements(By.CSS_SELECTOR, ".join img"), "the join QR code stays on screen"

    # A crowd asks and upvotes through the API; three phones through the page.
    people = crowd(server, code, 6)
    asked = {q: api_ask(server, sid, people[i], q) for i, q in enumerate(
        ["Is there a recording of the keynote?", "Where is the after-party?", "Will there be a hybrid option next year?", "Who picked the music?"])}
    for token in people[1:]:
        api_upvote(server, sid, token, asked["Is there a recording of the keynote?"])
    for token in people[2:5]:
        api_upvote(server, sid, token, asked["Where is the after-party?"])
    api_upvote(server, sid, people[3], asked["Will there be a hybrid option next year?"])

    wait(first, lambda d: d.find_element(By.ID, "tab-qna").get_attribute("aria-selected") == "true", message="no poll open: the Q&A tab is shown")
    assert first.find_element(By.ID, "ask").get_attribute("maxlength") == "280"
    first.find_element(By.ID, "ask").send_keys("Will the slides be shared?")
    assert first.find_element(By.ID, "ask-n").text == "26/280"
    first.find_element(By.ID, "ask-name").send_keys("Ana")
    click(first, "#qna-pane form button[type=submit]")
    wait(first, lambda d: "Question sent" in text(d))
    ask(phones[1], "When is the next release?")
    ask(phones[2], "Can we get more remote days?")

    wait(first, lambda d: "Your question" in d.find_element(By.CSS_SELECTOR, ".questions li.mine").text, message="our question is marked")
    mine = first.find_element(By.CSS_SELECTOR, ".questions li.mine")
    assert "Ana" in mine.text and not mine.find_elements(By.CSS_SELECTOR, "button.votes"), "no upvote on one's own question"
    for phone in phones[1:]:
        upvote(phone, "Will the slides be shared?")
    for token in people[:2]:
        api_upvote(server, sid, token, asked_id(server, sid, "Will the slides be shared?"))
    upvote(first, "Can we get more remote days?")

    expected = [["Is there a recording of the keynote?", "▲ 5"], ["Will the slides be shared?", "▲ 4"], ["Where is the after-party?", "▲ 3"],
                ["Will there be a hybrid option next year?", "▲ 1"], ["Can we get more remote days?", "▲ 1"]]
    wait(display, lambda d: top_rows(d) == expected, message="the top five in order with their counts")
    assert "Who picked the music?" not in text(display) and "When is the next release?" not in text(display)
    assert "7 questions" in text(display)
    settled(display, "display-qna-1080p.png")

    # Each phone sees every question with the counts, by top or by newest.
    wait(phones[2], lambda d: phone_questions(d)[:2] == ["Is there a recording of the keynote?", "Will the slides be shared?"])
    wait(first, lambda d: "4" == d.find_element(By.CSS_SELECTOR, ".questions li.mine .n").text, message="our question's count")
    click(first, "#qna-pane .seg button:last-child")
    wait(first, lambda d: phone_questions(d)[:3] == ["Can we get more remote days?", "When is the next release?", "Will the slides be shared?"], message="newest first")
    assert first.find_element(By.CSS_SELECTOR, "#qna-pane .seg button:last-child").get_attribute("aria-pressed") == "true"
    settled(first, "phone-qna.png")

    # An upvote taken back.
    selector = "[aria-label^='Upvote “Can we get more remote days?”']"
    click(first, selector)
    wait(first, lambda d: d.find_element(By.CSS_SELECTOR, selector).get_attribute("aria-pressed") == "false")
    wait(display, lambda d: ["Can we get more remote days?", "▲ 1"] not in top_rows(d) and len(top_rows(d)) == 5, message="the count went down")

    # Highlighted: large on the display; answered: back to the top five, without it.
    click(presenter, "[aria-label='Highlight “Will the slides be shared?”']")
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".big-q") and "Will the slides be shared?" in d.find_element(By.CSS_SELECTOR, ".big-q").text,
         message="the highlighted question large")
    assert "Ana" in display.find_element(By.CSS_SELECTOR, ".big-q").text
    settled(display, "display-qna-highlight-1080p.png")
    click(presenter, "[aria-label='Highlight “Is there a recording of the keynote?”']")
    wait(display, lambda d: "Is there a recording of the keynote?" in d.find_element(By.CSS_SELECTOR, ".big-q").text, message="the highlight moved")
    click(presenter, "[aria-label='Answered “Is there a recording of the keynote?”']")
    wait(display, lambda d: not d.find_elements(By.CSS_SELECTOR, ".big-q") and len(top_rows(d)) == 5, message="answered: the top five again")
    assert "Is there a recording of the keynote?" not in [t for t, _ in top_rows(display)]
    wait(phones[1], lambda d: "✓ Answered" in d.find_element(By.CSS_SELECTOR, ".questions li.answered").text, message="answered on the phones")

    # Withdrawn: gone from every screen.
    click(phones[1], "[aria-label='Withdraw your question “When is the next release?”']")
    accept_confirm(phones[1])
    wait(phones[1], lambda d: "When is the next release?" not in phone_questions(d), message="withdrawn")
    wait(first, lambda d: "When is the next release?" not in phone_questions(d), message="gone from the other phones")
    wait(presenter, lambda d: "When is the next release?" not in text(d), message="gone from the presenter page")


def asked_id(server, sid, question):
    snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=server.operator_token())
    return next(q["questionId"] for q in snapshot["qna"]["questions"] if q["text"] == question)


def test_pre_moderation_keeps_a_question_off_the_room_until_approved(server, browsers):
    presenter, display, author, sid, code = room(server, browsers, "Leadership Q&A")
    other = browsers.open(phone=True)
    join(other, server, code)
    operator = server.operator_token()
    poll = server.poll(sid, operator, options=["Yes", "No"], open=True)
    open_qna(presenter, pre=True)
    # A poll is open: it stays in front on the phone and on the display; Q&A is one tab away.
    wait(author, lambda d: d.find_elements(By.ID, "tab-qna"), message="the Q&A tab")
    assert author.find_element(By.ID, "tab-poll").get_attribute("aria-selected") == "true" and "Ship it?" in text(author)
    wait(display, lambda d: "Ship it?" in text(d), message="the poll stays on the display")
    author.find_element(By.ID, "tab-poll").send_keys(Keys.ARROW_RIGHT)  # the keyboard moves between tabs
    wait(author, lambda d: d.find_element(By.ID, "tab-qna").get_attribute("aria-selected") == "true" and d.find_element(By.ID, "ask").is_displayed())
    assert not author.find_element(By.ID, "ask-name").is_displayed(), "anonymous: no name field"
    server.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll['pollId']}/close", token=operator)
    wait(display, lambda d: "Top questions" in text(d), message="no poll open: the display shows Q&A")

    ask(author, "Will we hire in Lisbon?")
    wait(author, lambda d: "Waiting for the presenter to approve it" in text(d), message="the author sees it waiting")
    wait(presenter, lambda d: "1 waiting for approval" in text(d), message="in the moderation queue")
    people = crowd(server, code, 3)
    api_ask(server, sid, people[0], "What is the budget for training?")
    api_ask(server, sid, people[1], "Something rude")
    api_ask(server, sid, people[2], "Are we moving offices?")
    wait(presenter, lambda d: "4 waiting for approval" in text(d))
    click(other, "#tab-qna")
    assert "Will we hire in Lisbon?" not in text(other) and "Will we hire in Lisbon?" not in text(display)

    click(presenter, "[aria-label='Approve “Will we hire in Lisbon?”']")
    wait(display, lambda d: [t for t, _ in top_rows(d)] == ["Will we hire in Lisbon?"], message="approved: on the display")
    wait(other, lambda d: "Will we hire in Lisbon?" in phone_questions(d), message="approved: on the other phones")
    wait(author, lambda d: "Waiting for the presenter" not in text(d) and "Your question" in text(d), message="the author sees it shown")
    click(presenter, "[aria-label='Approve “What is the budget for training?”']")
    click(presenter, "[aria-label='Hide “Something rude”']")
    wait(presenter, lambda d: "1 waiting for approval" in text(d) and d.find_elements(By.CSS_SELECTOR, ".qna .mod li.off .flag.hidden"))
    upvote(other, "Will we hire in Lisbon?")
    wait(display, lambda d: top_rows(d) == [["Will we hire in Lisbon?", "▲ 1"], ["What is the budget for training?", "▲ 0"]])
    assert "Something rude" not in text(display) and "Something rude" not in text(other)
    wait(presenter, lambda d: "▲ 1" in text(d))
    presenter.execute_script("document.querySelector('.qna').scrollIntoView()")
    settled(presenter, "presenter-qna.png")

    click(presenter, "[aria-label='Hide “Will we hire in Lisbon?”']")
    wait(display, lambda d: "Will we hire in Lisbon?" not in text(d), message="hidden: off the display")
    wait(other, lambda d: "Will we hire in Lisbon?" not in phone_questions(d), message="hidden: off the phones")
    click(presenter, "[aria-label='Unhide “Will we hire in Lisbon?”']")
    wait(display, lambda d: "Will we hire in Lisbon?" in text(d), message="back after unhiding")

    click(presenter, "[data-action=qna-close]")
    wait(author, lambda d: "Questions are closed" in text(d) and not d.find_element(By.ID, "ask").is_displayed(), message="closed: read only")
    wait(display, lambda d: "Top questions" not in text(d), message="closed: off the display")
