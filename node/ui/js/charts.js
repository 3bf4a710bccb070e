// Small inline-SVG line charts of metric samples (no library). Built with DOM calls, never with
// markup strings, so nothing the node sends is interpreted as HTML.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A sparkline of `values` (numbers), `w`×`h` pixels, with the last value as a label. */
export function sparkline(values, { w = 220, h = 48, label = "" } = {}) {
  const svg = el("svg", { width: w, height: h + 14, viewBox: `0 0 ${w} ${h + 14}`, role: "img", class: "spark" });
  const title = el("title", {});
  title.textContent = label;
  svg.appendChild(title);
  svg.appendChild(el("rect", { x: 0, y: 0, width: w, height: h, class: "spark-bg" }));
  if (values.length > 0) {
    const min = Math.min(...values);
    const max = Math.max(...values);
    // A constant series is drawn mid-height; otherwise scaled to the box.
    const span = max - min || 1;
    const base = max === min ? h / 2 : h - 2;
    const step = values.length > 1 ? w / (values.length - 1) : 0;
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(base - ((v - min) / span) * (h - 4)).toFixed(1)}`);
    svg.appendChild(el("polyline", { points: pts.join(" "), class: "spark-line", fill: "none" }));
  }
  const text = el("text", { x: 0, y: h + 12, class: "spark-label" });
  text.textContent = `${label}: ${values.length ? values[values.length - 1] : "–"}`;
  svg.appendChild(text);
  return svg;
}

/** Parses Prometheus text into {name{labels}: value}. */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?)\s+([0-9.eE+-]+|NaN|[+-]Inf)/.exec(line);
    if (m) out[m[1]] = Number(m[3]);
  }
  return out;
}
