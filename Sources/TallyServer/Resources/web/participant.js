import { api, bars, follow, h, status } from "/assets/tally.js";

const sessionId = location.pathname.split("/")[2];
const main = document.getElementById("main");
let state, selection = null, note = "", busy = false;

function render() {
  document.getElementById("title").textContent = state.title;
  const poll = state.polls.find((p) => p.poll.id === state.openPollId);
  main.replaceChildren();
  if (state.state === "ended") { main.append(h("p", { class: "card idle" }, "This session has ended. Thank you!")); }
  else if (!poll) { main.append(h("p", { class: "card idle" }, "No poll is open right now. Keep this page open — the next question appears here.")); }
  else main.append(ballot(poll));
  const closed = state.polls.filter((p) => p.poll.state === "closed" && p.results).slice(-1)[0];
  if (!poll && closed) main.append(h("section", { class: "card" }, h("h2", {}, closed.poll.question), bars(closed.poll, closed.results, closed.myBallot)));
}

function ballot(p) {
  const multiple = p.poll.kind === "multiple";
  const chosen = selection && selection.poll === p.poll.id ? selection.ids : (p.myBallot || []);
  const form = h("form", { class: "card", onsubmit: (ev) => { ev.preventDefault(); send(p.poll.id, chosen); } },
    h("fieldset", {},
      h("legend", {}, h("h2", {}, p.poll.question)),
      h("p", { class: "muted" }, multiple ? "Choose one or more" : "Choose one"),
      p.poll.options.map((o) => h("label", { class: "choice" + (chosen.includes(o.id) ? " on" : "") },
        h("input", {
          type: multiple ? "checkbox" : "radio", name: "choice", value: o.id, checked: chosen.includes(o.id),
          onchange: (ev) => {
            const ids = multiple ? (ev.target.checked ? [...chosen, o.id] : chosen.filter((x) => x !== o.id)) : [o.id];
            selection = { poll: p.poll.id, ids }; note = "";
            if (!multiple) send(p.poll.id, ids); else render();
          },
        }), h("span", {}, o.label)))),
    multiple ? h("button", { type: "submit", class: "primary", disabled: busy || chosen.length === 0 }, "Vote") : null,
    h("p", { class: "note", role: "status" }, note));
  const wrap = h("div", {}, form);
  if (p.results) wrap.append(h("section", { class: "card" }, h("h2", {}, "Results"), bars(p.poll, p.results, p.myBallot)));
  else wrap.append(h("p", { class: "muted center" }, `Results will be shown when the presenter reveals them · ${p.totalBallots || 0} ${p.totalBallots === 1 ? "vote" : "votes"} so far`));
  return wrap;
}

async function send(pollId, ids) {
  busy = true;
  try {
    await api("POST", `/api/v1/sessions/${sessionId}/polls/${pollId}/votes`, { optionIds: ids });
    // Our own ballot is not an event (ballots are private): keep it in the local state.
    state = { ...state, polls: state.polls.map((x) => (x.poll.id === pollId ? { ...x, myBallot: ids } : x)) };
    selection = null; note = "✓ Vote accepted — you can change it while the poll is open.";
  } catch (e) { note = "Not counted: " + e.message; }
  busy = false; render();
}

(async () => {
  const setStatus = status(document.getElementById("status"));
  try { state = await api("GET", `/api/v1/sessions/${sessionId}`); }
  catch (e) { if (e.status === 401 || e.status === 403 || e.status === 404) { location.replace("/"); return; } setStatus(e.message, "bad"); return; }
  render();
  follow({ sessionId, actorType: "participant", snapshot: state, onStatus: setStatus,
    onState: (s) => { s.polls = s.polls.map((x) => ({ ...x, myBallot: x.myBallot || (state.polls.find((y) => y.poll.id === x.poll.id) || {}).myBallot })); state = s; render(); } });
})();
