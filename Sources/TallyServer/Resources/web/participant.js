import { api, ballots, bars, ends, follow, h, ordinal, patch, plural, pts, results, secondsLeft, sortQuestions, status, ticker } from "/assets/tally.js";

const sessionId = location.pathname.split("/")[2];
const main = document.getElementById("main"), announce = document.getElementById("announce");
const MINE = ["myBallot", "myValue", "myWords", "myAnswers", "myQuiz"]; // our own ballot: in the snapshot, never in events
let state, shown = null, lastQuiz = null, told = null, draft = {}; // draft: what is chosen, ordered or being edited and not sent yet
// The ballot is rebuilt only when the poll changes or we act, so typing is never interrupted by votes.
const card = h("div"), below = h("div", { "aria-live": "off" }), note = h("p", { class: "note", role: "status" });
const say = (t) => { note.textContent = t; };
const current = () => state.polls.find((p) => p.poll.id === state.openPollId);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const mineOf = (p) => ({ scale: p.myValue, wordcloud: p.myWords, open: (p.myAnswers || []).map((a) => a.answerId) })[p.poll.kind] ?? p.myBallot;

const pollPane = h("div", { id: "poll-pane" }), qnaPane = h("div", { id: "qna-pane" });
let tab = null; // "poll" or "qna", once the Q&A tab is there

function render() {
  document.getElementById("title").textContent = state.title;
  const q = state.qna, hasQ = !!q && state.state !== "ended" && (q.state === "open" || (q.state === "closed" && q.questions.length > 0));
  if (!hasQ) tab = null; else if (!tab) tab = current() ? "poll" : "qna";
  else if (current() && shown !== state.openPollId && !ask.value.trim()) tab = "poll"; // a new poll comes to the front, unless a question is being written
  pollPane.hidden = tab === "qna"; qnaPane.hidden = tab !== "qna";
  for (const [el, t] of [[pollPane, "tab-poll"], [qnaPane, "tab-qna"]]) { // a tab panel only beside its tab
    if (hasQ) { el.role = "tabpanel"; el.setAttribute("aria-labelledby", t); } else { el.removeAttribute("role"); el.removeAttribute("aria-labelledby"); }
  }
  if (hasQ) renderQna(); else qnaPane.replaceChildren();
  if (!main.contains(pollPane)) main.replaceChildren(tabs, pollPane, qnaPane);
  patch(tabs, hasQ ? ["poll", "qna"].map((t, i) => h("button", { type: "button", role: "tab", id: "tab-" + t, "aria-controls": t + "-pane", "aria-selected": String(tab === t), tabindex: tab === t ? "0" : "-1",
    onclick: () => show(t), onkeydown: (ev) => { if (/^Arrow(Left|Right)$/.test(ev.key)) { show(i ? "poll" : "qna"); document.getElementById("tab-" + tab).focus(); } } },
  t === "qna" ? "Q&A" : current() ? "Poll" : "Poll (none open)")) : []);
  tabs.hidden = !hasQ;
  renderPoll();
}
const tabs = h("div", { role: "tablist", class: "tabs", "aria-label": "Poll or questions" });
const show = (t) => { tab = t; render(); };

function renderPoll() {
  const p = current(), main = pollPane;
  if (!p) {
    if (shown) announce.textContent = state.state === "ended" ? "This session has ended." : "The poll is closed.";
    shown = null;
    const closed = state.polls.filter((x) => x.poll.state === "closed" && x.results).slice(-1)[0], scored = state.polls.find((x) => x.poll.id === lastQuiz && x.poll.state === "closed");
    patch(main, [h("p", { class: "card idle" }, state.state === "ended" ? "This session has ended. Thank you!" : "No poll is open right now. Keep this page open — the next question appears here."),
      scored ? verdict(scored) : closed ? h("section", { class: "card" }, h("h2", {}, closed.poll.question), results(closed.poll, closed.results, mineOf(closed))) : null]);
    return;
  }
  lastQuiz = p.poll.quiz ? p.poll.id : null;
  if (shown !== p.poll.id) {
    shown = p.poll.id; draft = {}; say(""); redraw();
    announce.textContent = "New question: " + p.poll.question + (p.poll.quiz ? `. ${p.poll.quiz.timeLimitSeconds} seconds to answer.` : "");
  }
  patch(below, [p.results ? h("section", { class: "card" }, h("h2", {}, "Results"), results(p.poll, p.results, mineOf(p)))
    : h("p", { class: "muted center" }, p.poll.quiz ? `${p.totalBallots || 0} answered` + (state.myNickname ? ` · you play as ${state.myNickname}` : "")
      : `Results will be shown when the presenter reveals them · ${ballots(p.poll.kind, p.totalBallots || 0)} so far`)]);
  if (!main.contains(card)) main.replaceChildren(card, below);
}

