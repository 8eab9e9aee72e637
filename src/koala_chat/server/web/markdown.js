// @ts-check
// A small, safe markdown renderer: text in, DOM nodes out. It never builds
// HTML from strings: every piece of text enters the page through a text node,
// so a reply that contains <script> or <img onerror> shows as those letters.
//
// Blocks: paragraphs, fenced code (with a copy button), headings, lists, quotes.
// Inline: `code`, **bold**, *italic*, [links](https://...) and bare URLs, with
// http, https and mailto links only.
//
// Any text is safe to render: quotes and emphasis nest at most MAX_DEPTH deep
// (deeper markup shows as its letters), every recursive call carries its depth,
// and no pattern scans a line more than a few times, so a reply of 20,000 `>`
// or a megabyte of `[` renders in linear time and bounded stack.

/** How deep quotes (and emphasis) may nest; deeper content shows as text. */
export const MAX_DEPTH = 16;

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);
const LINE_END = /\r\n|\r|\n/;
const FENCE = /^\s*(```|~~~)\s*([\w+#.-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;

/**
 * Renders markdown `text` as DOM nodes.
 *
 * @param {string} text
 * @param {Document} [doc]
 * @returns {DocumentFragment} the blocks of `text`, to append anywhere
 */
export function renderMarkdown(text, doc = document) {
  const fragment = doc.createDocumentFragment();
  appendBlocks(fragment, text.split(LINE_END), 0, doc);
  return fragment;
}

/**
 * Appends the blocks of `lines` to `parent`; `depth` is how many quotes hold them.
 *
 * @param {ParentNode} parent
 * @param {string[]} lines
 * @param {number} depth
 * @param {Document} doc
 */
function appendBlocks(parent, lines, depth, doc) {
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
      parent.append(codeBlock(doc, body.join("\n"), fence[2]));
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
      parent.append(h);
      i += 1;
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      i = list(doc, lines, i, parent);
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      for (let match = QUOTE.exec(line); match; match = QUOTE.exec(lines[i] ?? "")) {
        quoted.push(match[1]);
        i += 1;
      }
      const quote = doc.createElement("blockquote");
      if (depth + 1 < MAX_DEPTH) appendBlocks(quote, quoted, depth + 1, doc);
      else quote.append(plainParagraph(doc, quoted));
      parent.append(quote);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i]))
      paragraph.push(lines[i++]);
    const p = doc.createElement("p");
    paragraph.forEach((part, n) => {
      if (n) p.append(doc.createElement("br"));
      appendInline(p, part, doc);
    });
    parent.append(p);
  }
}

/**
 * @param {Document} doc
 * @param {string[]} lines
 * @returns {HTMLParagraphElement} the lines as text, one per line, markup and all
 */
function plainParagraph(doc, lines) {
  const p = doc.createElement("p");
  lines.forEach((part, n) => {
    if (n) p.append(doc.createElement("br"));
    p.append(part);
  });
  return p;
}

/**
 * Returns the end of the finished blocks of `text`, scanning from `from` (a
 * block boundary): the offset just past its last blank line outside a code
 * fence. Rendering text[0:end] and text[end:] apart gives what rendering the
 * whole would, so a streaming reply renders only its tail again.
 *
 * @param {string} text
 * @param {number} [from]
 * @returns {number}
 */
export function stableEnd(text, from = 0) {
  let end = from;
  /** @type {string | null} */
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

/** @param {string} line */
function startsBlock(line) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    BULLET.test(line) ||
    NUMBERED.test(line) ||
    QUOTE.test(line)
  );
}

/**
 * Appends the list that starts at `lines[start]` to `parent`. Lists do not
 * nest: an indented item is an item of the same list.
 *
 * @param {Document} doc
 * @param {string[]} lines
 * @param {number} start
 * @param {ParentNode} parent
 * @returns {number} the index of the first line after the list
 */
function list(doc, lines, start, parent) {
  const first = NUMBERED.exec(lines[start]);
  const pattern = first ? NUMBERED : BULLET;
  const element = doc.createElement(first ? "ol" : "ul");
  const number = first ? Number(first[1]) : 1;
  if (number !== 1) element.setAttribute("start", String(number));
  let i = start;
  /** @type {HTMLLIElement | null} */
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    const match = pattern.exec(line);
    if (match) {
      item = doc.createElement("li");
      appendInline(item, first ? match[2] : match[1], doc);
      element.append(item);
    } else if (line.trim() && /^\s/.test(line) && item && !FENCE.test(line)) {
      // An indented line continues the item above.
      item.append(doc.createElement("br"));
      appendInline(item, line.trim(), doc);
    } else {
      break;
    }
    i += 1;
  }
  parent.append(element);
  return i;
}

/**
 * @param {Document} doc
 * @param {string} code
 * @param {string} language
 * @returns {HTMLElement} a <figure> with the code and its copy button
 */
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
// No part scans past a character that starts another try of that part (a
// link's text and address stop at `[`), so a line of thousands of unclosed
// `[`, `[a](b` or `*` costs linear time, not quadratic.
const INLINE =
  /`([^`]+)`|\[([^[\]]+)\]\(([^)[\s]+)\)|\*\*([^*]+)\*\*|(?<![\w*])[*_]([^*_]+)[*_](?![\w*])|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

/**
 * Appends the inline spans of `text` to `parent`; past MAX_DEPTH levels of
 * emphasis the rest is text.
 *
 * @param {Node & ParentNode} parent
 * @param {string} text
 * @param {Document} [doc]
 * @param {number} [depth]
 */
export function appendInline(parent, text, doc = document, depth = 0) {
  if (depth >= MAX_DEPTH) {
    parent.append(text);
    return;
  }
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
    } else if (bold !== undefined || em !== undefined) {
      const element = doc.createElement(bold !== undefined ? "strong" : "em");
      appendInline(element, bold ?? em, doc, depth + 1);
      parent.append(element);
    } else {
      parent.append(link(doc, bare, bare) ?? whole);
    }
    last = match.index + whole.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

/**
 * @param {Document} doc
 * @param {string} href
 * @param {string} label
 * @returns {HTMLAnchorElement | null} a link for a URL with a safe scheme, else null (shown as text)
 */
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
