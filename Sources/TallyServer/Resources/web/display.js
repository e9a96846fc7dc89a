import { api, ballots, bars, ends, follow, h, ordinal, patch, plural, pts, results, secondsLeft, sortQuestions, status, ticker } from "/assets/tally.js";

const main = document.getElementById("main");
const setStatus = status(document.getElementById("status"));
const parts = location.pathname.split("/");
const sessionId = parts[2];
const token = new URLSearchParams(location.search).get("token");
let state;
let wifi = null; // the room's Wi-Fi network, when the appliance has one configured (GET /api/v1/wifi)

// On the box's own screen before first-run set-up, the set-up code (the server only tells it
// to a page opened from the box itself).
async function setupNotice() {
  try {
    const r = await api("GET", "/api/v1/auth/setup-code");
    return h("section", { class: "card narrow setup", "aria-label": "First-run set-up" },
      h("h2", {}, "Set up this appliance"),
      h("p", {}, "Open ", h("strong", {}, "/presenter"), " on a laptop on this network, choose the operator password and enter this set-up code:"),
      h("p", { class: "code big", id: "setup-code" }, r.setupCode));
  } catch { return null; }
}

async function pairing() {
  const input = h("input", { id: "code", class: "code", maxlength: 7, autocomplete: "off", autocapitalize: "characters", placeholder: "K7QX2M", required: true });
  const error = h("p", { class: "error", role: "alert" });
  main.replaceChildren(h("form", { class: "card narrow", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/v1/display/pair", { joinCode: input.value.trim() });
      location.replace(`/display/${r.sessionId}?token=${encodeURIComponent(r.displayToken)}`);
    } catch (e) { error.textContent = e.message; }
  } }, h("h1", {}, "Show a session on this screen"), h("label", { for: "code" }, "Join code"), input,
  h("button", { type: "submit", class: "primary" }, "Show"), error));
  const notice = await setupNotice();
  if (notice) main.prepend(notice);
  setStatus("", "ok");
  input.focus();
}

function joinBlock(big) {
  const q = new URLSearchParams(token ? { token } : {});
  return h("aside", { class: big ? "join big" : "join" },
    h("img", { src: `/api/v1/sessions/${sessionId}/qr.svg?${q}`, alt: "QR code to join" }),
    // The link's key is for the QR code; people typing the address get the short form.
    h("p", {}, "Join at ", h("strong", {}, (state.joinUrl || location.host).split("?")[0])),
    h("p", {}, "Code ", h("strong", { class: "code" }, state.joinCode)));
}

/** Scan to join the room's Wi-Fi: the first step before the join code, on the box's own network. */
function wifiBlock() {
  return h("aside", { class: "join big wifi" },
    h("img", { src: wifi.qr, alt: "QR code to join the Wi-Fi" }),
    h("p", {}, "Wi-Fi ", h("strong", {}, wifi.ssid)),
    wifi.passphrase ? h("p", {}, "Password ", h("strong", { class: "code" }, wifi.passphrase)) : null);
}

let view = null; // the open poll's screen, kept while it stays up so clouds grow and walls fill in place

