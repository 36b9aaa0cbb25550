// One mission: its fields, payload and result as JSON, its error, and its timeline (every
// event, with the time since the one before), followed live until the mission is final.
// Cancel (and, for an admin, redrive a dead letter) with a confirmation.

import { debounced, get, post, watch } from "../api.js";
import { confirmButton, duration, errorBox, fill, h, pretty, short, stateBadge, time } from "../dom.js";

const FINAL_STATES = new Set(["MISSION_STATE_SUCCEEDED", "MISSION_STATE_FAILED", "MISSION_STATE_CANCELLED"]);
const FINAL_EVENTS = new Set(["EVENT_TYPE_COMPLETED", "EVENT_TYPE_CANCELLED", "EVENT_TYPE_DEAD_LETTERED", "EVENT_TYPE_PURGED"]);

const clock = (text) => h("time", { datetime: text, title: text }, new Date(text).toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3 }));
const seconds = (text) => (text ? duration(parseFloat(text) * 1000) : "");
const failure = (error) => (error ? `${error.type || "error"}: ${error.message || ""}` : "");

/** One line saying what an event adds to its type. */
function detail(event) {
  const d = event.created || event.started || event.progress || event.completed || event.failed || event.retrying ||
    event.cancelled || event.dead_lettered || event.redriven || event.purged || event.due || {};
  switch (event.type) {
    case "EVENT_TYPE_CREATED": return `by ${(d.mission || {}).submitted_by || "?"}`;
    case "EVENT_TYPE_STARTED": return `on ${d.worker_id || "?"}${d.withdrawn ? " (withdrawn)" : ""}`;
    case "EVENT_TYPE_PROGRESS": return `${Math.round((d.fraction || 0) * 100)} % ${d.message || ""}`;
    case "EVENT_TYPE_COMPLETED": return `ran ${seconds(d.duration)}`;
    case "EVENT_TYPE_FAILED": return `${failure(d.error)}${d.will_retry ? " (will retry)" : ""}`;
    case "EVENT_TYPE_RETRYING": return `in ${seconds(d.delay)} after ${failure(d.error)}`;
    case "EVENT_TYPE_CANCELLED": return `by ${d.cancelled_by || "?"}${d.reason ? `: ${d.reason}` : ""}`;
    case "EVENT_TYPE_DEAD_LETTERED": return `${d.reason || ""} ${failure(d.last_error)}`;
    case "EVENT_TYPE_REDRIVEN": case "EVENT_TYPE_PURGED": return `by ${d.requested_by || "?"}`;
    case "EVENT_TYPE_DUE": return "due";
    default: return "";
  }
}

