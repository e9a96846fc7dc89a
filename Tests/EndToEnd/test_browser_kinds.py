"""The question kinds in a real browser: scale, ranking, word cloud and open text, each created in
the presenter's composer, answered on a phone, shown on the room's 1080p screen; moderation of
words and answers on the presenter page. A crowd joins through the API so the screens fill up
the way they do in a real room. Screenshots land in artifacts/screenshots."""

import os

import pytest

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from conftest import Server  # noqa: E402
from test_browser import browsers, join, presenter_signs_in_and_creates, pytestmark, shot, text, wait  # noqa: E402, F401 (a fixture; chromium or skip)


def compose(driver, question, kind, options=(), **fields):
    """Creates a poll in the composer; `fields` by element id (underscores for dashes)."""
    driver.find_element(By.ID, "question").send_keys(question)
    Select(driver.find_element(By.ID, "kind")).select_by_value(kind)
    assert driver.find_element(By.ID, "options").is_displayed() == (kind in ("single", "multiple", "ranking")), "only the kind's own fields"
    if options:
        driver.find_element(By.ID, "options").send_keys("\n".join(options))
    for name, value in fields.items():
        element = driver.find_element(By.ID, name.replace("_", "-"))
        assert element.is_displayed(), f"{name} is shown for {kind}"
        if element.tag_name == "select":
            Select(element).select_by_value(str(value))
        elif element.get_attribute("type") == "checkbox":
            if element.is_selected() != value:
                element.click()
        else:
            element.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#composer button[type=submit]").click()
    wait(driver, lambda d: question in text(d) and d.find_element(By.ID, "question").get_attribute("value") == "", message="poll created")
    return wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "article.poll.open").get_attribute("data-poll"))


def room(server, browsers, title):
    """A presenter signed in with a new session, the display showing it and one phone joined."""
    presenter = browsers.open()
    session_id, code = presenter_signs_in_and_creates(presenter, server, title)
    display = browsers.open()
    display.get(presenter.find_element(By.ID, "display-link").get_attribute("href"))
    wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big img"))
    phone = browsers.open(phone=True)
    join(phone, server, code)
    return presenter, display, phone, session_id, code


def crowd(server, code, n):
    return [server.join(code)["participantToken"] for _ in range(n)]


def answer(server, session_id, poll_id, token, body):
    status, data, _ = server.request("POST", f"/api/v1/sessions/{session_id}/polls/{poll_id}/votes", body, token)
    assert status in (200, 201), data
    return data


def script(driver, js):
    # One script call: pages re-render on events, so element handles may go stale between calls.
    return driver.execute_script(js)


def settled(driver, name):
    """A screenshot once words have grown, answers faded in and bars moved (no animation running)."""
    wait(driver, lambda d: d.execute_script("return document.getAnimations().every(a => a.playState !== 'running')"))
    shot(driver, name)


def press(driver, selector, keys):
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).send_keys(keys) or True)


def click(driver, selector):
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).click() or True)


def test_a_scale_by_tapping_and_by_keyboard(server, browsers):
    presenter, display, phone, sid, code = room(server, browsers, "Product conference")
    poll = compose(presenter, "How likely are you to recommend this conference to a colleague?", "scale",
                   scale_min=0, scale_max=10, scale_min_label="Not at all likely", scale_max_label="Extremely likely")
    values = [10, 9, 9, 8, 8, 8, 10, 7, 9, 6, 8, 9, 10, 5, 8, 9, 7, 10, 9, 8, 3, 9, 10, 8]
    for token, value in zip(crowd(server, code, len(values)), values):
        answer(server, sid, poll, token, {"value": value})

    wait(phone, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".pick")) == 11, message="0 to 10 as buttons")
    assert "0 = Not at all likely" in text(phone) and "10 = Extremely likely" in text(phone)
    click(phone, "label.pick:nth-child(8)")  # the button "7"
    wait(phone, lambda d: "Vote accepted" in text(d))
    # The keyboard: the arrow key moves the choice to 8 and votes again; the slider follows.
    press(phone, "#s-7", Keys.ARROW_RIGHT)
    wait(phone, lambda d: script(d, "return [document.querySelector('.pick input:checked').value, document.getElementById('slider').value,"
                                    " document.activeElement.id]") == ["8", "8", "s-8"], message="keyboard choice and slider in step")
    wait(phone, lambda d: f"8: {values.count(8) + 1} votes" in script(d, "return [...document.querySelectorAll('.hist li')].map(e => e.getAttribute('aria-label')).join('|')"))
    settled(phone, "phone-scale.png")

    everyone = values + [8]
    mean = sum(everyone) / len(everyone)  # 25 ballots: exact at two decimals
    wait(display, lambda d: f"Mean {mean:g}" in text(d) and "median 8" in text(d) and "25 votes" in text(d), message="display mean")
    counts = script(display, "return [...document.querySelectorAll('.hist .count')].map(e => e.textContent)")
    assert counts == [str(everyone.count(v)) for v in range(11)]
    marker = display.find_element(By.CSS_SELECTOR, ".hist .mean")
    assert marker.is_displayed() and f"mean {mean:g}" in marker.text
    settled(display, "display-scale-1080p.png")