/** Builds the ballot again, keeping the keyboard focus on the same control (or its row's next one). */
function redraw() {
  const id = card.contains(document.activeElement) && document.activeElement.id;
  const p = current(), b = (p.poll.quiz ? quiz : KINDS[p.poll.kind] || choice)(p);
  card.replaceChildren(h("form", { class: "card", onsubmit: (ev) => { ev.preventDefault(); b.submit(); } },
    h("fieldset", {}, h("legend", {}, h("h2", {}, p.poll.question)), h("p", { class: "muted", id: "hint" }, b.hint), b.body), b.button, note));
  let el = id && document.getElementById(id);
  if (el && el.disabled) el = el.parentNode.querySelector("button:not([disabled])");
  if (el) el.focus();
}

async function send(body, done) {
  const p = current();
  try {
    const r = await api("POST", `/api/v1/sessions/${sessionId}/polls/${p.poll.id}/votes`, body);
    // Our own ballot is not an event (ballots are private): keep it in the local state.
    const mine = { myBallot: r.optionIds || r.ranking || body.optionIds || body.ranking, myValue: r.value ?? body.value, myWords: r.words || body.words };
    if (r.answer) {
      const list = p.myAnswers || [];
      mine.myAnswers = list.some((a) => a.answerId === r.answer.answerId) ? list.map((a) => (a.answerId === r.answer.answerId ? r.answer : a))
        : p.poll.maxAnswers > 1 ? [...list, r.answer] : [r.answer];
    }
    for (const k of MINE) if (mine[k] === undefined) delete mine[k];
    state = { ...state, polls: state.polls.map((x) => (x.poll.id === p.poll.id ? { ...x, ...mine } : x)) };
    draft = {}; say(done);
  } catch (e) { say("Not counted: " + e.message); }
  if (current()) { redraw(); render(); }
}

const VOTED = "✓ Vote accepted — you can change it while the poll is open.";

function choice(p) {
  const multiple = p.poll.kind === "multiple", chosen = draft.ids || p.myBallot || [];
  return {
    hint: multiple ? "Choose one or more" : "Choose one",
    body: p.poll.options.map((o) => h("label", { class: "choice" + (chosen.includes(o.id) ? " on" : "") },
      h("input", {
        type: multiple ? "checkbox" : "radio", name: "choice", id: "c-" + o.id, value: o.id, checked: chosen.includes(o.id),
        onchange: (ev) => {
          draft.ids = multiple ? (ev.target.checked ? [...chosen, o.id] : chosen.filter((x) => x !== o.id)) : [o.id];
          say("");
          if (!multiple) send({ optionIds: draft.ids }, VOTED); else redraw();
        },
      }), h("span", {}, o.label))),
    button: multiple ? h("button", { type: "submit", class: "primary", disabled: chosen.length === 0 }, "Vote") : null,
    submit: () => chosen.length && send({ optionIds: chosen }, VOTED),
  };
}

