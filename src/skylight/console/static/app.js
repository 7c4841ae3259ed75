// The console's entry point: who is signed in (the login page when nobody is), hash routes
// (#/projects/demo/instances/web), and one view on screen at a time (leaving a view aborts
// its requests and streams).

import { api, currentUser, isOperator, setCurrentUser } from "./api.js";
import { renderInstance } from "./instance.js";
import { renderDevice, renderLogin } from "./login.js";
import { renderProject } from "./project.js";
import { renderProjects } from "./projects.js";
import { renderSleds } from "./sleds.js";
import { errorBox, h } from "./ui.js";

const ROUTES = [
  [/^\/(?:projects\/?)?$/, renderProjects],
  [/^\/projects\/([^/]+)\/?$/, renderProject],
  [/^\/projects\/([^/]+)\/instances\/([^/]+)\/?$/, renderInstance],
  [/^\/sleds\/?$/, renderSleds],
  [/^\/device(?:\/([A-Za-z-]+))?\/?$/, renderDevice],
];

let current = null; // the AbortController of the view on screen

function notFound(main, path) {
  document.title = "Not found · Skylight";
  main.append(
    h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, `The console has no page at ${path}. `, h("a", { href: "#/projects" }, "Projects")),
  );
}

async function route({ focus = true } = {}) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const path = window.location.hash.replace(/^#/, "") || "/";
  const main = document.getElementById("main");
  main.replaceChildren();
  document.querySelectorAll("header nav a").forEach((a) => {
    const here = (path === "/" ? "/projects" : path).startsWith(a.getAttribute("href").slice(1));
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const found = ROUTES.map(([re, view]) => [path.match(re), view]).find(([m]) => m);
  try {
    if (!currentUser()) {
      renderLogin(main, { done: signIn });
      return;
    }
    if (!found) notFound(main, path);
    else {
      const params = found[0].slice(1).map(decodeURIComponent);
      await found[1](main, params, { signal: controller.signal });
    }
  } catch (e) {
    if (controller.signal.aborted || e.name === "AbortError") return;
    if (e.status === 401) {
      // The session ended (expired, logged out elsewhere): sign in again, then come back.
      setCurrentUser(null);
      showUser();
      main.replaceChildren();
      renderLogin(main, { done: signIn });
      return;
    }
    main.append(errorBox(e, { title: "This page could not be shown" }));
  }
  if (focus && !controller.signal.aborted) main.querySelector("h1")?.focus({ preventScroll: true });
}

function showUser() {
  const me = currentUser();
  document.body.classList.toggle("operator", isOperator());
  document.getElementById("nav-sleds").hidden = !isOperator();
  document.getElementById("who").hidden = !me;
  document.getElementById("who-name").textContent = me
    ? `${me.display_name} · ${me.silo_name}${me.fleet_viewer ? " · operator" : ""}`
    : "";
}

/** Ask who is signed in (nobody: the login page), then show the page asked for. */
async function signIn() {
  try {
    setCurrentUser(await api("GET", "/v1/me"));
  } catch (e) {
    if (e.status !== 401) throw e;
    setCurrentUser(null);
  }
  showUser();
  await route({ focus: false });
}

function start() {
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "/v1/logout").catch(() => null);
    setCurrentUser(null);
    showUser();
    await route({ focus: false });
  });
  window.addEventListener("hashchange", () => route());
  signIn();
}

start();
