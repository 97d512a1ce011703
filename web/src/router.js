// History API router: matches `location.pathname` against the route table,
// intercepts same-origin link clicks, and gives each page a context whose
// pollers and listeners are torn down when the user navigates away.

import { showError, clearError } from "./ui.js";
import { append } from "./dom.js";

let routes = [];
let mountPoint = null;
let current = null; // { controller, cleanups }
let beforeRender = null;

/** `table`: [{ path: "/sessions/:id", page: async (ctx) => {}, auth }] */
export function startRouter(table, root, { guard } = {}) {
  routes = table.map((r) => ({ ...r, re: compile(r.path) }));
  mountPoint = root;
  beforeRender = guard;
  window.addEventListener("popstate", () => render());
  document.addEventListener("click", onClick);
  return render();
}

function compile(path) {
  const src = path
    .split("/")
    .map((s) => (s.startsWith(":") ? "([^/]+)" : s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${src}/?$`);
}

function onClick(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

/** Goes to `to` (a local path) and renders it. */
export function navigate(to, { replace = false, keepError = false } = {}) {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  window.scrollTo(0, 0);
  return render({ keepError });
}

/** Re-renders the current route (after a workspace switch). */
export function refresh() {
  return render({ keepError: true });
}

function match(pathname) {
  for (const r of routes) {
    const m = r.re.exec(pathname);
    if (m) {
      const params = {};
      const names = r.path.split("/").filter((s) => s.startsWith(":"));
      names.forEach((n, i) => (params[n.slice(1)] = decodeURIComponent(m[i + 1])));
      return { route: r, params };
    }
  }
  return null;
}

async function render({ keepError = false } = {}) {
  if (current) {
    current.controller.abort();
    for (const fn of current.cleanups) {
      try {
        fn();
      } catch {
        /* a cleanup failing must not stop the next page */
      }
    }
  }
  if (!keepError) clearError();
  const found = match(location.pathname) || match("/404");
  if (beforeRender) {
    const redirect = beforeRender(found.route, location);
    if (redirect) return navigate(redirect, { replace: true, keepError: true });
  }
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  const ctx = {
    params: found.params,
    query: new URLSearchParams(location.search),
    root: mountPoint,
    /** Appends children to the page (null/false skipped, unlike Element.append). */
    show: (...children) => append(mountPoint, children),
    signal: controller.signal,
    onCleanup: (fn) => cleanups.push(fn),
    every: (ms, fn) => poll(controller.signal, ms, fn),
  };
  mountPoint.replaceChildren();
  document.title = found.route.title ? `${found.route.title} · BurstFlare` : "BurstFlare";
  try {
    await found.route.page(ctx);
  } catch (err) {
    if (!controller.signal.aborted) showError(err);
  }
}

/**
 * Runs `fn` now and then every `ms` after it finishes (never overlapping),
 * until the page is left. Skips ticks while the tab is hidden. A failing
 * tick shows its error once (until a tick succeeds again).
 */
function poll(signal, ms, fn) {
  let timer = null;
  let lastError = null;
  let running = false;
  let again = false;
  const tick = async () => {
    if (signal.aborted) return;
    clearTimeout(timer);
    if (running) {
      again = true;
      return;
    }
    running = true;
    if (!document.hidden) {
      try {
        await fn();
        lastError = null;
      } catch (err) {
        const key = `${err.code}:${err.message}`;
        if (!signal.aborted && key !== lastError) showError(err);
        lastError = key;
      }
    }
    running = false;
    if (signal.aborted) return;
    if (again) {
      again = false;
      return tick();
    }
    timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  const ready = tick();
  /** `now()` runs the next tick at once (after a user action). */
  return { ready, now: tick };
}
