// Shared rendering: a tiny DOM builder (text only, never HTML from data), formats, and the
// blocks every page shows: errors, reasons with their diagnosis, events.

import { isOperator } from "./api.js";

/** ``h("p", {class: "x"}, "text", child)``: an element; attributes starting with "on" are
 * listeners; null/false children are skipped; strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** Append ``children`` to ``el`` as ``h`` does (null/false skipped, arrays flattened). */
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const GiB = 1024 ** 3;

export function gib(bytes) {
  const v = bytes / GiB;
  return `${Number.isInteger(v) ? v : v.toFixed(1)} GiB`;
}

const pad = (n) => String(n).padStart(2, "0");

/** An API time in the browser's local time: 2026-01-02 03:04:05. */
export function when(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  return (
    `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ` +
    `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`
  );
}

export function timeEl(iso) {
  return h("time", { datetime: iso }, when(iso));
}

export function actorText(actor) {
  if (!actor) return "";
  if (actor.type === "user") return "user";
  const kind = String(actor.type ?? "").replaceAll("_", " ");
  return actor.cause ? `${kind} (${String(actor.cause).replaceAll("_", " ")})` : kind;
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state);
}

/** An API error as people need it: what failed, the message, the request id to quote. */
export function errorBox(err, { title = "The request failed" } = {}) {
  const status = err.status ? `${err.status}${err.errorCode ? ` ${err.errorCode}` : ""}` : "";
  return h(
    "div",
    { class: "error", role: "alert" },
    h("p", { class: "error-title" }, h("strong", {}, title), status ? ` (${status})` : ""),
    h("p", { class: "error-message" }, err.message),
    err.reason
      ? reasonBlock(err.reason, {
          diagnosisOpen: true,
          hideMessage: err.reason.message === err.message, // said just above
        })
      : null,
    h(
      "p",
      { class: "error-meta" },
      err.requestId ? ["request id ", h("code", { class: "request-id" }, err.requestId)] : null,
      err.request ? [err.requestId ? " · " : "", h("code", {}, err.request)] : null,
    ),
  );
}

/** Show ``err`` in ``slot`` (an ApiError, or any other error as its message). */
export function showError(slot, err, options) {
  slot.replaceChildren(errorBox(err, options));
}

// The placement checks, as filters.py words them (counts are of sleds).
export const CHECKS = {
  not_in_service: "not in service",
  not_provisionable: "not taking instances (in maintenance, or its agent not answering)",
  local_storage: "unable to hold the instance's local disks",
  cpu_platform: "a different CPU platform",
  affinity: "outside the instance's affinity group",
  anti_affinity: "hosting a member of its anti-affinity group",
  too_small: "too small for it",
  too_few_cpus: "too few free vCPUs",
  too_little_memory: "too little free memory",
};

function shortfallText(short) {
  if (!short) return "";
  const parts = [];
  if (short.vcpus) parts.push(`${short.vcpus} vCPUs`);
  if (short.memory) parts.push(`${gib(short.memory)} of memory`);
  if (short.local_storage) parts.push(`${gib(short.local_storage)} of local storage`);
  return parts.join(" and ");
}

/** A placement diagnosis: every sled counted once, the closest sled's shortfall, and for
 * operators which sled failed which checks. */
export function diagnosisBlock(diagnosis, { open = false } = {}) {
  const counts = Object.entries(diagnosis.counts ?? {}).filter(([, n]) => n);
  const lacks = shortfallText(diagnosis.shortfall);
  const sleds = diagnosis.sleds ? Object.entries(diagnosis.sleds) : null;
  const groups = diagnosis.sled_groups ?? null;
  return h(
    "details",
    { class: "diagnosis", open },
    h("summary", {}, `Placement diagnosis: all ${diagnosis.sleds_total} sleds accounted for`),
    h(
      "ul",
      { class: "counts" },
      counts.length
        ? counts.map(([check, n]) =>
            h(
              "li",
              { dataset: { check } },
              h("strong", {}, String(n)),
              ` ${CHECKS[check] ?? check}`,
            ),
          )
        : h("li", {}, "no sleds"),
    ),
    lacks ? h("p", { class: "shortfall" }, `The closest sled lacks ${lacks}.`) : null,
    sleds
      ? h(
          "div",
          { class: "operator-only" },
          h("p", {}, h("strong", {}, "Per sled"), " (operators)"),
          h(
            "ul",
            { class: "per-sled" },
            sleds.map(([id, checks]) =>
              h(
                "li",
                {},
                h("code", { class: "sled-id" }, id),
                ": ",
                checks.map((c) => CHECKS[c] ?? c).join(", "),
              ),
            ),
          ),
        )
      : null,
    groups
      ? h(
          "div",
          { class: "operator-only" },
          h("p", {}, h("strong", {}, "Sleds by failed checks"), " (operators)"),
          h(
            "ul",
            { class: "per-sled" },
            groups.map((g) =>
              h(
                "li",
                {},
                `${g.count} sleds: ${g.checks.map((c) => CHECKS[c] ?? c).join(", ")} — e.g. `,
                g.sample.map((id, i) => [i ? ", " : "", h("code", { class: "sled-id" }, id)]),
              ),
            ),
          ),
        )
      : null,
  );
}

