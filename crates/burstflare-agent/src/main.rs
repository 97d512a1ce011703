//! The `burstflare-agent` binary: reads the configuration, installs the
//! signal handlers before anything else can be interrupted, and runs the agent
//! (see the library documentation). Exit status: 0 after SIGTERM/SIGINT,
//! 2 for a configuration error, 1 when the agent cannot run.

use std::process::ExitCode;
use std::time::Duration;

use burstflare_agent::config::Config;
use tokio::signal::unix::{Signal, SignalKind, signal};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    // `burstflare-agent base-manifest <root> <out>`: run once at image build.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("base-manifest") {
        let (Some(root), Some(out)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: burstflare-agent base-manifest <root> <out-file>");
            return ExitCode::from(2);
        };
        return match burstflare_agent::layer::write_base_manifest(
            std::path::Path::new(root),
            std::path::Path::new(out),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "hint: the control plane sets the agent's environment; to run it by hand, set {}",
                burstflare_api::runtime::ENV_AGENT_SECRET
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let signals = Signals::install();
        burstflare_agent::run(config, signals.wait()).await
    });
    // Connections still open (WebSockets) end with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT, registered when created (not when first awaited).
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Signals {
    fn install() -> Self {
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(signal = name, error = %e, "cannot handle the signal");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
        }
    }

    async fn wait(mut self) {
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => tracing::info!("SIGTERM received"),
            () = recv(&mut self.int) => tracing::info!("SIGINT received"),
        }
    }
}
