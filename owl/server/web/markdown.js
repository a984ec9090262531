// A small Markdown renderer for untrusted text (model output): it builds DOM nodes and sets
// only textContent and vetted href attributes, so no text it is given becomes markup.
const INLINE =
  /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__|\*(?=[^\s*])([\s\S]*?[^\s*])\*|\b_(?=[^\s_])([\s\S]*?[^\s_])_\b|\[([^\]\n]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()"']+[^\s<>()"'.,;:!?])/g;

/** href when it is an absolute http(s) URL, else null (javascript:, data:, relative …). */
export function safeUrl(href) {
  try {
    const url = new URL(href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function element(tag, children = []) {
  const node = document.createElement(tag);
  for (const child of children) node.append(child);
  return node;
}

function link(text, href, bare = false) {
  const url = safeUrl(href);
  if (!url) return [document.createTextNode(bare ? text : `[${text}](${href})`)];
  // No link inside a link (a label or a bare URL that is itself a URL).
  const anchor = element("a", bare ? [document.createTextNode(text)] : inline(text, false));
  anchor.href = url;
  anchor.rel = "noopener noreferrer";
  anchor.target = "_blank";
  return [anchor];
}

/** Inline Markdown (code, bold, italic, links unless `links` is false) as a list of nodes. */
export function inline(text, links = true) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    const [, , code, bold1, bold2, em1, em2, label, href, bare] = match;
    if (code !== undefined) {
      const node = element("code");
      node.textContent = code;
      nodes.push(node);
    } else if (bold1 !== undefined || bold2 !== undefined) {
      nodes.push(element("strong", inline(bold1 ?? bold2, links)));
    } else if (em1 !== undefined || em2 !== undefined) {
      nodes.push(element("em", inline(em1 ?? em2, links)));
    } else if (!links) {
      nodes.push(document.createTextNode(match[0]));
    } else if (label !== undefined) {
      nodes.push(...link(label, href));
    } else {
      nodes.push(...link(bare, bare, true));
    }
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

const FENCE = /^\s*(```|~~~)\s*([\w+-]*)\s*$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBER = /^\s*\d+[.)]\s+(.*)$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;

/** Markdown text as a DocumentFragment (an unclosed code fence, mid-stream, is a code block). */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(FENCE);
    if (fence) {
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      i++;
      const code = element("code");
      code.textContent = body.join("\n");
      if (fence[2]) code.dataset.lang = fence[2];
      out.append(element("pre", [code]));
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      out.append(element(`h${Math.min(heading[1].length + 2, 6)}`, inline(heading[2])));
      i++;
      continue;
    }
    const kind = BULLET.test(line) ? [BULLET, "ul"] : NUMBER.test(line) ? [NUMBER, "ol"] : null;
    if (kind) {
      const [pattern, tag] = kind;
      const list = element(tag);
      while (i < lines.length && pattern.test(lines[i])) {
        list.append(element("li", inline(lines[i].match(pattern)[1])));
        i++;
      }
      out.append(list);
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(lines[i++].match(QUOTE)[1]);
      out.append(element("blockquote", [renderMarkdown(quoted.join("\n"))]));
      continue;
    }
    const paragraph = [];
    while (
      i < lines.length && lines[i].trim() &&
      ![FENCE, BULLET, NUMBER, HEADING, QUOTE].some((pattern) => pattern.test(lines[i]))
    ) paragraph.push(lines[i++]);
    if (!paragraph.length) paragraph.push(lines[i++]); // a line no block rule took
    out.append(element("p", inline(paragraph.join("\n"))));
  }
  return out;
}