/** The ``internal`` part of a reason (operators only): sled ids, sled-agent errors. */
export function internalBlock(internal) {
  return h(
    "div",
    { class: "operator-only internal" },
    h("p", {}, h("strong", {}, "Internal detail"), " (operators)"),
    h(
      "dl",
      {},
      Object.entries(internal).map(([k, v]) => [
        h("dt", {}, k.replaceAll("_", " ")),
        h("dd", {}, h("code", {}, typeof v === "string" ? v : JSON.stringify(v))),
      ]),
    ),
  );
}

/** A reason: code, message, whether it may pass by itself, what to do, the diagnosis. */
export function reasonBlock(
  reason,
  { diagnosisOpen = false, compact = false, hideMessage = false } = {},
) {
  const transient = Boolean(reason.transient);
  return h(
    "div",
    {
      class: ["reason", transient ? "reason-transient" : "reason-permanent", compact && "compact"]
        .filter(Boolean)
        .join(" "),
      dataset: { code: reason.code },
    },
    h(
      "p",
      { class: "reason-head" },
      h("code", { class: "reason-code" }, reason.code),
      " ",
      transient
        ? h("span", { class: "badge badge-transient" }, "transient: may pass by itself")
        : h("span", { class: "badge badge-action" }, "needs your action"),
    ),
    hideMessage ? null : h("p", { class: "reason-message" }, reason.message),
    reason.action
      ? h("p", { class: "reason-action" }, h("strong", {}, "What you can do: "), reason.action)
      : null,
    reason.diagnosis ? diagnosisBlock(reason.diagnosis, { open: diagnosisOpen }) : null,
    reason.internal && isOperator() ? internalBlock(reason.internal) : null,
  );
}

function detailBlock(detail) {
  const entries = Object.entries(detail).filter(([k]) => k !== "internal" || isOperator());
  if (!entries.length) return null;
  return h(
    "dl",
    { class: "event-detail" },
    entries.map(([k, v]) => [
      h("dt", {}, k.replaceAll("_", " ")),
      h(
        "dd",
        {},
        typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)
          ? timeEl(v)
          : typeof v === "string"
            ? v
            : h("code", {}, JSON.stringify(v)),
      ),
    ]),
  );
}

/** One event of a timeline. */
export function eventItem(e, { statusEventId = null, fresh = false } = {}) {
  const repeated = e.count > 1;
  return h(
    "li",
    {
      class: `event sev-${e.severity}${fresh ? " fresh" : ""}`,
      dataset: { eventId: e.id, kind: e.kind },
    },
    h(
      "p",
      { class: "event-head" },
      h("span", { class: `severity severity-${e.severity}` }, e.severity),
      " ",
      h("code", { class: "event-kind" }, e.kind),
      repeated
        ? h("span", { class: "count", title: "identical repeats, coalesced" }, ` ×${e.count}`)
        : null,
      " ",
      h(
        "span",
        { class: "event-time" },
        repeated ? [timeEl(e.time), " – ", timeEl(e.time_last)] : timeEl(e.time),
      ),
      e.id === statusEventId
        ? h("span", { class: "badge badge-status" }, "current status reason")
        : null,
    ),
    h(
      "p",
      { class: "event-meta" },
      `by ${actorText(e.actor)} · run state `,
      h("span", { class: `state-text state-${e.run_state}` }, e.run_state),
      e.operation_id
        ? [" · operation ", h("code", { title: e.operation_id }, e.operation_id.slice(-12))]
        : null,
    ),
    e.reason ? reasonBlock(e.reason, { compact: true }) : null,
    e.detail ? detailBlock(e.detail) : null,
  );
}

/** A button that runs ``fn`` once at a time: disabled, with ``busyText``, while it runs. */
export function actionButton(label, fn, { busyText = `${label}…`, kind = "", ...attrs } = {}) {
  const button = h("button", { type: "button", class: kind, ...attrs }, label);
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = busyText;
    try {
      await fn();
    } finally {
      button.disabled = button.dataset.blocked === "true"; // the action may have changed that
      button.removeAttribute("aria-busy");
      button.textContent = label;
    }
  });
  return button;
}

/** Enable ``button`` when ``why`` is null; otherwise disable it and say why (as its title). */
export function allow(button, why) {
  button.dataset.blocked = String(Boolean(why));
  if (button.getAttribute("aria-busy") !== "true") button.disabled = Boolean(why);
  if (why) button.title = why;
  else button.removeAttribute("title");
}

export function breadcrumbs(...links) {
  return h(
    "nav",
    { class: "crumbs", "aria-label": "Breadcrumb" },
    h(
      "ol",
      {},
      links.map(([text, href], i) =>
        h(
          "li",
          {},
          href && i < links.length - 1
            ? h("a", { href }, text)
            : h("span", { "aria-current": "page" }, text),
        ),
      ),
    ),
  );
}

/** The line that says whether a page is live: connecting, live, reconnecting, or not. */
export function liveStatus(what) {
  const el = h("p", { class: "live", role: "status" }, "Connecting to the live stream…");
  const texts = {
    connecting: "Connecting to the live stream…",
    live: `Live: ${what} as they happen.`,
    reconnecting: "The live stream dropped; reconnecting (nothing will be missed)…",
  };
  return {
    el,
    set(state, error) {
      el.dataset.state = state;
      const id = error?.requestId ? ` (request id ${error.requestId})` : "";
      const closed = `Not live: ${error?.message ?? "the stream ended"}${id}`;
      el.textContent = state === "closed" ? closed : texts[state];
    },
  };
}

export const enc = encodeURIComponent;
