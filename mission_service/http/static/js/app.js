// The dashboard: a page per URL hash (#/missions?type=echo is a link to share), the signed-in
// principal, and the live indicator. Each page is a module whose default export draws into
// <main> and returns what stops it (its event stream, its timers) when the page changes.

import * as api from "./api.js";
import { errorBox, fill, h } from "./dom.js";
import deadLetters from "./pages/dead_letters.js";
import mission from "./pages/mission.js";
import missions from "./pages/missions.js";
import overview from "./pages/overview.js";
import signIn from "./pages/sign_in.js";
import workers from "./pages/workers.js";

const ROUTES = [
  [/^\/$/, overview, "Overview"],
  [/^\/missions$/, missions, "Missions"],
  [/^\/missions\/([^/]+)$/, mission, "Mission"],
  [/^\/workers$/, workers, "Workers"],
  [/^\/dead-letters$/, deadLetters, "Dead letters"],
  [/^\/sign-in$/, signIn, "Sign in"],
];

const main = document.getElementById("main");
const who = document.getElementById("who");
const live = document.getElementById("live");
let session = null;
let stop = null;

/** "#/path?query" for a path and its parameters. */
export function link(path, params) {
  return "#" + path + api.query(params);
}

function current() {
  const raw = location.hash.slice(1) || "/";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  return { path: decodeURIComponent(path), params: new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)) };
}

function showLive(state) {
  live.dataset.state = state;
  live.textContent = { live: "live", reconnecting: "reconnecting…", stopped: "not live", final: "final: nothing more to follow" }[state] || "";
}

/** What the signed-in principal may do, by role (the service decides; this only hides buttons). */
function can(action) {
  const roles = new Set(session ? session.roles : []);
  if (action === "submit") return roles.has("submitter") || roles.has("admin");
  if (action === "admin") return roles.has("admin");
  return true;
}

function drawWho() {
  if (!session) return fill(who);
  const signOut = h("button", { type: "button", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", async () => {
    try {
      await api.call("DELETE", "session");
    } finally {
      session = null;
      api.setCsrfToken(null);
      location.hash = link("/sign-in");
    }
  });
  return fill(
    who,
    h("span", { class: "principal", title: session.roles.join(", ") }, session.principal),
    session.sign_in && session.csrf_token ? signOut : null,
  );
}

async function loadSession() {
  try {
    session = await api.get("session");
    api.setCsrfToken(session.csrf_token);
  } catch (error) {
    session = null;
    if (error.status !== 401) throw error;
  }
  drawWho();
  return session;
}

async function route() {
  if (stop) stop();
  stop = null;
  showLive("");
  const { path, params } = current();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) return fill(main, errorBox(`No page ${path}`), h("a", { href: "#/" }, "Overview"));
  const [pattern, page, title] = found;
  if (!session && page !== signIn && !(await loadSession())) {
    location.hash = link("/sign-in", { next: location.hash.slice(1) });
    return;
  }
  document.title = `${title} · Missions`;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === "#" + path);
  }
  const context = {
    params,
    match: path.match(pattern),
    session,
    can,
    showLive,
    link,
    signedIn: async (next) => {
      session = null;
      await loadSession();
      location.hash = next || "/";
    },
  };
  try {
    stop = page(main, context) || null;
  } catch (error) {
    fill(main, errorBox(error));
  }
}

api.whenSignedOut(() => {
  session = null;
  drawWho();
  if (current().path !== "/sign-in") location.hash = link("/sign-in", { next: location.hash.slice(1) });
});
window.addEventListener("hashchange", route);
route().catch((error) => fill(main, errorBox(error)));
