// @ts-check
// The chat page's controller: it owns the page's state (the models, the
// server's dialect, the reply in progress), answers the controls, and asks
// the store to keep and the view to draw. Every listener is wired in `bind`.

import {
  ApiError,
  apiKey,
  fetchModels,
  generateImages,
  sentence,
  setApiKey,
  streamChat,
} from "./api.js";
import { checkConnection, checkedConnection, renderConnections } from "./settings.js";
import {
  cleanTitle,
  exportJSON,
  imagePrompt,
  openAIMessages,
  parseImport,
  titleFor,
} from "./store.js";
import {
  button,
  copyCode,
  download,
  fillOptions,
  LiveReply,
  renderConversationList,
  renderMessage,
  scrollToBottom,
} from "./view.js";

/** @import { Conversation, Message, Store } from "./store.js" */
/** @import { Controls } from "./view.js" */

/**
 * The reply in progress.
 *
 * @typedef {object} Turn
 * @property {Conversation} conversation
 * @property {Message} message
 * @property {AbortController} controller
 * @property {LiveReply} live
 */

const NOT_SAVED =
  "The browser refused to keep this conversation (its storage is full or blocked): " +
  "it will be lost on reload. Export it to keep it.";
const TEXT_HINT = "Enter sends, Shift+Enter adds a line.";
const IMAGE_HINT = "Enter sends, Shift+Enter adds a line; /image and a description make a picture.";
const NO_STORAGE =
  "This browser keeps no data for this page: conversations are lost on reload. " +
  "Export one to keep it.";

export class Controller {
  /**
   * @param {Store} store
   * @param {Controls} ui
   */
  constructor(store, ui) {
    this.store = store;
    this.ui = ui;
    /** @type {string[]} */
    this.models = [];
    /** @type {string | null} the server's own dialect, once its model list said so */
    this.serverProtocol = null;
    /** @type {string[]} the dialects a conversation may choose */
    this.offered = [];
    /** whether the server can make images (it has the upstream key) */
    this.images = false;
    /** @type {Turn | null} */
    this.turn = null;
    /** @type {Promise<boolean> | null} the question for the API key on screen */
    this.pendingKey = null;
  }

  /** Wires the controls, asks the server for its models and draws the page. */
  start() {
    this.bind();
    // Asked first: nothing that drawing the conversations does can keep the
    // page from its models.
    this.loadModels();
    this.render();
    // `=== true`: a real Storage answers any property with an item of that name.
    if (this.store.storage.lost === true) this.showNotice(NO_STORAGE);
  }

  // --- drawing ---------------------------------------------------------------

  render() {
    const { ui, store } = this;
    const conversation = store.current;
    renderConversationList(ui.list, store.conversations, store.currentId, {
      select: (id) => {
        store.select(id);
        this.closeSidebar();
        this.render();
      },
      rename: (id, title) => {
        const renamed = store.find(id);
        if (renamed) {
          renamed.title = cleanTitle(title);
          this.changed(renamed);
        }
        this.render();
      },
      remove: (id) => {
        if (this.turn?.conversation.id === id) this.turn.controller.abort();
        // Its images' bytes are let go with it.
        for (const message of store.find(id)?.messages ?? []) releaseImages(message);
        store.remove(id);
        this.render();
      },
    });
    ui.title.textContent = conversation.title;
    document.title = `${conversation.title} · Koala chat`;
    ui.system.value = conversation.system;
    this.renderModelPicker();
    this.renderConnection();
    ui.webSearch.checked = Boolean(conversation.webSearch);
    this.renderMessages();
  }

  renderMessages() {
    const { ui, turn } = this;
    const messages = this.store.current.messages;
    const lastUser = messages.findLastIndex((m) => m.role === "user");
    // An empty conversation shows the welcome in the same place instead.
    ui.empty.hidden = messages.length > 0;
    ui.messages.hidden = messages.length === 0;
    ui.messages.replaceChildren(
      ...messages.map((message, index) => {
        const actions = [];
        const last = index === messages.length - 1;
        if (!turn && last && message.role === "assistant") {
          actions.push(button("Regenerate", "small", () => this.regenerate()));
        }
        if (!turn && index === lastUser) {
          actions.push(button("Edit", "small", () => this.editLast(index)));
        }
        const article = renderMessage(message, actions);
        if (turn?.message === message) turn.live.attach(article, ui.messages);
        return article;
      }),
    );
    scrollToBottom(ui.messages);
    ui.stop.hidden = !turn;
    ui.send.hidden = Boolean(turn);
  }

  /** Checks the conversation's connection: its own, else the server's, else the first. */
  renderConnection() {
    const { ui } = this;
    const chosen = this.store.current.protocol ?? this.serverProtocol ?? this.offered[0];
    checkConnection(ui.connection, chosen ?? "");
  }

  renderModelPicker() {
    const { ui } = this;
    const conversation = this.store.current;
    const names = this.models.length ? this.models : [conversation.model];
    fillOptions(ui.model, names, (name) => name || "default");
    ui.model.value = names.includes(conversation.model) ? conversation.model : (names[0] ?? "");
  }

