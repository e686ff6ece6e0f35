// Chat: a Responses API playground over conversations kept in Hearth's store. Answers stream
// in as events (text, reasoning, tool and MCP calls); Stop aborts the fetch, which cancels the
// generation on the server. Everything goes through the public API.
import { api, sse } from "../api.js";
import { h, when } from "../dom.js";
import { render } from "../markdown.js";

const PREFS = "hearth.chat";
const TITLE_CHARS = 60;

function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS)) || {};
  } catch {
    return {};
  }
}

function pretty(json) {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json || "";
  }
}

const textOf = (item) => (item.content || []).map((p) => p.text ?? p.refusal ?? "").join("");

function userMessage(text, role = "user") {
  const name = role === "user" ? "You" : role;
  return h("article", { class: `msg ${role}`, "aria-label": name }, h("div", { class: "msg-text" }, text));
}

// One assistant turn: its output items as parts, keyed by output index while streaming.
class Turn {
  constructor() {
    this.body = h("div", { class: "msg-body" });
    this.status = h("p", { class: "msg-status muted", role: "status", hidden: true });
    this.stats = h("p", { class: "msg-stats muted", hidden: true });
    this.el = h("article", { class: "msg assistant", "aria-label": "Assistant" }, this.body, this.status, this.stats);
    this.parts = new Map();
    this.calls = new Map(); // call_id -> part, for function_call_output items
    this.dirty = new Set();
    this.frame = 0;
  }

  setStatus(text) {
    this.status.textContent = text || "";
    this.status.hidden = !text;
  }

  part(key, item) {
    let part = this.parts.get(key);
    if (part) return part;
    const type = item.type;
    if (type === "message") {
      part = { type, text: "", el: h("div", { class: "md" }) };
    } else if (type === "reasoning") {
      const md = h("div", { class: "md" });
      part = { type, text: "", md, el: h("details", { class: "thinking", open: true }, h("summary", {}, "Thinking"), md) };
    } else if (type === "mcp_list_tools") {
      part = { type, el: h("p", { class: "tool-note muted" }) };
    } else {
      const label = { mcp_call: "MCP call", mcp_approval_request: "MCP approval needed" }[type] || "Tool call";
      const args = h("pre", { class: "tool-args" });
      const result = h("pre", { class: "tool-result" });
      const resultBox = h("div", { hidden: true }, h("div", { class: "tool-label" }, "Result"), result);
      const head = h("summary", {}, h("span", { class: "badge" }, label), " ", h("code", {}, item.name || ""));
      if (item.server_label) head.append(h("span", { class: "muted" }, ` on ${item.server_label}`));
      const el = h("details", { class: "tool", open: true }, head, h("div", { class: "tool-label" }, "Arguments"), args, resultBox);
      part = { type, text: "", args, result, resultBox, badge: head.firstChild, el };
    }
    this.parts.set(key, part);
    this.body.append(part.el);
    return part;
  }

  // More text for a part; drawn on the next frame so a fast stream is not re-parsed per token.
  append(key, type, delta) {
    const part = this.part(key, { type });
    part.text += delta;
    this.dirty.add(part);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    for (const part of this.dirty) this.draw(part);
    this.dirty.clear();
  }

  draw(part) {
    if (part.type === "message") part.el.replaceChildren(render(part.text));
    else if (part.type === "reasoning") part.md.replaceChildren(render(part.text));
    else if (part.args) part.args.textContent = part.text;
  }

  // A whole item: one loaded from the store, or an item's final state from output_item.done.
  item(key, item) {
    if (item.type === "function_call_output") {
      const call = this.calls.get(item.call_id);
      if (call) return this.result(call, item.output, false);
      return this.item(key, { ...item, type: "function_call", name: "result", arguments: "" });
    }
    const part = this.part(key, item);
    if (item.type === "message") part.text = textOf(item);
    else if (item.type === "reasoning") {
      part.text = textOf(item) || (item.summary || []).map((s) => s.text).join("\n");
      part.el.open = false;
    } else if (item.type === "mcp_list_tools") {
      part.el.textContent = item.error
        ? `MCP server ${item.server_label}: could not list tools (${item.error})`
        : `MCP server ${item.server_label}: ${item.tools.length} tools available`;
      return;
    } else {
      part.text = pretty(item.arguments ?? item.input);
      if (item.call_id) this.calls.set(item.call_id, part);
      if (item.error) this.result(part, item.error.message || JSON.stringify(item.error), true);
      else if (item.output != null) this.result(part, item.output, false);
    }
    this.dirty.delete(part);
    this.draw(part);
  }

