//! `burstflare-bench`: measurements on the real stack (run through
//! `cargo xtask bench <name>`), printed as figures, never asserted.
//!
//! * `session-start [--runs N]`: wall time from the API call that creates and
//!   starts a session until `ssh true` through BurstFlare succeeds (and the
//!   API part alone), against the raw baseline of `docker run` of the same
//!   image until sshd's banner arrives on a published port; p50/p95 of each
//!   and their ratio. For a like-for-like view it also times raw `docker run`
//!   until a direct `ssh true` succeeds.
//! * `ssh-throughput [--mb N]`: MB/s of `scp` uploading and downloading a file
//!   through BurstFlare (CLI stdio proxy → Worker → Durable Object → runner →
//!   agent → sshd) against `scp` straight to the container's published sshd
//!   port; and the ratio.
//! * `prebuild [--runs N]`: session-ready time (API create+start until
//!   `jq --version` answers over SSH) for a template whose apt packages and
//!   setup were built once into a layer, against the same work done by start
//!   commands at every boot; p50/p95 of each and the ratio. A session
//!   without a template (`ssh true`) is timed too: the floor the prebuilt
//!   boot cannot beat, printed with what the layer and the setup add to it.
//! * `snapshot [--mb N] [--runs N]`: a tree of N MB (default 500; half
//!   random, half text) in a session's home: snapshot save and restore MB/s
//!   against raw `tar | zstd -1` and `zstd -d | tar x` of the same data in
//!   the same container; the second save of the unchanged tree as a share of
//!   the first; the peak RSS of the agent and of the Worker (workerd) around
//!   it; wake latency (sleeping → `ssh true`) p50/p95 for a small home and
//!   once for the tree.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use burstflare_api::runtime::{ENV_AGENT_SECRET, ENV_AUTHORIZED_KEYS, LABEL_SESSION};
use burstflare_api::sessions::CreateSessionRequest;
use burstflare_e2e::runner::docker_containers;
use burstflare_e2e::stack::unique;
use burstflare_e2e::user::{User, ok, run, text};
use burstflare_e2e::{Stack, Tools};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(label: &str, mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&xs, 50.0), percentile(&xs, 95.0));
    println!(
        "{label:<44} n={:<3} p50={p50:>7.3}s p95={p95:>7.3}s min={:.3}s max={:.3}s",
        xs.len(),
        xs.first().copied().unwrap_or(f64::NAN),
        xs.last().copied().unwrap_or(f64::NAN)
    );
    (p50, p95)
}

