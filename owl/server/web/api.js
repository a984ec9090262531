// Requests to the server, with the API key when the server asks for one.
const KEY = "owl.apiKey";
let asking = null; // one prompt for every request that got a 401 at the same time

function askForKey() {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  asking = new Promise((resolve) => {
    const done = (key) => {
      dialog.removeEventListener("close", onClose);
      document.getElementById("key-cancel").onclick = null;
      if (dialog.open) dialog.close();
      asking = null;
      resolve(key);
    };
    const onClose = () => done(dialog.returnValue === "ok" ? input.value.trim() || null : null);
    dialog.addEventListener("close", onClose);
    document.getElementById("key-cancel").onclick = () => done(null);
    input.value = "";
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/** fetch(), with `Authorization: Bearer KEY`; on a 401 it asks for the key and tries again. */
export async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 || attempt >= 3) return response;
    if (key && sessionStorage.getItem(KEY) === key) sessionStorage.removeItem(KEY); // wrong key
    if (!sessionStorage.getItem(KEY)) {
      const given = await askForKey();
      if (!given) return response;
      sessionStorage.setItem(KEY, given);
    }
  }
}

/** The JSON of a request, sent as JSON. */
export function postJson(path, body, options = {}) {
  return api(path, {
    method: "POST",
    ...options,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** The message of an error answer, in OpenAI's shape ({error: {message}}) or Ollama's ({error}). */
export async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    const error = body.error ?? body.detail ?? body;
    return `${response.status}: ${typeof error === "string" ? error : error.message ?? JSON.stringify(error)}`;
  } catch {
    return `${response.status}: ${text.slice(0, 500)}`;
  }
}

async function* lines(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, cut).replace(/\r$/, "");
      buffer = buffer.slice(cut + 1);
    }
  }
  if (buffer) yield buffer;
}

/** The data of each server-sent event (OpenAI's streams), "[DONE]" included. */
export async function* sseData(response) {
  let data = [];
  for await (const line of lines(response)) {
    if (line === "") {
      if (data.length) yield data.join("\n");
      data = [];
    } else if (line.startsWith("data:")) {
      data.push(line.slice(5).replace(/^ /, ""));
    }
  }
  if (data.length) yield data.join("\n");
}

/** Each object of a newline-delimited JSON stream (Ollama's streams). */
export async function* ndjson(response) {
  for await (const line of lines(response)) {
    if (line.trim()) yield JSON.parse(line);
  }
}
