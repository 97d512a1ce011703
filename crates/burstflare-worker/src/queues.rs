//! Queue producers and consumers.
//!
//! Message bodies are JSON text with a `type` tag (shapes documented in
//! `docs/storage.md`). One `queue` handler serves every queue and dispatches
//! on the queue name, which the generated config passes in `[vars]`
//! (`BUILD_QUEUE_NAME`, `RECONCILE_QUEUE_NAME`, `DEAD_LETTER_QUEUE_NAME`).
//! A message whose handling fails is retried by the queue and, after
//! `max_retries`, lands in the dead-letter queue; a malformed message is
//! logged and acknowledged, since retrying cannot fix it.

use serde::{Deserialize, Serialize};
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

use crate::error::{ApiError, ApiResult};
use crate::platform::{self, BUILD_QUEUE, RECONCILE_QUEUE};
use crate::services::{builds, reconcile};
use crate::store::probes::{self, Mark};

/// Messages on `BUILD_QUEUE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildMessage {
    /// A diagnostics probe; with `dead_letter` the consumer rejects it every time.
    Probe { probe_id: String, dead_letter: bool },
    /// Start the next attempt of a build (see `services::builds::dispatch`).
    Run { build_id: String },
}

/// Messages on `RECONCILE_QUEUE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReconcileMessage {
    /// Run a reconcile sweep; `run_id` makes redelivery idempotent.
    Sweep {
        run_id: String,
        trigger: String,
        requested_at: i64,
    },
    Probe {
        probe_id: String,
    },
}

async fn send<T: Serialize>(
    env: &Env,
    binding: &str,
    message: &T,
    delay_seconds: Option<u32>,
) -> ApiResult<()> {
    let body = serde_json::to_string(message)?;
    let queue = env.queue(binding)?;
    let sent = match delay_seconds {
        Some(d) => {
            queue
                .send(worker::MessageBuilder::new(body).delay_seconds(d).build())
                .await
        }
        None => queue.send(body).await,
    };
    sent.map_err(|e| ApiError::internal(format!("send to {binding}: {e}")))
}

/// Sends to `BUILD_QUEUE`, delivered after `delay_seconds` when given.
pub async fn send_build(
    env: &Env,
    message: &BuildMessage,
    delay_seconds: Option<u32>,
) -> ApiResult<()> {
    send(env, BUILD_QUEUE, message, delay_seconds).await
}

pub async fn send_reconcile(env: &Env, message: &ReconcileMessage) -> ApiResult<()> {
    send(env, RECONCILE_QUEUE, message, None).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueRole {
    Build,
    Reconcile,
    DeadLetter,
}

fn role(env: &Env, queue: &str) -> Option<QueueRole> {
    [
        ("BUILD_QUEUE_NAME", QueueRole::Build),
        ("RECONCILE_QUEUE_NAME", QueueRole::Reconcile),
        ("DEAD_LETTER_QUEUE_NAME", QueueRole::DeadLetter),
    ]
    .into_iter()
    .find(|(var, _)| platform::var(env, var, "") == queue)
    .map(|(_, role)| role)
}

/// Longest backoff before a failed message is delivered again.
const MAX_RETRY_DELAY_SECONDS: i64 = 300;

/// Backoff for a retried message: as long as the message has existed, so
/// successive retries roughly double, between 1 second and 5 minutes.
fn retry_delay_seconds(age_ms: i64) -> u32 {
    u32::try_from((age_ms / 1000).clamp(1, MAX_RETRY_DELAY_SECONDS)).unwrap_or(1)
}

/// What to do with a delivered message.
enum Outcome {
    Ack,
    Retry,
    /// Deliver again after this many seconds.
    RetryIn(u32),
}

pub async fn consume(batch: MessageBatch<String>, env: Env) {
    let queue = batch.queue();
    let Some(role) = role(&env, &queue) else {
        worker::console_error!(
            "queue {queue}: no consumer is configured for it; retrying the batch"
        );
        batch.retry_all();
        return;
    };
    for message in batch.iter() {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                worker::console_error!("queue {queue}: undecodable message: {e}");
                continue;
            }
        };
        let outcome = handle(&env, role, message.body()).await;
        let age_ms = platform::now() - message.timestamp().as_millis() as i64;
        let retry = QueueRetryOptionsBuilder::new()
            .with_delay_seconds(retry_delay_seconds(age_ms))
            .build();
        match outcome {
            Ok(Outcome::Ack) => message.ack(),
            Ok(Outcome::Retry) => message.retry_with_options(&retry),
            Ok(Outcome::RetryIn(secs)) => message.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(secs)
                    .build(),
            ),
            Err(e) => {
                worker::console_error!(
                    "queue {queue}: message {} failed, will retry: {}",
                    message.id(),
                    e.internal.unwrap_or(e.message)
                );
                message.retry_with_options(&retry);
            }
        }
    }
}

async fn handle(env: &Env, role: QueueRole, body: &str) -> ApiResult<Outcome> {
    match role {
        QueueRole::Build => match serde_json::from_str::<BuildMessage>(body) {
            Ok(BuildMessage::Probe {
                probe_id,
                dead_letter,
            }) => {
                probes::count_build_attempt(env, &probe_id).await?;
                if dead_letter {
                    return Ok(Outcome::Retry);
                }
                probes::mark(env, &probe_id, Mark::BuildQueue, platform::now(), None).await?;
                Ok(Outcome::Ack)
            }
            Ok(BuildMessage::Run { build_id }) => match builds::dispatch(env, &build_id).await? {
                builds::Dispatch::Done => Ok(Outcome::Ack),
                builds::Dispatch::Later(secs) => Ok(Outcome::RetryIn(secs)),
            },
            Err(e) => malformed("build", body, &e),
        },
        QueueRole::Reconcile => match serde_json::from_str::<ReconcileMessage>(body) {
            Ok(ReconcileMessage::Sweep {
                run_id, trigger, ..
            }) => {
                reconcile::sweep(env, &run_id, &trigger).await?;
                Ok(Outcome::Ack)
            }
            Ok(ReconcileMessage::Probe { probe_id }) => {
                probes::mark(env, &probe_id, Mark::ReconcileQueue, platform::now(), None).await?;
                Ok(Outcome::Ack)
            }
            Err(e) => malformed("reconcile", body, &e),
        },
        QueueRole::DeadLetter => {
            // Dead-lettered messages keep the shape they had on their original queue.
            match serde_json::from_str::<BuildMessage>(body) {
                Ok(BuildMessage::Probe { probe_id, .. }) => {
                    probes::mark(env, &probe_id, Mark::DeadLetter, platform::now(), None).await?;
                }
                // Build dispatch failed on every delivery: the reconcile sweep
                // redispatches builds stuck in `queued`.
                Ok(BuildMessage::Run { build_id }) => {
                    worker::console_error!("dead-letter queue: dispatch of build {build_id} failed")
                }
                Err(_) => worker::console_error!("dead-letter queue: unhandled message {body}"),
            }
            Ok(Outcome::Ack)
        }
    }
}

fn malformed(queue: &str, body: &str, e: &serde_json::Error) -> ApiResult<Outcome> {
    worker::console_error!(
        "{queue} queue: malformed message acknowledged without effect ({e}): {body}"
    );
    Ok(Outcome::Ack)
}
