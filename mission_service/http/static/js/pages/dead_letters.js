// Dead letters: missions that failed for good, filtered by type, error type and labels (in the
// URL); an admin redrives one, or redrives or purges every one the filter matches, each after
// a confirmation that says how many it would touch (the same call with dry_run first).

import { debounced, get, post, watch } from "../api.js";
import { ago, confirmButton, errorBox, fill, h } from "../dom.js";

export default function deadLetters(main, { params, link, can, showLive }) {
  const filter = { type: params.get("type") || "", error_type: params.get("error_type") || "", label_selector: params.get("labels") || "" };
  const type = h("input", { name: "type", value: filter.type, placeholder: "any type", autocomplete: "off" });
  const errorType = h("input", { name: "error_type", value: filter.error_type, placeholder: "any error", autocomplete: "off" });
  const selector = h("input", { name: "labels", value: filter.label_selector, placeholder: "team=ops", autocomplete: "off" });
  const field = (name, input) => h("label", {}, h("span", {}, name), input);
  const form = h("form", { class: "filters" }, field("Type", type), field("Error type", errorType), field("Labels", selector),
    h("button", { type: "submit", class: "primary" }, "Filter"));
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    location.hash = link("/dead-letters", { type: type.value.trim(), error_type: errorType.value.trim(), labels: selector.value.trim() });
  });
  const body = h("tbody");
  const problem = h("div");
  const bulk = h("div", { class: "actions" });
  fill(main, h("h1", {}, "Dead letters"), form, problem, bulk,
    h("div", { class: "scroll" }, h("table", { id: "dead-letters" },
      h("thead", {}, h("tr", {}, ["id", "type", "error", "failed", ""].map((n) => h("th", {}, n)))), body)));

  const bulkAction = (label, verb, path) => confirmButton(label, `${label} every dead letter this filter matches?`, async () => {
    const preview = await post(path, { filter, dry_run: true });
    if (!Number(preview.count || 0)) return "Nothing matches.";
    const done = await post(path, { filter });
    load();
    return `${verb} ${done.count || 0}.`;
  }, { danger: verb === "Purged" });
  if (can("admin")) fill(bulk, bulkAction("Redrive all", "Redriven", "dead-letters:redrive"), " ", bulkAction("Purge all", "Purged", "dead-letters:purge"));

  let stopped = false;
  const load = async () => {
    try {
      const answer = await get("dead-letters", { ...filter, page_size: 200 });
      if (stopped) return;
      fill(problem);
      const list = answer.missions || [];
      fill(body, list.length ? list.map((m) => h("tr", { dataset: { id: m.id } },
        h("td", { class: "id" }, h("a", { href: link(`/missions/${m.id}`) }, m.id)),
        h("td", {}, m.type),
        h("td", {}, m.error ? `${m.error.type || "error"}: ${m.error.message || ""}` : ""),
        h("td", { title: m.end_time || "" }, ago(m.end_time)),
        h("td", {}, can("admin") ? confirmButton("Redrive", "Run it again?", async () => {
          await post(`missions/${encodeURIComponent(m.id)}:redrive`, {});
          load();
          return "Redriven.";
        }) : null))) : h("tr", {}, h("td", { colspan: 5, class: "note" }, "No dead letter matches.")),
        answer.next_page_token ? h("tr", {}, h("td", { colspan: 5, class: "note" }, "Only the first 200 are shown.")) : null);
    } catch (error) {
      if (!stopped) fill(problem, errorBox(error));
    }
  };
  const soon = debounced(load, 500);
  const close = watch({ types: ["EVENT_TYPE_DEAD_LETTERED", "EVENT_TYPE_REDRIVEN", "EVENT_TYPE_PURGED"] }, soon, showLive);
  load();
  return () => {
    stopped = true;
    close();
    soon.cancel();
  };
}
