//! The build state machine: what a build does next, decided purely.
//!
//! ```text
//! queued ──start──▶ building ──succeed──▶ succeeded
//!   ▲                  │
//!   │                  ├─fail (retryable, attempts left)──▶ retrying ──start──▶ building
//!   │                  ├─fail (retryable, none left)──────▶ dead_lettered
//!   │                  └─fail (not retryable)─────────────▶ failed
//!   └──retry (operator, from failed / dead_lettered)
//! queued | retrying | building ──cancel──▶ cancelled
//! queued | retrying | building (stuck) ──redispatch (reconcile)──▶ queued (same build;
//!                       a stuck `building` attempt counts, so the last one dead-letters)
//! ```
//!
//! Retryable failures are platform trouble and setup commands that exit
//! non-zero (a flaky mirror); a bundle or manifest that cannot be used fails
//! at once. Retries wait `BACKOFF_BASE_SECS · 2^(n-1)` (capped). Every attempt
//! is counted; an operator retry starts a fresh allowance of attempts.

use serde::{Deserialize, Serialize};

/// Attempts per allowance before a build is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;
/// First retry delay; doubles per attempt.
pub const BACKOFF_BASE_SECS: u64 = 5;
/// Longest retry delay.
pub const BACKOFF_CAP_SECS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    Queued,
    Building,
    Succeeded,
    Failed,
    Retrying,
    DeadLettered,
    Cancelled,
}

impl BuildState {
    pub const ALL: [BuildState; 7] = [
        BuildState::Queued,
        BuildState::Building,
        BuildState::Succeeded,
        BuildState::Failed,
        BuildState::Retrying,
        BuildState::DeadLettered,
        BuildState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Queued => "queued",
            BuildState::Building => "building",
            BuildState::Succeeded => "succeeded",
            BuildState::Failed => "failed",
            BuildState::Retrying => "retrying",
            BuildState::DeadLettered => "dead_lettered",
            BuildState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// No event but an operator retry moves a build out of these.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BuildState::Succeeded
                | BuildState::Failed
                | BuildState::DeadLettered
                | BuildState::Cancelled
        )
    }
}

/// What happened to a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildEvent {
    /// A worker picked the build up and starts attempt `attempts + 1`.
    Start,
    Succeed,
    Fail {
        retryable: bool,
    },
    Cancel,
    /// An operator re-queues a failed or dead-lettered build.
    Retry,
    /// The reconcile sweep found the build stuck (queued or building too long).
    Redispatch,
}

/// A build's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub state: BuildState,
    /// Attempts started, ever.
    pub attempts: u32,
    /// `attempts` when the current allowance began (an operator retry resets it).
    pub allowance_from: u32,
}

/// The outcome of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub next: Progress,
    /// Run the build again after this many seconds (retrying).
    pub retry_after_secs: Option<u64>,
    /// Put the build on the queue now.
    pub enqueue: bool,
}

/// Why an event does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} build cannot {event}", state.as_str())]
pub struct InvalidBuildEvent {
    pub state: BuildState,
    pub event: &'static str,
}

fn event_name(e: BuildEvent) -> &'static str {
    match e {
        BuildEvent::Start => "start",
        BuildEvent::Succeed => "succeed",
        BuildEvent::Fail { .. } => "fail",
        BuildEvent::Cancel => "be cancelled",
        BuildEvent::Retry => "be retried",
        BuildEvent::Redispatch => "be redispatched",
    }
}

/// The retry delay after attempt `n` (1-based) of an allowance.
pub fn backoff_secs(n: u32) -> u64 {
    let shift = n.saturating_sub(1).min(16);
    (BACKOFF_BASE_SECS << shift).min(BACKOFF_CAP_SECS)
}

