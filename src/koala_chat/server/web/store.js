// @ts-check
// Conversations, kept in localStorage so that a reload loses nothing.
//
// Export and import speak what `koala chat`'s /save and /load do: a JSON list
// of OpenAI messages, the system prompt first.
//
// Whatever the storage holds is read with suspicion: another version of the
// page, an extension or a person may have written anything there. What is not
// a conversation is skipped, what is half one is repaired, the rest is kept;
// reading never throws.

/**
 * @typedef {object} Message
 * @property {"user" | "assistant"} role
 * @property {string} content
 * @property {string | null} [error] why the reply failed, in words
 * @property {boolean} [stopped] the person stopped the reply
 * @property {boolean} [pending] the reply is still arriving
 * @property {boolean} [image] a turn of the image mode: a "/image" question, or its images
 * @property {Picture[]} [images] the images of an image reply
 */

/**
 * An image on the page: its alt text, and a blob: URL while the page lasts
 * (never kept: the bytes are not stored).
 *
 * @typedef {{alt: string, url?: string}} Picture
 */

/**
 * @typedef {object} Conversation
 * @property {string} id
 * @property {string} title
 * @property {string} system the system prompt ("" for none)
 * @property {string} model "" for the server's default
 * @property {string | null} protocol the dialect; null for the server's
 * @property {boolean | null} webSearch null for the server's default
 * @property {Message[]} messages
 * @property {number} updated milliseconds since the epoch
 */

/**
 * Where conversations are kept; `lost` says it ends with the page.
 *
 * @typedef {Pick<Storage, "getItem" | "setItem"> & {lost?: boolean}} KeyValueStorage
 */

/** @typedef {{role: "system" | "user" | "assistant", content: string}} OpenAIMessage */

const STORAGE = "koala-chat.conversations";
const CURRENT = "koala-chat.current";
const ROLES = new Set(["system", "user", "assistant"]);
const NEW_TITLE = "New chat";
/** Titles longer than this (a stored one, a rename) are cut. */
const TITLE_LIMIT = 200;

export class Store {
  /** @param {KeyValueStorage} storage */
  constructor(storage) {
    this.storage = storage;
    /** @type {Conversation[]} */
    this.conversations = loadConversations(read(storage, STORAGE));
    const current = read(storage, CURRENT);
    /** @type {string} */
    this.currentId = this.conversations.find((c) => c.id === current)?.id ?? "";
    if (!this.currentId) this.create();
  }

  /** @returns {Conversation} the conversation on screen (there is always one) */
  get current() {
    const found = this.conversations.find((c) => c.id === this.currentId);
    return found ?? this.conversations[0] ?? this.create();
  }

  /**
   * Adds a conversation, first in the list, and selects it.
   *
   * @param {Partial<Omit<Conversation, "id">>} [fields]
   * @returns {Conversation}
   */
  create(fields = {}) {
    /** @type {Conversation} */
    const conversation = {
      title: NEW_TITLE,
      system: "",
      model: "",
      protocol: null,
      webSearch: null,
      messages: [],
      updated: Date.now(),
      ...fields,
      id: newId(),
    };
    this.conversations.unshift(conversation);
    this.select(conversation.id);
    return conversation;
  }

  /** @param {string} id */
  find(id) {
    return this.conversations.find((c) => c.id === id) ?? null;
  }

  /** @param {string} id */
  select(id) {
    this.currentId = id;
    this.save();
  }

  /** @param {string} id */
  remove(id) {
    this.conversations = this.conversations.filter((c) => c.id !== id);
    if (this.currentId === id) {
      const next = this.conversations[0];
      if (next) this.currentId = next.id;
      else this.create();
    }
    this.save();
  }

  /**
   * Marks `conversation` changed and writes everything down.
   *
   * @param {Conversation} conversation
   * @returns {boolean} whether it was written (false: storage full or refused)
   */
  touch(conversation) {
    conversation.updated = Date.now();
    return this.save();
  }

  /** @returns {boolean} whether the conversations were written */
  save() {
    try {
      this.storage.setItem(STORAGE, JSON.stringify(this.conversations));
      this.storage.setItem(CURRENT, this.currentId);
      return true;
    } catch (error) {
      // Storage full or refused (private mode): the page still works, unsaved.
      console.warn("conversations not saved:", error);
      return false;
    }
  }
}

/**
 * @returns {KeyValueStorage} the browser's localStorage or, where the browser
 *   refuses it (site data blocked), storage that lasts as long as the page
 *   (marked `lost: true`)
 */
export function browserStorage() {
  try {
    const storage = globalThis.localStorage;
    if (storage) return storage;
  } catch {
    // Reading the property itself throws where site data is blocked.
  }
  const memory = new Map();
  return {
    lost: true,
    getItem: (key) => memory.get(key) ?? null,
    setItem: (key, value) => void memory.set(key, String(value)),
  };
}

/**
 * @param {KeyValueStorage} storage
 * @param {string} key
 * @returns {string | null}
 */
function read(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null;
  }
}

/**
 * @param {string | null} text what the storage held
 * @returns {Conversation[]} every conversation in it that can be read, repaired
 */
