// The chat page: wires the controls to the store, the API and the view.

import { ApiError, apiKey, fetchModels, setApiKey, streamChat } from "./api.js";
import { Store, exportJSON, openAIMessages, parseImport, titleFor } from "./store.js";
import {
  LiveReply,
  button,
  renderConversationList,
  renderMessage,
  scrollToBottom,
} from "./view.js";

const $ = (id) => document.getElementById(id);
const ui = {
  layout: document.querySelector(".layout"),
  list: $("conversation-list"),
  title: $("title"),
  model: $("model"),
  protocol: $("protocol"),
  protocolField: $("protocol-field"),
  webSearch: $("web-search"),
  webSearchField: $("web-search-field"),
  system: $("system"),
  messages: $("messages"),
  notice: $("notice"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  keyDialog: $("key-dialog"),
  keyReason: $("key-reason"),
  key: $("key"),
  toggle: $("toggle-sidebar"),
};

const store = new Store();
let models = [];
// The dialect the server is configured with, once its model list said so.
let serverProtocol = null;
// The reply in progress: {conversation, message, controller, live}, or null.
let turn = null;

// --- drawing -----------------------------------------------------------------

function render() {
  const conversation = store.current;
  renderConversationList(ui.list, store.conversations, store.currentId, {
    select: (id) => {
      store.select(id);
      closeSidebar();
      render();
    },
    rename: (id, title) => {
      const renamed = store.conversations.find((c) => c.id === id);
      renamed.title = title;
      store.touch(renamed);
      render();
    },
    remove: (id) => {
      if (turn && turn.conversation.id === id) turn.controller.abort();
      store.remove(id);
      render();
    },
  });
  ui.title.textContent = conversation.title;
  document.title = `${conversation.title} · Koala chat`;
  ui.system.value = conversation.system;
  renderModelPicker();
  ui.protocol.value =
    conversation.protocol ?? serverProtocol ?? ui.protocol.options[0]?.value ?? "";
  ui.webSearch.checked = Boolean(conversation.webSearch);
  renderMessages();
}

function renderMessages() {
  const conversation = store.current;
  const messages = conversation.messages;
  const lastUser = messages.findLastIndex((m) => m.role === "user");
  const idle = !turn;
  ui.messages.replaceChildren(
    ...messages.map((message, index) => {
      const actions = [];
      const last = index === messages.length - 1;
      if (idle && last && message.role === "assistant") {
        actions.push(button("Regenerate", "small", regenerate));
      }
      if (idle && index === lastUser) actions.push(button("Edit", "small", () => editLast(index)));
      const article = renderMessage(message, actions);
      if (turn && turn.message === message) turn.live.attach(article, ui.messages);
      return article;
    }),
  );
  scrollToBottom(ui.messages);
  const busy = Boolean(turn);
  ui.stop.hidden = !busy;
  ui.send.disabled = busy;
}

function renderModelPicker() {
  const conversation = store.current;
  const names = models.length ? models : [conversation.model || ""];
  ui.model.replaceChildren(
    ...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name || "default";
      return option;
    }),
  );
  ui.model.value = names.includes(conversation.model) ? conversation.model : names[0];
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

// --- the server --------------------------------------------------------------

async function loadModels() {
  try {
    const found = await withKey(fetchModels);
    models = found.models;
    showSwitches(found.koala);
    showNotice("");
  } catch (error) {
    showNotice(`Cannot list the models: ${error.message}`);
  }
  renderModelPicker();
}

// Shows the dialect and web-search switches only where the server says it
// has them (a `koala` member of its model list).
function showSwitches(koala) {
  const protocols = koala && Array.isArray(koala.protocols) ? koala.protocols.map(String) : [];
  ui.protocolField.hidden = protocols.length === 0;
  ui.protocol.replaceChildren(
    ...protocols.map((name) => {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      return option;
    }),
  );
  // The server's own setting is what a conversation uses until it picks one.
  serverProtocol = koala && protocols.includes(String(koala.protocol)) ? String(koala.protocol) : null;
  ui.protocol.value = store.current.protocol ?? serverProtocol ?? protocols[0] ?? "";
  ui.webSearchField.hidden = !(koala && koala.web_search === true);
}

// Runs `call`; when the server answers 401, asks for the key once and retries.
async function withKey(call) {
  try {
    return await call();
  } catch (error) {
    if (!(error instanceof ApiError) || !error.needsKey) throw error;
    const reason = apiKey()
      ? "The server refused that API key. Enter the right one."
      : "This server needs an API key.";
    if (!(await askKey(reason))) throw error;
    return call();
  }
}

let pendingKey = null;

