// The operator's console: one EventSource on /api/v1/operator/status (a snapshot at once, then
// every 2 s), rendered whole each time. No polling loop: when the stream ends, the page asks
// once whether the operator is still signed in, then reconnects with backoff or says to sign in.
import { api, h, patch, plural, status } from "/assets/tally.js";

const main = document.getElementById("main");
const setStatus = status(document.getElementById("status"));
const SVG = "http://www.w3.org/2000/svg";
let attempt = 0, timer = null, source = null;

async function start() {
  clearTimeout(timer);
  let auth = null;
  try { auth = await api("GET", "/api/v1/auth/status"); } catch { /* the box is away: try the stream anyway */ }
  if (auth && !auth.signedInAsOperator) return signInFirst();
  connect();
}

function connect() {
  source = new EventSource("/api/v1/operator/status");
  source.addEventListener("operator.status", (m) => {
    attempt = 0;
    setStatus("live", "ok");
    render(JSON.parse(m.data));
  });
  source.onerror = () => {
    source.close(); // our own backoff (full jitter), after asking whether the sign-in still holds
    setStatus("reconnecting…", "wait");
    timer = setTimeout(start, Math.random() * Math.min(10000, 500 * 2 ** attempt++));
  };
}

function signInFirst() {
  setStatus("not signed in", "bad");
  patch(main, [h("section", { class: "card", id: "signin-needed" },
    h("h2", {}, "Sign in as the operator"),
    h("p", {}, "This console is for venue staff: it shows the box's health, who is connected and what needs attention."),
    h("p", {}, h("a", { href: "/presenter", id: "signin-link" }, "Sign in on the presenter page"), ", then come back to this page."))]);
}

// -- words for numbers ----------------------------------------------------------------------

const num = (n) => (n == null ? "—" : Number(n).toLocaleString("en"));
const rate = (n) => (n == null ? "—" : n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(n >= 10 ? 1 : 2).replace(/\.?0+$/, "") || "0");
const ms = (n) => (n == null ? "—" : n < 10 ? n.toFixed(2) + " ms" : Math.round(n) + " ms");
function span(seconds) {
  if (seconds == null) return "—";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  const two = (a, unit, b, sub) => a + " " + unit + (b ? ` ${b} ${sub}` : "");
  if (s < 86400) return two(Math.floor(s / 3600), "h", Math.floor(s / 60) % 60, "min");
  return two(Math.floor(s / 86400), "d", Math.floor(s / 3600) % 24, "h");
}
function bytes(n) {
  if (n == null) return "—";
  for (const [size, unit] of [[1e12, "TB"], [1e9, "GB"], [1e6, "MB"], [1e3, "kB"]]) if (n >= size) return (n / size).toFixed(n / size < 10 ? 1 : 0) + " " + unit;
  return n + " bytes";
}
const binary = (n) => (n % 2 ** 30 === 0 ? n / 2 ** 30 + " GiB" : n % 2 ** 20 === 0 ? n / 2 ** 20 + " MiB" : bytes(n));
const tally = (t) => `${num(t.total)} (${t.lastMinute == null ? "—" : num(t.lastMinute)} in the last minute)`;
const facts = (id, rows) => h("dl", { class: "facts", id }, rows.map(([k, v, cls]) => [h("dt", {}, k), h("dd", { class: cls || null }, v)]));

// -- the page -------------------------------------------------------------------------------

