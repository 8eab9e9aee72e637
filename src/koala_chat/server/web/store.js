// Conversations, kept in localStorage so that a reload loses nothing.
//
// A conversation: {id, title, system, model, protocol, webSearch, messages,
// updated}; a message: {role: "user" | "assistant", content, error?, stopped?}.
// Export and import speak what `koala chat`'s /save and /load do: a JSON list
// of OpenAI messages, the system prompt first.

const STORAGE = "koala-chat.conversations";
const CURRENT = "koala-chat.current";
const ROLES = new Set(["system", "user", "assistant"]);

export class Store {
  constructor(storage = localStorage) {
    this.storage = storage;
    this.conversations = load(storage);
    const current = storage.getItem(CURRENT);
    this.currentId = this.conversations.some((c) => c.id === current) ? current : null;
    if (!this.current) this.create();
  }

  get current() {
    return this.conversations.find((c) => c.id === this.currentId) ?? null;
  }

  create(fields = {}) {
    const conversation = {
      id: newId(),
      title: "New chat",
      system: "",
      model: "",
      protocol: null,
      webSearch: null,
      messages: [],
      updated: Date.now(),
      ...fields,
    };
    this.conversations.unshift(conversation);
    this.select(conversation.id);
    return conversation;
  }

  select(id) {
    this.currentId = id;
    this.save();
  }

  remove(id) {
    this.conversations = this.conversations.filter((c) => c.id !== id);
    if (this.currentId === id) {
      if (this.conversations.length) this.currentId = this.conversations[0].id;
      else this.create();
    }
    this.save();
  }

  // Marks `conversation` changed and writes everything down.
  touch(conversation) {
    conversation.updated = Date.now();
    this.save();
  }

  save() {
    try {
      this.storage.setItem(STORAGE, JSON.stringify(this.conversations));
      if (this.currentId) this.storage.setItem(CURRENT, this.currentId);
    } catch (error) {
      // Storage full or refused (private mode): the page still works, unsaved.
      console.warn("conversations not saved:", error);
    }
  }
}

function load(storage) {
  try {
    const data = JSON.parse(storage.getItem(STORAGE) ?? "[]");
    return Array.isArray(data) ? data.filter((c) => c && typeof c.id === "string") : [];
  } catch {
    return [];
  }
}

function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

// The messages a request or an export carries: the system prompt, then every
// turn that has text (a failed turn with no text is left out, as the CLI
// forgets it).
export function openAIMessages(conversation, messages = conversation.messages) {
  const out = [];
  if (conversation.system.trim()) out.push({ role: "system", content: conversation.system });
  for (const message of messages) {
    if (message.role === "assistant" && !message.content) continue;
    out.push({ role: message.role, content: message.content });
  }
  return out;
}

export function exportJSON(conversation) {
  return `${JSON.stringify(openAIMessages(conversation), null, 2)}\n`;
}

// Returns the fields of a conversation read from an exported file's text (a
// list of OpenAI messages, or a request body with `messages`); throws an Error
// whose message says what is wrong.
export function parseImport(text, name) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error(`${name} is not a JSON file.`);
  }
  if (data && !Array.isArray(data) && Array.isArray(data.messages)) data = data.messages;
  if (!Array.isArray(data)) throw new Error(`${name} is not a list of messages.`);
  const system = [];
  const messages = [];
  data.forEach((message, index) => {
    if (!message || !ROLES.has(message.role) || typeof message.content !== "string") {
      throw new Error(`${name}: message ${index + 1} needs a role (system, user or assistant) and text content.`);
    }
    if (message.role === "system") system.push(message.content);
    else messages.push({ role: message.role, content: message.content });
  });
  const firstUser = messages.find((m) => m.role === "user");
  return {
    title: titleFor(firstUser ? firstUser.content : name.replace(/\.json$/i, "")),
    system: system.join("\n\n"),
    messages,
  };
}

export function titleFor(text) {
  const line = text.trim().split(/\s+/).join(" ");
  return line.length > 40 ? `${line.slice(0, 39)}…` : line || "New chat";
}