function scale(p) {
  const s = p.poll.scale, v = draft.value ?? p.myValue, pick = (n) => { draft.value = n; send({ value: n }, VOTED); };
  const label = (n) => (n === s.min ? s.minLabel : n === s.max ? s.maxLabel : "");
  return {
    hint: `Tap a number from ${s.min} to ${s.max}`,
    body: [h("div", { class: "picks" }, range(s.min, s.max).map((n) => h("label", { class: "pick" },
      h("input", { type: "radio", name: "scale", id: "s-" + n, value: n, checked: v === n, onchange: () => pick(n) }),
      h("span", {}, n, label(n) ? h("span", { class: "sr" }, " " + label(n)) : null)))), ends(s),
    // 0–10 is a long row of buttons: a slider too, kept in step with them (sent when let go).
    s.max - s.min >= 10 ? h("input", { type: "range", id: "slider", min: s.min, max: s.max, value: v ?? Math.round((s.min + s.max) / 2), "aria-label": "Or slide to a number",
      oninput: (ev) => { document.getElementById("s-" + ev.target.value).checked = true; }, onchange: (ev) => pick(Number(ev.target.value)) }) : null],
    submit: () => {},
  };
}

function ranking(p) {
  const opts = p.poll.options, order = draft.order || p.myBallot || opts.map((o) => o.id);
  const label = (id) => (opts.find((o) => o.id === id) || { label: id }).label;
  const move = (i, d) => {
    const o = order.slice();
    [o[i], o[i + d]] = [o[i + d], o[i]];
    draft.order = o; redraw(); say(`${label(o[i + d])} is now number ${i + d + 1}. Not sent yet.`);
  };
  // Dragging by the grip: pointer events work for mouse, pen and touch alike. Listened for on the
  // window, since moving the row in the list ends any pointer capture.
  const drag = (ev) => {
    const li = ev.currentTarget.parentNode, list = li.parentNode, on = (f) => ["pointermove", "pointerup", "pointercancel"].forEach((t, i) => f(t, i ? up : move));
    const move = (e) => list.insertBefore(li, [...list.children].find((x) => { const r = x.getBoundingClientRect(); return x !== li && e.clientY < r.top + r.height / 2; }) || null);
    const up = () => {
      on(removeEventListener);
      draft.order = [...list.children].map((x) => x.dataset.id); redraw();
      say(`${label(li.dataset.id)} is now number ${draft.order.indexOf(li.dataset.id) + 1}. Not sent yet.`);
    };
    ev.preventDefault(); li.classList.add("dragging"); on(addEventListener);
  };
  return {
    hint: "Put the best first: drag the handles or use the arrows.",
    body: h("ol", { class: "rank" }, order.map((id, i) => h("li", { "data-id": id },
      h("span", { class: "grip", "aria-hidden": "true", onpointerdown: drag }, "⠿"), h("span", { class: "pos" }, i + 1), h("span", { class: "label" }, label(id)),
      h("button", { type: "button", id: "up-" + id, "aria-label": `Move ${label(id)} up`, disabled: i === 0, onclick: () => move(i, -1) }, "↑"),
      h("button", { type: "button", id: "down-" + id, "aria-label": `Move ${label(id)} down`, disabled: i === order.length - 1, onclick: () => move(i, 1) }, "↓")))),
    button: h("button", { type: "submit", class: "primary" }, "Submit ranking"),
    submit: () => send({ ranking: order }, "✓ Ranking accepted — you can change it while the poll is open."),
  };
}

/** A text field with a live count of its characters (announced only on focus, not per keystroke). */
function counted(tag, id, label, max, value, attrs) {
  const n = h("span", { class: "counter", id: id + "-n" }, `${value.length}/${max}`);
  const input = h(tag, { id, maxlength: max, autocomplete: "off", "aria-describedby": id + "-n", oninput: () => { n.textContent = `${input.value.length}/${max}`; }, ...attrs });
  input.value = value;
  return [input, h("div", { class: "field" }, h("label", { for: id }, label), input, n)];
}

function words(p) {
  const max = p.poll.maxWords || 3, mine = p.myWords || [];
  const fields = range(1, max).map((i) => counted("input", "w-" + i, max === 1 ? "Your word" : `Word ${i}`, 25, mine[i - 1] || "", { enterkeyhint: "send" }));
  return {
    hint: max === 1 ? "One word or a short phrase" : `Up to ${max} words or short phrases`,
    body: [fields.map((f) => f[1]), mine.length ? h("p", { class: "muted" }, `You sent: ${mine.join(", ")} — send again to replace.`) : null],
    button: h("button", { type: "submit", class: "primary" }, "Send"),
    submit: () => {
      const w = fields.map((f) => f[0].value.trim()).filter(Boolean);
      if (!w.length) { say("Type a word first."); fields[0][0].focus(); return; }
      send({ words: w }, "✓ Words sent — you can change them while the poll is open.");
    },
  };
}

