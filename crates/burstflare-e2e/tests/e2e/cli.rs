//! The real `burstflare` binary against the stack.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use burstflare_api::ops::Health;
use burstflare_api::{Me, RegisterResponse, TokenInfo};
use burstflare_e2e::Stack;
use burstflare_e2e::stack::unique;

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
