// #/projects/{project}/instances/{instance}: its state and status reason, the actions, the
// event timeline (newest first, live from the stream) and the placement dry run.

import { api } from "./api.js";
import { navigate } from "./nav.js";
import { follow, perBurst } from "./stream.js";
import {
  actionButton,
  add,
  allow,
  breadcrumbs,
  enc,
  diagnosisBlock,
  eventItem,
  gib,
  h,
  internalBlock,
  liveStatus,
  reasonBlock,
  showError,
  stateBadge,
  timeEl,
} from "./ui.js";

const PAGE = 50;

function summary(inst) {
  const row = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
  return h(
    "dl",
    { class: "summary" },
    row("Run state", h("span", { class: "run-state" }, stateBadge(inst.run_state))),
    row("Intended state", h("span", { class: "intended-state" }, inst.intended_state)),
    row("Size", `${inst.ncpus} vCPUs, ${gib(inst.memory)}`),
    row("Hostname", inst.hostname),
    row(
      "Auto-restart",
      inst.auto_restart_enabled
        ? `on (${inst.auto_restart_policy ?? "best_effort, the default"})`
        : "off",
    ),
    row("State since", timeEl(inst.time_run_state_updated)),
    row("Id", h("code", {}, inst.id)),
  );
}

const GiB = 1024 ** 3;

// What each action needs of the instance (the API's rules), and why not otherwise: a button
// that would only earn an error is disabled and says why.
const RESTING = ["stopped", "failed"];
const NEEDS = {
  start: (i) => (RESTING.includes(i.run_state) ? null : `It is ${i.run_state} already.`),
  stop: (i) =>
    ["running", "starting", "rebooting", "failed"].includes(i.run_state)
      ? null
      : `It is ${i.run_state}.`,
  reboot: (i) => (i.run_state === "running" ? null : "Only a running instance can be rebooted."),
  delete: (i) => (RESTING.includes(i.run_state) ? null : "Stop it first."),
  resize: (i) => (RESTING.includes(i.run_state) ? null : "Stop it first to change its size."),
};

/** The size the reason's fix asks for, when the fix is a resize: the instance's own size,
 * cut down to what the largest sled can hold. */
function resizeFix(inst) {
  const within = inst.status_reason?.diagnosis?.fits_within;
  if (!within) return null;
  const ncpus = Math.min(inst.ncpus, within.ncpus);
  const memory = Math.min(inst.memory, within.memory);
  if (ncpus === inst.ncpus && memory === inst.memory) return null;
  return { ncpus, memory };
}

function badge(reason) {
  const auto = reason.auto_restart;
  if (!reason.transient) return h("span", { class: "badge badge-action" }, "needs your action");
  if (auto && (auto.state === "scheduled" || auto.state === "restarting")) {
    return h("span", { class: "badge badge-transient" }, "transient: Skylight retries");
  }
  return h("span", { class: "badge badge-transient" }, "transient: a later start may work");
}

/** The story of the instance's trouble: since when, what happened, what Skylight is doing,
 * what you can do (the fix, said once), and the fix as a button where it is a resize. */
function statusBlock(inst, fixButton) {
  const reason = inst.status_reason;
  if (!reason) {
    return h(
      "p",
      { class: "status-ok" },
      `No status reason: the instance is where you want it (${inst.intended_state}).`,
    );
  }
  const line = (cls, label, ...text) => h("p", { class: cls }, h("strong", {}, label), ...text);
  return h(
    "div",
    {
      class: `status-reason reason ${reason.transient ? "reason-transient" : "reason-permanent"}`,
      dataset: { code: reason.code },
    },
    h(
      "p",
      { class: "status-lead" },
      inst.run_state === inst.intended_state
        ? `Why it is ${inst.run_state}, since `
        : `It is ${inst.run_state} while you want it ${inst.intended_state}, since `,
      timeEl(reason.since),
      ":",
    ),
    h("p", { class: "reason-head" }, h("code", { class: "reason-code" }, reason.code), " ", badge(reason)),
    line("story-happened", "What happened: ", reason.happened),
    line("story-doing", "What Skylight is doing: ", reason.doing),
    reason.action ? line("reason-action", "What you can do: ", reason.action) : null,
    fixButton,
    reason.diagnosis ? diagnosisBlock(reason.diagnosis, { open: true }) : null,
    reason.internal ? internalBlock(reason.internal) : null,
  );
}