function open(p) {
  const max = p.poll.maxAnswers || 1, mine = p.myAnswers || [], editing = mine.find((a) => a.answerId === draft.edit);
  const full = !editing && max > 1 && mine.length >= max, pre = p.poll.moderation === "pre";
  const [ta, field] = counted("textarea", "answer", editing ? "Edit your answer" : "Your answer", 280, editing ? editing.text : max === 1 && mine[0] ? mine[0].text : "", { rows: 4 });
  const edit = (a) => { draft.edit = a.answerId; say(""); redraw(); document.getElementById("answer").focus(); };
  return {
    hint: (max === 1 ? "Up to 280 characters." : `Up to ${max} answers · ${Math.max(0, max - mine.length)} left.`) + (pre ? " Answers are shown once the presenter approves them." : ""),
    body: [full ? h("p", {}, `You have sent ${plural(max, "answer")}. Edit one to change it.`) : field,
      max > 1 && mine.length ? h("section", { "aria-label": "Your answers" }, h("h3", {}, "Your answers"), h("ul", { class: "answers" },
        mine.map((a) => h("li", { class: "mine-answer" }, h("span", {}, a.text),
          h("button", { type: "button", id: "edit-" + a.answerId, "aria-label": `Edit your answer: ${a.text}`, onclick: () => edit(a) }, "Edit"))))) : null],
    button: full ? null : h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Send"),
      editing ? h("button", { type: "button", onclick: () => { draft = {}; redraw(); } }, "Cancel") : null),
    submit: () => {
      const text = ta.value.trim();
      if (!text) { say("Write an answer first."); ta.focus(); return; }
      send(editing ? { text, answerId: editing.answerId } : { text }, pre ? "✓ Sent — it is shown once the presenter approves it." : "✓ Answer sent.");
    },
  };
}

const KINDS = { scale, ranking, wordcloud: words, open };

/** A quiz question: a countdown and large answer buttons; the first answer is final. */
function quiz(p) {
  const multiple = p.poll.kind === "multiple", locked = p.myBallot, chosen = locked || draft.ids || [], left = secondsLeft(p.poll), over = left === 0;
  return {
    hint: locked ? "✓ Answer locked in" : over ? "Time is up" : multiple ? "Choose every right answer, then lock in. Answers are final." : "Tap your answer. It is final.",
    body: [p.poll.closesAt ? h("p", { class: "clock" }, h("span", { role: "timer", "aria-label": "Seconds left", "data-closes": p.poll.closesAt }, left), h("span", { "aria-hidden": "true" }, " s")) : null,
      h("div", { class: "answer-grid" }, p.poll.options.map((o, i) => h("button", { type: "button", class: "answer a" + (i % 4), id: "qa-" + o.id, "aria-pressed": String(chosen.includes(o.id)), disabled: !!locked || over,
        onclick: () => { if (!multiple) return send({ optionIds: [o.id] }, LOCKED); draft.ids = chosen.includes(o.id) ? chosen.filter((x) => x !== o.id) : [...chosen, o.id]; redraw(); } },
      h("span", { class: "letter", "aria-hidden": "true" }, "ABCDEFGHIJKL"[i]), o.label)))],
    button: multiple && !locked ? h("button", { type: "submit", class: "primary", disabled: !chosen.length || over }, "Lock in") : null,
    submit: () => chosen.length && !locked && !over && send({ optionIds: chosen }, LOCKED),
  };
}
const LOCKED = "✓ Answer locked in. Your result comes when the time is up.";

