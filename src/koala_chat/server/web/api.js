// @ts-check
// The server's public API, and nothing else: GET /v1/models, a streamed
// POST /v1/chat/completions and POST /v1/images/generations. Errors come back
// as ApiError with plain words.

const KEY_STORAGE = "koala-chat.api-key";

/**
 * @typedef {object} ErrorFacts
 * @property {number} [status] the HTTP status (0: no answer, or an error event)
 * @property {string | null} [code] the server's error code
 * @property {number | null} [retryAfter] seconds, from Retry-After
 */

export class ApiError extends Error {
  /**
   * @param {string} message
   * @param {ErrorFacts} [facts]
   */
  constructor(message, { status = 0, code = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  get needsKey() {
    return this.status === 401;
  }
}

// The key lives in session storage only: it ends with the tab. Where the
// browser refuses storage (site data blocked), it ends with the page.
/** @type {string | null} */
let pageKey = null;

/** @returns {string | null} */
export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return pageKey;
  }
}

/** @param {string | null} key */
export function setApiKey(key) {
  pageKey = key || null;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Refused: the key is kept for this page only (pageKey).
  }
}

/**
 * @param {Record<string, string>} [extra]
 * @returns {Record<string, string>}
 */
function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// Returns {models: [names], koala: {protocols, web_search} | null}.
/** @returns {Promise<{models: string[], koala: Record<string, unknown> | null}>} */
export async function fetchModels() {
  const response = await send("/v1/models", { headers: headers() });
  if (!response.ok) throw await errorOf(response);
  const body = await response.json();
  const models = Array.isArray(body.data)
    ? body.data.map((/** @type {{id: unknown}} */ m) => String(m.id))
    : [];
  const koala = body.koala && typeof body.koala === "object" ? body.koala : null;
  return { models, koala };
}

/** @typedef {{blob: Blob, alt: string}} GeneratedImage */

// Asks for images of `prompt` as bytes (b64_json): the server fetches them
// from the image host, so the page shows them from blob: URLs of its own and
// never loads anything from elsewhere (see the server's webpage module).
/**
 * @param {string} prompt
 * @param {{signal: AbortSignal}} options
 * @returns {Promise<GeneratedImage[]>}
 */
export async function generateImages(prompt, { signal }) {
  const response = await send("/v1/images/generations", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ prompt, n: 1, response_format: "b64_json" }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  const body = await response.json().catch(() => null);
  const data = Array.isArray(body?.data) ? body.data : [];
  /** @type {GeneratedImage[]} */
  const images = [];
  for (const item of data) {
    if (typeof item?.b64_json !== "string") continue;
    const alt = typeof item.revised_prompt === "string" ? item.revised_prompt : "";
    images.push({ blob: new Blob([bytesOf(item.b64_json)]), alt });
  }
  if (!images.length) throw new ApiError("The server sent no image.");
  return images;
}

/**
 * @param {string} base64
 * @returns {Uint8Array<ArrayBuffer>} the bytes `base64` encodes
 * @throws {ApiError} when it is not base64
 */
function bytesOf(base64) {
  let text;
  try {
    text = atob(base64);
  } catch {
    throw new ApiError("The server sent an image that is not base64.");
  }
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

// Streams a completion: calls onPiece(text) for every piece, in order, and
// resolves when the reply ends. Rejects with ApiError, or an AbortError when
// `signal` aborts (the server then cancels the upstream request).
/**
 * @param {Record<string, unknown>} body
 * @param {{signal: AbortSignal, onPiece: (text: string) => void}} options
 * @returns {Promise<void>}
 */
export async function streamChat(body, { signal, onPiece }) {
  const response = await send("/v1/chat/completions", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  if (!response.body) throw new ApiError("The server sent no reply body.");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const events = new EventParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const data of events.feed(value)) {
      if (data === "[DONE]") return;
      handleEvent(data, onPiece);
    }
  }
  // The stream ended without [DONE]: the connection was cut.
  throw new ApiError("The reply was cut off: the connection to the server closed early.");
}

/**
 * @param {string} url
 * @param {RequestInit} init
 * @returns {Promise<Response>}
 */
async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(
      "Cannot reach the koala server at this address. Is `koala serve` still running?",
    );
  }
}

/**
 * @param {string} data
 * @param {(text: string) => void} onPiece
 */
function handleEvent(data, onPiece) {
  let chunk;
  try {
    chunk = JSON.parse(data);
  } catch {
    throw new ApiError("The server sent an event that is not JSON.");
  }
  if (chunk?.error) throw explain(200, chunk.error, null);
  const choice = chunk && Array.isArray(chunk.choices) ? chunk.choices[0] : null;
  const text = choice?.delta ? choice.delta.content : null;
  if (typeof text === "string" && text) onPiece(text);
}

