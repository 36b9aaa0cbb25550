// Overview: missions per state, what finished per minute over the last hour, the queue of
// each mission type (flagging types no live worker handles), and the live workers' load.
// Stats are read every few seconds and at once after events; the hour's chart is read once
// and then counted on from the event stream.

import { debounced, get, watch } from "../api.js";
import { bars, columns } from "../charts.js";
import { errorBox, fill, h, short } from "../dom.js";

const MINUTE = 60_000;
const HOUR_PAGES = 5; // the hour's chart reads at most 5 pages of 1,000 finished missions
const FINAL = { EVENT_TYPE_COMPLETED: "ok", EVENT_TYPE_DEAD_LETTERED: "failed" };
const STATE_ORDER = ["SCHEDULED", "QUEUED", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "CANCELLED"];

export default function overview(main, { showLive, link }) {
  const states = h("div", { class: "chart-box", id: "states" });
  const hour = h("div", { class: "chart-box", id: "hour" });
  const totals = h("p", { class: "totals", id: "totals" });
  const queues = h("div", { id: "queues" });
  const workers = h("div", { id: "workers" });
  const problem = h("div");
  fill(
    main,
    h("h1", {}, "Overview"),
    problem,
    totals,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Missions by state"), states),
      h("section", { class: "card" }, h("h2", {}, "Finished per minute, last hour"), hour),
      h("section", { class: "card" }, h("h2", {}, "Queues by mission type"), queues),
      h("section", { class: "card" }, h("h2", {}, "Live workers"), workers),
    ),
  );

  const finished = new Map(); // mission id → [minute, "ok" | "failed"]
  let truncated = false;
  const drawHour = () => {
    const now = Math.floor(Date.now() / MINUTE);
    const buckets = Array.from({ length: 60 }, (_, i) => ({ ok: 0, failed: 0, label: new Date((now - 59 + i) * MINUTE).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }));
    for (const [minute, kind] of finished.values()) {
      const i = minute - (now - 59);
      if (i >= 0 && i < 60) buckets[i][kind] += 1;
    }
    fill(hour, columns(buckets), truncated ? h("p", { class: "note" }, `Counted from the first ${HOUR_PAGES * 1000} missions that ended this hour.`) : null);
  };
  const count = (mission) => {
    if (!mission.end_time) return;
    finished.set(mission.id, [Math.floor(Date.parse(mission.end_time) / MINUTE), mission.state === "MISSION_STATE_SUCCEEDED" ? "ok" : "failed"]);
  };
  const loadHour = async () => {
    const since = new Date(Date.now() - 60 * MINUTE).toISOString();
    let pageToken = "";
    for (let page = 0; page < HOUR_PAGES; page += 1) {
      const answer = await get("missions", { states: ["MISSION_STATE_SUCCEEDED", "MISSION_STATE_FAILED"], min_end_time: since, page_size: 1000, page_token: pageToken });
      (answer.missions || []).forEach(count);
      pageToken = answer.next_page_token || "";
      if (!pageToken) break;
    }
    truncated = Boolean(pageToken);
    drawHour();
  };

  const drawStats = (stats, listed) => {
    const byState = new Map((stats.states || []).map((s) => [short(s.state), Number(s.count || 0)]));
    fill(states, bars(STATE_ORDER.map((name) => ({ label: name, value: byState.get(name) || 0, className: `state-${name.toLowerCase()}` }))));
    fill(totals,
      h("span", {}, "Running ", h("strong", {}, stats.running || "0")),
      h("span", {}, "Queued (all types) ", h("strong", {}, stats.queue_depth || "0")),
      h("span", {}, "Succeeded last hour ", h("strong", {}, stats.succeeded_last_hour || "0")),
      h("span", {}, "Failed last hour ", h("strong", {}, stats.failed_last_hour || "0")),
      h("span", {}, h("a", { href: link("/dead-letters") }, "Dead letters"), " ", h("strong", {}, stats.dead_letter_depth || "0")),
    );
    const types = stats.mission_types || [];
    fill(queues, types.length ? h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "type"), h("th", { class: "num" }, "waiting"), h("th", { class: "num" }, "in queue"), h("th", { class: "num" }, "live workers"))),
      h("tbody", {}, types.map((t) => {
        const orphan = !t.active_workers && (Number(t.waiting || 0) > 0 || Number(t.queue_depth || 0) > 0);
        return h("tr", { class: orphan ? "orphan" : "", dataset: { type: t.mission_type } },
          h("td", {}, h("a", { href: link("/missions", { type: t.mission_type, state: "QUEUED" }) }, t.mission_type),
            orphan ? h("span", { class: "flag", title: "no live worker handles this type" }, " no worker") : null),
          h("td", { class: "num" }, t.waiting || "0"),
          h("td", { class: "num" }, t.queue_depth || "0"),
          h("td", { class: "num" }, t.active_workers || 0));
      })))) : h("p", { class: "note" }, "No mission types yet."));
    const active = (listed.workers || []).filter((w) => w.state === "WORKER_STATE_ACTIVE" || w.state === "WORKER_STATE_STOPPING");
    fill(workers, active.length ? h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "worker"), h("th", {}, "load"), h("th", {}, "types"))),
      h("tbody", {}, active.map((w) => h("tr", {},
        h("td", {}, w.id, w.state === "WORKER_STATE_STOPPING" ? h("span", { class: "flag" }, " stopping") : null),
        h("td", {}, h("meter", { min: 0, max: w.concurrency || 1, value: w.running || 0 }), ` ${w.running || 0}/${w.concurrency || 0}`),
        h("td", {}, (w.handler_types || []).join(", "))))))) : h("p", { class: "note" }, "No live worker."));
  };

  let stopped = false;
  const refresh = async () => {
    try {
      const [stats, listed] = await Promise.all([get("stats"), get("workers")]);
      if (!stopped) { drawStats(stats, listed); fill(problem); }
    } catch (error) {
      if (!stopped) fill(problem, errorBox(error));
    }
  };
  const soon = debounced(refresh, 300);
  const close = watch({}, (event) => {
    soon();
    if (event.type in FINAL) {
      finished.set(event.mission_id, [Math.floor(Date.parse(event.time) / MINUTE), FINAL[event.type]]);
      drawHour();
    }
  }, showLive);
  refresh();
  loadHour().catch((error) => fill(hour, errorBox(error)));
  const timer = setInterval(() => { refresh(); drawHour(); }, 5000);
  return () => {
    stopped = true;
    close();
    soon.cancel();
    clearInterval(timer);
  };
}
