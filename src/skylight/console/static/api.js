// The console's only way to the server: the public JSON API, as any other client uses it,
// authenticated by the ``session`` cookie the login page obtained.

let me = null; // the signed-in user (GET /v1/me), or null before sign-in

/** The signed-in user, as /v1/me shows them. */
export function currentUser() {
  return me;
}

export function setCurrentUser(user) {
  me = user;
}

/** Operator detail (sled ids, internal reasons, the sleds page) is for fleet viewers: the
 * server decides by role and the console only follows. */
export function isOperator() {
  return Boolean(me?.fleet_viewer);
}

/** Request headers. The session cookie (HttpOnly, set at login) goes along by itself. */
export function headers(extra = {}) {
  return { Accept: "application/json", ...extra };
}

/** An API error: the Oxide Error body (request_id, error_code, message) and, for failed
 * operations, Skylight's explained reason. ``status`` 0 means the server was not reached. */
export class ApiError extends Error {
  constructor({ status, errorCode = null, message, requestId = null, reason = null, request }) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.errorCode = errorCode;
    this.requestId = requestId;
    this.reason = reason;
    this.request = request;
  }
}

export function url(path, query = {}) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
  }
  return u;
}

/** The ApiError of a response that is not ok (reads its body). */
export async function errorOf(resp, request) {
  const text = await resp.text().catch(() => "");
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return new ApiError({
    status: resp.status,
    errorCode: body?.error_code ?? null,
    message: body?.message ?? (text.trim() || resp.statusText || `HTTP ${resp.status}`),
    requestId: body?.request_id ?? resp.headers.get("x-request-id"),
    reason: body?.reason ?? null,
    request,
  });
}

/** Call the API; answers the parsed JSON (null for 204) or throws an ApiError. An aborted
 * call (``signal``) throws the browser's AbortError. */
export async function api(method, path, { query = {}, body, signal, extraHeaders = {} } = {}) {
  const u = url(path, query);
  const request = `${method} ${u.pathname}${u.search}`;
  const init = { method, headers: headers(extraHeaders), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(u, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError({
      status: 0,
      message: `Could not reach the Skylight API (${e.message}).`,
      request,
    });
  }
  if (!resp.ok) throw await errorOf(resp, request);
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

/** Every item of a paginated list (following next_page), up to ``max`` items. */
export async function all(path, { query = {}, signal, max = 10000 } = {}) {
  const items = [];
  let token = null;
  do {
    const q = { limit: 1000, ...query, ...(token ? { page_token: token } : {}) };
    const page = await api("GET", path, { query: q, signal });
    items.push(...page.items);
    token = page.next_page;
  } while (token && items.length < max);
  return items;
}
