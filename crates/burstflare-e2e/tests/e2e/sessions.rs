//! Sessions on real containers: the real `burstflare` CLI, the real OpenSSH
//! client (`ssh`, `scp`), burstflare-runner on the local Docker Engine and the
//! runtime image.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use burstflare_api::ErrorCode;
use burstflare_api::runtime::LABEL_SESSION;
use burstflare_api::sessions::{CommandResult, CreateSessionRequest, Session};
use burstflare_domain::{SessionCommand, SessionState};
use burstflare_e2e::Stack;
use burstflare_e2e::runner::docker_containers;
use burstflare_e2e::stack::unique;
use sha2::{Digest, Sha256};

use burstflare_e2e::user::{User, ok, run, text};

use crate::support::{eventually, expect_api_error, expect_envelope};

/// Containers (any state) Docker has for a session.
fn containers_of(session: &Session) -> Result<Vec<String>> {
    docker_containers(LABEL_SESSION, session.id.as_str())
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker").args(args).output()?;
    ensure!(
        out.status.success(),
        "docker {args:?}: {}",
        text(&out.stderr)
    );
    Ok(text(&out.stdout).trim().to_owned())
}

pub async fn ssh_exec_config_ssh_and_host_key_pinning(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "ssh").await?;
    u.add_key().await?;
    let name = format!("s1-{}", unique().replace('-', ""));
    let created = ok(run(u.cli(&[
        "session",
        "create",
        &name,
        "--start",
        "--json",
        "--env",
        "GREETING=hello 'quoted' $HOME",
    ]))
    .await?)?;
    let session: Session = serde_json::from_slice(&created.stdout)?;
    ensure!(session.state == SessionState::Running, "{session:?}");
    ensure!(!session.ssh_host_keys.is_empty(), "no host keys recorded");

    let names = containers_of(&session)?;
    ensure!(names.len() == 1, "containers {names:?}");
    let expected = docker(&["exec", &names[0], "uname", "-a"])?;
    // The instance type's limits, and ports published on loopback only.
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        &names[0],
    ])?;
    ensure!(
        limits == "1073741824 1073741824 1000000000 512",
        "limits {limits}"
    );
    let bindings = docker(&["port", &names[0]])?;
    ensure!(
        bindings.lines().count() == 2 && bindings.lines().all(|l| l.contains("-> 127.0.0.1:")),
        "port bindings {bindings}"
    );

    // `burstflare ssh <name> -- uname -a` runs the system ssh through the stdio proxy.
    let key = u.key();
    let out = ok(run(u.cli(&[
        "ssh",
        &name,
        "-i",
        &key.to_string_lossy(),
        "-o",
        "BatchMode=yes",
        "--",
        "uname",
        "-a",
    ]))
    .await?)?;
    ensure!(
        text(&out.stdout).trim() == expected,
        "{} vs {expected}",
        text(&out.stdout)
    );
    // The host key was pinned from the API, not learned on first use.
    let known = std::fs::read_to_string(u.config_dir().join("known_hosts"))?;
    let alias = format!("bf-{}", session.id);
    let blob = session.ssh_host_keys[0]
        .split_whitespace()
        .nth(1)
        .unwrap_or_default();
    ensure!(known.contains(&alias) && known.contains(blob), "{known}");

    // config-ssh: a managed block; user lines untouched; idempotent.
    std::fs::write(u.ssh_config(), "Host mine\n  User me\n")?;
    ok(run(u.cli(&["config-ssh"])).await?)?;
    let first = std::fs::read_to_string(u.ssh_config())?;
    ensure!(first.starts_with("Host mine\n  User me\n"), "{first}");
    ensure!(first.contains(&format!("Host bf-{name}")), "{first}");
    ok(run(u.cli(&["config-ssh"])).await?)?;
    ensure!(
        std::fs::read_to_string(u.ssh_config())? == first,
        "config-ssh is not idempotent"
    );
    let out = ok(run(u.ssh(&[
        &format!("bf-{name}"),
        "echo ok; sudo -n true && echo sudo-ok",
    ]))
    .await?)?;
    ensure!(
        text(&out.stdout) == "ok\nsudo-ok\n",
        "{}",
        text(&out.stdout)
    );
    // The session's environment reaches SSH commands, literally.
    let out = ok(run(u.ssh(&[&format!("bf-{name}"), "printenv GREETING"])).await?)?;
    ensure!(
        text(&out.stdout) == "hello 'quoted' $HOME\n",
        "{}",
        text(&out.stdout)
    );
    let env = ok(run(u.ssh(&[&format!("bf-{name}"), "env"])).await?)?;
    ensure!(
        !text(&env.stdout).contains("BURSTFLARE_AGENT_SECRET"),
        "the agent secret leaked into the login environment"
    );

    // A host key that did not come from the control plane is refused: ssh
    // reads a copy with another key (the proxy only re-pins the managed file).
    let tampered = u.home.path().join("tampered_known_hosts");
    std::fs::write(
        &tampered,
        known.replace(
            blob,
            "AAAAC3NzaC1lZDI1NTE5AAAAIEnPcCUj2PPGFo9DjgTvWjHPUfpZ3d0l7VUi6xytOdQb",
        ),
    )?;
    let refused = run(u.ssh(&[
        "-o",
        &format!("UserKnownHostsFile={}", tampered.display()),
        &format!("bf-{name}"),
        "true",
    ]))
    .await?;
    ensure!(
        !refused.status.success(),
        "ssh accepted an unpinned host key"
    );
    ensure!(
        text(&refused.stderr).contains("HOST IDENTIFICATION HAS CHANGED")
            || text(&refused.stderr).contains("Host key verification failed"),
        "{}",
        text(&refused.stderr)
    );
    // The next regular connection re-pins the key from the API and works.
    ok(run(u.ssh(&[&format!("bf-{name}"), "true"])).await?)?;
    Ok(())
}

