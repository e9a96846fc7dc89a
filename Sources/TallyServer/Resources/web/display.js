import { api, bars, follow, h, status } from "/assets/tally.js";

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
    h("p", {}, "Join at ", h("strong", {}, state.joinUrl || location.host)),
    h("p", {}, "Code ", h("strong", { class: "code" }, state.joinCode)));
}

/** Scan to join the room's Wi-Fi: the first step before the join code, on the box's own network. */
function wifiBlock() {
  return h("aside", { class: "join big wifi" },
    h("img", { src: wifi.qr, alt: "QR code to join the Wi-Fi" }),
    h("p", {}, "Wi-Fi ", h("strong", {}, wifi.ssid)),
    wifi.passphrase ? h("p", {}, "Password ", h("strong", { class: "code" }, wifi.passphrase)) : null);
}

function render() {
  const poll = state.polls.find((p) => p.poll.id === state.openPollId);
  const people = `${state.participantCount || 0} joined`;
  if (state.state === "ended") { main.replaceChildren(h("section", { class: "idle" }, h("h1", {}, state.title), h("p", {}, "This session has ended."))); return; }
  if (!poll) {
    main.replaceChildren(h("section", { class: "idle" }, h("h1", {}, state.title), h("p", { class: "muted" }, people),
      h("div", { class: "steps" }, wifi ? wifiBlock() : null, joinBlock(true))));
    return;
  }
  const total = poll.results ? poll.results.totalBallots : (poll.totalBallots || 0);
  // Hidden until the reveal: the room sees the question and the turnout, never the counts.
  const body = poll.results ? bars(poll.poll, poll.results)
    : h("div", { class: "hidden-results" }, h("ul", { class: "options" }, poll.poll.options.map((o) => h("li", {}, o.label))),
      h("p", { class: "muted", id: "hidden-note" }, "Results are hidden until the presenter reveals them."));
  main.replaceChildren(h("section", { class: "live" },
    h("h1", {}, poll.poll.question), body,
    h("p", { class: "total" }, `${total} ${total === 1 ? "vote" : "votes"} · ${people}`)), joinBlock(false));
}

(async () => {
  if (!sessionId) return pairing();
  try { wifi = await api("GET", "/api/v1/wifi"); } catch (e) { wifi = null; } // 404: no Wi-Fi configured
  try { state = await api("GET", `/api/v1/sessions/${sessionId}`, undefined, token); }
  catch (e) { setStatus(e.message, "bad"); setTimeout(() => location.reload(), 5000); return; } // the box may be restarting
  render();
  follow({ sessionId, actorType: "display", token, snapshot: state, onStatus: setStatus, onState: (s) => { state = { ...s, joinUrl: state.joinUrl }; render(); } });
})();