function resizeForm(inst, onSubmit) {
  const fix = resizeFix(inst);
  const cpus = h("input", {
    id: "resize-ncpus",
    type: "number",
    min: "1",
    step: "1",
    required: true,
    value: String(fix?.ncpus ?? inst.ncpus),
  });
  const mem = h("input", {
    id: "resize-memory",
    type: "number",
    min: "1",
    step: "1",
    required: true,
    value: String((fix?.memory ?? inst.memory) / GiB),
  });
  const startAfter = h("input", {
    id: "resize-start",
    type: "checkbox",
    checked: inst.intended_state === "running" || Boolean(inst.status_reason),
  });
  const form = h(
    "form",
    { class: "resize-form", "aria-label": "Resize" },
    h("label", { for: "resize-ncpus" }, "vCPUs"),
    cpus,
    h("label", { for: "resize-memory" }, "Memory (GiB)"),
    mem,
    h("label", { class: "inline" }, startAfter, " start it after the change"),
    h("button", { type: "submit" }, "Apply"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const size = { ncpus: Number(cpus.value), memory: Number(mem.value) * GiB };
    onSubmit(size, startAfter.checked);
  });
  return form;
}

function placementResult(out) {
  const req = out.request;
  const asked = h(
    "p",
    {},
    `Asked for ${req.ncpus} vCPUs and ${gib(req.memory)}`,
    req.local_storage ? `, ${gib(req.local_storage)} of local disks` : "",
    req.cpu_platform ? `, CPU platform ${req.cpu_platform}` : "",
    ".",
  );
  if (!out.fits) {
    return h(
      "div",
      { class: "placement" },
      h("p", { class: "placement-verdict" }, h("strong", {}, "No sled can take it now.")),
      asked,
      reasonBlock(out.reason, { diagnosisOpen: true }),
    );
  }
  return h(
    "div",
    { class: "placement" },
    h(
      "p",
      { class: "placement-verdict" },
      h("strong", {}, "It fits: "),
      out.sled_id
        ? ["a start now would place it on sled ", h("code", { class: "sled-id" }, out.sled_id), "."]
        : "a start now would find a sled for it.",
    ),
    out.current_sled_id
      ? h("p", {}, "It is on sled ", h("code", { class: "sled-id" }, out.current_sled_id), " now.")
      : null,
    asked,
    out.broken_preferences.length
      ? h(
          "p",
          {},
          "Preferences it would not keep: ",
          out.broken_preferences
            .map((p) => `${p.kind.replace("_", "-")} group ${p.group}`)
            .join(", "),
          ".",
        )
      : null,
  );
}

