//! The real `burstflare` binary against the stack.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use burstflare_api::ops::Health;
use burstflare_api::{Me, RegisterResponse, TokenInfo};
use burstflare_e2e::Stack;
use burstflare_e2e::stack::unique;
use burstflare_e2e::user::{User, run, text};

fn cli(stack: &Stack, config_dir: &Path, args: &[&str]) -> Result<Output> {
    Command::new(&stack.tools.cli)
        .args(["--api-url", &stack.url])
        .args(args)
        .env("BURSTFLARE_CONFIG_DIR", config_dir)
        .env_remove("BURSTFLARE_TOKEN")
        .env_remove("BURSTFLARE_API_URL")
        .env("NO_COLOR", "1")
        .output()
        .with_context(|| format!("cannot run {}", stack.tools.cli.display()))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Result<Output> {
    ensure!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    Ok(o)
}

pub async fn cli_register_whoami_tokens_and_status(stack: &Stack) -> Result<()> {
    let home = tempfile::tempdir()?;
    let dir = home.path().join("config");
    let email = format!("cli-{}@example.test", unique());

    let reg = ok(cli(
        stack,
        &dir,
        &[
            "auth", "register", "--email", &email, "--name", "Cli User", "--json",
        ],
    )?)?;
    let reg: RegisterResponse = serde_json::from_slice(&reg.stdout)?;
    let creds = dir.join("credentials.toml");
    let mode = std::fs::metadata(&creds)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "credentials mode {mode:o}");
    let issued = reg
        .credentials
        .as_ref()
        .context("CLI registration returns tokens")?;
    let stored = std::fs::read_to_string(&creds)?;
    ensure!(stored.contains(&issued.access_token.token) && stored.contains(&issued.refresh_token));
    ensure!(reg.session.client == burstflare_api::identity::ClientKind::Cli);

    let me: Me = serde_json::from_slice(&ok(cli(stack, &dir, &["whoami", "--json"])?)?.stdout)?;
    ensure!(me.user.id == reg.user.id);
    let human = stdout(&ok(cli(stack, &dir, &["whoami"])?)?);
    ensure!(human.contains(&email) && human.contains("owner"), "{human}");

    let created = ok(cli(
        stack,
        &dir,
        &[
            "auth",
            "token",
            "create",
            "--name",
            "ci",
            "--expires-in-days",
            "7",
        ],
    )?)?;
    let secret = stdout(&created).trim().to_owned();
    ensure!(
        secret.starts_with("bf_pat_"),
        "stdout is the token only: {secret:?}"
    );
    ensure!(stderr(&created).contains("not shown again"));

    let listed: Vec<TokenInfo> = serde_json::from_slice(
        &ok(cli(stack, &dir, &["auth", "token", "list", "--json"])?)?.stdout,
    )?;
    ensure!(listed.len() == 1 && listed[0].name == "ci");
    let table = stdout(&ok(cli(stack, &dir, &["auth", "token", "list"])?)?);
    ensure!(
        table.starts_with("ID") && table.contains("active") && !table.contains(&secret),
        "{table}"
    );

    // The created token works on its own, through the environment.
    let via_env = Command::new(&stack.tools.cli)
        .args(["--api-url", &stack.url, "whoami", "--json"])
        .env("BURSTFLARE_CONFIG_DIR", home.path().join("empty"))
        .env("BURSTFLARE_TOKEN", &secret)
        .output()?;
    let me: Me = serde_json::from_slice(&ok(via_env)?.stdout)?;
    ensure!(me.token.as_ref().map(|t| t.name.as_str()) == Some("ci"));

    let id = listed[0].id.to_string();
    ok(cli(stack, &dir, &["auth", "token", "revoke", &id])?)?;
    let table = stdout(&ok(cli(stack, &dir, &["auth", "token", "list"])?)?);
    ensure!(table.contains("revoked"), "{table}");

    let status = ok(cli(stack, &dir, &["status", "--json"])?)?;
    let health: Health = serde_json::from_slice(&status.stdout)?;
    ensure!(health.bindings.len() == 7 && health.bindings.iter().all(|b| b.ok));
    let human = stdout(&ok(cli(stack, &dir, &["status"])?)?);
    ensure!(
        human.contains("healthy") && human.contains("BUILD_WORKFLOW"),
        "{human}"
    );

    // The API URL can come from config.toml instead of the flag.
    ok(cli(
        stack,
        &dir,
        &["config", "set-api-url", &format!("{}/", stack.url)],
    )?)?;
    let bare = |args: &[&str]| {
        Command::new(&stack.tools.cli)
            .args(args)
            .env("BURSTFLARE_CONFIG_DIR", &dir)
            .env_remove("BURSTFLARE_API_URL")
            .env_remove("BURSTFLARE_TOKEN")
            .output()
    };
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(bare(&["config", "show", "--json"])?)?.stdout)?;
    ensure!(
        shown["api_url"] == stack.url.as_str() && shown["signed_in"] == true,
        "{shown}"
    );
    let o = cli(stack, &dir, &["config", "set-api-url", "not a url"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("invalid API URL"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(&stack.tools.cli)
        .args(["whoami", "--json"])
        .env("BURSTFLARE_CONFIG_DIR", &dir)
        .env_remove("BURSTFLARE_API_URL")
        .env_remove("BURSTFLARE_TOKEN")
        .output()?;
    ensure!(serde_json::from_slice::<Me>(&ok(o)?.stdout)?.user.id == reg.user.id);
    Ok(())
}

pub async fn cli_errors_and_exit_codes(stack: &Stack) -> Result<()> {
    let home = tempfile::tempdir()?;
    let dir = home.path().join("config");

    // Not signed in: a user error with a hint.
    let o = cli(stack, &dir, &["whoami"])?;
    ensure!(o.status.code() == Some(1), "{o:?}");
    let e = stderr(&o);
    ensure!(
        e.starts_with("error: not signed in") && e.contains("hint: run `burstflare login`"),
        "{e}"
    );

    // A rejected request shows the server's reason and a hint.
    let email = format!("cli-dup-{}@example.test", unique());
    ok(cli(
        stack,
        &dir,
        &["auth", "register", "--email", &email, "--name", "One"],
    )?)?;
    let o = cli(
        stack,
        &dir,
        &["auth", "register", "--email", &email, "--name", "Two"],
    )?;
    ensure!(o.status.code() == Some(1));
    let e = stderr(&o);
    insta::with_settings!({ filters => vec![(email.as_str(), "[email]")] }, {
        insta::assert_snapshot!(e, @r###"
        error: could not register [email]
          Caused by: an account for [email] already exists (email_taken, HTTP 409)
        hint: that email is registered already; use its token
        "###);
    });

    let o = cli(
        stack,
        &dir,
        &["auth", "register", "--email", "nope", "--name", "X"],
    )?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("invalid_field"),
        "{}",
        stderr(&o)
    );

    // A revoked token says how to recover.
    let o = Command::new(&stack.tools.cli)
        .args(["--api-url", &stack.url, "whoami"])
        .env("BURSTFLARE_CONFIG_DIR", &dir)
        .env("BURSTFLARE_TOKEN", format!("bf_pat_{}", "1".repeat(52)))
        .output()?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("hint: sign in again"),
        "{}",
        stderr(&o)
    );

    // Nothing listening: a user error pointing at the URL.
    let port = burstflare_e2e::stack::free_port()?;
    let o = Command::new(&stack.tools.cli)
        .args(["--api-url", &format!("http://127.0.0.1:{port}"), "status"])
        .env("BURSTFLARE_CONFIG_DIR", &dir)
        .output()?;
    ensure!(o.status.code() == Some(1), "{o:?}");
    let e = stderr(&o);
    ensure!(
        e.contains("Caused by: could not reach") && e.contains("--api-url"),
        "{e}"
    );

    // Bad flags are clap's usage errors.
    let o = cli(stack, &dir, &["auth", "token", "create"])?;
    ensure!(o.status.code() == Some(2), "{o:?}");
    let o = Command::new(&stack.tools.cli)
        .args(["--api-url", "ftp://x", "status"])
        .env("BURSTFLARE_CONFIG_DIR", &dir)
        .output()?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("http or https"),
        "{}",
        stderr(&o)
    );

    // A broken config file is reported, not ignored.
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config.toml"), "api_url = [")?;
    let o = Command::new(&stack.tools.cli)
        .arg("status")
        .env("BURSTFLARE_CONFIG_DIR", &dir)
        .env_remove("BURSTFLARE_API_URL")
        .output()?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("cannot parse"),
        "{}",
        stderr(&o)
    );
    Ok(())
}

