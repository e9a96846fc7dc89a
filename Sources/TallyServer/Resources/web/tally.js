// Tally's client side: the event transport and the session state, shared by every page.
// WebSocket first, Server-Sent Events on the same /events path as the fallback; reconnects
// with exponential backoff and full jitter, resuming from the last eventId, so nothing is missed
// and nothing is applied twice. State comes only from the snapshot and events.

const seqOf = (id) => { const i = id ? id.lastIndexOf("-") : -1; return i < 0 ? null : [id.slice(0, i), Number(id.slice(i + 1))]; };

/** True when eventId `a` comes after `b` (same ring); ids from another ring always count as new. */
export function isAfter(a, b) {
  const x = seqOf(a), y = seqOf(b);
  return !x || !y || x[0] !== y[0] || x[1] > y[1];
}

/** Applies one envelope to the session state (the snapshot shape of GET /api/v1/sessions/{id}). */
export function applyEvent(state, e) {
  const p = e.payload;
  if (e.eventType === "stream.reset") return { ...p };
  const s = { ...state, polls: state.polls.slice(), lastEventId: e.eventId };
  if (/^q(na|uestion)\./.test(e.eventType)) { qnaEvent((s.qna = { ...QNA, ...state.qna }), e.eventType, p); return s; }
  const find = (id) => s.polls.findIndex((x) => x.poll.id === id);
  const put = (id, f) => { const i = find(id); if (i >= 0) s.polls[i] = f({ ...s.polls[i] }); };
  switch (e.eventType) {
    case "poll.created": if (find(p.poll.id) < 0) s.polls.push({ poll: p.poll }); break;
    case "poll.opened": // a quiz question's right answers are in no poll.opened: the presenter keeps its own
      if (find(p.poll.id) < 0) s.polls.push({ poll: p.poll });
      put(p.poll.id, (x) => ({ ...x, poll: { ...x.poll, ...p.poll, quiz: p.poll.quiz && { ...x.poll.quiz, ...p.poll.quiz }, state: "open" } }));
      s.openPollId = p.poll.id; break;
    case "poll.closed":
      put(p.pollId, (x) => ({ ...x, poll: { ...x.poll, state: "closed" } }));
      if (s.openPollId === p.pollId) s.openPollId = null; break;
    case "poll.revealed": put(p.pollId, (x) => ({ ...x, poll: { ...x.poll, revealed: true }, results: p.results, totalBallots: p.results.totalBallots })); break;
    case "poll.results": put(p.pollId, (x) => ({ ...x, results: p, totalBallots: p.totalBallots })); break;
    case "poll.ballots": put(p.pollId, (x) => ({ ...x, totalBallots: p.totalBallots })); break;
    case "session.joining": s.joiningOpen = p.joiningOpen; break;
    case "participant.joined": s.participantCount = p.participantCount; break;
    case "session.ended": s.state = "ended"; s.openPollId = null; break;
    case "session.nicknames": s.nicknames = p.nicknames; break;
    case "quiz.results": put(p.pollId, (x) => ({ ...x, outcome: p, results: p.results, totalBallots: p.results.totalBallots, poll: { ...x.poll, quiz: { ...x.poll.quiz, correctOptionIds: p.correctOptionIds } } })); break;
    case "quiz.leaderboard": s.leaderboard = { ...state.leaderboard, players: p.players, entries: p.entries }; break;
    case "quiz.score": // ours alone
      put(p.pollId, (x) => ({ ...x, myQuiz: p }));
      s.leaderboard = { entries: [], ...state.leaderboard, players: p.players, me: { nickname: state.myNickname, score: p.total, rank: p.rank } }; break;
    case "quiz.reset": s.leaderboard = { ...state.leaderboard, entries: [], me: null }; s.quizReset = p.pollIds; break;
  }
  return s;
}