pub async fn scp_rsync_and_port_forwarding(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "scp").await?;
    u.add_key().await?;
    let s = u.running_session("scp").await?;
    ok(run(u.cli(&["config-ssh"])).await?)?;
    let host = format!("bf-{}", s.name);

    let data: Vec<u8> = {
        let mut v = vec![0u8; 50 * 1024 * 1024];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
        for chunk in v.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        v
    };
    let src = u.home.path().join("up.bin");
    let back = u.home.path().join("down.bin");
    std::fs::write(&src, &data)?;
    let scp = |from: String, to: String| {
        let mut c = Command::new("scp");
        c.arg("-F")
            .arg(u.ssh_config())
            .arg("-i")
            .arg(u.key())
            .args(["-q", "-o", "BatchMode=yes", &from, &to])
            .stdin(Stdio::null());
        c
    };
    ok(run(scp(
        src.display().to_string(),
        format!("{host}:/home/dev/up.bin"),
    ))
    .await?)?;
    let remote = ok(run(u.ssh(&[&host, "sha256sum /home/dev/up.bin"])).await?)?;
    let want = hex::encode(Sha256::digest(&data));
    ensure!(
        text(&remote.stdout).starts_with(&want),
        "remote {}",
        text(&remote.stdout)
    );
    ok(run(scp(
        format!("{host}:/home/dev/up.bin"),
        back.display().to_string(),
    ))
    .await?)?;
    ensure!(
        hex::encode(Sha256::digest(std::fs::read(&back)?)) == want,
        "downloaded copy differs"
    );

    // rsync over the same ssh config.
    let tree = u.home.path().join("tree");
    std::fs::create_dir_all(tree.join("sub"))?;
    std::fs::write(tree.join("a.txt"), "alpha\n")?;
    std::fs::write(tree.join("sub/b.txt"), "beta\n")?;
    let mut rsync = Command::new("rsync");
    rsync
        .arg("-a")
        .arg("-e")
        .arg(format!(
            "ssh -F {} -i {} -o BatchMode=yes",
            u.ssh_config().display(),
            u.key().display()
        ))
        .arg(format!("{}/", tree.display()))
        .arg(format!("{host}:/home/dev/tree/"))
        .stdin(Stdio::null());
    ok(run(rsync).await?)?;
    let listed =
        ok(run(u.ssh(&[&host, "cat /home/dev/tree/a.txt /home/dev/tree/sub/b.txt"])).await?)?;
    ensure!(
        text(&listed.stdout) == "alpha\nbeta\n",
        "{}",
        text(&listed.stdout)
    );

    // A server started inside the session, reached through `ssh -L`.
    let server = "nohup perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>\"127.0.0.1\",LocalPort=>8000,Listen=>5,ReuseAddr=>1) or die $!; while($c=$s->accept){print $c \"hello-from-session\\n\"; close $c}' >/tmp/server.log 2>&1 &";
    ok(run(u.ssh(&[&host, server])).await?)?;
    let local = burstflare_e2e::stack::free_port()?;
    let mut fwd = u.ssh(&[
        "-N",
        "-L",
        &format!("127.0.0.1:{local}:127.0.0.1:8000"),
        &host,
    ]);
    let mut tunnel = fwd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let answer = eventually(
        Duration::from_secs(30),
        "the forwarded port to answer",
        || async {
            use std::io::Read;
            let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", local)) else {
                return Ok(None);
            };
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = String::new();
            let _ = conn.read_to_string(&mut buf);
            Ok((!buf.is_empty()).then_some(buf))
        },
    )
    .await;
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    ensure!(answer? == "hello-from-session\n");
    Ok(())
}

