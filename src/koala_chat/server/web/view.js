// @ts-check
// Drawing the page from the state: the conversation list, the messages, and
// the reply that is streaming. Text enters the DOM only as text nodes
// (textContent, or the markdown renderer, which builds nodes). A reply the
// renderer fails on shows as its plain text; it never takes the page down.

import { renderMarkdown, stableEnd } from "./markdown.js";

/** @import { Conversation, Message, Picture } from "./store.js" */

/** @type {Record<string, string>} */
const SPEAKERS = { user: "You", assistant: "Koala" };

/**
 * @template {Element} T
 * @param {ParentNode} root
 * @param {string} selector
 * @param {new (...args: never[]) => T} type
 * @returns {T} the element, checked to be of `type`
 * @throws {Error} when index.html lacks it (the page and its script disagree)
 */
function find(root, selector, type) {
  const element = root.querySelector(selector);
  if (!(element instanceof type)) throw new Error(`index.html has no ${type.name} ${selector}`);
  return element;
}

/**
 * @param {Document} doc
 * @returns the page's controls, each checked to be what the page expects
 */
export function findControls(doc) {
  return {
    layout: find(doc, ".layout", HTMLElement),
    list: find(doc, "#conversation-list", HTMLUListElement),
    newChat: find(doc, "#new-chat", HTMLButtonElement),
    title: find(doc, "#title", HTMLHeadingElement),
    model: find(doc, "#model", HTMLSelectElement),
    openSettings: find(doc, "#open-settings", HTMLButtonElement),
    settings: find(doc, "#settings", HTMLDialogElement),
    connection: find(doc, "#connection", HTMLDivElement),
    connectionField: find(doc, "#connection-field", HTMLFieldSetElement),
    webSearch: find(doc, "#web-search", HTMLInputElement),
    webSearchField: find(doc, "#web-search-field", HTMLDivElement),
    system: find(doc, "#system", HTMLTextAreaElement),
    empty: find(doc, "#empty", HTMLDivElement),
    suggestions: find(doc, "#suggestions", HTMLUListElement),
    imageSuggestion: find(doc, "#image-suggestion", HTMLLIElement),
    messages: find(doc, "#messages", HTMLElement),
    notice: find(doc, "#notice", HTMLParagraphElement),
    composer: find(doc, "#composer", HTMLFormElement),
    prompt: find(doc, "#prompt", HTMLTextAreaElement),
    hint: find(doc, "#composer-hint", HTMLParagraphElement),
    send: find(doc, "#send", HTMLButtonElement),
    stop: find(doc, "#stop", HTMLButtonElement),
    exportButton: find(doc, "#export", HTMLButtonElement),
    importInput: find(doc, "#import", HTMLInputElement),
    keyDialog: find(doc, "#key-dialog", HTMLDialogElement),
    keyReason: find(doc, "#key-reason", HTMLParagraphElement),
    key: find(doc, "#key", HTMLInputElement),
    toggle: find(doc, "#toggle-sidebar", HTMLButtonElement),
  };
}

/** @typedef {ReturnType<typeof findControls>} Controls */

/**
 * @typedef {object} ListActions
 * @property {(id: string) => void} select
 * @property {(id: string, title: string) => void} rename
 * @property {(id: string) => void} remove
 */

/**
 * @param {HTMLElement} list
 * @param {Conversation[]} conversations
 * @param {string} currentId
 * @param {ListActions} actions
 */
export function renderConversationList(list, conversations, currentId, actions) {
  list.replaceChildren(
    ...conversations.map((conversation) => {
      const item = document.createElement("li");
      const open = button(conversation.title, "open", () => actions.select(conversation.id));
      if (conversation.id === currentId) open.setAttribute("aria-current", "page");
      const rename = button("✎", "icon", () => startRename(open, conversation, actions));
      rename.setAttribute("aria-label", `Rename ${conversation.title}`);
      const remove = button("✕", "icon", () => actions.remove(conversation.id));
      remove.setAttribute("aria-label", `Delete ${conversation.title}`);
      item.append(open, rename, remove);
      return item;
    }),
  );
}

/**
 * @param {HTMLButtonElement} open
 * @param {Conversation} conversation
 * @param {ListActions} actions
 */
function startRename(open, conversation, actions) {
  const input = document.createElement("input");
  input.value = conversation.title;
  input.setAttribute("aria-label", "New title");
  let done = false;
  /** @param {boolean} keep */
  const finish = (keep) => {
    if (done) return;
    done = true;
    if (keep && input.value.trim()) actions.rename(conversation.id, input.value.trim());
    else input.replaceWith(open);
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") {
      event.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  open.replaceWith(input);
  input.focus();
  input.select();
}

/**
 * @param {string} text
 * @param {string} className
 * @param {(event: MouseEvent) => void} onClick
 * @returns {HTMLButtonElement}
 */
export function button(text, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

/**
 * @param {HTMLSelectElement} select
 * @param {string[]} values
 * @param {(value: string) => string} [label] the text shown for a value
 */
export function fillOptions(select, values, label = (value) => value) {
  select.replaceChildren(
    ...values.map((value) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label(value);
      return option;
    }),
  );
}

/**
 * @param {Message} message
 * @param {HTMLButtonElement[]} [actions] the buttons it offers
 * @returns {HTMLElement} the <article> of one message
 */
export function renderMessage(message, actions = []) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  article.setAttribute("aria-label", SPEAKERS[message.role] ?? message.role);
  article.append(bodyFor(message));
  if (message.images) article.append(...message.images.map(pictureOf));
  if (message.pending && !message.content) {
    const spinner = document.createElement("div");
    spinner.className = "spinner";
    spinner.setAttribute("role", "status");
    spinner.setAttribute("aria-label", "Waiting for the reply");
    article.append(spinner);
  }
  if (message.stopped) article.append(note("Stopped."));
  if (message.error) {
    const error = note(message.error);
    error.className = "error";
    error.setAttribute("role", "alert");
    article.append(error);
  }
  if (actions.length) {
    const bar = document.createElement("div");
    bar.className = "actions";
    bar.append(...actions);
    article.append(bar);
  }
  return article;
}

