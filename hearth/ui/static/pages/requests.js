// Requests: the request log (GET /api/requests), newest first, filtered by model, status and
// route, failures marked, paged by `next_before`; a row opens a dialog with all its fields.
import { api } from "../api.js";
import { h, notice } from "../dom.js";

const PAGE = 50;
const ROUTES = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/messages",
  "/v1/embeddings",
  "/api/chat",
  "/api/generate",
  "/api/pull",
];

function ms(v) {
  return v === null || v === undefined ? "–" : `${Math.round(v)} ms`;
}

function tokens(r) {
  if (r.prompt_tokens == null && r.completion_tokens == null) return "–";
  return `${r.prompt_tokens ?? 0} → ${r.completion_tokens ?? 0}`;
}

function statusBadge(status) {
  const kind = status >= 500 ? "bad" : status >= 400 ? "warn" : "ok";
  return h("span", { class: `badge ${kind}` }, String(status));
}

function control(id, label, input) {
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

export function mount(root) {
  const controller = new AbortController();
  const pages = []; // the `before` of each page shown so far; the last is the current one
  let next = null;

  const model = h("input", {
    id: "filter-model",
    name: "model",
    list: "filter-models",
    autocomplete: "off",
  });
  const status = h("input", {
    id: "filter-status",
    name: "status",
    type: "number",
    min: 100,
    max: 599,
    inputmode: "numeric",
  });
  const route = h("input", {
    id: "filter-route",
    name: "route",
    list: "filter-routes",
    autocomplete: "off",
  });
  const failures = h("input", { id: "filter-errors", name: "errors", type: "checkbox" });
  const modelList = h("datalist", { id: "filter-models" });
  const filters = h(
    "form",
    { class: "filters", onsubmit: (e) => (e.preventDefault(), load()) },
    control("filter-model", "Model", model),
    control("filter-status", "Status", status),
    control("filter-route", "Route", route),
    h(
      "div",
      { class: "field check" },
      h("label", { for: "filter-errors" }, failures, " Failures only"),
    ),
    h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Apply")),
    modelList,
    h(
      "datalist",
      { id: "filter-routes" },
      ROUTES.map((r) => h("option", { value: r })),
    ),
  );
  failures.addEventListener("change", () => load());

  const body = h("tbody");
  const table = h(
    "table",
    { class: "requests" },
    h("caption", { class: "sr-only" }, "Request log, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Time", "API", "Route", "Model", "Status", "Tokens", "TTFT", "Latency", "Client"].map(
          (c) => h("th", { scope: "col" }, c),
        ),
      ),
    ),
    body,
  );
  const info = h("p", { hidden: true });
  const newer = h(
    "button",
    { type: "button", id: "page-newer", onclick: () => (pages.pop(), load(pages.pop() ?? null)) },
    "Newer",
  );
  const older = h(
    "button",
    { type: "button", id: "page-older", onclick: () => load(next) },
    "Older",
  );
  const refresh = h(
    "button",
    { type: "button", onclick: () => load(pages.at(-1) ?? null) },
    "Refresh",
  );
  const detail = detailDialog();

  root.append(
    h("h1", {}, "Requests"),
    filters,
    info,
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "row pager" }, newer, older, refresh),
    detail.dialog,
  );

  async function load(before = null) {
    const q = new URLSearchParams({ limit: PAGE });
    if (model.value.trim()) q.set("model", model.value.trim());
    if (status.value) q.set("status", status.value);
    if (route.value.trim()) q.set("route", route.value.trim());
    if (failures.checked) q.set("errors", "true");
    if (before) q.set("before", before);
    let page;
    try {
      page = await api(`/api/requests?${q}`, { signal: controller.signal });
    } catch (e) {
      if (e.name !== "AbortError")
        notice(info, `Could not read the request log: ${e.message}`, true);
      return;
    }
    if (before === null) pages.length = 0;
    pages.push(before);
    next = page.next_before;
    notice(info, page.data.length ? "" : "No requests match.");
    body.replaceChildren(...page.data.map(row));
    newer.disabled = pages.length < 2;
    older.disabled = !next;
  }

  function row(r) {
    const open = () => detail.show(r);
    const time = new Date(r.time * 1000);
    return h(
      "tr",
      {
        class: r.status >= 400 ? "failed" : null,
        "data-seq": r.seq,
        "data-status": r.status,
        onclick: open,
      },
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link",
            "aria-label": `Details of request ${r.request_id}`,
            onclick: (e) => (e.stopPropagation(), open()),
          },
          time.toLocaleTimeString(),
        ),
        h("div", { class: "hint" }, time.toLocaleDateString()),
      ),
      h("td", {}, r.api || "–"),
      h(
        "td",
        { class: "mono" },
        `${r.method} ${!r.route || r.route === "unmatched" ? r.path : r.route}`,
      ),
      h("td", {}, r.model || "–"),
      h(
        "td",
        {},
        statusBadge(r.status),
        r.error_code ? h("div", { class: "hint" }, r.error_code) : null,
      ),
      h("td", {}, tokens(r)),
      h("td", {}, ms(r.ttft_ms)),
      h("td", {}, ms(r.latency_ms)),
      h(
        "td",
        {},
        r.client || "–",
        r.api_key_name ? h("div", { class: "hint" }, `key ${r.api_key_name}`) : null,
      ),
    );
  }

  // Model names for the filter's suggestions; the log may name models since removed.
  api("/v1/models", { signal: controller.signal })
    .then((m) => modelList.replaceChildren(...m.data.map((x) => h("option", { value: x.id }))))
    .catch(() => {});
  load();
  return () => controller.abort();
}

// Every field of one row; the bodies (when body logging is on) as text, never as HTML.
function detailDialog() {
  const content = h("div", { class: "detail-body" });
  const dialog = h(
    "dialog",
    { id: "request-detail", class: "wide", "aria-labelledby": "detail-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "detail-title" }, "Request"),
      content,
      h("div", { class: "actions" }, h("button", { class: "primary", autofocus: true }, "Close")),
    ),
  );
  function text(v) {
    if (typeof v !== "string") return JSON.stringify(v, null, 2);
    try {
      return JSON.stringify(JSON.parse(v), null, 2); // pretty when it is JSON
    } catch {
      return v;
    }
  }
  return {
    dialog,
    show(r) {
      const fields = Object.entries(r).filter(([k]) => k !== "request_body" && k !== "output");
      const value = (k, v) =>
        k === "time"
          ? `${new Date(v * 1000).toLocaleString()} (${v})`
          : v === null
            ? "–"
            : String(v);
      const bodies = ["request_body", "output"].filter((k) => r[k] != null);
      content.replaceChildren(
        h(
          "dl",
          { class: "facts" },
          fields.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, value(k, v))]),
        ),
        ...bodies.flatMap((k) => [
          h("h3", {}, k === "output" ? "Output" : "Request body"),
          h("pre", { class: "body", "data-field": k }, text(r[k])),
        ]),
        ...(bodies.length
          ? []
          : [h("p", { class: "hint" }, "Bodies are not logged (body logging is off).")]),
      );
      dialog.showModal();
    },
  };
}
