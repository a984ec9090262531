// The chat page: a streamed answer from /v1/chat/completions, stoppable, kept in IndexedDB;
// images for a model that sees (attach.js), speech in and out (voice.js), JSON-schema answers.
import { errorText, postJson, sseData } from "./api.js";
import { allowImages, isImageUrl, startAttach, takeImages, thumbnails } from "./attach.js";
import { able, storedModels } from "./capabilities.js";
import { renderMarkdown } from "./markdown.js";
import * as store from "./store.js";
import { readAloudButton, setVoiceModels, startVoice } from "./voice.js";

const $ = (id) => document.getElementById(id);
let current = store.newConversation();
let controller = null;
let models = []; // capabilities.js's storedModels(), once loaded

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

function answerBody(message) {
  if (!message.json) return renderMarkdown(message.content);
  // A JSON-schema answer is data: shown exactly as sent, not as Markdown.
  const block = document.createElement("pre");
  block.className = "json";
  block.textContent = message.content;
  return block;
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
  if (message.role === "assistant" && !message.error) body.append(answerBody(message));
  else body.textContent = message.content;
  item.append(who);
  if (message.images?.length) item.append(thumbnails(message.images));
  item.append(body);
  if (message.role === "assistant" && !message.error && message.content.trim()) {
    item.append(readAloudButton(() => body.innerText));
  }
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
  modelChanged();
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

function chosenModel() {
  return models.find((model) => model.name === $("model").value);
}

function modelChanged() {
  const name = $("model").value;
  const sees = chosenModel()?.capabilities.has("vision");
  allowImages(sees ? "" : `${name || "this model"} does not see images; choose a vision model to attach one`);
}

/** A message as the request carries it: with its images as image_url parts for a model that
 * sees them (a text model is sent the words alone: it would refuse the images). */
function requestMessage({ role, content, images }, sees) {
  const urls = sees ? (images || []).filter(isImageUrl) : [];
  if (!urls.length) return { role, content };
  const parts = urls.map((url) => ({ type: "image_url", image_url: { url } }));
  return { role, content: [...parts, { type: "text", text: content }] };
}

/** The request's response_format for the schema in the settings: undefined when there is
 * none, null (and the reason shown) when the text is not a JSON schema. */
function responseFormat() {
  const text = $("schema").value.trim();
  const error = $("schema-error");
  error.textContent = "";
  if (!text) return undefined;
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (problem) {
    error.textContent = `The JSON schema is not valid JSON (${problem.message}); fix it or empty the field.`;
    return null;
  }
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
    error.textContent = 'The JSON schema must be a JSON object, such as {"type": "object"}.';
    return null;
  }
  return { type: "json_schema", json_schema: { name: "answer", schema } };
}

async function send(text, format) {
  const model = $("model").value;
  const system = $("system").value.trim();
  const sees = Boolean(chosenModel()?.capabilities.has("vision"));
  current.model = model;
  current.system = system;
  if (!current.messages.length) current.title = text.slice(0, 40);
  const images = takeImages();
  current.messages.push(images.length ? { role: "user", content: text, images } : { role: "user", content: text });
  const answer = { role: "assistant", model, content: "", ...(format ? { json: true } : {}) };
  const history = current.messages.filter((m) => !m.error).map((m) => requestMessage(m, sees));
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
    ...(format ? { response_format: format } : {}),
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
      live.querySelector(".content").replaceChildren(answerBody(answer));
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

function option(model) {
  const notes = [];
  if (model.adapterOf !== null) notes.push(model.adapterOf ? `adapter on ${model.adapterOf}` : "adapter");
  if (model.capabilities.has("vision")) notes.push("sees images");
  const item = new Option(notes.length ? `${model.name} (${notes.join(", ")})` : model.name, model.name);
  return item;
}

async function loadModels() {
  try {
    models = await storedModels();
  } catch (error) {
    $("chat-status").textContent = `Cannot list models: ${error.message || error}`;
    return;
  }
  const select = $("model");
  const chosen = current.model || localStorage.getItem("owl.model");
  // Only what chats is offered: speech, image and embedding models answer other routes.
  const chat = models.filter((model) => model.capabilities.has("completion"));
  const groups = [
    ["chat models", chat.filter((model) => model.adapterOf === null)],
    ["adapters", chat.filter((model) => model.adapterOf !== null)],
  ];
  select.replaceChildren();
  for (const [label, members] of groups) {
    if (!members.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    group.append(...members.map(option));
    select.append(group);
  }
  if (chosen && [...select.options].some((item) => item.value === chosen)) select.value = chosen;
  if (!chat.length) $("chat-status").textContent = "No chat model is stored; pull one on the Models page.";
  setVoiceModels({ transcribe: able(models, "transcribe"), speak: able(models, "speak") });
  modelChanged();
  if (!controller) renderMessages(); // read-aloud buttons now know whether a voice is stored
}

export async function startChat() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || controller) return;
    const format = responseFormat();
    if (format === null) return $("schema").focus(); // reported beside the field; not sent
    $("prompt").value = "";
    send(text, format);
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
  $("model").addEventListener("change", () => {
    localStorage.setItem("owl.model", $("model").value);
    modelChanged();
  });
  $("schema").addEventListener("input", () => { $("schema-error").textContent = ""; });
  startAttach();
  startVoice((text) => {
    const prompt = $("prompt");
    prompt.value = prompt.value.trim() ? `${prompt.value.trimEnd()} ${text}` : text;
    prompt.focus();
  });
  // A model pulled or removed on another page is offered (or not) on coming back.
  window.addEventListener("hashchange", () => { if (location.hash !== "#models") loadModels(); });
  $("token-close").addEventListener("click", () => { $("token-panel").hidden = true; });
  const saved = await store.conversations();
  if (saved.length) openConversation(saved[0]);
  else renderList();
  await loadModels();
}
