// deskbridge demo: both sides of the sandbox Telegram. Plain JavaScript, no build step.
// The world arrives as a server-sent event stream (/api/events): a "state" snapshot,
// then one event per change; actions go to the small JSON API of bot/sandbox/page.py.
"use strict";

// The slash commands the bot handles (bot/handlers); a test keeps the lists honest.
const CUSTOMER_COMMANDS = [
  ["start", "start over: the greeting and the menu"],
  ["menu", "the menu"],
  ["new", "open a new request"],
  ["tickets", "my requests"],
  ["language", "choose the language"],
  ["help", "what the bot can do"],
];
const AGENT_COMMANDS = [
  ["note", "an internal note (or start the text with #)"],
  ["take", "take the ticket"],
  ["assign", "assign: /assign @username"],
  ["close", "close the ticket"],
  ["reopen", "reopen the ticket"],
  ["priority", "/priority low|normal|high|critical"],
  ["refer", "refer to a department"],
  ["tickets", "the queue of open tickets"],
  ["link", "link your helpdesk account: /link login"],
  ["stats", "statistics"],
  ["canned", "/canned add Title | text, /canned list"],
  ["help", "the agents' help"],
];

const S = {
  bot: null, users: {}, customers: [], agents: [], agentChat: null, helpdesk: null,
  chats: new Map(), topics: new Map(), status: {},
  customer: null, agent: null, thread: "general",
  reply: { customer: null, agent: null }, edit: { customer: null, agent: null },
  unread: new Map(), seen: new Set(), inline: null,
};
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ helpers

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function nameOf(user) {
  if (!user) return "?";
  return [user.first_name, user.last_name].filter(Boolean).join(" ");
}
function userById(id) { return S.users[String(id)]; }
function time(unix) {
  const d = new Date(unix * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function size(bytes) {
  if (bytes == null) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
function toast(text, kind) {
  const el = document.createElement("div");
  el.className = `toast ${kind || ""}`;
  el.textContent = text;
  $("toasts").appendChild(el);
  setTimeout(() => el.remove(), kind === "alert" ? 6000 : 3500);
}
async function api(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    toast(answer.error || `${path}: HTTP ${response.status}`, "error");
    throw new Error(answer.error || String(response.status));
  }
  return answer;
}
function safeUrl(url) {
  return /^(https?:|mailto:|tg:)/i.test(url || "") ? url : null;
}

// Telegram's MessageEntity offsets count UTF-16 code units, as JavaScript strings do.
function formatText(text, entities) {
  const list = (entities || []).slice().sort((a, b) => a.offset - b.offset || b.length - a.length);
  function build(start, end, items) {
    let html = "", pos = start, i = 0;
    while (i < items.length) {
      const e = items[i], eEnd = Math.min(e.offset + e.length, end);
      if (e.offset < pos) { i++; continue; }  // overlaps an earlier one: skip
      html += esc(text.slice(pos, e.offset));
      const kids = [];
      let j = i + 1;
      while (j < items.length && items[j].offset < eEnd) { kids.push(items[j]); j++; }
      html += wrap(e, build(e.offset, eEnd, kids), text.slice(e.offset, eEnd));
      pos = eEnd; i = j;
    }
    return html + esc(text.slice(pos, end));
  }
  return build(0, text.length, list);
}
function wrap(entity, inner, raw) {
  switch (entity.type) {
    case "bold": return `<b>${inner}</b>`;
    case "italic": return `<i>${inner}</i>`;
    case "underline": return `<u>${inner}</u>`;
    case "strikethrough": return `<s>${inner}</s>`;
    case "spoiler": return `<span class="spoiler">${inner}</span>`;
    case "code": return `<code>${inner}</code>`;
    case "pre": return `<pre><code>${inner}</code></pre>`;
    case "blockquote": case "expandable_blockquote": return `<blockquote>${inner}</blockquote>`;
    case "text_link": {
      const url = safeUrl(entity.url);
      return url ? `<a href="${esc(url)}" target="_blank" rel="noopener">${inner}</a>` : inner;
    }
    case "url": {
      const url = safeUrl(raw);
      return url ? `<a href="${esc(url)}" target="_blank" rel="noopener">${inner}</a>` : inner;
    }
    case "bot_command": return `<span class="cmd" data-cmd="${esc(raw)}">${inner}</span>`;
    default: return inner;
  }
}

// ------------------------------------------------------------------ the world

function chat(id) {
  const key = Number(id);
  if (!S.chats.has(key)) S.chats.set(key, new Map());
  return S.chats.get(key);
}
function threadOf(message) {
  if (message.message_thread_id) return message.message_thread_id;
  if (message.forum_topic_created) return message.message_id;
  return null;
}
function isBot(user) { return user && S.bot && user.id === S.bot.id; }

function applyState(state) {
  S.bot = state.bot; S.users = state.users; S.customers = state.customers;
  S.agents = state.agents; S.agentChat = state.agent_chat; S.helpdesk = state.helpdesk;
  S.status = state.status; S.chats = new Map(); S.topics = new Map();
  for (const [id, messages] of Object.entries(state.chats)) {
    const map = chat(id);
    for (const message of messages) { map.set(message.message_id, message); S.seen.add(key(message)); }
  }
  for (const [thread, topic] of Object.entries(state.topics)) {
    if (!topic.deleted) S.topics.set(Number(thread), topic);
  }
  if (S.customer == null || !S.customers.includes(S.customer)) S.customer = S.customers[0];
  if (S.agent == null || !S.agents.includes(S.agent)) S.agent = S.agents[0];
  setupStatic();
  renderAll();
}
function key(message) { return `${message.chat.id}:${message.message_id}`; }

function applyEvent(event) {
  switch (event.type) {
    case "state": applyState(event); return;
    case "status": S.status = event.status; renderStatus(); return;
    case "message": case "edited": {
      const message = event.message;
      chat(message.chat.id).set(message.message_id, message);
      if (event.type === "message" && !S.seen.has(key(message))) {
        S.seen.add(key(message));
        countUnread(message);
      }
      renderFor(message.chat.id);
      return;
    }
    case "deleted": chat(event.chat_id).delete(event.message_id); renderFor(event.chat_id); return;
    case "topic":
      if (event.chat_id !== S.agentChat.id) return;
      if (event.topic.deleted) {
        S.topics.delete(event.thread_id);
        if (S.thread === event.thread_id) S.thread = "general";
      } else {
        S.topics.set(event.thread_id, event.topic);
      }
      renderTopics(); renderAgentHead();
      return;
    default: return;  // answers to presses and inline queries come back on their requests
  }
}
function unreadKey(chatId, thread) { return `${chatId}:${thread}`; }
function countUnread(message) {
  const chatId = message.chat.id;
  let where;
  if (chatId === S.agentChat.id) where = unreadKey(chatId, threadOf(message) || "general");
  else where = unreadKey(chatId, "");
  const shown = chatId === S.customer ? unreadKey(S.customer, "")
    : chatId === S.agentChat.id ? unreadKey(chatId, S.thread)
    : chatId === S.agent && S.thread === "private" ? unreadKey(chatId, "") : null;
  if (where !== shown) S.unread.set(where, (S.unread.get(where) || 0) + 1);
}
function renderFor(chatId) {
  chatId = Number(chatId);
  if (S.customers.includes(chatId)) { renderCustomerTabs(); if (chatId === S.customer) renderCustomer(); }
  if (chatId === S.agentChat.id) { renderTopics(); renderAgent(); }
  if (S.agents.includes(chatId)) { renderTopics(); if (chatId === S.agent && S.thread === "private") renderAgent(); }
}

// ------------------------------------------------------------------ rendering a message

function serviceText(message) {
  if (message.forum_topic_created) return `Topic “${message.forum_topic_created.name}” created`;
  if (message.forum_topic_closed) return "🔒 Topic closed";
  if (message.forum_topic_reopened) return "Topic reopened";
  if (message.forum_topic_edited) return `Topic renamed to “${message.forum_topic_edited.name}”`;
  return null;
}
function messageEl(message, view) {
  const el = document.createElement("div");
  el.dataset.messageId = message.message_id;
  const service = serviceText(message);
  if (service) {
    el.className = "msg service";
    el.textContent = service;
    return el;
  }
  const from = message.from || {};
  const own = from.id === view.me;
  el.className = `msg ${own ? "out" : "in"}`;
  let html = "";
  if (!own && view.showAuthor) {
    html += `<div class="author${isBot(from) ? " bot" : ""}">${esc(nameOf(from))}</div>`;
  }
  const reply = message.reply_to_message;
  if (reply && !(reply.forum_topic_created && reply.message_id === threadOf(message))) {
    const excerpt = reply.text || reply.caption || (reply.photo ? "Photo" : reply.document ? reply.document.file_name : "…");
    html += `<div class="quote"><b>${esc(nameOf(reply.from))}</b>: ${esc(excerpt.slice(0, 120))}</div>`;
  }
  if (message.photo) {
    const photo = message.photo[message.photo.length - 1];
    html += `<a href="/api/file/${encodeURIComponent(photo.file_id)}" target="_blank"><img class="photo" alt="photo" src="/api/file/${encodeURIComponent(photo.file_id)}"></a>`;
  }
  for (const kind of ["document", "video", "audio", "voice", "animation"]) {
    if (message[kind] && !(kind === "document" && message.animation)) {
      const file = message[kind];
      const icon = { document: "📄", video: "🎬", audio: "🎵", voice: "🎤", animation: "🎞" }[kind];
      const label = file.file_name || kind;
      html += `<a class="file" href="/api/file/${encodeURIComponent(file.file_id)}" download="${esc(label)}">${icon} ${esc(label)} <small>${size(file.file_size)}</small></a>`;
    }
  }
  if (message.contact) html += `<div class="text">📞 ${esc(message.contact.phone_number)} (${esc(message.contact.first_name)})</div>`;
  if (message.sticker) html += `<div class="text">[sticker]</div>`;
  const text = message.text != null ? message.text : message.caption;
  const entities = message.text != null ? message.entities : message.caption_entities;
  if (text) html += `<div class="text">${formatText(text, entities)}</div>`;
  const meta = [];
  if (message.via_bot) meta.push(`via @${esc(message.via_bot.username)}`);
  if (message.edit_date) meta.push("edited");
  meta.push(time(message.date));
  let actions = `<button type="button" data-act="reply" title="Reply">↩</button>`;
  if (own && message.text != null) actions += `<button type="button" data-act="edit" title="Edit">✎</button>`;
  html += `<div class="meta">${meta.join(" · ")} ${actions}</div>`;
  const rows = (message.reply_markup && message.reply_markup.inline_keyboard) || [];
  if (rows.length) {
    html += `<div class="keyboard">${rows.map((row) => `<div class="row">${row.map((button) => {
      if (button.callback_data != null) return `<button type="button" data-callback="${esc(button.callback_data)}">${esc(button.text)}</button>`;
      if (button.url) return `<button type="button" data-url="${esc(button.url)}">${esc(button.text)} ↗</button>`;
      if (button.switch_inline_query_current_chat != null) return `<button type="button" data-inline="${esc(button.switch_inline_query_current_chat)}">${esc(button.text)}</button>`;
      return `<button type="button" disabled>${esc(button.text)}</button>`;
    }).join("")}</div>`).join("")}</div>`;
  }
  el.innerHTML = html;
  return el;
}

function renderList(container, messages, view) {
  const nearBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 80;
  const fragment = document.createDocumentFragment();
  for (const message of messages) fragment.appendChild(messageEl(message, view));
  container.replaceChildren(fragment);
  if (nearBottom || view.forceScroll) container.scrollTop = container.scrollHeight;
}
function sorted(map) { return [...map.values()].sort((a, b) => a.message_id - b.message_id); }

// ------------------------------------------------------------------ the customer side

function renderCustomerTabs() {
  const tabs = S.customers.map((id) => {
    const user = userById(id);
    const unread = S.unread.get(unreadKey(id, "")) || 0;
    return `<button type="button" data-user-id="${id}" class="${id === S.customer ? "active" : ""}">${esc(nameOf(user))}<span class="lang">${esc(user.language_code || "")}</span>${unread ? `<span class="badge">${unread}</span>` : ""}</button>`;
  });
  $("customer-tabs").innerHTML = tabs.join("");
}
function renderCustomer(forceScroll) {
  const user = userById(S.customer);
  $("customer-head").textContent = `${nameOf(user)}'s private chat with ${nameOf(S.bot)} (@${S.bot.username})`;
  const messages = sorted(chat(S.customer));
  const box = $("customer-messages");
  if (!messages.length) {
    box.innerHTML = `<div class="empty-chat">${esc(nameOf(user))} has not talked to the bot yet.<br><button type="button" id="customer-start">Start</button></div>`;
  } else {
    renderList(box, messages, { me: S.customer, showAuthor: false, forceScroll });
  }
  renderReplyKeyboard(messages);
  renderReplyBar("customer");
}
function renderReplyKeyboard(messages) {
  // The bot's latest reply keyboard stays until it is removed (or used, if one-time).
  let keyboard = null;
  for (const message of messages) {
    if (message.reply_keyboard) keyboard = message.reply_keyboard.keyboard ? message.reply_keyboard : null;
    else if (keyboard && keyboard.one_time_keyboard && message.from.id === S.customer) keyboard = null;
  }
  const box = $("customer-keyboard");
  if (!keyboard) { box.hidden = true; box.innerHTML = ""; return; }
  box.hidden = false;
  box.innerHTML = keyboard.keyboard.map((row) => `<div class="row">${row.map((button) => {
    const label = typeof button === "string" ? button : button.text;
    const contact = typeof button === "object" && button.request_contact;
    return `<button type="button" data-text="${esc(label)}"${contact ? ' data-contact="1"' : ""}>${contact ? "📞 " : ""}${esc(label)}</button>`;
  }).join("")}</div>`).join("");
}

// ------------------------------------------------------------------ the agent side

function topicLast(thread) {
  const messages = sorted(chat(S.agentChat.id)).filter((m) => threadOf(m) === thread && !serviceText(m));
  return messages[messages.length - 1];
}
function renderTopics() {
  const group = chat(S.agentChat.id);
  const general = sorted(group).filter((m) => threadOf(m) == null);
  const entries = [];
  const badge = (where) => { const n = S.unread.get(where) || 0; return n ? `<span class="badge">${n}</span>` : ""; };
  const last = (message) => message ? esc(`${nameOf(message.from)}: ${message.text || message.caption || "[file]"}`) : "";
  entries.push(`<button type="button" class="topic${S.thread === "general" ? " active" : ""}" data-thread-id="general"><span class="name"># General${badge(unreadKey(S.agentChat.id, "general"))}</span><span class="last">${last(general[general.length - 1])}</span></button>`);
  const topics = [...S.topics.entries()].sort((a, b) => {
    const la = topicLast(a[0]), lb = topicLast(b[0]);
    return (lb ? lb.message_id : b[0]) - (la ? la.message_id : a[0]);
  });
  for (const [thread, topic] of topics) {
    entries.push(`<button type="button" class="topic${S.thread === thread ? " active" : ""}${topic.closed ? " closed" : ""}" data-thread-id="${thread}" data-closed="${topic.closed ? 1 : 0}"><span class="name">${topic.closed ? "🔒 " : ""}${esc(topic.name)}${badge(unreadKey(S.agentChat.id, thread))}</span><span class="last">${last(topicLast(thread))}</span></button>`);
  }
  entries.push(`<div class="section">private</div>`);
  entries.push(`<button type="button" class="topic${S.thread === "private" ? " active" : ""}" data-thread-id="private"><span class="name">🤖 ${esc(nameOf(userById(S.agent)))} ↔ @${esc(S.bot.username)}${badge(unreadKey(S.agent, ""))}</span><span class="last">the agent's private chat with the bot</span></button>`);
  $("topics").innerHTML = entries.join("");
}
function agentChatId() { return S.thread === "private" ? S.agent : S.agentChat.id; }
function agentThreadId() { return typeof S.thread === "number" ? S.thread : null; }
function renderAgentHead() {
  let head, toggle = "";
  if (S.thread === "private") head = `${nameOf(userById(S.agent))}'s private chat with the bot (/link, /stats)`;
  else if (S.thread === "general") head = `${S.agentChat.title} › General`;
  else {
    const topic = S.topics.get(S.thread);
    head = `${S.agentChat.title} › ${topic ? topic.name : "?"}${topic && topic.closed ? " (closed)" : ""}`;
    if (topic && S.agentChat.admins.includes(S.agent)) {
      // What a group admin finds in the topic's menu.
      toggle = `<button type="button" id="topic-toggle" data-closed="${topic.closed ? 1 : 0}">${topic.closed ? "Reopen topic" : "Close topic"}</button>`;
    }
  }
  $("agent-head").innerHTML = `<span>${esc(head)}</span>${toggle}`;
}
function renderAgent(forceScroll) {
  renderAgentHead();
  let messages;
  if (S.thread === "private") messages = sorted(chat(S.agent));
  else {
    const thread = S.thread === "general" ? null : S.thread;
    messages = sorted(chat(S.agentChat.id)).filter((m) => threadOf(m) === thread);
  }
  renderList($("agent-messages"), messages, {
    me: S.agent, showAuthor: S.thread !== "private", forceScroll,
  });
  renderReplyBar("agent");
}
function renderReplyBar(side) {
  const bar = $(`${side}-reply`);
  const replyId = S.reply[side], editId = S.edit[side];
  const chatId = side === "customer" ? S.customer : agentChatId();
  const message = chat(chatId).get(replyId || editId);
  if (!message) { S.reply[side] = S.edit[side] = null; bar.hidden = true; return; }
  const what = editId ? "Editing" : `Replying to ${esc(nameOf(message.from))}`;
  bar.innerHTML = `<span>${what}: ${esc((message.text || message.caption || "").slice(0, 80))}</span><button type="button" data-act="cancel">✕</button>`;
  bar.hidden = false;
}

function renderStatus() {
  const status = S.status.bot || "connecting";
  const labels = { starting: "bot starting…", online: "bot online", stopped: "bot stopped", disconnected: "page disconnected" };
  $("status").dataset.status = status;
  $("status").textContent = labels[status] || status;
}
function setupStatic() {
  $("group-title").textContent = `${S.agentChat.title} (agents' supergroup with topics)`;
  $("agent-select").innerHTML = S.agents.map((id) => `<option value="${id}"${id === S.agent ? " selected" : ""}>${esc(nameOf(userById(id)))}</option>`).join("");
  const link = $("helpdesk-link");
  if (S.helpdesk) {
    link.hidden = false; link.href = S.helpdesk.url;
    link.textContent = `${S.helpdesk.name} helpdesk page ↗`;
  } else link.hidden = true;
  $("agent-input").placeholder = `Reply to the customer, /note …, /close, or @${S.bot.username} query`;
}
function renderAll() {
  renderStatus(); renderCustomerTabs(); renderCustomer(true); renderTopics(); renderAgent(true);
}

// ------------------------------------------------------------------ acting

function side(el) { return el.closest("#customer-pane") ? "customer" : "agent"; }
function actor(sideName) { return sideName === "customer" ? S.customer : S.agent; }
function target(sideName) {
  if (sideName === "customer") return { chat_id: S.customer, thread_id: null };
  return { chat_id: agentChatId(), thread_id: agentThreadId() };
}

async function sendText(sideName, text) {
  const where = target(sideName);
  if (S.edit[sideName]) {
    const messageId = S.edit[sideName];
    S.edit[sideName] = null;
    await api("/api/edit", { user_id: actor(sideName), chat_id: where.chat_id, message_id: messageId, text });
  } else {
    const reply = S.reply[sideName];
    S.reply[sideName] = null;
    await api("/api/send", { user_id: actor(sideName), ...where, reply_to: reply, text });
  }
  renderReplyBar(sideName);
}
async function submit(sideName) {
  const input = $(`${sideName}-input`);
  const text = input.value;
  if (!text.trim()) return;
  if (sideName === "agent" && S.inline) {
    // Enter on "@bot query" picks the first result, as Telegram's clients do.
    const first = document.querySelector("#agent-popup .item[data-result]");
    if (first) { first.click(); return; }
  }
  input.value = "";
  hidePopup();
  try { await sendText(sideName, text); } catch (error) { input.value = text; }
}
async function upload(sideName, file) {
  const where = target(sideName);
  const form = new FormData();
  form.append("user_id", actor(sideName));
  form.append("chat_id", where.chat_id);
  if (where.thread_id != null) form.append("thread_id", where.thread_id);
  if (S.reply[sideName]) form.append("reply_to", S.reply[sideName]);
  const input = $(`${sideName}-input`);
  if (input.value.trim()) form.append("caption", input.value);
  form.append("file", file, file.name);
  const response = await fetch("/api/upload", { method: "POST", body: form });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) { toast(answer.error || "upload failed", "error"); return; }
  input.value = "";
  S.reply[sideName] = null;
  renderReplyBar(sideName);
}
async function press(sideName, messageEl, data) {
  const chatId = sideName === "customer" ? S.customer : agentChatId();
  const answer = await api("/api/press", {
    user_id: actor(sideName), chat_id: chatId, message_id: Number(messageEl.dataset.messageId), data,
  });
  if (answer.answer && answer.answer.text) toast(answer.answer.text, answer.answer.show_alert ? "alert" : "");
}

// ------------------------------------------------------------------ slash commands and inline mode

function hidePopup() { $("agent-popup").hidden = true; S.inline = null; }
function showCommands(prefix) {
  const commands = (S.thread === "private" ? [["link", "link your helpdesk account"], ["stats", "statistics"]] : AGENT_COMMANDS)
    .filter(([name]) => name.startsWith(prefix));
  const popup = $("agent-popup");
  if (!commands.length) { popup.hidden = true; return; }
  popup.innerHTML = commands.map(([name, help]) => `<button type="button" class="item" data-command="${name}">/${name}<small>${esc(help)}</small></button>`).join("");
  popup.hidden = false;
}
let inlineTimer = null, inlineSeq = 0;
function onAgentInput() {
  const text = $("agent-input").value;
  const inline = text.match(/^@(\w+)\s([\s\S]*)$/);
  if (inline && S.bot && inline[1].toLowerCase() === S.bot.username.toLowerCase()) {
    clearTimeout(inlineTimer);
    inlineTimer = setTimeout(() => inlineQuery(inline[2]), 350);
    return;
  }
  S.inline = null;
  const command = text.match(/^\/(\w*)$/);
  if (command) showCommands(command[1]);
  else if (/^@\w*$/.test(text) && S.bot && `@${S.bot.username}`.startsWith(text)) {
    const popup = $("agent-popup");
    popup.innerHTML = `<button type="button" class="item" data-mention="1">@${esc(S.bot.username)}<small>inline mode: find tickets, canned replies and articles</small></button>`;
    popup.hidden = false;
  } else hidePopup();
}
async function inlineQuery(query) {
  const seq = ++inlineSeq;
  const popup = $("agent-popup");
  popup.hidden = false;
  popup.innerHTML = `<div class="empty">searching…</div>`;
  let answer;
  try { answer = await api("/api/inline", { user_id: S.agent, query }); } catch (error) { hidePopup(); return; }
  if (seq !== inlineSeq) return;  // a newer query is on its way
  S.inline = answer;
  if (!answer.results.length) {
    popup.innerHTML = `<div class="empty">${answer.answered ? "nothing found" : "the bot did not answer"}</div>`;
    return;
  }
  popup.innerHTML = answer.results.map((result) => `<button type="button" class="item" data-result="${esc(result.id)}">${esc(result.title || result.id)}<small>${esc(result.description || "")}</small></button>`).join("");
}
async function chooseInline(resultId) {
  const answer = S.inline;
  if (!answer) return;
  const where = target("agent");
  hidePopup();
  $("agent-input").value = "";
  await api("/api/inline/choose", { user_id: S.agent, ...where, query_id: answer.query_id, result_id: resultId });
}

// ------------------------------------------------------------------ wiring

function wire() {
  for (const sideName of ["customer", "agent"]) {
    $(`${sideName}-form`).addEventListener("submit", (event) => { event.preventDefault(); submit(sideName); });
    $(`${sideName}-input`).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(sideName); }
      if (event.key === "Escape") { S.reply[sideName] = S.edit[sideName] = null; renderReplyBar(sideName); hidePopup(); }
    });
    $(`${sideName}-file`).addEventListener("change", (event) => {
      const file = event.target.files[0];
      event.target.value = "";
      if (file) upload(sideName, file);
    });
    $(`${sideName}-reply`).addEventListener("click", (event) => {
      if (event.target.closest("[data-act=cancel]")) { S.reply[sideName] = S.edit[sideName] = null; renderReplyBar(sideName); }
    });
  }
  for (const id of ["customer-messages", "agent-messages"]) {
    $(id).addEventListener("click", (event) => {
      const sideName = side(event.target);
      const messageEl = event.target.closest(".msg");
      const button = event.target.closest("button");
      if (event.target.id === "customer-start") { api("/api/send", { user_id: S.customer, chat_id: S.customer, text: "/start" }); return; }
      const spoiler = event.target.closest(".spoiler");
      if (spoiler) { spoiler.classList.add("shown"); return; }
      const command = event.target.closest(".cmd");
      if (command) { api("/api/send", { user_id: actor(sideName), ...target(sideName), text: command.dataset.cmd }); return; }
      if (!button || !messageEl) return;
      if (button.dataset.callback != null) press(sideName, messageEl, button.dataset.callback);
      else if (button.dataset.url) window.open(button.dataset.url, "_blank", "noopener");
      else if (button.dataset.inline != null) {
        $("agent-input").value = `@${S.bot.username} ${button.dataset.inline}`; onAgentInput();
      } else if (button.dataset.act === "reply") {
        S.reply[sideName] = Number(messageEl.dataset.messageId); S.edit[sideName] = null;
        renderReplyBar(sideName); $(`${sideName}-input`).focus();
      } else if (button.dataset.act === "edit") {
        const message = chat(sideName === "customer" ? S.customer : agentChatId()).get(Number(messageEl.dataset.messageId));
        S.edit[sideName] = message.message_id; S.reply[sideName] = null;
        $(`${sideName}-input`).value = message.text; renderReplyBar(sideName); $(`${sideName}-input`).focus();
      }
    });
  }
  $("customer-tabs").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-user-id]");
    if (!button) return;
    S.customer = Number(button.dataset.userId);
    S.unread.delete(unreadKey(S.customer, ""));
    S.reply.customer = S.edit.customer = null;
    renderCustomerTabs(); renderCustomer(true);
  });
  $("customer-keyboard").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.contact) api("/api/contact", { user_id: S.customer });
    else api("/api/send", { user_id: S.customer, chat_id: S.customer, text: button.dataset.text });
  });
  $("topics").addEventListener("click", (event) => {
    const button = event.target.closest(".topic");
    if (!button) return;
    const thread = button.dataset.threadId;
    S.thread = thread === "general" || thread === "private" ? thread : Number(thread);
    S.unread.delete(S.thread === "private" ? unreadKey(S.agent, "") : unreadKey(S.agentChat.id, S.thread));
    S.reply.agent = S.edit.agent = null;
    hidePopup(); renderTopics(); renderAgent(true);
  });
  $("agent-head").addEventListener("click", (event) => {
    const button = event.target.closest("#topic-toggle");
    if (!button) return;
    api("/api/topic", { user_id: S.agent, thread_id: S.thread, closed: button.dataset.closed !== "1" });
  });
  $("agent-select").addEventListener("change", (event) => {
    S.agent = Number(event.target.value);
    S.reply.agent = S.edit.agent = null;
    renderTopics(); renderAgent(true);
  });
  $("agent-input").addEventListener("input", onAgentInput);
  $("agent-popup").addEventListener("click", (event) => {
    const item = event.target.closest(".item");
    if (!item) return;
    const input = $("agent-input");
    if (item.dataset.command) { input.value = `/${item.dataset.command} `; hidePopup(); input.focus(); }
    else if (item.dataset.mention) { input.value = `@${S.bot.username} `; hidePopup(); input.focus(); onAgentInput(); }
    else if (item.dataset.result) chooseInline(item.dataset.result);
  });
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (event) => applyEvent(JSON.parse(event.data));
  source.onerror = () => {
    // EventSource reconnects by itself; the next "state" replaces everything.
    S.status = { bot: "disconnected" };
    if (S.bot) renderStatus();
  };
}

wire();
connect();