  result(part, text, failed) {
    part.result.textContent = pretty(text);
    part.resultBox.hidden = false;
    part.result.classList.toggle("error", failed);
    if (failed) part.badge.classList.add("bad");
  }

  fail(message) {
    this.body.append(h("p", { class: "msg-error", role: "alert" }, message));
  }

  note(text) {
    this.body.append(h("p", { class: "msg-note muted" }, text));
  }

  showStats(ttft, tokens, seconds) {
    const bits = [];
    if (ttft != null) bits.push(`TTFT ${Math.round(ttft)} ms`);
    if (tokens != null && seconds > 0.01) bits.push(`${(tokens / seconds).toFixed(1)} tokens/s`);
    if (tokens != null) bits.push(`${tokens} tokens`);
    this.stats.textContent = bits.join(" · ");
    this.stats.hidden = !bits.length;
  }
}

export async function mount(root) {
  const prefs = loadPrefs();
  const state = { models: [], conv: null, convs: [], busy: null };

  // -- the layout -----------------------------------------------------------------------------
  const convList = h("ul", { class: "convs", "aria-label": "Conversations" });
  const sideNote = h("p", { class: "muted", hidden: true });
  const side = h(
    "aside",
    { class: "chat-side", id: "chat-side", "aria-label": "Conversations" },
    h("div", { class: "side-head" },
      h("h2", {}, "Chats"),
      h("button", { type: "button", class: "primary", onclick: () => newChat() }, "New chat"),
    ),
    sideNote,
    convList,
  );
  const toggle = h("button", { type: "button", class: "side-toggle", "aria-controls": "chat-side", "aria-expanded": "false" }, "Chats");
  const select = h("select", { id: "chat-model" });
  const modelState = h("span", { class: "badge" });
  const modelNote = h("p", { class: "hint error", hidden: true });
  const system = h("textarea", { id: "chat-system", rows: 3, placeholder: "Optional instructions for the model" });
  const temp = h("input", {
    id: "chat-temp", type: "number", min: 0, max: 2, step: 0.1, placeholder: "model default", inputmode: "decimal",
  });
  const maxTokens = h("input", { id: "chat-max", type: "number", min: 1, step: 1, placeholder: "no limit", inputmode: "numeric" });
  const mcpBox = h("div", { class: "mcp-list" });
  const mcpSet = h("fieldset", { class: "mcp", hidden: true }, h("legend", {}, "MCP servers"), mcpBox);
  const options = h(
    "details",
    { class: "chat-options" },
    h("summary", {}, "Options"),
    h("div", { class: "options-grid" },
      h("div", { class: "field wide" }, h("label", { for: "chat-system" }, "System prompt"), system),
      h("div", { class: "field" }, h("label", { for: "chat-temp" }, "Temperature"), temp),
      h("div", { class: "field" }, h("label", { for: "chat-max" }, "Max tokens"), maxTokens),
      mcpSet,
    ),
  );
  const log = h("div", { class: "messages", role: "log", "aria-label": "Messages", tabindex: 0 });
  const input = h("textarea", { id: "chat-input", rows: 2, placeholder: "Message (Enter sends, Shift+Enter for a new line)" });
  const sendBtn = h("button", { type: "submit", class: "primary" }, "Send");
  const stopBtn = h("button", { type: "button", class: "danger", disabled: true, title: "Stop (Esc)" }, "Stop");
  const composer = h("form", { class: "composer" },
    h("label", { for: "chat-input", class: "sr-only" }, "Message"),
    input,
    h("div", { class: "composer-actions" }, sendBtn, stopBtn),
  );
  const confirmText = h("p", {});
  const confirm = h(
    "dialog",
    { class: "chat-confirm", "aria-labelledby": "chat-confirm-title" },
    h("form", { method: "dialog" },
      h("h2", { id: "chat-confirm-title" }, "Delete conversation?"),
      confirmText,
      h("div", { class: "actions" },
        h("button", { value: "cancel" }, "Cancel"),
        h("button", { value: "delete", class: "danger" }, "Delete"),
      ),
    ),
  );
  const chat = h(
    "div",
    { class: "chat" },
    side,
    h("section", { class: "chat-main", "aria-label": "Chat" },
      h("div", { class: "chat-bar" }, toggle, h("label", { for: "chat-model" }, "Model"), select, modelState),
      modelNote,
      options,
      log,
      composer,
    ),
    confirm,
  );
  root.append(chat);

  system.value = prefs.system || "";
  temp.value = prefs.temperature ?? "";
  maxTokens.value = prefs.maxTokens ?? "";
  const savePrefs = () =>
    localStorage.setItem(PREFS, JSON.stringify({ system: system.value, temperature: temp.value, maxTokens: maxTokens.value }));
  for (const el of [system, temp, maxTokens]) el.addEventListener("change", savePrefs);

  // -- models and MCP servers ------------------------------------------------------------------
  function drawModelState() {
    const m = state.models.find((x) => x.id === select.value);
    const status = m ? m.hearth.status : "none";
    modelState.textContent = status;
    modelState.className = `badge ${{ loaded: "ok", loading: "warn", available: "" }[status] ?? "bad"}`;
    modelNote.textContent = m?.hearth.error || "";
    modelNote.hidden = !m?.hearth.error;
  }

  async function loadModels(pick) {
    const list = await api("/v1/models");
    state.models = list.data;
    const current = pick || select.value;
    select.replaceChildren(
      ...state.models.map((m) => h("option", { value: m.id }, `${m.id} (${m.hearth.status})`)),
    );
    if (!state.models.length) select.append(h("option", { value: "" }, "No models: add one on the Models page"));
    const match = state.models.find((m) => m.id === current || m.hearth.aliases.includes(current));
    const usable = state.models.find((m) => !["invalid", "failed", "crashed"].includes(m.hearth.status));
    select.value = (match || usable || state.models[0])?.id ?? "";
    drawModelState();
  }

  async function defaultModel() {
    try {
      return (await api("/api/settings")).settings?.default_model || null;
    } catch {
      return null; // no settings API: the first model
    }
  }

  async function loadMcp() {
    let servers = [];
    try {
      servers = (await api("/v1/mcp/tools")).data;
    } catch {
      // MCP is optional: no servers shown
    }
    mcpBox.replaceChildren(
      ...servers.map((s, i) =>
        h("div", { class: "check" },
          h("input", { type: "checkbox", id: `chat-mcp-${i}`, value: s.name, disabled: s.status !== "running" }),
          h("label", { for: `chat-mcp-${i}` }, s.name, h("span", { class: "hint" }, ` ${s.status}, ${s.tools.length} tools`)),
        ),
      ),
    );
    mcpSet.hidden = !servers.length;
  }

  async function isLoaded(model, signal) {
    try {
      const ps = await api("/api/ps", { signal });
      return ps.models.some((m) => m.name === model || m.model === model);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      return true; // unknown: no loading notice
    }
  }

  // -- conversations -------------------------------------------------------------------------
  const phone = () => matchMedia("(max-width: 720px)").matches;
  function showSide(open) {
    side.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  }
  toggle.addEventListener("click", () => showSide(!side.classList.contains("open")));

  function sideMessage(text) {
    sideNote.textContent = text || "";
    sideNote.hidden = !text;
    sideNote.className = text ? "notice error" : "muted";
    sideNote.setAttribute("role", "alert");
  }

  function drawConvs() {
    convList.replaceChildren(...state.convs.map(convRow));
    if (!state.convs.length) convList.append(h("li", { class: "muted empty" }, "No conversations yet"));
  }

  function convRow(c) {
    const title = c.metadata?.title || "Untitled";
    const li = h("li", { "data-id": c.id });
    li.append(
      h("button", { type: "button", class: "conv-open", "aria-current": c.id === state.conv && "true", onclick: () => openConv(c.id) },
        h("span", { class: "conv-title" }, title),
        h("span", { class: "conv-when" }, when(c.created_at)),
      ),
      h("button", { type: "button", class: "icon", "aria-label": `Rename ${title}`, title: "Rename", onclick: () => rename(li, c) }, "✎"),
      h("button", { type: "button", class: "icon", "aria-label": `Delete ${title}`, title: "Delete", onclick: () => askDelete(c) }, "✕"),
    );
    return li;
  }

  function rename(li, c) {
    const field = h("input", { type: "text", maxlength: 512, value: c.metadata?.title || "", "aria-label": "New title", required: true });
    const form = h("form", { class: "conv-edit" },
      field,
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", onclick: drawConvs }, "Cancel"),
    );
    field.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        drawConvs();
      }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const title = field.value.trim();
      if (!title) return;
      try {
        const body = { metadata: { ...c.metadata, title } };
        const updated = await api(`/v1/conversations/${encodeURIComponent(c.id)}`, { method: "POST", body });
        c.metadata = updated.metadata;
        sideMessage("");
      } catch (err) {
        sideMessage(`Rename failed: ${err.message}`);
      }
      drawConvs();
    });
    li.replaceChildren(form);
    field.focus();
    field.select();
  }

  let deleting = null;
  function askDelete(c) {
    deleting = c;
    confirmText.textContent = `“${c.metadata?.title || "Untitled"}” and its messages will be deleted.`;
    confirm.returnValue = "";
    confirm.showModal();
  }
  confirm.addEventListener("close", async () => {
    const c = deleting;
    deleting = null;
    if (!c || confirm.returnValue !== "delete") return;
    try {
      await api(`/v1/conversations/${encodeURIComponent(c.id)}`, { method: "DELETE" });
      sideMessage("");
    } catch (err) {
      if (err.status !== 404) return sideMessage(`Delete failed: ${err.message}`);
    }
    state.convs = state.convs.filter((x) => x.id !== c.id);
    if (state.conv === c.id) newChat();
    else drawConvs();
  });

  async function loadConvs() {
    try {
      state.convs = (await api("/v1/conversations?limit=50")).data;
      sideMessage("");
    } catch (err) {
      sideMessage(`Conversations: ${err.message}`);
    }
    drawConvs();
  }

  function placeholder() {
    log.replaceChildren(h("p", { class: "muted empty" }, "Send a message to start a conversation."));
  }

  function newChat() {
    stop();
    state.conv = null;
    history.replaceState(null, "", "#/chat");
    placeholder();
    drawConvs();
    if (phone()) showSide(false);
    input.focus();
  }

  async function openConv(id) {
    stop();
    state.conv = id;
    history.replaceState(null, "", `#/chat/${encodeURIComponent(id)}`);
    drawConvs();
    if (phone()) showSide(false);
    log.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    const items = [];
    try {
      let after = "";
      do {
        const page = await api(`/v1/conversations/${encodeURIComponent(id)}/items?order=asc&limit=100${after}`);
        items.push(...page.data);
        after = page.has_more ? `&after=${encodeURIComponent(page.last_id)}` : "";
      } while (after && items.length < 5000);
    } catch (err) {
      const message = `Could not open the conversation: ${err.message}`;
      if (state.conv === id) log.replaceChildren(h("p", { class: "msg-error", role: "alert" }, message));
      return;
    }
    if (state.conv !== id) return; // another was opened meanwhile
    log.replaceChildren();
    let turn = null;
    for (const item of items) {
      if (item.type === "message" && item.role !== "assistant") {
        log.append(userMessage(textOf(item), item.role));
        turn = null;
        continue;
      }
      if (!turn) {
        turn = new Turn();
        log.append(turn.el);
      }
      turn.item(item.id, item);
    }
    if (!items.length) placeholder();
    log.scrollTop = log.scrollHeight;
  }

  // -- sending ---------------------------------------------------------------------------------
  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 120;

  function setBusy(busy) {
    sendBtn.disabled = busy;
    stopBtn.disabled = !busy;
    chat.classList.toggle("busy", busy);
  }

  function stop() {
    state.busy?.abort();
  }

  function request(model, text) {
    const body = { model, conversation: state.conv, input: text, stream: true };
    if (system.value.trim()) body.instructions = system.value;
    if (temp.value !== "") body.temperature = Number(temp.value);
    if (maxTokens.value !== "") body.max_output_tokens = parseInt(maxTokens.value, 10);
    const labels = [...mcpBox.querySelectorAll("input:checked")].map((el) => el.value);
    // The UI has no approval flow: the servers a person picks here run without asking. An
    // empty list (not an absent one) keeps auto-injected servers out too.
    body.tools = labels.map((label) => ({ type: "mcp", server_label: label, require_approval: "never" }));
    return body;
  }

  async function send() {
    const text = input.value.trim();
    const model = select.value;
    if (!text || state.busy || !model) return;
    const started = performance.now();
    const ctrl = new AbortController();
    state.busy = ctrl;
    setBusy(true);
    input.value = "";
    log.querySelector(".empty")?.remove();
    const turn = new Turn();
    log.append(userMessage(text), turn.el);
    log.scrollTop = log.scrollHeight;
    turn.setStatus("Waiting…");
    let first = null;
    let usage = null;
    try {
      if (!state.conv) {
        const body = { metadata: { title: text.slice(0, TITLE_CHARS) } };
        const conv = await api("/v1/conversations", { method: "POST", body, signal: ctrl.signal });
        state.conv = conv.id;
        state.convs.unshift(conv);
        history.replaceState(null, "", `#/chat/${encodeURIComponent(conv.id)}`);
        drawConvs();
      }
      if (!(await isLoaded(model, ctrl.signal))) turn.setStatus("Loading model…");
      for await (const { event, data } of sse("/v1/responses", request(model, text), ctrl.signal)) {
        const stick = nearBottom();
        const type = data.type || event;
        if (type !== "response.created" && type !== "response.in_progress") turn.setStatus("");
        if (type === "response.output_text.delta" || type === "response.reasoning_text.delta") {
          first ??= performance.now();
          turn.append(data.output_index, type === "response.output_text.delta" ? "message" : "reasoning", data.delta);
        } else if (type === "response.function_call_arguments.delta" || type === "response.mcp_call_arguments.delta") {
          turn.append(data.output_index, "function_call", data.delta);
        } else if (type === "response.output_item.added") {
          turn.part(data.output_index, data.item);
        } else if (type === "response.output_item.done") {
          turn.item(data.output_index, data.item);
        } else if (type === "response.completed" || type === "response.incomplete") {
          usage = data.response.usage;
          if (type === "response.incomplete") turn.note("Stopped at the max tokens limit.");
        } else if (type === "response.failed") {
          const r = data.response;
          if (r.status === "cancelled") turn.note("Cancelled.");
          else turn.fail(r.error?.message || "The response failed.");
        } else if (type === "error") {
          turn.fail(data.message || "The stream failed.");
        }
        if (stick) log.scrollTop = log.scrollHeight;
      }
    } catch (err) {
      if (err.name === "AbortError") turn.note("Stopped.");
      else turn.fail(err.message || String(err));
    } finally {
      const end = performance.now();
      turn.flush();
      turn.setStatus("");
      turn.showStats(first && first - started, usage?.output_tokens, first && (end - first) / 1000);
      state.busy = null;
      setBusy(false);
      // Most recently used first, as the server lists them.
      const i = state.convs.findIndex((c) => c.id === state.conv);
      if (i > 0) state.convs.unshift(...state.convs.splice(i, 1));
      drawConvs();
      loadModels().catch(() => {}); // its loaded state has likely changed
      input.focus();
    }
  }

  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  stopBtn.addEventListener("click", stop);
  select.addEventListener("change", drawModelState);
  const onKey = (e) => {
    if (e.key === "Escape" && state.busy && !confirm.open && !e.defaultPrevented) stop();
  };
  document.addEventListener("keydown", onKey);

  // -- start -----------------------------------------------------------------------------------
  placeholder();
  const fromHash = decodeURIComponent(location.hash.split("/")[2] || "");
  await Promise.all([
    defaultModel().then((id) => loadModels(id)).catch((err) => {
      modelNote.textContent = `Models: ${err.message}`;
      modelNote.hidden = false;
    }),
    loadMcp(),
    loadConvs(),
  ]);
  if (fromHash) openConv(fromHash);
  input.focus();

  return () => {
    stop();
    document.removeEventListener("keydown", onKey);
  };
}
