// Entry point of the BurstFlare web app: mounts the shell, restores the
// browser session (if the readable CSRF cookie says there is one), and
// starts the router. The terminal page (xterm.js) is a lazily loaded chunk.

import { setHooks } from "./api.js";
import { bus, state, loadAccount, loadConfig, signedIn } from "./state.js";
import { mountShell, renderNav, markSynced, showError } from "./ui.js";
import { startRouter, navigate, refresh } from "./router.js";
import { signOut, signedOut } from "./signout.js";
import { h } from "./dom.js";
import { signinPage, signupPage } from "./pages/auth.js";
import { dashboardPage } from "./pages/dashboard.js";

// The dashboard and sign-in pages are in the entry bundle; every other page
// is a chunk loaded on first visit (the terminal's carries xterm.js).
const lazy = (load, name) => async (ctx) => (await load())[name](ctx);
const account = () => import("./pages/account.js");
const workspaces = () => import("./pages/workspaces.js");
const templates = () => import("./pages/templates.js");
const sessions = () => import("./pages/sessions.js");
const accountPage = lazy(account, "accountPage");
const devicePage = lazy(() => import("./pages/device.js"), "devicePage");
const workspacesPage = lazy(workspaces, "workspacesPage");
const workspacePage = lazy(workspaces, "workspacePage");
const newTemplatePage = lazy(templates, "newTemplatePage");
const templatePage = lazy(templates, "templatePage");
const newSessionPage = lazy(sessions, "newSessionPage");
const sessionPage = lazy(sessions, "sessionPage");
const keysPage = lazy(() => import("./pages/keys.js"), "keysPage");
const auditPage = lazy(() => import("./pages/audit.js"), "auditPage");
const terminalPage = lazy(() => import("./pages/terminal.js"), "terminalPage");

const notFound = async (ctx) => {
  ctx.show(h("div", { class: "narrow" }, h("h1", null, "Page not found"), h("p", null, "There is nothing at this address. ", h("a", { href: "/" }, "Go to the dashboard"))));
};

const routes = [
  { path: "/", page: dashboardPage, auth: true, title: "Dashboard" },
  { path: "/signin", page: signinPage, title: "Sign in" },
  { path: "/signup", page: signupPage, title: "Sign up" },
  { path: "/device", page: devicePage, auth: true, title: "Approve device" },
  { path: "/account", page: accountPage, auth: true, title: "Account" },
  { path: "/workspaces", page: workspacesPage, auth: true, title: "Workspaces" },
  { path: "/workspaces/:id", page: workspacePage, auth: true, title: "Workspace" },
  { path: "/templates/new", page: newTemplatePage, auth: true, title: "New template" },
  { path: "/templates/:id", page: templatePage, auth: true, title: "Template" },
  { path: "/sessions/new", page: newSessionPage, auth: true, title: "New session" },
  { path: "/sessions/:id", page: sessionPage, auth: true, title: "Session" },
  { path: "/sessions/:id/terminal", page: terminalPage, auth: true, title: "Terminal" },
  { path: "/keys", page: keysPage, auth: true, title: "SSH keys" },
  { path: "/audit", page: auditPage, auth: true, title: "Audit log" },
  { path: "/404", page: notFound, title: "Not found" },
];

/** Signed-out visitors of a signed-in page go to sign-in, and come back after. */
function guard(route, loc) {
  renderNav();
  if (route.auth && !signedIn()) {
    const here = loc.pathname + loc.search;
    return here === "/" ? "/signin" : `/signin?next=${encodeURIComponent(here)}`;
  }
  return null;
}

/** The workspace switcher: pages of the workspace re-render; pages of one object go home. */
function onWorkspaceSwitch(e) {
  if (e.detail && e.detail.silent) return;
  const path = location.pathname;
  if (path.startsWith("/workspaces/")) return navigate(`/workspaces/${encodeURIComponent(state.workspaceId)}`);
  if (/^\/(templates|sessions)\/(?!new$)[^/]+/.test(path)) return navigate("/");
  return refresh();
}

async function boot() {
  window.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    showError(e.reason instanceof Error ? e.reason : new Error(String(e.reason)));
  });
  const main = mountShell(document.getElementById("app"), { onSignOut: signOut });
  setHooks({
    onSync: markSynced,
    onUnauthenticated: () => {
      if (signedIn()) signedOut("Your session has ended (signed out or revoked elsewhere). Sign in again.");
    },
  });
  try {
    await Promise.all([loadConfig(), loadAccount()]);
  } catch (err) {
    showError(err);
  }
  bus.addEventListener("workspace", onWorkspaceSwitch);
  await startRouter(routes, main, { guard });
}

boot();
