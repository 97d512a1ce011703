//! Persistence on real containers: snapshots of the persisted paths taken by
//! the session's Durable Object from the agent, stored in (local) R2 as a
//! manifest plus content-addressed blobs, restored through the agent; sleep
//! on demand and when idle, wake on SSH access.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use burstflare_api::ErrorCode;
use burstflare_api::runtime::LABEL_SESSION;
use burstflare_api::sessions::Session;
use burstflare_api::snapshots::{RestoreRequest, RestoreWhen, Snapshot};
use burstflare_domain::{SessionCommand, SessionState};
use burstflare_e2e::Stack;
use burstflare_e2e::runner::docker_containers;
use burstflare_e2e::user::{User, ok, run, text};

use crate::support::{eventually, expect_api_error};

/// Runs `cmd` over SSH in `s` through the CLI; (stdout, stderr).
async fn ssh(u: &User, s: &Session, cmd: &str) -> Result<(String, String)> {
    let key = u.key().display().to_string();
    let out =
        ok(run(u.cli(&["ssh", &s.name, "-i", &key, "-o", "BatchMode=yes", "--", cmd])).await?)?;
    Ok((text(&out.stdout).trim().to_owned(), text(&out.stderr)))
}

fn containers(s: &Session) -> Result<Vec<String>> {
    docker_containers(LABEL_SESSION, s.id.as_str())
}

async fn state(u: &User, s: &Session) -> Result<Session> {
    Ok(u.client.get_session(s.id.as_str()).await?)
}

/// Files written over SSH under the persisted `/home/dev` survive sleep →
/// wake (by `ssh`), stop → start and restart; files elsewhere do not.
pub async fn persisted_paths_survive_sleep_stop_and_restart(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "persist").await?;
    u.add_key().await?;
    let s = u.running_session("keep").await?;
    ensure!(s.spec.persisted_paths == ["/home/dev"], "{:?}", s.spec);
    let (sum, _) = ssh(
        &u,
        &s,
        "mkdir -p ~/work/sub && echo hello-$RANDOM > ~/work/note.txt \
         && head -c 3000000 /dev/urandom > ~/work/sub/blob.bin && ln -s note.txt ~/work/link \
         && chmod 0640 ~/work/note.txt && echo outside > /tmp/outside.txt \
         && cd ~/work && sha256sum note.txt sub/blob.bin | sha256sum",
    )
    .await?;
    let check = "cd ~/work && sha256sum note.txt sub/blob.bin | sha256sum";

    // Sleep: a snapshot, then no container.
    ok(run(u.cli(&["session", "sleep", &s.name])).await?)?;
    let slept = state(&u, &s).await?;
    ensure!(slept.state == SessionState::Sleeping, "{slept:?}");
    ensure!(containers(&s)?.is_empty(), "{:?}", containers(&s)?);
    // `ssh` wakes it, with progress on stderr, and sees the files.
    let (again, stderr) = ssh(&u, &s, check).await?;
    ensure!(again == sum, "after wake: {again} != {sum}");
    ensure!(
        stderr.contains(&format!("waking {}…", s.name))
            && stderr.contains("restoring")
            && stderr.contains("ready"),
        "{stderr}"
    );
    let (mode, _) = ssh(
        &u,
        &s,
        "stat -c '%a %U' ~/work/note.txt; readlink ~/work/link",
    )
    .await?;
    ensure!(mode == "640 dev\nnote.txt", "{mode}");
    let (outside, _) = ssh(&u, &s, "cat /tmp/outside.txt 2>/dev/null || echo gone").await?;
    ensure!(
        outside == "gone",
        "a file outside the persisted paths survived"
    );

    // Stop → start.
    ok(run(u.cli(&["session", "stop", &s.name])).await?)?;
    ensure!(containers(&s)?.is_empty());
    ok(run(u.cli(&["session", "start", &s.name])).await?)?;
    ensure!(ssh(&u, &s, check).await?.0 == sum, "after stop/start");

    // Restart.
    ssh(&u, &s, "echo more > ~/work/more.txt").await?;
    ok(run(u.cli(&["session", "restart", &s.name])).await?)?;
    ensure!(ssh(&u, &s, "cat ~/work/more.txt").await?.0 == "more");

    let kinds: Vec<String> = u
        .client
        .snapshots(s.id.as_str())
        .await?
        .iter()
        .map(|x| format!("{}:{}", x.kind, x.state))
        .collect();
    ensure!(
        kinds == ["restart:ready", "stop:ready", "sleep:ready"],
        "{kinds:?}"
    );
    Ok(())
}