function fields(m) {
  const rows = [
    ["id", h("code", {}, m.id)],
    ["type", m.type],
    ["state", stateBadge(m.state)],
    ["priority", short(m.priority, "PRIORITY_")],
    ["attempt", `${m.attempt || 0} of ${m.max_attempts || 0}${m.redrive_count ? `, redriven ${m.redrive_count}×` : ""}`],
    ["progress", m.progress ? `${Math.round(m.progress * 100)} % ${m.progress_message || ""}` : null],
    ["labels", Object.keys(m.labels || {}).length ? Object.entries(m.labels).map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`)) : null],
    ["submitted by", m.submitted_by],
    ["created", time(m.create_time)],
    ["due", m.due_time ? time(m.due_time) : null],
    ["started", m.start_time ? time(m.start_time) : null],
    ["ended", m.end_time ? time(m.end_time) : null],
    ["worker", m.worker_id],
    ["timeout", m.timeout ? seconds(m.timeout) : null],
    ["correlation id", m.correlation_id ? h("code", {}, m.correlation_id) : null],
    ["idempotency key", m.idempotency_key ? h("code", {}, m.idempotency_key) : null],
  ];
  return h("dl", { class: "fields" }, rows.filter(([, value]) => value).map(([name, value]) => [h("dt", {}, name), h("dd", { dataset: { field: name } }, value)]));
}

export default function mission(main, { match, link, showLive, can, session }) {
  const id = match[1];
  const head = h("div", { class: "mission-head" });
  const actions = h("div", { class: "actions" });
  const body = h("div", { class: "mission-body" });
  const timeline = h("tbody");
  const problem = h("div");
  fill(main,
    h("p", { class: "crumbs" }, h("a", { href: link("/missions") }, "Missions"), " / ", h("code", {}, id)),
    head, problem, actions, body,
    h("h2", {}, "Timeline"),
    h("div", { class: "scroll" }, h("table", { id: "timeline", class: "timeline" },
      h("thead", {}, h("tr", {}, ["time", "since previous", "event", "attempt", "detail"].map((n) => h("th", {}, n)))), timeline)));

  let current = null;
  let stopped = false;
  const events = [];
  let shown = "";
  const drawActions = (m) => {
    const mine = !session.authenticated || m.submitted_by === session.principal || can("admin");
    const cancel = !FINAL_STATES.has(m.state) && can("submit") && mine;
    const redrive = m.dead_lettered && can("admin");
    // Only when they change: a live update must not take away a question being answered.
    if (shown === `${cancel} ${redrive}`) return;
    shown = `${cancel} ${redrive}`;
    fill(actions,
      cancel
        ? confirmButton("Cancel", "Cancel this mission?", async () => {
          const answer = await post(`missions/${encodeURIComponent(id)}:cancel`, { reason: "cancelled in the dashboard" });
          draw(answer.mission);
          return "Cancelled.";
        }, { danger: true })
        : null,
      redrive
        ? confirmButton("Redrive", "Run this dead letter again?", async () => {
          const answer = await post(`missions/${encodeURIComponent(id)}:redrive`, {});
          draw(answer.mission);
          follow();
          return "Redriven.";
        })
        : null);
  };
  const draw = (m) => {
    current = m;
    fill(head, h("h1", {}, m.type, " ", stateBadge(m.state)));
    drawActions(m);
    fill(body,
      h("section", { class: "card" }, h("h2", {}, "Fields"), fields(m)),
      h("section", { class: "card" }, h("h2", {}, "Payload"), h("div", { id: "payload" }, pretty(m.payload))),
      m.result ? h("section", { class: "card" }, h("h2", {}, "Result"), h("div", { id: "result" }, pretty(m.result))) : null,
      m.error ? h("section", { class: "card error-card" }, h("h2", {}, "Error"),
        h("p", { id: "mission-error" }, h("strong", {}, m.error.type || "error"), ": ", m.error.message || ""),
        h("p", { class: "note" }, m.error.retryable ? "retryable" : "not retryable")) : null);
  };
  const load = async () => {
    try {
      const answer = await get(`missions/${encodeURIComponent(id)}`);
      if (stopped) return;
      fill(problem);
      draw(answer.mission);
      if (FINAL_STATES.has(answer.mission.state) && events.some((e) => FINAL_EVENTS.has(e.type))) {
        close();
        showLive("final");
      }
    } catch (error) {
      if (!stopped) fill(problem, errorBox(error));
    }
  };
  const drawEvent = (event) => {
    const previous = events[events.length - 2];
    const at = Date.parse(event.time);
    timeline.append(h("tr", { dataset: { type: short(event.type, "EVENT_TYPE_"), sequence: event.sequence } },
      h("td", { class: "num" }, clock(event.time)),
      h("td", { class: "num" }, previous ? `+${duration(at - Date.parse(previous.time))}` : ""),
      h("td", {}, h("span", { class: `badge event-${short(event.type, "EVENT_TYPE_").toLowerCase()}` }, short(event.type, "EVENT_TYPE_"))),
      h("td", { class: "num" }, event.attempt || ""),
      h("td", {}, detail(event))));
  };
  const soon = debounced(load, 200);
  let close = () => {};
  // Every past event of the mission, then the live ones; it ends once the mission is final.
  const follow = () => {
    close();
    const after = events.length ? events[events.length - 1].sequence : undefined;
    close = watch({ mission_ids: id, after_sequence: after }, (event) => {
      events.push(event);
      drawEvent(event);
      soon();
    }, showLive);
  };
  load().then(() => { if (!stopped && current) follow(); });
  return () => {
    stopped = true;
    close();
    soon.cancel();
  };
}