  /** @param {string} text what to tell the person; "" hides the notice */
  showNotice(text) {
    this.ui.notice.textContent = text;
    this.ui.notice.hidden = !text;
  }

  /**
   * Marks `conversation` changed and says so when it could not be kept.
   *
   * @param {Conversation} conversation
   */
  changed(conversation) {
    if (!this.store.touch(conversation)) this.showNotice(NOT_SAVED);
  }

  // --- the server --------------------------------------------------------------

  async loadModels() {
    try {
      const found = await this.withKey(fetchModels);
      this.models = found.models;
      this.showSwitches(found.koala);
    } catch (error) {
      this.showNotice(`The page cannot list the models. ${sentence(messageOf(error))}`);
    }
    this.renderModelPicker();
  }

  /**
   * Shows the Connection choices and the web-search switch only where the
   * server says it has them (a `koala` member of its model list).
   *
   * @param {Record<string, unknown> | null} koala
   */
  showSwitches(koala) {
    const { ui } = this;
    const protocols = Array.isArray(koala?.protocols) ? koala.protocols.map(String) : [];
    ui.connectionField.hidden = protocols.length === 0;
    // The server's own setting is what a conversation uses until it picks one.
    const configured = String(koala?.protocol);
    this.serverProtocol = protocols.includes(configured) ? configured : null;
    this.offered = protocols;
    renderConnections(ui.connection, protocols, this.serverProtocol);
    this.renderConnection();
    ui.webSearchField.hidden = koala?.web_search !== true;
    this.images = koala?.images === true;
    ui.hint.textContent = this.images ? IMAGE_HINT : TEXT_HINT;
    ui.imageSuggestion.hidden = !this.images;
  }

