// Missions: a table filtered by state, type, label selector, creation time and id prefix,
// newest first, paged, read again as the event stream reports changes. The filter is in the
// URL (#/missions?state=QUEUED&type=echo&labels=team%3Dops&since=1h&id=3fa), so it can be shared.

import { debounced, get, watch } from "../api.js";
import { ago, errorBox, fill, h, stateBadge } from "../dom.js";

const STATES = ["SCHEDULED", "QUEUED", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "CANCELLED"];
const SINCE = { "": "any time", "15m": "last 15 minutes", "1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days" };
const SINCE_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 };
const PAGE_SIZE = 50;

function sinceTime(since) {
  const match = /^(\d+)([mhd])$/.exec(since || "");
  return match ? new Date(Date.now() - Number(match[1]) * SINCE_MS[match[2]]).toISOString() : "";
}

function labels(mission) {
  return Object.entries(mission.labels || {}).map(([key, value]) => h("span", { class: "label" }, `${key}=${value}`));
}

export default function missions(main, { params, link, showLive }) {
  const filter = {
    state: params.getAll("state").filter((s) => STATES.includes(s)),
    type: params.get("type") || "",
    labels: params.get("labels") || "",
    since: params.get("since") || "",
    id: params.get("id") || "",
  };
  const field = (name, input) => h("label", {}, h("span", {}, name), input);
  const state = h("select", { name: "state" }, h("option", { value: "" }, "any state"), STATES.map((s) => h("option", { value: s, selected: filter.state[0] === s }, s)));
  const type = h("input", { name: "type", value: filter.type, placeholder: "any type", autocomplete: "off" });
  const selector = h("input", { name: "labels", value: filter.labels, placeholder: "team=ops,env=prod", autocomplete: "off" });
  const since = h("select", { name: "since" }, Object.entries(SINCE).map(([value, text]) => h("option", { value, selected: filter.since === value }, text)));
  const id = h("input", { name: "id", value: filter.id, placeholder: "id prefix", autocomplete: "off", spellcheck: "false", id: "id-search" });
  const form = h("form", { class: "filters", role: "search" },
    field("State", state), field("Type", type), field("Labels", selector), field("Created", since), field("Id", id),
    h("button", { type: "submit", class: "primary" }, "Filter"));
  const body = h("tbody");
  const problem = h("div");
  const pager = h("div", { class: "pager" });
  fill(main, h("h1", {}, "Missions"), form, problem,
    h("div", { class: "scroll" }, h("table", { class: "missions", id: "missions" },
      h("thead", {}, h("tr", {}, ["id", "type", "state", "attempt", "labels", "created", "updated"].map((name) => h("th", {}, name)))),
      body)),
    pager);

  const chosen = () => ({
    state: state.value ? [state.value] : [],
    type: type.value.trim(),
    labels: selector.value.trim(),
    since: since.value,
    id: id.value.trim(),
  });
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const next = chosen();
    // The id box finds one mission by a unique prefix: open it rather than list it.
    if (next.id) {
      try {
        const found = await get("missions", { id_prefix: next.id, page_size: 2 });
        if ((found.missions || []).length === 1) {
          location.hash = link(`/missions/${found.missions[0].id}`);
          return;
        }
      } catch (error) {
        fill(problem, errorBox(error));
        return;
      }
    }
    location.hash = link("/missions", next);
  });
  for (const input of [state, since]) input.addEventListener("change", () => form.requestSubmit());

  const tokens = [""]; // the page token of each page up to the one shown
  let stopped = false;
  const load = async () => {
    const request = {
      states: filter.state.map((s) => `MISSION_STATE_${s}`),
      type: filter.type,
      label_selector: filter.labels,
      min_create_time: sinceTime(filter.since),
      id_prefix: filter.id,
      order_by: "create_time desc",
      page_size: PAGE_SIZE,
      page_token: tokens[tokens.length - 1],
    };
    try {
      const answer = await get("missions", request);
      if (stopped) return;
      fill(problem);
      draw(answer.missions || [], answer.next_page_token || "");
    } catch (error) {
      if (!stopped) fill(problem, errorBox(error));
    }
  };
  const draw = (list, nextToken) => {
    fill(body, list.length ? list.map((m) => h("tr", { dataset: { id: m.id } },
      h("td", { class: "id" }, h("a", { href: link(`/missions/${m.id}`), title: m.id }, m.id)),
      h("td", {}, m.type),
      h("td", { class: "state" }, stateBadge(m.state)),
      h("td", { class: "num" }, `${m.attempt || 0}/${m.max_attempts || 0}`),
      h("td", {}, labels(m)),
      h("td", { title: m.create_time, dataset: { time: m.create_time } }, ago(m.create_time)),
      h("td", { title: m.update_time, dataset: { time: m.update_time || "" } }, ago(m.update_time)))) : h("tr", {}, h("td", { colspan: 7, class: "note" }, "No mission matches.")));
    const previous = h("button", { type: "button", disabled: tokens.length === 1 }, "← Newer");
    const next = h("button", { type: "button", disabled: !nextToken }, "Older →");
    previous.addEventListener("click", () => { tokens.pop(); load(); });
    next.addEventListener("click", () => { tokens.push(nextToken); load(); });
    fill(pager, previous, h("span", {}, `page ${tokens.length}`), next);
  };

  // Any event of a mission that may be in the table: read the page again (at most twice a second).
  const soon = debounced(load, 500);
  const close = watch({ mission_types: filter.type, label_selector: filter.labels }, soon, showLive);
  load();
  const timer = setInterval(() => { for (const cell of body.querySelectorAll("td[data-time]")) cell.textContent = ago(cell.dataset.time); }, 5000);
  return () => {
    stopped = true;
    close();
    soon.cancel();
    clearInterval(timer);
  };
}
