// Dashboard (`/`): the current workspace's sessions, polled every 2.5 s and
// updated in place, and its templates, with quick links to create either.

import { h, syncList, setText } from "../dom.js";
import { get, post, getAll, seg } from "../api.js";
import { currentWorkspace, canWrite } from "../state.js";
import { run, section, pageHeader, toast } from "../ui.js";
import { ago } from "../format.js";

const STARTABLE = new Set(["created", "stopped", "failed", "sleeping"]);

export async function dashboardPage(ctx) {
  const ws = currentWorkspace();
  if (!ws) {
    ctx.show(pageHeader("Dashboard"), h("p", { class: "empty" }, "You are not a member of any workspace."));
    return;
  }
  const writable = canWrite(ws);
  const templateNames = new Map();

  const sessions = h("div", { class: "rows", testid: "session-list" });
  const templates = h("div", { class: "rows", testid: "template-list" });

  ctx.show(
    pageHeader(ws.name, h("a", { href: "/sessions/new", class: "btn primary", testid: "new-session" }, "New session"), h("a", { href: "/templates/new", class: "btn", testid: "new-template" }, "New template")),
    writable ? null : h("p", { class: "note" }, "You are a viewer in this workspace: you can look, not change."),
    section("Sessions", sessions),
    section("Templates", templates),
  );

  const sessionRow = (s) => {
    const state = h("span", { class: "pill", testid: "session-state" });
    const meta = h("div", { class: "meta" });
    const quick = h("span", { class: "row-actions" });
    const row = h(
      "div",
      { class: "row", testid: "session-row", data: { sessionId: s.id } },
      h("div", { class: "grow" }, h("a", { href: `/sessions/${seg(s.id)}`, class: "row-title" }, s.name), meta),
      state,
      quick,
    );
    row.update = (s) => {
      setText(state, s.state);
      state.className = `pill s-${s.state}`;
      const tpl = s.spec.release ? templateNames.get(s.spec.release.template_id) || "template" : "default environment";
      setText(meta, `${tpl} · ${s.spec.instance_type} · updated ${ago(s.updated_at)}${s.failure_reason ? ` · ${s.failure_reason}` : ""}`);
      const want = s.state === "running" ? "running" : STARTABLE.has(s.state) ? "startable" : "busy";
      if (quick.dataset.mode === want) return;
      quick.dataset.mode = want;
      quick.replaceChildren();
      if (want === "running") quick.append(h("a", { href: `/sessions/${seg(s.id)}/terminal`, class: "btn small" }, "Terminal"));
      if (want === "startable" && writable) {
        const btn = h("button", { type: "button", class: "btn small" }, s.state === "sleeping" ? "Wake" : "Start");
        btn.addEventListener("click", () =>
          run(btn, async () => {
            const p = post(`/sessions/${seg(s.id)}/start`);
            sessionsPoll.now();
            await p;
            toast(`${s.name} is running`);
            sessionsPoll.now();
          }),
        );
        quick.append(btn);
      }
    };
    row.update(s);
    return row;
  };

  const loadSessions = async () => {
    const items = await getAll("/sessions", { workspace_id: ws.id });
    syncList(sessions, items, {
      key: (s) => s.id,
      create: sessionRow,
      empty: () => h("p", { class: "empty" }, "No sessions yet — create one from a template. ", h("a", { href: "/sessions/new" }, "New session")),
    });
  };

  const templateRow = (t) => {
    const status = h("span", { class: "pill" });
    const meta = h("div", { class: "meta" });
    const row = h(
      "div",
      { class: "row", testid: "template-row", data: { templateId: t.id } },
      h("div", { class: "grow" }, h("a", { href: `/templates/${seg(t.id)}`, class: "row-title" }, t.name), meta),
      status,
    );
    row.update = (t) => {
      const st = t.archived_at ? "archived" : t.active_release_id ? "released" : t.latest_version ? "unreleased" : "empty";
      setText(status, st);
      status.className = `pill s-${st}`;
      setText(meta, [t.description, `${t.latest_version} version(s)`, `updated ${ago(t.updated_at)}`].filter(Boolean).join(" · "));
    };
    row.update(t);
    return row;
  };

  const loadTemplates = async () => {
    const items = await get("/templates", { workspace_id: ws.id });
    for (const t of items) templateNames.set(t.id, t.name);
    syncList(templates, items, {
      key: (t) => t.id,
      create: templateRow,
      empty: () => h("p", { class: "empty" }, "No templates yet — describe an environment with a manifest. ", h("a", { href: "/templates/new" }, "New template")),
    });
  };

  // Templates first (session rows name their template), then live sessions.
  await ctx.every(15000, loadTemplates).ready;
  const sessionsPoll = ctx.every(2500, loadSessions);
}