function render() {
  const poll = state.polls.find((p) => p.poll.id === state.openPollId);
  const people = `${state.participantCount || 0} joined`;
  const q = state.qna || { questions: [] }, shown = q.questions.filter((x) => x.state === "visible");
  const hi = shown.find((x) => x.highlighted);
  if (state.state !== "ended" && q.state === "open" && hi) return qna(hi, shown, people);
  if (quiz(poll, people)) return;
  if (state.state !== "ended" && q.state === "open" && !poll) return qna(hi, shown, people);
  if (state.state === "ended" || !poll) view = null;
  if (state.state === "ended") { main.replaceChildren(h("section", { class: "idle" }, h("h1", {}, state.title), h("p", {}, "This session has ended."))); return; }
  if (!poll) {
    main.replaceChildren(h("section", { class: "idle" }, h("h1", {}, state.title), h("p", { class: "muted" }, people),
      h("div", { class: "steps" }, wifi ? wifiBlock() : null, joinBlock(true))));
    return;
  }
  const { kind } = poll.poll, key = poll.poll.id + (poll.results ? " results" : " hidden");
  if (!view || view.key !== key) {
    view = { key, q: h("h1"), body: h("div", { class: "body" }), total: h("p", { class: "total" }) };
    main.replaceChildren(h("section", { class: "live " + kind }, view.q, view.body, view.total), joinBlock(false));
  }
  view.q.textContent = poll.poll.question;
  view.total.textContent = `${ballots(kind, poll.results ? poll.results.totalBallots : (poll.totalBallots || 0))} · ${people}`;
  if (!poll.results) hidden(poll.poll);
  else if (kind === "wordcloud") cloud(poll.results);
  else if (kind === "open") wall(poll.results);
  else patch(view.body, [results(poll.poll, poll.results)]);
}

// Hidden until the reveal: the room sees the question and the turnout, never the counts.
function hidden(poll) {
  patch(view.body, [h("div", { class: "hidden-results" },
    poll.options.length ? h("ul", { class: "options" }, poll.options.map((o) => h("li", {}, o.label))) : null,
    poll.scale ? h("p", { class: "range" }, `From ${poll.scale.min} to ${poll.scale.max}`) : null, poll.scale ? ends(poll.scale) : null,
    h("p", { class: "muted", id: "hidden-note" }, "Results are hidden until the presenter reveals them."))]);
}

const ctx = document.createElement("canvas").getContext("2d");

/**
 * The word cloud. Words are placed in the order they first appear, on an elliptic spiral out from
 * the middle, at the first spot where they overlap nothing; a placed word never moves. Growing
 * words shrink everyone a little instead (so nothing overlaps), and the whole cloud is zoomed to
 * fill the screen: sizes change smoothly, places never. Hidden words fade out and free their spot.
 */
function cloud(r) {
  if (!view.cloud) {
    const ul = h("ul", { class: "cloud", "aria-label": "Word cloud" });
    view.body.replaceChildren(h("div", { class: "cloud-box" }, ul));
    ctx.font = `700 100px ${getComputedStyle(ul).fontFamily}`;
    view.cloud = { ul, words: new Map(), n: 0, s: 1 };
  }
  const c = view.cloud, W = c.ul.clientWidth || 1600, H = c.ul.clientHeight || 600, seen = new Set(r.words.map((w) => w.text));
  for (const [t, e] of c.words) if (!seen.has(t)) { c.words.delete(t); e.el.classList.add("gone"); setTimeout(() => e.el.remove(), 600); }
  const fresh = [];
  for (const w of r.words) {
    let e = c.words.get(w.text);
    if (!e) { e = { el: h("li", { class: "c" + (c.n++ % 5) }, w.text), k: ctx.measureText(w.text).width / 100 }; c.words.set(w.text, e); fresh.push(e); }
    e.count = w.count; e.f = 24 + 16 * Math.log2(w.count); // font size in px before shrinking and zooming
    e.el.setAttribute("aria-label", `${w.text}: ${w.count}`);
  }
  const size = (e, s) => [e.k * e.f * s + 14, e.f * s * 1.05 + 6]; // width, height with a margin
  const placed = [...c.words.values()].filter((e) => !fresh.includes(e));
  // The largest shrink at which no two placed words (centres fixed) overlap.
  let s = 1;
  for (let i = 0; i < placed.length; i++) for (let j = i + 1; j < placed.length; j++) {
    const a = placed[i], b = placed[j], [aw, ah] = size(a, 1), [bw, bh] = size(b, 1);
    s = Math.min(s, Math.max((2 * Math.abs(a.x - b.x)) / (aw + bw), (2 * Math.abs(a.y - b.y)) / (ah + bh)));
  }
  const hits = (e, x, y) => { const [w, hh] = size(e, s); return placed.some((o) => { const [ow, oh] = size(o, s); return Math.abs(o.x - x) * 2 < w + ow && Math.abs(o.y - y) * 2 < hh + oh; }); };
  for (const e of fresh) {
    let t = 0, x = 0, y = 0;
    while (hits(e, x, y) && t < 2000) { t += 0.08; x = 3.2 * (W / H) * t * Math.cos(t); y = 3.2 * t * Math.sin(t); }
    e.x = x; e.y = y; placed.push(e); c.ul.append(e.el);
  }
  // The cloud's bounding box is centred and zoomed to fill the screen (a lone word is not a poster:
  // the biggest word stays under a sixth of the screen's height).
  const b = [1e9, 1e9, -1e9, -1e9];
  let big = 1;
  for (const e of placed) {
    const [w, hh] = size(e, s);
    b[0] = Math.min(b[0], e.x - w / 2); b[1] = Math.min(b[1], e.y - hh / 2); b[2] = Math.max(b[2], e.x + w / 2); b[3] = Math.max(b[3], e.y + hh / 2); big = Math.max(big, e.f * s);
  }
  if (placed.length) {
    c.ul.style.setProperty("--z", Math.min(innerHeight / 6 / big, W / (b[2] - b[0]), H / (b[3] - b[1])).toFixed(3));
    c.ul.style.setProperty("--cx", (-(b[0] + b[2]) / 2).toFixed(1) + "px"); c.ul.style.setProperty("--cy", (-(b[1] + b[3]) / 2).toFixed(1) + "px");
  }
  for (const e of placed) {
    e.el.style.setProperty("--x", e.x.toFixed(1) + "px"); e.el.style.setProperty("--y", e.y.toFixed(1) + "px");
    e.el.style.setProperty("--f", (e.f * s).toFixed(1) + "px");
  }
  if (!view.empty) view.body.append(view.empty = h("p", { class: "muted empty" }));
  view.empty.textContent = r.words.length ? "" : "Words appear here as they come in.";
}

