// A stored model's details (GET /v1/owl/models/NAME/details): what `owl show` prints, the
// license's obligations for a chosen use (…/license?use=), the scan's findings and the
// quantization report with its plot. Loaded when a model is first opened, not with the page.
// Everything here came from the model or its files: text nodes only, never markup.
import { api, errorText } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const USES = ["personal", "research", "commercial", "hosted"];
let shown = null; // the model on screen: a late answer for another one is dropped

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function count(value) {
  if (!value) return "";
  const units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  const [size, unit] = units.find(([limit]) => value >= limit) ?? [1, ""];
  return `${(value / size).toFixed(value >= size * 10 ? 0 : 1)}${unit} (${value.toLocaleString()})`;
}

function megabytes(size) {
  if (!size) return "";
  return size < 1e5 ? `${(size / 1e3).toFixed(1)} kB` : `${(size / 1e6).toFixed(1)} MB`;
}

function facts(rows) {
  const list = el("dl", null, "facts");
  for (const [key, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    list.append(el("dt", key), el("dd", value));
  }
  return list;
}

function section(title, ...children) {
  const part = el("section");
  part.append(el("h3", title), ...children);
  return part;
}

function lineage(info) {
  const rows = [];
  const source = info.source ?? {};
  if (source.uri) rows.push(`source: ${source.uri}${source.revision ? ` @ ${source.revision}` : ""}`);
  for (const parent of info.parents ?? []) {
    const license = parent.license ? `, license ${parent.license}` : "";
    rows.push(`${parent.relation} from ${parent.name} (${parent.digest.slice(7, 19)}${license})`);
  }
  const adapter = info.adapter;
  if (adapter) {
    const figures = [
      adapter.rank && `rank ${adapter.rank}`,
      adapter.steps && `${adapter.steps} steps`,
      typeof adapter.train_loss === "number" && `train loss ${adapter.train_loss.toFixed(3)}`,
      typeof adapter.eval_loss === "number" && `eval loss ${adapter.eval_loss.toFixed(3)}`,
    ].filter(Boolean);
    rows.push(`LoRA adapter of ${adapter.base ?? "?"}${figures.length ? ` (${figures.join(", ")})` : ""}`);
  }
  const list = el("ul", null, "lineage");
  list.append(...rows.map((row) => el("li", row)));
  return list;
}

function scan(record) {
  if (!record) return [el("p", "Not scanned yet (`owl scan` scans it).")];
  const parts = [el("p", null)];
  parts[0].append("Verdict: ", el("strong", record.verdict, `verdict ${record.verdict}`));
  const findings = el("ul", null, "findings");
  for (const file of record.files) {
    for (const finding of file.findings) {
      findings.append(el("li", `${finding.severity} ${finding.check} in ${file.file} at ${finding.location}: ${finding.reason}`));
    }
    if (file.error) findings.append(el("li", `${file.file}: ${file.error}`));
  }
  if (findings.children.length) parts.push(findings);
  else parts.push(el("p", `${record.files.length} files, no findings.`));
  return parts;
}

// `name` as the details were asked for ("x:latest"), which `shown` holds.
async function license(name, use, into) {
  into.replaceChildren(el("p", "Checking…"));
  const response = await api(`/v1/owl/models/${encodeURIComponent(name)}/license?use=${use}`);
  if (shown !== name) return;
  if (!response.ok) return into.replaceChildren(el("p", await errorText(response), "error"));
  const verdict = await response.json();
  const head = el("p");
  head.append(el("strong", verdict.verdict, `verdict ${verdict.verdict}`), ` for ${use} use`);
  const parts = [head];
  const terms = verdict.terms;
  if (terms) {
    const line = el("p", `${terms.name} (${terms.spdx}) `);
    if (/^https:\/\//.test(terms.url)) {
      const link = el("a", terms.url);
      link.href = terms.url;
      link.rel = "noopener noreferrer";
      line.append(link);
    }
    parts.push(line);
  } else parts.push(el("p", `License: ${verdict.license ?? "none recorded"}`));
  for (const [title, lines] of [["Obligations", verdict.obligations], ["Why", verdict.reasons]]) {
    if (!lines.length) continue;
    const list = el("ul", null, title.toLowerCase());
    list.append(...lines.map((text) => el("li", text)));
    parts.push(el("h4", title), list);
  }
  if (terms?.note) parts.push(el("p", terms.note, "note"));
  into.replaceChildren(...parts);
}

function plot(rows) {
  // Perplexity against size, one labelled point per quantization type.
  const points = rows.filter((row) => typeof row.perplexity === "number");
  const svg = document.createElementNS(SVG, "svg");
  const [width, height, pad] = [420, 220, 40];
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "plot");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Perplexity against size");
  if (!points.length) return svg;
  const xs = points.map((row) => row.size / 1e6);
  const ys = points.map((row) => row.perplexity);
  const span = (values) => [Math.min(...values), Math.max(...values) - Math.min(...values) || 1];
  const [x0, dx] = span(xs);
  const [y0, dy] = span(ys);
  const x = (value) => pad + ((value - x0) / dx) * (width - 2 * pad);
  const y = (value) => height - pad - ((value - y0) / dy) * (height - 2 * pad);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  add("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis" });
  add("line", { x1: pad, y1: pad, x2: pad, y2: height - pad, class: "axis" });
  add("text", { x: width / 2, y: height - 8, "text-anchor": "middle" }, "size (MB)");
  add("text", { x: 12, y: pad - 14 }, "perplexity (lower is better)");
  add("text", { x: pad, y: height - pad + 16, "text-anchor": "middle" }, x0.toFixed(1));
  add("text", { x: width - pad, y: height - pad + 16, "text-anchor": "middle" }, (x0 + dx).toFixed(1));
  add("text", { x: pad - 4, y: height - pad, "text-anchor": "end" }, y0.toFixed(2));
  add("text", { x: pad - 4, y: pad + 4, "text-anchor": "end" }, (y0 + dy).toFixed(2));
  points.forEach((row, index) => {
    add("circle", { cx: x(xs[index]), cy: y(ys[index]), r: 4, class: "point" });
    add("text", { x: x(xs[index]) + 6, y: y(ys[index]) - 6 }, String(row.type ?? row.name));
  });
  return svg;
}