def test_a_ranking_by_dragging_and_with_the_arrow_buttons(server, browsers):
    presenter, display, phone, sid, code = room(server, browsers, "Meetup planning")
    topics = ["Server-side Swift", "Accessibility", "On-device ML", "Testing", "Build tooling"]
    poll = compose(presenter, "Which topics should the next meetups cover?", "ranking", topics)
    snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=server.operator_token())
    ids = {o["label"]: o["id"] for o in next(p for p in snapshot["polls"] if p["poll"]["id"] == poll)["poll"]["options"]}
    ballots = [["Accessibility", "Testing", "Server-side Swift", "On-device ML", "Build tooling"]] * 7 \
        + [["Server-side Swift", "Accessibility", "Build tooling", "Testing", "On-device ML"]] * 5 \
        + [["On-device ML", "Server-side Swift", "Accessibility", "Testing", "Build tooling"]] * 4 \
        + [["Testing", "Build tooling", "Accessibility", "Server-side Swift", "On-device ML"]] * 3
    for token, order in zip(crowd(server, code, len(ballots)), ballots):
        answer(server, sid, poll, token, {"ranking": [ids[label] for label in order]})

    labels = lambda d: script(d, "return [...document.querySelectorAll('.rank .label')].map(e => e.textContent)")  # noqa: E731
    wait(phone, lambda d: labels(d) == topics, message="the options to rank")
    # Dragged by its handle to the top (mouse here; the same pointer events come from a finger).
    grip = phone.find_elements(By.CSS_SELECTOR, ".rank .grip")[1]
    top = phone.find_elements(By.CSS_SELECTOR, ".rank li")[0]
    ActionChains(phone).click_and_hold(grip).move_to_element_with_offset(top, 0, -10).release().perform()
    wait(phone, lambda d: labels(d)[:2] == ["Accessibility", "Server-side Swift"], message="dragged to the top")
    assert "Accessibility is now number 1" in text(phone)
    click(phone, "[aria-label='Move Testing up']")
    click(phone, "[aria-label='Move Testing up']")
    wait(phone, lambda d: labels(d) == ["Accessibility", "Testing", "Server-side Swift", "On-device ML", "Build tooling"])
    # A keyboard user keeps their place: focus stays on the item that moved.
    assert phone.switch_to.active_element.get_attribute("aria-label") == "Move Testing up"
    assert "Testing is now number 2" in text(phone)
    click(phone, "form button[type=submit]")
    wait(phone, lambda d: "Ranking accepted" in text(d))
    settled(phone, "phone-ranking.png")

    ballots.append(["Accessibility", "Testing", "Server-side Swift", "On-device ML", "Build tooling"])
    points = {t: sum(len(topics) - 1 - b.index(t) for b in ballots) for t in topics}
    expected = sorted(topics, key=lambda t: -points[t])
    rows = lambda d: script(d, "return [...document.querySelectorAll('.bars li')].map(e => e.querySelector('.label').textContent + ' | ' + e.querySelector('.count').textContent)")  # noqa: E731
    wait(display, lambda d: [r.split(" | ")[0] for r in rows(d)] == [f"{i + 1}. {t}" for i, t in enumerate(expected)], message="display order")
    wait(display, lambda d: all(f"{points[t]} points" in r for t, r in zip(expected, rows(d))) and "20 votes" in text(d))
    settled(display, "display-ranking-1080p.png")


# Answers a conference room gives to "one word for today": a few big ones and a long tail.
WORDS = [["inspiring", "community", "Swift"], ["inspiring", "fun"], ["insightful", "practical", "coffee"], ["inspiring", "networking"],
         ["fun", "community"], ["insightful", "inspiring", "long"], ["coffee"], ["hands-on", "practical", "inspiring"],
         ["Swift", "open source", "fun"], ["inspiring", "welcoming"], ["insightful", "networking", "community"], ["too short"],
         ["inspiring", "accessible", "friendly"], ["fun", "insightful"], ["community", "Swift", "inspiring"], ["nerdy", "fun"],
         ["practical", "insightful", "coffee"], ["inspiring", "energising"], ["networking", "friendly", "community"],
         ["accessible", "inspiring", "Swift"], ["fun", "long"], ["insightful", "hands-on"], ["welcoming", "community", "inspiring"],
         ["great speakers", "fun", "insightful"]]