/** A closed quiz question: right or wrong with the points, the rank and the total, and how the room answered. */
function verdict(x) {
  const q = x.myQuiz, lb = state.leaderboard || {}, me = lb.me, answered = q ? q.answered !== false : !!x.myBallot, right = (x.poll.quiz.correctOptionIds || []).map((id) => (x.poll.options.find((o) => o.id === id) || {}).label);
  const head = !answered ? "No answer this time" : !q ? "Counting…" : q.correct ? `✓ Right! +${pts(q.points)}` : "✗ Not right: 0 points";
  const rank = me && me.rank ? `${ordinal(me.rank)} of ${lb.players}` : null;
  if (q && told !== x.poll.id) { told = x.poll.id; announce.textContent = [head, rank && "You are " + rank, me && "Total " + pts(me.score)].filter(Boolean).join(". "); }
  return h("section", { class: "card verdict " + (q && q.correct ? "right" : "wrong") }, h("h2", {}, x.poll.question), h("p", { class: "big" }, head),
    right.length ? h("p", {}, (right.length > 1 ? "The right answers: " : "The right answer: ") + right.join(", ")) : null,
    me ? h("p", { class: "standing" }, state.myNickname ? h("strong", {}, state.myNickname) : null, state.myNickname ? " · " : null, rank ? [h("strong", { class: "place" }, rank), " · "] : null, `total ${pts(me.score)}`) : null,
    x.results ? bars(x.poll, x.results, x.myBallot) : null);
}

// Q&A. Which questions are ours and which we upvoted is never in events: kept here, as the ballot is.
const qs = `/api/v1/sessions/${sessionId}/questions`, mineQ = new Map(), upped = new Set(), unseen = new Set(); // unseen: ours, not in any event yet (pending)
let newest = false;
const [ask, askField] = counted("textarea", "ask", "Your question", 280, "", { rows: 3 }), [askName, nameField] = counted("input", "ask-name", "Your name (optional)", 40, "", { autocomplete: "name" });
const qNote = h("p", { class: "note", role: "status" }), qList = h("ul", { class: "questions", "aria-label": "Questions" });
const askForm = h("form", { class: "card", onsubmit: (ev) => { ev.preventDefault(); askQuestion(); } }, h("h2", {}, "Ask a question"), askField, nameField,
  h("button", { type: "submit", class: "primary" }, "Send question"), qNote);

async function qAct(f, done) {
  try { await f(); qNote.textContent = done || ""; } catch (e) { qNote.textContent = e.message; }
  render();
}

function askQuestion() {
  const text = ask.value.trim(), name = askName.value.trim();
  if (!text) { qNote.textContent = "Write your question first."; ask.focus(); return; }
  qAct(async () => {
    const r = await api("POST", qs, state.qna.anonymous || !name ? { text } : { text, name });
    const q = { ...r.question, mine: true };
    mineQ.set(q.questionId, q);
    if (!state.qna.questions.some((x) => x.questionId === q.questionId)) { unseen.add(q.questionId); state.qna = { ...state.qna, questions: [...state.qna.questions, q] }; }
    ask.value = ""; ask.oninput();
  }, state.qna.moderation === "pre" ? "✓ Sent — it is shown once the presenter approves it." : "✓ Question sent.");
}

const upvote = (q) => qAct(async () => {
  const r = await api(q.upvotedByMe ? "DELETE" : "POST", `${qs}/${encodeURIComponent(q.questionId)}/upvote`);
  if (r.upvoted) upped.add(q.questionId); else upped.delete(q.questionId);
  state.qna = { ...state.qna, questions: state.qna.questions.map((x) => (x.questionId === q.questionId ? { ...x, upvotedByMe: r.upvoted || undefined, upvotes: r.upvotes } : x)) };
});
const withdraw = (q) => confirm("Withdraw your question? Its upvotes are lost.") && qAct(async () => {
  await api("DELETE", `${qs}/${encodeURIComponent(q.questionId)}`);
  mineQ.delete(q.questionId); unseen.delete(q.questionId);
  state.qna = { ...state.qna, questions: state.qna.questions.filter((x) => x.questionId !== q.questionId) };
}, "Your question was withdrawn.");

/** Our own questions and upvotes, put back into a state from the stream (which never carries them). */
function ours(s) {
  if (!s.qna) return;
  const seen = new Set(s.qna.questions.map((q) => q.questionId));
  for (const id of unseen) if (seen.has(id)) unseen.delete(id);
  s.qna = { ...s.qna, questions: [...s.qna.questions, ...[...unseen].map((id) => mineQ.get(id))].map((q) => {
    if (q.mine) mineQ.set(q.questionId, q);
    if (q.upvotedByMe) upped.add(q.questionId);
    return { ...q, mine: mineQ.has(q.questionId) || undefined, upvotedByMe: upped.has(q.questionId) || undefined };
  }) };
}

