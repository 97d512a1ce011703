// Account page: passkeys (register, list, delete), recovery codes (status,
// generate and show once), signed-in sessions (list, revoke, sign out
// everywhere) and personal access tokens (create, list, revoke).

import { h, field, syncList, replace, select } from "../dom.js";
import { get, post, del, getAll, seg } from "../api.js";
import { user } from "../state.js";
import { run, section, confirmDialog, toast, copyButton, pageHeader } from "../ui.js";
import { fmtTime, ago } from "../format.js";
import { createPasskey, passkeysSupported, passkeyErrorMessage } from "../webauthn.js";
import { safeNext } from "./auth.js";
import { signedOut } from "../signout.js";

const ALGS = { "-7": "ES256", "-8": "EdDSA" };

export async function accountPage(ctx) {
  const me = user();
  const next = safeNext(ctx.query);
  ctx.show(
    pageHeader("Account"),
    next ? h("p", { class: "note" }, "When you are ready: ", h("a", { href: next, testid: "account-continue" }, `continue to ${next}`)) : null,
    section(
      "Profile",
      h("dl", { class: "kv" }, h("dt", null, "Name"), h("dd", null, me.display_name), h("dt", null, "Email"), h("dd", null, me.email), h("dt", null, "User id"), h("dd", { class: "mono" }, me.id)),
    ),
    passkeysSection(),
    recoverySection(),
    authSessionsSection(),
    tokensSection(),
  );
}

// ------------------------------------------------------------------ passkeys

function passkeysSection() {
  const list = h("div", { class: "rows", testid: "passkey-list" });
  const name = h("input", { type: "text", maxlength: 64, placeholder: "e.g. laptop", testid: "passkey-name" });
  const register = h("button", { type: "submit", class: "btn primary", testid: "passkey-register" }, "Add a passkey");

  const load = async () => {
    const keys = await get("/auth/passkeys");
    syncList(list, keys, {
      key: (k) => k.id,
      empty: "No passkeys yet. Add one to sign in without a password.",
      create: (k) =>
        h(
          "div",
          { class: "row", testid: "passkey-row", data: { passkeyId: k.id } },
          h("div", { class: "grow" }, h("strong", null, k.name), h("div", { class: "meta" }, `${ALGS[String(k.algorithm)] || k.algorithm} · ${k.backed_up ? "synced" : "device-bound"} · added ${fmtTime(k.created_at)} · last used ${ago(k.last_used_at)}`)),
          h(
            "button",
            {
              type: "button",
              class: "btn small danger",
              testid: "passkey-delete",
              onclick: async (e) => {
                const btn = e.currentTarget;
                if (!(await confirmDialog({ title: "Delete passkey?", message: `"${k.name}" will no longer sign you in.`, okLabel: "Delete passkey" }))) return;
                await run(btn, async () => {
                  await del(`/auth/passkeys/${seg(k.id)}`);
                  toast("Passkey deleted");
                  await load();
                });
              },
            },
            "Delete",
          ),
        ),
    });
  };

  const form = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(register, async () => {
          if (!passkeysSupported()) throw new Error("This browser does not support passkeys.");
          const ceremony = await post("/auth/passkeys/options", {});
          let credential;
          try {
            credential = await createPasskey(ceremony.public_key);
          } catch (err) {
            throw new Error(passkeyErrorMessage(err));
          }
          const body = { challenge_id: ceremony.challenge_id, credential };
          if (name.value.trim()) body.name = name.value.trim();
          await post("/auth/passkeys", body);
          name.value = "";
          toast("Passkey added");
          await load();
        });
      },
    },
    field("Passkey name (optional)", name),
    register,
  );
  run(null, load);
  return section("Passkeys", h("p", { class: "hint" }, "Passkeys are how you sign in. Add one on each device you use."), form, list);
}

// ------------------------------------------------------------------ recovery codes

function recoverySection() {
  const status = h("p", { class: "meta", testid: "recovery-status" }, "…");
  const shown = h("div", { class: "recovery-box", hidden: true });
  const generate = h("button", { type: "button", class: "btn", testid: "recovery-generate" }, "Generate recovery codes");

  const loadStatus = async () => {
    const s = await get("/auth/recovery-codes");
    status.textContent = s.generated_at
      ? `${s.remaining} of ${s.total} codes unused (generated ${fmtTime(s.generated_at)}).`
      : "No recovery codes yet. Generate a set and keep it somewhere safe.";
    generate.textContent = s.generated_at ? "Generate a new set" : "Generate recovery codes";
  };

  generate.addEventListener("click", () =>
    run(generate, async () => {
      const res = await post("/auth/recovery-codes", {});
      const codes = res.codes;
      replace(
        shown,
        h("p", { class: "warning", role: "note" }, "Save these codes now: they are shown only once. Each works one time; any older set no longer works."),
        h("ol", { class: "codes", testid: "recovery-codes" }, codes.map((c) => h("li", null, h("code", { testid: "recovery-code" }, c)))),
        h("div", { class: "actions" }, copyButton(codes.join("\n"), "Copy codes", { testid: "recovery-copy" }), h("button", { type: "button", class: "btn small ghost", onclick: () => (shown.hidden = true) }, "I saved them — hide")),
      );
      shown.hidden = false;
      await loadStatus();
    }),
  );
  run(null, loadStatus);
  return section("Recovery codes", status, h("p", { class: "hint" }, "A new set replaces the old one."), generate, shown);
}