/**
 * @param {Picture} picture
 * @returns {HTMLElement} the <figure> of an image reply's image
 */
function pictureOf({ alt, url }) {
  const figure = document.createElement("figure");
  figure.className = "picture";
  if (url) {
    const img = document.createElement("img");
    img.alt = alt;
    img.src = url;
    figure.append(img);
  } else {
    figure.append(note("The image is gone: images last as long as the page that made them."));
  }
  if (alt) {
    const caption = document.createElement("figcaption");
    caption.textContent = alt;
    // Said once: a screen reader reads the image's alt text already.
    if (url) caption.setAttribute("aria-hidden", "true");
    figure.append(caption);
  }
  return figure;
}

/** @param {string} text */
function note(text) {
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  return p;
}

/**
 * @param {HTMLElement} body
 * @param {string} text
 * @param {unknown} error why the markdown did not render
 */
function showPlain(body, text, error) {
  // A warning, not an error: the reader still gets every character.
  console.warn("a reply is shown as plain text:", error);
  body.classList.add("plain");
  body.textContent = text;
}

// The rendered body of each message, kept while its text stays the same, so
// drawing the conversation again renders only what changed.
/** @type {WeakMap<Message, {content: string, element: HTMLElement}>} */
const bodies = new WeakMap();

/** @param {Message} message */
function bodyFor(message) {
  const cached = bodies.get(message);
  if (cached && cached.content === message.content) return cached.element;
  const element = document.createElement("div");
  element.className = "body";
  if (message.role !== "assistant") element.textContent = message.content;
  else {
    try {
      element.append(renderMarkdown(message.content));
    } catch (error) {
      showPlain(element, message.content, error);
    }
  }
  bodies.set(message, { content: message.content, element });
  return element;
}

/**
 * Draws a streaming reply at most once per animation frame, however fast the
 * pieces come, and renders again only its tail: the blocks before the last
 * blank line (outside a code fence) are finished and stay as they are. A
 * 2,000-piece reply costs a few dozen small renders, not 2,000 large ones.
 * Once the renderer fails on the reply, the rest of it arrives as plain text.
 */
export class LiveReply {
  /** @param {Message} message */
  constructor(message) {
    this.message = message;
    /** @type {HTMLElement | null} */
    this.article = null;
    /** @type {HTMLElement | null} */
    this.scroller = null;
    this.scheduled = false;
    /** @type {HTMLElement | null} */
    this.body = null;
    this.stable = 0; // characters of the text in finished blocks
    /** @type {ChildNode[]} */
    this.tail = []; // the nodes of the unfinished rest
    this.plain = false; // the renderer failed: text only from now on
  }

  /**
   * @param {HTMLElement} article where the reply is drawn
   * @param {HTMLElement} scroller what scrolls to follow it
   */
  attach(article, scroller) {
    this.article = article;
    this.scroller = scroller;
  }

  changed() {
    if (this.scheduled) return;
    this.scheduled = true;
    // A hidden tab runs no animation frames; a timer still does.
    if (document.hidden) setTimeout(() => this.draw(), 100);
    else requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.scheduled = false;
    const article = this.article;
    const body = article?.querySelector(".body");
    if (!article?.isConnected || !(body instanceof HTMLElement)) return;
    const follow = nearBottom(this.scroller);
    const text = this.message.content;
    if (body !== this.body) {
      this.body = body;
      this.stable = 0;
      this.tail = [];
      this.plain = body.classList.contains("plain");
      body.replaceChildren();
    }
    if (this.plain) body.textContent = text;
    else this.drawTail(body, text);
    bodies.set(this.message, { content: text, element: body });
    if (text) article.querySelector(".spinner")?.remove();
    if (follow) scrollToBottom(this.scroller);
  }

  /**
   * @param {HTMLElement} body
   * @param {string} text
   */
  drawTail(body, text) {
    try {
      for (const node of this.tail) node.remove();
      const end = stableEnd(text, this.stable);
      if (end > this.stable) {
        body.append(renderMarkdown(text.slice(this.stable, end)));
        this.stable = end;
      }
      const tail = renderMarkdown(text.slice(this.stable));
      this.tail = [...tail.childNodes];
      body.append(tail);
    } catch (error) {
      this.plain = true;
      showPlain(body, text, error);
    }
  }
}

/**
 * @param {HTMLElement | null} scroller
 * @returns {boolean} whether `scroller` is scrolled (nearly) to its end
 */
export function nearBottom(scroller) {
  return !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

/** @param {HTMLElement | null} scroller */
export function scrollToBottom(scroller) {
  if (scroller) scroller.scrollTop = scroller.scrollHeight;
}

/**
 * Copies a code block's text, and says on its button whether that worked.
 *
 * @param {HTMLButtonElement} copy a code block's copy button
 */
export async function copyCode(copy) {
  try {
    await navigator.clipboard.writeText(copy.dataset.code ?? "");
    copy.textContent = "Copied";
  } catch {
    copy.textContent = "Copy failed";
  }
  setTimeout(() => {
    copy.textContent = "Copy";
  }, 1500);
}

/**
 * Saves `text` as a download named `name` (a JSON file).
 *
 * @param {string} name
 * @param {string} text
 */
export function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}