/// `burstflare workspace …`, `audit list`, recovery codes, passkeys and
/// device approval through the real CLI.
pub async fn cli_workspaces_invites_roles_and_audit(stack: &Stack) -> Result<()> {
    let owner = User::new(stack, "cli-ws-owner").await?;
    let member = User::new(stack, "cli-ws-member").await?;
    let json = |o: Output| -> Result<serde_json::Value> { Ok(serde_json::from_slice(&o.stdout)?) };
    let created = json(ok(run(owner.cli(&[
        "workspace",
        "create",
        "CLI Team",
        "--json",
    ]))
    .await?)?)?;
    let id = created["id"].as_str().context("id")?.to_owned();
    let slug = created["slug"].as_str().context("slug")?.to_owned();
    let list = text(&ok(run(owner.cli(&["workspace", "list"])).await?)?.stdout);
    ensure!(list.contains(&slug) && list.contains("owner"), "{list}");
    ok(run(owner.cli(&["workspace", "use", &slug])).await?)?;
    let got = json(ok(run(owner.cli(&["workspace", "get", "--json"])).await?)?)?;
    ensure!(got["id"] == id.as_str(), "{got}");
    ok(run(owner.cli(&["workspace", "rename", "CLI Team Two"])).await?)?;
    let settings = json(ok(run(owner.cli(&[
        "workspace",
        "settings",
        "--default-instance-type",
        "medium",
        "--session-visibility",
        "workspace",
        "--json",
    ]))
    .await?)?)?;
    ensure!(settings["name"] == "CLI Team Two", "{settings}");
    ensure!(
        settings["settings"]["default_instance_type"] == "medium",
        "{settings}"
    );
    ensure!(
        settings["settings"]["session_visibility"] == "workspace",
        "{settings}"
    );
    // Invite, accept, roles.
    let code = text(
        &ok(run(owner.cli(&["workspace", "invite", &member.email, "--role", "viewer"])).await?)?
            .stdout,
    );
    let code = code.trim();
    ensure!(code.starts_with("bf_inv_"), "{code}");
    let joined = json(ok(run(member.cli(&[
        "workspace",
        "accept",
        code,
        "--json",
    ]))
    .await?)?)?;
    ensure!(
        joined["id"] == id.as_str() && joined["role"] == "viewer",
        "{joined}"
    );
    let members = json(ok(
        run(owner.cli(&["workspace", "members", "--json"])).await?
    )?)?;
    ensure!(members.as_array().map(Vec::len) == Some(2), "{members}");
    // A viewer cannot rename: a user error with a hint.
    let denied = run(member.cli(&["workspace", "rename", "Nope", "--workspace", &id])).await?;
    ensure!(denied.status.code() == Some(1), "{denied:?}");
    ensure!(
        text(&denied.stderr).contains("ask an admin or owner"),
        "{}",
        text(&denied.stderr)
    );
    ok(run(owner.cli(&["workspace", "role", &member.email, "member"])).await?)?;
    let invites = json(ok(
        run(owner.cli(&["workspace", "invites", "--json"])).await?
    )?)?;
    ensure!(invites[0]["status"] == "accepted", "{invites}");
    // Sessions go to the workspace in use, with its default instance type.
    let s = json(ok(run(
        owner.cli(&["session", "create", "cliws", "--json"])
    )
    .await?)?)?;
    ensure!(s["workspace_id"] == id.as_str(), "{s}");
    ensure!(s["spec"]["instance_type"] == "medium", "{s}");
    ok(run(owner.cli(&["session", "delete", "cliws"])).await?)?;
    // The last owner cannot leave; the member can.
    let stuck = run(owner.cli(&["workspace", "leave"])).await?;
    ensure!(
        stuck.status.code() == Some(1) && text(&stuck.stderr).contains("owner"),
        "{stuck:?}"
    );
    ok(run(member.cli(&["workspace", "leave", "--workspace", &id])).await?)?;
    // Remove: invite again, accept, remove by email.
    let code = text(&ok(run(owner.cli(&["workspace", "invite", &member.email])).await?)?.stdout);
    ok(run(member.cli(&["workspace", "accept", code.trim()])).await?)?;
    ok(run(owner.cli(&["workspace", "remove", &member.email])).await?)?;
    // The audit log, filtered.
    let log = json(ok(run(owner.cli(&[
        "audit",
        "list",
        "--action",
        "workspace.*",
        "--json",
    ]))
    .await?)?)?;
    let actions: Vec<&str> = log
        .as_array()
        .context("records")?
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for want in [
        "workspace.rename",
        "workspace.settings",
        "workspace.invite",
        "workspace.invite_accept",
        "workspace.role_change",
        "workspace.leave",
        "workspace.member_remove",
    ] {
        ensure!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let human = text(&ok(run(owner.cli(&["audit", "list", "--limit", "3"])).await?)?.stdout);
    ensure!(human.lines().count() == 4, "{human}");
    // Recovery codes, passkeys and device approval.
    let codes = text(&ok(run(owner.cli(&["auth", "recovery-codes", "generate"])).await?)?.stdout);
    ensure!(codes.lines().count() == 10, "{codes}");
    let status = text(&ok(run(owner.cli(&["auth", "recovery-codes", "status"])).await?)?.stdout);
    ensure!(status.contains("10 of 10"), "{status}");
    // A recovery code signs the CLI in on another machine, once.
    let code = codes.lines().next().context("a code")?.to_owned();
    let other = User::new(stack, "cli-ws-recovering").await?;
    std::fs::remove_file(other.config_dir().join("credentials.toml"))?;
    let args = [
        "login",
        "--email",
        owner.email.as_str(),
        "--recovery-code",
        code.as_str(),
    ];
    let who = text(&ok(run(other.cli(&args)).await?)?.stdout);
    ensure!(who.trim() == owner.user_id, "{who}");
    let whoami = text(&ok(run(other.cli(&["whoami"])).await?)?.stdout);
    ensure!(whoami.contains("signed in by recovery_code"), "{whoami}");
    let again = run(other.cli(&args)).await?;
    ensure!(again.status.code() == Some(1), "{again:?}");
    ensure!(
        text(&again.stderr).contains("invalid_recovery_code"),
        "{}",
        text(&again.stderr)
    );
    let keys = json(ok(
        run(owner.cli(&["auth", "passkeys", "list", "--json"])).await?
    )?)?;
    ensure!(keys == serde_json::json!([]), "{keys}");
    let device = stack
        .client()?
        .device_code(&burstflare_api::identity::DeviceCodeRequest {
            client_name: Some("cli approval".into()),
        })
        .await?;
    let shown = json(ok(run(owner.cli(&[
        "auth",
        "device",
        "show",
        &device.user_code,
        "--json",
    ]))
    .await?)?)?;
    ensure!(
        shown["client_name"] == "cli approval" && shown["status"] == "pending",
        "{shown}"
    );
    let approved =
        text(&ok(run(owner.cli(&["auth", "device", "approve", &device.user_code])).await?)?.stdout);
    ensure!(approved.contains("approved"), "{approved}");
    Ok(())
}

/// `burstflare template …`, `build …`, `release …` and `session create
/// --template` through the real CLI, with a bundle packed from a directory.
pub async fn cli_templates_builds_and_releases(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "cli-tpl").await?;
    u.add_key().await?;
    let work = tempfile::tempdir()?;
    let starter = work.path().join("burstflare.toml");
    ok(run(u.cli(&["template", "init", "--file", &starter.to_string_lossy()])).await?)?;
    ensure!(std::fs::read_to_string(&starter)?.contains("base = \"runtime\""));
    let again = run(u.cli(&["template", "init", "--file", &starter.to_string_lossy()])).await?;
    ensure!(again.status.code() == Some(1), "init refuses to overwrite");
    let manifest = work.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        "base = \"runtime\"\nsetup = [\"cp greeting.txt /opt/greeting.txt\"]\n",
    )?;
    let bundle = work.path().join("files");
    std::fs::create_dir_all(&bundle)?;
    std::fs::write(bundle.join("greeting.txt"), "hello from the bundle\n")?;
    let json = |o: Output| -> Result<serde_json::Value> { Ok(serde_json::from_slice(&o.stdout)?) };
    ok(run(u.cli(&[
        "template",
        "create",
        "cli-tpl",
        "--description",
        "from the CLI",
    ]))
    .await?)?;
    let v = json(ok(run(u.cli(&[
        "template",
        "version",
        "create",
        "cli-tpl",
        "--manifest",
        &manifest.to_string_lossy(),
        "--bundle",
        &bundle.to_string_lossy(),
        "--json",
    ]))
    .await?)?)?;
    ensure!(
        v["number"] == 1
            && v["bundle"]["digest"]
                .as_str()
                .is_some_and(|d| d.len() == 64),
        "{v}"
    );
    let listed = text(&ok(run(u.cli(&["template", "version", "list", "cli-tpl"])).await?)?.stdout);
    ensure!(
        listed.contains("manifest") && listed.contains("bytes"),
        "{listed}"
    );
    let b = json(ok(run(
        u.cli(&["build", "start", "cli-tpl", "--wait", "--json"])
    )
    .await?)?)?;
    ensure!(b["state"] == "succeeded", "{b}");
    let id = b["id"].as_str().context("build id")?.to_owned();
    let logs = text(&ok(run(u.cli(&["build", "logs", &id])).await?)?.stdout);
    ensure!(
        logs.contains("$ cp greeting.txt /opt/greeting.txt"),
        "{logs}"
    );
    let artifact = json(ok(run(u.cli(&["build", "artifact", &id, "--json"])).await?)?)?;
    ensure!(
        artifact["layer_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 64),
        "{artifact}"
    );
    ensure!(
        artifact["bundle_digest"] == v["bundle"]["digest"],
        "{artifact}"
    );
    let builds = text(&ok(run(u.cli(&["build", "list", "cli-tpl"])).await?)?.stdout);
    ensure!(
        builds.contains(&id) && builds.contains("succeeded"),
        "{builds}"
    );
    ok(run(u.cli(&["release", "promote", "cli-tpl", &id])).await?)?;
    let releases = json(ok(
        run(u.cli(&["release", "list", "cli-tpl", "--json"])).await?
    )?)?;
    ensure!(releases["releases"][0]["active"] == true, "{releases}");
    let name = format!("cli-tpl-{}", unique().replace('-', ""));
    ok(run(u.cli(&[
        "session",
        "create",
        &name,
        "--template",
        "cli-tpl",
        "--start",
    ]))
    .await?)?;
    let key = u.key();
    let out = ok(run(u.cli(&[
        "ssh",
        &name,
        "-i",
        &key.to_string_lossy(),
        "-o",
        "BatchMode=yes",
        "--",
        "cat",
        "/opt/greeting.txt",
    ]))
    .await?)?;
    ensure!(
        text(&out.stdout) == "hello from the bundle\n",
        "{}",
        text(&out.stdout)
    );
    // Archived: no new sessions (the running one keeps running); restored: fine.
    ok(run(u.cli(&["template", "archive", "cli-tpl"])).await?)?;
    let refused = run(u.cli(&["session", "create", "nope", "--template", "cli-tpl"])).await?;
    ensure!(
        refused.status.code() == Some(1) && text(&refused.stderr).contains("archived"),
        "{}",
        text(&refused.stderr)
    );
    let running = ok(run(u.cli(&["session", "get", &name, "--json"])).await?)?;
    ensure!(
        text(&running.stdout).contains("\"running\""),
        "{}",
        text(&running.stdout)
    );
    ok(run(u.cli(&["template", "restore", "cli-tpl"])).await?)?;
    ok(run(u.cli(&["session", "delete", &name])).await?)?;
    ok(run(u.cli(&["template", "delete", "cli-tpl"])).await?)?;
    let gone = run(u.cli(&["template", "get", "cli-tpl"])).await?;
    ensure!(gone.status.code() == Some(1), "{gone:?}");
    Ok(())
}