/**
 * @param {Response} response
 * @returns {Promise<ApiError>}
 */
async function errorOf(response) {
  /** @type {Record<string, unknown>} */
  let error = {};
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error) error = body.error;
  } catch {
    // Not our JSON error shape (a proxy's page): the status still speaks.
  }
  const wait = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return explain(response.status, error, Number.isFinite(wait) ? wait : null);
}

/** @param {number} n */
function seconds(n) {
  return n === 1 ? "1 second" : `${n} seconds`;
}

/**
 * The server's messages are clauses ("could not connect to ..."), as
 * Python's are; the page shows sentences, as the command line does.
 *
 * @param {string} text
 * @returns {string} `text` on one line, capitalised (when it starts with a
 *   plain word, not a name such as `gpt-4o` or a path) and ended with a stop
 */
export function sentence(text) {
  const line = text.trim().split(/\s+/).join(" ");
  if (!line) return "";
  const first = line.split(" ", 1)[0] ?? "";
  const capital = /^\p{L}+[,:;]?$/u.test(first) ? line[0]?.toUpperCase() + line.slice(1) : line;
  return /[.?!]$/.test(capital) ? capital : `${capital}.`;
}

// The server's errors (see its failures module) in words a person can act on:
// our sentence first, then the server's own words as a sentence of their own
// where they add something (never the same fact twice).
/**
 * @param {number} status
 * @param {Record<string, unknown>} error the `error` member of the server's answer
 * @param {number | null} retryAfter
 * @returns {ApiError}
 */
export function explain(status, error, retryAfter) {
  const code = typeof error.code === "string" ? error.code : null;
  const words = typeof error.message === "string" ? error.message.trim() : "";
  const said = sentence(words);
  const facts = { status, code, retryAfter };
  const wait = retryAfter === null ? "a moment" : seconds(retryAfter);
  /** @param {...string} parts */
  const failed = (...parts) => new ApiError(parts.filter(Boolean).join(" "), facts);
  if (status === 401) {
    return failed("The server needs an API key, and none (or a wrong one) was sent.");
  }
  if (status === 429 || code === "rate_limit_exceeded") {
    const who =
      code === "too_many_streams" ? "The koala server is busy" : "Koala is rate limiting us";
    return failed(`${who}: try again in ${wait}.`);
  }
  /** @type {Record<string, string[]>} */
  const upstream = {
    upstream_challenge: [
      "Koala is behind a Cloudflare challenge, so the server cannot reach it.",
      "Try again later, or point the server at another endpoint.",
    ],
    // The server's words say the same ("could not connect"): left out.
    upstream_unreachable: [
      "The server cannot reach Koala.",
      "Check its network and proxy; its log says more.",
    ],
    upstream_timeout: ["Koala took too long to answer.", "Try again."],
    upstream_protocol_error: ["Koala answered with something that is not a chat reply.", said],
  };
  const known = code === null ? undefined : upstream[code];
  if (known) return failed(...known);
  // Any other upstream failure: the server's words name it best.
  if (code?.startsWith("upstream_")) return failed(said || "Koala answered with an error.");
  if (status === 504) return failed(...(upstream.upstream_timeout ?? []));
  if (status >= 500) return failed(`The koala server failed (status ${status}).`, said);
  if (status >= 400) {
    return failed(sentence(`The server refused the request: ${words || `status ${status}`}`));
  }
  return failed("The reply failed.", said || "The server gave no reason.");
}

// Server-sent events (the HTML standard, "Parsing an event stream"): lines end
// in CR, LF or CRLF; "data" lines of one event join with LF; a blank line ends
// the event. Other fields and comments carry nothing we use.
export class EventParser {
  constructor() {
    this.buffer = "";
    /** @type {string | null} */
    this.data = null;
  }

  // Returns the data of every event completed by `text`.
  /**
   * @param {string} text
   * @returns {string[]}
   */
  feed(text) {
    /** @type {string[]} */
    const out = [];
    this.buffer += text;
    const ends = /\r\n|\r|\n/g;
    let start = 0;
    for (;;) {
      ends.lastIndex = start;
      const found = ends.exec(this.buffer);
      if (!found) break;
      // A CR at the very end may be the first half of a CRLF: wait for more.
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, found.index), out);
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /**
   * @param {string} line
   * @param {string[]} out
   */
  line(line, out) {
    if (line === "") {
      if (this.data !== null) out.push(this.data);
      this.data = null;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== "data") return;
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    this.data = this.data === null ? value : `${this.data}\n${value}`;
  }
}
