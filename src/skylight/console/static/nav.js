// Moving between pages: hash routes, with a message for the page that opens.

import { h } from "./ui.js";

let notice = null;

/** Go to ``hash`` (e.g. "#/projects/demo"), showing ``message`` on the page that opens. */
export function navigate(hash, message = null) {
  notice = message;
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = hash;
}

/** The message left for this page by ``navigate`` (once), as a status line. */
export function takeNotice() {
  const message = notice;
  notice = null;
  return message ? h("p", { class: "notice", role: "status" }, message) : null;
}
