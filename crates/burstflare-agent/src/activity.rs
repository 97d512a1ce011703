//! Activity counters of the user-facing channels (`/ssh`, `/terminal`), read
//! by the control plane through `GET /activity` to decide when a session is
//! idle. Lock-free: every frame updates a few atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use burstflare_api::runtime::{AgentActivity, ChannelActivity};

/// Counters of one channel. A timestamp of 0 means "never".
#[derive(Debug, Default)]
pub struct Channel {
    last_input_ms: AtomicI64,
    last_output_ms: AtomicI64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    open: AtomicU32,
}

impl Channel {
    /// Bytes arrived from the user.
    pub fn input(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_input_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Bytes sent to the user.
    pub fn output(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_output_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Counts an open connection until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(Arc::clone(self))
    }

    pub fn snapshot(&self) -> ChannelActivity {
        let ts = |a: &AtomicI64| Some(a.load(Ordering::Relaxed)).filter(|&v| v != 0);
        ChannelActivity {
            last_input_ms: ts(&self.last_input_ms),
            last_output_ms: ts(&self.last_output_ms),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }
}

/// Keeps a connection counted as open.
pub struct OpenGuard(Arc<Channel>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All channels, and whether the agent is draining (SIGTERM received, a
/// final snapshot awaited).
#[derive(Debug, Default, Clone)]
pub struct Activity {
    pub ssh: Arc<Channel>,
    pub terminal: Arc<Channel>,
    pub lifecycle: Arc<Lifecycle>,
}

impl Activity {
    pub fn snapshot(&self) -> AgentActivity {
        AgentActivity {
            ssh: self.ssh.snapshot(),
            terminal: self.terminal.snapshot(),
            draining: self.lifecycle.draining(),
        }
    }
}

/// The shutdown handshake with the control plane. The control plane calls
/// `POST /lifecycle/release` before it stops a container itself (the agent
/// then exits at once on SIGTERM) and after the final snapshot of a draining
/// agent (which then exits).
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: std::sync::atomic::AtomicBool,
    released: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Lifecycle {
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Waits until released (at once if it already was).
    pub async fn until_released(&self) {
        loop {
            let notified = self.notify.notified();
            if self.released() {
                return;
            }
            notified.await;
        }
    }
}

/// Unix milliseconds now (1 if the clock is before 1970, so it never reads as "never").
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_times_and_open_connections() {
        let a = Activity::default();
        assert_eq!(a.snapshot(), AgentActivity::default());
        let before = now_ms();
        a.ssh.input(10);
        a.ssh.output(5);
        a.ssh.output(7);
        let guard = a.ssh.open();
        let s = a.snapshot().ssh;
        assert_eq!((s.bytes_in, s.bytes_out, s.open), (10, 12, 1));
        assert!(s.last_input_ms.unwrap() >= before);
        assert!(s.last_output_ms.unwrap() >= before);
        drop(guard);
        assert_eq!(a.snapshot().ssh.open, 0);
        assert_eq!(a.snapshot().terminal, ChannelActivity::default());
    }
}
