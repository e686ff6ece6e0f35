// Every call the UI makes goes through here: Hearth's public HTTP API, same origin, with the
// API key (when the server asks for one) kept in sessionStorage for this browser session.
const KEY = "hearth.apiKey";

export class ApiError extends Error {
  constructor(status, message, code = null, body = null, param = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
    this.param = param; // the request field to blame, when one is
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

// One prompt at a time, however many calls were refused together.
let asking = null;
function askKey(message) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  error.hidden = !message;
  error.textContent = message || "";
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        asking = null;
        const key = input.value.trim();
        if (key) sessionStorage.setItem(KEY, key);
        resolve(Boolean(key));
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return asking;
}

// The message of any of Hearth's error shapes: OpenAI's and Anthropic's {error: {message}},
// Ollama's (every /api/ route) {error: "...", code, param}.
export function errorOf(status, body) {
  let message = `HTTP ${status}`;
  let code = null;
  let param = null;
  if (body && typeof body === "object") {
    const err = body.error;
    if (typeof err === "string") {
      message = err;
      code = body.code || null;
      param = body.param || null;
    } else if (err && typeof err === "object") {
      message = err.message || message;
      code = err.code || err.type || null;
      param = err.param || null;
    } else if (typeof body.detail === "string") message = body.detail;
  }
  return new ApiError(status, message, code, body, param);
}

async function send(path, { method = "GET", body, signal, headers = {} } = {}) {
  for (let attempt = 0; ; attempt++) {
    const h = { ...headers };
    if (body !== undefined) h["content-type"] = "application/json";
    const key = apiKey();
    if (key) h.authorization = `Bearer ${key}`;
    const res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (res.status === 401 && attempt < 3) {
      if (await askKey(key ? "That key was refused." : "")) continue;
    }
    if (!res.ok) {
      let parsed = null;
      try {
        parsed = await res.json();
      } catch {
        // not JSON: the status alone
      }
      throw errorOf(res.status, parsed);
    }
    return res;
  }
}

// A JSON call: resolves to the parsed body, rejects with an ApiError.
export async function api(path, options = {}) {
  const res = await send(path, options);
  if (res.status === 204) return null;
  return res.json();
}

async function* lines(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) yield buf;
}

// A streamed POST answered with server-sent events: yields {event, data} with data parsed as
// JSON ("[DONE]" ends it). Aborting `signal` closes the connection, which cancels the
// generation on the server.
export async function* sse(path, body, signal) {
  const res = await send(path, { method: "POST", body, signal });
  let event = null;
  let data = [];
  for await (const line of lines(res)) {
    if (line === "") {
      if (data.length) {
        const text = data.join("\n");
        if (text === "[DONE]") return;
        yield { event, data: JSON.parse(text) };
      }
      event = null;
      data = [];
    } else if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
}

// A streamed POST answered with NDJSON (Ollama's /api/pull): yields each parsed line.
export async function* ndjson(path, body, signal) {
  const res = await send(path, { method: "POST", body, signal });
  for await (const line of lines(res)) {
    if (line.trim()) yield JSON.parse(line);
  }
}