/// Manual snapshots: the second of an unchanged 200 MB tree stores (almost)
/// nothing; restoring an older one into the running session brings its
/// content back; deleting a snapshot keeps the blobs others share and
/// removes the rest from R2; a killed container loses nothing the last
/// snapshot held; bad requests get the right errors.
pub async fn snapshots_are_incremental_restorable_and_shared(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "snaps").await?;
    u.add_key().await?;
    let s = u.running_session("snap").await?;
    ssh(
        &u,
        &s,
        "mkdir -p ~/data && for i in 1 2 3 4; do head -c 50000000 /dev/urandom > ~/data/big$i.bin; done && echo v1 > ~/data/version",
    )
    .await?;
    let first: Snapshot = u.client.create_snapshot(s.id.as_str()).await?;
    ensure!(
        first.state == "ready" && first.kind == "manual",
        "{first:?}"
    );
    ensure!(
        first.bytes >= 200_000_000 && first.new_bytes >= 200_000_000,
        "{first:?}"
    );
    let second = u.client.create_snapshot(s.id.as_str()).await?;
    ensure!(
        second.bytes >= 200_000_000 && second.new_bytes < 64 * 1024,
        "the unchanged tree was stored again: {second:?}"
    );

    // Restore the first into the running session after a change.
    ssh(
        &u,
        &s,
        "echo v2 > ~/data/version && echo extra > ~/data/extra",
    )
    .await?;
    let changed = u.client.create_snapshot(s.id.as_str()).await?;
    let r = u
        .client
        .restore(
            s.id.as_str(),
            &RestoreRequest {
                snapshot_id: first.id.clone(),
                when: RestoreWhen::Now,
            },
        )
        .await?;
    ensure!(r.files >= 2, "{r:?}");
    let (v, _) = ssh(&u, &s, "cat ~/data/version; ls ~/data").await?;
    ensure!(
        v == "v1\nbig1.bin\nbig2.bin\nbig3.bin\nbig4.bin\nversion",
        "{v}"
    );

    // `next_start` picks what the next start restores.
    u.client
        .restore(
            s.id.as_str(),
            &RestoreRequest {
                snapshot_id: changed.id.clone(),
                when: RestoreWhen::NextStart,
            },
        )
        .await?;
    let names = containers(&s)?;
    ensure!(names.len() == 1);
    // A killed container: the session fails, the chosen snapshot comes back.
    let out = std::process::Command::new("docker")
        .args(["kill", &names[0]])
        .output()?;
    ensure!(out.status.success());
    eventually(Duration::from_secs(30), "the session to fail", || async {
        Ok((state(&u, &s).await?.state == SessionState::Failed).then_some(()))
    })
    .await?;
    u.client
        .session_command(s.id.as_str(), SessionCommand::Start)
        .await?;
    let (v, _) = ssh(&u, &s, "cat ~/data/version ~/data/extra").await?;
    ensure!(v == "v2\nextra", "{v}");

    // Deleting: shared blobs stay until no snapshot needs them.
    let blobs = |ws: String| -> Result<usize> {
        Ok(stack.r2_keys(&format!("workspaces/{ws}/blobs/"))?.len())
    };
    let ws = s.workspace_id.to_string();
    let before = blobs(ws.clone())?;
    u.client
        .delete_snapshot(s.id.as_str(), first.id.as_str())
        .await?;
    ensure!(blobs(ws.clone())? == before, "a shared blob was deleted");
    let r = u
        .client
        .restore(
            s.id.as_str(),
            &RestoreRequest {
                snapshot_id: second.id.clone(),
                when: RestoreWhen::Now,
            },
        )
        .await?;
    ensure!(r.bytes >= 200_000_000, "{r:?}");
    for snap in u.client.snapshots(s.id.as_str()).await? {
        u.client
            .delete_snapshot(s.id.as_str(), snap.id.as_str())
            .await?;
    }
    ensure!(blobs(ws.clone())? == 0, "blobs left: {}", blobs(ws)?);
    ensure!(
        stack
            .r2_keys(&format!("workspaces/{}/snapshots/", s.workspace_id))?
            .iter()
            .all(|k| !k.contains(first.id.as_str())),
        "manifest left"
    );

    // Errors.
    let gone = u
        .client
        .restore(
            s.id.as_str(),
            &RestoreRequest {
                snapshot_id: first.id.clone(),
                when: RestoreWhen::Now,
            },
        )
        .await;
    expect_api_error(gone, 404, ErrorCode::SnapshotNotFound)?;
    let other = User::new(stack, "snap-other").await?;
    let foreign = other.client.snapshots(s.id.as_str()).await;
    expect_api_error(foreign, 404, ErrorCode::SessionNotFound)?;
    ok(run(u.cli(&["session", "stop", &s.name])).await?)?;
    let stopped = u.client.create_snapshot(s.id.as_str()).await;
    let body = expect_api_error(stopped, 409, ErrorCode::InvalidSessionState)?;
    ensure!(body.message.contains("stopped"), "{}", body.message);
    let slept = u
        .client
        .session_command(s.id.as_str(), SessionCommand::Sleep)
        .await;
    expect_api_error(slept, 409, ErrorCode::InvalidSessionState)?;
    Ok(())
}

