//! The cron trigger: enqueue a reconcile sweep.
//!
//! The handler does no work itself; the reconcile-queue consumer does, so a
//! failing sweep is retried by the queue rather than lost with the invocation.

use worker::{Env, ScheduledEvent};

use crate::platform;
use crate::queues::{ReconcileMessage, send_reconcile};

pub async fn run(event: ScheduledEvent, env: Env) {
    let run_id = match platform::random::<12>() {
        Ok(bytes) => format!("rcn_{}", hex::encode(bytes)),
        Err(e) => {
            worker::console_error!("cron {}: no randomness: {}", event.cron(), e.message);
            return;
        }
    };
    let message = ReconcileMessage::Sweep {
        run_id: run_id.clone(),
        trigger: "cron".into(),
        requested_at: event.schedule() as i64,
    };
    match send_reconcile(&env, &message).await {
        Ok(()) => worker::console_log!("cron {}: reconcile sweep {run_id} enqueued", event.cron()),
        Err(e) => worker::console_error!(
            "cron {}: could not enqueue reconcile sweep: {}",
            event.cron(),
            e.internal.unwrap_or(e.message)
        ),
    }
}
