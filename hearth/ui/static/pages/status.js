// Status: the server, its loaded models (memory, keep-alive, sequences, queue) and charts of
// the last hour, polled every few seconds from /status, /api/ps and /api/stats.
import { api } from "../api.js";
import { chart } from "../chart.js";
import { bytes, duration, h, notice } from "../dom.js";

const POLL_MS = 5000;

function dl(rows) {
  return h(
    "dl",
    { class: "facts" },
    rows.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

// A live countdown: the ticker rewrites every [data-until] once a second.
function until(unix, prefix = "") {
  return h(
    "span",
    { "data-until": unix, "data-prefix": prefix },
    prefix + duration(unix - Date.now() / 1000),
  );
}

function slotsView(slots) {
  return h(
    "span",
    { class: "slots" },
    slots.map((s) =>
      h(
        "span",
        { class: `slot ${s.state}`, title: `sequence ${s.id}: ${s.state}` },
        s.state === "idle" ? "·" : s.state === "prompt" ? "P" : "G",
      ),
    ),
  );
}

function modelCard(m, ps) {
  const busy = m.slots.filter((s) => s.state !== "idle").length;
  let timer = "kept loaded";
  if (ps?.expires_at) timer = until(Date.parse(ps.expires_at) / 1000);
  else if (ps && ps.active_requests) timer = "in use";
  return h(
    "article",
    { class: "card model", "data-model": m.id, "aria-labelledby": `st-${m.id}` },
    h(
      "div",
      { class: "model-head" },
      h("h3", { id: `st-${m.id}` }, m.id),
      h("span", { class: `badge state ${busy ? "warn" : "ok"}` }, busy ? "busy" : "idle"),
    ),
    dl([
      ["Memory", bytes(ps?.size)],
      ["Keep-alive", ps?.keep_alive ?? "–"],
      ["Unloads in", timer],
      ["Active", `${busy} of ${m.parallel} sequences`],
      ["Queued", String(m.queued)],
      ["Sequences", slotsView(m.slots)],
      ["Engine", m.backend === "openai" ? "upstream" : `pid ${m.pid}, ${m.threads} threads`],
      ["Context", String(m.context_window)],
      ["Served", `${m.requests_served} requests`],
      m.upstreams && [
        "Upstreams",
        m.upstreams.map((u) => `${u.url} ${u.up === false ? "(down)" : ""}`).join(", "),
      ],
    ]),
  );
}

function charts(stats) {
  const s = stats.series;
  const total = s.reduce((a, b) => a + b.requests, 0);
  const errors = s.reduce((a, b) => a + b.errors, 0);
  const figure = (id, title, points, opts) =>
    h(
      "figure",
      { class: "card chart-card", id },
      h("figcaption", {}, title),
      chart(points, { title, ...opts }),
    );
  return [
    figure(
      "chart-tps",
      "Tokens per second",
      s.map((b) => ({ x: b.time, y: b.tokens_per_second })),
      { unit: "tok/s" },
    ),
    figure(
      "chart-rpm",
      `Requests per minute (${total} in the hour, ${errors} failed)`,
      s.map((b) => ({ x: b.time, y: b.requests })),
      { kind: "bar", unit: "requests" },
    ),
    figure(
      "chart-ttft",
      "Time to first token (median)",
      s.map((b) => ({ x: b.time, y: b.ttft_ms })),
      { unit: "ms" },
    ),
  ];
}

export function mount(root) {
  const controller = new AbortController();
  const server = h("section", { class: "card server", "aria-labelledby": "server-title" });
  const models = h("div", { class: "grid", id: "loaded-models" });
  const crashed = h("div", { id: "crashed" });
  const chartBox = h("div", { class: "grid charts", id: "charts" });
  const problem = h("p", { hidden: true });
  const chartNote = h("p", { hidden: true });
  root.append(
    h("h1", {}, "Status"),
    problem,
    server,
    h("h2", {}, "Last hour"),
    chartNote,
    chartBox,
    h("h2", {}, "Loaded models"),
    models,
    crashed,
  );

  async function refresh() {
    const opts = { signal: controller.signal };
    const [st, ps, stats] = await Promise.allSettled([
      api("/status", opts),
      api("/api/ps", opts),
      api("/api/stats?minutes=60", opts),
    ]);
    if (controller.signal.aborted) return;
    if (st.status === "rejected") {
      notice(problem, `Could not read the status: ${st.reason.message}`, true);
      return;
    }
    notice(problem, "");
    const s = st.value;
    const started = Date.now() / 1000 - s.uptime_seconds;
    const tiles = [
      ["Version", s.version],
      ["Uptime", h("span", { "data-since": started }, duration(s.uptime_seconds))],
      ["Address", s.host ? `${s.host}:${s.port}` : location.host],
      ["Process", `pid ${s.pid}`],
      ["Engines", s.engine_isolation === "process" ? "child processes" : "in process"],
      ["Loaded", `${s.models.length} model${s.models.length === 1 ? "" : "s"}`],
    ];
    server.replaceChildren(
      h("h2", { id: "server-title", class: "sr-only" }, "Server"),
      h(
        "dl",
        { class: "tiles" },
        tiles.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
      ),
    );
    const byName = new Map(
      (ps.status === "fulfilled" ? ps.value.models : []).map((p) => [p.model, p]),
    );
    models.replaceChildren(
      ...(s.models.length
        ? s.models.map((m) => modelCard(m, byName.get(m.id)))
        : [h("p", { class: "muted" }, "No model is loaded.")]),
    );
    crashed.replaceChildren(
      ...s.crashed.map((c) =>
        h("p", { class: "notice error", "data-model": c.id }, `${c.id} ${c.status}: ${c.reason}`),
      ),
    );
    if (stats.status === "fulfilled") {
      notice(chartNote, "");
      chartBox.replaceChildren(...charts(stats.value));
    } else notice(chartNote, `Charts unavailable: ${stats.reason.message}`, true);
  }

  // Countdowns and the uptime move every second between polls.
  function tick() {
    const now = Date.now() / 1000;
    for (const el of root.querySelectorAll("[data-until]"))
      el.textContent = el.dataset.prefix + duration(el.dataset.until - now);
    for (const el of root.querySelectorAll("[data-since]"))
      el.textContent = duration(now - el.dataset.since);
  }

  let running = false;
  async function poll() {
    if (running) return; // a slow answer never stacks requests
    running = true;
    try {
      await refresh();
    } catch (e) {
      if (e.name !== "AbortError") notice(problem, e.message, true);
    } finally {
      running = false;
    }
  }
  poll();
  const timers = [setInterval(poll, POLL_MS), setInterval(tick, 1000)];
  return () => {
    timers.forEach(clearInterval);
    controller.abort();
  };
}