/// `docker run` of the runtime image → the first bytes of sshd's banner on the published port.
/// Raw baseline: `docker run` of the runtime image → sshd's banner on the
/// published port, and → `ssh true` succeeding directly against it.
fn raw_docker_start(image: &str, pubkey: &str, key: &str) -> Result<(f64, f64)> {
    let name = format!("bf-bench-raw-{}", unique());
    let started = Instant::now();
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name, "-p", "127.0.0.1::22"])
        .args(["-e", &format!("{ENV_AGENT_SECRET}=bench-secret")])
        .args(["-e", &format!("{ENV_AUTHORIZED_KEYS}={pubkey}")])
        .arg(image)
        .output()?;
    ensure!(out.status.success(), "docker run: {}", text(&out.stderr));
    let result = (|| {
        let port = Command::new("docker")
            .args(["port", &name, "22/tcp"])
            .output()?;
        let port = text(&port.stdout);
        let port: u16 = port
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
            .context("no published port")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("sshd did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let banner = started.elapsed().as_secs_f64();
        let ssh = Command::new("ssh")
            .args(["-i", key, "-p", &port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["dev@127.0.0.1", "true"])
            .stdin(Stdio::null())
            .status()?;
        ensure!(ssh.success(), "direct ssh failed");
        Ok((banner, started.elapsed().as_secs_f64()))
    })();
    let _ = Command::new("docker")
        .args(["rm", "-f", &name])
        .stdout(Stdio::null())
        .status();
    result
}

async fn session_start(stack: &Stack, runs: usize) -> Result<()> {
    let u = User::new(stack, "bench").await?;
    u.add_key().await?;
    let pubkey = std::fs::read_to_string(format!("{}.pub", u.key().display()))?;
    let key = u.key().display().to_string();
    // One warm-up of each, so image layers and page cache are hot for both.
    raw_docker_start(&stack.tools.runtime_image, pubkey.trim(), &key)?;
    let mut platform = Vec::new();
    let mut api = Vec::new();
    let mut raw = Vec::new();
    let mut raw_ssh = Vec::new();
    for i in 0..=runs {
        let name = format!("bench-{}", unique().replace('-', ""));
        let t0 = Instant::now();
        let s = u
            .client
            .create_session(&CreateSessionRequest {
                name: name.clone(),
                start: true,
                ..Default::default()
            })
            .await?;
        let api_done = t0.elapsed().as_secs_f64();
        ok(run(u.cli(&[
            "ssh",
            &name,
            "-i",
            &key,
            "-o",
            "BatchMode=yes",
            "--",
            "true",
        ]))
        .await?)?;
        let elapsed = t0.elapsed().as_secs_f64();
        u.client
            .session_command(s.id.as_str(), burstflare_domain::SessionCommand::Delete)
            .await?;
        let (r, rs) = raw_docker_start(&stack.tools.runtime_image, pubkey.trim(), &key)?;
        if i > 0 {
            api.push(api_done);
            platform.push(elapsed);
            raw.push(r);
            raw_ssh.push(rs);
        }
    }
    println!(
        "session-start ({runs} runs, image {})",
        stack.tools.runtime_image
    );
    let (p50, p95) = summary("API create+start -> `ssh true` succeeds", platform);
    summary("  of which: API create+start returns", api);
    let (r50, r95) = summary("raw `docker run` -> sshd banner", raw);
    let (s50, s95) = summary("raw `docker run` -> direct `ssh true` succeeds", raw_ssh);
    println!(
        "ratio (BurstFlare / raw docker): p50 {:.2}x  p95 {:.2}x   (target <= 2x)",
        p50 / r50,
        p95 / r95
    );
    println!(
        "like for like (BurstFlare / raw docker + direct ssh): p50 {:.2}x  p95 {:.2}x",
        p50 / s50,
        p95 / s95
    );
    Ok(())
}

async fn ssh_throughput(stack: &Stack, mb: usize) -> Result<()> {
    let u = User::new(stack, "bench").await?;
    u.add_key().await?;
    let s = u.running_session("tput").await?;
    ok(run(u.cli(&["config-ssh"])).await?)?;
    let container = docker_containers(LABEL_SESSION, s.id.as_str())?
        .into_iter()
        .next()
        .context("no container")?;
    let port = Command::new("docker")
        .args(["port", &container, "22/tcp"])
        .output()?;
    let port = text(&port.stdout)
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .map(|p| p.trim().to_owned())
        .context("sshd port not published")?;
    let file = u.home.path().join("payload.bin");
    let status = Command::new("head")
        .args(["-c", &format!("{}", mb * 1024 * 1024), "/dev/urandom"])
        .stdout(std::fs::File::create(&file)?)
        .status()?;
    ensure!(status.success());
    let back = u.home.path().join("back.bin");
    let host = format!("bf-{}", s.name);
    let scp = |args: Vec<String>| {
        let mut c = Command::new("scp");
        c.arg("-F")
            .arg(u.ssh_config())
            .arg("-i")
            .arg(u.key())
            .args([
                "-q",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args([
                "-o",
                &format!(
                    "UserKnownHostsFile={}",
                    u.home.path().join("direct_known_hosts").display()
                ),
            ])
            .args(args)
            .stdin(Stdio::null());
        c
    };
    let timed = |cmd: Command| async move {
        let t0 = Instant::now();
        ok(run(cmd).await?)?;
        Ok::<f64, anyhow::Error>(t0.elapsed().as_secs_f64())
    };
    let file_s = file.display().to_string();
    let back_s = back.display().to_string();
    let mut results = Vec::new();
    for (label, up, down) in [
        (
            "through BurstFlare",
            vec![file_s.clone(), format!("{host}:/tmp/payload.bin")],
            vec![format!("{host}:/tmp/payload.bin"), back_s.clone()],
        ),
        (
            "direct to the published sshd",
            vec![
                "-P".into(),
                port.clone(),
                file_s.clone(),
                "dev@127.0.0.1:/tmp/payload.bin".into(),
            ],
            vec![
                "-P".into(),
                port.clone(),
                "dev@127.0.0.1:/tmp/payload.bin".into(),
                back_s.clone(),
            ],
        ),
    ] {
        // Best of three for each direction.
        let mut up_s = f64::MAX;
        let mut down_s = f64::MAX;
        for _ in 0..3 {
            up_s = up_s.min(timed(scp(up.clone())).await?);
            down_s = down_s.min(timed(scp(down.clone())).await?);
        }
        let (up_mbs, down_mbs) = (mb as f64 / up_s, mb as f64 / down_s);
        println!(
            "scp {mb} MB {label:<30} upload {up_mbs:>7.1} MB/s  download {down_mbs:>7.1} MB/s"
        );
        results.push((up_mbs, down_mbs));
    }
    let (bf, direct) = (results[0], results[1]);
    println!(
        "ratio (BurstFlare / direct): upload {:.2}x  download {:.2}x   (target >= 0.7x)",
        bf.0 / direct.0,
        bf.1 / direct.1
    );
    u.client
        .session_command(s.id.as_str(), burstflare_domain::SessionCommand::Delete)
        .await?;
    Ok(())
}

const PREBUILD_SETUP: [&str; 3] = [
    "mkdir -p /opt/tool",
    "echo 1.6-burstflare > /opt/tool/VERSION",
    "echo ran >> /opt/tool/setup-runs",
];

/// A template named `name` whose only version is `manifest`, built and promoted.
async fn released_template(u: &User, name: &str, manifest: &str) -> Result<()> {
    use burstflare_api::builds::{CreateBuildRequest, PromoteRequest};
    use burstflare_api::templates::{CreateTemplateRequest, CreateVersionRequest};
    use burstflare_domain::build::BuildState;
    let t = u
        .client
        .create_template(&CreateTemplateRequest {
            name: name.into(),
            ..Default::default()
        })
        .await?;
    let v = u
        .client
        .create_version(
            t.id.as_str(),
            &CreateVersionRequest {
                manifest: Some(manifest.into()),
                devcontainer: None,
            },
        )
        .await?;
    let b = u
        .client
        .start_build(t.id.as_str(), &CreateBuildRequest { version_id: v.id })
        .await?;
    let started = Instant::now();
    let done = loop {
        let b = u.client.build(b.id.as_str()).await?;
        if b.state.is_terminal() {
            break b;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(900),
            "build {} is stuck",
            b.id
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    ensure!(
        done.state == BuildState::Succeeded,
        "build failed: {:?}",
        done.last_error
    );
    println!(
        "built {name} in {:.1}s (layer {} bytes)",
        started.elapsed().as_secs_f64(),
        done.artifact.as_ref().map_or(0, |a| a.layer_size)
    );
    u.client
        .promote(t.id.as_str(), &PromoteRequest { build_id: done.id })
        .await?;
    Ok(())
}

async fn prebuild(stack: &Stack, runs: usize) -> Result<()> {
    let u = User::new(stack, "bench").await?;
    u.add_key().await?;
    let key = u.key().display().to_string();
    let quote = |cmds: &[String]| {
        cmds.iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let setup: Vec<String> = PREBUILD_SETUP.iter().map(|s| (*s).to_owned()).collect();
    let prebuilt = format!(
        "base = \"runtime\"\npackages = [\"jq\"]\nsetup = [{}]\n",
        quote(&setup)
    );
    let mut at_boot_cmds = vec![
        "apt-get update".to_owned(),
        "apt-get install -y --no-install-recommends jq".to_owned(),
    ];
    at_boot_cmds.extend(setup);
    let at_boot = format!("base = \"runtime\"\nstart = [{}]\n", quote(&at_boot_cmds));
    released_template(&u, "prebuilt", &prebuilt).await?;
    released_template(&u, "setup-at-boot", &at_boot).await?;
    let mut results = Vec::new();
    // The floor: a session without a template, until `ssh true` answers.
    let variants = [
        (None, "true", "no template (floor)", "`true`"),
        (
            Some("prebuilt"),
            "jq --version",
            "prebuilt",
            "`jq --version`",
        ),
        (
            Some("setup-at-boot"),
            "jq --version",
            "setup-at-boot",
            "`jq --version`",
        ),
    ];
    for (template, command, label, shown) in variants {
        let mut times = Vec::new();
        for i in 0..=runs {
            let name = format!("pb-{}", unique().replace('-', ""));
            let t0 = Instant::now();
            let s = u
                .client
                .create_session(&CreateSessionRequest {
                    name: name.clone(),
                    start: true,
                    template: template.map(Into::into),
                    ..Default::default()
                })
                .await?;
            let out = ok(run(u.cli(&[
                "ssh",
                &name,
                "-i",
                &key,
                "-o",
                "BatchMode=yes",
                "--",
                command,
            ]))
            .await?)?;
            let elapsed = t0.elapsed().as_secs_f64();
            ensure!(
                command == "true" || text(&out.stdout).starts_with("jq-"),
                "{}",
                text(&out.stdout)
            );
            u.client
                .session_command(s.id.as_str(), burstflare_domain::SessionCommand::Delete)
                .await?;
            // The first run of each warms caches.
            if i > 0 {
                times.push(elapsed);
            }
        }
        results.push(summary(&format!("{label}: create+start -> {shown}"), times));
    }
    let ((f50, _), (p50, p95), (b50, b95)) = (results[0], results[1], results[2]);
    println!(
        "ratio (setup at boot / prebuilt layer): p50 {:.1}x  p95 {:.1}x   (target >= 10x)",
        b50 / p50,
        b95 / p95
    );
    // What bounds the ratio: the prebuilt boot cannot beat the floor, so
    // the ratio is at most (floor + setup) / floor.
    println!(
        "breakdown (p50): floor {f50:.3}s; the layer adds {:+.3}s; the setup at boot adds {:.3}s",
        p50 - f50,
        b50 - f50
    );
    Ok(())
}

/// Runs `script` as root in `container`; its stdout.
fn docker_exec(container: &str, script: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(["exec", container, "bash", "-c", script])
        .output()?;
    ensure!(
        out.status.success(),
        "docker exec {script}: {}",
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// Times `f`, in seconds.
async fn timed<T, F: std::future::Future<Output = Result<T>>>(f: F) -> Result<(T, f64)> {
    let t0 = Instant::now();
    let out = f.await?;
    Ok((out, t0.elapsed().as_secs_f64()))
}

/// Peak resident memory (`VmHWM`, MiB) of a process, from `status` text.
fn peak_mib(status: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// The `workerd` processes below `root` (the stack's wrangler).
fn workerd_pids(root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            break;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let ppid: u32 = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == parent {
                frontier.push(pid);
                if stat.contains("(workerd)") {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// The Worker's (workerd's) peak memory so far, MiB.
fn worker_peak(stack: &Stack) -> Option<f64> {
    workerd_pids(stack.wrangler_pid())
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| peak_mib(&s))
        .reduce(f64::max)
}

async fn snapshot_bench(stack: &Stack, mb: usize, runs: usize) -> Result<()> {
    use burstflare_api::snapshots::{RestoreRequest, RestoreWhen};
    use burstflare_domain::SessionCommand;
    let u = User::new(stack, "bench-snap").await?;
    u.add_key().await?;
    let key = u.key().display().to_string();
    let s = u.running_session("snap").await?;
    let container = docker_containers(LABEL_SESSION, s.id.as_str())?
        .into_iter()
        .next()
        .context("the session's container")?;
    // Half incompressible, half text, in 4 MiB files under ~/data.
    let files = (mb / 4).max(1);
    docker_exec(
        &container,
        &format!(
            "set -e; mkdir -p /home/dev/data; for i in $(seq 1 {files}); do \
             if [ $((i % 2)) -eq 0 ]; then head -c 4194304 /dev/urandom; \
             else yes 'the quick brown fox jumps over the lazy dog' | head -c 4194304; fi \
             > /home/dev/data/f$i; done; chown -R dev:dev /home/dev/data; sync"
        ),
    )?;
    let bytes: f64 = docker_exec(&container, "du -sb /home/dev | cut -f1")?
        .trim()
        .parse()?;
    let size_mb = bytes / 1e6;
    println!(
        "tree: {size_mb:.0} MB in {files} files of 4 MiB (half random, half text) under /home/dev"
    );

    // Raw baselines, in the container, on the same data.
    docker_exec(
        &container,
        "command -v zstd >/dev/null || (apt-get update -qq && apt-get install -y -qq zstd >/dev/null)",
    )?;
    let raw_save = {
        let t0 = Instant::now();
        docker_exec(
            &container,
            "tar -C /home/dev -cf - . | zstd -1 -q -T0 -o /tmp/raw.tar.zst -f",
        )?;
        t0.elapsed().as_secs_f64()
    };
    let raw_restore = {
        let t0 = Instant::now();
        docker_exec(
            &container,
            "rm -rf /tmp/r && mkdir /tmp/r && zstd -d -q -c /tmp/raw.tar.zst | tar -C /tmp/r -xf -",
        )?;
        t0.elapsed().as_secs_f64()
    };
    docker_exec(&container, "rm -rf /tmp/r /tmp/raw.tar.zst")?;

    let worker_before = worker_peak(stack);
    let (first, save) = timed(async { Ok(u.client.create_snapshot(s.id.as_str()).await?) }).await?;
    let worker_saved = worker_peak(stack);
    let (second, again) =
        timed(async { Ok(u.client.create_snapshot(s.id.as_str()).await?) }).await?;
    let (_, restore) = timed(async {
        Ok(u.client
            .restore(
                s.id.as_str(),
                &RestoreRequest {
                    snapshot_id: first.id.clone(),
                    when: RestoreWhen::Now,
                },
            )
            .await?)
    })
    .await?;
    let agent_peak = docker_exec(
        &container,
        "cat /proc/$(pgrep -o -x burstflare-agen)/status",
    )
    .ok()
    .and_then(|s| peak_mib(&s));
    let worker_after = worker_peak(stack);

    let rate = |secs: f64| size_mb / secs;
    println!(
        "raw tar | zstd -1:         {raw_save:>7.2}s  {:>7.1} MB/s",
        rate(raw_save)
    );
    println!(
        "snapshot (first):          {save:>7.2}s  {:>7.1} MB/s   {:.2}x raw   (target >= 0.7x)",
        rate(save),
        raw_save / save
    );
    println!(
        "raw zstd -d | tar x:       {raw_restore:>7.2}s  {:>7.1} MB/s",
        rate(raw_restore)
    );
    println!(
        "restore:                   {restore:>7.2}s  {:>7.1} MB/s   {:.2}x raw   (target >= 0.7x)",
        rate(restore),
        raw_restore / restore
    );
    println!(
        "snapshot (unchanged tree): {again:>7.2}s  {:.1}% of the first  (stored {} bytes; target <= 5%)",
        100.0 * again / save,
        second.new_bytes
    );
    let shown = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |m| format!("{m:.0} MiB"));
    println!(
        "peak RSS: agent {} ; Worker (workerd) {} before, {} after the save, {} after the restore",
        shown(agent_peak),
        shown(worker_before),
        shown(worker_saved),
        shown(worker_after)
    );

    // Wake latency: sleeping → `ssh true`, for a small home (the default
    // session) and once for this tree.
    let wake = |name: String| {
        let u = &u;
        let key = key.clone();
        async move {
            let s = u.client.get_session(&name).await?;
            u.client
                .session_command(s.id.as_str(), SessionCommand::Sleep)
                .await?;
            let t0 = Instant::now();
            ok(run(u.cli(&[
                "ssh",
                &s.name,
                "-i",
                &key,
                "-o",
                "BatchMode=yes",
                "--",
                "true",
            ]))
            .await?)?;
            anyhow::Ok(t0.elapsed().as_secs_f64())
        }
    };
    let small = u.running_session("wake").await?;
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(wake(small.id.to_string()).await?);
    }
    summary("wake (small home): sleeping -> `ssh true`", times);
    let big = wake(s.id.to_string()).await?;
    println!("wake ({size_mb:.0} MB home): sleeping -> `ssh true`  {big:.2}s");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number")),
            None => Ok(default),
        }
    };
    let which = args.first().cloned().unwrap_or_default();
    if !matches!(
        which.as_str(),
        "session-start" | "ssh-throughput" | "prebuild" | "snapshot"
    ) {
        bail!(
            "usage: burstflare-bench session-start [--runs N] | ssh-throughput [--mb N] | prebuild [--runs N] | snapshot [--mb N] [--runs N]"
        );
    }
    let tools = Tools::discover()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    eprintln!("bench: starting the stack…");
    let stack = Stack::start(&tools, true)?;
    let result = runtime.block_on(async {
        match which.as_str() {
            "session-start" => session_start(&stack, flag("--runs", 10)?).await,
            "prebuild" => prebuild(&stack, flag("--runs", 5)?).await,
            "snapshot" => snapshot_bench(&stack, flag("--mb", 500)?, flag("--runs", 5)?).await,
            _ => ssh_throughput(&stack, flag("--mb", 100)?).await,
        }
    });
    drop(stack);
    result
}