function quality(report) {
  const table = el("table", null, "quality");
  const head = el("tr");
  for (const title of ["Model", "Type", "Size", "Perplexity", "KLD mean", "Top-1 agreement"]) {
    const th = el("th", title);
    th.scope = "col";
    head.append(th);
  }
  const body = el("tbody");
  for (const row of report.rows) {
    const line = el("tr");
    const number = (value, digits) => (typeof value === "number" ? value.toFixed(digits) : "");
    const agreement = typeof row.top1_agreement === "number" ? `${(row.top1_agreement * 100).toFixed(1)}%` : "";
    line.append(
      el("td", row.name), el("td", row.type), el("td", megabytes(row.size)),
      el("td", number(row.perplexity, 3)), el("td", number(row.kld_mean, 5)), el("td", agreement),
    );
    body.append(line);
  }
  const thead = el("thead");
  thead.append(head);
  table.append(thead, body);
  const wrap = el("div", null, "table-wrap");
  wrap.append(table);
  const about = `Against ${report.reference}, measured on ${report.text ?? "?"} with a context of ${report.ctx ?? "?"} tokens.`;
  return [el("p", about), wrap, plot(report.rows)];
}

function render(model, panel, name) {
  const close = el("button", "Close", "close");
  close.type = "button";
  close.addEventListener("click", () => hideDetails());
  const title = el("h2", model.name, "details-name");
  const architecture = model.model_class && model.model_class !== model.architecture
    ? `${model.architecture ?? "-"} (${model.model_class})` : model.architecture;
  const defaults = Object.entries(model.defaults ?? {}).map(([key, value]) => `${key}=${value}`).join(" ");
  const overview = facts([
    ["Format", model.format], ["Architecture", architecture], ["Parameters", count(model.parameters)],
    ["Quantization", model.quantization], ["Context length", model.context_length?.toLocaleString()],
    ["Embedding length", model.embedding_length], ["Layers", model.block_count],
    ["Vocabulary", model.vocab_size], ["Size", megabytes(model.size)], ["Digest", model.digest],
    ["Capabilities", (model.capabilities ?? []).join(", ")], ["Defaults", defaults],
    ["Pulled", model.pulled_at && new Date(model.pulled_at).toLocaleString()],
    ["Signature", model.signature && `${model.signature.method} by ${model.signature.signer}${model.signature.verified ? " (verified)" : ""}`],
  ]);
  const use = el("select");
  use.id = "license-use";
  use.append(...USES.map((value) => { const option = el("option", value); option.value = value; return option; }));
  const label = el("label", "Use ");
  label.append(use);
  const verdict = el("div", null, "license-verdict");
  verdict.id = "license-verdict";
  use.addEventListener("change", () => license(name, use.value, verdict));
  const template = model.template ? el("pre", model.template, "template") : el("p", "No chat template.");
  panel.replaceChildren(
    title, close, overview,
    section("Lineage", lineage(model.lineage ?? {})),
    section("License", el("p", `Recorded: ${model.license ?? "none"}`), label, verdict),
    section("Scan", ...scan(model.scan)),
    ...(model.quality ? [section("Quantization report", ...quality(model.quality))] : []),
    section("Chat template", template),
  );
  license(name, use.value, verdict);
}

/** Opens the details of stored model `name` in #model-details. */
export async function showDetails(name) {
  const panel = document.getElementById("model-details");
  shown = name;
  panel.hidden = false;
  panel.replaceChildren(el("p", `Reading ${name}…`));
  const response = await api(`/v1/owl/models/${encodeURIComponent(name)}/details`);
  if (shown !== name) return;
  if (!response.ok) {
    panel.replaceChildren(el("p", `Cannot show ${name}: ${await errorText(response)}`, "error"));
    return;
  }
  render(await response.json(), panel, name);
  panel.querySelector(".details-name").scrollIntoView({ block: "nearest" });
  panel.querySelector(".close").focus();
}

export function hideDetails() {
  shown = null;
  const panel = document.getElementById("model-details");
  panel.hidden = true;
  panel.replaceChildren();
}
