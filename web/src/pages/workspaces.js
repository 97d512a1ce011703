// Workspaces: the list with "create workspace" and "accept an invite"
// (`/workspaces`), and one workspace's page (`/workspaces/{id}`): rename,
// settings, members (role change, removal), invites (create, list, revoke)
// and leaving.

import { h, field, syncList, replace, select } from "../dom.js";
import { get, post, patch, del, getAll, seg } from "../api.js";
import { state, reloadWorkspaces, setWorkspace, user, isAdmin } from "../state.js";
import { navigate } from "../router.js";
import { run, section, pageHeader, confirmDialog, toast, copyButton, pill } from "../ui.js";
import { fmtTime } from "../format.js";

const ROLES = ["owner", "admin", "member", "viewer"];

export async function workspacesPage(ctx) {
  const list = h("div", { class: "rows", testid: "workspace-list" });
  syncList(list, state.workspaces, {
    key: (w) => w.id,
    create: (w) =>
      h(
        "div",
        { class: "row", testid: "workspace-row", data: { workspaceId: w.id } },
        h("div", { class: "grow" }, h("a", { href: `/workspaces/${seg(w.id)}`, class: "row-title" }, w.name), h("div", { class: "meta" }, `${w.kind} · ${w.member_count} member(s) · you are ${w.role}`)),
        w.id === state.workspaceId ? pill("current") : null,
      ),
  });

  const name = h("input", { type: "text", required: true, maxlength: 64, testid: "workspace-name", name: "name" });
  const create = h("button", { type: "submit", class: "btn primary", testid: "workspace-create" }, "Create workspace");
  const createForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(create, async () => {
          const ws = await post("/workspaces", { name: name.value.trim() });
          await reloadWorkspaces();
          setWorkspace(ws.id, { silent: true });
          toast(`Workspace ${ws.name} created`);
          await navigate(`/workspaces/${seg(ws.id)}`);
        });
      },
    },
    field("Name", name),
    create,
  );

  const code = h("input", { type: "text", required: true, placeholder: "bf_inv_…", autocomplete: "off", spellcheck: "false", testid: "invite-code", name: "code" });
  const accept = h("button", { type: "submit", class: "btn", testid: "invite-accept" }, "Join");
  const acceptForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(accept, async () => {
          const m = await post("/invites/accept", { code: code.value.trim() });
          await reloadWorkspaces();
          setWorkspace(m.id, { silent: true });
          toast(`You joined ${m.name} as ${m.role}`);
          await navigate(`/workspaces/${seg(m.id)}`);
        });
      },
    },
    field("Invite code", code),
    accept,
  );

  ctx.show(pageHeader("Workspaces"), section("Your workspaces", list), section("Create a team workspace", createForm), section("Accept an invite", acceptForm));
}