export function loadConversations(text) {
  let data;
  try {
    data = JSON.parse(text ?? "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(data)) return [];
  const seen = new Set();
  /** @type {Conversation[]} */
  const conversations = [];
  for (const item of data) {
    const conversation = conversationFrom(item);
    if (conversation && !seen.has(conversation.id)) {
      seen.add(conversation.id);
      conversations.push(conversation);
    }
  }
  return conversations;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * @param {unknown} value a stored conversation, or anything else
 * @returns {Conversation | null} the conversation, repaired field by field; null
 *   if it has no id
 */
function conversationFrom(value) {
  if (!isRecord(value) || typeof value.id !== "string" || !value.id) return null;
  const title = typeof value.title === "string" ? value.title.trim() : "";
  const messages = Array.isArray(value.messages) ? value.messages : [];
  return {
    id: value.id,
    title: title ? title.slice(0, TITLE_LIMIT) : NEW_TITLE,
    system: typeof value.system === "string" ? value.system : "",
    model: typeof value.model === "string" ? value.model : "",
    protocol: typeof value.protocol === "string" ? value.protocol : null,
    webSearch: typeof value.webSearch === "boolean" ? value.webSearch : null,
    messages: messages.map(messageFrom).filter((m) => m !== null),
    updated: Number.isFinite(value.updated) ? Number(value.updated) : 0,
  };
}

/**
 * @param {unknown} value a stored message, or anything else
 * @returns {Message | null} the message; null if it has no role or no text
 */
function messageFrom(value) {
  if (!isRecord(value) || typeof value.content !== "string") return null;
  if (value.role !== "user" && value.role !== "assistant") return null;
  /** @type {Message} */
  const message = { role: value.role, content: value.content };
  if (typeof value.error === "string" && value.error) message.error = value.error;
  // A reply still arriving when the page closed was cut off there.
  if (value.stopped === true || value.pending === true) message.stopped = true;
  if (value.image === true) message.image = true;
  if (Array.isArray(value.images)) {
    message.images = value.images
      .filter(isRecord)
      .map((picture) => ({ alt: typeof picture.alt === "string" ? picture.alt : "" }));
  }
  return message;
}

function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

/**
 * The messages a request or an export carries: the system prompt, then every
 * turn that has text (a failed turn with no text is left out, as the CLI
 * forgets it). Turns of the image mode are left out: they are no chat.
 *
 * @param {Conversation} conversation
 * @param {Message[]} [messages]
 * @returns {OpenAIMessage[]}
 */
export function openAIMessages(conversation, messages = conversation.messages) {
  /** @type {OpenAIMessage[]} */
  const out = [];
  if (conversation.system.trim()) out.push({ role: "system", content: conversation.system });
  for (const message of messages) {
    if (message.image || (message.role === "assistant" && !message.content)) continue;
    out.push({ role: message.role, content: message.content });
  }
  return out;
}

/**
 * @param {Conversation} conversation
 * @returns {string} the file Export writes
 */
export function exportJSON(conversation) {
  return `${JSON.stringify(openAIMessages(conversation), null, 2)}\n`;
}

/**
 * Reads an exported file's text: a list of OpenAI messages, or a request
 * body with `messages`.
 *
 * @param {string} text
 * @param {string} name the file's name, for the title and the errors
 * @returns {{title: string, system: string, messages: Message[]}} the fields of a conversation
 * @throws {Error} whose message says what is wrong with the file
 */
export function parseImport(text, name) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error(`${name} is not a JSON file.`);
  }
  if (isRecord(data) && Array.isArray(data.messages)) data = data.messages;
  if (!Array.isArray(data)) throw new Error(`${name} is not a list of messages.`);
  /** @type {string[]} */
  const system = [];
  /** @type {Message[]} */
  const messages = [];
  data.forEach((message, index) => {
    if (!isRecord(message) || !ROLES.has(String(message.role))) {
      throw new Error(`${name}: message ${index + 1} needs a role (system, user or assistant).`);
    }
    if (typeof message.content !== "string") {
      throw new Error(`${name}: message ${index + 1} needs text content.`);
    }
    if (message.role === "system") system.push(message.content);
    else
      messages.push({
        role: message.role === "user" ? "user" : "assistant",
        content: message.content,
      });
  });
  const firstUser = messages.find((m) => m.role === "user");
  return {
    title: titleFor(firstUser ? firstUser.content : name.replace(/\.json$/i, "")),
    system: system.join("\n\n"),
    messages,
  };
}

/**
 * @param {string} text the first question, or a file's name
 * @returns {string} a title of at most 40 characters
 */
export function titleFor(text) {
  const line = text.trimStart().slice(0, 200).trim().split(/\s+/).join(" ");
  return line.length > 40 ? `${line.slice(0, 39)}…` : line || NEW_TITLE;
}

/**
 * @param {string} title what the person typed
 * @returns {string} the title kept (cut to its limit)
 */
export function cleanTitle(title) {
  return title.trim().slice(0, TITLE_LIMIT) || NEW_TITLE;
}

/**
 * @param {string} text what the person typed
 * @returns {string | null} the words after "/image ", or null when it is no image request
 */
export function imagePrompt(text) {
  const found = /^\/image\s+(\S[\s\S]*)$/.exec(text.trim());
  return found?.[1] ? found[1].trim() : null;
}
