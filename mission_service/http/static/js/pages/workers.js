// Workers: every worker the service has heard from, with its load, read every few seconds.

import { get } from "../api.js";
import { ago, errorBox, fill, h, short, time } from "../dom.js";

export default function workers(main, { params, link }) {
  const gone = params.get("gone") === "1";
  const body = h("tbody");
  const problem = h("div");
  const toggle = h("a", { href: link("/workers", gone ? {} : { gone: "1" }) }, gone ? "Hide lost workers" : "Show lost workers too");
  fill(main, h("h1", {}, "Workers"), h("p", {}, toggle), problem,
    h("div", { class: "scroll" }, h("table", { id: "workers" },
      h("thead", {}, h("tr", {}, ["worker", "state", "load", "finished", "types", "host", "heartbeat", "started"].map((n) => h("th", {}, n)))),
      body)));
  let stopped = false;
  const load = async () => {
    try {
      const answer = await get("workers", { include_gone: gone });
      if (stopped) return;
      fill(problem);
      const list = answer.workers || [];
      fill(body, list.length ? list.map((w) => h("tr", { dataset: { id: w.id } },
        h("td", {}, w.id),
        h("td", {}, h("span", { class: `badge worker-${short(w.state, "WORKER_STATE_").toLowerCase()}` }, short(w.state, "WORKER_STATE_"))),
        h("td", {}, h("meter", { min: 0, max: w.concurrency || 1, value: w.running || 0 }), ` ${w.running || 0}/${w.concurrency || 0}`),
        h("td", { class: "num" }, w.finished || "0"),
        h("td", {}, (w.handler_types || []).join(", ")),
        h("td", {}, `${w.host || ""}:${w.pid || ""}`),
        h("td", { title: w.heartbeat_time || "" }, ago(w.heartbeat_time)),
        h("td", {}, time(w.start_time)))) : h("tr", {}, h("td", { colspan: 8, class: "note" }, "No worker.")));
    } catch (error) {
      if (!stopped) fill(problem, errorBox(error));
    }
  };
  load();
  const timer = setInterval(load, 3000);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