export async function renderInstance(main, [project, name], { signal }) {
  document.title = `${name} · ${project} · Skylight`;
  const base = `/v1/instances/${enc(name)}`;
  const inProject = { project };

  const heading = h("h1", { tabindex: "-1" }, name, " ");
  const status = h("div", { class: "status" });
  const details = h("div");
  const answer = h("div", { class: "action-result" });
  const timeline = h("ol", { class: "timeline", "aria-label": "Events, newest first" });
  const older = h("div");
  const live = liveStatus("new events appear here");
  const placementOut = h("div", { class: "placement-out" });

  let inst = await api("GET", base, { query: inProject, signal });
  const id = inst.id;
  const events = new Map(); // event id -> [event, <li>]
  let statusEventId = null;

  // Newest first by latest occurrence: a coalesced event (placed ×4) sorts by its last
  // repeat, not its first, wherever it came from (a page, or the stream).
  function put(e, { fresh = false } = {}) {
    const li = eventItem(e, { statusEventId, fresh });
    const old = events.get(e.id);
    if (old) old[1].remove();
    events.set(e.id, [e, li]);
    const last = Date.parse(e.time_last);
    li.dataset.last = String(last);
    const before = [...timeline.children].find((x) => Number(x.dataset.last) < last);
    timeline.insertBefore(li, before ?? null);
  }

  const buttons = {};
  const fixSlot = h("div", { class: "fix-result" });

  function show(next) {
    inst = next;
    heading.replaceChildren(inst.name, " ", stateBadge(inst.run_state));
    const fix = resizeFix(inst);
    const fixButton = fix
      ? h(
          "div",
          { class: "fix" },
          actionButton(
            `Resize to ${fix.ncpus} vCPUs, ${gib(fix.memory)} and start`,
            () => resizeThenStart(fix, true, fixSlot),
            { busyText: "Resizing…", class: "fix-button" },
          ),
        )
      : null;
    // The fix's outcome stays where it was clicked, after the fix itself has gone.
    status.replaceChildren(statusBlock(inst, fixButton), fixSlot);
    details.replaceChildren(summary(inst));
    for (const [verb, button] of Object.entries(buttons)) allow(button, NEEDS[verb](inst));
    const statusId = inst.status_reason?.event_id ?? null;
    if (statusId !== statusEventId) {
      const changed = [statusEventId, statusId];
      statusEventId = statusId;
      for (const eid of changed) {
        const known = eid && events.get(eid);
        if (known) {
          const li = eventItem(known[0], { statusEventId });
          li.dataset.last = known[1].dataset.last;
          known[1].replaceWith(li);
          known[1] = li;
        }
      }
    }
  }

  async function reload() {
    try {
      show(await api("GET", `/v1/instances/${id}`, { signal }));
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 404) {
        status.replaceChildren(
          h("p", { class: "notice", role: "status" }, "This instance has been deleted."),
        );
      } else showError(answer, e, { title: "The instance could not be read" });
    }
  }
  const reloadSoon = perBurst(reload, signal).soon;

  async function loadPage(token) {
    const query = token ? { limit: PAGE, page_token: token } : { limit: PAGE };
    try {
      const page = await api("GET", `/v1/instances/${id}/events`, { query, signal });
      for (const e of page.items) if (!events.has(e.id)) put(e);
      older.replaceChildren(
        page.next_page
          ? actionButton("Load older events", () => loadPage(page.next_page), {
              busyText: "Loading…",
            })
          : events.size
            ? h("p", { class: "muted" }, "These are all its events.")
            : h("p", { class: "muted" }, "No events."),
      );
    } catch (e) {
      if (signal.aborted) return;
      showError(older, e, { title: "The events could not be listed" });
    }
  }

  async function act(verb, label, slot = answer) {
    slot.replaceChildren();
    try {
      const after = await api("POST", `/v1/instances/${id}/${verb}`, { signal });
      slot.replaceChildren(
        h(
          "p",
          { class: "notice", role: "status" },
          `${label}: it is `,
          stateBadge(after.run_state),
          " now.",
        ),
      );
      show(after);
      return true;
    } catch (e) {
      if (signal.aborted) return false;
      showError(slot, e, { title: `${label} failed` });
      reloadSoon();
      return false;
    }
  }

  /** Change the size (the whole update body, as Oxide's PUT wants it); then, if asked,
   * start at once: the outcome shows in ``slot``, where the user clicked. */
  async function resizeThenStart(size, start, slot) {
    slot.replaceChildren();
    const body = {
      ncpus: size.ncpus,
      memory: size.memory,
      auto_restart_policy: inst.auto_restart_policy ?? null,
      boot_disk: inst.boot_disk_id ?? null,
      cpu_platform: inst.cpu_platform ?? null,
      enable_jumbo_frames: inst.enable_jumbo_frames,
    };
    try {
      show(await api("PUT", `/v1/instances/${id}`, { body, signal }));
    } catch (e) {
      if (!signal.aborted) showError(slot, e, { title: "Resize failed" });
      return;
    }
    const done = `Resized to ${size.ncpus} vCPUs, ${gib(size.memory)}`;
    if (!start) {
      slot.replaceChildren(h("p", { class: "notice", role: "status" }, `${done}.`));
      return;
    }
    const result = h("div");
    slot.replaceChildren(h("p", { class: "notice" }, `${done}; starting it.`), result);
    await act("start", "Start", result);
  }

  const resizeSlot = h("div", { class: "resize" });
  const resizeResult = h("div", { class: "resize-result" });
  function openResize() {
    resizeSlot.replaceChildren(
      resizeForm(inst, (size, start) => resizeThenStart(size, start, resizeResult)),
      resizeResult,
    );
    resizeSlot.querySelector("input")?.focus();
  }

  function confirmDelete() {
    const yes = actionButton(
      `Delete ${inst.name}`,
      async () => {
        try {
          await api("DELETE", `/v1/instances/${id}`, { signal });
          navigate(`#/projects/${enc(project)}`, `Deleted instance ${inst.name}.`);
        } catch (e) {
          if (!signal.aborted) showError(answer, e, { title: "Delete failed" });
        }
      },
      { kind: "danger", busyText: "Deleting…" },
    );
    const no = h("button", { type: "button", onclick: () => answer.replaceChildren() }, "Cancel");
    answer.replaceChildren(
      h(
        "div",
        { class: "confirm", role: "group", "aria-label": "Confirm deletion" },
        h("p", {}, `Delete ${inst.name}? Its events are kept; the instance is gone for good.`),
        yes,
        " ",
        no,
      ),
    );
    yes.focus();
  }

  const placed = inst.run_state === "running" && !inst.status_reason;
  const explainButton = actionButton(
    placed ? "Where would it be placed?" : "Why can't it be placed?",
    async () => {
      try {
        const out = await api("GET", `/v1/instances/${id}/placement`, { signal });
        placementOut.replaceChildren(placementResult(out));
      } catch (e) {
        if (signal.aborted) return;
        showError(placementOut, e, { title: "The placement could not be explained" });
      }
    },
    { busyText: "Asking…" },
  );

  add(
    main,
    breadcrumbs(["Projects", "#/projects"], [project, `#/projects/${enc(project)}`], [name, null]),
    heading,
    h("section", { "aria-labelledby": "status-h" }, h("h2", { id: "status-h" }, "Status"), status),
    h(
      "div",
      { class: "actions", role: "group", "aria-label": "Instance actions" },
      (buttons.start = actionButton("Start", () => act("start", "Start"), {
        busyText: "Starting…",
      })),
      (buttons.stop = actionButton("Stop", () => act("stop", "Stop"), { busyText: "Stopping…" })),
      (buttons.reboot = actionButton("Reboot", () => act("reboot", "Reboot"), {
        busyText: "Rebooting…",
      })),
      (buttons.resize = h("button", { type: "button", onclick: openResize }, "Resize…")),
      (buttons.delete = h(
        "button",
        { type: "button", class: "danger", onclick: confirmDelete },
        "Delete",
      )),
    ),
    answer,
    resizeSlot,
    h(
      "section",
      { "aria-labelledby": "details-h" },
      h("h2", { id: "details-h" }, "Details"),
      details,
    ),
    h(
      "section",
      { "aria-labelledby": "placement-h" },
      h("h2", { id: "placement-h" }, "Placement"),
      h(
        "p",
        { class: "muted" },
        "A dry run: where a start now would place it, or why no sled can take it, " +
          "with every sled accounted for.",
      ),
      explainButton,
      placementOut,
    ),
    h(
      "section",
      { "aria-labelledby": "events-h" },
      h("h2", { id: "events-h" }, "Events"),
      live.el,
      timeline,
      older,
    ),
  );
  show(inst);

  // The stream first: once it is open (its cursor fixed), the first page is read, so no
  // event falls between the two. Events seen on both are shown once.
  let firstPage = null;
  const readFirstPage = () => {
    firstPage ??= loadPage(null);
  };
  follow(`/v1/instances/${id}/events/stream`, {
    signal,
    onOpen: readFirstPage,
    onEvent: (e) => {
      put(e, { fresh: true });
      reloadSoon();
    },
    onStatus: (state, error) => {
      live.set(state, error);
      // Without a stream, still show the history (live updates then need a reload).
      if (state === "closed" || state === "reconnecting") readFirstPage();
    },
  });
}
