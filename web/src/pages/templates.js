// Templates: the new-template form (TOML manifest or devcontainer.json,
// pasted or picked from a file, optional bundle) and the template page with
// versions, bundle uploads, builds with live logs, promotion to releases,
// rollback, and archive/restore/delete.

import { h, field, syncList, setText, replace, select } from "../dom.js";
import { get, post, patch, del, seg, uploadTo } from "../api.js";
import { currentWorkspace, canWrite, setWorkspace, state } from "../state.js";
import { navigate } from "../router.js";
import { run, section, pageHeader, confirmDialog, toast, showError, pill } from "../ui.js";
import { fmtTime, ago, fmtBytes, fmtSecs } from "../format.js";

const FINAL = new Set(["succeeded", "failed", "dead_lettered", "cancelled"]);

const STARTER = `base = "runtime"
instance_type = "small"
sleep_ttl = "30m"
packages = ["jq"]
setup = ["echo setup done"]
start = []
persist = ["/home/dev"]

[[ports]]
port = 3000
name = "web"`;

// ------------------------------------------------------------------ manifest editor

/** Format select, textarea and file pickers; `prefix` names the test ids. */
function manifestEditor(prefix) {
  const format = select({ testid: `${prefix}-format`, name: "format" }, [["toml", "BurstFlare manifest (TOML)"], ["devcontainer", "devcontainer.json"]], "toml");
  const text = h("textarea", { rows: 14, spellcheck: "false", class: "mono", testid: `${prefix}-manifest`, placeholder: STARTER, name: "manifest" });
  const file = h("input", { type: "file", accept: ".toml,.json,.jsonc,text/plain,application/json", testid: `${prefix}-manifest-file` });
  const bundle = h("input", { type: "file", accept: ".tar.gz,.tgz,application/gzip", testid: `${prefix}-bundle` });
  format.addEventListener("change", () => (text.placeholder = format.value === "toml" ? STARTER : '{\n  "image": "mcr.microsoft.com/devcontainers/base:bookworm",\n  "postCreateCommand": "echo setup done",\n  "forwardPorts": [3000]\n}'));
  file.addEventListener("change", async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > 64 * 1024) return showError(new Error(`${f.name} is ${fmtBytes(f.size)}; manifests are at most 64 KiB.`));
    text.value = await f.text();
    if (/\.jsonc?$/i.test(f.name)) format.value = "devcontainer";
    else if (/\.toml$/i.test(f.name)) format.value = "toml";
  });
  return {
    el: h(
      "div",
      { class: "stack" },
      field("Format", format),
      field("Manifest", text, "Paste it here or load it from a file."),
      field("Load from file", file),
      field("Bundle (optional .tar.gz of files the build needs)", bundle),
    ),
    /** The version request body, or null when the textarea is empty. */
    body: () => (text.value.trim() ? { [format.value === "toml" ? "manifest" : "devcontainer"]: text.value } : null),
    bundle: () => bundle.files[0] || null,
    reset: () => {
      text.value = "";
      file.value = "";
      bundle.value = "";
    },
  };
}

async function uploadBundle(templateId, versionId, file) {
  const grant = await post(`/templates/${seg(templateId)}/versions/${seg(versionId)}/bundle-grant`);
  if (file.size > grant.max_bytes) throw new Error(`The bundle is ${fmtBytes(file.size)}; the limit is ${fmtBytes(grant.max_bytes)}.`);
  return uploadTo(grant.upload_url, file, "application/gzip");
}

function warningsList(version) {
  if (!version.warnings || !version.warnings.length) return null;
  return h("ul", { class: "warnings" }, version.warnings.map((w) => h("li", null, h("code", null, w.field), ": ", w.message)));
}

// ------------------------------------------------------------------ new template

export async function newTemplatePage(ctx) {
  const ws = currentWorkspace();
  const name = h("input", { type: "text", required: true, maxlength: 40, pattern: "[a-z][a-z0-9\\-]{0,39}", autocomplete: "off", testid: "template-name", name: "name" });
  const description = h("input", { type: "text", maxlength: 200, testid: "template-description", name: "description" });
  const editor = manifestEditor("template");
  const submit = h("button", { type: "submit", class: "btn primary", testid: "template-create" }, "Create template");
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(submit, async () => {
          const body = { name: name.value.trim(), workspace_id: ws.id };
          if (description.value.trim()) body.description = description.value.trim();
          const tpl = await post("/templates", body);
          const to = `/templates/${seg(tpl.id)}`;
          try {
            const vbody = editor.body();
            if (vbody) {
              const version = await post(`/templates/${seg(tpl.id)}/versions`, vbody);
              const file = editor.bundle();
              if (file) await uploadBundle(tpl.id, version.id, file);
            }
          } catch (err) {
            // The template exists: continue on its page, where the version can be fixed.
            await navigate(to, { keepError: true });
            showError(err);
            return;
          }
          toast(`Template ${tpl.name} created`);
          await navigate(to);
        });
      },
    },
    field("Name", name, "1–40 of a–z, 0–9 and -, starting with a letter."),
    field("Description (optional)", description),
    editor.el,
    submit,
  );
  ctx.show(pageHeader(`New template in ${ws.name}`), section(null, form));
  name.focus();
}

