// A small SVG chart of one series over time: a line (gaps where a value is null) or bars.
// Drawn in a fixed viewBox and scaled by CSS, so it fits any width without measuring.
const NS = "http://www.w3.org/2000/svg";
const W = 480;
const H = 170;
const PAD = { left: 40, right: 8, top: 10, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// A round ceiling for the y axis: 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function clock(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function fmt(v) {
  return v >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
}

// points: [{x: unix seconds, y: number|null}], oldest first. Returns an <svg>.
export function chart(points, { title, unit = "", kind = "line" } = {}) {
  const values = points.map((p) => p.y).filter((y) => y !== null && y !== undefined);
  const top = niceMax(Math.max(0, ...values));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const n = Math.max(points.length, 1);
  const step = plotW / n;
  const x = (i) => PAD.left + step * (i + 0.5);
  const y = (v) => PAD.top + plotH * (1 - v / top);

  const last = values.length ? values[values.length - 1] : null;
  const summary = last === null ? "no data" : `latest ${fmt(last)}${unit ? ` ${unit}` : ""}`;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: `chart chart-${kind}`,
    role: "img",
    "aria-label": `${title}: ${summary}, peak ${values.length ? fmt(Math.max(...values)) : 0}`,
  });
  root.append(svg("title", {}, title));

  for (const v of [0, top / 2, top]) {
    root.append(
      svg("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      svg("text", { class: "axis", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)),
    );
  }
  if (points.length) {
    const first = points[0].x;
    const end = points[points.length - 1].x;
    root.append(
      svg("text", { class: "axis", x: PAD.left, y: H - 6 }, clock(first)),
      svg("text", { class: "axis", x: W - PAD.right, y: H - 6, "text-anchor": "end" }, clock(end)),
    );
  }

  if (kind === "bar") {
    points.forEach((p, i) => {
      if (!p.y) return;
      const rect = svg("rect", {
        class: "bar",
        x: x(i) - step * 0.4,
        y: y(p.y),
        width: step * 0.8,
        height: y(0) - y(p.y),
      });
      rect.append(svg("title", {}, `${clock(p.x)}: ${fmt(p.y)} ${unit}`.trim()));
      root.append(rect);
    });
  } else {
    // One path with a new segment after each gap; lone points get a dot so they show.
    let d = "";
    let open = false;
    points.forEach((p, i) => {
      if (p.y === null || p.y === undefined) {
        open = false;
        return;
      }
      d += `${open ? "L" : "M"}${x(i).toFixed(1)},${y(p.y).toFixed(1)}`;
      const prev = points[i - 1];
      const next = points[i + 1];
      if ((!prev || prev.y == null) && (!next || next.y == null)) {
        root.append(svg("circle", { class: "dot", cx: x(i), cy: y(p.y), r: 3 }));
      }
      open = true;
    });
    if (d) root.append(svg("path", { class: "line", d }));
  }
  return root;
}
