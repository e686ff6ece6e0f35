// Models: every model in the registry with its metadata; load, unload, delete; pull with
// live progress. Everything goes through the public API (/v1/models, /api/load...).
import { api, ndjson } from "../api.js";
import { bytes, duration, h, notice } from "../dom.js";

const BADGE = { loaded: "ok", loading: "warn", invalid: "bad", crashed: "bad", failed: "bad" };
const POLL_MS = 4000;

// 134515008 -> "135M": parameter counts the way model names write them.
function count(n) {
  if (!n) return "–";
  for (const [unit, size] of [
    ["T", 1e12],
    ["B", 1e9],
    ["M", 1e6],
    ["K", 1e3],
  ]) {
    if (n >= size) return `${(n / size).toFixed(n < size * 10 ? 1 : 0)}${unit}`;
  }
  return String(n);
}

function facts(m) {
  const d = m.hearth;
  const rows = [
    ["Size", bytes(d.size_bytes) + (d.files > 1 ? ` in ${d.files} files` : "")],
    ["Quantization", d.quantization || "–"],
    [
      "Context",
      `${m.context_window}` +
        (d.context_length_trained ? ` (trained ${d.context_length_trained})` : ""),
    ],
    ["Architecture", d.architecture || "–"],
    ["Parameters", count(d.parameters)],
    ["File", d.file],
  ];
  if (d.backend === "openai" && d.upstream)
    rows.push(["Upstream", d.upstream.base_urls.map((u) => u.url).join(", ")]);
  if (d.aliases.length) rows.push(["Aliases", d.aliases.join(", ")]);
  if (d.projector) rows.push(["Projector", d.projector]);
  if (d.status === "loaded") {
    rows.push(["Memory", bytes(d.memory_bytes)], ["Active requests", String(d.active_requests)]);
    if (d.expires_at) rows.push(["Unloads in", duration(d.expires_at - Date.now() / 1000)]);
  }
  return h(
    "dl",
    { class: "facts" },
    rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

export function mount(root) {
  const controller = new AbortController(); // ends a running pull when the page goes
  let pull = null; // the running pull's AbortController
  let busy = 0; // actions in flight: no re-render under the user's hands
  let shown = "";

  const list = h("div", { class: "grid models", "aria-live": "polite" });
  const status = h("p", { hidden: true });
  const confirm = deleteDialog();

  const name = h("input", {
    id: "pull-name",
    name: "model",
    required: true,
    autocomplete: "off",
    placeholder: "owner/repo:Q4_K_M, owner/repo/file.gguf or https://…",
  });
  const bar = h("progress", { id: "pull-bar", max: 1, "aria-label": "Pull progress" });
  const barText = h("span", { class: "pull-text", id: "pull-text" });
  const cancel = h(
    "button",
    { type: "button", id: "pull-cancel", onclick: () => pull?.abort() },
    "Cancel",
  );
  const progress = h("div", { class: "pull-progress", hidden: true }, bar, barText, cancel);
  const pullNote = h("p", { hidden: true });
  const pullButton = h("button", { type: "submit", class: "primary" }, "Pull");
  const form = h(
    "form",
    { class: "pull-form", onsubmit: (e) => (e.preventDefault(), startPull()) },
    h("label", { for: "pull-name" }, "Name or URL"),
    h("div", { class: "row" }, name, pullButton),
  );

  root.append(
    h("h1", {}, "Models"),
    h(
      "section",
      { class: "card pull", "aria-labelledby": "pull-title" },
      h("h2", { id: "pull-title" }, "Pull a model"),
      form,
      progress,
      pullNote,
    ),
    status,
    list,
    confirm.dialog,
  );

  async function refresh(force = false) {
    let models;
    try {
      models = (await api("/v1/models", { signal: controller.signal })).data;
    } catch (e) {
      if (e.name !== "AbortError") notice(status, `Could not list the models: ${e.message}`, true);
      return;
    }
    const json = JSON.stringify(models);
    if (!force && (json === shown || busy)) return;
    shown = json;
    // Keep keyboard focus on the same control across a re-render.
    const focused = document.activeElement?.dataset?.key;
    list.replaceChildren(
      ...(models.length
        ? models.map(card)
        : [h("p", { class: "muted" }, "No models yet: pull one above.")]),
    );
    if (focused) list.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  }

  function card(m) {
    const d = m.hearth;
    const loaded = d.status === "loaded" || d.status === "loading";
    const action = loaded ? "unload" : "load";
    return h(
      "article",
      { class: "card model", "data-model": m.id, "aria-labelledby": `model-${m.id}` },
      h(
        "div",
        { class: "model-head" },
        h("h2", { id: `model-${m.id}` }, m.id),
        h("span", { class: `badge status ${BADGE[d.status] || ""}` }, d.status),
      ),
      facts(m),
      d.error ? h("p", { class: "error reason" }, d.error) : null,
      h(
        "div",
        { class: "row actions" },
        h(
          "button",
          {
            type: "button",
            "data-key": `${action}:${m.id}`,
            "data-action": action,
            disabled: d.status === "invalid",
            onclick: (e) => act(e.target, action, m),
          },
          loaded ? "Unload" : "Load",
        ),
        h(
          "button",
          {
            type: "button",
            class: "danger",
            "data-key": `delete:${m.id}`,
            "data-action": "delete",
            onclick: (e) => remove(e.target, m),
          },
          "Delete",
        ),
      ),
    );
  }

  async function act(button, action, m) {
    busy++;
    button.disabled = true;
    button.textContent = action === "load" ? "Loading…" : "Unloading…";
    const badge = button.closest(".model").querySelector(".badge");
    if (action === "load") {
      badge.textContent = "loading";
      badge.className = "badge status warn";
    }
    try {
      const out = await api(`/api/${action}`, { method: "POST", body: { model: m.id } });
      notice(
        status,
        action === "load"
          ? `Loaded ${m.id}.`
          : out.status === "unloading"
            ? `${m.id} unloads when its requests end.`
            : `Unloaded ${m.id}.`,
      );
    } catch (e) {
      notice(status, `Could not ${action} ${m.id}: ${e.message}`, true);
    } finally {
      busy--;
      await refresh(true);
      // Load became Unload (or back): keep the keyboard on that model's button.
      const sel = `article[data-model="${CSS.escape(m.id)}"] button[data-action]`;
      if (!document.activeElement || document.activeElement === document.body) {
        list.querySelector(sel)?.focus();
      }
    }
  }

  async function remove(button, m) {
    if (!(await confirm.ask(m))) return;
    busy++;
    button.disabled = true;
    try {
      const out = await api("/api/delete", { method: "DELETE", body: { model: m.id } });
      notice(status, `Deleted ${m.id} (${out.files.join(", ")}).`);
    } catch (e) {
      notice(status, `Could not delete ${m.id}: ${e.message}`, true);
    } finally {
      busy--;
      await refresh(true);
      if (document.activeElement === document.body) root.focus(); // its card is gone
    }
  }

  async function startPull() {
    const model = name.value.trim();
    if (!model || pull) return;
    pull = new AbortController();
    controller.signal.addEventListener("abort", () => pull?.abort(), { once: true });
    pullButton.disabled = true;
    progress.hidden = false;
    notice(pullNote, "");
    bar.removeAttribute("value"); // indeterminate until the first byte counts arrive
    barText.textContent = "starting…";
    try {
      let done = null;
      for await (const line of ndjson("/api/pull", { model, stream: true }, pull.signal)) {
        if (line.error) throw new Error(line.error);
        if (line.total) {
          bar.max = line.total;
          bar.value = line.completed || 0;
          const pct = Math.floor((100 * (line.completed || 0)) / line.total);
          barText.textContent = `${line.status} · ${bytes(line.completed || 0)} of ${bytes(line.total)} (${pct}%)`;
        } else barText.textContent = line.status;
        if (line.status === "success") done = line.model || model;
      }
      notice(pullNote, done ? `Pulled ${done}.` : "The pull ended without finishing.", !done);
    } catch (e) {
      const cancelled = e.name === "AbortError";
      if (!controller.signal.aborted)
        notice(pullNote, cancelled ? "Pull cancelled." : `Pull failed: ${e.message}`, !cancelled);
    } finally {
      pull = null;
      pullButton.disabled = false;
      progress.hidden = true;
      if (!controller.signal.aborted) refresh(true);
    }
  }

  // Poll /api/ps, which the request log leaves out, and re-read the list only when what is
  // loaded changed (a keep-alive ran out, another client loaded one): the log stays clean.
  let loadedKey = null;
  async function watch() {
    try {
      const ps = await api("/api/ps", { signal: controller.signal });
      const key = JSON.stringify(ps.models.map((m) => [m.model, m.expires_at]));
      if (loadedKey !== null && key !== loadedKey) await refresh();
      loadedKey = key;
    } catch {
      // the next tick tries again; an error shows when the list itself fails
    }
  }
  refresh(true);
  watch();
  const timer = setInterval(watch, POLL_MS);
  return () => {
    clearInterval(timer);
    controller.abort();
  };
}

// One confirmation dialog for the page; ask(model) resolves true when Delete is chosen.
function deleteDialog() {
  const text = h("p", {});
  const dialog = h(
    "dialog",
    { id: "delete-dialog", "aria-labelledby": "delete-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "delete-title" }, "Delete this model?"),
      text,
      h(
        "div",
        { class: "actions" },
        h("button", { value: "cancel", autofocus: true }, "Cancel"),
        h("button", { value: "delete", class: "danger", id: "delete-confirm" }, "Delete"),
      ),
    ),
  );
  return {
    dialog,
    ask(m) {
      text.textContent = `${m.id}: ${m.hearth.file} (${bytes(m.hearth.size_bytes)}) is removed from the models directory. This cannot be undone.`;
      dialog.returnValue = "";
      dialog.showModal();
      return new Promise((resolve) =>
        dialog.addEventListener("close", () => resolve(dialog.returnValue === "delete"), {
          once: true,
        }),
      );
    },
  };
}
