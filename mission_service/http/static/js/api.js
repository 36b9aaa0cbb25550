// The JSON API (docs/http.md) from the page: same-origin fetch with the session cookie, the
// session's CSRF token on every state-changing call, and EventSource for the event stream.

const BASE = "/api/v1/";
let csrfToken = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.status || "";
    const info = (error.details || []).find((detail) => (detail["@type"] || "").endsWith("ErrorInfo"));
    this.reason = (info && info.reason) || "";
  }
}

export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** What to do when a call finds no valid credentials (401): the app shows the sign-in page. */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** "?a=1&b=x&b=y" from {a: 1, b: ["x", "y"]}, leaving out empty values. */
export function query(params = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") search.append(name, String(one));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { error: { message: `HTTP ${response.status}: ${text.slice(0, 200)}` } };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && !path.startsWith("session")) onSignedOut(error);
    throw error;
  }
  return data;
}

export const get = (path, params) => call("GET", path + query(params));
export const post = (path, body = {}) => call("POST", path, body);

/**
 * Follow GET /api/v1/events with ``params``: onEvent(event) for each MissionEvent. The browser
 * reconnects by itself, resuming from the last id it saw (Last-Event-ID), also after the
 * service ends a stream with "event: error". onState("live" | "reconnecting" | "stopped").
 * Returns a function that closes the stream.
 */
export function watch(params, onEvent, onState = () => {}) {
  const source = new EventSource(BASE + "events" + query(params));
  source.addEventListener("open", () => onState("live"));
  source.addEventListener("message", (message) => onEvent(JSON.parse(message.data)));
  source.addEventListener("error", () => {
    // Both the service's "event: error" (then it closes, and the browser resumes) and a lost
    // connection land here; a refused request (401, 400) leaves the source CLOSED.
    onState(source.readyState === EventSource.CLOSED ? "stopped" : "reconnecting");
  });
  return () => source.close();
}

/** Call ``fn`` at most once per ``ms`` however often ``schedule`` is called. */
export function debounced(fn, ms) {
  let timer = null;
  const schedule = () => {
    if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
  schedule.cancel = () => { clearTimeout(timer); timer = null; };
  return schedule;
}