// ------------------------------------------------------------------ template page

export async function templatePage(ctx) {
  const id = ctx.params.id;
  const base = `/templates/${seg(id)}`;
  let tpl = await get(base);
  setWorkspace(tpl.workspace_id, { silent: true });
  const ws = state.workspaces.find((w) => w.id === tpl.workspace_id);
  const writable = canWrite(ws);

  let versions = [];
  let builds = [];
  let selected = null; // build id whose log is shown
  let logFor = null; // `${id}:${state}` the shown log was loaded at

  const head = h("div");
  const versionList = h("div", { class: "rows", testid: "version-list" });
  const buildVersion = h("select", { testid: "build-version", "aria-label": "Version to build" });
  const buildStart = h("button", { type: "button", class: "btn primary", testid: "build-start" }, "Start build");
  const retryDead = h("button", { type: "button", class: "btn small", hidden: true, testid: "build-retry-dead" }, "Retry dead-lettered builds");
  const buildList = h("div", { class: "rows", testid: "build-list" });
  const logTitle = h("div", { class: "meta", testid: "build-log-title" }, "No build selected.");
  const logError = h("p", { class: "bad", hidden: true, testid: "build-error" });
  const log = h("pre", { class: "log", testid: "build-log", tabindex: "0", "aria-label": "Build log" });
  const releaseList = h("div", { class: "rows", testid: "release-list" });
  const activations = h("ul", { class: "history", testid: "release-history" });

  const renderHead = () => {
    const archived = Boolean(tpl.archived_at);
    const actions = [];
    if (writable) {
      actions.push(
        archived
          ? h("button", { type: "button", class: "btn", testid: "template-restore", onclick: (e) => setArchived(e.currentTarget, false) }, "Restore")
          : h("button", { type: "button", class: "btn", testid: "template-archive", onclick: (e) => setArchived(e.currentTarget, true) }, "Archive"),
        h("button", { type: "button", class: "btn danger", testid: "template-delete", onclick: (e) => remove(e.currentTarget) }, "Delete"),
      );
    }
    replace(
      head,
      pageHeader(tpl.name, ...actions),
      h(
        "p",
        { class: "meta" },
        pill(archived ? "archived" : tpl.active_release_id ? "released" : "unreleased", "template-status"),
        " ",
        tpl.description || "No description.",
        archived ? " Archived templates keep their sessions but start no new ones." : "",
      ),
    );
  };

  const setArchived = (btn, archived) =>
    run(btn, async () => {
      tpl = await post(`${base}/${archived ? "archive" : "restore"}`);
      renderHead();
      toast(archived ? "Template archived" : "Template restored");
    });

  const remove = async (btn) => {
    const ok = await confirmDialog({
      title: `Delete template ${tpl.name}?`,
      message: "Its versions, bundles, builds, layers and releases are deleted. Sessions created from it can no longer start.",
      okLabel: "Delete template",
    });
    if (!ok) return;
    await run(btn, async () => {
      await del(base);
      toast(`Template ${tpl.name} deleted`);
      await navigate("/");
    });
  };

  // ---- versions
  const versionNumber = (vid) => {
    const v = versions.find((x) => x.id === vid);
    return v ? `v${v.number}` : vid;
  };

  const loadVersions = async () => {
    versions = (await get(`${base}/versions`)).sort((a, b) => b.number - a.number);
    replace(buildVersion, versions.map((v) => h("option", { value: v.id }, `v${v.number}${v === versions[0] ? " (latest)" : ""}`)));
    buildStart.disabled = !versions.length || !writable;
    syncList(versionList, versions, {
      key: (v) => `${v.id}:${v.bundle ? v.bundle.digest : ""}`,
      empty: "No versions yet — add a manifest below.",
      create: (v) => {
        const upload = h("input", { type: "file", accept: ".tar.gz,.tgz,application/gzip", "aria-label": `Bundle for v${v.number}`, testid: "version-bundle-file" });
        const upBtn = h("button", { type: "button", class: "btn small", testid: "version-bundle-upload" }, "Upload bundle");
        upBtn.addEventListener("click", () =>
          run(upBtn, async () => {
            if (!upload.files[0]) throw new Error("Choose a .tar.gz file first.");
            await uploadBundle(id, v.id, upload.files[0]);
            toast(`Bundle uploaded to v${v.number}`);
            await loadVersions();
          }),
        );
        const m = v.manifest;
        return h(
          "div",
          { class: "row wrap", testid: "version-row", data: { versionId: v.id } },
          h(
            "div",
            { class: "grow" },
            h("strong", null, `v${v.number}`), ` · ${v.source === "devcontainer" ? "devcontainer.json" : "manifest"} · ${fmtTime(v.created_at)}`,
            h("div", { class: "meta" }, `${m.instance_type} · sleeps after ${fmtSecs(m.sleep_ttl_secs)} · ${m.packages.length} package(s) · ${m.setup.length} setup command(s) · ports ${m.ports.map((p) => p.port).join(", ") || "none"}${m.editor ? " · editor" : ""}`),
            h("div", { class: "meta" }, v.bundle ? `bundle ${fmtBytes(v.bundle.size)} · sha256 ${v.bundle.digest.slice(0, 12)}…` : "no bundle"),
            warningsList(v),
          ),
          v.bundle
            ? h("a", { href: `/api/v1${base}/versions/${seg(v.id)}/bundle`, class: "btn small", download: `bundle-v${v.number}.tar.gz` }, "Download bundle")
            : writable
              ? h("div", { class: "upload" }, upload, upBtn)
              : null,
        );
      },
    });
  };

  const editor = manifestEditor("version");
  const addVersion = h("button", { type: "submit", class: "btn", testid: "version-create" }, "Add version");
  const versionForm = h(
    "form",
    {
      class: "stack",
      onsubmit: (e) => {
        e.preventDefault();
        run(addVersion, async () => {
          const body = editor.body();
          if (!body) throw new Error("Paste or load a manifest first.");
          const v = await post(`${base}/versions`, body);
          const file = editor.bundle();
          if (file) await uploadBundle(id, v.id, file);
          editor.reset();
          toast(`Version v${v.number} created`);
          await loadVersions();
          tpl = await get(base);
          renderHead();
        });
      },
    },
    editor.el,
    addVersion,
  );

  // ---- builds
  const buildRow = (b) => {
    const st = h("span", { class: "pill", testid: "build-state" });
    const meta = h("div", { class: "meta" });
    const actions = h("span", { class: "row-actions" });
    const row = h(
      "div",
      { class: "row wrap", testid: "build-row", data: { buildId: b.id } },
      h("div", { class: "grow" }, h("button", { type: "button", class: "linkish", onclick: () => selectBuild(b.id), title: "Show this build's log" }, h("span", { class: "mono" }, b.id)), meta),
      st,
      actions,
    );
    row.update = (b) => {
      setText(st, b.state);
      st.className = `pill s-${b.state}`;
      row.classList.toggle("selected", b.id === selected);
      setText(meta, `${versionNumber(b.version_id)} · attempt ${b.attempts} · started ${ago(b.created_at)}${b.last_error ? ` · ${b.last_error.split("\n")[0]}` : ""}`);
      if (actions.dataset.state === b.state) return;
      actions.dataset.state = b.state;
      actions.replaceChildren();
      if (!writable) return;
      if (b.state === "succeeded") {
        const btn = h("button", { type: "button", class: "btn small primary", testid: "build-promote" }, "Promote to release");
        btn.addEventListener("click", () =>
          run(btn, async () => {
            const rel = await post(`${base}/releases`, { build_id: b.id });
            toast(`Release #${rel.number} is now active`);
            await Promise.all([loadReleases(), get(base).then((t) => ((tpl = t), renderHead()))]);
          }),
        );
        actions.append(btn);
      }
      if (["queued", "building", "retrying"].includes(b.state)) {
        const btn = h("button", { type: "button", class: "btn small", testid: "build-cancel" }, "Cancel");
        btn.addEventListener("click", () => run(btn, async () => (await post(`/builds/${seg(b.id)}/cancel`), buildsPoll.now())));
        actions.append(btn);
      }
      if (["failed", "dead_lettered"].includes(b.state)) {
        const btn = h("button", { type: "button", class: "btn small", testid: "build-retry" }, "Retry");
        btn.addEventListener("click", () => run(btn, async () => (await post(`/builds/${seg(b.id)}/retry`), buildsPoll.now())));
        actions.append(btn);
      }
    };
    row.update(b);
    return row;
  };

  const selectBuild = (buildId) => {
    selected = buildId;
    logFor = null;
    for (const row of buildList.children) row.classList.toggle("selected", row.__key === buildId);
    buildsPoll.now();
  };

  const refreshLog = async () => {
    const b = builds.find((x) => x.id === selected);
    if (!b) return;
    const key = `${b.id}:${b.state}:${b.attempts}`;
    if (FINAL.has(b.state) && logFor === key) return; // final and already shown
    const [full, text] = await Promise.all([get(`/builds/${seg(b.id)}`), get(`/builds/${seg(b.id)}/logs`)]);
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    setText(log, text || (FINAL.has(full.state) ? "(no log output)" : "Waiting for output…"));
    if (atBottom) log.scrollTop = log.scrollHeight;
    setText(logTitle, `Build ${full.id} · ${versionNumber(full.version_id)} · ${full.state}${full.history && full.history.length ? ` · ${full.history.length} attempt(s)` : ""}`);
    logError.hidden = !full.last_error;
    setText(logError, full.last_error || "");
    logFor = `${full.id}:${full.state}:${full.attempts}`;
  };

  const loadBuilds = async () => {
    builds = (await get(`${base}/builds`)).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    if (!selected || !builds.some((b) => b.id === selected)) selected = builds[0] ? builds[0].id : null;
    syncList(buildList, builds, { key: (b) => b.id, create: buildRow, empty: "No builds yet — build a version to make a release." });
    retryDead.hidden = !writable || !builds.some((b) => b.state === "dead_lettered");
    await refreshLog();
  };
  const busy = () => builds.some((b) => !FINAL.has(b.state));

  buildStart.addEventListener("click", () =>
    run(buildStart, async () => {
      const b = await post(`${base}/builds`, { version_id: buildVersion.value || versions[0].id });
      selected = b.id;
      logFor = null;
      toast(`Build ${b.id} queued`);
      await buildsPoll.now();
    }),
  );
  retryDead.addEventListener("click", () =>
    run(retryDead, async () => {
      const res = await post(`${base}/builds/retry-dead-lettered`);
      toast(`${res.requeued.length} build(s) re-queued`);
      await buildsPoll.now();
    }),
  );

  // ---- releases
  const loadReleases = async () => {
    const res = await get(`${base}/releases`);
    syncList(releaseList, res.releases, {
      key: (r) => `${r.id}:${r.active}`,
      empty: "No releases yet — promote a succeeded build.",
      create: (r) => {
        const s = r.spec;
        const rollback = writable && !r.active ? h("button", { type: "button", class: "btn small", testid: "release-rollback" }, "Make active") : null;
        if (rollback) {
          rollback.addEventListener("click", () =>
            run(rollback, async () => {
              await post(`${base}/releases/${seg(r.id)}/rollback`);
              toast(`Release #${r.number} is active again`);
              await loadReleases();
            }),
          );
        }
        return h(
          "div",
          { class: "row wrap", testid: "release-row", data: { releaseId: r.id } },
          h(
            "div",
            { class: "grow" },
            h("strong", null, `Release #${r.number}`), " ", r.active ? pill("active", "release-active") : null,
            h("div", { class: "meta" }, `from ${s.build_id} (${versionNumber(s.version_id)}) · ${fmtTime(r.created_at)}`),
            h("div", { class: "meta" }, `${s.instance_type} · layer ${fmtBytes(s.layer_size)} · sleeps after ${fmtSecs(s.sleep_ttl_secs)} · ports ${s.ports.map((p) => (p.name ? `${p.name}:${p.port}` : p.port)).join(", ") || "none"}${s.editor ? " · editor" : ""}`),
          ),
          rollback,
        );
      },
    });
    replace(
      activations,
      res.activations.slice(0, 20).map((a) => {
        const rel = res.releases.find((r) => r.id === a.release_id);
        const prev = res.releases.find((r) => r.id === a.previous_release_id);
        return h("li", null, `${fmtTime(a.created_at)}: ${a.kind} to #${rel ? rel.number : a.release_id}${prev ? ` (was #${prev.number})` : ""} by ${a.actor_id}`);
      }),
    );
  };

  renderHead();
  ctx.show(
    head,
    section("Versions", versionList, writable ? h("details", { class: "sub" }, h("summary", { testid: "version-add" }, "Add a version"), versionForm) : null),
    section(
      "Builds",
      h("div", { class: "inline-form" }, field("Version", buildVersion), buildStart, retryDead),
      buildList,
      h("h3", null, "Log"),
      logTitle,
      logError,
      log,
    ),
    section("Releases", releaseList, h("h3", null, "History"), activations),
  );
  buildStart.disabled = true;
  await Promise.all([loadVersions(), loadReleases()]);
  const buildsPoll = ctx.every(() => (busy() ? 1500 : 5000), loadBuilds);
}
