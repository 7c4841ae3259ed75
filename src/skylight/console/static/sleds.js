// #/sleds (operator view): every sled, its policies, capacity and what is reserved on it.

import { all, isOperator } from "./api.js";
import { gib, h, showError } from "./ui.js";

function used(reserved, total, text) {
  const share = total ? Math.min(1, reserved / total) : 0;
  return h(
    "td",
    { class: "usage" },
    h("span", {}, text),
    h("meter", {
      min: "0",
      max: String(total || 1),
      value: String(reserved),
      title: `${Math.round(share * 100)}% reserved`,
    }),
  );
}

function sledRow(s) {
  const provision = s.policy.provision_policy ?? "—";
  return h(
    "tr",
    { dataset: { sledId: s.id } },
    h("th", { scope: "row" }, h("code", { class: "sled-id" }, s.id)),
    h("td", {}, s.baseboard.serial, s.slot === null ? "" : ` (slot ${s.slot})`),
    h("td", { class: `policy policy-${s.policy.kind}` }, s.policy.kind.replaceAll("_", " ")),
    h("td", { class: `provision provision-${provision}` }, provision.replaceAll("_", " ")),
    h("td", {}, s.state),
    h("td", {}, s.cpu_family),
    used(
      s.reserved_hardware_threads,
      s.usable_hardware_threads,
      `${s.reserved_hardware_threads} of ${s.usable_hardware_threads}`,
    ),
    used(
      s.reserved_memory,
      s.usable_physical_ram,
      `${gib(s.reserved_memory)} of ${gib(s.usable_physical_ram)}`,
    ),
    used(
      s.reserved_local_storage,
      s.local_storage,
      `${gib(s.reserved_local_storage)} of ${gib(s.local_storage)}`,
    ),
  );
}

export async function renderSleds(main, _params, { signal }) {
  document.title = "Sleds · Skylight";
  main.append(h("h1", { tabindex: "-1" }, "Sleds"));
  if (!isOperator()) {
    main.append(
      h("p", {}, "The sleds are for operators: fleet viewers and fleet administrators."),
    );
    return;
  }
  const list = h("div", { class: "list" }, h("p", { class: "muted" }, "Loading sleds…"));
  main.append(list);
  try {
    const sleds = await all("/v1/system/hardware/sleds", { signal });
    const totals = sleds.reduce(
      (t, s) => ({
        cpus: t.cpus + s.usable_hardware_threads,
        reservedCpus: t.reservedCpus + s.reserved_hardware_threads,
        memory: t.memory + s.usable_physical_ram,
        reservedMemory: t.reservedMemory + s.reserved_memory,
      }),
      { cpus: 0, reservedCpus: 0, memory: 0, reservedMemory: 0 },
    );
    list.replaceChildren(
      h(
        "p",
        {},
        `${sleds.length} sleds; ${totals.reservedCpus} of ${totals.cpus} hardware threads and `,
        `${gib(totals.reservedMemory)} of ${gib(totals.memory)} of memory reserved.`,
      ),
      h(
        "table",
        { class: "sleds" },
        h("caption", { class: "visually-hidden" }, "Sleds"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "Sled",
              "Serial",
              "Policy",
              "Provision policy",
              "State",
              "CPU family",
              "Hardware threads reserved",
              "Memory reserved",
              "Local storage reserved",
            ].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        h("tbody", {}, sleds.map(sledRow)),
      ),
    );
  } catch (e) {
    if (signal.aborted) return;
    showError(list, e, { title: "The sleds could not be listed" });
  }
}
