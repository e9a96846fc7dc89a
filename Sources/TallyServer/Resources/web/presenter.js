import { api, bars, follow, h, isChoice, ordinal, patch, plural, pts, results, secondsLeft, sortQuestions, status, ticker } from "/assets/tally.js";

const main = document.getElementById("main");
const setStatus = status(document.getElementById("status"));
const sessionId = location.pathname.split("/")[2];
let state, error = "";

const field = (label, input) => h("label", { class: "field" }, h("span", {}, label), input);
const errorLine = () => h("p", { class: "error", role: "alert" }, error);

async function act(f) {
  error = "";
  try { await f(); } catch (e) { error = e.message; }
  if (sessionId) render(); else home();
}

async function home() {
  const auth = await api("GET", "/api/v1/auth/status");
  if (!auth.signedInAsOperator) {
    const first = !auth.operatorPasswordSet;
    const pw = h("input", { type: "password", id: "password", autocomplete: first ? "new-password" : "current-password", required: true, minlength: 8 });
    const code = first ? h("input", { id: "setup-code", class: "code", autocomplete: "off", autocapitalize: "characters", required: true, maxlength: 9, placeholder: "ABCD-EFGH" }) : null;
    const submit = (ev) => {
      ev.preventDefault();
      act(() => api("POST", first ? "/api/v1/auth/setup" : "/api/v1/auth/login", first ? { password: pw.value, setupCode: code.value } : { password: pw.value }));
    };
    main.replaceChildren(h("form", { class: "card narrow", onsubmit: submit },
      h("h2", {}, first ? "Choose the operator password" : "Sign in"),
      first ? h("p", { class: "muted" }, "First start: this password protects the appliance (at least 8 characters). The set-up code is on the appliance's own screen and in its log.") : null,
      first ? field("Set-up code", code) : null,
      field(first ? "New operator password" : "Operator password", pw), h("button", { type: "submit", class: "primary" }, first ? "Set password" : "Sign in"), errorLine(),
      h("p", { class: "muted" }, "Venue staff: once signed in, the ", h("a", { href: "/operator", id: "console-link" }, "operator console"), " shows the box's health, connections and warnings.")));
    (code || pw).focus();
    return;
  }
  const { sessions } = await api("GET", "/api/v1/sessions");
  const title = h("input", { id: "title", required: true, maxlength: 200, placeholder: "Friday all-hands" }), named = h("input", { type: "checkbox", id: "new-nicknames" });
  const create = (ev) => {
    ev.preventDefault();
    act(async () => { const s = await api("POST", "/api/v1/sessions", { title: title.value, nicknames: named.checked ? "required" : "optional" }); location.assign("/presenter/" + s.sessionId); });
  };
  const signOut = () => act(async () => { await api("POST", "/api/v1/auth/logout"); });
  main.replaceChildren(
    h("form", { class: "card", onsubmit: create }, h("h2", {}, "New session"), field("Title", title),
      h("label", { class: "check" }, named, " Require nicknames (for a quiz's leaderboard)"), h("button", { type: "submit", class: "primary" }, "Create"), errorLine()),
    h("p", {}, h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"), " ", h("a", { href: "/operator", id: "console-link" }, "Operator console")),
    h("section", { class: "card" }, h("h2", {}, "Sessions"),
      sessions.length
        ? h("ul", { class: "list" }, sessions.slice().reverse().map((s) => h("li", {}, h("a", { href: "/presenter/" + s.sessionId }, s.title),
            h("span", { class: "muted" }, ` ${s.joinCode} · ${s.participantCount} joined · ${s.state} `),
            h("button", { type: "button", class: "small", "data-duplicate": s.sessionId, "aria-label": `Duplicate ${s.title} with its polls`, onclick: () => duplicate(s) }, "Duplicate"))))
        : h("p", { class: "muted" }, "None yet.")));
  title.focus();
}

/** The same talk again: a new session with this one's polls as drafts, its own join code. */
function duplicate(s) {
  act(async () => { const copy = await api("POST", `/api/v1/sessions/${s.sessionId}/duplicate`, {}); location.assign("/presenter/" + copy.sessionId); });
}

const KINDS = { single: "Single choice", multiple: "Multiple choice", scale: "Scale", ranking: "Ranking", wordcloud: "Word cloud", open: "Open text" };
const numbers = (id, from, to, chosen) => h("select", { id }, Array.from({ length: to - from + 1 }, (_, i) => h("option", { value: from + i, selected: from + i === chosen }, from + i)));

// The composer is built once, so typing is never interrupted by incoming votes.
function composer() {
  const q = h("input", { id: "question", required: true, maxlength: 500, placeholder: "What should we do next?" });
  const opts = h("textarea", { id: "options", rows: 4, required: true, placeholder: "One option per line (2–12)" });
  const kind = h("select", { id: "kind", onchange: () => show() }, Object.entries(KINDS).map(([k, label]) => h("option", { value: k }, label)));
  const vis = h("select", { id: "visibility" }, h("option", { value: "live" }, "Results live"), h("option", { value: "hidden" }, "Results hidden until revealed"));
  const now = h("input", { type: "checkbox", id: "open-now", checked: true });
  const min = numbers("scale-min", 0, 1, 1), max = numbers("scale-max", 2, 10, 5);
  const minLabel = h("input", { id: "scale-min-label", maxlength: 40, placeholder: "Not at all" }), maxLabel = h("input", { id: "scale-max-label", maxlength: 40, placeholder: "Completely" });
  const maxWords = numbers("max-words", 1, 3, 3), maxAnswers = numbers("max-answers", 1, 5, 1), pre = h("input", { type: "checkbox", id: "pre-moderation" });
  // A quiz question: a choice poll with its right answers (option ids are o1…oN by position), a time limit and points.
  const quiz = h("input", { type: "checkbox", id: "quiz", onchange: () => show() }), rights = h("div", { class: "rights" });
  const limit = h("input", { type: "number", id: "time-limit", min: 5, max: 300, value: 20 }), points = h("input", { type: "number", id: "points", min: 1, max: 10000, value: 1000 });
  const lines = () => opts.value.split("\n").map((x) => x.trim()).filter(Boolean);
  const marks = () => patch(rights, lines().length ? lines().map((l, i) => h("label", { class: "check" }, h("input", { type: "checkbox", id: "right-o" + (i + 1), value: "o" + (i + 1) }), " ", l))
    : [h("p", { class: "muted" }, "Type the options above, then tick the right ones here.")]);
  opts.oninput = marks;
  const quizBox = h("div", {}, h("label", { class: "check" }, quiz, " Quiz question: right answers, a countdown and points"),
    h("fieldset", { class: "quiz-fields" }, h("legend", {}, "Right answers"), rights, h("div", { class: "row" }, field("Time limit (seconds, 5–300)", limit), field("Points for a right answer at once", points))));
  // Only the fields of the chosen kind are shown (and required).
  const extra = {
    options: field("Options", opts),
    scale: h("fieldset", { class: "row" }, h("legend", { class: "sr" }, "Scale"), field("From", min), field("To", max), field("Label of the lowest (optional)", minLabel), field("Label of the highest (optional)", maxLabel)),
    wordcloud: h("div", { class: "row" }, field("Words per person", maxWords)),
    open: h("div", {}, h("div", { class: "row" }, field("Answers per person", maxAnswers)), h("label", { class: "check" }, pre, " Approve answers before they are shown")),
  };
  const group = () => (isChoice(kind.value) || kind.value === "ranking" ? "options" : kind.value), isQuiz = () => quiz.checked && isChoice(kind.value);
  const visField = field("Results", vis);
  const show = () => {
    for (const [g, el] of Object.entries(extra)) el.hidden = g !== group();
    opts.required = group() === "options"; quizBox.hidden = !isChoice(kind.value); quizBox.lastChild.hidden = !isQuiz(); visField.hidden = isQuiz(); marks();
  };
  show();
  const submit = (ev) => {
    ev.preventDefault();
    act(async () => {
      const body = { question: q.value, kind: kind.value, resultsVisibility: vis.value, open: now.checked };
      if (group() === "options") body.options = opts.value.split("\n").map((x) => x.trim()).filter(Boolean);
      if (kind.value === "scale") {
        body.scale = { min: Number(min.value), max: Number(max.value) };
        if (minLabel.value.trim()) body.scale.minLabel = minLabel.value.trim();
        if (maxLabel.value.trim()) body.scale.maxLabel = maxLabel.value.trim();
      }
      if (kind.value === "wordcloud") body.maxWords = Number(maxWords.value);
      if (kind.value === "open") { body.maxAnswers = Number(maxAnswers.value); body.moderation = pre.checked ? "pre" : "post"; }
      if (isQuiz()) {
        body.quiz = { correctOptionIds: [...rights.querySelectorAll("input:checked")].map((i) => i.value), timeLimitSeconds: Number(limit.value), points: Number(points.value) };
        if (!body.quiz.correctOptionIds.length) throw new Error("Tick at least one right answer.");
        body.resultsVisibility = "hidden"; // the server keeps a quiz question's results from the room until it closes
      }
      await api("POST", `/api/v1/sessions/${sessionId}/polls`, body);
      q.value = ""; opts.value = ""; minLabel.value = ""; maxLabel.value = ""; marks(); q.focus();
    });
  };
  return h("form", { class: "card", id: "composer", onsubmit: submit },
    h("h2", {}, "New poll"), field("Question", q), h("div", { class: "row" }, field("Kind", kind), visField), Object.values(extra), quizBox,
    h("label", { class: "check" }, now, " Open it now"), h("button", { type: "submit", class: "primary" }, "Create poll"));
}

const all = new Map(); // pollId → every answer of an open-text poll, newest first, once asked for

function kindName(poll) {
  if (poll.kind === "scale" && poll.scale) return `scale ${poll.scale.min}–${poll.scale.max}`;
  if (poll.kind === "wordcloud") return `word cloud · ${plural(poll.maxWords || 3, "word")} each`;
  if (poll.kind === "open") return `open text · ${plural(poll.maxAnswers || 1, "answer")} each` + (poll.moderation === "pre" ? " · approved first" : "");
  return (isChoice(poll.kind) ? poll.kind + " choice" : poll.kind) + (poll.quiz ? ` · quiz · ${poll.quiz.timeLimitSeconds} s · ${plural(poll.quiz.points, "point")}` : "");
}

// Blocked: on the venue's blocklist, never shown to the room (its writer is not told).
const flags = (x) => ["pending", "hidden", "blocked"].filter((f) => x[f]).map((f) => h("span", { class: "flag " + f, title: f === "blocked" ? "On the venue's blocklist: never shown" : null }, f));

/** Results with moderation: every word or answer, its flags, and what the presenter may do. */
function moderation(p, base) {
  const r = p.results, button = (label, name, path, body, after) => h("button", { type: "button", "aria-label": `${label} ${name}`,
    onclick: () => act(async () => { await api("POST", base + path, body); if (after) after(); }) }, label);
  if (p.poll.kind === "wordcloud") {
    return (r.words || []).length ? h("ul", { class: "mod", "aria-label": "Words" }, r.words.map((w) => h("li", { "data-key": "w " + w.text, class: w.hidden || w.blocked ? "off" : null },
      h("span", { class: "label" }, w.text), h("span", { class: "count" }, `×${w.count}`), flags(w),
      w.blocked ? null : button(w.hidden ? "Unhide" : "Hide", `“${w.text}”`, `/words/${w.hidden ? "unhide" : "hide"}`, { text: w.text }))))
      : h("p", { class: "muted" }, "No words yet.");
  }
  const latest = r.answers || [], seen = new Set(latest.map((a) => a.answerId));
  const list = [...latest, ...(all.get(p.poll.id) || []).filter((a) => !seen.has(a.answerId))];
  // An older answer is in no results event: its flags are updated here once the server agrees.
  const set = (a, change) => () => { const x = (all.get(p.poll.id) || []).find((y) => y.answerId === a.answerId); if (x) Object.assign(x, change); };
  const path = (a, what) => `/answers/${encodeURIComponent(a.answerId)}/${what}`;
  return h("div", {}, list.length ? h("ul", { class: "mod", "aria-label": "Answers" }, list.map((a) => h("li", { "data-key": "a " + a.answerId, class: a.hidden || a.blocked ? "off" : null },
    h("span", { class: "label" }, a.text), flags(a),
    a.pending && !a.blocked ? button("Approve", `“${a.text}”`, path(a, "approve"), undefined, set(a, { pending: false })) : null,
    a.blocked ? null : button(a.hidden ? "Unhide" : "Hide", `“${a.text}”`, path(a, a.hidden ? "unhide" : "hide"), undefined, set(a, { hidden: !a.hidden })))))
    : h("p", { class: "muted" }, "No answers yet."),
  (r.totalAnswers || 0) > list.length ? h("button", { type: "button", "data-action": "all-answers", onclick: () => act(async () => {
    const got = [];
    let after = null;
    do {
      const page = await api("GET", `${base}/answers?limit=500` + (after ? "&after=" + encodeURIComponent(after) : ""));
      got.push(...page.answers); after = page.next;
    } while (after);
    all.set(p.poll.id, got.reverse());
  }) }, `Show all ${r.totalAnswers} answers`) : null);
}

function pollCard(p) {
  const base = `/api/v1/sessions/${sessionId}/polls/${p.poll.id}`;
  const cmd = (what) => h("button", { type: "button", "data-action": what, onclick: () => act(() => api("POST", `${base}/${what}`)) },
    what[0].toUpperCase() + what.slice(1));
  const actions = [];
  if (state.state === "active" && p.poll.state === "draft") actions.push(cmd("open"));
  if (p.poll.state === "open") actions.push(cmd("close"));
  if (p.poll.resultsVisibility === "hidden" && !p.poll.revealed && p.poll.state !== "draft" && !p.poll.quiz) actions.push(cmd("reveal"));
  const tag = p.poll.state + (p.poll.quiz ? " · quiz" : p.poll.resultsVisibility === "hidden" ? (p.poll.revealed ? " · revealed" : " · hidden") : "");
  const body = isChoice(p.poll.kind) ? bars(p.poll, p.results) : !p.results ? null
    : p.poll.kind === "wordcloud" || p.poll.kind === "open" ? moderation(p, base) : results(p.poll, p.results);
  return h("article", { class: "card poll " + p.poll.state, "data-poll": p.poll.id, "data-key": p.poll.id }, h("h3", {}, p.poll.question, " ", h("span", { class: "tag" }, tag)),
    body, h("p", { class: "muted" }, p.poll.quiz ? `${p.results ? p.results.totalBallots : (p.totalBallots || 0)} answered` : plural(p.results ? p.results.totalBallots : (p.totalBallots || 0), "ballot"),
      p.poll.quiz && p.poll.state === "open" && p.poll.closesAt ? [" · ", h("span", { role: "timer", "data-closes": p.poll.closesAt }, secondsLeft(p.poll)), " s left"] : null,
      ` · ${kindName(p.poll)}`), h("div", { class: "row" }, actions));
}

const qnaBox = h("div", {}), qset = { moderation: "post", anonymous: true }; // the choices for opening Q&A

/** Q&A: open or close it, the moderation queue, and every question with what the presenter may do. */
function qnaCard() {
  const q = state.qna || { state: "off", questions: [] }, base = `/api/v1/sessions/${sessionId}`, open = q.state === "open";
  const all = sortQuestions(q.questions, false), pending = all.filter((x) => x.state === "pending"), rest = all.filter((x) => x.state !== "pending");
  const visible = all.filter((x) => x.state === "visible" || x.state === "answered").length;
  const button = (label, x, what) => h("button", { type: "button", "aria-label": `${label} “${x.text}”`, onclick: () => act(() => api("POST", `${base}/questions/${encodeURIComponent(x.questionId)}/${what}`)) }, label);
  const row = (x, buttons) => h("li", { "data-key": x.questionId, class: [x.state === "hidden" || x.blocked ? "off" : null, x.highlighted ? "hi" : null].filter(Boolean).join(" ") || null },
    h("span", { class: "count", title: "Upvotes" }, `▲ ${x.upvotes}`), h("span", { class: "label" }, x.text, x.name ? h("span", { class: "muted" }, ` — ${x.name}`) : null),
    [x.highlighted && "highlighted", x.state === "answered" && "answered", x.state === "hidden" && "hidden", x.blocked && "blocked"].filter(Boolean)
      .map((f) => h("span", { class: "flag " + f, title: f === "blocked" ? "On the venue's blocklist: never shown" : null }, f)), x.blocked ? null : buttons);
  const choose = (k, v) => () => { qset[k] = v; };
  return h("section", { class: "card qna", "aria-labelledby": "qna-h" }, h("h2", { id: "qna-h" }, "Q&A ", h("span", { class: "tag" }, q.state === "off" ? "not started" : q.state)),
    open ? h("p", { id: "qna-counts", "aria-live": "polite" }, `${pending.length} waiting for approval · ${plural(visible, "question")} shown · `,
      q.moderation === "pre" ? "approved first" : "shown at once", q.anonymous ? " · anonymous" : " · names allowed")
      : state.state === "active" ? h("fieldset", { class: "row" }, h("legend", { class: "sr" }, "Q&A settings"),
        h("label", { class: "check" }, h("input", { type: "radio", name: "qna-mod", id: "qna-post", checked: qset.moderation === "post", onchange: choose("moderation", "post") }), " Show questions at once"),
        h("label", { class: "check" }, h("input", { type: "radio", name: "qna-mod", id: "qna-pre", checked: qset.moderation === "pre", onchange: choose("moderation", "pre") }), " Approve questions first"),
        h("label", { class: "check" }, h("input", { type: "checkbox", id: "qna-anonymous", checked: qset.anonymous, onchange: (ev) => { qset.anonymous = ev.target.checked; } }), " Anonymous (no names)")) : null,
    state.state === "active" ? h("div", { class: "row" }, h("button", { type: "button", "data-action": open ? "qna-close" : "qna-open",
      onclick: () => act(() => api("POST", `${base}/qna/${open ? "close" : "open"}`, open ? undefined : { ...qset })) }, open ? "Close Q&A" : q.state === "closed" ? "Open Q&A again" : "Open Q&A")) : null,
    pending.length ? [h("h3", {}, "Waiting for approval"), h("ul", { class: "mod", "aria-label": "Waiting for approval" }, pending.map((x) => row(x, [button("Approve", x, "approve"), button("Hide", x, "hide")])))] : null,
    rest.length ? [h("h3", {}, "Questions"), h("ul", { class: "mod", "aria-label": "Questions" }, rest.map((x) => row(x, x.state === "hidden" ? button("Unhide", x, "unhide")
      : [x.state === "visible" && !x.highlighted ? button("Highlight", x, "highlight") : null, x.state === "visible" ? button("Answered", x, "answered") : null, button("Hide", x, "hide")])))]
      : q.state === "off" ? null : h("p", { class: "muted" }, "No questions yet."));
}

/** The quiz: the next question in creation order, the room's progress, the leaderboard, nicknames, a new round. */
function quizCard() {
  const l = state.polls, base = `/api/v1/sessions/${sessionId}`, on = l.find((p) => p.poll.state === "open"), lb = state.leaderboard;
  const anchor = on ? l.indexOf(on) : l.map((p) => p.poll.state !== "draft").lastIndexOf(true);
  const next = l.slice(anchor + 1).find((p) => p.poll.state === "draft") || l.find((p) => p.poll.state === "draft"), active = state.state === "active";
  const reset = () => confirm("Reset every score to 0 for a new round?") && act(() => api("POST", `${base}/leaderboard/reset`));
  return h("section", { class: "card quiz", "aria-labelledby": "quiz-h" }, h("h2", { id: "quiz-h" }, "Quiz"),
    active ? h("div", { class: "row" }, h("button", { type: "button", class: "primary", "data-action": "next", disabled: !next, onclick: () => act(() => api("POST", `${base}/polls/${next.poll.id}/open`)) },
      next ? `Next question: ${next.poll.question}` : "Next question (create a draft first)"),
    lb ? h("button", { type: "button", "data-action": "reset-scores", onclick: reset }, "Reset scores") : null) : null,
    active ? h("label", { class: "check" }, h("input", { type: "checkbox", id: "nicknames", checked: state.nicknames === "required",
      onchange: (ev) => act(() => api("POST", `${base}/nicknames`, { nicknames: ev.target.checked ? "required" : "optional" })) }), " Require nicknames to join") : null,
    on && on.poll.closesAt ? h("p", { id: "quiz-live" }, h("strong", {}, `${on.results ? on.results.totalBallots : on.totalBallots || 0} of ${state.participantCount || 0} answered`), " · ",
      h("span", { role: "timer", "data-closes": on.poll.closesAt }, secondsLeft(on.poll)), " s left") : null,
    lb ? [h("h3", {}, `Leaderboard · ${plural(lb.players || 0, "player")}`), lb.entries.length ? h("ol", { class: "leaders", "aria-label": "Leaderboard" }, lb.entries.map((e) =>
      h("li", { "data-key": e.nickname }, h("span", { class: "place" }, ordinal(e.rank)), h("span", { class: "label" }, e.nickname), h("span", { class: "count" }, pts(e.score)))))
      : h("p", { class: "muted" }, "No scores yet.")] : null);
}

/** A template file's polls into this session as drafts; a refused file names each bad entry. */
function importTemplate(ev) {
  const file = ev.target.files[0];
  ev.target.value = "";
  if (!file) return;
  act(async () => {
    let template;
    try { template = JSON.parse(await file.text()); } catch { throw new Error(`${file.name} is not a template (not JSON)`); }
    const r = await fetch(`/api/v1/sessions/${sessionId}/template`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(template), credentials: "same-origin" });
    const data = await r.json().catch(() => null);
    if (!r.ok) {
      const each = data && data.errors ? data.errors.map((e) => `poll ${e.position}: ${e.detail}`).join("; ") : "";
      throw new Error(each ? `Nothing imported. ${each}` : (data && data.detail) || r.statusText);
    }
  });
}

