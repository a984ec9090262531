// The documents page: the server's document collections (/v1/documents), a folder under its
// --docs-folder added with streamed progress, and questions answered from a collection
// (/v1/chat/completions with "documents") with the numbered sources the answer was given,
// or only searched (/v1/documents/NAME/query). Loaded the first time the page is opened.
// Document text and file names are anyone's: they are shown as text (textContent), never
// as markup; the answer is the model's, rendered by markdown.js.
import { api, errorText, postJson, sseData } from "./api.js";
import { able, storedModels } from "./capabilities.js";
import { renderMarkdown } from "./markdown.js";
import { bytes } from "./models.js";

const $ = (id) => document.getElementById(id);
const SNIPPET = 400; // characters of a source shown; the rest is in the file
const SEARCH_K = 5;
let adding = null; // the AbortController of the ingestion being followed
let asking = null; // the AbortController of the question being answered
let started = false;

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content ?? "";
  if (className) node.className = className;
  return node;
}

function say(id, message) {
  $(id).textContent = message;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// --- the collections ----------------------------------------------------------------------

function row(collection) {
  const tr = document.createElement("tr");
  // The embedder is recorded as NAME@sha256:…: the name says it, the digest is in the title.
  const model = text("td", collection.embedder.split("@")[0]);
  model.title = collection.embedder;
  const actions = document.createElement("td");
  const remove = text("button", "Delete");
  remove.type = "button";
  remove.setAttribute("aria-label", `Delete ${collection.name}`);
  remove.addEventListener("click", () => deleteCollection(collection.name));
  actions.append(remove);
  tr.append(
    text("td", collection.name, "name"),
    text("td", String(collection.files)),
    text("td", String(collection.chunks)),
    text("td", bytes(collection.bytes)),
    model,
    actions,
  );
  return tr;
}

async function listCollections(prefer) {
  const response = await api("/v1/documents");
  if (!response.ok) {
    say("docs-status", `Cannot list the collections: ${await errorText(response)}`);
    return;
  }
  const found = (await response.json()).data;
  $("docs-table").querySelector("tbody").replaceChildren(...found.map(row));
  if (!found.length) say("docs-status", "No collections yet: add a folder below.");
  else if ($("docs-status").textContent.startsWith("No collections")) say("docs-status", "");
  const select = $("docs-collection");
  const chosen = prefer ?? select.value;
  select.replaceChildren(...found.map(({ name }) => new Option(name, name)));
  if (found.some(({ name }) => name === chosen)) select.value = chosen;
}

async function deleteCollection(name) {
  if (!confirm(`Delete the collection ${name}? Its index is removed; the documents stay.`)) return;
  const response = await api(`/v1/documents/${encodeURIComponent(name)}`, { method: "DELETE" });
  say("docs-status", response.ok ? `Deleted ${name}.` : `Cannot delete ${name}: ${await errorText(response)}`);
  await listCollections();
}

// --- adding a folder ----------------------------------------------------------------------

function showProgress(event) {
  $("docs-progress").max = Math.max(event.files_total, 1);
  $("docs-progress").value = event.files_done;
  const rate = event.seconds > 0 ? Math.round(event.chunks / event.seconds) : 0;
  say("docs-count", `${event.files_done}/${event.files_total} files · ${plural(event.chunks, "chunk")} · ${rate} chunks/s`);
}

function reportList(title, items) {
  const part = document.createElement("section");
  part.append(text("h3", `${title} (${items.length})`));
  const list = document.createElement("ul");
  list.append(...items.map((item) => text("li", item)));
  part.append(list);
  return part;
}

function showReport(name, report) {
  const skipped = report.files_skipped.map((skip) => `${skip.path}: ${skip.reason}`);
  const parts = [
    ["Read", report.files_read],
    ["Unchanged", report.files_unchanged],
    ["Skipped", skipped],
    ["Removed", report.files_removed],
  ].filter(([, items]) => items.length);
  $("docs-report").replaceChildren(...parts.map(([title, items]) => reportList(title, items)));
  const counts = [
    `${report.files_read.length} read`,
    `${report.files_unchanged.length} unchanged`,
    `${report.files_skipped.length} skipped`,
    `${report.files_removed.length} removed`,
  ].join(", ");
  const stopped = report.cancelled ? " Stopped before the end: add it again to finish." : "";
  say("docs-add-status", `Added to ${name}: ${counts}; ${plural(report.chunks, "chunk")} in ${report.seconds} s.${stopped}`);
}

async function addFolder() {
  const name = $("docs-name").value.trim();
  const path = $("docs-path").value.trim();
  adding = new AbortController();
  $("docs-add").disabled = true;
  $("docs-add-stop").disabled = false;
  $("docs-progress").value = 0;
  say("docs-count", "");
  $("docs-report").replaceChildren();
  say("docs-add-status", `Adding ${path} to ${name}…`);
  let added;
  try {
    const response = await postJson(
      `/v1/documents/${encodeURIComponent(name)}`, { paths: [path], stream: true },
      { signal: adding.signal },
    );
    if (!response.ok) throw new Error(await errorText(response));
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error.message ?? String(event.error));
      if (event.type === "progress") showProgress(event);
      else if (event.type === "done") showReport(name, event);
    }
    added = name; // asked next
  } catch (error) {
    // The server stops after the file it is on; what it finished stays in the collection.
    say("docs-add-status", error.name === "AbortError"
      ? `Stopped adding to ${name}; the files read so far are kept.`
      : `Cannot add: ${error.message}`);
  } finally {
    adding = null;
    $("docs-add").disabled = false;
    $("docs-add-stop").disabled = true;
    await listCollections(added);
  }
}

