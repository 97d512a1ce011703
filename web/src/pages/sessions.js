// Sessions: the new-session form and the session page (live state, the
// lifecycle commands, terminal/editor/preview links, visibility, snapshots
// with save/restore/delete/download, and the event and activity logs).

import { h, field, syncList, setText, replace, select, append } from "../dom.js";
import { get, post, patch, del, seg } from "../api.js";
import { currentWorkspace, canWrite, isAdmin, setWorkspace, state, user } from "../state.js";
import { navigate } from "../router.js";
import { run, section, pageHeader, confirmDialog, toast, showError, pill } from "../ui.js";
import { fmtTime, ago, fmtBytes } from "../format.js";

// ------------------------------------------------------------------ new session

export async function newSessionPage(ctx) {
  const ws = currentWorkspace();
  const templates = (await get("/templates", { workspace_id: ws.id })).filter((t) => t.active_release_id && !t.archived_at);
  const wanted = ctx.query.get("template");
  const name = h("input", { type: "text", required: true, maxlength: 40, pattern: "[a-z][a-z0-9\\-]{0,39}", autocomplete: "off", testid: "session-name", name: "name" });
  const template = select(
    { testid: "session-template", name: "template" },
    [...templates.map((t) => [t.id, t.name]), ["", "Default environment (no template)"]],
    templates.some((t) => t.id === wanted) ? wanted : templates[0] ? templates[0].id : "",
  );
  const instance = select({ testid: "session-instance-type", name: "instance_type" }, [["", "Template default"], ["small", "small (1 CPU, 1 GiB)"], ["medium", "medium (2 CPU, 4 GiB)"], ["large", "large (4 CPU, 8 GiB)"]], "");
  const startNow = h("input", { type: "checkbox", testid: "session-start-now", id: "start-now" });
  const submit = h("button", { type: "submit", class: "btn primary", testid: "session-create" }, "Create session");
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(submit, async () => {
          const body = { name: name.value.trim(), workspace_id: ws.id };
          if (template.value) body.template = template.value;
          if (instance.value) body.instance_type = instance.value;
          const s = await post("/sessions", body);
          if (startNow.checked) {
            // Starting takes a while; the session page shows the progress.
            post(`/sessions/${seg(s.id)}/start`).catch(showError);
          }
          toast(`Session ${s.name} created`);
          await navigate(`/sessions/${seg(s.id)}`);
        });
      },
    },
    field("Name", name, "1–40 of a–z, 0–9 and -, starting with a letter."),
    field("Template", template, templates.length ? "Templates with an active release." : "No template has a release yet; the session gets the platform's default environment."),
    field("Instance type", instance),
    h("div", { class: "check" }, startNow, h("label", { for: "start-now" }, "Start it now")),
    submit,
  );
  ctx.show(pageHeader(`New session in ${ws.name}`), section(null, form));
  name.focus();
}

// ------------------------------------------------------------------ session page

const ENABLED = {
  start: ["created", "stopped", "failed", "sleeping"],
  stop: ["starting", "running", "failed", "sleeping"],
  restart: ["created", "stopped", "failed", "sleeping", "running"],
  sleep: ["running"],
};

/** Ports and editor flag of the session's release (from the session, else the release). */
async function releaseFeatures(session) {
  const rel = session.spec.release;
  const out = { ports: [], editor: false };
  if (Array.isArray(session.ports)) out.ports = session.ports.map((p) => (typeof p === "number" ? { port: p } : p));
  if (!rel) return out;
  if (!out.ports.length && Array.isArray(rel.ports)) out.ports = rel.ports.map((p) => (typeof p === "number" ? { port: p } : p));
  out.editor = Boolean(rel.editor || session.editor);
  try {
    const res = await get(`/templates/${seg(rel.template_id)}/releases`);
    const r = res.releases.find((x) => x.id === rel.release_id);
    if (r) {
      const names = new Map(r.spec.ports.map((p) => [p.port, p.name]));
      out.ports = out.ports.length ? out.ports.map((p) => ({ port: p.port, name: p.name || names.get(p.port) })) : r.spec.ports;
      out.editor = out.editor || r.spec.editor;
    }
  } catch {
    /* the template may be gone; the session's own fields stand */
  }
  return out;
}

