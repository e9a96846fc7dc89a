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
  const find = (id) => s.polls.findIndex((x) => x.poll.id === id);
  const put = (id, f) => { const i = find(id); if (i >= 0) s.polls[i] = f({ ...s.polls[i] }); };
  switch (e.eventType) {
    case "poll.created": if (find(p.poll.id) < 0) s.polls.push({ poll: p.poll }); break;
    case "poll.opened":
      if (find(p.poll.id) < 0) s.polls.push({ poll: p.poll });
      put(p.poll.id, (x) => ({ ...x, poll: { ...x.poll, state: "open" } }));
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
  }
  return s;
}

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
    for (const t of ["session.created", "session.ended", "poll.created", "poll.opened", "poll.closed", "poll.revealed", "poll.results", "poll.ballots", "participant.joined", "session.joining", "stream.reset"])
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
  if (!r.ok) { const err = new Error((data && data.detail) || r.statusText); err.status = r.status; throw err; }
  return data;
}

/** Builds an element; children are nodes or strings (always text, never HTML). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** Result bars: one row per option with its count and share. */
export function bars(poll, results, mine) {
  const total = results ? results.counts.reduce((a, c) => a + c.count, 0) : 0;
  return h("ul", { class: "bars", "aria-label": "Results" }, poll.options.map((o) => {
    const n = results ? (results.counts.find((c) => c.optionId === o.id) || { count: 0 }).count : 0;
    const pct = total ? Math.round((100 * n) / total) : 0;
    const li = h("li", { class: mine && mine.includes(o.id) ? "mine" : null },
      h("span", { class: "label" }, o.label), h("span", { class: "count" }, `${n} · ${pct}%`), h("span", { class: "bar" }));
    li.lastChild.style.setProperty("--w", pct + "%");
    return li;
  }));
}

export function status(el) {
  return (text, kind) => { el.textContent = text; el.dataset.kind = kind; };
}