const QNA = { state: "off", moderation: "post", anonymous: true, questions: [] };
/** Q&A events: `qna` is the state's copy (its question list copied here before any change). */
function qnaEvent(qna, type, p) {
  const l = (qna.questions = (qna.questions || []).slice()), at = (id) => l.findIndex((q) => q.questionId === id);
  const put = (id, change) => { const i = at(id); if (i >= 0) l[i] = { ...l[i], ...change }; };
  const shine = (id) => l.forEach((q, i) => { if (q.highlighted !== (q.questionId === id)) l[i] = { ...q, highlighted: q.questionId === id }; });
  switch (type) {
    case "qna.opened": Object.assign(qna, { state: "open", moderation: p.moderation, anonymous: p.anonymous }); break;
    case "qna.closed": qna.state = "closed"; break;
    case "question.asked": case "question.approved": {
      const i = at(p.question.questionId);
      if (i >= 0) l[i] = { ...l[i], ...p.question }; else l.push(p.question);
      if (p.question.highlighted) shine(p.question.questionId);
      break;
    }
    case "question.hidden": put(p.questionId, { state: "hidden", highlighted: false }); break;
    case "question.answered": put(p.questionId, { state: "answered", highlighted: false }); break;
    case "question.highlighted": shine(p.questionId); break;
    case "question.withdrawn": { const i = at(p.questionId); if (i >= 0) l.splice(i, 1); break; }
    case "question.upvotes": for (const c of p.counts || []) put(c.questionId, { upvotes: c.upvotes }); break;
  }
}

/** Most upvoted first (then the oldest), or the newest first. */
const age = (a, b) => (a.askedAt > b.askedAt) - (a.askedAt < b.askedAt);
export const sortQuestions = (l, newest) => l.slice().sort((a, b) => (newest ? age(b, a) : b.upvotes - a.upvotes || age(a, b)));

/** The server's clock minus ours (ms), from the events' stamps: a quiz question's countdown runs on the server's time. */
let skew = null;
/** Seconds left of an open quiz question (by the server's clock), or null. */
export const secondsLeft = (poll) => (poll.closesAt ? Math.max(0, Math.ceil((Date.parse(poll.closesAt) - Date.now() - (skew || 0)) / 1000)) : null);
/** Keeps every countdown ([data-closes]) ticking between renders; onChange(seconds, element) when one changes. */
export function ticker(onChange) {
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-closes]")) {
      const n = secondsLeft({ closesAt: el.dataset.closes });
      if (el.textContent !== String(n)) { el.textContent = n; if (onChange) onChange(n, el); }
    }
  }, 200);
}
export const pts = (n) => `${n.toLocaleString("en")} point${n === 1 ? "" : "s"}`;
export const ordinal = (n) => n + (["th", "st", "nd", "rd"][n % 100 > 10 && n % 100 < 14 ? 0 : n % 10] || "th");

/**
 * Follows a session. `onState(state)` after every change; `onStatus(text, kind)` for the
 * connection indicator. Returns { stop }.
 */
