// The models page: the store (/api/tags, /api/show), pulls (/api/pull's stream), removal
// (/api/delete) and the loaded models (/api/ps; unloaded with keep_alive 0, as in Ollama).
// A model's name opens its details (details.js, loaded then).
import { api, errorText, ndjson, postJson } from "./api.js";

const $ = (id) => document.getElementById(id);
let pulling = null;

/** A size in bytes as people read it (1.5 MB). */
export function bytes(size) {
  if (!size) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const power = Math.min(Math.floor(Math.log(size) / Math.log(1024)), units.length - 1);
  return `${(size / 1024 ** power).toFixed(power ? 1 : 0)} ${units[power]}`;
}

function cell(text, className) {
  const node = document.createElement("td");
  node.textContent = text ?? "";
  if (className) node.className = className;
  return node;
}

function button(label, name, action) {
  const node = document.createElement("button");
  node.type = "button";
  node.textContent = label;
  node.setAttribute("aria-label", `${label} ${name}`);
  node.addEventListener("click", action);
  return node;
}

function status(text) {
  $("models-status").textContent = text;
}

async function details(name) {
  const response = await postJson("/api/show", { model: name });
  return response.ok ? response.json() : {};
}

function licenseBadge(license) {
  const first = (license || "").trim().split("\n")[0];
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = first.length > 40 ? `${first.slice(0, 39)}…` : first || "unknown";
  badge.title = license || "no license recorded";
  return badge;
}

function nameCell(name) {
  const node = document.createElement("td");
  node.className = "name";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link";
  open.textContent = name;
  open.setAttribute("aria-label", `Details of ${name}`);
  open.addEventListener("click", async () => (await import("./details.js")).showDetails(name));
  node.append(open);
  return node;
}

async function renderStore() {
  const response = await api("/api/tags");
  if (!response.ok) return status(`Cannot list the store: ${await errorText(response)}`);
  const models = (await response.json()).models;
  const shown = await Promise.all(models.map(async (model) => [model, await details(model.name)]));
  const rows = shown.map(([model, show]) => {
    const row = document.createElement("tr");
    const license = document.createElement("td");
    license.append(licenseBadge(show.license));
    const actions = document.createElement("td");
    actions.append(button("Remove", model.name, () => removeModel(model.name)));
    row.append(
      nameCell(model.name),
      cell(bytes(model.size)),
      cell(model.details?.quantization_level),
      cell(model.details?.parameter_size),
      license,
      cell((show.capabilities || []).join(", ")),
      cell(model.digest?.slice(0, 12), "digest"),
      actions,
    );
    return row;
  });
  document.querySelector("#model-table tbody").replaceChildren(...rows);
}

async function renderLoaded() {
  const response = await api("/api/ps");
  if (!response.ok) return status(`Cannot list loaded models: ${await errorText(response)}`);
  const rows = (await response.json()).models.map((model) => {
    const row = document.createElement("tr");
    const actions = document.createElement("td");
    actions.append(button("Unload", model.name, () => unload(model.name)));
    const expires = model.expires_at ? new Date(model.expires_at).toLocaleString() : "";
    row.append(cell(model.name, "name"), cell(bytes(model.size)), cell(expires), actions);
    return row;
  });
  document.querySelector("#loaded-table tbody").replaceChildren(...rows);
}

async function removeModel(name) {
  if (!confirm(`Remove ${name} from the store?`)) return;
  const response = await api("/api/delete", {
    method: "DELETE",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: name }),
  });
  if (response.ok) status(`Removed ${name}.`);
  else if (response.status === 404 && !(await response.clone().text()).includes(name)) {
    // No such route (a server without Ollama's /api/delete), not "no such model".
    status(`This server cannot remove models; run \`owl rm ${name}\` on its machine.`);
  } else status(`Cannot remove ${name}: ${await errorText(response)}`);
  refresh();
}

async function unload(name) {
  const response = await postJson("/api/generate", { model: name, keep_alive: 0 });
  status(response.ok ? `Unloaded ${name}.` : `Cannot unload ${name}: ${await errorText(response)}`);
  renderLoaded();
}

async function pull(name, insecure) {
  pulling = new AbortController();
  $("pull").disabled = true;
  $("pull-cancel").disabled = false;
  $("pull-progress").value = 0;
  $("pull-percent").textContent = "";
  const say = (text) => { $("pull-status").textContent = text; };
  say(`Pulling ${name}…`);
  try {
    const response = await postJson(
      "/api/pull", { model: name, insecure, stream: true }, { signal: pulling.signal },
    );
    if (!response.ok) throw new Error(await errorText(response));
    for await (const line of ndjson(response)) {
      if (line.error) throw new Error(line.error);
      if (line.total) {
        const done = Math.round((100 * line.completed) / line.total);
        $("pull-progress").value = done;
        $("pull-percent").textContent = `${done}%`;
      }
      say(line.status === "success" ? `Pulled ${name}.` : line.status);
    }
  } catch (error) {
    // owl's server finishes a pull whose client left (a later pull finds the blob): say so.
    say(error.name === "AbortError"
      ? `Stopped following the pull of ${name}; the server may still finish it.`
      : `Pull failed: ${error.message}`);
  } finally {
    pulling = null;
    $("pull").disabled = false;
    $("pull-cancel").disabled = true;
    refresh();
  }
}

export function refresh() {
  return Promise.all([renderStore(), renderLoaded()]);
}

export function startModels() {
  $("pull-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!pulling) pull($("pull-name").value.trim(), $("pull-insecure").checked);
  });
  $("pull-cancel").addEventListener("click", () => pulling?.abort());
}
