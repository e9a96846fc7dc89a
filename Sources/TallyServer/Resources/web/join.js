import { api } from "/assets/tally.js";

const form = document.getElementById("join"), input = document.getElementById("code"), error = document.getElementById("error");

async function join(code) {
  error.textContent = "";
  try {
    const r = await api("POST", "/api/v1/join", { joinCode: code });
    localStorage.setItem("tally.session", r.sessionId);
    location.replace("/s/" + r.sessionId);
  } catch (e) {
    error.textContent = e.status === 404 ? "No session has that code. Check the screen and try again." : e.message;
    input.focus();
  }
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); join(input.value.trim()); });
const m = location.pathname.match(/^\/j\/([A-Za-z0-9-]+)$/);
if (m) { input.value = m[1].toUpperCase(); join(m[1]); } else input.focus();
