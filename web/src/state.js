// App state shared by every page: the public config, the signed-in user and
// their workspaces, and the workspace chosen in the header switcher (its id
// is remembered in localStorage; it is not a secret).

import { get, hasSessionCookie, clearCsrf } from "./api.js";

export const state = {
  config: { turnstile: { required: false, site_key: null }, environment: "local" },
  me: null, // { user, workspaces, session } from GET /me
  workspaces: [], // Workspace[] from GET /workspaces (with role and settings)
  workspaceId: null,
};

/** Fires "change" (account or workspaces changed) and "workspace" (switcher). */
export const bus = new EventTarget();

const WS_KEY = "bf_workspace";

export const signedIn = () => state.me !== null;
export const user = () => (state.me ? state.me.user : null);

export function currentWorkspace() {
  return state.workspaces.find((w) => w.id === state.workspaceId) || null;
}

/** Whether the caller is an admin or owner of the current workspace. */
export function isAdmin(ws = currentWorkspace()) {
  return Boolean(ws && (ws.role === "owner" || ws.role === "admin"));
}

/** Whether the caller may create sessions and manage templates (not a viewer). */
export function canWrite(ws = currentWorkspace()) {
  return Boolean(ws && ws.role !== "viewer");
}

export function setWorkspace(id, { silent = false } = {}) {
  if (!state.workspaces.some((w) => w.id === id) || state.workspaceId === id) return;
  state.workspaceId = id;
  try {
    localStorage.setItem(WS_KEY, id);
  } catch {
    /* storage unavailable: the choice lasts for this page only */
  }
  bus.dispatchEvent(new CustomEvent("workspace", { detail: { silent } }));
}

/** Loads the public config (no auth). Failures keep the local defaults. */
export async function loadConfig() {
  try {
    state.config = await get("/config");
  } catch {
    /* keep defaults: manual Turnstile field */
  }
}

/** Loads /me and /workspaces; answers false when there is no browser session. */
export async function loadAccount() {
  // Only ask when the readable CSRF cookie says a session exists, so a
  // signed-out visit makes no request that is bound to fail (401).
  if (!hasSessionCookie()) {
    resetAccount();
    return false;
  }
  try {
    // One after the other: a stale cookie then costs a single 401.
    const me = await get("/me");
    state.workspaces = await get("/workspaces");
    state.me = me;
  } catch (err) {
    if (err.status === 401) {
      clearCsrf();
      resetAccount();
      return false;
    }
    throw err;
  }
  let saved = null;
  try {
    saved = localStorage.getItem(WS_KEY);
  } catch {
    /* ignore */
  }
  const ids = state.workspaces.map((w) => w.id);
  state.workspaceId = ids.includes(state.workspaceId)
    ? state.workspaceId
    : ids.includes(saved)
      ? saved
      : ids[0] || null;
  bus.dispatchEvent(new Event("change"));
  return true;
}

/** Reloads the workspace list (after create, rename, settings, leave). */
export async function reloadWorkspaces() {
  state.workspaces = await get("/workspaces");
  if (!state.workspaces.some((w) => w.id === state.workspaceId)) {
    state.workspaceId = state.workspaces[0] ? state.workspaces[0].id : null;
  }
  bus.dispatchEvent(new Event("change"));
}

export function resetAccount() {
  const was = state.me !== null;
  state.me = null;
  state.workspaces = [];
  state.workspaceId = null;
  if (was) bus.dispatchEvent(new Event("change"));
}
