// #/projects/{project}: its instances (kept current by the project's event stream), and a
// form to create one that shows a failed start instead of swallowing it.

import { all, api } from "./api.js";
import { takeNotice } from "./nav.js";
import { follow, perBurst } from "./stream.js";
import {
  add,
  breadcrumbs,
  enc,
  gib,
  h,
  liveStatus,
  reasonBlock,
  showError,
  stateBadge,
} from "./ui.js";

const GiB = 1024 ** 3;

function instanceRow(project, inst) {
  const href = `#/projects/${enc(project)}/instances/${enc(inst.name)}`;
  return h(
    "tr",
    { class: inst.status_reason ? "has-reason" : null, dataset: { instance: inst.name } },
    h("th", { scope: "row" }, h("a", { href }, inst.name)),
    h("td", { class: "run-state" }, stateBadge(inst.run_state)),
    h("td", { class: "intended-state" }, inst.intended_state),
    h("td", {}, `${inst.ncpus} vCPUs, ${gib(inst.memory)}`),
    h(
      "td",
      { class: "status-cell" },
      inst.status_reason
        ? reasonBlock(inst.status_reason, { compact: true })
        : h("span", { class: "muted" }, "—"),
    ),
  );
}

function instanceTable(project, instances) {
  if (!instances.length) return h("p", { class: "muted" }, "No instances yet: create one below.");
  return h(
    "table",
    { class: "instances" },
    h("caption", { class: "visually-hidden" }, `Instances of ${project}`),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Name", "Run state", "Intended state", "Size", "Status reason"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    h("tbody", {}, instances.map((i) => instanceRow(project, i))),
  );
}

function createForm(project, onCreated) {
  const result = h("div", { class: "form-result" });
  const field = (id, label, input, help) =>
    h(
      "div",
      { class: "field" },
      h("label", { for: id }, label),
      input,
      help ? h("p", { class: "help", id: `${id}-help` }, help) : null,
    );
  const name = h("input", {
    id: "instance-name",
    name: "name",
    required: true,
    maxlength: "63",
    autocomplete: "off",
    "aria-describedby": "instance-name-help",
  });
  const number = (id, max, value) =>
    h("input", { id, name: id, type: "number", min: "1", max, step: "1", value, required: true });
  const ncpus = number("instance-ncpus", "254", "2");
  const memory = number("instance-memory", "1536", "4");
  const start = h("input", { id: "instance-start", type: "checkbox", checked: true });
  const submit = h("button", { type: "submit" }, "Create instance");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "create-instance" },
    h("h2", { id: "create-instance" }, "Create an instance"),
    field("instance-name", "Name", name, "Also its hostname."),
    h(
      "div",
      { class: "row" },
      field("instance-ncpus", "vCPUs", ncpus),
      field("instance-memory", "Memory (GiB)", memory),
    ),
    h(
      "div",
      { class: "field checkbox" },
      start,
      h("label", { for: "instance-start" }, "Start it once created"),
    ),
    submit,
    result,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const starting = start.checked;
    const instanceName = name.value.trim();
    submit.disabled = true;
    result.replaceChildren(
      h(
        "p",
        { role: "status" },
        starting
          ? `Creating ${instanceName} and waiting for its start to end…`
          : `Creating ${instanceName}…`,
      ),
    );
    try {
      const inst = await api("POST", "/v1/instances", {
        query: { project },
        body: {
          name: instanceName,
          description: "",
          hostname: instanceName,
          ncpus: Number(ncpus.value),
          memory: Math.round(Number(memory.value) * 1024) * (GiB / 1024),
          start: starting,
        },
      });
      const href = `#/projects/${enc(project)}/instances/${enc(inst.name)}`;
      const link = h("a", { href }, inst.name);
      if (starting && inst.status_reason) {
        // Created, but its start failed: say so, with the reason, not just "created".
        result.replaceChildren(
          h(
            "div",
            { class: "error", role: "alert" },
            h(
              "p",
              { class: "error-title" },
              h("strong", {}, "Created "),
              link,
              h("strong", {}, ", but it did not start"),
            ),
            reasonBlock(inst.status_reason, { diagnosisOpen: true }),
          ),
        );
      } else {
        result.replaceChildren(
          h(
            "p",
            { class: "notice", role: "status" },
            "Created ",
            link,
            ": ",
            stateBadge(inst.run_state),
            ".",
          ),
        );
        form.reset();
      }
      onCreated();
    } catch (e) {
      showError(result, e, { title: `${instanceName} was not created` });
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export async function renderProject(main, [project], { signal }) {
  document.title = `${project} · Skylight`;
  const list = h("div", { class: "list" }, h("p", { class: "muted" }, "Loading instances…"));
  const live = liveStatus("instance states change");
  async function load() {
    try {
      const instances = await all("/v1/instances", { query: { project }, signal });
      list.replaceChildren(instanceTable(project, instances));
    } catch (e) {
      if (signal.aborted) return;
      showError(list, e, { title: "The instances could not be listed" });
    }
  }
  const reloads = perBurst(load, signal);
  const reloadSoon = reloads.soon;

  const description = h("p", { class: "muted" });
  add(
    main,
    breadcrumbs(["Projects", "#/projects"], [project, null]),
    h("h1", { tabindex: "-1" }, `Project ${project}`),
    description,
    takeNotice(),
    h(
      "section",
      { "aria-labelledby": "instances-h" },
      h("h2", { id: "instances-h" }, "Instances"),
      live.el,
      list,
    ),
    createForm(project, reloadSoon),
  );

  const view = await api("GET", `/v1/projects/${enc(project)}`, { signal });
  description.textContent = view.description;
  reloads.now();
  follow("/v1/events/stream", {
    query: { project },
    signal,
    onEvent: reloadSoon,
    onStatus: (state, error) => live.set(state, error),
  });
}
