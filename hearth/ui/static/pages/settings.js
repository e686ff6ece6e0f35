// Settings: a form built from GET /api/settings' `fields`, so a new setting shows up without a
// change here. Save sends only what changed (PATCH); a refused value shows next to its field.
import { api } from "../api.js";
import { h, notice } from "../dom.js";

const APPLIES = {
  next_load: ["applies when a model next loads", ""],
  restart: ["takes effect after a restart", "warn"],
};

const id = (name) => `set-${name}`;

// What a control holds, as the API wants it: null for an empty nullable field, numbers as
// numbers (a typo is sent as typed, so the server's message names it).
function read(field, el, original) {
  const raw = el.value.trim();
  switch (field.type) {
    case "integer":
    case "number":
      if (raw === "") return field.nullable ? null : raw;
      return Number.isFinite(Number(raw)) ? Number(raw) : raw;
    case "list":
      return raw
        .split(/[\n,]/)
        .map((s) => s.trim())
        .filter(Boolean);
    case "model":
      return raw || null;
    default:
      if (raw === "" && field.nullable) return null;
      // A setting held as a number (keep_alive: 300) stays a number when typed as one.
      if (typeof original === "number" && raw !== "" && Number.isFinite(Number(raw)))
        return Number(raw);
      return raw;
  }
}

function shown(value) {
  if (value === null || value === undefined) return "";
  return Array.isArray(value) ? value.join("\n") : String(value);
}

