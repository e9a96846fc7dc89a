import { api } from "/assets/tally.js";

let key = new URLSearchParams(location.search).get("k");
const form = document.getElementById("join"), input = document.getElementById("code"), error = document.getElementById("error");
const step = document.getElementById("nick-step"), nick = document.getElementById("nickname");

async function join(code) {
  error.textContent = "";
  try {
    const body = { joinCode: code };
    if (key) body.joinKey = key; // a scanned link: never held up by someone typing wrong codes
    if (!step.hidden) body.nickname = nick.value.trim();
    const r = await api("POST", "/api/v1/join", body);
    localStorage.setItem("tally.session", r.sessionId);
    location.replace("/s/" + r.sessionId);
  } catch (e) {
    if (e.status === 404) key = null; // an invalid link: typing is the way in (else retry with it)
    // A session that needs a nickname (a quiz's leaderboard shows it): the second step of joining.
    const named = e.type.endsWith("/nickname-required") || e.type.endsWith("/nickname-taken") || (e.status === 400 && !step.hidden);
    if (named && step.hidden) { step.hidden = false; nick.required = true; nick.focus(); return; }
    error.textContent = e.status === 404 ? "No session has that code. Check the screen and try again."
      : e.status === 403 ? "This session is not taking new participants right now (the presenter closed joining)."
      : e.status === 410 ? "This session has ended. Ask for the code of the current session."
      : e.type.endsWith("/nickname-taken") ? `Someone already chose “${nick.value.trim()}”. Please choose another nickname.`
      : e.type.endsWith("/nickname-required") ? "Please choose a nickname to join."
      : e.message;
    (named ? nick : input).focus();
  }
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); join(input.value.trim()); });
const m = location.pathname.match(/^\/j\/([A-Za-z0-9-]+)$/);
if (m) { input.value = m[1].toUpperCase(); join(m[1]); } else input.focus();
