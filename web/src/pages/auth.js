// Sign-up and sign-in pages: registration with Turnstile (the widget where
// the deployment requires it, a manual token field in local development),
// passkey sign-in (discoverable credentials, email optional) and sign-in
// with a recovery code.

import { h, field } from "../dom.js";
import { post, setCsrf } from "../api.js";
import { state, loadAccount, signedIn, user } from "../state.js";
import { navigate } from "../router.js";
import { run, section, showError } from "../ui.js";
import { getPasskey, passkeysSupported, passkeyErrorMessage } from "../webauthn.js";

/** The `next` query parameter when it is a local path, else null. */
export function safeNext(query) {
  const next = query.get("next");
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : null;
}

async function signedInWith(resp, to) {
  setCsrf(resp.csrf_token);
  await loadAccount();
  await navigate(to, { replace: true });
}

function alreadySignedInNote() {
  if (!signedIn()) return null;
  return h("p", { class: "note" }, `You are signed in as ${user().email}. Signing in again replaces this browser's session.`);
}

// ------------------------------------------------------------------ Turnstile

let turnstileScript = null;

function loadTurnstile() {
  if (!turnstileScript) {
    turnstileScript = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit";
      s.async = true;
      s.onload = () => resolve(window.turnstile);
      s.onerror = () => {
        turnstileScript = null;
        reject(new Error("The Turnstile challenge could not be loaded; check your connection or content blockers."));
      };
      document.head.appendChild(s);
    });
  }
  return turnstileScript;
}

/** Renders the Turnstile widget or the manual field; answers { el, token(), reset() }. */
function turnstileInput(signal) {
  const cfg = state.config.turnstile || {};
  if (!cfg.required) {
    const input = h("input", { type: "text", testid: "signup-turnstile-token", name: "turnstile_token", autocomplete: "off" });
    return {
      el: field("Turnstile token (local dev)", input, "Local development does not verify Turnstile; leave empty unless you are testing it."),
      token: () => input.value.trim(),
      reset: () => {},
    };
  }
  let token = "";
  let widgetId = null;
  const box = h("div", { class: "turnstile", "aria-label": "Human verification" });
  loadTurnstile()
    .then((ts) => {
      if (signal.aborted || !ts) return;
      widgetId = ts.render(box, {
        sitekey: cfg.site_key,
        callback: (t) => (token = t),
        "expired-callback": () => (token = ""),
        "error-callback": () => (token = ""),
      });
    })
    .catch(showError);
  signal.addEventListener("abort", () => {
    if (widgetId !== null && window.turnstile) window.turnstile.remove(widgetId);
  });
  return {
    el: h("div", { class: "field" }, h("span", { class: "label" }, "Verification"), box),
    token: () => token,
    reset: () => {
      token = "";
      if (widgetId !== null && window.turnstile) window.turnstile.reset(widgetId);
    },
  };
}

// ------------------------------------------------------------------ pages

export async function signupPage(ctx) {
  const next = safeNext(ctx.query);
  const email = h("input", { type: "email", required: true, autocomplete: "email", testid: "signup-email", name: "email" });
  const name = h("input", { type: "text", required: true, maxlength: 100, autocomplete: "name", testid: "signup-name", name: "display_name" });
  const ts = turnstileInput(ctx.signal);
  const submit = h("button", { type: "submit", class: "btn primary", testid: "signup-submit" }, "Create account");
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(submit, async () => {
          if (state.config.turnstile && state.config.turnstile.required && !ts.token()) {
            throw new Error("Complete the verification first.");
          }
          const body = { email: email.value.trim(), display_name: name.value.trim(), client: "browser" };
          const token = ts.token();
          if (token) body.turnstile_token = token;
          try {
            const resp = await post("/auth/register", body);
            await signedInWith(resp, next ? `/account?next=${encodeURIComponent(next)}` : "/account");
          } catch (err) {
            ts.reset();
            throw err;
          }
        });
      },
    },
    field("Email", email),
    field("Display name", name),
    ts.el,
    submit,
  );
  ctx.show(
    h(
      "div",
      { class: "narrow" },
      h("h1", null, "Create your account"),
      alreadySignedInNote(),
      section(null, form),
      h("p", null, "Already have an account? ", h("a", { href: next ? `/signin?next=${encodeURIComponent(next)}` : "/signin" }, "Sign in")),
      h("p", { class: "hint" }, "After signing up you'll add a passkey and save recovery codes: BurstFlare has no passwords."),
    ),
  );
  email.focus();
}

export async function signinPage(ctx) {
  const next = safeNext(ctx.query) || "/";
  const email = h("input", { type: "email", autocomplete: "username webauthn", testid: "signin-email", name: "email" });
  const pkButton = h("button", { type: "submit", class: "btn primary", testid: "signin-passkey" }, "Sign in with a passkey");
  const pkForm = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(pkButton, async () => {
          if (!passkeysSupported()) throw new Error("This browser does not support passkeys; use a recovery code.");
          const body = {};
          if (email.value.trim()) body.email = email.value.trim();
          const ceremony = await post("/auth/login/passkey/options", body);
          let credential;
          try {
            credential = await getPasskey(ceremony.public_key);
          } catch (err) {
            throw new Error(passkeyErrorMessage(err));
          }
          const resp = await post("/auth/login/passkey", { challenge_id: ceremony.challenge_id, credential, client: "browser" });
          await signedInWith(resp, next);
        });
      },
    },
    field("Email (optional)", email, "Leave empty to pick any of your passkeys."),
    pkButton,
  );

  const rEmail = h("input", { type: "email", required: true, autocomplete: "email", testid: "signin-recovery-email", name: "recovery_email" });
  const rCode = h("input", { type: "text", required: true, autocomplete: "one-time-code", spellcheck: "false", placeholder: "xxxxx-xxxxx-xxxxx", testid: "signin-recovery-code", name: "recovery_code" });
  const rButton = h("button", { type: "submit", class: "btn", testid: "signin-recovery-submit" }, "Sign in with recovery code");
  const rForm = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(rButton, async () => {
          const resp = await post("/auth/login/recovery", { email: rEmail.value.trim(), code: rCode.value.trim(), client: "browser" });
          await signedInWith(resp, next);
        });
      },
    },
    h("p", { class: "hint" }, "Each recovery code works once. After signing in, add a new passkey and generate fresh codes."),
    field("Email", rEmail),
    field("Recovery code", rCode),
    rButton,
  );

  ctx.show(
    h(
      "div",
      { class: "narrow" },
      h("h1", null, "Sign in"),
      alreadySignedInNote(),
      section("Passkey", pkForm),
      section("Lost your passkey? Use a recovery code", rForm),
      h("p", null, "New to BurstFlare? ", h("a", { href: next !== "/" ? `/signup?next=${encodeURIComponent(next)}` : "/signup" }, "Create an account")),
    ),
  );
}
