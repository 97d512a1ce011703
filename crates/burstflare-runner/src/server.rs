//! Starting and stopping the runner: bind, rediscover, serve, shut down.
//!
//! The runner is stateless: at startup (beside serving, so a slow Docker never
//! delays the listener) it lists the containers carrying its instance label
//! and logs `rediscovered N containers`; they keep running and are served as
//! before. Shutting down (SIGTERM/SIGINT) stops accepting
//! connections, lets in-flight requests finish for up to
//! [`SHUTDOWN_GRACE`] and never touches containers, so sessions survive a
//! runner restart (open tunnels drop and clients reconnect).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use burstflare_api::runtime::ContainerStatus;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::Config;
use crate::docker::Engine;
use crate::routes::{AppState, router};

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = Arc::new(Engine::new(&config.docker_host, &config.instance));
    // Rediscovery only reports; it runs beside serving so a slow Docker never
    // delays the listener.
    let rediscover = engine.clone();
    tokio::spawn(async move {
        match rediscover.list(None).await {
            Ok(items) => tracing::info!(
                instance = %rediscover.instance(),
                running = items.iter().filter(|i| i.status == ContainerStatus::Running).count(),
                "rediscovered {} containers",
                items.len()
            ),
            Err(e) => tracing::warn!(
                "rediscovered 0 containers: {e}; the runner answers 503 until Docker is reachable"
            ),
        }
    });
    let app = router(AppState::new(engine, &config.secret));
    tracing::info!(listen = %listener.local_addr()?, instance = %config.instance, docker_host = %config.docker_host, "burstflare-runner is listening");

    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped.notified().await })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    tracing::info!("shutting down; containers keep running");
    stop.notify_one();
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                "in-flight requests did not finish within {SHUTDOWN_GRACE:?}; exiting anyway"
            );
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::warn!("cannot install signal handlers; falling back to Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
