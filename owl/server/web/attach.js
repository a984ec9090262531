// Images attached to the next message (file input, drop or paste), for a model that sees.
// They are kept as data: URLs: that is what an OpenAI image_url part carries, what IndexedDB
// keeps with the conversation, and what a thumbnail shows. Only images the user chose are
// ever shown as <img>; nothing the model writes becomes one.

const $ = (id) => document.getElementById(id);
const MAX_BYTES = 10 << 20; // a photo, not a scan at 600 dpi: the request carries it as base64
let pending = [];
let reason = ""; // why images cannot be attached now; "" when they can

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** Whether `url` is an image the user attached (a data: URL of an image), safe as <img src>. */
export function isImageUrl(url) {
  return typeof url === "string" && /^data:image\/[\w.+-]+;base64,/.test(url);
}

/** A row of thumbnails of `urls`; with `onRemove`, each has a button that removes it. */
export function thumbnails(urls, onRemove) {
  const row = document.createElement("div");
  row.className = "thumbnails";
  urls.filter(isImageUrl).forEach((url, index) => {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = url;
    image.alt = `attached image ${index + 1}`;
    figure.append(image);
    if (onRemove) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove image ${index + 1}`);
      remove.addEventListener("click", () => onRemove(index));
      figure.append(remove);
    }
    row.append(figure);
  });
  return row;
}

function render() {
  const holder = $("attachments");
  holder.replaceChildren(thumbnails(pending, (index) => {
    pending.splice(index, 1);
    render();
  }));
  holder.hidden = !pending.length;
}

function say(text) {
  $("chat-status").textContent = text;
}

async function add(files) {
  for (const file of files) {
    if (reason) return say(reason);
    if (!file.type.startsWith("image/")) {
      say(`${file.name} is not an image (${file.type || "unknown type"}); attach a PNG, JPEG or WebP`);
      continue;
    }
    if (file.size > MAX_BYTES) {
      say(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; attach an image under 10 MB`);
      continue;
    }
    pending.push(await readDataUrl(file));
    render();
    say(`${pending.length} image${pending.length > 1 ? "s" : ""} attached.`);
  }
}

/**
 * Whether images can be attached, for the chosen model: `why` is the reason they cannot
 * ("" when they can). Images already attached are dropped when it cannot see them.
 */
export function allowImages(why) {
  reason = why;
  const button = $("attach");
  button.disabled = Boolean(why);
  button.title = why || "Attach an image (or drop or paste one here)";
  if (why && pending.length) {
    pending = [];
    render();
    say(`Attached images removed: ${why}`);
  }
}

/** The images attached to the message being sent; the composer is then empty again. */
export function takeImages() {
  const taken = pending;
  pending = [];
  render();
  return taken;
}

export function startAttach() {
  const input = $("image-file");
  $("attach").addEventListener("click", () => input.click());
  input.addEventListener("change", async () => {
    await add([...input.files]);
    input.value = ""; // the same file can be chosen again
  });
  const composer = $("composer");
  composer.addEventListener("dragover", (event) => {
    if ([...event.dataTransfer.types].includes("Files")) event.preventDefault();
  });
  composer.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    event.preventDefault();
    add([...event.dataTransfer.files]);
  });
  $("prompt").addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])].filter((file) => file.type.startsWith("image/"));
    if (!files.length) return; // text pastes as text
    event.preventDefault();
    add(files);
  });
}
