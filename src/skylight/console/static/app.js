// The console's entry point: hash routes (#/projects/demo/instances/web), the operator
// toggle, and one view on screen at a time (leaving a view aborts its requests and streams).

import { isOperator, setOperator } from "./api.js";
import { renderInstance } from "./instance.js";
import { renderProject } from "./project.js";
import { renderProjects } from "./projects.js";
import { renderSleds } from "./sleds.js";
import { errorBox, h } from "./ui.js";

const ROUTES = [
  [/^\/(?:projects\/?)?$/, renderProjects],
  [/^\/projects\/([^/]+)\/?$/, renderProject],
  [/^\/projects\/([^/]+)\/instances\/([^/]+)\/?$/, renderInstance],
  [/^\/sleds\/?$/, renderSleds],
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
    if (!found) notFound(main, path);
    else {
      const params = found[0].slice(1).map(decodeURIComponent);
      await found[1](main, params, { signal: controller.signal });
    }
  } catch (e) {
    if (controller.signal.aborted || e.name === "AbortError") return;
    main.append(errorBox(e, { title: "This page could not be shown" }));
  }
  if (focus && !controller.signal.aborted) main.querySelector("h1")?.focus({ preventScroll: true });
}

function showOperator() {
  const on = isOperator();
  document.body.classList.toggle("operator", on);
  document.getElementById("nav-sleds").hidden = !on;
  document.getElementById("operator-toggle").checked = on;
}

function start() {
  const toggle = document.getElementById("operator-toggle");
  toggle.addEventListener("change", () => {
    setOperator(toggle.checked);
    showOperator();
    route({ focus: false }); // what is shown depends on it: ask again
  });
  showOperator();
  window.addEventListener("hashchange", () => route());
  route({ focus: false });
}

start();