/// Two SSH connections to a sleeping session at once start one container.
pub async fn concurrent_wakes_start_one_container(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "wake2").await?;
    u.add_key().await?;
    let s = u.running_session("wake").await?;
    ssh(&u, &s, "echo here > ~/mark").await?;
    u.client
        .session_command(s.id.as_str(), SessionCommand::Sleep)
        .await?;
    let generation = state(&u, &s).await?.generation;
    let (a, b) = tokio::join!(ssh(&u, &s, "cat ~/mark"), ssh(&u, &s, "cat ~/mark"));
    ensure!(a?.0 == "here" && b?.0 == "here");
    let now = state(&u, &s).await?;
    ensure!(
        now.state == SessionState::Running && now.generation == generation + 1,
        "{now:?}"
    );
    ensure!(containers(&s)?.len() == 1, "{:?}", containers(&s)?);
    Ok(())
}

/// A session of a template whose `sleep_ttl` is one minute sleeps by itself
/// once nobody has used it for that long; `ssh` wakes it with its files.
pub async fn idle_sessions_sleep_by_themselves(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "idle").await?;
    u.add_key().await?;
    let manifest = "base = \"runtime\"\nsleep_ttl = \"1m\"\npersist = [\"/home/dev\"]\n";
    let (tid, vid) = crate::builds::template_with(&u.client, "sleepy", manifest).await?;
    let built = crate::builds::build_and_promote(&u.client, &tid, &vid).await?;
    ensure!(built.artifact.is_some());
    let name = format!("idle-{}", burstflare_e2e::stack::unique().replace('-', ""));
    let out = ok(run(u.cli(&[
        "session",
        "create",
        &name,
        "--template",
        "sleepy",
        "--start",
        "--json",
    ]))
    .await?)?;
    let s: Session = serde_json::from_slice(&out.stdout)?;
    ensure!(s.spec.sleep_ttl_secs == Some(60), "{:?}", s.spec);
    ssh(&u, &s, "echo dreamt > ~/dream").await?;
    let slept = eventually(
        Duration::from_secs(150),
        "the idle session to sleep",
        || async {
            let now = state(&u, &s).await?;
            Ok((now.state == SessionState::Sleeping).then_some(now))
        },
    )
    .await?;
    ensure!(containers(&s)?.is_empty(), "{:?}", containers(&s)?);
    let events = u.client.session_events(s.id.as_str(), None).await?.items;
    let sleep = events
        .iter()
        .find(|e| e.command.as_deref() == Some("sleep"))
        .context("no sleep event")?;
    ensure!(sleep.actor == "system", "{sleep:?}");
    ensure!(slept.desired_state == burstflare_domain::DesiredState::Sleeping);
    // The activity log says why.
    let out = ok(run(u.cli(&["session", "activity", &s.name, "--json"])).await?)?;
    let log: Vec<burstflare_api::sessions::ActivityEntry> = serde_json::from_slice(&out.stdout)?;
    let newest = log.first().context("empty activity log")?;
    ensure!(
        newest.kind == "sleep" && newest.detail.contains("sleep TTL 60 s"),
        "{log:?}"
    );
    ensure!(
        log.iter()
            .any(|e| e.kind == "awake" && e.detail.starts_with("ssh used")),
        "the SSH command kept it awake for a while: {log:?}"
    );
    let (dream, stderr) = ssh(&u, &s, "cat ~/dream").await?;
    ensure!(dream == "dreamt", "{dream}");
    ensure!(stderr.contains("ready"), "{stderr}");
    let log = u.client.session_activity(s.id.as_str()).await?;
    ensure!(log.first().is_some_and(|e| e.kind == "wake"), "{log:?}");
    Ok(())
}