/** Q&A: the highlighted question large, or the five most upvoted. Rows are kept by question and
 * slide to their new place (FLIP), so a vote moves one row, never redraws the list. */
function qna(hi, shown, people) {
  const key = hi ? "hi " + hi.questionId : "top";
  if (!view || view.key !== key) {
    view = { key, list: h("ol", { class: "top", "aria-label": "Top questions" }), rows: new Map(), total: h("p", { class: "total" }) };
    main.replaceChildren(h("section", { class: "live qna" + (hi ? " highlight" : "") }, hi ? h("p", { class: "kicker" }, "Now answering") : h("h1", {}, "Top questions"),
      hi ? h("blockquote", { class: "big-q" }, h("p", { class: hi.text.length > 140 ? "long" : null }, hi.text), h("footer", {}, hi.name || "Anonymous", " · ", h("span", { class: "n" }))) : view.list, view.total), joinBlock(false));
  }
  view.total.textContent = `${plural(shown.length, "question")} · ${people}`;
  if (hi) { main.querySelector(".big-q .n").textContent = `▲ ${hi.upvotes}`; return; }
  const top = sortQuestions(shown, false).slice(0, 5), was = new Map([...view.rows].map(([id, li]) => [id, li.getBoundingClientRect().top]));
  const keep = new Set(top.map((x) => x.questionId));
  for (const [id, li] of view.rows) if (!keep.has(id)) { li.remove(); view.rows.delete(id); }
  top.forEach((x, i) => {
    let li = view.rows.get(x.questionId);
    if (!li) view.rows.set(x.questionId, (li = h("li", { class: "new" }, h("span", { class: "n" }), h("span", { class: "t" }, x.text), h("span", { class: "by" }, x.name || ""))));
    li.firstChild.textContent = `▲ ${x.upvotes}`;
    if (view.list.children[i] !== li) view.list.insertBefore(li, view.list.children[i] || null);
  });
  if (!matchMedia("(prefers-reduced-motion: reduce)").matches) for (const [id, y] of was) {
    const li = view.rows.get(id), d = li && y - li.getBoundingClientRect().top;
    if (d) li.animate([{ transform: `translateY(${d}px)` }, { transform: "none" }], { duration: 600, easing: "ease-out" });
  }
  if (!top.length) view.list.replaceChildren(h("li", { class: "empty muted" }, "Ask your questions on your phone: scan the code to join."));
  else view.list.querySelector(".empty")?.remove();
}

