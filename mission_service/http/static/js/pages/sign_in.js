// Sign in with a token (from `mission-service hash-token --generate`, given to you by whoever
// keeps the tokens file): the service answers with a session cookie the page never sees.

import { call } from "../api.js";
import { errorBox, fill, h } from "../dom.js";

export default function signIn(main, { params, signedIn }) {
  const token = h("input", { type: "password", name: "token", id: "token", required: true, autocomplete: "current-password", spellcheck: "false" });
  const problem = h("div");
  const form = h("form", { class: "sign-in card" },
    h("h1", {}, "Sign in"),
    h("p", {}, "This service asks for a token. Paste the bearer token you use with missionctl."),
    h("label", {}, h("span", {}, "Token"), token),
    problem,
    h("button", { type: "submit", class: "primary", id: "sign-in" }, "Sign in"));
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    try {
      await call("POST", "session", { token: token.value });
      token.value = "";
      await signedIn(params.get("next") || "/");
    } catch (error) {
      fill(problem, errorBox(error));
    }
  });
  fill(main, form);
  token.focus();
}
