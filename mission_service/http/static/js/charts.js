// Two small charts, drawn here rather than by a library: bars (a count per name, as HTML so
// the text keeps its size at any width) and columns over time (SVG stretched to the width,
// two stacked series per minute, its labels as HTML). Labels are text nodes.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** Bars of [{label, value, className}], one per row, scaled to the largest. */
export function bars(rows) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return h("div", { class: "bars" }, rows.map((r) => {
    const bar = h("span", { class: `bar ${r.className || ""}` });
    bar.style.width = `${(100 * r.value) / max}%`; // a CSSOM property: the CSP refuses style attributes
    return h("div", { class: "bar-row", dataset: { label: r.label } },
      h("span", { class: "bar-label" }, r.label), h("span", { class: "bar-track" }, bar), h("span", { class: "bar-value" }, String(r.value)));
  }));
}

/**
 * Columns for ``buckets`` ([{ok, failed, label}], oldest first, one per minute): ok at the
 * bottom, failed stacked on top, scaled to the largest total.
 */
export function columns(buckets) {
  const height = 100;
  const chart = svg("svg", { viewBox: `0 0 ${buckets.length} ${height}`, preserveAspectRatio: "none", class: "columns", role: "img" });
  const max = Math.max(1, ...buckets.map((b) => b.ok + b.failed));
  buckets.forEach((b, i) => {
    const ok = (height * b.ok) / max;
    const failed = (height * b.failed) / max;
    const group = svg("g", {});
    group.append(svg("title", {}, `${b.label}: ${b.ok} succeeded, ${b.failed} failed`));
    group.append(svg("rect", { x: i + 0.1, y: height - ok, width: 0.8, height: ok, class: "ok" }));
    group.append(svg("rect", { x: i + 0.1, y: height - ok - failed, width: 0.8, height: failed, class: "failed" }));
    chart.append(group);
  });
  return h("figure", { class: "column-chart" },
    h("span", { class: "axis-max" }, `${max} per minute`),
    chart,
    h("figcaption", {}, h("span", {}, buckets.length ? buckets[0].label : ""),
      h("span", {}, h("span", { class: "key ok" }, "succeeded"), " ", h("span", { class: "key failed" }, "failed")),
      h("span", {}, "now")));
}
