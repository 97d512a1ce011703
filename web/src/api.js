// A small fetch wrapper for `/api/v1`: JSON in and out, the CSRF header on
// every mutating request (cookie authentication), and the error envelope
// turned into an `ApiError` with `.code`, `.status`, `.details`, `.requestId`.
//
// The CSRF token lives in memory only (never in localStorage/sessionStorage).
// After a reload it is read back from the `bf_csrf` cookie, which the server
// sets without HttpOnly for exactly this purpose.

export const API = "/api/v1";

let csrfToken = null;
const hooks = { onSync: () => {}, onUnauthenticated: () => {} };

export class ApiError extends Error {
  constructor(status, code, message, details, requestId) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.requestId = requestId || null;
  }
}

/** Reads a cookie readable by the page (`bf_csrf`). */
export function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return null;
}

/** Whether the page holds a browser session (the readable half of the cookie pair). */
export function hasSessionCookie() {
  return Boolean(readCookie("bf_csrf"));
}

/** Forgets the CSRF token; expires a stale `bf_csrf` cookie (the server's session is gone). */
export function clearCsrf() {
  csrfToken = null;
  if (readCookie("bf_csrf") !== null) {
    const secure = window.isSecureContext ? "; Secure" : "";
    document.cookie = `bf_csrf=; Path=/; Max-Age=0; SameSite=Lax${secure}`;
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
}

function currentCsrf() {
  // The cookie is authoritative (a sign-in in another tab replaces it).
  return readCookie("bf_csrf") || csrfToken;
}

/** Installs app-wide callbacks: `onSync()` after every successful GET, `onUnauthenticated(err)`. */
export function setHooks(h) {
  Object.assign(hooks, h);
}

function buildUrl(path, query) {
  const url = new URL(API + path, location.origin);
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
    }
  }
  return url.pathname + url.search;
}

/**
 * Calls the API. `path` is relative to /api/v1 (`/sessions`). Options:
 * `body` (JSON; non-GET requests send `{}` by default), `query` (object),
 * `signal`. Answers the parsed JSON, text for text responses, or null (204).
 */
export async function request(method, path, { body, query, signal } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", signal };
  if (method !== "GET" && method !== "HEAD") {
    headers["Content-Type"] = "application/json";
    const token = currentCsrf();
    if (token) headers["X-CSRF-Token"] = token;
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let resp;
  try {
    resp = await fetch(buildUrl(path, query), init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "The server could not be reached; check your connection.");
  }
  const type = resp.headers.get("content-type") || "";
  if (!resp.ok) {
    let env = null;
    if (type.includes("json")) env = await resp.json().catch(() => null);
    const e = env && env.error;
    const err = e
      ? new ApiError(resp.status, e.code || "unknown", e.message || `HTTP ${resp.status}`, e.details, e.request_id)
      : new ApiError(resp.status, "http_error", `The server answered HTTP ${resp.status}.`);
    if (resp.status === 401 && (err.code === "unauthenticated" || err.code === "invalid_token")) {
      hooks.onUnauthenticated(err);
    }
    throw err;
  }
  if (method === "GET") hooks.onSync();
  if (resp.status === 204) return null;
  if (type.includes("json")) return resp.json();
  return resp.text();
}

export const get = (path, query, opts) => request("GET", path, { ...opts, query });
export const post = (path, body, opts) => request("POST", path, { ...opts, body });
export const patch = (path, body, opts) => request("PATCH", path, { ...opts, body });
export const del = (path, opts) => request("DELETE", path, opts);

/** Fetches every page of a paged list (`{items, next_cursor}`), up to `max` items. */
export async function getAll(path, query = {}, max = 1000) {
  const items = [];
  let cursor;
  do {
    const page = await get(path, { ...query, limit: 200, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

/** Uploads bytes to a signed upload URL (grant in the query; no other credential). */
export async function uploadTo(uploadUrl, file, contentType) {
  // The grant URL names the public origin; keep the request same-origin.
  const u = new URL(uploadUrl, location.origin);
  let resp;
  try {
    resp = await fetch(u.pathname + u.search, {
      method: "PUT",
      body: file,
      headers: { "Content-Type": contentType || "application/octet-stream" },
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network", "The upload could not reach the server.");
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const e = data && data.error;
    throw new ApiError(resp.status, e ? e.code : "http_error", e ? e.message : `Upload failed (HTTP ${resp.status})`, e && e.details, e && e.request_id);
  }
  return data;
}

/** A path segment, encoded. */
export const seg = (s) => encodeURIComponent(s);