export async function workspacePage(ctx) {
  const id = ctx.params.id;
  const base = `/workspaces/${seg(id)}`;
  let ws = await get(base);
  setWorkspace(ws.id, { silent: true });
  const admin = isAdmin(ws);
  const owner = ws.role === "owner";
  const team = ws.kind === "team";
  const me = user();

  const head = h("div");
  const renderHead = () =>
    replace(head, pageHeader(ws.name), h("p", { class: "meta" }, `${ws.kind === "personal" ? "Personal workspace" : "Team workspace"} · you are ${ws.role} · ${ws.member_count} member(s) · created ${fmtTime(ws.created_at)}`));

  // ---- rename and settings
  const rename = h("input", { type: "text", required: true, maxlength: 64, value: ws.name, testid: "workspace-rename-name", disabled: !admin });
  const renameBtn = h("button", { type: "submit", class: "btn", testid: "workspace-rename", disabled: !admin }, "Rename");
  const renameForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(renameBtn, async () => {
          ws = await patch(base, { name: rename.value.trim() });
          renderHead();
          await reloadWorkspaces();
          toast("Workspace renamed");
        });
      },
    },
    field("Name", rename),
    renameBtn,
  );
  const s = ws.settings;
  const instance = select({ testid: "settings-instance-type", disabled: !admin }, ["small", "medium", "large"], s.default_instance_type);
  const visibility = select({ testid: "settings-visibility", disabled: !admin }, [["owner", "Members see their own sessions"], ["workspace", "Every member sees every session"]], s.session_visibility);
  const snapshots = select({ testid: "settings-deleted-snapshots", disabled: !admin }, [["keep", "Keep them (restorable into other sessions)"], ["delete", "Delete them with the session"]], s.deleted_session_snapshots);
  const save = h("button", { type: "submit", class: "btn", testid: "settings-save", disabled: !admin }, "Save settings");
  const settingsForm = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(save, async () => {
          ws = await patch(`${base}/settings`, {
            default_instance_type: instance.value,
            session_visibility: visibility.value,
            deleted_session_snapshots: snapshots.value,
          });
          await reloadWorkspaces();
          toast("Settings saved");
        });
      },
    },
    field("Default instance type", instance, "For sessions created without one."),
    field("Session visibility", visibility, "Seeing is not operating: only admins and owners operate others' sessions."),
    field("Snapshots of deleted sessions", snapshots),
    save,
  );

  // ---- members
  const members = h("div", { class: "rows", testid: "member-list" });
  const loadMembers = async () => {
    const items = await get(`${base}/members`);
    syncList(members, items, {
      key: (m) => `${m.user_id}:${m.role}`,
      create: (m) => {
        const self = m.user_id === me.id;
        const roles = owner ? ROLES : ROLES.filter((r) => r !== "owner");
        const canEdit = team && admin && (owner || m.role !== "owner");
        const role = canEdit
          ? select({ testid: "member-role", "aria-label": `Role of ${m.display_name}` }, roles, m.role)
          : pill(m.role, "member-role");
        if (canEdit) {
          role.addEventListener("change", () =>
            run(role, async () => {
              try {
                await patch(`${base}/members/${seg(m.user_id)}`, { role: role.value });
                toast(`${m.display_name} is now ${role.value}`);
              } finally {
                await loadMembers();
              }
            }),
          );
        }
        const remove =
          canEdit && !self
            ? h("button", { type: "button", class: "btn small danger", testid: "member-remove" }, "Remove")
            : null;
        if (remove) {
          remove.addEventListener("click", async () => {
            if (!(await confirmDialog({ title: `Remove ${m.display_name}?`, message: `${m.email} loses access to ${ws.name} and its sessions.`, okLabel: "Remove member" }))) return;
            await run(remove, async () => {
              await del(`${base}/members/${seg(m.user_id)}`);
              toast(`${m.display_name} removed`);
              await loadMembers();
            });
          });
        }
        return h(
          "div",
          { class: "row wrap", testid: "member-row", data: { userId: m.user_id } },
          h("div", { class: "grow" }, h("strong", null, m.display_name, self ? " (you)" : ""), h("div", { class: "meta" }, `${m.email} · joined ${fmtTime(m.joined_at)}`)),
          role,
          remove,
        );
      },
    });
  };

  // ---- invites
  const invites = h("div", { class: "rows", testid: "invite-list" });
  const created = h("div", { class: "recovery-box", hidden: true });
  const loadInvites = async () => {
    const items = await getAll(`${base}/invites`);
    syncList(invites, items, {
      key: (i) => `${i.id}:${i.status}`,
      empty: "No invites.",
      create: (i) => {
        const revoke = i.status === "pending" ? h("button", { type: "button", class: "btn small danger", testid: "invite-revoke" }, "Revoke") : null;
        if (revoke) {
          revoke.addEventListener("click", async () => {
            if (!(await confirmDialog({ title: "Revoke invite?", message: `The invite for ${i.email} stops working.`, okLabel: "Revoke invite" }))) return;
            await run(revoke, async () => {
              await del(`${base}/invites/${seg(i.id)}`);
              await loadInvites();
            });
          });
        }
        return h(
          "div",
          { class: "row wrap", testid: "invite-row", data: { inviteId: i.id } },
          h("div", { class: "grow" }, h("strong", null, i.email), ` as ${i.role}`, h("div", { class: "meta" }, `sent ${fmtTime(i.created_at)} · expires ${fmtTime(i.expires_at)}`)),
          pill(i.status),
          revoke,
        );
      },
    });
  };
  const email = h("input", { type: "email", required: true, testid: "invite-email" });
  const role = select({ testid: "invite-role" }, owner ? ROLES : ROLES.filter((r) => r !== "owner"), "member");
  const invite = h("button", { type: "submit", class: "btn primary", testid: "invite-create" }, "Invite");
  const inviteForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(invite, async () => {
          const res = await post(`${base}/invites`, { email: email.value.trim(), role: role.value });
          replace(
            created,
            h("p", { class: "warning" }, `Send this code to ${res.invite.email}; it is shown only once and expires ${fmtTime(res.invite.expires_at)}. They join under Workspaces → Accept an invite.`),
            h("code", { class: "secret", testid: "invite-code-created" }, res.code),
            h("div", { class: "actions" }, copyButton(res.code, "Copy code"), h("button", { type: "button", class: "btn small ghost", onclick: () => (created.hidden = true) }, "Done")),
          );
          created.hidden = false;
          email.value = "";
          await loadInvites();
        });
      },
    },
    field("Email", email),
    field("Role", role),
    invite,
  );

  const leave = team
    ? h("button", { type: "button", class: "btn danger", testid: "workspace-leave" }, "Leave workspace")
    : null;
  if (leave) {
    leave.addEventListener("click", async () => {
      if (!(await confirmDialog({ title: `Leave ${ws.name}?`, message: "You lose access to its sessions and templates until someone invites you again.", okLabel: "Leave" }))) return;
      await run(leave, async () => {
        await post(`${base}/leave`);
        await reloadWorkspaces();
        toast(`You left ${ws.name}`);
        await navigate("/");
      });
    });
  }

  renderHead();
  ctx.show(
    head,
    section("Name", renameForm),
    section("Settings", settingsForm),
    section("Members", members, team ? null : h("p", { class: "hint" }, "A personal workspace has one member: you. Create a team workspace to work with others.")),
    team && admin ? section("Invites", inviteForm, created, invites) : null,
    leave ? section("Leave", leave) : null,
    h("p", null, h("a", { href: "/workspaces" }, "All workspaces")),
  );
  await Promise.all([loadMembers(), team && admin ? loadInvites() : null]);
}
