import { api, bars, follow, h, status } from "/assets/tally.js";

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
      field(first ? "New operator password" : "Operator password", pw), h("button", { type: "submit", class: "primary" }, first ? "Set password" : "Sign in"), errorLine()));
    (code || pw).focus();
    return;
  }
  const { sessions } = await api("GET", "/api/v1/sessions");
  const title = h("input", { id: "title", required: true, maxlength: 200, placeholder: "Friday all-hands" });
  const create = (ev) => {
    ev.preventDefault();
    act(async () => { const s = await api("POST", "/api/v1/sessions", { title: title.value }); location.assign("/presenter/" + s.sessionId); });
  };
  const signOut = () => act(async () => { await api("POST", "/api/v1/auth/logout"); });
  main.replaceChildren(
    h("form", { class: "card", onsubmit: create }, h("h2", {}, "New session"), field("Title", title), h("button", { type: "submit", class: "primary" }, "Create"), errorLine()),
    h("p", {}, h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out")),
    h("section", { class: "card" }, h("h2", {}, "Sessions"),
      sessions.length
        ? h("ul", { class: "list" }, sessions.slice().reverse().map((s) => h("li", {}, h("a", { href: "/presenter/" + s.sessionId }, s.title),
            h("span", { class: "muted" }, ` ${s.joinCode} · ${s.participantCount} joined · ${s.state}`))))
        : h("p", { class: "muted" }, "None yet.")));
  title.focus();
}

// The composer is built once, so typing is never interrupted by incoming votes.
function composer() {
  const q = h("input", { id: "question", required: true, maxlength: 500, placeholder: "What should we do next?" });
  const opts = h("textarea", { id: "options", rows: 4, required: true, placeholder: "One option per line (2–12)" });
  const kind = h("select", { id: "kind" }, h("option", { value: "single" }, "Single choice"), h("option", { value: "multiple" }, "Multiple choice"));
  const vis = h("select", { id: "visibility" }, h("option", { value: "live" }, "Results live"), h("option", { value: "hidden" }, "Results hidden until revealed"));
  const now = h("input", { type: "checkbox", id: "open-now", checked: true });
  const submit = (ev) => {
    ev.preventDefault();
    act(async () => {
      await api("POST", `/api/v1/sessions/${sessionId}/polls`, {
        question: q.value, options: opts.value.split("\n").map((x) => x.trim()).filter(Boolean),
        kind: kind.value, resultsVisibility: vis.value, open: now.checked });
      q.value = ""; opts.value = ""; q.focus();
    });
  };
  return h("form", { class: "card", id: "composer", onsubmit: submit },
    h("h2", {}, "New poll"), field("Question", q), field("Options", opts), h("div", { class: "row" }, field("Kind", kind), field("Results", vis)),
    h("label", { class: "check" }, now, " Open it now"), h("button", { type: "submit", class: "primary" }, "Create poll"));
}

function pollCard(p) {
  const cmd = (what) => h("button", { type: "button", "data-action": what, onclick: () => act(() => api("POST", `/api/v1/sessions/${sessionId}/polls/${p.poll.id}/${what}`)) },
    what[0].toUpperCase() + what.slice(1));
  const actions = [];
  if (state.state === "active" && p.poll.state === "draft") actions.push(cmd("open"));
  if (p.poll.state === "open") actions.push(cmd("close"));
  if (p.poll.resultsVisibility === "hidden" && !p.poll.revealed && p.poll.state !== "draft") actions.push(cmd("reveal"));
  const tag = p.poll.state + (p.poll.resultsVisibility === "hidden" ? (p.poll.revealed ? " · revealed" : " · hidden") : "");
  return h("article", { class: "card poll " + p.poll.state, "data-poll": p.poll.id }, h("h3", {}, p.poll.question, " ", h("span", { class: "tag" }, tag)),
    bars(p.poll, p.results), h("p", { class: "muted" }, `${p.results ? p.results.totalBallots : (p.totalBallots || 0)} ballots · ${p.poll.kind} choice`), h("div", { class: "row" }, actions));
}

let composerForm = null;
const sessionBox = h("div", {}), pollsBox = h("div", {});

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
  sessionBox.replaceChildren(h("section", { class: "card session" },
    h("h2", {}, state.title, state.state === "ended" ? " (ended)" : ""),
    h("p", {}, "Join code ", h("strong", { class: "code" }, state.joinCode), " · ", h("strong", { id: "participants" }, `${state.participantCount || 0}`), " joined"),
    h("p", {}, "Join at ", h("a", { href: state.joinUrl }, state.joinUrl), " · ", h("a", { href: displayUrl, target: "_blank", rel: "noopener", id: "display-link" }, "Open the display"),
      " · ", h("a", { href: `/api/v1/sessions/${sessionId}/export.csv`, download: "" }, "Download results (CSV)")),
    state.state === "active" ? h("div", { class: "row" },
      h("button", { type: "button", id: "joining", onclick: joining }, state.joiningOpen === false ? "Open joining" : "Close joining"),
      h("button", { type: "button", id: "rotate-display", onclick: () => rotate("display") }, "New display link"),
      h("button", { type: "button", id: "rotate-presenter", onclick: () => rotate("presenter") }, "New presenter link"),
      h("button", { type: "button", class: "danger", onclick: end }, "End session")) : null,
    state.joiningOpen === false ? h("p", { class: "muted", id: "joining-note" }, "Joining is closed: new phones are turned away; those who joined keep voting.") : null,
    errorLine()));
  if (state.state === "active" && !composerForm) composerForm = composer();
  if (state.state !== "active" && composerForm) { composerForm.remove(); composerForm = null; }
  pollsBox.replaceChildren(...state.polls.slice().reverse().map(pollCard));
  if (!main.contains(sessionBox)) main.replaceChildren(sessionBox, ...(composerForm ? [composerForm] : []), pollsBox);
}

(async () => {
  if (!sessionId) return home().catch((e) => setStatus(e.message, "bad"));
  try { state = await api("GET", `/api/v1/sessions/${sessionId}`); }
  catch (e) { if (e.status === 401 || e.status === 403) { location.replace("/presenter"); return; } setStatus(e.message, "bad"); return; }
  render();
  follow({ sessionId, actorType: "presenter", snapshot: state, onStatus: setStatus,
    onState: (s) => { state = { ...s, displayToken: state.displayToken, joinUrl: state.joinUrl }; render(); } });
})();