// --- asking -------------------------------------------------------------------------------

function sourceItem({ n, location, text: body, score }, { cited, scored }) {
  const item = document.createElement("li");
  item.id = `docs-source-${n}`;
  if (cited) item.className = "cited";
  const head = document.createElement("div");
  head.append(text("span", `[${n}]`, "number"), " ", text("span", location, "location"));
  if (cited) head.append(" ", text("span", "cited", "badge"));
  if (scored) head.append(" ", text("span", `score ${score.toFixed(3)}`, "score"));
  const clipped = body.length > SNIPPET ? `${body.slice(0, SNIPPET)}…` : body;
  item.append(head, text("p", clipped.trim(), "snippet"));
  return item;
}

function showSources(sources, { cited = [], scored = false } = {}) {
  const items = sources.map((source) => sourceItem(source, { cited: cited.includes(source.n), scored }));
  $("docs-sources").replaceChildren(...items);
  $("docs-sources-heading").hidden = !sources.length;
}

function hitLocation(hit) {
  return hit.page === null || hit.page === undefined ? hit.path : `${hit.path}:${hit.page}`;
}

async function search(collection, question, signal) {
  const response = await postJson(
    `/v1/documents/${encodeURIComponent(collection)}/query`, { query: question, k: SEARCH_K }, { signal },
  );
  if (!response.ok) throw new Error(await errorText(response));
  const { hits } = await response.json();
  const sources = hits.map((hit, index) => ({ ...hit, n: index + 1, location: hitLocation(hit) }));
  showSources(sources, { scored: true });
  say("docs-ask-status", hits.length ? `Found ${plural(hits.length, "passage")} in ${collection}.` : `Nothing in ${collection} matches.`);
}

async function answer(collection, question, signal) {
  const model = $("docs-model").value;
  const maxTokens = Number($("docs-max-tokens").value) || undefined;
  const body = {
    model,
    messages: [{ role: "user", content: question }],
    documents: [collection],
    max_tokens: maxTokens,
    temperature: 0, // an answer from documents: the likeliest words, the same each time
    stream: false, // the answer's citations are checked against its sources once it is whole
  };
  const response = await postJson("/v1/chat/completions", body, { signal });
  if (!response.ok) throw new Error(await errorText(response));
  const completion = await response.json();
  const choice = completion.choices[0];
  const cited = choice.citations ?? [];
  $("docs-answer").replaceChildren(renderMarkdown(choice.message.content ?? ""));
  showSources(completion.sources ?? [], { cited });
  const cites = cited.length ? `cites ${cited.map((n) => `[${n}]`).join(" ")}` : "cites none of its sources";
  say("docs-ask-status", `Answered by ${completion.model} from ${collection}; it ${cites}.`);
}

async function ask() {
  const collection = $("docs-collection").value;
  const question = $("docs-question").value.trim();
  if (!collection) return say("docs-ask-status", "No collection to ask: add a folder first.");
  const searchOnly = $("docs-search-only").checked;
  if (!searchOnly && !$("docs-model").value) {
    return say("docs-ask-status", "No chat model is stored; pull one on the Models page, or search only.");
  }
  asking = new AbortController();
  $("docs-ask").disabled = true;
  $("docs-ask-stop").disabled = false;
  $("docs-answer").replaceChildren();
  showSources([]);
  say("docs-ask-status", searchOnly ? `Searching ${collection}…` : `Asking ${$("docs-model").value} from ${collection}…`);
  try {
    await (searchOnly ? search : answer)(collection, question, asking.signal);
  } catch (error) {
    say("docs-ask-status", error.name === "AbortError" ? "Stopped." : `Cannot answer: ${error.message}`);
  } finally {
    asking = null;
    $("docs-ask").disabled = false;
    $("docs-ask-stop").disabled = true;
  }
}

async function listModels() {
  let names = [];
  try {
    names = able(await storedModels(), "completion");
  } catch (error) {
    return say("docs-ask-status", `Cannot list the models: ${error.message}`);
  }
  const select = $("docs-model");
  // The model chosen here before, else the one the chat page uses (its picker's choice).
  const chosen = select.value || localStorage.getItem("owl.model") || $("model").value;
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  if (names.includes(chosen)) select.value = chosen;
}

function start() {
  $("docs-add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!adding) addFolder();
  });
  $("docs-add-stop").addEventListener("click", () => adding?.abort());
  $("docs-ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!asking) ask();
  });
  $("docs-ask-stop").addEventListener("click", () => asking?.abort());
  $("docs-question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("docs-ask-form").requestSubmit();
    }
  });
  $("documents").addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    asking?.abort();
    adding?.abort();
  });
}

/** Wires the page on its first showing; lists the collections and chat models each time. */
export async function showDocuments() {
  if (!started) {
    started = true;
    start();
  }
  await Promise.all([listCollections(), listModels()]);
}