function render(s) {
  const d = s.delivery, st = s.storage, b = s.box, ring = st.ring;
  const mdns = b.mdns.advertised ? `“${b.mdns.name}”, advertised` : b.mdns.state === "disabled" ? "off (--no-mdns)" : `“${b.mdns.name}”, not advertised: ${b.mdns.reason || b.mdns.state}`;
  const free = st.totalBytes ? `${bytes(st.freeBytes)} of ${bytes(st.totalBytes)} (${Math.round((100 * st.freeBytes) / st.totalBytes)} %)` : "—";
  patch(main, [
    h("p", { class: "actions" },
      h("a", { href: "/api/v1/operator/backup", download: true, id: "backup" }, "Download a backup"),
      h("a", { href: "/presenter" }, "Sessions (presenter page)"),
      h("span", { class: "muted", id: "updated" }, "Updated " + new Date(s.at).toLocaleTimeString("en-GB"))),
    h("section", { class: s.warnings.length ? "card" : "card ok", id: "warnings" },
      h("h2", {}, s.warnings.length ? plural(s.warnings.length, "warning") : "No warnings"),
      s.warnings.length ? h("ul", { class: "warnings" }, s.warnings.map((w) => h("li", { "data-key": w.code, "data-code": w.code },
        h("p", { class: "what" }, w.message), h("p", { class: "todo" }, "What to do: ", w.action))))
        : h("p", { class: "muted" }, "The clock, the disk, the event ring, mDNS and the open-files limit look fine.")),
    h("section", { class: "card", id: "sessions" },
      h("h2", {}, `Sessions · ${num(s.sessionsActive)} running`),
      s.sessions.length
        ? h("table", { class: "nums" },
          h("thead", {}, h("tr", {}, h("th", {}, "Session"), h("th", {}, "Code"), h("th", { class: "n" }, "Participants"), h("th", { class: "n" }, "WebSocket"),
            h("th", { class: "n" }, "SSE"), h("th", {}, "Current poll"), h("th", { class: "n" }, "Votes/s"))),
          h("tbody", {}, s.sessions.map((x) => h("tr", { "data-key": x.sessionId, "data-session": x.sessionId },
            h("td", { class: "title" }, x.title), h("td", { class: "code" }, x.joinCode), h("td", { class: "n participants" }, num(x.participants)),
            h("td", { class: "n websocket" }, num(x.streams.websocket)), h("td", { class: "n sse" }, num(x.streams.sse)),
            h("td", { class: "poll" }, x.openPoll ? x.openPoll.question : h("span", { class: "muted" }, "none open")),
            h("td", { class: "n rate" }, rate(x.votesPerSecond))))))
        : h("p", { class: "muted" }, "No session is running.")),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Delivery"), facts("delivery", [
        ["Connections", `${num(d.connections.open)} open of ${num(d.connections.max)}`],
        ["Streams", `${num(d.connections.websocket)} WebSocket · ${num(d.connections.sse)} SSE`],
        ["Latency p50 / p99", `${ms(d.latencyMs.p50)} / ${ms(d.latencyMs.p99)}`],
        ["", `${num(d.latencyMs.deliveries)} deliveries in the last ${span(d.windowSeconds)}`, "muted"],
        ["Events per second", rate(d.eventsPerSecond)],
        ["Votes per second", rate(d.votesPerSecond)],
        ["Slow consumers cut off", tally(d.slowConsumerDisconnects)],
        ["Connections refused", tally(d.refusedConnections)],
        ["Rate-limited (429)", tally(d.rateLimited)],
      ])),
      h("section", { class: "card" }, h("h2", {}, "Storage"), facts("storage", [
        ["Free disk", free, st.totalBytes && (st.freeBytes < 2 ** 30 || st.freeBytes / st.totalBytes < 0.1) ? "state-bad" : null],
        ["Durability", st.durability === "fsync" ? "fsync: on disk before “accepted”" : "os: handed to the OS (UPS needed)"],
        ["Event ring", `${binary(ring.sizeBytes)} · ${num(ring.retainedEvents)} events`],
        ["Replay reaches back", ring.oldestEventAgeSeconds == null ? "nothing stored yet" : `${span(ring.oldestEventAgeSeconds)}${ring.limitedByCapacity ? " (ring full)" : ""} of ${span(ring.retentionSeconds)}`, ring.limitedByCapacity ? "state-bad" : null],
        ["Projection lag", plural(st.projectionLagEvents, "event")],
        ["Data directory", st.dataDirectory],
      ])),
      h("section", { class: "card" }, h("h2", {}, "The box"), facts("box", [
        ["Version", b.version],
        ["Up for", span(b.uptimeSeconds)],
        ["Addresses", b.addresses.length ? b.addresses.join(", ") : "loopback only (no network)"],
        ["Join URL", h("a", { href: b.joinUrl, id: "join-url" }, b.joinUrl)],
        ["mDNS", mdns, b.mdns.advertised || b.mdns.state === "disabled" ? null : "state-bad"],
        ["Network mode", b.network === "flat" ? "flat (one address per phone)" : "shared (phones behind one NAT)"],
        ["TLS", b.tls ? "on" : "off"],
      ]))),
    h("section", { class: "card", id: "history" },
      h("h2", {}, "Last 15 minutes"),
      h("div", { class: "spark" },
        spark("Connections", s.history.points, (p) => p.connections, num),
        spark("Latency p99", s.history.points, (p) => p.latencyP99Ms, ms),
        spark("Events per second", s.history.points, (p) => p.eventsPerSecond, rate))),
  ]);
}

/** A sparkline as inline SVG: 90 slots (one per 10 s), newest on the right, gaps where there was nothing to measure. */
function spark(label, points, value, fmt) {
  const slots = 90, width = 90, height = 30;
  const values = points.slice(-slots).map(value);
  const top = Math.max(1e-9, ...values.filter((v) => v != null));
  const x = (i) => (width - (values.length - 1 - i) * (width / (slots - 1))).toFixed(2);
  const y = (v) => (height - 1 - (v / top) * (height - 3)).toFixed(2);
  const runs = [];
  values.forEach((v, i) => { if (v == null) runs.push([]); else (runs.length ? runs[runs.length - 1] : (runs[0] = [])).push(`${x(i)},${y(v)}`); });
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": `${label}, last 15 minutes` });
  for (const run of runs.filter((r) => r.length)) {
    const [first] = run[0].split(","), [last] = run[run.length - 1].split(",");
    svg.append(el("polygon", { class: "area", points: `${first},${height} ${run.join(" ")} ${last},${height}` }), el("polyline", { points: run.join(" ") }));
  }
  const now = values.length ? values[values.length - 1] : null;
  return h("figure", { "data-key": label }, svg, h("figcaption", {}, h("span", {}, label), h("b", {}, fmt(now))));
}

function el(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

start();