/// A manifest line for raw uploads and agent restores: one root, `entries`.
fn manifest(root: &str, entries: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "format": 1, "roots": [root], "entries": entries })
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Manifests (with their content) that break the restore rules, each with a
/// fragment of the message that must name the reason: `..`, an absolute
/// path, a root that is not persisted, a symlink escape, an oversized entry,
/// content that does not match its digest.
fn hostile(data: &'static [u8], digest: &str) -> Vec<(&'static str, serde_json::Value, Vec<u8>)> {
    let file = |path: &str| {
        serde_json::json!({"root": 0, "path": path, "kind": "file", "mode": 420, "mtime": 0,
                           "size": data.len(), "sha256": digest})
    };
    vec![
        (
            "`..`",
            manifest("/home/dev", serde_json::json!([file("../../etc/passwd")])),
            data.to_vec(),
        ),
        (
            "absolute",
            manifest("/home/dev", serde_json::json!([file("/etc/passwd")])),
            data.to_vec(),
        ),
        (
            "not a persisted path",
            manifest("/etc", serde_json::json!([file("passwd")])),
            data.to_vec(),
        ),
        (
            "symlink escape",
            manifest(
                "/home/dev",
                serde_json::json!([{"root": 0, "path": "l", "kind": "symlink", "mode": 511, "mtime": 0,
                                    "target": "/etc"}]),
            ),
            Vec::new(),
        ),
        (
            "oversized entry",
            manifest(
                "/home/dev",
                serde_json::json!([{"root": 0, "path": "huge", "kind": "file", "mode": 420, "mtime": 0,
                                    "size": 20_u64 << 30, "sha256": digest}]),
            ),
            Vec::new(),
        ),
        (
            "does not match",
            manifest("/home/dev", serde_json::json!([file("x")])),
            b"nope!".to_vec(),
        ),
    ]
}

/// A fingerprint of what a container holds outside its persisted path and
/// of the persisted path itself (paths, types, sizes, link targets, and the
/// content of /etc/passwd).
fn container_state(container: &str) -> Result<String> {
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            container,
            "bash",
            "-c",
            "sha256sum /etc/passwd /etc/shadow; ls -la /tmp /etc/sudoers.d; \
             find /home/dev /workspace -printf '%p %y %s %l\\n' 2>/dev/null | sort",
        ])
        .output()?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    Ok(text(&out.stdout))
}

