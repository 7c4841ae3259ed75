// Server-Sent Events read with fetch and a stream reader (EventSource cannot send
// Last-Event-ID on the first connection). A dropped connection is resumed with Last-Event-ID: no gap, no repeat.

import { errorOf, headers, url } from "./api.js";

const SILENCE_MS = 45000; // the server sends a keepalive every 15 s; longer silence = dead

/** Parse an SSE byte stream into messages ``{id, event, data, retry}``. Comment lines
 * (keepalives) are skipped; a message with only an ``id`` (the server's opening cursor)
 * is yielded too, with ``data`` null. */
async function* messages(body, onBytes) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let msg = { id: null, event: "message", data: [], retry: null };
  let seen = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      onBytes();
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (seen) yield { ...msg, data: msg.data.length ? msg.data.join("\n") : null };
          msg = { id: null, event: "message", data: [], retry: null };
          seen = false;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        seen = true;
        if (field === "data") msg.data.push(value);
        else if (field === "event") msg.event = value;
        else if (field === "id" && !value.includes("\0")) msg.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) msg.retry = Number(value);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Follow an event stream until ``signal`` aborts.
 *
 * - ``onEvent(event)``: each event's JSON, in commit order (a coalesced event comes again
 *   with its new count).
 * - ``onOpen(cursor, resumed)``: a connection is open and the server has fixed its cursor:
 *   nothing committed from now on will be missed.
 * - ``onStatus(state, error)``: "connecting", "live", "reconnecting" or "closed" (a 4xx:
 *   retrying would not help; ``error`` is the ApiError).
 */
export function follow(path, { query = {}, signal, onEvent, onOpen, onStatus = () => {} }) {
  let lastId = null;
  let retryMs = 2000;
  let failures = 0;

  async function connectOnce() {
    const conn = new AbortController();
    const stop = () => conn.abort();
    signal.addEventListener("abort", stop);
    let watchdog = null;
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(stop, SILENCE_MS);
    };
    try {
      const h = headers({ Accept: "text/event-stream" });
      const resumed = lastId !== null;
      if (resumed) h["Last-Event-ID"] = lastId;
      const u = url(path, query);
      alive();
      const resp = await fetch(u, { headers: h, signal: conn.signal, cache: "no-store" });
      if (!resp.ok) {
        const error = await errorOf(resp, `GET ${u.pathname}${u.search}`);
        if (resp.status >= 400 && resp.status < 500) {
          onStatus("closed", error);
          return false;
        }
        throw error;
      }
      let opened = false;
      for await (const msg of messages(resp.body, alive)) {
        if (msg.retry !== null) retryMs = msg.retry;
        if (msg.id !== null) lastId = msg.id;
        if (!opened) {
          opened = true;
          failures = 0;
          onStatus("live");
          onOpen?.(lastId, resumed);
        }
        if (msg.data !== null) {
          let event;
          try {
            event = JSON.parse(msg.data);
          } catch {
            continue;
          }
          onEvent(event);
        }
      }
    } catch (e) {
      if (signal.aborted) return false;
      failures += 1;
    } finally {
      clearTimeout(watchdog);
      signal.removeEventListener("abort", stop);
    }
    return !signal.aborted;
  }

  (async () => {
    onStatus("connecting");
    while (!signal.aborted) {
      if (!(await connectOnce())) return;
      onStatus("reconnecting");
      // The server's retry hint, doubled after each further failure (at most 30 s).
      await sleep(Math.min(retryMs * 2 ** Math.min(Math.max(failures - 1, 0), 4), 30000), signal);
    }
  })();
}

/**
 * One reload per burst of events, one at a time: events come in bursts (a start writes
 * several), and each would otherwise read the page again.
 *
 * - ``soon()``: run ``load`` 100 ms after the first event of a burst (the others join it),
 *   after any load still running.
 * - ``now()``: run ``load`` after any load still running, at once.
 *
 * A load still waiting when ``signal`` aborts never runs.
 */
export function perBurst(load, signal) {
  let running = Promise.resolve();
  let pending = null;
  signal.addEventListener("abort", () => clearTimeout(pending));
  const now = () => {
    running = running.then(load);
  };
  const soon = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      now();
    }, 100);
  };
  return { now, soon };
}