def test_a_word_cloud_grows_on_the_display(server, browsers):
    presenter, display, phone, sid, code = room(server, browsers, "Swift Summit")
    poll = compose(presenter, "Which word describes today for you?", "wordcloud", max_words=3)
    tokens = crowd(server, code, len(WORDS))
    for token, words in zip(tokens[:12], WORDS[:12]):
        answer(server, sid, poll, token, {"words": words})
    wait(display, lambda d: "coffee" in text(d) and "too short" in text(d), message="first words")
    first = script(display, "return [...document.querySelectorAll('.cloud li')].map(e => [e.textContent, (r => r.x + r.width / 2)(e.getBoundingClientRect())])")
    for token, words in zip(tokens[12:], WORDS[12:]):
        answer(server, sid, poll, token, {"words": words})

    wait(phone, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#w-1, #w-2, #w-3")) == 3, message="three word fields")
    phone.find_element(By.ID, "w-1").send_keys("inspiring")
    phone.find_element(By.ID, "w-2").send_keys("well organised")
    assert phone.find_element(By.ID, "w-2-n").text == "14/25"
    assert phone.find_element(By.ID, "w-1").get_attribute("maxlength") == "25"
    click(phone, "form button[type=submit]")
    wait(phone, lambda d: "Words sent" in text(d) and "You sent: inspiring, well organised" in text(d))

    counts = {}
    for words in WORDS + [["inspiring", "well organised"]]:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    shown = lambda d: script(d, "return Object.fromEntries([...document.querySelectorAll('.cloud li:not(.gone)')].map(e => [e.textContent, parseFloat(getComputedStyle(e).fontSize)]))")  # noqa: E731
    wait(display, lambda d: set(shown(d)) == set(counts), message="every word on the display")
    # The word most people gave is the biggest, and it stays big once the sizes settle.
    wait(display, lambda d: max(shown(d).items(), key=lambda kv: kv[1])[0] == "inspiring" and shown(d)["inspiring"] > 2 * shown(d)["too short"])
    assert "25 responses" in text(display)
    # The layout grew without reshuffling: words keep their left-to-right order from before
    # (words that stood almost one above the other aside).
    xs = dict(script(display, "return [...document.querySelectorAll('.cloud li')].map(e => [e.textContent, (r => r.x + r.width / 2)(e.getBoundingClientRect())])"))
    swapped = [(a, b) for a, xa in first for b, xb in first if xa + 10 < xb and xs[a] >= xs[b]]
    assert not swapped, f"words moved past each other: {swapped}"
    wait(phone, lambda d: "inspiring ×" in text(d), message="results on the phone")
    settled(display, "display-wordcloud-1080p.png")
    settled(phone, "phone-words.png")


def test_hiding_a_word_takes_it_off_the_display(server, browsers):
    presenter, display, phone, sid, code = room(server, browsers, "Retro")
    poll = compose(presenter, "One word for this sprint?", "wordcloud", max_words=1)
    for token, word in zip(crowd(server, code, 6), ["calm", "calm", "chaotic", "boring", "calm", "productive"]):
        answer(server, sid, poll, token, {"words": [word]})
    wait(display, lambda d: "boring" in text(d) and "calm" in text(d), message="words on the display")
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, "[aria-label='Hide “boring”']"))
    click(presenter, "[aria-label='Hide “boring”']")
    wait(display, lambda d: "boring" not in text(d), message="the hidden word left the display")
    assert "calm" in text(display) and "chaotic" in text(display)
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, ".mod li.off .flag.hidden"), message="marked hidden on the presenter page")
    wait(phone, lambda d: "calm ×3" in text(d) and "boring" not in text(d))
    click(presenter, "[aria-label='Unhide “boring”']")
    wait(display, lambda d: "boring" in text(d), message="back after unhiding")


def test_blocklisted_words_are_marked_for_the_presenter_and_never_shown(data_dir, browsers):
    path = os.path.join(data_dir, "blocklist.txt")
    with open(path, "w") as f:
        f.write("# the venue's list\nrubbish\n")
    server = Server(data_dir, extra_args=["--blocklist", path]).start()
    try:
        presenter, display, phone, sid, code = room(server, browsers, "Town hall")
        poll = compose(presenter, "One word for the new office?", "wordcloud", max_words=1)
        for token, word in zip(crowd(server, code, 4), ["bright", "Rubbish", "bright", "noisy"]):
            answer(server, sid, poll, token, {"words": [word]})
        wait(display, lambda d: "bright" in text(d) and "noisy" in text(d), message="words on the display")
        wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, ".mod li.off .flag.blocked"), message="marked blocked on the presenter page")
        assert "Rubbish" in presenter.find_element(By.CSS_SELECTOR, ".mod li.off").text
        assert "rubbish" not in text(display).lower() and "rubbish" not in text(phone).lower()
    finally:
        server.stop()


