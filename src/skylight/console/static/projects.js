// #/projects: the projects, and a form to create one.

import { all, api } from "./api.js";
import { navigate, takeNotice } from "./nav.js";
import { add, enc, h, showError, timeEl } from "./ui.js";

export async function renderProjects(main, _params, { signal }) {
  document.title = "Projects · Skylight";
  const list = h("div", { class: "list" }, h("p", { class: "muted" }, "Loading projects…"));
  const result = h("div", { class: "form-result" });
  const name = h("input", {
    id: "project-name",
    name: "name",
    required: true,
    maxlength: "63",
    autocomplete: "off",
    "aria-describedby": "project-name-help",
  });
  const description = h("input", {
    id: "project-description",
    name: "description",
    maxlength: "512",
  });
  const submit = h("button", { type: "submit" }, "Create project");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "create-project" },
    h("h2", { id: "create-project" }, "Create a project"),
    h(
      "div",
      { class: "field" },
      h("label", { for: "project-name" }, "Name"),
      name,
      h(
        "p",
        { id: "project-name-help", class: "help" },
        "Lower-case letters, digits and '-', starting with a letter.",
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "project-description" }, "Description"),
      description,
    ),
    submit,
    result,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    result.replaceChildren(h("p", { role: "status" }, "Creating…"));
    try {
      const project = await api("POST", "/v1/projects", {
        body: { name: name.value.trim(), description: description.value },
      });
      navigate(`#/projects/${enc(project.name)}`, `Created project ${project.name}.`);
    } catch (e) {
      showError(result, e, { title: "The project was not created" });
    } finally {
      submit.disabled = false;
    }
  });

  add(main, h("h1", { tabindex: "-1" }, "Projects"), takeNotice(), list, form);

  try {
    const projects = await all("/v1/projects", { signal });
    list.replaceChildren(
      projects.length
        ? h(
            "table",
            {},
            h("caption", { class: "visually-hidden" }, "Projects"),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Name", "Description", "Created"].map((t) => h("th", { scope: "col" }, t)),
              ),
            ),
            h(
              "tbody",
              {},
              projects.map((p) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, h("a", { href: `#/projects/${enc(p.name)}` }, p.name)),
                  h("td", {}, p.description),
                  h("td", {}, timeEl(p.time_created)),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No projects yet: create one below."),
    );
  } catch (e) {
    if (signal.aborted) return;
    showError(list, e, { title: "The projects could not be listed" });
  }
}
