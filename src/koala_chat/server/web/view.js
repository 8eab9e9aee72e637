// Drawing the page from the state: the conversation list, the messages, and
// the reply that is streaming. Text enters the DOM only as text nodes
// (textContent, or the markdown renderer, which builds nodes).

import { renderMarkdown, stableEnd } from "./markdown.js";

const SPEAKERS = { user: "You", assistant: "Koala" };

export function renderConversationList(list, conversations, currentId, actions) {
  list.replaceChildren(
    ...conversations.map((conversation) => {
      const item = document.createElement("li");
      const open = button(conversation.title, "open", () => actions.select(conversation.id));
      if (conversation.id === currentId) open.setAttribute("aria-current", "page");
      const rename = button("✎", "icon", () => startRename(item, open, conversation, actions));
      rename.setAttribute("aria-label", `Rename ${conversation.title}`);
      const remove = button("✕", "icon", () => actions.remove(conversation.id));
      remove.setAttribute("aria-label", `Delete ${conversation.title}`);
      item.append(open, rename, remove);
      return item;
    }),
  );
}

function startRename(item, open, conversation, actions) {
  const input = document.createElement("input");
  input.value = conversation.title;
  input.setAttribute("aria-label", "New title");
  let done = false;
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

export function button(text, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

// Returns the <article> of one message; `actions` are the buttons it offers.
export function renderMessage(message, actions = []) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  article.setAttribute("aria-label", SPEAKERS[message.role] ?? message.role);
  article.append(bodyFor(message));
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

function note(text) {
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  return p;
}

// The rendered body of each message, kept while its text stays the same, so
// drawing the conversation again renders only what changed.
const bodies = new WeakMap();

function bodyFor(message) {
  const cached = bodies.get(message);
  if (cached && cached.content === message.content) return cached.element;
  const element = document.createElement("div");
  element.className = "body";
  if (message.role === "assistant") element.append(renderMarkdown(message.content));
  else element.textContent = message.content;
  bodies.set(message, { content: message.content, element });
  return element;
}

// Draws a streaming reply at most once per animation frame, however fast the
// pieces come, and renders again only its tail: the blocks before the last
// blank line (outside a code fence) are finished and stay as they are. A
// 2,000-piece reply costs a few dozen small renders, not 2,000 large ones.
export class LiveReply {
  constructor(message) {
    this.message = message;
    this.article = null;
    this.scroller = null;
    this.scheduled = false;
    this.body = null;
    this.stable = 0; // characters of the text in finished blocks
    this.tail = []; // the nodes of the unfinished rest
  }

  attach(article, scroller) {
    this.article = article;
    this.scroller = scroller;
  }

  changed() {
    if (this.scheduled) return;
    this.scheduled = true;
    // A hidden tab runs no animation frames; a timer still does.
    const later = document.hidden ? (f) => setTimeout(f, 100) : requestAnimationFrame;
    later(() => this.draw());
  }

  draw() {
    this.scheduled = false;
    const article = this.article;
    if (!article || !article.isConnected) return;
    const follow = nearBottom(this.scroller);
    const body = article.querySelector(".body");
    if (body !== this.body) {
      this.body = body;
      this.stable = 0;
      this.tail = [];
      body.replaceChildren();
    }
    const text = this.message.content;
    for (const node of this.tail) node.remove();
    const end = stableEnd(text, this.stable);
    if (end > this.stable) {
      body.append(renderMarkdown(text.slice(this.stable, end)));
      this.stable = end;
    }
    const tail = renderMarkdown(text.slice(this.stable));
    this.tail = [...tail.childNodes];
    body.append(tail);
    bodies.set(this.message, { content: text, element: body });
    if (text) article.querySelector(".spinner")?.remove();
    if (follow) scrollToBottom(this.scroller);
  }
}

export function nearBottom(scroller) {
  return !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

export function scrollToBottom(scroller) {
  if (scroller) scroller.scrollTop = scroller.scrollHeight;
}