export function mount(root) {
  const controller = new AbortController();
  let state = null; // the last GET/PATCH answer
  let models = [];
  const removeKeys = new Set(); // key names ticked for removal

  const top = h("p", { hidden: true });
  const pending = h("p", { hidden: true, id: "restart-pending" });
  const where = h("p", { class: "hint" });
  const fieldsBox = h("div", { class: "settings-fields" });
  const save = h("button", { type: "submit", class: "primary", id: "settings-save" }, "Save");
  const form = h(
    "form",
    { class: "card settings", novalidate: true, onsubmit: (e) => (e.preventDefault(), submit()) },
    fieldsBox,
    h(
      "div",
      { class: "row save-row" },
      save,
      h("button", { type: "button", onclick: () => load() }, "Discard changes"),
    ),
  );
  root.append(h("h1", {}, "Settings"), where, top, pending, form);

  function controlFor(name, field, value) {
    const common = { id: id(name), name, "aria-describedby": `${id(name)}-help ${id(name)}-error` };
    switch (field.type) {
      case "integer":
      case "number":
        return h("input", {
          ...common,
          type: "number",
          step: field.type === "integer" ? 1 : "any",
          value: shown(value),
          placeholder: field.nullable ? "auto" : null,
        });
      case "list":
        return h("textarea", { ...common, rows: 3, placeholder: "one a line" }, shown(value));
      case "model": {
        const ids = models.includes(value) || value == null ? models : [value, ...models];
        return h(
          "select",
          common,
          field.nullable ? h("option", { value: "", selected: value == null }, "(none)") : null,
          ids.map((m) => h("option", { value: m, selected: m === value }, m)),
        );
      }
      case "keys":
        return keysControl(name, value || []);
      default:
        return h("input", { ...common, type: "text", value: shown(value), autocomplete: "off" });
    }
  }

  // API keys: the server shows names and hints, never secrets; remove by name, add by secret.
  function keysControl(name, keys) {
    const list = h(
      "ul",
      { class: "keys" },
      keys.map((k, i) => {
        const box = h("input", {
          type: "checkbox",
          id: `${id(name)}-remove-${i}`,
          checked: removeKeys.has(k.name),
          onchange: (e) => (e.target.checked ? removeKeys.add(k.name) : removeKeys.delete(k.name)),
        });
        // Keys from flags or the environment would be back on restart: not removable here.
        const remove =
          k.removable === false
            ? h("span", { class: "hint" }, "set by a flag or the environment")
            : h("label", { for: box.id }, box, ` Remove ${k.name}`);
        return h("li", {}, h("span", { class: "mono" }, `${k.name} (${k.hint})`), " ", remove);
      }),
    );
    const secret = h("input", {
      id: id(name),
      type: "password",
      autocomplete: "new-password",
      placeholder: "a new secret",
      "aria-describedby": `${id(name)}-help ${id(name)}-error`,
    });
    return h(
      "div",
      { class: "keys-control" },
      keys.length ? list : h("p", { class: "hint" }, "No keys: the API is open to this machine."),
      h("label", { for: id(name), class: "sub" }, "Add a key"),
      secret,
    );
  }

  function render() {
    where.textContent = `Saved to ${state.config_file}`;
    const waiting = state.restart_pending || [];
    const label = (n) => state.fields[n]?.label || n;
    notice(
      pending,
      waiting.length ? `Saved, waiting for a restart: ${waiting.map(label).join(", ")}.` : "",
    );
    if (waiting.length) pending.className = "notice warn";
    fieldsBox.replaceChildren(
      ...Object.entries(state.fields).map(([name, field]) => {
        const [applies, kind] = APPLIES[field.applies] || [field.applies, ""];
        const labelFor = field.type === "keys" ? `${id(name)}-legend` : null;
        return h(
          "div",
          { class: "field setting", "data-setting": name },
          h(
            "div",
            { class: "setting-head" },
            labelFor
              ? h("span", { class: "label", id: labelFor }, field.label)
              : h("label", { for: id(name) }, field.label),
            // Most apply at once: only the exceptions get a badge.
            field.applies === "now"
              ? null
              : h("span", { class: `badge ${kind}`, "data-applies": field.applies }, applies),
            waiting.includes(name)
              ? h("span", { class: "badge bad pending" }, "restart pending")
              : null,
          ),
          controlFor(name, field, state.settings[name]),
          h("p", { class: "hint", id: `${id(name)}-help` }, field.help),
          h("p", {
            class: "error field-error",
            id: `${id(name)}-error`,
            role: "alert",
            hidden: true,
          }),
        );
      }),
    );
  }

  async function load() {
    removeKeys.clear();
    try {
      const [s, m] = await Promise.all([
        api("/api/settings", { signal: controller.signal }),
        api("/v1/models", { signal: controller.signal }).catch(() => ({ data: [] })),
      ]);
      state = s;
      models = m.data.map((x) => x.id);
      notice(top, "");
      render();
    } catch (e) {
      if (e.name !== "AbortError") notice(top, `Could not read the settings: ${e.message}`, true);
    }
  }

  function changes() {
    const out = {};
    for (const [name, field] of Object.entries(state.fields)) {
      const el = document.getElementById(id(name));
      if (!el) continue;
      if (field.type === "keys") {
        const add = el.value.trim() ? [el.value.trim()] : [];
        if (add.length || removeKeys.size) out[name] = { add, remove: [...removeKeys] };
        continue;
      }
      const value = read(field, el, state.settings[name]);
      if (JSON.stringify(value) !== JSON.stringify(state.settings[name] ?? null)) out[name] = value;
    }
    return out;
  }

  function clearErrors() {
    for (const el of root.querySelectorAll(".field-error")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of root.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  async function submit() {
    clearErrors();
    const body = changes();
    if (!Object.keys(body).length) return notice(top, "Nothing changed.");
    save.disabled = true;
    try {
      state = await api("/api/settings", { method: "PATCH", body, signal: controller.signal });
      removeKeys.clear();
      render();
      const later = Object.keys(body).filter((n) => (state.restart_pending || []).includes(n));
      notice(top, later.length ? "Saved. Some changes take effect after a restart." : "Saved.");
    } catch (e) {
      if (e.name === "AbortError") return;
      // The error names its field as `param` (maybe "api_keys.add"): show it there.
      const err = e.body?.error;
      const param = String((typeof err === "object" && err?.param) || e.body?.param || "").split(
        /[.[]/,
      )[0];
      const slot = param && document.getElementById(`${id(param)}-error`);
      if (slot) {
        slot.textContent = e.message;
        slot.hidden = false;
        const input = document.getElementById(id(param));
        input?.setAttribute("aria-invalid", "true");
        input?.focus();
        notice(top, `Not saved: ${state.fields[param]?.label || param} needs a change.`, true);
      } else notice(top, `Not saved: ${e.message}`, true);
    } finally {
      save.disabled = false;
    }
  }

  load();
  return () => controller.abort();
}