/// Snapshots download as tar archives and upload (a directory or such an
/// archive) with a signed grant; malicious uploads — through the CLI or
/// crafted by hand — and malicious restores sent straight to a session's
/// agent are refused, and nothing in the container changes.
pub async fn uploads_downloads_and_malicious_snapshots(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "upload").await?;
    u.add_key().await?;
    let s = u.running_session("up").await?;
    ssh(
        &u,
        &s,
        "mkdir -p ~/seed && echo from-session > ~/seed/a.txt && ln -s a.txt ~/seed/l",
    )
    .await?;
    let snap = u.client.create_snapshot(s.id.as_str()).await?;

    // Download → a tar archive of the persisted path.
    let tar = u.home.path().join("snap.tar");
    ok(run(u.cli(&[
        "snapshot",
        "download",
        &s.name,
        snap.id.as_str(),
        "-o",
        &tar.display().to_string(),
    ]))
    .await?)?;
    let listed = ok(run({
        let mut c = std::process::Command::new("tar");
        c.arg("tvf").arg(&tar);
        c
    })
    .await?)?;
    let listed = text(&listed.stdout);
    ensure!(
        listed.contains("home/dev/seed/a.txt") && listed.contains("home/dev/seed/l -> a.txt"),
        "{listed}"
    );
    let extracted = tempfile::tempdir()?;
    ok(run({
        let mut c = std::process::Command::new("tar");
        c.arg("xf").arg(&tar).arg("-C").arg(extracted.path());
        c
    })
    .await?)?;
    ensure!(
        std::fs::read_to_string(extracted.path().join("home/dev/seed/a.txt"))? == "from-session\n"
    );

    // Upload a local directory, then restore it into the session.
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("proj"))?;
    std::fs::write(dir.path().join("proj/readme"), "uploaded\n")?;
    std::fs::write(dir.path().join("big"), vec![7_u8; 3 << 20])?;
    let out = ok(run(u.cli(&[
        "snapshot",
        "upload",
        &s.name,
        &dir.path().display().to_string(),
        "--json",
    ]))
    .await?)?;
    let uploaded: Snapshot = serde_json::from_slice(&out.stdout)?;
    ensure!(
        uploaded.kind == "upload" && uploaded.state == "ready" && uploaded.files == 2,
        "{uploaded:?}"
    );
    ok(run(u.cli(&["snapshot", "restore", &s.name, uploaded.id.as_str()])).await?)?;
    let (seen, _) = ssh(
        &u,
        &s,
        "cat ~/proj/readme; stat -c %s ~/big; ls ~/seed 2>&1 | head -1",
    )
    .await?;
    ensure!(seen.starts_with("uploaded\n3145728\n"), "{seen}");
    ensure!(
        seen.contains("No such file"),
        "the restore replaces the tree: {seen}"
    );
    // The downloaded archive uploads again (a round trip) and brings the
    // first snapshot's files back.
    let out = ok(run(u.cli(&[
        "snapshot",
        "upload",
        &s.name,
        &tar.display().to_string(),
        "--json",
    ]))
    .await?)?;
    let again: Snapshot = serde_json::from_slice(&out.stdout)?;
    ok(run(u.cli(&["snapshot", "restore", &s.name, again.id.as_str()])).await?)?;
    ensure!(ssh(&u, &s, "cat ~/seed/l").await?.0 == "from-session");

    let names = containers(&s)?;
    ensure!(names.len() == 1, "{names:?}");
    let container = names[0].clone();
    let before = container_state(&container)?;
    let count = u.client.snapshots(s.id.as_str()).await?.len();

    // Malicious archives: the CLI refuses them, naming the reason.
    let bad_tars: Vec<(&str, Vec<u8>)> = vec![
        (
            "`..` is not allowed",
            raw_tar(&[("home/dev/../../etc/x", b'0', "")]),
        ),
        ("absolute paths", raw_tar(&[("/etc/x", b'0', "")])),
        (
            "symlink escape",
            raw_tar(&[("home/dev/l", b'2', "../../etc/passwd")]),
        ),
        (
            "hard link out",
            raw_tar(&[("home/dev/h", b'1', "etc/shadow")]),
        ),
        ("device files", raw_tar(&[("home/dev/null", b'3', "")])),
        (
            "outside the session",
            raw_tar(&[("etc/cron.d/x", b'0', "")]),
        ),
    ];
    for (why, bytes) in bad_tars {
        let path = u.home.path().join("bad.tar");
        std::fs::write(&path, bytes)?;
        let out = run(u.cli(&["snapshot", "upload", &s.name, &path.display().to_string()])).await?;
        ensure!(!out.status.success(), "{why}: accepted");
        ensure!(
            text(&out.stderr).contains(why),
            "{why}: {}",
            text(&out.stderr)
        );
    }

    // Malicious manifests sent by hand with a valid grant: 400, nothing kept.
    let data = b"evil\n";
    let digest = sha256_hex(data);
    let file = |path: &str| {
        serde_json::json!({"root": 0, "path": path, "kind": "file", "mode": 420, "mtime": 0,
                           "size": data.len(), "sha256": digest})
    };
    let mut cases = hostile(data, &digest);
    cases.extend([
        (
            "written through symlink",
            manifest(
                "/home/dev",
                serde_json::json!([{"root": 0, "path": "l", "kind": "symlink", "mode": 511, "mtime": 0,
                                    "target": "."}, file("l/x")]),
            ),
            data.to_vec(),
        ),
        (
            "after the last file",
            manifest("/home/dev", serde_json::json!([file("x")])),
            b"evil\nmore".to_vec(),
        ),
    ]);
    for (why, m, content) in cases {
        let grant = u.client.snapshot_upload_grant(s.id.as_str()).await?;
        let mut body = serde_json::to_vec(&m)?;
        body.push(b'\n');
        body.extend_from_slice(&content);
        let resp = stack
            .http()
            .put(&grant.upload_url)
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        ensure!(
            status == 400 && text.contains("invalid_snapshot"),
            "{why}: {status} {text}"
        );
        ensure!(text.contains(why), "{why}: {text}");
    }
    // Too large for the grant: 413; a forged grant: 403.
    let grant = u.client.snapshot_upload_grant(s.id.as_str()).await?;
    let big = manifest(
        "/home/dev",
        serde_json::json!([{"root": 0, "path": "big", "kind": "file", "mode": 420, "mtime": 0,
                            "size": 5_u64 << 30, "sha256": digest}]),
    );
    let resp = stack
        .http()
        .put(&grant.upload_url)
        .body(format!("{big}\n"))
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 413, "{}", resp.status());
    let forged = format!("{}x", grant.upload_url);
    let resp = stack.http().put(&forged).body("{}\n").send().await?;
    ensure!(resp.status().as_u16() == 403, "{}", resp.status());
    let kept: Vec<Snapshot> = u.client.snapshots(s.id.as_str()).await?;
    ensure!(
        kept.iter().filter(|x| x.state == "ready").count() == count,
        "a refused upload was kept: {kept:?}"
    );

    // Straight to the agent: malicious restores change nothing in the container.
    let secret = {
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .Config.Env}}{{println .}}{{end}}",
                &container,
            ])
            .output()?;
        text(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{}=", burstflare_api::runtime::ENV_AGENT_SECRET))
            })
            .context("agent secret")?
            .to_owned()
    };
    let port = {
        let out = std::process::Command::new("docker")
            .args([
                "port",
                &container,
                &burstflare_api::runtime::AGENT_PORT.to_string(),
            ])
            .output()?;
        text(&out.stdout)
            .lines()
            .next()
            .context("agent port")?
            .trim()
            .to_owned()
    };
    let agent_restore = |m: serde_json::Value, content: Vec<u8>| {
        let mut body = serde_json::to_vec(&serde_json::json!({
            "allowed_roots": ["/home/dev"],
            "manifest": m,
        }))
        .unwrap_or_default();
        body.push(b'\n');
        body.extend_from_slice(&content);
        stack
            .http()
            .post(format!("http://{port}/snapshot/restore"))
            .header(burstflare_api::runtime::AGENT_TOKEN_HEADER, &secret)
            .body(body)
            .send()
    };
    ssh(&u, &s, "ln -s /etc ~/planted").await?;
    let before = {
        let _ = before;
        container_state(&container)?
    };
    let mut evil = hostile(data, &digest);
    // The planted `~/planted -> /etc` is not in the manifest: its child has
    // no parent directory entry.
    evil.push((
        "parent",
        manifest("/home/dev", serde_json::json!([file("planted/passwd")])),
        data.to_vec(),
    ));
    for (why, m, content) in evil {
        let resp = agent_restore(m, content).await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        ensure!(status == 400, "{why}: {status} {body}");
        ensure!(body.contains(why), "{why}: {body}");
        ensure!(
            container_state(&container)? == before,
            "{why}: the container changed"
        );
    }
    // A manifest that names `planted` as a directory replaces the planted
    // symlink with a real directory: /etc is never written.
    let resp = agent_restore(
        manifest(
            "/home/dev",
            serde_json::json!([{"root": 0, "path": "planted", "kind": "dir", "mode": 493, "mtime": 0},
                               file("planted/passwd")]),
        ),
        data.to_vec(),
    )
    .await?;
    ensure!(resp.status().is_success(), "{}", resp.text().await?);
    let (passwd, _) = ssh(
        &u,
        &s,
        "head -1 /etc/passwd; cat ~/planted/passwd; stat -c %F ~/planted",
    )
    .await?;
    ensure!(
        passwd == "root:x:0:0:root:/root:/bin/bash\nevil\ndirectory",
        "{passwd}"
    );
    Ok(())
}