function askKey(reason) {
  // Two requests failing at once share one question.
  if (pendingKey) return pendingKey;
  ui.keyReason.textContent = reason;
  ui.key.value = "";
  ui.keyDialog.returnValue = "";
  pendingKey = new Promise((resolve) => {
    ui.keyDialog.addEventListener(
      "close",
      () => {
        pendingKey = null;
        const ok = ui.keyDialog.returnValue === "ok" && ui.key.value.trim() !== "";
        if (ok) setApiKey(ui.key.value.trim());
        resolve(ok);
      },
      { once: true },
    );
  });
  ui.keyDialog.showModal();
  return pendingKey;
}

// --- turns -------------------------------------------------------------------

function send(text) {
  if (turn || !text.trim()) return;
  const conversation = store.current;
  if (!conversation.messages.length && conversation.title === "New chat") {
    conversation.title = titleFor(text);
  }
  conversation.messages.push({ role: "user", content: text });
  conversation.messages.push({ role: "assistant", content: "" });
  render();
  reply(conversation);
}

async function reply(conversation) {
  const message = conversation.messages.at(-1);
  Object.assign(message, { content: "", pending: true, error: null, stopped: false });
  const controller = new AbortController();
  const live = new LiveReply(message);
  turn = { conversation, message, controller, live };
  store.touch(conversation);
  renderMessages();
  const body = {
    model: conversation.model || ui.model.value,
    messages: openAIMessages(conversation, conversation.messages.slice(0, -1)),
  };
  // Sent only when the person changed them: the server's own default otherwise.
  if (conversation.protocol !== null) body.protocol = conversation.protocol;
  if (conversation.webSearch !== null) body.web_search = conversation.webSearch;
  try {
    await withKey(() => {
      message.content = "";
      return streamChat(body, {
        signal: controller.signal,
        onPiece: (text) => {
          message.content += text;
          live.changed();
        },
      });
    });
    if (!message.content) message.error = "Koala sent an empty reply. Try Regenerate.";
  } catch (error) {
    if (error.name === "AbortError") message.stopped = true;
    else message.error = error instanceof ApiError ? error.message : `The reply failed: ${error.message}`;
  } finally {
    delete message.pending;
    turn = null;
    store.touch(conversation);
    if (store.current === conversation) renderMessages();
  }
}

function stop() {
  if (turn) turn.controller.abort();
}

function regenerate() {
  const conversation = store.current;
  if (turn || conversation.messages.at(-1)?.role !== "assistant") return;
  reply(conversation);
}

// Takes the last user message (and the reply after it) back into the box.
function editLast(index) {
  const conversation = store.current;
  if (turn) return;
  ui.prompt.value = conversation.messages[index].content;
  conversation.messages.splice(index);
  store.touch(conversation);
  renderMessages();
  ui.prompt.focus();
}

// --- export and import -------------------------------------------------------

function exportCurrent() {
  const conversation = store.current;
  const blob = new Blob([exportJSON(conversation)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `${conversation.title.replace(/[^\p{L}\p{N} _-]+/gu, "").trim() || "conversation"}.json`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

async function importFile(file) {
  try {
    const fields = parseImport(await file.text(), file.name);
    store.create(fields);
    showNotice("");
    render();
  } catch (error) {
    showNotice(error.message);
  }
}

// --- controls ----------------------------------------------------------------

function closeSidebar() {
  ui.layout.classList.remove("sidebar-open");
  ui.toggle.setAttribute("aria-expanded", "false");
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.prompt.value;
  if (turn || !text.trim()) return;
  ui.prompt.value = "";
  send(text);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && turn && !ui.keyDialog.open) {
    event.preventDefault();
    stop();
  }
});
ui.stop.addEventListener("click", stop);
$("new-chat").addEventListener("click", () => {
  const current = store.current;
  if (!current.messages.length) store.remove(current.id);
  store.create({ model: current.model, system: "" });
  closeSidebar();
  render();
  ui.prompt.focus();
});
ui.model.addEventListener("change", () => {
  store.current.model = ui.model.value;
  store.touch(store.current);
});
ui.protocol.addEventListener("change", () => {
  store.current.protocol = ui.protocol.value;
  store.touch(store.current);
});
ui.webSearch.addEventListener("change", () => {
  store.current.webSearch = ui.webSearch.checked;
  store.touch(store.current);
});
ui.system.addEventListener("input", () => {
  store.current.system = ui.system.value;
  store.touch(store.current);
});
$("export").addEventListener("click", exportCurrent);
$("import").addEventListener("change", (event) => {
  const [file] = event.target.files;
  event.target.value = "";
  if (file) importFile(file);
});
ui.toggle.addEventListener("click", () => {
  const open = ui.layout.classList.toggle("sidebar-open");
  ui.toggle.setAttribute("aria-expanded", String(open));
});
ui.messages.addEventListener("click", async (event) => {
  const copy = event.target.closest("button.copy");
  if (!copy) return;
  try {
    await navigator.clipboard.writeText(copy.dataset.code);
    copy.textContent = "Copied";
  } catch {
    copy.textContent = "Copy failed";
  }
  setTimeout(() => (copy.textContent = "Copy"), 1500);
});
render();
loadModels();
