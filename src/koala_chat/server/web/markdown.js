// A small, safe markdown renderer: text in, DOM nodes out. It never builds
// HTML from strings: every piece of text enters the page through a text node,
// so a reply that contains <script> or <img onerror> shows as those letters.
//
// Blocks: paragraphs, fenced code (with a copy button), headings, lists, quotes.
// Inline: `code`, **bold**, *italic*, [links](https://...) and bare URLs, with
// http, https and mailto links only.

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);
const FENCE = /^\s*(```|~~~)\s*([\w+#.-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;

export function renderMarkdown(text, doc = document) {
  const fragment = doc.createDocumentFragment();
  const lines = text.split(/\r\n|\r|\n/);
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      i += 1;
      // An open fence runs to the end: the reply may still be arriving.
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      fragment.append(codeBlock(doc, body.join("\n"), fence[2]));
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const h = doc.createElement(`h${Math.min(heading[1].length + 2, 6)}`);
      appendInline(h, heading[2], doc);
      fragment.append(h);
      i += 1;
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      i = list(doc, lines, i, fragment);
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(QUOTE.exec(lines[i++])[1]);
      const quote = doc.createElement("blockquote");
      quote.append(renderMarkdown(quoted.join("\n"), doc));
      fragment.append(quote);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) paragraph.push(lines[i++]);
    const p = doc.createElement("p");
    paragraph.forEach((part, n) => {
      if (n) p.append(doc.createElement("br"));
      appendInline(p, part, doc);
    });
    fragment.append(p);
  }
  return fragment;
}

// Returns the end of the finished blocks of `text`, scanning from `from` (a
// block boundary): the offset just past its last blank line outside a code
// fence. Rendering text[0:end] and text[end:] apart gives what rendering the
// whole would, so a streaming reply renders only its tail again.
export function stableEnd(text, from = 0) {
  let end = from;
  let fence = null;
  let start = from;
  while (start < text.length) {
    const stop = text.indexOf("\n", start);
    if (stop < 0) break; // the last line may still grow
    const line = text.slice(start, stop);
    const open = FENCE.exec(line);
    if (fence === null && open) fence = open[1];
    else if (fence !== null && line.trim().startsWith(fence)) fence = null;
    else if (fence === null && !line.trim()) end = stop + 1;
    start = stop + 1;
  }
  return end;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || BULLET.test(line) || NUMBERED.test(line) || QUOTE.test(line);
}

function list(doc, lines, start, fragment) {
  const ordered = NUMBERED.test(lines[start]);
  const pattern = ordered ? NUMBERED : BULLET;
  const element = doc.createElement(ordered ? "ol" : "ul");
  if (ordered) {
    const first = Number(NUMBERED.exec(lines[start])[1]);
    if (first !== 1) element.start = first;
  }
  let i = start;
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    const match = pattern.exec(line);
    if (match) {
      item = doc.createElement("li");
      appendInline(item, ordered ? match[2] : match[1], doc);
      element.append(item);
    } else if (line.trim() && /^\s+/.test(line) && item && !FENCE.test(line)) {
      // An indented line continues the item above.
      item.append(doc.createElement("br"));
      appendInline(item, line.trim(), doc);
    } else {
      break;
    }
    i += 1;
  }
  fragment.append(element);
  return i;
}

function codeBlock(doc, code, language) {
  const figure = doc.createElement("figure");
  figure.className = "code";
  const bar = doc.createElement("figcaption");
  const name = doc.createElement("span");
  name.textContent = language || "code";
  const copy = doc.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", language ? `Copy ${language} code` : "Copy code");
  copy.dataset.code = code;
  bar.append(name, copy);
  const pre = doc.createElement("pre");
  const element = doc.createElement("code");
  element.textContent = code;
  pre.append(element);
  figure.append(bar, pre);
  return figure;
}

// Inline spans, leftmost first: `code`, [text](url), **bold**, *em* / _em_, URLs.
const INLINE = /`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*|(?<![\w*])[*_]([^*_]+)[*_](?![\w*])|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

export function appendInline(parent, text, doc = document) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    const [whole, code, label, url, bold, em, bare] = match;
    if (code !== undefined) {
      const element = doc.createElement("code");
      element.textContent = code;
      parent.append(element);
    } else if (label !== undefined) {
      parent.append(link(doc, url, label) ?? whole);
    } else if (bold !== undefined) {
      const element = doc.createElement("strong");
      appendInline(element, bold, doc);
      parent.append(element);
    } else if (em !== undefined) {
      const element = doc.createElement("em");
      appendInline(element, em, doc);
      parent.append(element);
    } else {
      parent.append(link(doc, bare, bare) ?? whole);
    }
    last = match.index + whole.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

// Returns an <a> for a URL with a safe scheme, else null (shown as text).
export function link(doc, href, label) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  if (!SAFE_SCHEMES.has(url.protocol)) return null;
  const a = doc.createElement("a");
  a.href = url.href;
  a.textContent = label;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}
