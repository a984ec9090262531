// The images page: a prompt drawn by a diffusion model ("draw" in /api/show), streamed from
// /v1/images/generations with "stream": true: owl's image_generation.progress event after
// each denoising step moves the bar, each image_generation.completed event is an image.
// Loaded the first time the page is opened.
import { errorText, postJson, sseData } from "./api.js";
import { able, storedModels } from "./capabilities.js";

const $ = (id) => document.getElementById(id);
let drawing = null; // the AbortController of the drawing under way
let started = false;

function field(label, control, className) {
  const node = document.createElement("label");
  if (className) node.className = className;
  node.append(`${label} `, control);
  return node;
}

function input(id, attributes) {
  const node = document.createElement(attributes.rows ? "textarea" : "input");
  node.id = id;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function form() {
  const page = $("images");
  const controls = document.createElement("form");
  controls.id = "draw-form";
  const model = document.createElement("select");
  model.id = "draw-model";
  const draw = document.createElement("button");
  draw.type = "submit";
  draw.id = "draw";
  draw.textContent = "Draw";
  const stop = document.createElement("button");
  stop.type = "button";
  stop.id = "draw-stop";
  stop.textContent = "Stop";
  stop.disabled = true;
  const progress = document.createElement("progress");
  progress.id = "draw-progress";
  progress.max = 1;
  progress.value = 0;
  const step = document.createElement("span");
  step.id = "draw-step";
  const heading = document.createElement("h2");
  heading.textContent = "Draw an image";
  controls.append(
    heading,
    field("Prompt", input("draw-prompt", { rows: 2, required: "", placeholder: "an owl at dusk, oil painting" }), "wide"),
    field("Model", model),
    field("Size", input("draw-size", { value: "512x512", pattern: "\\s*\\d+\\s*[xX]\\s*\\d+\\s*", size: 9 })),
    field("Steps", input("draw-steps", { type: "number", min: 1, value: 20 })),
    field("Seed", input("draw-seed", { type: "number", min: 0, placeholder: "random" })),
    field("Images", input("draw-n", { type: "number", min: 1, max: 4, value: 1 })),
    draw, stop, progress, step,
  );
  const status = document.createElement("p");
  status.id = "draw-status";
  status.setAttribute("role", "status");
  const drawn = document.createElement("div");
  drawn.id = "drawn";
  drawn.className = "drawn";
  drawn.setAttribute("aria-live", "polite");
  page.replaceChildren(controls, status, drawn);
}

function say(text) {
  $("draw-status").textContent = text;
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function image(event, prompt) {
  const figure = document.createElement("figure");
  const picture = document.createElement("img");
  picture.src = `data:image/png;base64,${event.b64_json}`; // a PNG the server encoded
  picture.alt = prompt;
  const caption = document.createElement("figcaption");
  caption.textContent = `seed ${event.seed ?? "?"} · ${event.size}`;
  const save = document.createElement("a");
  save.href = picture.src;
  save.download = `owl-${event.seed ?? "image"}.png`;
  save.textContent = "Save";
  caption.append(" · ", save);
  figure.append(picture, caption);
  return figure;
}

async function draw() {
  const prompt = $("draw-prompt").value.trim();
  const body = {
    model: $("draw-model").value || undefined,
    prompt,
    size: $("draw-size").value.trim() || "auto",
    steps: number("draw-steps"),
    seed: number("draw-seed"),
    n: number("draw-n") ?? 1,
    stream: true,
  };
  drawing = new AbortController();
  $("draw").disabled = true;
  $("draw-stop").disabled = false;
  $("draw-progress").value = 0;
  $("draw-step").textContent = "";
  $("drawn").replaceChildren();
  say(`Drawing with ${body.model ?? "the drawing model"}…`);
  let images = 0;
  try {
    const response = await postJson("/v1/images/generations", body, { signal: drawing.signal });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const data of sseData(response)) {
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error.message ?? String(event.error));
      if (event.type === "image_generation.progress") {
        $("draw-progress").max = event.steps;
        $("draw-progress").value = event.step;
        $("draw-step").textContent = `step ${event.step}/${event.steps}`;
      } else if (event.type === "image_generation.completed") {
        $("drawn").append(image(event, prompt));
        images += 1;
      }
    }
    say(`Drew ${images} image${images === 1 ? "" : "s"}.`);
  } catch (error) {
    say(error.name === "AbortError" ? "Stopped." : `Cannot draw: ${error.message}`);
  } finally {
    drawing = null;
    $("draw").disabled = false;
    $("draw-stop").disabled = true;
  }
}

async function models() {
  let names = [];
  try {
    names = able(await storedModels(), "draw");
  } catch (error) {
    say(`Cannot list the models: ${error.message}`);
  }
  const options = names.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    return option;
  });
  const chosen = $("draw-model").value;
  $("draw-model").replaceChildren(...options);
  if (names.includes(chosen)) $("draw-model").value = chosen;
  if (!names.length) say("No image model is stored: pull a Stable Diffusion folder (diffusers' layout).");
}

/** Builds the page on its first showing; lists the drawing models each time. */
export async function showImages() {
  if (!started) {
    started = true;
    form();
    $("draw-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (!drawing) draw();
    });
    $("draw-stop").addEventListener("click", () => drawing?.abort());
    $("draw-form").addEventListener("keydown", (event) => {
      if (event.key === "Escape") drawing?.abort();
    });
  }
  await models();
}