/// A tar archive with one raw entry per (path, type flag, link target),
/// written by hand so that hostile names survive.
fn raw_tar(entries: &[(&str, u8, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, link) in entries {
        let mut h = [0_u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0001750\0");
        h[116..124].copy_from_slice(b"0001750\0");
        h[124..136].copy_from_slice(b"00000000000\0");
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
    }
    out.extend_from_slice(&[0_u8; 1024]);
    out
}

/// The platform stopping a container (`docker stop`: SIGTERM, then a grace
/// period) loses nothing: the agent stops sshd and waits, the session's
/// monitor sees it draining, takes a final snapshot and puts the session to
/// sleep; SSH wakes it with the files.
pub async fn platform_sigterm_takes_a_final_snapshot(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "drain").await?;
    u.add_key().await?;
    let s = u.running_session("drain").await?;
    let (words, _) = ssh(&u, &s, "echo last-$RANDOM$RANDOM | tee ~/last-words").await?;
    let names = containers(&s)?;
    ensure!(names.len() == 1, "{names:?}");
    let name = names[0].clone();
    let started = std::time::Instant::now();
    let stopper = tokio::task::spawn_blocking(move || {
        std::process::Command::new("docker")
            .args(["stop", "--time", "90", &name])
            .output()
    });
    let slept = eventually(
        Duration::from_secs(80),
        "the drained session to sleep",
        || async {
            let now = state(&u, &s).await?;
            Ok((now.state == SessionState::Sleeping).then_some(now))
        },
    )
    .await?;
    ensure!(slept.failure_reason.is_none(), "{slept:?}");
    let stopped = stopper.await??;
    ensure!(stopped.status.success(), "{}", text(&stopped.stderr));
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "the agent waited out its drain time: {:?}",
        started.elapsed()
    );
    let snaps = u.client.snapshots(s.id.as_str()).await?;
    ensure!(
        snaps
            .first()
            .is_some_and(|x| x.kind == "drain" && x.state == "ready"),
        "{snaps:?}"
    );
    let log = u.client.session_activity(s.id.as_str()).await?;
    ensure!(log.iter().any(|e| e.kind == "drain"), "{log:?}");
    ensure!(ssh(&u, &s, "cat ~/last-words").await?.0 == words);
    Ok(())
}