/// Applies `event` to `p`.
pub fn apply(p: Progress, event: BuildEvent) -> Result<Transition, InvalidBuildEvent> {
    use BuildState as S;
    let invalid = || InvalidBuildEvent {
        state: p.state,
        event: event_name(event),
    };
    let to = |state: BuildState| Progress { state, ..p };
    let plain = |next: Progress| Transition {
        next,
        retry_after_secs: None,
        enqueue: false,
    };
    Ok(match (p.state, event) {
        (S::Queued | S::Retrying, BuildEvent::Start) => plain(Progress {
            state: S::Building,
            attempts: p.attempts + 1,
            ..p
        }),
        (S::Building, BuildEvent::Succeed) => plain(to(S::Succeeded)),
        (S::Building, BuildEvent::Fail { retryable: false }) => plain(to(S::Failed)),
        (S::Building, BuildEvent::Fail { retryable: true }) => {
            let used = p.attempts - p.allowance_from;
            if used >= MAX_ATTEMPTS {
                plain(to(S::DeadLettered))
            } else {
                Transition {
                    next: to(S::Retrying),
                    retry_after_secs: Some(backoff_secs(used)),
                    enqueue: false,
                }
            }
        }
        (S::Queued | S::Retrying | S::Building, BuildEvent::Cancel) => plain(to(S::Cancelled)),
        (S::Failed | S::DeadLettered, BuildEvent::Retry) => Transition {
            next: Progress {
                state: S::Queued,
                allowance_from: p.attempts,
                ..p
            },
            retry_after_secs: None,
            enqueue: true,
        },
        // A build stuck in `building` lost its attempt: it counts like a
        // retryable failure, so redispatching cannot loop forever.
        (S::Building, BuildEvent::Redispatch) if p.attempts - p.allowance_from >= MAX_ATTEMPTS => {
            plain(to(S::DeadLettered))
        }
        (S::Queued | S::Building | S::Retrying, BuildEvent::Redispatch) => Transition {
            next: to(S::Queued),
            retry_after_secs: None,
            enqueue: true,
        },
        _ => return Err(invalid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh() -> Progress {
        Progress {
            state: BuildState::Queued,
            attempts: 0,
            allowance_from: 0,
        }
    }

    #[test]
    fn happy_path() {
        let t = apply(fresh(), BuildEvent::Start).unwrap();
        assert_eq!(t.next.state, BuildState::Building);
        assert_eq!(t.next.attempts, 1);
        let t = apply(t.next, BuildEvent::Succeed).unwrap();
        assert_eq!(t.next.state, BuildState::Succeeded);
        assert!(apply(t.next, BuildEvent::Start).is_err());
    }

    #[test]
    fn retries_with_backoff_then_dead_letter_then_operator_retry() {
        let mut p = fresh();
        let mut delays = Vec::new();
        loop {
            p = apply(p, BuildEvent::Start).unwrap().next;
            let t = apply(p, BuildEvent::Fail { retryable: true }).unwrap();
            p = t.next;
            match t.retry_after_secs {
                Some(d) => delays.push(d),
                None => break,
            }
        }
        assert_eq!(delays, vec![5, 10]);
        assert_eq!(p.state, BuildState::DeadLettered);
        assert_eq!(p.attempts, MAX_ATTEMPTS);
        let t = apply(p, BuildEvent::Retry).unwrap();
        assert!(t.enqueue);
        assert_eq!(t.next.state, BuildState::Queued);
        // A fresh allowance: two more retries before dead-lettering again.
        let mut p = t.next;
        let mut retries = 0;
        loop {
            p = apply(p, BuildEvent::Start).unwrap().next;
            let t = apply(p, BuildEvent::Fail { retryable: true }).unwrap();
            p = t.next;
            if t.retry_after_secs.is_none() {
                break;
            }
            retries += 1;
        }
        assert_eq!(retries, 2);
        assert_eq!(p.attempts, 2 * MAX_ATTEMPTS);
    }

    #[test]
    fn unusable_input_fails_at_once_and_can_be_retried() {
        let p = apply(fresh(), BuildEvent::Start).unwrap().next;
        let t = apply(p, BuildEvent::Fail { retryable: false }).unwrap();
        assert_eq!(t.next.state, BuildState::Failed);
        assert!(t.retry_after_secs.is_none());
        assert!(apply(t.next, BuildEvent::Retry).unwrap().enqueue);
    }

    #[test]
    fn stuck_attempts_count() {
        let mut p = fresh();
        for _ in 0..MAX_ATTEMPTS - 1 {
            p = apply(p, BuildEvent::Start).unwrap().next;
            let t = apply(p, BuildEvent::Redispatch).unwrap();
            assert!(t.enqueue && t.next.state == BuildState::Queued);
            p = t.next;
        }
        p = apply(p, BuildEvent::Start).unwrap().next;
        let t = apply(p, BuildEvent::Redispatch).unwrap();
        assert_eq!(t.next.state, BuildState::DeadLettered);
        assert!(!t.enqueue);
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff_secs(1), 5);
        assert_eq!(backoff_secs(2), 10);
        assert_eq!(backoff_secs(7), 300);
        assert_eq!(backoff_secs(u32::MAX), 300);
    }

    #[test]
    fn states_round_trip_and_errors_name_the_state() {
        for s in BuildState::ALL {
            assert_eq!(BuildState::parse(s.as_str()), Some(s));
        }
        let p = Progress {
            state: BuildState::Succeeded,
            ..fresh()
        };
        let err = apply(p, BuildEvent::Cancel).unwrap_err();
        assert_eq!(err.to_string(), "a succeeded build cannot be cancelled");
    }

    fn any_event() -> impl Strategy<Value = BuildEvent> {
        prop_oneof![
            Just(BuildEvent::Start),
            Just(BuildEvent::Succeed),
            any::<bool>().prop_map(|retryable| BuildEvent::Fail { retryable }),
            Just(BuildEvent::Cancel),
            Just(BuildEvent::Retry),
            Just(BuildEvent::Redispatch),
        ]
    }

    proptest! {
        /// Whatever happens: attempts never decrease, only `start` counts an
        /// attempt, no allowance exceeds MAX_ATTEMPTS attempts, and terminal
        /// states are left only by an operator retry.
        #[test]
        fn invariants(events in proptest::collection::vec(any_event(), 0..60)) {
            let mut p = fresh();
            for e in events {
                match apply(p, e) {
                    Ok(t) => {
                        prop_assert!(t.next.attempts >= p.attempts);
                        prop_assert_eq!(t.next.attempts > p.attempts, e == BuildEvent::Start);
                        prop_assert!(t.next.attempts - t.next.allowance_from <= MAX_ATTEMPTS);
                        if p.state.is_terminal() {
                            prop_assert_eq!(e, BuildEvent::Retry);
                        }
                        p = t.next;
                    }
                    Err(err) => prop_assert_eq!(err.state, p.state),
                }
            }
        }
    }
}
