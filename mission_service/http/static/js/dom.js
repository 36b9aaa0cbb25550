// Building the page. Every string from the service (payloads, results, labels, error
// messages, ids) goes into the DOM as a text node, never as markup: h() has no way to
// set innerHTML, so a payload of "<script>" shows those characters.

/** An element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child, [children]). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what ``element`` holds. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const STATE_PREFIX = "MISSION_STATE_";

/** "MISSION_STATE_QUEUED" → "QUEUED" (and the like for other enums given their prefix). */
export function short(name, prefix = STATE_PREFIX) {
  return name && name.startsWith(prefix) ? name.slice(prefix.length) : name || "";
}

export function stateBadge(state) {
  const name = short(state) || "UNSPECIFIED";
  return h("span", { class: `badge state-${name.toLowerCase()}`, "data-state": name }, name);
}

export function pretty(value) {
  return h("pre", { class: "json" }, JSON.stringify(value ?? {}, null, 2));
}

export function time(text) {
  if (!text) return "";
  const at = new Date(text);
  return h("time", { datetime: text, title: text }, at.toLocaleString());
}

/** Milliseconds as "850 ms", "12.3 s", "4 min 05 s", "2 h 01 min". */
export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${Number.isInteger(s) ? s : s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** "12 s ago" from an RFC 3339 time. */
export function ago(text) {
  if (!text) return "";
  const ms = Math.max(0, Date.now() - Date.parse(text));
  return ms < 1000 ? "just now" : `${duration(Math.floor(ms / 1000) * 1000)} ago`;
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error instanceof Error ? error.message : String(error));
}

/** A button that asks before it acts: the first click shows "question [Yes] [No]" beside it. */
export function confirmButton(label, question, action, { danger = false } = {}) {
  const holder = h("span", { class: "confirm" });
  const button = h("button", { type: "button", class: danger ? "danger" : "" }, label);
  const status = h("span", { class: "status" });
  button.addEventListener("click", () => {
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary" }, "Yes, " + label.toLowerCase());
    const no = h("button", { type: "button" }, "No");
    const ask = h("span", { class: "ask" }, question, " ", yes, " ", no);
    no.addEventListener("click", () => ask.replaceWith(button));
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      try {
        fill(status, await action());
        ask.replaceWith(button);
      } catch (error) {
        fill(status, errorBox(error));
        ask.replaceWith(button);
      }
    });
    button.replaceWith(ask);
  });
  return fill(holder, button, " ", status);
}