pub async fn stop_start_restart_delete(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "life").await?;
    u.add_key().await?;
    let s = u.running_session("life").await?;
    let key = u.key().display().to_string();
    let ssh_true = |u: &User| {
        u.cli(&[
            "ssh",
            &s.name,
            "-i",
            &key,
            "-o",
            "BatchMode=yes",
            "--",
            "true",
        ])
    };

    ok(run(u.cli(&["session", "stop", &s.name])).await?)?;
    ensure!(
        containers_of(&s)?.is_empty(),
        "container left after stop: {:?}",
        containers_of(&s)?
    );
    let got = u.client.get_session(s.id.as_str()).await?;
    ensure!(
        got.state == SessionState::Stopped && got.runtime_status.as_deref() == Some("absent"),
        "{got:?}"
    );
    // SSH by the owner wakes a stopped session (and says so on stderr).
    let woke = ok(run(ssh_true(&u)).await?)?;
    ensure!(
        text(&woke.stderr).contains(&format!("waking {}…", s.name)),
        "{}",
        text(&woke.stderr)
    );
    let got = u.client.get_session(s.id.as_str()).await?;
    ensure!(
        got.state == SessionState::Running && got.generation == 2,
        "{got:?}"
    );
    // A session that never started is not woken: the bridge names its state.
    let fresh = u
        .client
        .create_session(&CreateSessionRequest {
            name: format!("fresh-{}", unique().replace('-', "")),
            ..Default::default()
        })
        .await?;
    let resp = stack
        .http()
        .get(stack.api(&format!("/sessions/{}/ssh", fresh.id)))
        .bearer_auth(u.client.token().unwrap_or_default())
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await?;
    let err = expect_envelope(resp, 409, ErrorCode::InvalidSessionState).await?;
    ensure!(
        err.details["state"] == "created" && err.message.contains("is created"),
        "{err:?}"
    );

    ok(run(u.cli(&["session", "restart", &s.name])).await?)?;
    let restarted = u.client.get_session(s.id.as_str()).await?;
    ensure!(
        restarted.state == SessionState::Running && restarted.generation == 3,
        "{restarted:?}"
    );
    ensure!(containers_of(&s)?.len() == 1);
    ok(run(ssh_true(&u)).await?)?;

    let events = u.client.session_events(s.id.as_str(), None).await?.items;
    let path: Vec<String> = events.iter().map(|e| e.to_state.to_string()).collect();
    ensure!(
        path == [
            "created", "starting", "running", "stopping", "stopped", "starting", "running",
            "stopping", "stopped", "starting", "running"
        ],
        "{path:?}"
    );
    ensure!(
        events
            .iter()
            .any(|e| e.actor == u.user_id && e.command.as_deref() == Some("restart"))
    );
    ensure!(events.iter().any(|e| e.actor == "system"));
    ensure!(events.windows(2).all(|w| w[0].seq < w[1].seq));

    let deleted = ok(run(u.cli(&["session", "delete", &s.name, "--json"])).await?)?;
    let deleted: CommandResult = serde_json::from_slice(&deleted.stdout)?;
    ensure!(deleted.session.state == SessionState::Deleted);
    ensure!(containers_of(&s)?.is_empty(), "container left after delete");
    ensure!(u.client.all_sessions().await?.iter().all(|x| x.id != s.id));
    expect_api_error(
        u.client.get_session(s.id.as_str()).await,
        404,
        ErrorCode::SessionNotFound,
    )?;
    expect_api_error(
        u.client
            .session_command(s.id.as_str(), SessionCommand::Start)
            .await,
        404,
        ErrorCode::SessionNotFound,
    )?;
    // The name is free again.
    let again = u
        .client
        .create_session(&CreateSessionRequest {
            name: s.name.clone(),
            ..Default::default()
        })
        .await?;
    ensure!(again.state == SessionState::Created);
    Ok(())
}

