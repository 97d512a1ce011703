// SSH keys (`/keys`): add an OpenSSH public key, list and remove keys. Keys
// are installed for the `dev` user at every session start.

import { h, field, syncList } from "../dom.js";
import { get, post, del, seg } from "../api.js";
import { run, section, pageHeader, confirmDialog, toast } from "../ui.js";
import { fmtTime } from "../format.js";

export async function keysPage(ctx) {
  const name = h("input", { type: "text", maxlength: 100, placeholder: "e.g. laptop", testid: "ssh-key-name", name: "name" });
  const key = h("textarea", { rows: 3, required: true, spellcheck: "false", class: "mono", placeholder: "ssh-ed25519 AAAA… you@laptop", testid: "ssh-key-public", name: "public_key" });
  const add = h("button", { type: "submit", class: "btn primary", testid: "ssh-key-add" }, "Add key");
  const list = h("div", { class: "rows", testid: "ssh-key-list" });

  const load = async () => {
    const keys = await get("/ssh-keys");
    syncList(list, keys, {
      key: (k) => k.id,
      empty: "No SSH keys yet — add your public key (~/.ssh/id_ed25519.pub) to reach sessions with ssh.",
      create: (k) => {
        const remove = h("button", { type: "button", class: "btn small danger", testid: "ssh-key-remove" }, "Remove");
        remove.addEventListener("click", async () => {
          if (!(await confirmDialog({ title: "Remove SSH key?", message: `"${k.name}" (${k.fingerprint}) is no longer installed in sessions started from now on.`, okLabel: "Remove key" }))) return;
          await run(remove, async () => {
            await del(`/ssh-keys/${seg(k.id)}`);
            toast("SSH key removed");
            await load();
          });
        });
        return h(
          "div",
          { class: "row wrap", testid: "ssh-key-row", data: { keyId: k.id } },
          h("div", { class: "grow" }, h("strong", null, k.name), h("div", { class: "meta mono" }, `${k.algorithm} ${k.fingerprint}`), h("div", { class: "meta" }, `added ${fmtTime(k.created_at)}`)),
          remove,
        );
      },
    });
  };

  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(add, async () => {
          const body = { public_key: key.value.trim() };
          if (name.value.trim()) body.name = name.value.trim();
          await post("/ssh-keys", body);
          key.value = "";
          name.value = "";
          toast("SSH key added");
          await load();
        });
      },
    },
    field("Public key", key, "One OpenSSH public key line (ed25519, ecdsa, rsa, sk-…)."),
    field("Name (optional)", name, "Defaults to the key's comment."),
    add,
  );
  ctx.show(pageHeader("SSH keys"), section("Add a key", form), section("Your keys", list));
  await load();
}