export function follow({ sessionId, actorType, token, snapshot, onState, onStatus }) {
  let state = snapshot, last = snapshot.lastEventId, mode = null, attempt = 0, stopped = false, socket = null, timer = null;
  const params = () => {
    const q = new URLSearchParams({ sessionId, actorType });
    if (token) q.set("token", token);
    if (last) q.set("fromEventId", last);
    return q.toString();
  };
  const receive = (text) => {
    let e; try { e = JSON.parse(text); } catch { return; }
    if (e.eventType !== "stream.reset" && !isAfter(e.eventId, last)) return; // already applied
    last = e.eventId; attempt = 0;
    const t = Date.parse(e.timestamp) - Date.now(); // never received before it was stamped: the largest is the closest
    if (t === t && (skew == null || t > skew)) skew = t;
    state = applyEvent(state, e); onState(state);
  };
  const retry = () => {
    if (stopped) return;
    onStatus("reconnecting…", "wait");
    const delay = Math.random() * Math.min(10000, 500 * 2 ** attempt++); // full jitter
    timer = setTimeout(open, delay);
  };
  const openSSE = () => {
    const es = new EventSource("/events?" + params());
    socket = es;
    es.onopen = () => onStatus("live", "ok");
    es.onmessage = (m) => receive(m.data);
    for (const t of ["session.created", "session.ended", "poll.created", "poll.opened", "poll.closed", "poll.revealed", "poll.results", "poll.ballots", "poll.moderated", "participant.joined", "session.joining", "stream.reset", "session.nicknames", "quiz.results", "quiz.leaderboard", "quiz.score", "quiz.reset",
      "qna.opened", "qna.closed", ...["asked", "approved", "hidden", "answered", "highlighted", "withdrawn", "upvotes"].map((t) => "question." + t)])
      es.addEventListener(t, (m) => receive(m.data));
    es.onerror = () => { es.close(); retry(); }; // our own backoff, from our own last eventId
  };
  const openWS = () => {
    let opened = false;
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/events?" + params());
    socket = ws;
    ws.onopen = () => { opened = true; mode = "ws"; onStatus("live", "ok"); };
    ws.onmessage = (m) => receive(m.data);
    ws.onclose = (c) => {
      if (stopped) return;
      if (c.code >= 4400 && c.code < 4500) { stopped = true; onStatus(c.reason || "not allowed", "bad"); return; }
      if (!opened && mode === null) { mode = "sse"; openSSE(); return; } // blocked: fall back for the page's life
      retry();
    };
  };
  function open() {
    if (stopped) return;
    if (mode === "sse" || !("WebSocket" in window)) { mode = "sse"; openSSE(); } else openWS();
  }
  open();
  return { stop() { stopped = true; clearTimeout(timer); if (socket) socket.close(); }, get transport() { return mode; } };
}

/** fetch + JSON with the problem's detail as the error message. */
export async function api(method, path, body, token) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) { const err = new Error((data && data.detail) || r.statusText); err.status = r.status; err.type = (data && data.type) || ""; throw err; }
  return data;
}

/** Builds an element; children are nodes or strings (always text, never HTML). Handlers are
 * properties (not listeners), so patch() can move them onto the element it keeps. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith("on")) { el[k] = v; (el._on ||= []).push(k); } else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(9)) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** Makes el's children look like `kids`, keeping the elements that stay (focus, transitions, a click in progress). */