pub async fn concurrent_commands_converge(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "race").await?;
    let s = u.running_session("race").await?;
    let commands = [
        SessionCommand::Start,
        SessionCommand::Stop,
        SessionCommand::Restart,
    ];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = u.client.clone();
        let id = s.id.to_string();
        let command = commands[i % commands.len()];
        tasks.push(tokio::spawn(async move {
            client.session_command(&id, command).await
        }));
    }
    for t in tasks {
        // Every command is serialised by the coordinator; none may fail.
        t.await?.context("a concurrent command failed")?;
    }
    // A no-op command answers from the coordinator's own state.
    let d1 = u.client.get_session(s.id.as_str()).await?;
    let noop = match d1.state {
        SessionState::Running => SessionCommand::Start,
        _ => SessionCommand::Stop,
    };
    let from_do = u.client.session_command(s.id.as_str(), noop).await?;
    ensure!(from_do.already_done, "{from_do:?}");
    let rows = stack.d1_execute(&format!(
        "SELECT state, state_version, generation FROM sessions WHERE id = '{}'",
        s.id
    ))?;
    // `wrangler d1 execute --json`: one result set per statement.
    let parsed: serde_json::Value = serde_json::from_str(&rows)?;
    let row = &parsed[0]["results"][0];
    let want = serde_json::json!({
        "state": from_do.session.state,
        "state_version": from_do.session.state_version,
        "generation": from_do.session.generation,
    });
    ensure!(
        *row == want,
        "D1 projection differs from the coordinator:\n{rows}\nwant {want}"
    );
    ensure!(
        d1 == from_do.session,
        "API view {d1:?} vs coordinator {:?}",
        from_do.session
    );
    let containers = containers_of(&s)?;
    let expected = usize::from(from_do.session.state == SessionState::Running);
    ensure!(
        containers.len() == expected,
        "containers {containers:?} in state {}",
        from_do.session.state
    );
    Ok(())
}

pub async fn killed_container_fails_the_session(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "kill").await?;
    let s = u.running_session("kill").await?;
    let names = containers_of(&s)?;
    ensure!(names.len() == 1);
    docker(&["kill", &names[0]])?;
    let failed = eventually(Duration::from_secs(30), "the session to fail", || async {
        let got = u.client.get_session(s.id.as_str()).await?;
        Ok((got.state == SessionState::Failed).then_some(got))
    })
    .await?;
    let reason = failed.failure_reason.clone().unwrap_or_default();
    ensure!(
        reason.contains("exited with code 137") && reason.contains("killed"),
        "{reason}"
    );
    ensure!(
        failed.runtime_status.as_deref() == Some("exited"),
        "{failed:?}"
    );
    let events = u.client.session_events(s.id.as_str(), None).await?.items;
    let last = events.last().context("no events")?;
    ensure!(
        last.to_state == SessionState::Failed
            && last.actor == "system"
            && last.reason.contains("137"),
        "{last:?}"
    );
    // A failed session starts again in a fresh container.
    let restarted = u
        .client
        .session_command(s.id.as_str(), SessionCommand::Start)
        .await?;
    ensure!(
        restarted.session.state == SessionState::Running
            && restarted.session.failure_reason.is_none()
    );
    let names = containers_of(&s)?;
    ensure!(names.len() == 1, "{names:?}");
    Ok(())
}

