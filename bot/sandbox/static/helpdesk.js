// The fake helpdesk's page: polls /api/helpdesk and acts as the helpdesk's agent.
"use strict";
const $ = (id) => document.getElementById(id);
let desk = null, current = null;

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function toast(text, kind) {
  const el = document.createElement("div");
  el.className = `toast ${kind || ""}`;
  el.textContent = text;
  $("toasts").appendChild(el);
  setTimeout(() => el.remove(), 3500);
}
async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) { toast(answer.error || `HTTP ${response.status}`, "error"); throw new Error(); }
  await refresh();
}
function render() {
  $("desk-title").textContent = `${desk.title} (fake)`;
  document.title = `deskbridge demo · ${desk.title}`;
  if (current == null && desk.tickets.length) current = desk.tickets[0].id;
  $("desk-tickets").innerHTML = desk.tickets.length ? desk.tickets.map((t) => `
    <button type="button" class="ticket${t.id === current ? " active" : ""}${t.closed ? " closed" : ""}" data-ticket="${esc(t.id)}">
      <span class="state">${esc(t.status)}</span>#${esc(t.number)} ${esc(t.subject)}
      <small>${esc(t.customer || "")} · ${t.messages.length} message(s)</small>
    </button>`).join("") : `<p class="empty-chat">No tickets yet: write to the bot as a customer in the sandbox Telegram.</p>`;
  const ticket = desk.tickets.find((t) => t.id === current);
  $("desk-note").hidden = !desk.notes || !ticket;
  $("desk-close").hidden = !desk.close || !ticket;
  $("desk-reply").disabled = !ticket;
  if (!ticket) { $("desk-ticket-title").textContent = "Pick a ticket"; $("desk-messages").innerHTML = ""; return; }
  $("desk-ticket-title").textContent = `#${ticket.number} ${ticket.subject} — ${ticket.status} (you are ${desk.agent})`;
  $("desk-close").textContent = ticket.closed ? "Reopen" : "Close";
  const box = $("desk-messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  box.innerHTML = ticket.messages.map((m) => `
    <div class="entry ${esc(m.side)}"><div class="who">${esc(m.author || m.side)}${m.side === "note" ? " · internal note" : ""}</div>
    <div class="body">${esc(m.text)}</div>${m.files.map((f) => `<div>📎 ${esc(f)}</div>`).join("")}</div>`).join("");
  if (atBottom) box.scrollTop = box.scrollHeight;
}
async function refresh() {
  const response = await fetch("/api/helpdesk");
  if (!response.ok) return;
  const fresh = await response.json();
  if (desk && JSON.stringify(fresh) === JSON.stringify(desk)) return;
  desk = fresh;
  render();
}
async function answer(note) {
  const text = $("desk-input").value;
  if (!text.trim() || current == null) return;
  await post("/api/helpdesk/reply", { ticket: current, text, note });
  $("desk-input").value = "";
}
$("desk-tickets").addEventListener("click", (event) => {
  const button = event.target.closest("[data-ticket]");
  if (!button) return;
  current = button.dataset.ticket;
  render();
});
$("desk-form").addEventListener("submit", (event) => { event.preventDefault(); answer(false); });
$("desk-note").addEventListener("click", () => answer(true));
$("desk-close").addEventListener("click", () => {
  const ticket = desk.tickets.find((t) => t.id === current);
  post(ticket.closed ? "/api/helpdesk/reopen" : "/api/helpdesk/close", { ticket: current });
});
refresh();
setInterval(refresh, 1500);