export function patch(el, kids) {
  kids = kids.flat(9).filter((k) => k != null && k !== false).map((k) => (k instanceof Node ? k : document.createTextNode(k)));
  const old = [...el.childNodes];
  kids.forEach((k, i) => (old[i] ? morph(old[i], k) : el.append(k)));
  for (const o of old.slice(kids.length)) o.remove();
}
function morph(o, n) {
  if (o.nodeName !== n.nodeName || (n.dataset && o.dataset.key !== n.dataset.key)) return o.replaceWith(n);
  if (o.nodeType !== 1) { if (o.data !== n.data) o.data = n.data; return; }
  for (const a of [...o.attributes]) if (a.name !== "style" && !n.hasAttribute(a.name)) o.removeAttribute(a.name);
  for (const a of n.attributes) if (a.name !== "style" && o.getAttribute(a.name) !== a.value) o.setAttribute(a.name, a.value);
  if (o.style.cssText !== n.style.cssText) o.style.cssText = n.style.cssText; // CSSOM: allowed by style-src 'self'
  for (const k of new Set([...(o._on || []), ...(n._on || [])])) o[k] = n[k] || null;
  o._on = n._on;
  patch(o, [...n.childNodes]);
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
export const isChoice = (kind) => kind === "single" || kind === "multiple";
/** "3 votes" for the kinds people vote in, "3 responses" for the ones they write in. */
export const ballots = (kind, n) => plural(n, kind === "wordcloud" || kind === "open" ? "response" : "vote");

const meters = (label, rows, quiz) => h("ul", { class: quiz ? "bars quiz" : "bars", "aria-label": label }, rows.map(([name, value, pct, mine, right]) => {
  const li = h("li", { class: [mine && "mine", right && "right"].filter(Boolean).join(" ") || null }, h("span", { class: "label" }, name, right ? h("span", { class: "ok" }, " ✓ right answer") : null),
    h("span", { class: "count" }, value), h("span", { class: "bar" }));
  li.lastChild.style.setProperty("--w", pct + "%");
  return li;
}));

/** Result bars: one row per option with its count and share (a quiz question's right answers marked once known). */
export function bars(poll, results, mine) {
  const counts = (results && results.counts) || [], total = counts.reduce((a, c) => a + c.count, 0), right = poll.quiz && poll.quiz.correctOptionIds;
  return meters("Results", poll.options.map((o) => {
    const n = (counts.find((c) => c.optionId === o.id) || { count: 0 }).count, pct = total ? Math.round((100 * n) / total) : 0;
    return [o.label, `${n} · ${pct}%`, pct, mine && mine.includes(o.id), right && right.includes(o.id)];
  }), right);
}

/** A ranking's result: options best first, bars by Borda points. */
function ranked(poll, r) {
  const rows = r.options || [], top = Math.max(1, ...rows.map((o) => o.points));
  return meters("Ranking", rows.map((o, i) => [`${i + 1}. ${(poll.options.find((x) => x.id === o.optionId) || { label: "?" }).label}`,
    plural(o.points, "point") + (o.averageRank == null ? "" : ` · average rank ${Math.round(o.averageRank * 10) / 10}`), Math.round((100 * o.points) / top)]));
}

/** A scale's result: a histogram with the mean marked, and mean and median as numbers. */
function histogram(poll, r, mine) {
  const s = poll.scale || { min: 1, max: 5 }, d = r.distribution || [], top = Math.max(1, ...d.map((x) => x.count));
  const box = h("div", { class: "hist" }, h("ol", { "aria-label": "Votes per value" }, d.map((x) => {
    const li = h("li", { class: x.value === mine ? "mine" : null, "aria-label": `${x.value}: ${plural(x.count, "vote")}` },
      h("span", { class: "count" }, x.count), h("span", { class: "col" }), h("span", { class: "v" }, x.value));
    li.children[1].style.setProperty("--h", (100 * x.count) / top + "%");
    return li;
  })));
  if (r.mean != null) {
    const m = h("span", { class: "mean", "aria-hidden": "true" }, h("b", {}, `mean ${r.mean}`));
    m.style.setProperty("--x", (100 * (r.mean - s.min + 0.5)) / (s.max - s.min + 1) + "%");
    box.append(m);
  }
  return h("div", { class: "scale-result" }, box, ends(s),
    h("p", { class: "stats" }, r.mean == null ? "No votes yet" : `Mean ${r.mean} · median ${r.median}`));
}

/** The words of a scale's ends: "1 = Not at all … 5 = Completely". */
export const ends = (s) => (s.minLabel || s.maxLabel ? h("p", { class: "ends" },
  h("span", {}, s.minLabel ? `${s.min} = ${s.minLabel}` : ""), h("span", {}, s.maxLabel ? `${s.max} = ${s.maxLabel}` : "")) : null);

/** Results of any kind, for the phone and the presenter (the display draws clouds and walls itself). */
export function results(poll, r, mine) {
  switch (poll.kind) {
    case "scale": return histogram(poll, r, mine);
    case "ranking": return ranked(poll, r);
    case "wordcloud": {
      const m = (mine || []).map((w) => w.toLowerCase());
      return (r.words || []).length ? h("ul", { class: "chips", "aria-label": "Words" }, r.words.map((w) => h("li", { class: m.includes(w.text.toLowerCase()) ? "mine" : null },
        w.text, " ", h("span", { class: "n" }, `×${w.count}`)))) : h("p", { class: "muted" }, "No words yet.");
    }
    case "open":
      return (r.answers || []).length ? h("ul", { class: "answers", "aria-label": "Answers" }, r.answers.map((a) => h("li", { class: (mine || []).includes(a.answerId) ? "mine" : null, "data-key": a.answerId }, a.text)))
        : h("p", { class: "muted" }, "No answers yet.");
    default: return bars(poll, r, mine);
  }
}

export function status(el) {
  return (text, kind) => { el.textContent = text; el.dataset.kind = kind; };
}