/// Serial: restarts the stack's runner.
pub async fn runner_restart_keeps_sessions_reachable(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "rr").await?;
    u.add_key().await?;
    let s = u.running_session("rr").await?;
    let before = containers_of(&s)?;
    stack
        .runner
        .lock()
        .map_err(|_| anyhow::anyhow!("runner lock"))?
        .restart(None)?;
    ensure!(
        containers_of(&s)? == before,
        "the runner restart touched the container"
    );
    let key = u.key().display().to_string();
    let out = ok(run(u.cli(&[
        "ssh",
        &s.name,
        "-i",
        &key,
        "-o",
        "BatchMode=yes",
        "--",
        "echo",
        "still-here",
    ]))
    .await?)?;
    ensure!(text(&out.stdout) == "still-here\n");
    // The monitor still sees the container as running after the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = u.client.get_session(s.id.as_str()).await?;
    ensure!(got.state == SessionState::Running, "{got:?}");
    Ok(())
}

/// Serial: points the runner at a Docker endpoint that does not exist.
pub async fn docker_down_fails_the_session_with_the_reason(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "down").await?;
    let created = u
        .client
        .create_session(&CreateSessionRequest {
            name: format!("down-{}", unique().replace('-', "")),
            ..Default::default()
        })
        .await?;
    let restore = |stack: &Stack| -> Result<()> {
        stack
            .runner
            .lock()
            .map_err(|_| anyhow::anyhow!("runner lock"))?
            .restart(None)
    };
    stack
        .runner
        .lock()
        .map_err(|_| anyhow::anyhow!("runner lock"))?
        .restart(Some("unix:///nonexistent/docker.sock"))?;
    let result = u
        .client
        .session_command(created.id.as_str(), SessionCommand::Start)
        .await;
    restore(stack)?;
    let body = expect_api_error(result, 503, ErrorCode::RuntimeUnavailable)?;
    ensure!(body.message.contains("Docker"), "{}", body.message);
    let got = u.client.get_session(created.id.as_str()).await?;
    ensure!(got.state == SessionState::Failed, "{got:?}");
    ensure!(
        got.failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("Docker")),
        "{got:?}"
    );
    // With Docker back, the same session starts.
    let again = u
        .client
        .session_command(created.id.as_str(), SessionCommand::Start)
        .await?;
    ensure!(again.session.state == SessionState::Running);
    Ok(())
}

