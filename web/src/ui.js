// The page shell and shared widgets: header navigation with the workspace
// switcher, the dismissible error banner, toasts, the "Last synced" clock,
// the confirmation modal and small helpers for buttons and sections.

import { h, replace, setText, select } from "./dom.js";
import { state, bus, signedIn, user, isAdmin, setWorkspace } from "./state.js";

const shell = {};

/** Builds the static shell once; returns the element pages render into. */
export function mountShell(root, { onSignOut }) {
  shell.nav = h("div", { class: "nav-inner" });
  shell.sync = h("span", { class: "last-sync", testid: "last-sync", "aria-live": "off" }, "Not synced yet");
  shell.header = h("header", { class: "topbar", testid: "nav" }, shell.nav);
  shell.bannerText = h("span", { class: "banner-text" });
  shell.banner = h(
    "div",
    { class: "banner", testid: "error-banner", role: "alert", hidden: true },
    h("span", { class: "banner-icon", "aria-hidden": "true" }, "!"),
    shell.bannerText,
    h("button", { type: "button", class: "banner-close", "aria-label": "Dismiss error", onclick: clearError }, "×"),
  );
  shell.main = h("main", { id: "main", class: "main", tabindex: "-1" });
  shell.toasts = h("div", { class: "toasts", "aria-live": "polite" });
  shell.onSignOut = onSignOut;
  replace(root, shell.header, shell.banner, shell.main, shell.toasts);
  renderNav();
  bus.addEventListener("change", renderNav);
  bus.addEventListener("workspace", renderNav);
  return shell.main;
}

function navLink(href, text) {
  const here = location.pathname === href || (href !== "/" && location.pathname.startsWith(href + "/"));
  return h("a", { href, class: here ? "active" : null, "aria-current": here ? "page" : null }, text);
}

/** Re-renders the header (after sign-in/out, workspace changes, navigation). */
export function renderNav() {
  if (!shell.nav) return;
  const brand = h(
    "a",
    { href: "/", class: "brand", "aria-label": "BurstFlare dashboard" },
    h("span", { class: "logo", "aria-hidden": "true" }, "▲"),
    h("span", { class: "brand-name" }, "BurstFlare"),
  );
  if (!signedIn()) {
    replace(shell.nav, brand, h("nav", { class: "links", "aria-label": "Main" }, navLink("/signin", "Sign in"), navLink("/signup", "Sign up")), h("div", { class: "nav-end" }, shell.sync));
    return;
  }
  const switcher = select(
    { testid: "nav-workspace-switcher", class: "ws-switcher", "aria-label": "Workspace", onchange: (e) => setWorkspace(e.target.value) },
    state.workspaces.map((w) => [w.id, w.kind === "personal" ? `${w.name} (personal)` : w.name]),
    state.workspaceId || undefined,
  );
  const links = h(
    "nav",
    { class: "links", "aria-label": "Main" },
    navLink("/", "Dashboard"),
    state.workspaceId ? navLink(`/workspaces/${encodeURIComponent(state.workspaceId)}`, "Workspace") : null,
    navLink("/keys", "SSH keys"),
    isAdmin() ? navLink("/audit", "Audit") : null,
    navLink("/account", "Account"),
  );
  const me = user();
  replace(
    shell.nav,
    brand,
    switcher,
    links,
    h(
      "div",
      { class: "nav-end" },
      shell.sync,
      h("span", { class: "who", title: me.email }, me.display_name),
      h("button", { type: "button", class: "btn small ghost", testid: "nav-signout", onclick: () => shell.onSignOut() }, "Sign out"),
    ),
  );
}

// ------------------------------------------------------------------ banner, toasts, sync

/** Shows an error (an ApiError or any Error) in the banner. */
export function showError(err) {
  if (!shell.banner || !err) return;
  if (err.name === "AbortError") return;
  const code = err.code && err.code !== "unknown" ? ` (${err.code})` : "";
  const rid = err.requestId ? ` — request ${err.requestId}` : "";
  setText(shell.bannerText, `${err.message || String(err)}${code}${rid}`);
  shell.banner.hidden = false;
}

export function clearError() {
  if (!shell.banner) return;
  shell.banner.hidden = true;
  setText(shell.bannerText, "");
}

export function toast(message, kind = "ok") {
  if (!shell.toasts) return;
  const el = h("div", { class: `toast toast-${kind}`, testid: "toast", role: "status" }, message);
  shell.toasts.appendChild(el);
  setTimeout(() => el.remove(), 4000);
}

const pad = (n) => String(n).padStart(2, "0");

/** Records a successful sync (every successful GET, polls included). */
export function markSynced() {
  if (!shell.sync) return;
  const d = new Date();
  setText(shell.sync, `Last synced ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`);
}

// ------------------------------------------------------------------ confirmation modal

/**
 * Asks for confirmation before a destructive action. Resolves true (OK) or
 * false (Cancel, Escape, backdrop). `extra` is an optional element shown in
 * the dialog (e.g. a choice), read by the caller after it resolves.
 */
export function confirmDialog({ title, message, okLabel = "Confirm", danger = true, extra = null }) {
  return new Promise((resolve) => {
    const prevFocus = document.activeElement;
    const close = (answer) => {
      document.removeEventListener("keydown", onKey, true);
      backdrop.remove();
      if (prevFocus && prevFocus.focus) prevFocus.focus();
      resolve(answer);
    };
    const onKey = (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        close(false);
      }
    };
    const ok = h("button", { type: "button", class: danger ? "btn danger" : "btn primary", testid: "confirm-ok", onclick: () => close(true) }, okLabel);
    const cancel = h("button", { type: "button", class: "btn", testid: "confirm-cancel", onclick: () => close(false) }, "Cancel");
    const titleId = `dlg-${Date.now()}`;
    const dialog = h(
      "div",
      { class: "modal", role: "dialog", "aria-modal": "true", "aria-labelledby": titleId, testid: "confirm-dialog" },
      h("h2", { id: titleId }, title),
      message ? h("p", null, message) : null,
      extra,
      h("div", { class: "modal-actions" }, cancel, ok),
    );
    const backdrop = h("div", { class: "backdrop", onclick: (e) => e.target === backdrop && close(false) }, dialog);
    document.body.appendChild(backdrop);
    document.addEventListener("keydown", onKey, true);
    cancel.focus();
  });
}

// ------------------------------------------------------------------ helpers

/**
 * Runs `fn` with `button` disabled (and marked busy; a user action also
 * clears the previous error); errors go to the banner. Answers fn's result,
 * or undefined when it threw. `run(null, load)` runs a background load.
 */
export async function run(button, fn) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    if (button) clearError();
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

/** A titled card section. */
export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", null, title) : null, ...children);
}

/** A page title row with optional actions on the right. */
export function pageHeader(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", null, title), actions.length ? h("div", { class: "actions" }, ...actions) : null);
}

/** A status pill (`running`, `failed`, …). */
export function pill(text, testid) {
  return h("span", { class: `pill s-${String(text).replace(/[^a-z_]/g, "")}`, testid }, text);
}

/** A copy-to-clipboard button for `text()`. */
export function copyButton(text, label = "Copy", attrs = {}) {
  return h(
    "button",
    {
      type: "button",
      class: "btn small",
      ...attrs,
      onclick: async (e) => {
        const btn = e.currentTarget;
        try {
          await navigator.clipboard.writeText(typeof text === "function" ? text() : text);
          btn.textContent = "Copied";
        } catch {
          btn.textContent = "Copy failed: select and copy by hand";
        }
        setTimeout(() => (btn.textContent = label), 2000);
      },
    },
    label,
  );
}