function renderQna() {
  const q = state.qna, open = q.state === "open";
  askForm.hidden = !open; nameField.hidden = q.anonymous;
  const list = sortQuestions(q.questions.filter((x) => x.state === "visible" || x.state === "answered" || (x.mine && x.state === "pending")), newest);
  patch(qList, list.map((x) => h("li", { "data-key": x.questionId, class: [x.mine && "mine", x.state].filter(Boolean).join(" ") },
    x.mine ? h("span", { class: "votes", title: "Upvotes" }, h("span", { "aria-hidden": "true" }, "▲"), h("span", { class: "n" }, x.upvotes), h("span", { class: "sr" }, " upvotes"))
      : h("button", { type: "button", class: "votes", "aria-pressed": String(!!x.upvotedByMe), "aria-label": `Upvote “${x.text}”, ${plural(x.upvotes, "upvote")}`, disabled: !open || (x.state === "answered" && !x.upvotedByMe), onclick: () => upvote(x) },
        h("span", { "aria-hidden": "true" }, "▲"), h("span", { class: "n" }, x.upvotes)),
    h("div", { class: "q" }, h("p", {}, x.text), h("p", { class: "by" }, x.name || "Anonymous",
      x.mine ? h("strong", { class: "yours" }, " · Your question") : null, x.state === "answered" ? h("strong", { class: "done" }, " · ✓ Answered") : null),
    x.state === "pending" ? h("p", { class: "wait" }, "Waiting for the presenter to approve it") : null,
    x.mine ? h("button", { type: "button", class: "link", "aria-label": `Withdraw your question “${x.text}”`, onclick: () => withdraw(x) }, "Withdraw") : null))));
  patch(qnaPane, [askForm, open ? null : h("p", { class: "card idle" }, "Questions are closed. These were asked:"),
    h("section", { class: "card", "aria-labelledby": "qh" }, h("div", { class: "bar" }, h("h2", { id: "qh" }, plural(list.length, "question")),
      h("div", { role: "group", "aria-label": "Sort", class: "seg" }, [["Top", false], ["Newest", true]].map(([t, v]) => h("button", { type: "button", "aria-pressed": String(newest === v), onclick: () => { newest = v; render(); } }, t)))),
    list.length ? null : h("p", { class: "muted" }, "No questions yet. Ask the first one!"), qList)]);
}

(async () => {
  const setStatus = status(document.getElementById("status"));
  try { state = await api("GET", `/api/v1/sessions/${sessionId}`); }
  catch (e) { if (e.status === 401 || e.status === 403 || e.status === 404) { location.replace("/"); return; } setStatus(e.message, "bad"); return; }
  const snap = state.qna;
  lastQuiz = (state.polls.filter((x) => x.poll.quiz && x.poll.state === "closed").slice(-1)[0] || { poll: {} }).poll.id;
  ours(state); render();
  ticker((n) => {
    const p = current();
    if (!p || !p.poll.quiz) return;
    if (n === 10 && p.poll.quiz.timeLimitSeconds > 10) announce.textContent = "10 seconds left";
    if (n === 0) { announce.textContent = "Time is up"; redraw(); }
  });
  follow({ sessionId, actorType: "participant", snapshot: { ...state, qna: snap }, onStatus: setStatus,
    onState: (s) => {
      s = { ...s };
      s.polls = s.polls.map((x) => {
        const old = state.polls.find((y) => y.poll.id === x.poll.id) || {}, y = { ...x };
        for (const k of MINE) if (y[k] === undefined && old[k] !== undefined) y[k] = old[k];
        return y;
      });
      if (!s.myNickname) s.myNickname = state.myNickname;
      if (s.leaderboard && !s.leaderboard.me && s.leaderboard.me !== null && state.leaderboard) s.leaderboard = { ...s.leaderboard, me: state.leaderboard.me };
      ours(s); state = s; render();
    } });
})();