pub async fn sessions_are_private_and_inputs_are_checked(stack: &Stack) -> Result<()> {
    let owner = User::new(stack, "owner").await?;
    let other = User::new(stack, "other").await?;
    let s = owner
        .client
        .create_session(&CreateSessionRequest {
            name: format!("priv-{}", unique().replace('-', "")),
            ..Default::default()
        })
        .await?;
    let http = stack.http();
    let id = s.id.to_string();
    let other_token = other.client.token().unwrap_or_default().to_owned();
    let routes: Vec<(&str, String)> = vec![
        ("GET", format!("/sessions/{id}")),
        ("DELETE", format!("/sessions/{id}")),
        ("POST", format!("/sessions/{id}/start")),
        ("POST", format!("/sessions/{id}/stop")),
        ("POST", format!("/sessions/{id}/restart")),
        ("GET", format!("/sessions/{id}/events")),
        ("GET", format!("/sessions/{id}/ssh")),
    ];
    for (method, path) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let resp = http
            .request(m.clone(), stack.api(path))
            .bearer_auth(&other_token)
            .send()
            .await?;
        expect_envelope(resp, 404, ErrorCode::SessionNotFound)
            .await
            .with_context(|| format!("{method} {path} as another user"))?;
        let resp = http.request(m.clone(), stack.api(path)).send().await?;
        expect_envelope(resp, 401, ErrorCode::Unauthenticated)
            .await
            .with_context(|| format!("{method} {path} without a token"))?;
        let bad = path.replace(&id, "ses_nope");
        let resp = http
            .request(m.clone(), stack.api(&bad))
            .bearer_auth(&other_token)
            .send()
            .await?;
        expect_envelope(resp, 400, ErrorCode::InvalidField)
            .await
            .with_context(|| format!("{method} {bad}"))?;
        let unknown = path.replace(&id, "ses_00000000000000000000000000");
        let resp = http
            .request(m, stack.api(&unknown))
            .bearer_auth(&other_token)
            .send()
            .await?;
        expect_envelope(resp, 404, ErrorCode::SessionNotFound)
            .await
            .with_context(|| format!("{method} {unknown}"))?;
    }
    // The SSH WebSocket of another user's session is a 404 too.
    let ws = stack
        .api(&format!("/sessions/{id}/ssh"))
        .replace("http://", "ws://");
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws)?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {other_token}").parse()?);
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            ensure!(resp.status() == 404, "{:?}", resp.status())
        }
        other => bail!("expected 404, got {:?}", other.map(|_| ())),
    }
    ensure!(other.client.all_sessions().await?.is_empty());
    let owner_token = owner.client.token().unwrap_or_default().to_owned();
    // The owner without `Upgrade: websocket` is told to use WebSocket.
    let resp = http
        .get(stack.api(&format!("/sessions/{id}/ssh")))
        .bearer_auth(&owner_token)
        .send()
        .await?;
    expect_envelope(resp, 426, ErrorCode::UpgradeRequired).await?;

    // Bad create bodies.
    let bad_bodies = [
        (serde_json::json!({"name": "Bad Name"}), "name"),
        (
            serde_json::json!({"name": "ok", "instance_type": "huge"}),
            "",
        ),
        (
            serde_json::json!({"name": "ok", "env": {"BURSTFLARE_AGENT_SECRET": "x"}}),
            "env",
        ),
        (
            serde_json::json!({"name": "ok", "persisted_paths": ["/etc"]}),
            "persisted_paths",
        ),
        (
            serde_json::json!({"name": "ok", "persisted_paths": ["/home/dev/../../etc"]}),
            "persisted_paths",
        ),
        (serde_json::json!({"name": "ok", "surprise": 1}), ""),
    ];
    for (body, field) in bad_bodies {
        let resp = http
            .post(stack.api("/sessions"))
            .bearer_auth(&owner_token)
            .json(&body)
            .send()
            .await?;
        let code = if field.is_empty() {
            ErrorCode::MalformedJson
        } else {
            ErrorCode::InvalidField
        };
        let err = expect_envelope(resp, 400, code)
            .await
            .with_context(|| body.to_string())?;
        if !field.is_empty() {
            ensure!(err.details["field"] == field, "{body}: {:?}", err.details);
        }
    }
    let dup = owner
        .client
        .create_session(&CreateSessionRequest {
            name: s.name.clone(),
            ..Default::default()
        })
        .await;
    expect_api_error(dup, 409, ErrorCode::SessionNameTaken)?;
    // Another user may use the same name in their own workspace.
    other
        .client
        .create_session(&CreateSessionRequest {
            name: s.name.clone(),
            ..Default::default()
        })
        .await?;
    let resp = http
        .get(stack.api("/sessions?limit=0"))
        .bearer_auth(&owner_token)
        .send()
        .await?;
    expect_envelope(resp, 400, ErrorCode::InvalidQuery).await?;
    let resp = http
        .get(stack.api("/sessions?name=NOPE"))
        .bearer_auth(&owner_token)
        .send()
        .await?;
    expect_envelope(resp, 400, ErrorCode::InvalidQuery).await?;
    Ok(())
}