// A quiz: the question with its countdown and the number answered; once the server closes it, the
// distribution with the right answers marked (for a few seconds), then the leaderboard, which
// stays up until the next question. The display never sees drafts, so it cannot tell the last
// question: the podium comes when the presenter ends the session (or on a reload of an ended one).
let lastQuiz = null, phase = null, before = []; // before: the leaderboard's order before the latest question
const QUIZ_RESULTS_MS = 6000;

function quiz(poll, people) {
  const lb = state.leaderboard;
  if (state.state === "ended") return lb && lb.entries.some((e) => e.score > 0) && podium(lb);
  if (poll && poll.poll.quiz) { lastQuiz = poll.poll.id; phase = null; question(poll, people); return true; }
  const x = !poll && state.polls.find((p) => p.poll.id === lastQuiz && p.poll.state === "closed");
  if (!x) return false;
  if (!phase && x.outcome) { phase = "results"; setTimeout(() => { if (phase === "results") { phase = "board"; render(); } }, QUIZ_RESULTS_MS); }
  if (phase === "board" && lb) board(lb);
  else if (phase === "results") {
    if (!view || view.key !== "results " + x.poll.id) screen("results " + x.poll.id, "quiz-results", h("p", { class: "kicker" }, "The answer"), h("h1", {}, x.poll.question));
    patch(view.body, [bars(x.poll, x.results)]);
    view.total.textContent = `${x.outcome.correct} of ${x.outcome.answered} answered right`;
  } else question(x, people); // closed: the results are on their way
  return true;
}

/** A quiz screen: its parts above the body and the total, with the join code at the side. */
function screen(key, cls, ...top) {
  view = { key, body: h("div", { class: "body" }), total: h("p", { class: "total" }) };
  main.replaceChildren(h("section", { class: "live quiz " + cls }, top, view.body, view.total), ...(cls === "podium" ? [] : [joinBlock(false)]));
}

function question(p, people) {
  const open = p.poll.state === "open";
  if (!view || view.key !== "quiz " + p.poll.id) {
    screen("quiz " + p.poll.id, "quiz-question", h("div", { class: "quiz-top" }, h("h1", {}, p.poll.question), h("p", { class: "clock" })));
    view.body.append(h("ul", { class: "tiles" }, p.poll.options.map((o, i) => h("li", { class: "a" + (i % 4) }, h("span", { class: "letter", "aria-hidden": "true" }, "ABCDEFGHIJKL"[i]), o.label))));
  }
  patch(main.querySelector(".clock"), [open && p.poll.closesAt ? h("span", { role: "timer", "aria-label": "Seconds left", "data-closes": p.poll.closesAt }, secondsLeft(p.poll)) : h("span", { class: "up" }, "Time is up")]);
  view.total.textContent = `${p.totalBallots || 0} answered · ${people}`;
}

/** The leaderboard: rows keyed by nickname slide from their place before the question to the new one (a CSS transition). */
function board(lb) {
  const rows = lb.entries.slice(0, 10);
  if (!view || view.key !== "board") {
    screen("board", "quiz-board", h("h1", {}, "Leaderboard"));
    view.list = h("ol", { class: "board", "aria-label": "Leaderboard" });
    view.rows = new Map();
    view.body.append(view.list);
    place(before.slice(0, 10));
    void view.list.offsetHeight; // the old order is drawn first, so the move to the new one is a transition
  }
  place(rows);
  view.total.textContent = plural(lb.players || 0, "player");
  const v = view;
  clearTimeout(v.tidy); // once the rows stopped, the DOM order follows them too (what a screen reader reads)
  v.tidy = setTimeout(() => rows.forEach((e, i) => { const li = v.rows.get(e.nickname); if (li && v.list.children[i] !== li) v.list.insertBefore(li, v.list.children[i] || null); }), 1500);
}

