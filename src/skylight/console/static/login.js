// #/login and #/device/CODE: signing in with a username and password (the session cookie),
// and confirming the code the CLI shows (`skylight login`), for the signed-in user.

import { api } from "./api.js";
import { errorBox, h } from "./ui.js";

function field(label, attrs) {
  const id = `f-${attrs.name}`;
  return h("p", {}, h("label", { for: id }, label), " ", h("input", { id, ...attrs }));
}

/** The login form; ``done`` runs once the session cookie is set. */
export function renderLogin(main, { done }) {
  document.title = "Log in · Skylight";
  const problem = h("div");
  const form = h(
    "form",
    { class: "login", "aria-label": "Log in" },
    field("Silo", { name: "silo", value: "recovery", required: true, autocomplete: "organization" }),
    field("Username", { name: "username", required: true, autocomplete: "username" }),
    field("Password", {
      name: "password",
      type: "password",
      required: true,
      autocomplete: "current-password",
    }),
    h("p", {}, h("button", { type: "submit" }, "Log in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    problem.replaceChildren();
    try {
      const silo = encodeURIComponent(String(data.get("silo")));
      await api("POST", `/v1/login/${silo}/local`, {
        body: { username: data.get("username"), password: data.get("password") },
      });
      await done();
    } catch (e) {
      problem.append(errorBox(e, { title: "You were not logged in" }));
    }
  });
  main.append(
    h("h1", { tabindex: "-1" }, "Log in to Skylight"),
    h(
      "p",
      { class: "muted" },
      "The first administrator's password is in DATA_DIR/recovery-password on the machine " +
        "that first started Skylight (unless the operator gave one).",
    ),
    problem,
    form,
  );
}

/** Confirm a device (the CLI's `skylight login`): the code it printed, as the user here. */
export async function renderDevice(main, [code]) {
  document.title = "Confirm a device · Skylight";
  const result = h("div");
  const form = h(
    "form",
    { "aria-label": "Confirm a device" },
    field("Code shown by the CLI", { name: "user_code", value: code || "", required: true }),
    h("p", {}, h("button", { type: "submit" }, "Confirm")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    try {
      await api("POST", "/device/confirm", {
        body: { user_code: String(new FormData(form).get("user_code")).trim() },
      });
      result.append(
        h("p", { role: "status" }, "Confirmed: the CLI is logged in as you. You can close this."),
      );
      form.remove();
    } catch (e) {
      result.append(errorBox(e, { title: "The device was not confirmed" }));
    }
  });
  main.append(
    h("h1", { tabindex: "-1" }, "Confirm a device"),
    h("p", {}, "Confirm only a code that your own `skylight login` printed just now."),
    result,
    form,
  );
}