let composerForm = null;
const sessionBox = h("div", {}), pollsBox = h("div", {}), quizArea = h("div", {});

function render() {
  const displayUrl = `/display/${sessionId}?token=${encodeURIComponent(state.displayToken || "")}`;
  const joining = () => act(() => api("POST", `/api/v1/sessions/${sessionId}/joining`, { open: state.joiningOpen === false }));
  // A new link ends every screen (or presenter page) opened with the old one, at once.
  const rotate = (link) => {
    if (!confirm(link === "display" ? "Replace the display link? Screens showing this session must be opened again with the new link." : "Replace the presenter link? Anyone else using the old presenter link loses access.")) return;
    act(async () => {
      const r = await api("POST", `/api/v1/sessions/${sessionId}/links/rotate`, { link });
      if (link === "display") state.displayToken = r.token;
      else location.reload(); // this page's own stream rested on the old link; the new cookie is set
    });
  };
  const end = () => { if (confirm("End this session? Participants can no longer vote.")) act(() => api("POST", `/api/v1/sessions/${sessionId}/end`)); };
  patch(sessionBox, [h("section", { class: "card session" },
    h("h2", {}, state.title, state.state === "ended" ? " (ended)" : ""),
    h("p", {}, "Join code ", h("strong", { class: "code" }, state.joinCode), " · ", h("strong", { id: "participants" }, `${state.participantCount || 0}`), " joined"),
    h("p", {}, "Join at ", h("a", { href: state.joinUrl }, state.joinUrl), " · ", h("a", { href: displayUrl, target: "_blank", rel: "noopener", id: "display-link" }, "Open the display"),
      " · ", h("a", { href: `/api/v1/sessions/${sessionId}/export.csv`, download: "" }, "Download results (CSV)"),
      " · ", h("a", { href: `/api/v1/sessions/${sessionId}/template`, download: "", id: "template-export" }, "Save the polls as a template")),
    state.state === "active" ? h("label", { class: "field" }, h("span", {}, "Add polls from a template (they arrive as drafts)"),
      h("input", { type: "file", id: "template-import", accept: ".json,application/json", onchange: importTemplate })) : null,
    state.state === "active" ? h("div", { class: "row" },
      h("button", { type: "button", id: "joining", onclick: joining }, state.joiningOpen === false ? "Open joining" : "Close joining"),
      h("button", { type: "button", id: "rotate-display", onclick: () => rotate("display") }, "New display link"),
      h("button", { type: "button", id: "rotate-presenter", onclick: () => rotate("presenter") }, "New presenter link"),
      h("button", { type: "button", class: "danger", onclick: end }, "End session")) : null,
    state.joiningOpen === false ? h("p", { class: "muted", id: "joining-note" }, "Joining is closed: new phones are turned away; those who joined keep voting.") : null,
    errorLine())]);
  if (state.state === "active" && !composerForm) composerForm = composer();
  if (state.state !== "active" && composerForm) { composerForm.remove(); composerForm = null; }
  patch(pollsBox, state.polls.slice().reverse().map(pollCard));
  patch(qnaBox, [qnaCard()]);
  patch(quizArea, [quizCard()]);
  if (!main.contains(sessionBox)) main.replaceChildren(sessionBox, ...(composerForm ? [composerForm] : []), quizArea, qnaBox, pollsBox);
}

(async () => {
  if (!sessionId) return home().catch((e) => setStatus(e.message, "bad"));
  try { state = await api("GET", `/api/v1/sessions/${sessionId}`); }
  catch (e) { if (e.status === 401 || e.status === 403) { location.replace("/presenter"); return; } setStatus(e.message, "bad"); return; }
  render();
  ticker();
  follow({ sessionId, actorType: "presenter", snapshot: state, onStatus: setStatus,
    onState: (s) => { state = { ...s, displayToken: state.displayToken, joinUrl: state.joinUrl }; render(); } });
})();
