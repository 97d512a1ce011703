// Audit log (`/audit`) of the current workspace, for admins and owners:
// filters by action (name or family, `session.*`), actor and time range,
// newest first, paged with the API's cursor ("Load more").

import { h, field, select, append } from "../dom.js";
import { get } from "../api.js";
import { currentWorkspace, isAdmin } from "../state.js";
import { run, section, pageHeader, pill } from "../ui.js";
import { fmtTime } from "../format.js";

export async function auditPage(ctx) {
  const ws = currentWorkspace();
  ctx.show(pageHeader(`Audit log · ${ws.name}`));
  if (!isAdmin(ws)) {
    ctx.show(h("p", { class: "empty" }, "Only admins and owners of this workspace can read its audit log."));
    return;
  }
  const members = await get(`/workspaces/${encodeURIComponent(ws.id)}/members`);
  const names = new Map(members.map((m) => [m.user_id, `${m.display_name} <${m.email}>`]));

  const action = h("input", { type: "text", placeholder: "session.* or session.start", testid: "audit-filter-action", name: "action", list: "audit-actions" });
  const actor = select({ testid: "audit-filter-actor", name: "actor" }, [["", "Anyone"], ...members.map((m) => [m.user_id, m.display_name])], "");
  const since = h("input", { type: "datetime-local", testid: "audit-filter-since", name: "since" });
  const until = h("input", { type: "datetime-local", testid: "audit-filter-until", name: "until" });
  const apply = h("button", { type: "submit", class: "btn primary", testid: "audit-apply" }, "Filter");
  const list = h("div", { class: "rows", testid: "audit-list" });
  const more = h("button", { type: "button", class: "btn", testid: "audit-more", hidden: true }, "Load more");
  const suggestions = h(
    "datalist",
    { id: "audit-actions" },
    ["session.*", "template.*", "build.*", "release.*", "snapshot.*", "workspace.*", "auth.*", "passkey.*", "ssh_key.*", "token.*"].map((v) => h("option", { value: v })),
  );

  let cursor = null;
  let query = {};
  const iso = (v) => (v ? new Date(v).toISOString() : undefined);

  const row = (e) =>
    h(
      "div",
      { class: "row wrap", testid: "audit-row", data: { auditId: e.id } },
      h(
        "div",
        { class: "grow" },
        h("strong", { class: "mono" }, e.action), " ", pill(e.outcome), ` ${e.status}${e.error_code ? ` ${e.error_code}` : ""}`,
        h("div", { class: "meta" }, `${fmtTime(e.created_at)} · ${e.actor_id ? names.get(e.actor_id) || e.actor_id : "anonymous"}${e.target_id ? ` · ${e.target_type || "target"} ${e.target_id}` : ""}`),
        h("div", { class: "meta" }, `${e.ip || "—"} · ${e.user_agent || "—"} · ${e.request_id}`),
      ),
    );

  let seq = 0; // answers to superseded requests are dropped
  const load = async (reset) => {
    const mine = ++seq;
    const page = await get(`/workspaces/${encodeURIComponent(ws.id)}/audit`, { ...query, limit: 50, cursor: reset ? undefined : cursor });
    if (mine !== seq) return;
    if (reset) list.replaceChildren();
    append(list, page.items.map(row));
    if (!list.children.length) list.append(h("p", { class: "empty" }, "No audit events match."));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };

  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        query = { action: action.value.trim() || undefined, actor: actor.value || undefined, since: iso(since.value), until: iso(until.value) };
        run(apply, () => load(true));
      },
    },
    field("Action", action),
    field("Actor", actor),
    field("Since", since),
    field("Until", until),
    apply,
    suggestions,
  );
  more.addEventListener("click", () => run(more, () => load(false)));
  // Filters apply as you type (debounced) and on change, as well as on submit.
  let debounce = null;
  const applySoon = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => form.requestSubmit(), 400);
  };
  action.addEventListener("input", applySoon);
  for (const el of [actor, since, until]) el.addEventListener("change", applySoon);
  ctx.onCleanup(() => clearTimeout(debounce));
  ctx.show(section(null, form), section(null, list, h("div", { class: "actions" }, more)));
  await load(true);
}