/// Own stack where sessions without a template may sleep 4 s: the reconcile
/// sweep deletes sessions asleep past their retention, not sooner. Their
/// snapshots stay by default (listed under the workspace, restorable into
/// another session); with `deleted_session_snapshots = delete` they go, blobs
/// and all.
pub async fn sleeping_sessions_expire_with_their_retention(
    tools: &burstflare_e2e::Tools,
) -> Result<()> {
    let tools = tools.clone();
    let stack = tokio::task::spawn_blocking(move || {
        Stack::start_with(&tools, true, &[("SESSION_RETENTION_SECONDS", "4")])
    })
    .await??;
    let u = User::new(&stack, "expire").await?;
    u.add_key().await?;
    let sweep = || async {
        let resp = stack
            .http()
            .get(format!("{}/__scheduled?cron=*/5+*+*+*+*", stack.url))
            .send()
            .await?;
        ensure!(resp.status().is_success(), "scheduled: {}", resp.status());
        anyhow::Ok(())
    };
    let kept = u.running_session("kept").await?;
    ssh(&u, &kept, "echo keep-me > ~/kept.txt").await?;
    u.client
        .session_command(kept.id.as_str(), SessionCommand::Sleep)
        .await?;
    // Asleep for less than its retention: a sweep leaves it alone.
    sweep().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(state(&u, &kept).await?.state == SessionState::Sleeping);
    tokio::time::sleep(Duration::from_secs(3)).await;
    sweep().await?;
    eventually(
        Duration::from_secs(60),
        "the expired session to go",
        || async {
            Ok(u.client
                .get_session(kept.id.as_str())
                .await
                .is_err()
                .then_some(()))
        },
    )
    .await?;
    // Its snapshot is kept: listed under the workspace, restorable elsewhere.
    let listed = u
        .client
        .workspace_snapshots(kept.workspace_id.as_str())
        .await?;
    let snap = listed
        .iter()
        .find(|x| x.session_id == kept.id)
        .context("the deleted session's snapshot")?
        .clone();
    let other = u.running_session("heir").await?;
    u.client
        .restore(
            other.id.as_str(),
            &RestoreRequest {
                snapshot_id: snap.id.clone(),
                when: RestoreWhen::Now,
            },
        )
        .await?;
    ensure!(ssh(&u, &other, "cat ~/kept.txt").await?.0 == "keep-me");
    // Another user of another workspace cannot restore it.
    let stranger = User::new(&stack, "stranger").await?;
    let theirs = stranger.running_session("theirs").await?;
    let refused = stranger
        .client
        .restore(
            theirs.id.as_str(),
            &RestoreRequest {
                snapshot_id: snap.id.clone(),
                when: RestoreWhen::Now,
            },
        )
        .await;
    expect_api_error(refused, 404, ErrorCode::SnapshotNotFound)?;

    // With the policy `delete`, an expired session's snapshots go too.
    ok(run(u.cli(&[
        "workspace",
        "settings",
        "--deleted-session-snapshots",
        "delete",
    ]))
    .await?)?;
    let gone = u.running_session("gone").await?;
    ssh(&u, &gone, "head -c 100000 /dev/urandom > ~/only-here.bin").await?;
    u.client
        .session_command(gone.id.as_str(), SessionCommand::Sleep)
        .await?;
    let snaps = u.client.snapshots(gone.id.as_str()).await?;
    ensure!(
        snaps.len() == 1 && snaps[0].new_bytes >= 100_000,
        "{snaps:?}"
    );
    let blobs_before = stack
        .r2_keys(&format!("workspaces/{}/blobs/", gone.workspace_id))?
        .len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    sweep().await?;
    eventually(
        Duration::from_secs(60),
        "the second session to go",
        || async {
            Ok(u.client
                .get_session(gone.id.as_str())
                .await
                .is_err()
                .then_some(()))
        },
    )
    .await?;
    let listed = u
        .client
        .workspace_snapshots(gone.workspace_id.as_str())
        .await?;
    ensure!(
        listed.iter().all(|x| x.session_id != gone.id),
        "its snapshots were deleted: {listed:?}"
    );
    let manifests = stack.r2_keys(&format!(
        "workspaces/{}/snapshots/{}",
        gone.workspace_id, snaps[0].id
    ))?;
    ensure!(manifests.is_empty(), "{manifests:?}");
    let blobs_after = stack
        .r2_keys(&format!("workspaces/{}/blobs/", gone.workspace_id))?
        .len();
    ensure!(
        blobs_after < blobs_before,
        "its own blobs were deleted: {blobs_before} -> {blobs_after}"
    );
    Ok(())
}