function place(rows) {
  const keep = new Set(rows.map((e) => e.nickname));
  for (const [k, li] of view.rows) if (!keep.has(k)) { li.remove(); view.rows.delete(k); }
  rows.forEach((e, i) => {
    let li = view.rows.get(e.nickname);
    if (!li) view.list.append(li = h("li", { class: "new" }, h("span", { class: "place" }), h("span", { class: "name" }, e.nickname), h("span", { class: "score" })));
    view.rows.set(e.nickname, li);
    li.children[0].textContent = ordinal(e.rank); li.children[2].textContent = pts(e.score);
    li.style.setProperty("--i", i);
  });
  view.list.style.setProperty("--n", rows.length);
}

/** The final podium: the top three, first in the middle (the list stays in rank order for screen readers). */
function podium(lb) {
  if (view && view.key === "podium") return true;
  screen("podium", "podium", h("p", { class: "kicker" }, state.title), h("h1", {}, "Final standings"));
  view.body.append(h("ol", { class: "steps3", "aria-label": "Podium" }, lb.entries.slice(0, 3).map((e, i) => h("li", { class: "p" + (i + 1) },
    h("span", { class: "name" }, e.nickname), h("span", { class: "score" }, pts(e.score)), h("span", { class: "step" }, ordinal(e.rank))))));
  view.total.textContent = `${plural(lb.players || 0, "player")} · thank you for playing!`;
  return true;
}

/** The answer wall: newest first, each new one fades in; hidden ones go. */
function wall(r) {
  if (!view.wall) { view.wall = { ul: h("ul", { class: "wall", "aria-label": "Answers" }), els: new Map(), first: true }; view.body.replaceChildren(view.wall.ul); }
  const w = view.wall, keep = new Set(r.answers.map((a) => a.answerId));
  for (const [id, el] of w.els) if (!keep.has(id)) { el.remove(); w.els.delete(id); }
  r.answers.forEach((a, i) => {
    let el = w.els.get(a.answerId);
    if (!el) w.els.set(a.answerId, el = h("li", { class: w.first ? null : "new" }, a.text));
    else if (el.textContent !== a.text) el.textContent = a.text; // edited by its author
    if (w.ul.children[i] !== el) w.ul.insertBefore(el, w.ul.children[i] || null);
  });
  w.first = false;
  if (!r.answers.length) w.ul.replaceChildren(h("li", { class: "empty muted" }, "Answers appear here as they come in."));
  else w.ul.querySelector(".empty")?.remove();
}

(async () => {
  if (!sessionId) return pairing();
  try { wifi = await api("GET", "/api/v1/wifi"); } catch (e) { wifi = null; } // 404: no Wi-Fi configured
  try { state = await api("GET", `/api/v1/sessions/${sessionId}`, undefined, token); }
  catch (e) { setStatus(e.message, "bad"); setTimeout(() => location.reload(), 5000); return; } // the box may be restarting
  const last = state.polls.filter((p) => p.poll.state !== "draft").slice(-1)[0];
  if (last && last.poll.quiz && state.leaderboard) { lastQuiz = last.poll.id; phase = "board"; }
  render();
  ticker();
  follow({ sessionId, actorType: "display", token, snapshot: state, onStatus: setStatus, onState: (s) => {
    const was = state.leaderboard;
    if (s.quizReset && s.quizReset !== state.quizReset) lastQuiz = null;
    if (was && s.leaderboard && s.leaderboard.entries !== was.entries) before = was.entries;
    state = { ...s, joinUrl: state.joinUrl }; render();
  } });
})();