// ------------------------------------------------------------------ signed-in sessions

const CLIENTS = { browser: "Browser", cli: "CLI", api: "API" };

function authSessionsSection() {
  const list = h("div", { class: "rows", testid: "auth-session-list" });
  const load = async () => {
    const items = await getAll("/auth/sessions");
    syncList(list, items, {
      key: (s) => s.id,
      empty: "No signed-in sessions.",
      create: (s) => {
        const row = h(
          "div",
          { class: "row", testid: "auth-session-row", data: { authSessionId: s.id } },
          h(
            "div",
            { class: "grow" },
            h("strong", null, `${CLIENTS[s.client] || s.client} · ${s.method.replace(/_/g, " ")}`, s.current ? h("span", { class: "pill s-running" }, "this browser") : null),
            h("div", { class: "meta" }, s.user_agent || "unknown client"),
            h("div", { class: "meta" }, `${s.ip || "unknown address"} · signed in ${fmtTime(s.created_at)} · last used ${ago(s.last_used_at)} · expires ${fmtTime(s.expires_at)}`),
          ),
          h(
            "button",
            {
              type: "button",
              class: "btn small danger",
              testid: "auth-session-revoke",
              onclick: async (e) => {
                const btn = e.currentTarget;
                const ok = await confirmDialog({
                  title: "Revoke this session?",
                  message: s.current ? "This is the session of this browser: you will be signed out." : "That device is signed out, and every token issued to it stops working.",
                  okLabel: "Revoke",
                });
                if (!ok) return;
                await run(btn, async () => {
                  await del(`/auth/sessions/${seg(s.id)}`);
                  if (s.current) return signedOut();
                  toast("Session revoked");
                  await load();
                });
              },
            },
            "Revoke",
          ),
        );
        return row;
      },
    });
  };
  const logoutAll = h(
    "button",
    {
      type: "button",
      class: "btn danger",
      testid: "logout-all",
      onclick: async (e) => {
        const btn = e.currentTarget;
        const ok = await confirmDialog({
          title: "Sign out everywhere?",
          message: "Every signed-in session (this browser, the CLI, other devices) and every personal access token will be revoked.",
          okLabel: "Sign out everywhere",
        });
        if (!ok) return;
        await run(btn, async () => {
          const res = await post("/auth/logout-all", {});
          signedOut();
          toast(`Signed out everywhere: ${res.sessions_revoked} session(s) and ${res.tokens_revoked} token(s) revoked.`);
        });
      },
    },
    "Sign out everywhere",
  );
  run(null, load);
  return section("Signed-in sessions", list, h("div", { class: "actions" }, logoutAll));
}

// ------------------------------------------------------------------ personal access tokens

function tokensSection() {
  const list = h("div", { class: "rows", testid: "token-list" });
  const created = h("div", { class: "recovery-box", hidden: true });
  const name = h("input", { type: "text", required: true, maxlength: 64, placeholder: "e.g. ci", testid: "token-name" });
  const days = select({ testid: "token-expiry" }, [["", "never expires"], ["7", "7 days"], ["30", "30 days"], ["90", "90 days"], ["366", "1 year"]], "30");
  const submit = h("button", { type: "submit", class: "btn", testid: "token-create" }, "Create token");

  const load = async () => {
    const items = await getAll("/auth/tokens");
    syncList(list, items, {
      key: (t) => `${t.id}:${t.revoked_at || ""}`,
      empty: "No personal access tokens.",
      create: (t) =>
        h(
          "div",
          { class: ["row", t.revoked_at && "muted"], testid: "token-row" },
          h(
            "div",
            { class: "grow" },
            h("strong", null, t.name), " ", h("code", null, `${t.prefix}…`),
            h("div", { class: "meta" }, t.revoked_at ? `revoked ${fmtTime(t.revoked_at)}` : `created ${fmtTime(t.created_at)} · expires ${t.expires_at ? fmtTime(t.expires_at) : "never"} · last used ${ago(t.last_used_at)}`),
          ),
          t.revoked_at
            ? null
            : h(
                "button",
                {
                  type: "button",
                  class: "btn small danger",
                  testid: "token-revoke",
                  onclick: async (e) => {
                    const btn = e.currentTarget;
                    if (!(await confirmDialog({ title: "Revoke token?", message: `Anything using "${t.name}" stops working.`, okLabel: "Revoke" }))) return;
                    await run(btn, async () => {
                      await del(`/auth/tokens/${seg(t.id)}`);
                      await load();
                    });
                  },
                },
                "Revoke",
              ),
        ),
    });
  };
  const form = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(submit, async () => {
          const body = { name: name.value.trim() };
          if (days.value) body.expires_in_days = Number(days.value);
          const res = await post("/auth/tokens", body);
          replace(
            created,
            h("p", { class: "warning" }, "Copy this token now; it is not shown again."),
            h("code", { class: "secret", testid: "token-secret" }, res.token),
            h("div", { class: "actions" }, copyButton(res.token, "Copy token"), h("button", { type: "button", class: "btn small ghost", onclick: () => (created.hidden = true) }, "Done")),
          );
          created.hidden = false;
          name.value = "";
          await load();
        });
      },
    },
    field("Name", name),
    field("Expiry", days),
    submit,
  );
  run(null, load);
  return section("Personal access tokens", h("p", { class: "hint" }, "For automation and scripts (Authorization: Bearer …)."), form, created, list);
}
