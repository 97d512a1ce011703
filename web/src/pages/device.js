// Device approval (`/device?code=XXXX-XXXX`, the URL `burstflare login`
// prints): shows the user code and the requesting device, and approves or
// denies it. Signed-out visitors are sent to sign in first and come back.

import { h, field, replace } from "../dom.js";
import { get, post, seg } from "../api.js";
import { navigate } from "../router.js";
import { run, section, pageHeader } from "../ui.js";
import { fmtTime } from "../format.js";

const normalise = (code) => code.trim().toUpperCase().replace(/\s+/g, "");

export async function devicePage(ctx) {
  const code = normalise(ctx.query.get("code") || "");
  ctx.show(pageHeader("Sign in a device"));
  if (!code) {
    const input = h("input", { type: "text", required: true, placeholder: "BCDF-GHJK", autocomplete: "off", spellcheck: "false", testid: "device-code-input" });
    const go = h("button", { type: "submit", class: "btn primary" }, "Continue");
    ctx.show(
      section(
        "Enter the code shown by the CLI",
        h("form", { class: "inline-form", onsubmit: (e) => (e.preventDefault(), navigate(`/device?code=${encodeURIComponent(normalise(input.value))}`)) }, field("User code", input), go),
      ),
    );
    input.focus();
    return;
  }

  const body = h("div", { class: "stack" });
  const result = h("p", { class: "result", testid: "device-result", role: "status" });
  ctx.show(section(null, body, result));

  const req = await get(`/auth/device/${seg(code)}`);
  const approve = h("button", { type: "button", class: "btn primary", testid: "device-approve" }, "Approve");
  const deny = h("button", { type: "button", class: "btn danger", testid: "device-deny" }, "Deny");
  const details = h(
    "dl",
    { class: "kv" },
    h("dt", null, "Code"),
    h("dd", null, h("code", { class: "user-code", testid: "device-user-code" }, req.user_code)),
    h("dt", null, "Device"),
    h("dd", { testid: "device-client" }, [req.client_name, req.user_agent].filter(Boolean).join(" — ")),
    h("dt", null, "From"),
    h("dd", null, req.ip || "unknown address"),
    h("dt", null, "Requested"),
    h("dd", null, `${fmtTime(req.created_at)} (expires ${fmtTime(req.expires_at)})`),
  );
  const showOutcome = (status) => {
    approve.disabled = deny.disabled = true;
    const text = {
      approved: "Device approved. You can return to your terminal.",
      consumed: "This request was approved already and the device is signed in.",
      denied: "Request denied. The device was not signed in.",
      expired: "This request expired. Run `burstflare login` again.",
    }[status];
    result.textContent = text || `This request is ${status}.`;
    result.className = `result ${status === "approved" || status === "consumed" ? "ok" : "bad"}`;
  };
  const decide = (action, button) =>
    run(button, async () => {
      try {
        const res = await post(`/auth/device/${seg(code)}/${action}`);
        showOutcome(res.status);
      } catch (err) {
        if (err.code === "device_request_decided" && err.details.status) return showOutcome(err.details.status);
        throw err;
      }
    });
  approve.addEventListener("click", () => decide("approve", approve));
  deny.addEventListener("click", () => decide("deny", deny));

  replace(
    body,
    h("p", null, "A device asks to sign in to BurstFlare as you. Approve only if you started this sign-in and the code matches the one it shows."),
    details,
    h("div", { class: "actions" }, deny, approve),
  );
  if (req.status !== "pending") showOutcome(req.status);
}