pub async fn ssh_keys_add_list_remove_and_reject_bad_keys(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "keys").await?;
    let other = User::new(stack, "keys2").await?;
    u.add_key().await?;
    let listed = ok(run(u.cli(&["ssh-key", "list", "--json"])).await?)?;
    let keys: Vec<burstflare_api::sessions::SshKey> = serde_json::from_slice(&listed.stdout)?;
    ensure!(
        keys.len() == 1 && keys[0].algorithm == "ssh-ed25519",
        "{keys:?}"
    );
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(format!("{}.pub", u.key().display()))
        .output()?;
    ensure!(
        text(&fp.stdout).contains(&keys[0].fingerprint),
        "{} vs {}",
        text(&fp.stdout),
        keys[0].fingerprint
    );
    // The same key twice is a conflict; through the CLI it is a user error.
    let again = run(u.cli(&["ssh-key", "add", &format!("{}.pub", u.key().display())])).await?;
    ensure!(
        again.status.code() == Some(1) && text(&again.stderr).contains("registered already"),
        "{}",
        text(&again.stderr)
    );
    // A private key is refused before it leaves the machine.
    let private = run(u.cli(&["ssh-key", "add", &u.key().display().to_string()])).await?;
    ensure!(
        private.status.code() == Some(1) && text(&private.stderr).contains("private key"),
        "{}",
        text(&private.stderr)
    );
    let http = stack.http();
    let token = u.client.token().unwrap_or_default().to_owned();
    for bad in [
        "",
        "ssh-dss AAAAB3NzaC1kc3M= x",
        "ssh-ed25519 not-base64!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEnPcCUj2PPGFo9DjgTvWjHPUfpZ3d0l7VUi6xytOdQb",
    ] {
        let resp = http
            .post(stack.api("/ssh-keys"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "public_key": bad }))
            .send()
            .await?;
        let err = expect_envelope(resp, 400, ErrorCode::InvalidField)
            .await
            .with_context(|| bad.to_owned())?;
        ensure!(err.details["field"] == "public_key");
    }
    let other_token = other.client.token().unwrap_or_default().to_owned();
    let resp = http
        .delete(stack.api(&format!("/ssh-keys/{}", keys[0].id)))
        .bearer_auth(&other_token)
        .send()
        .await?;
    expect_envelope(resp, 404, ErrorCode::SshKeyNotFound).await?;
    let resp = http
        .delete(stack.api("/ssh-keys/key_bad"))
        .bearer_auth(&token)
        .send()
        .await?;
    expect_envelope(resp, 400, ErrorCode::InvalidField).await?;
    ok(run(u.cli(&["ssh-key", "remove", &keys[0].fingerprint])).await?)?;
    ensure!(u.client.list_ssh_keys().await?.is_empty());
    let resp = http
        .delete(stack.api(&format!("/ssh-keys/{}", keys[0].id)))
        .bearer_auth(&token)
        .send()
        .await?;
    expect_envelope(resp, 404, ErrorCode::SshKeyNotFound).await?;
    Ok(())
}

pub async fn agent_restarts_sshd_when_it_dies(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "sshd").await?;
    u.add_key().await?;
    let s = u.running_session("sshd").await?;
    let names = containers_of(&s)?;
    ensure!(names.len() == 1);
    let before = docker(&["exec", &names[0], "pgrep", "-o", "-x", "sshd"])?;
    docker(&["exec", &names[0], "kill", "-9", &before])?;
    let key = u.key().display().to_string();
    let after = eventually(Duration::from_secs(20), "sshd to be back", || async {
        let pid = Command::new("docker")
            .args(["exec", &names[0], "pgrep", "-o", "-x", "sshd"])
            .output()?;
        let pid = text(&pid.stdout).trim().to_owned();
        Ok((!pid.is_empty() && pid != before).then_some(pid))
    })
    .await?;
    ensure!(after != before);
    let out = ok(run(u.cli(&[
        "ssh",
        &s.name,
        "-i",
        &key,
        "-o",
        "BatchMode=yes",
        "--",
        "echo",
        "back",
    ]))
    .await?)?;
    ensure!(text(&out.stdout) == "back\n");
    // The session never noticed: sshd is the agent's business.
    ensure!(u.client.get_session(s.id.as_str()).await?.state == SessionState::Running);
    Ok(())
}