ANSWERS = ["More hallway time between talks", "Live captions on every stage", "A quiet room for calls", "Vegan lunch that isn't just salad",
           "Slides online before the talk", "Shorter keynotes", "A workshop track for beginners", "Better Wi-Fi in the main hall",
           "Name badges with pronouns", "Longer Q&A after talks", "More lightning talks", "A map of the venue in the app"]


def test_open_answers_fill_the_wall_and_can_be_edited(server, browsers):
    presenter, display, phone, sid, code = room(server, browsers, "Conference retro")
    poll = compose(presenter, "What should we change next year?", "open", max_answers=2)
    for token, line in zip(crowd(server, code, len(ANSWERS)), ANSWERS):
        answer(server, sid, poll, token, {"text": line})
    wait(display, lambda d: all(a in text(d) for a in ANSWERS[-6:]), message="answers on the wall")

    field = wait(phone, lambda d: d.find_element(By.ID, "answer"))
    assert field.get_attribute("maxlength") == "280"
    field.send_keys("Sessions recorded")
    assert phone.find_element(By.ID, "answer-n").text == "17/280"
    click(phone, "form button[type=submit]")
    wait(phone, lambda d: "Answer sent" in text(d) and "1 left" in text(d))
    wait(display, lambda d: script(d, "return document.querySelector('.wall li').textContent") == "Sessions recorded", message="newest at the top")
    phone.find_element(By.ID, "answer").send_keys("Childcare on site")
    click(phone, "form button[type=submit]")
    wait(phone, lambda d: "You have sent 2 answers" in text(d), message="the limit reached")

    click(phone, "[aria-label='Edit your answer: Sessions recorded']")
    field = wait(phone, lambda d: d.find_element(By.ID, "answer"))
    assert field.get_attribute("value") == "Sessions recorded" and phone.switch_to.active_element == field
    field.send_keys(" and online the same week")
    click(phone, "form button[type=submit]")
    wait(phone, lambda d: "Sessions recorded and online the same week" in text(d) and "Childcare on site" in text(d))
    wait(display, lambda d: "Sessions recorded and online the same week" in text(d) and "Childcare on site" in text(d))
    assert "Sessions recorded\n" not in text(display) + "\n"
    assert "13 responses" in text(display)  # people, not answers
    settled(display, "display-answers-1080p.png")


def test_pre_moderated_answers_wait_for_approval(server, browsers):
    presenter, display, phone, sid, code = room(server, browsers, "All hands")
    compose(presenter, "Questions for the leadership team?", "open", pre_moderation=True)
    wait(phone, lambda d: "once the presenter approves them" in text(d))
    phone.find_element(By.ID, "answer").send_keys("Will we hire in Lisbon?")
    click(phone, "form button[type=submit]")
    wait(phone, lambda d: "shown once the presenter approves it" in text(d))
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, ".mod .flag.pending"), message="pending on the presenter page")
    assert "Will we hire in Lisbon?" not in text(display)
    click(presenter, "[aria-label='Approve “Will we hire in Lisbon?”']")
    wait(display, lambda d: "Will we hire in Lisbon?" in text(d), message="approved: on the wall")
    click(presenter, "[aria-label='Hide “Will we hire in Lisbon?”']")
    wait(display, lambda d: "Will we hire in Lisbon?" not in text(d), message="hidden: off the wall")


def test_the_presenter_can_list_and_moderate_every_answer(server, browsers):
    presenter = browsers.open()
    sid, code = presenter_signs_in_and_creates(presenter, server, "Ideas day")
    poll = compose(presenter, "Ideas for the team offsite?", "open", max_answers=5)
    for i, token in enumerate(crowd(server, code, 11)):
        for j in range(5):
            answer(server, sid, poll, token, {"text": f"Idea {i * 5 + j + 1:02d}"})
    # Results carry the newest 50; the rest is one click away, oldest included.
    wait(presenter, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".mod li")) == 50 and "Idea 55" in text(d), message="newest 50")
    assert "Idea 01" not in text(presenter)
    click(presenter, "[data-action=all-answers]")
    wait(presenter, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".mod li")) == 55, message="all 55 answers")
    assert not presenter.find_elements(By.CSS_SELECTOR, "[data-action=all-answers]")
    click(presenter, "[aria-label='Hide “Idea 01”']")
    wait(presenter, lambda d: "hidden" in d.find_element(By.CSS_SELECTOR, "[aria-label='Unhide “Idea 01”']").find_element(By.XPATH, "..").text,
         message="the old answer is marked hidden")
    presenter.refresh()  # it stuck: still hidden when the page loads the full list again
    click(presenter, "[data-action=all-answers]")
    wait(presenter, lambda d: d.find_elements(By.CSS_SELECTOR, "[aria-label='Unhide “Idea 01”']"), message="still hidden after a reload")
