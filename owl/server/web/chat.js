// The chat page: a streamed answer from /v1/chat/completions, stoppable, kept in IndexedDB.
import { api, errorText, postJson, sseData } from "./api.js";
import { renderMarkdown } from "./markdown.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
let current = store.newConversation();
let controller = null;

function percent(logprob) {
  return `${(Math.exp(logprob) * 100).toFixed(1)}%`;
}

function showToken(token) {
  $("token-text").textContent = JSON.stringify(token.token);
  $("token-prob").textContent = percent(token.logprob);
  const rows = $("token-alternatives");
  rows.replaceChildren();
  for (const alternative of token.top_logprobs || []) {
    const row = document.createElement("tr");
    for (const text of [JSON.stringify(alternative.token), percent(alternative.logprob)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    if (alternative.token === token.token) row.className = "chosen";
    rows.append(row);
  }
  $("token-panel").hidden = false;
  $("token-close").focus();
}

function tokenStrip(tokens) {
  const details = document.createElement("details");
  details.className = "why";
  const summary = document.createElement("summary");
  summary.textContent = `Why this answer (${tokens.length} tokens)`;
  const strip = document.createElement("p");
  strip.className = "tokens";
  for (const token of tokens) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "token";
    button.textContent = token.token;
    // Likely tokens pale, unlikely ones marked: where the model hesitated stands out.
    button.style.setProperty("--p", Math.exp(token.logprob).toFixed(3));
    button.title = percent(token.logprob);
    button.addEventListener("click", () => showToken(token));
    strip.append(button);
  }
  details.append(summary, strip);
  return details;
}

function messageNode(message) {
  const item = document.createElement("li");
  item.className = `message ${message.role}${message.error ? " error" : ""}`;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = message.role === "assistant" ? message.model || "assistant" : "you";
  const body = document.createElement("div");
  body.className = "content";
  // The user's own words as typed; the model's as sanitised Markdown.
  if (message.role === "assistant" && !message.error) body.append(renderMarkdown(message.content));
  else body.textContent = message.content;
  item.append(who, body);
  if (message.stopped) {
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = "stopped";
    item.append(note);
  }
  if (message.tokens?.length) item.append(tokenStrip(message.tokens));
  return item;
}

function renderMessages() {
  $("messages").replaceChildren(...current.messages.map(messageNode));
  $("messages").lastElementChild?.scrollIntoView({ block: "end" });
}

async function renderList() {
  const items = [];
  for (const conversation of await store.conversations()) {
    const item = document.createElement("li");
    if (conversation.id === current.id) item.className = "current";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = conversation.title;
    open.addEventListener("click", () => openConversation(conversation));
    const actions = [
      ["Rename", () => rename(conversation)],
      ["Export", () => exportJson(conversation)],
      ["Delete", () => removeConversation(conversation)],
    ].map(([label, action]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.setAttribute("aria-label", `${label} ${conversation.title}`);
      button.addEventListener("click", action);
      return button;
    });
    item.append(open, ...actions);
    items.push(item);
  }
  // All at once, after the read: two renders in flight must not both append to the list.
  $("conversation-list").replaceChildren(...items);
}

function openConversation(conversation) {
  if (controller) controller.abort();
  current = conversation;
  $("system").value = conversation.system || "";
  if (conversation.model) $("model").value = conversation.model;
  renderMessages();
  renderList();
}

async function rename(conversation) {
  const title = prompt("New name", conversation.title);
  if (!title?.trim()) return;
  conversation.title = title.trim();
  await store.save(conversation);
  renderList();
}

function exportJson(conversation) {
  const blob = new Blob([JSON.stringify(conversation, null, 2)], { type: "application/json" });
  const anchor = document.createElement("a");
  anchor.href = URL.createObjectURL(blob);
  anchor.download = `${conversation.title.replace(/[^\w.-]+/g, "_") || "chat"}.json`;
  anchor.click();
  setTimeout(() => URL.revokeObjectURL(anchor.href), 0);
}

async function removeConversation(conversation) {
  await store.remove(conversation.id);
  if (conversation.id === current.id) openConversation(store.newConversation());
  else renderList();
}

function number(id) {
  const value = $(id).valueAsNumber;
  return Number.isFinite(value) ? value : undefined;
}

async function send(text) {
  const model = $("model").value;
  const system = $("system").value.trim();
  current.model = model;
  current.system = system;
  if (!current.messages.length) current.title = text.slice(0, 40);
  current.messages.push({ role: "user", content: text });
  const answer = { role: "assistant", model, content: "" };
  const history = current.messages.filter((m) => !m.error).map(({ role, content }) => ({ role, content }));
  current.messages.push(answer);
  renderMessages();
  const why = $("why").checked;
  const body = {
    model,
    messages: system ? [{ role: "system", content: system }, ...history] : history,
    stream: true,
    temperature: number("temperature"),
    top_p: number("top-p"),
    max_tokens: number("max-tokens"),
    ...(why ? { logprobs: true, top_logprobs: 5 } : {}),
  };
  controller = new AbortController();
  setBusy(true);
  const live = $("messages").lastElementChild;
  try {
    const response = await postJson("/v1/chat/completions", body, { signal: controller.signal });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      answer.content += choice.delta?.content || "";
      if (choice.logprobs?.content) (answer.tokens ??= []).push(...choice.logprobs.content);
      live.querySelector(".content").replaceChildren(renderMarkdown(answer.content));
    }
  } catch (error) {
    if (error.name === "AbortError") answer.stopped = true;
    else Object.assign(answer, { error: true, content: String(error.message || error) });
  } finally {
    controller = null;
    setBusy(false);
    live.replaceWith(messageNode(answer));
    $("chat-status").textContent = answer.stopped ? "Stopped." : answer.error ? "Failed." : "Done.";
    await store.save(current);
    renderList();
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  $("chat-status").textContent = busy ? "Answering…" : "";
}

async function loadModels() {
  const response = await api("/v1/models");
  if (!response.ok) {
    $("chat-status").textContent = `Cannot list models: ${await errorText(response)}`;
    return;
  }
  const select = $("model");
  const chosen = current.model || localStorage.getItem("owl.model");
  const ids = (await response.json()).data.map((model) => model.id);
  // /v1/models lists speech and image models too, and says nothing of what each does; the
  // store's formats do: GGUF models (llama.cpp's) come first, under "chat".
  const tags = await api("/api/tags");
  const formats = new Map();
  for (const model of tags.ok ? (await tags.json()).models : []) {
    formats.set(model.name.replace(/:latest$/, ""), model.details?.format);
  }
  const groups = { chat: [], other: [] };
  for (const id of ids) groups[formats.get(id) === "gguf" || !tags.ok ? "chat" : "other"].push(id);
  select.replaceChildren();
  for (const [label, members] of Object.entries(groups)) {
    if (!members.length) continue;
    const group = document.createElement("optgroup");
    group.label = label === "chat" ? "chat models" : "other models";
    for (const id of members) {
      const option = document.createElement("option");
      option.value = option.textContent = id;
      group.append(option);
    }
    select.append(group);
  }
  if (chosen && [...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

export async function startChat() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || controller) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && controller) controller.abort();
  });
  $("stop").addEventListener("click", () => controller?.abort());
  $("new-chat").addEventListener("click", () => openConversation(store.newConversation()));
  $("model").addEventListener("change", () => localStorage.setItem("owl.model", $("model").value));
  $("token-close").addEventListener("click", () => { $("token-panel").hidden = true; });
  const saved = await store.conversations();
  if (saved.length) openConversation(saved[0]);
  else renderList();
  await loadModels();
}