/// Deleting a snapshot while another one that shares its blobs is being
/// taken never leaves the new one without a blob: whatever the interleaving,
/// the new snapshot restores completely.
pub async fn deletes_racing_new_snapshots_keep_shared_blobs(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "race-blobs").await?;
    u.add_key().await?;
    let s = u.running_session("raceblobs").await?;
    ssh(
        &u,
        &s,
        "mkdir -p ~/shared && for i in $(seq 1 40); do head -c 200000 /dev/urandom > ~/shared/f$i; done",
    )
    .await?;
    let (sum, _) = ssh(&u, &s, "cat ~/shared/* | sha256sum").await?;
    for round in 0..3 {
        let old = u.client.create_snapshot(s.id.as_str()).await?;
        let (deleted, new) = tokio::join!(
            u.client.delete_snapshot(s.id.as_str(), old.id.as_str()),
            u.client.create_snapshot(s.id.as_str())
        );
        deleted?;
        let new = new?;
        ensure!(new.state == "ready", "round {round}: {new:?}");
        ssh(&u, &s, "rm -rf ~/shared").await?;
        u.client
            .restore(
                s.id.as_str(),
                &RestoreRequest {
                    snapshot_id: new.id.clone(),
                    when: RestoreWhen::Now,
                },
            )
            .await
            .with_context(|| format!("round {round}: restoring {}", new.id))?;
        let (again, _) = ssh(&u, &s, "cat ~/shared/* | sha256sum").await?;
        ensure!(again == sum, "round {round}: the restored files differ");
        u.client
            .delete_snapshot(s.id.as_str(), new.id.as_str())
            .await?;
    }
    Ok(())
}

/// When the snapshot before a sleep or stop fails, the session keeps
/// running with its files and the caller gets the reason; once the cause is
/// gone the same command works.
pub async fn failed_snapshots_keep_the_session_awake(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "snapfail").await?;
    u.add_key().await?;
    let s = u.running_session("snapfail").await?;
    // A file replaced with new content of a new size every few
    // milliseconds: what the scan hashed is usually gone when the blob is
    // read, so the snapshot fails ("changed"). Usually: an attempt that
    // happens to succeed is undone (the session started again) and retried.
    let churn = "echo precious > ~/keep.txt; nohup bash -c 'while true; do \
         head -c $((RANDOM * 4 + 1000)) /dev/urandom > ~/.churn.tmp && mv ~/.churn.tmp ~/churn; \
         done' >/dev/null 2>&1 &";
    ssh(&u, &s, churn).await?;
    let mut failures = 0;
    for command in [SessionCommand::Sleep, SessionCommand::Stop] {
        for attempt in 1.. {
            match u.client.session_command(s.id.as_str(), command).await {
                Ok(done) => {
                    ensure!(attempt < 8, "{command}: the snapshot never failed");
                    ensure!(done.session.state != SessionState::Running);
                    u.client
                        .session_command(s.id.as_str(), SessionCommand::Start)
                        .await?;
                    ssh(&u, &s, churn).await?;
                }
                refused => {
                    let body = expect_api_error(refused, 503, ErrorCode::SnapshotFailed)?;
                    ensure!(
                        body.message.contains("keeps running")
                            && body.message.contains("nothing was lost"),
                        "{}",
                        body.message
                    );
                    let now = state(&u, &s).await?;
                    ensure!(now.state == SessionState::Running, "{command}: {now:?}");
                    failures += 1;
                    break;
                }
            }
        }
    }
    ensure!(containers(&s)?.len() == 1);
    let failed: Vec<Snapshot> = u
        .client
        .snapshots(s.id.as_str())
        .await?
        .into_iter()
        .filter(|x| x.state == "failed")
        .collect();
    ensure!(
        failed.len() == failures && failed.iter().all(|x| x.error.is_some()),
        "{failed:?}"
    );
    ensure!(ssh(&u, &s, "cat ~/keep.txt").await?.0 == "precious");
    ssh(
        &u,
        &s,
        "pkill -f 'while tru[e]'; sleep 0.2; rm -f ~/churn ~/.churn.tmp",
    )
    .await?;
    u.client
        .session_command(s.id.as_str(), SessionCommand::Sleep)
        .await?;
    ensure!(ssh(&u, &s, "cat ~/keep.txt").await?.0 == "precious");
    Ok(())
}