export async function sessionPage(ctx) {
  const id = ctx.params.id;
  const base = `/sessions/${seg(id)}`;
  let session = await get(base);
  setWorkspace(session.workspace_id, { silent: true });
  const ws = state.workspaces.find((w) => w.id === session.workspace_id);
  const mine = session.owner_id === user().id;
  const operate = (mine && canWrite(ws)) || isAdmin(ws);
  let gone = false;
  let pending = null;

  // ---- header and controls
  const stateEl = h("span", { class: "pill", testid: "session-state" });
  const desired = h("span", { class: "meta" });
  const failure = h("p", { class: "bad", hidden: true, testid: "session-failure" });
  const facts = h("dl", { class: "kv" });
  const buttons = {};
  const lifecycle = (cmd, label, cls = "btn") => {
    const b = h("button", { type: "button", class: cls, testid: `session-${cmd}` }, label);
    b.addEventListener("click", () => command(cmd, b));
    buttons[cmd] = b;
    return b;
  };
  const del_ = h("button", { type: "button", class: "btn danger", testid: "session-delete" }, "Delete");
  const terminalLink = h("a", { href: `${base}/terminal`, class: "btn primary", testid: "terminal-open" }, "Open terminal");
  const links = h("div", { class: "actions" }, terminalLink);
  const previews = h("div", { class: "previews", testid: "preview-links" });
  // Sharing is the workspace's setting: its admins choose whether members
  // see (and preview) each other's sessions.
  const shared = () => (ws && ws.settings.session_visibility) || "owner";
  const visibility = select(
    { testid: "session-visibility", "aria-label": "Who can see sessions in this workspace" },
    [["owner", "Their owners (and workspace admins)"], ["workspace", "Every member of the workspace"]],
    shared(),
  );
  visibility.disabled = !isAdmin(ws);

  const updateButtons = () => {
    for (const [cmd, b] of Object.entries(buttons)) b.disabled = !operate || gone || pending !== null || !ENABLED[cmd].includes(session.state);
    del_.disabled = !operate || gone || pending !== null;
  };

  const renderSession = () => {
    setText(stateEl, session.state);
    stateEl.className = `pill s-${session.state}`;
    setText(desired, session.desired_state !== session.state ? `→ ${session.desired_state}` : "");
    failure.hidden = !session.failure_reason;
    setText(failure, session.failure_reason || "");
    const rel = session.spec.release;
    replace(
      facts,
      h("dt", null, "Id"), h("dd", { class: "mono" }, session.id),
      h("dt", null, "Environment"), h("dd", null, rel ? h("a", { href: `/templates/${seg(rel.template_id)}` }, `template release ${rel.release_id}`) : "default environment"),
      h("dt", null, "Instance"), h("dd", null, `${session.spec.instance_type} · generation ${session.generation}`),
      h("dt", null, "Persisted"), h("dd", null, session.spec.persisted_paths.join(", ") || "nothing"),
      h("dt", null, "Runtime"), h("dd", null, `${session.runtime_status || "—"}${session.runtime_updated_at ? ` (${ago(session.runtime_updated_at)})` : ""}`),
      h("dt", null, "SSH"), h("dd", null, h("code", null, `burstflare ssh ${session.name}`)),
      h("dt", null, "Created"), h("dd", null, fmtTime(session.created_at)),
    );
    if (document.activeElement !== visibility) visibility.value = shared();
    updateButtons();
  };

  const command = async (cmd, button) => {
    // Stop, restart and sleep snapshot the persisted paths first: not destructive, no modal.
    pending = cmd;
    updateButtons();
    sessionPoll.now();
    await run(button, async () => {
      const res = await post(`${base}/${cmd}`);
      session = res.session;
      toast(res.already_done ? `Already ${session.state}` : `${session.name}: ${session.state}`);
    });
    pending = null;
    renderSession();
    sessionPoll.now();
    snapshotsPoll.now();
  };

  del_.addEventListener("click", async () => {
    const keep = ws && ws.settings.deleted_session_snapshots === "delete" ? "Its snapshots are deleted with it." : "Its snapshots are kept in the workspace.";
    if (!(await confirmDialog({ title: `Delete session ${session.name}?`, message: `The container is removed and the session is gone. ${keep}`, okLabel: "Delete session" }))) return;
    pending = "delete";
    updateButtons();
    const ok = await run(del_, async () => {
      await del(base);
      return true;
    });
    pending = null;
    if (ok) {
      gone = true;
      toast(`Session ${session.name} deleted`);
      await navigate("/");
    } else updateButtons();
  });

  visibility.addEventListener("change", () =>
    run(visibility, async () => {
      try {
        const updated = await patch(`/workspaces/${seg(ws.id)}/settings`, { session_visibility: visibility.value });
        ws.settings = updated.settings;
        toast(visibility.value === "workspace" ? `Every member of ${ws.name} can see its sessions and their previews` : `Sessions in ${ws.name} are private to their owners`);
      } catch (err) {
        visibility.value = shared();
        throw err;
      }
    }),
  );

  // ---- snapshots
  const snapCreate = h("button", { type: "submit", class: "btn", testid: "snapshot-create" }, "Save snapshot");
  const snapList = h("div", { class: "rows", testid: "snapshot-list" });
  const snapForm = h(
    "form",
    {
      class: "inline-form",
      onsubmit: (e) => {
        e.preventDefault();
        run(snapCreate, async () => {
          const snap = await post(`${base}/snapshots`);
          toast(`Snapshot saved: ${snap.files} file(s), ${fmtBytes(snap.bytes)}`);
          await snapshotsPoll.now();
        });
      },
    },
    snapCreate,
  );

  const restore = async (snap, btn) => {
    const running = session.state === "running";
    const when = select({ testid: "snapshot-restore-when", "aria-label": "When to restore" }, [
      ...(running ? [["now", "Now, into the running session"]] : []),
      ["next_start", "At the next start or wake"],
    ]);
    const ok = await confirmDialog({
      title: "Restore this snapshot?",
      message: `The session's persisted paths (${snap.roots.join(", ")}) are replaced with the snapshot of ${fmtTime(snap.created_at)}. Changes since then are lost.`,
      okLabel: "Restore",
      extra: field("When", when),
    });
    if (!ok) return;
    await run(btn, async () => {
      const res = await post(`${base}/restore`, { snapshot_id: snap.id, when: when.value });
      toast(res.when === "now" ? `Restored ${res.files} file(s), ${fmtBytes(res.bytes)}` : "The snapshot will be restored at the next start");
    });
  };

  const snapRow = (snap) => {
    const st = h("span", { class: "pill" });
    const meta = h("div", { class: "meta" });
    const actions = h("span", { class: "row-actions" });
    const row = h("div", { class: "row wrap", testid: "snapshot-row", data: { snapshotId: snap.id } }, h("div", { class: "grow" }, h("strong", null, `${snap.kind} snapshot`), " ", h("span", { class: "mono meta" }, snap.id), meta), st, actions);
    row.update = (snap) => {
      setText(st, snap.state);
      st.className = `pill s-${snap.state}`;
      setText(meta, `${fmtTime(snap.created_at)} · ${snap.files} file(s) · ${fmtBytes(snap.bytes)} (${fmtBytes(snap.new_bytes)} new)${snap.skipped.length ? ` · ${snap.skipped.length} skipped` : ""}${snap.error ? ` · ${snap.error}` : ""}`);
      if (actions.dataset.state === snap.state) return;
      actions.dataset.state = snap.state;
      actions.replaceChildren();
      if (snap.state === "ready") {
        actions.append(h("a", { class: "btn small", href: `/api/v1${base}/snapshots/${seg(snap.id)}/download`, download: `${session.name}-${snap.id}.tar`, testid: "snapshot-download" }, "Download"));
        if (operate) {
          const r = h("button", { type: "button", class: "btn small", testid: "snapshot-restore" }, "Restore");
          r.addEventListener("click", () => restore(snap, r));
          actions.append(r);
        }
      }
      if (operate && snap.state !== "pending") {
        const d = h("button", { type: "button", class: "btn small danger", testid: "snapshot-delete" }, "Delete");
        d.addEventListener("click", async () => {
          if (!(await confirmDialog({ title: "Delete snapshot?", message: `Snapshot ${snap.id} of ${fmtTime(snap.created_at)} is deleted, with every file no other snapshot needs.`, okLabel: "Delete snapshot" }))) return;
          await run(d, async () => {
            await del(`${base}/snapshots/${seg(snap.id)}`);
            toast("Snapshot deleted");
            await snapshotsPoll.now();
          });
        });
        actions.append(d);
      }
    };
    row.update(snap);
    return row;
  };

  const loadSnapshots = async () => {
    if (gone) return;
    const snaps = await get(`${base}/snapshots`);
    syncList(snapList, snaps, { key: (s) => s.id, create: snapRow, empty: "No snapshots yet. Stopping or sleeping the session saves one; so does “Save snapshot”." });
  };

  // ---- events and activity
  const events = h("ul", { class: "log-list", testid: "session-events" });
  const eventsEmpty = h("p", { class: "empty" }, "No events yet.");
  const activity = h("ul", { class: "log-list", testid: "session-activity" });
  let lastSeq;
  const loadEvents = async () => {
    for (;;) {
      const page = await get(`${base}/events`, { after: lastSeq, limit: 200 });
      for (const ev of page.items) {
        lastSeq = ev.seq;
        const who = ev.actor === "system" ? "platform" : ev.actor === user().id ? "you" : ev.actor;
        events.prepend(
          h(
            "li",
            { testid: "session-event", data: { seq: ev.seq } },
            h("time", { datetime: ev.at }, fmtTime(ev.at)),
            " ",
            h("strong", null, `${ev.from_state} → ${ev.to_state}`),
            ev.command ? ` (${ev.command})` : "",
            ` by ${who}`,
            ev.reason ? `: ${ev.reason}` : "",
          ),
        );
      }
      while (events.children.length > 200) events.lastChild.remove();
      if (page.items.length < 200 || !page.next_cursor) break;
    }
    eventsEmpty.hidden = events.children.length > 0;
  };
  const loadActivity = async () => {
    const items = (await get(`${base}/activity`)).slice(0, 50);
    syncList(activity, items, {
      key: (a) => `${a.at}:${a.kind}:${a.detail}`,
      create: (a) => h("li", { testid: "session-activity-entry" }, h("time", { datetime: a.at }, fmtTime(a.at)), " ", pill(a.kind), " ", a.detail),
      empty: () => h("li", { class: "empty" }, "No activity recorded yet."),
    });
  };

  const tick = async () => {
    if (gone) return;
    try {
      session = await get(base);
    } catch (err) {
      if (err.code === "session_not_found") {
        gone = true;
        updateButtons();
        setText(stateEl, "deleted");
        stateEl.className = "pill s-deleted";
        throw new Error("This session no longer exists.");
      }
      throw err;
    }
    renderSession();
    await Promise.all([loadEvents(), loadActivity()]);
  };

  // ---- layout
  ctx.show(
    pageHeader(session.name, desired),
    h("div", { class: "state-line" }, "State: ", stateEl),
    failure,
    section(
      null,
      h("div", { class: "actions wrap" }, lifecycle("start", "Start"), lifecycle("stop", "Stop"), lifecycle("restart", "Restart"), lifecycle("sleep", "Sleep"), del_),
      operate ? null : h("p", { class: "note" }, "You can see this session but not operate it."),
      links,
      h("h3", null, "Preview"),
      previews,
      ws && ws.kind === "team" ? h("h3", null, "Sharing") : null,
      ws && ws.kind === "team"
        ? field("Who can see sessions in this workspace", visibility, isAdmin(ws) ? "A workspace setting: shared sessions and their previews can be seen (not operated) by every member." : "A workspace setting; its admins change it.")
        : null,
    ),
    section("Details", facts),
    section("Snapshots", operate ? snapForm : null, snapList),
    h("div", { class: "two-col" }, section("Events", eventsEmpty, events), section("Activity", activity)),
  );
  renderSession();

  releaseFeatures(session).then((f) => {
    // code-server opens the folder named in the URL: the session user's home.
    if (f.editor) links.append(h("a", { href: `/api/v1${base}/editor/?folder=/home/dev`, target: "_blank", rel: "noopener", class: "btn", testid: "editor-open" }, "Open editor"));
    if (!f.ports.length) previews.append(h("p", { class: "empty" }, "This session's release declares no ports."));
    append(
      previews,
      f.ports.map((p) =>
        h("a", { href: `/api/v1${base}/preview/${p.port}/`, target: "_blank", rel: "noopener", class: "btn small", testid: "preview-link", data: { port: String(p.port) } }, p.name ? `${p.name} (${p.port})` : `Port ${p.port}`),
      ),
    );
  });

  const sessionPoll = ctx.every(2500, tick);
  const snapshotsPoll = ctx.every(5000, loadSnapshots);
}