  /**
   * Runs `call`; when the server answers 401, asks for the key once and retries.
   *
   * @template T
   * @param {() => Promise<T>} call
   * @returns {Promise<T>}
   */
  async withKey(call) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof ApiError) || !error.needsKey) throw error;
      const reason = apiKey()
        ? "The server refused that API key. Enter the right one."
        : "This server needs an API key.";
      if (!(await this.askKey(reason))) throw error;
      return call();
    }
  }

  /**
   * @param {string} reason
   * @returns {Promise<boolean>} whether the person gave a key
   */
  askKey(reason) {
    // Two requests failing at once share one question.
    if (this.pendingKey) return this.pendingKey;
    const { keyDialog, keyReason, key } = this.ui;
    keyReason.textContent = reason;
    key.value = "";
    keyDialog.returnValue = "";
    this.pendingKey = new Promise((resolve) => {
      const answered = () => {
        this.pendingKey = null;
        const ok = keyDialog.returnValue === "ok" && key.value.trim() !== "";
        if (ok) setApiKey(key.value.trim());
        resolve(ok);
      };
      keyDialog.addEventListener("close", answered, { once: true });
    });
    keyDialog.showModal();
    return this.pendingKey;
  }

  // --- turns -------------------------------------------------------------------

  /** @param {string} text the question */
  send(text) {
    if (this.turn || !text.trim()) return;
    const conversation = this.store.current;
    if (!conversation.messages.length && conversation.title === "New chat") {
      conversation.title = titleFor(text);
    }
    /** @type {Message} */
    const question = { role: "user", content: text };
    /** @type {Message} */
    const answer = { role: "assistant", content: "" };
    if (this.images && imagePrompt(text) !== null) question.image = answer.image = true;
    conversation.messages.push(question, answer);
    this.render();
    this.reply(conversation);
  }

  /**
   * Streams the reply to the last question of `conversation` into its last message.
   *
   * @param {Conversation} conversation
   */
  async reply(conversation) {
    const message = conversation.messages.at(-1);
    if (!message) return;
    Object.assign(message, { content: "", pending: true, error: null, stopped: false });
    releaseImages(message);
    const controller = new AbortController();
    const live = new LiveReply(message);
    this.turn = { conversation, message, controller, live };
    this.changed(conversation);
    this.renderMessages();
    try {
      if (message.image) await this.drawImages(conversation, message, controller.signal);
      else await this.streamReply(conversation, message, controller.signal, live);
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") message.stopped = true;
      else if (error instanceof ApiError) message.error = error.message;
      else message.error = `The reply failed. ${sentence(messageOf(error))}`;
    } finally {
      delete message.pending;
      this.turn = null;
      this.changed(conversation);
      if (this.store.current === conversation) this.renderMessages();
    }
  }

  /**
   * Streams the chat reply to `conversation` into `message`, its last.
   *
   * @param {Conversation} conversation
   * @param {Message} message
   * @param {AbortSignal} signal
   * @param {LiveReply} live
   */
  async streamReply(conversation, message, signal, live) {
    /** @type {Record<string, unknown>} */
    const body = {
      model: conversation.model || this.ui.model.value,
      messages: openAIMessages(conversation, conversation.messages.slice(0, -1)),
    };
    // Sent only when the person changed them: the server's own default otherwise.
    if (conversation.protocol !== null) body.protocol = conversation.protocol;
    if (conversation.webSearch !== null) body.web_search = conversation.webSearch;
    /** @param {string} text */
    const onPiece = (text) => {
      message.content += text;
      live.changed();
    };
    await this.withKey(() => {
      message.content = "";
      return streamChat(body, { signal, onPiece });
    });
    if (!message.content) message.error = "Koala sent an empty reply. Try Regenerate.";
  }

  /**
   * Asks for the image the question before `message` describes, into `message`.
   *
   * @param {Conversation} conversation
   * @param {Message} message
   * @param {AbortSignal} signal
   */
  async drawImages(conversation, message, signal) {
    const question = conversation.messages.at(-2)?.content ?? "";
    const prompt = imagePrompt(question) ?? question;
    const images = await this.withKey(() => generateImages(prompt, { signal }));
    message.images = images.map(({ blob, alt }) => ({ alt, url: URL.createObjectURL(blob) }));
  }

  stop() {
    this.turn?.controller.abort();
  }

  regenerate() {
    const conversation = this.store.current;
    if (this.turn || conversation.messages.at(-1)?.role !== "assistant") return;
    this.reply(conversation);
  }

  /**
   * Takes the last user message (and the reply after it) back into the box.
   *
   * @param {number} index where the last user message is
   */
  editLast(index) {
    const conversation = this.store.current;
    const message = conversation.messages[index];
    if (this.turn || !message) return;
    this.ui.prompt.value = message.content;
    for (const dropped of conversation.messages.splice(index)) releaseImages(dropped);
    this.changed(conversation);
    this.renderMessages();
    this.ui.prompt.focus();
  }

  // --- export and import -------------------------------------------------------

  exportCurrent() {
    const conversation = this.store.current;
    const name = conversation.title.replace(/[^\p{L}\p{N} _-]+/gu, "").trim();
    download(`${name || "conversation"}.json`, exportJSON(conversation));
  }

  /** @param {File} file */
  async importFile(file) {
    let fields;
    try {
      fields = parseImport(await file.text(), file.name);
    } catch (error) {
      this.showNotice(messageOf(error));
      return;
    }
    const conversation = this.store.create(fields);
    this.showNotice("");
    this.changed(conversation);
    this.render();
  }

  // --- controls ----------------------------------------------------------------

  closeSidebar() {
    this.ui.layout.classList.remove("sidebar-open");
    this.ui.toggle.setAttribute("aria-expanded", "false");
  }

  newChat() {
    const current = this.store.current;
    if (!current.messages.length) this.store.remove(current.id);
    this.store.create({ model: current.model });
    this.closeSidebar();
    this.render();
    this.ui.prompt.focus();
  }

  /** Wires every control of the page to the controller, once. */
  bind() {
    const { ui, store } = this;
    ui.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = ui.prompt.value;
      if (this.turn || !text.trim()) return;
      ui.prompt.value = "";
      this.send(text);
    });
    ui.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ui.composer.requestSubmit();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.turn && !ui.keyDialog.open && !ui.settings.open) {
        event.preventDefault();
        this.stop();
      }
    });
    ui.stop.addEventListener("click", () => this.stop());
    ui.newChat.addEventListener("click", () => this.newChat());
    ui.model.addEventListener("change", () => {
      store.current.model = ui.model.value;
      this.changed(store.current);
    });
    ui.connection.addEventListener("change", () => {
      store.current.protocol = checkedConnection(ui.connection) || null;
      this.changed(store.current);
    });
    ui.openSettings.addEventListener("click", () => ui.settings.showModal());
    ui.settings.addEventListener("click", (event) => {
      // A click on the backdrop (the dialog itself, outside its form) closes it.
      if (event.target === ui.settings) ui.settings.close();
    });
    ui.suggestions.addEventListener("click", (event) => {
      const chosen = event.target instanceof Element && event.target.closest("button");
      if (chosen) this.send(chosen.textContent ?? "");
    });
    ui.webSearch.addEventListener("change", () => {
      store.current.webSearch = ui.webSearch.checked;
      this.changed(store.current);
    });
    ui.system.addEventListener("input", () => {
      store.current.system = ui.system.value;
      this.changed(store.current);
    });
    ui.exportButton.addEventListener("click", () => this.exportCurrent());
    ui.importInput.addEventListener("change", () => {
      const file = ui.importInput.files?.[0];
      ui.importInput.value = "";
      if (file) this.importFile(file);
    });
    ui.toggle.addEventListener("click", () => {
      const open = ui.layout.classList.toggle("sidebar-open");
      ui.toggle.setAttribute("aria-expanded", String(open));
    });
    ui.messages.addEventListener("click", (event) => {
      const copy = event.target instanceof Element && event.target.closest("button.copy");
      if (copy instanceof HTMLButtonElement) copyCode(copy);
    });
  }
}

/**
 * Lets go of `message`'s images: frees the bytes behind their object URLs
 * (pictures read back from storage have none) and drops them from it.
 *
 * @param {Message} message
 */
function releaseImages(message) {
  for (const { url } of message.images ?? []) if (url) URL.revokeObjectURL(url);
  delete message.images;
}

/**
 * @param {unknown} error
 * @returns {string} what `error` says, for a person
 */
function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
