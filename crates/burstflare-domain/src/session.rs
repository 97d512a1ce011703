//! The session lifecycle: states, commands, runtime observations and the pure
//! transition functions the `SessionCoordinator` Durable Object obeys.
//!
//! ```text
//! created ─start→ starting ─started→ running ─stop→ stopping ─stopped→ stopped
//!                    │                  │  └─restart→ stopping → starting …
//!                    └─start_failed→ failed ←exited─┘
//! any (but deleted) ─delete→ deleted (terminal)
//! ```
//!
//! Invariants (property-tested below over every state × command pair and over
//! random command/observation sequences):
//! * `deleted` is terminal: nothing leaves it, and only `delete` is accepted
//!   there (as [`Action::AlreadyDone`]).
//! * Asking for the state a session is already in or heading to is
//!   `AlreadyDone`, never an error, so retries are safe.
//! * A runtime (container) exists only between an accepted start and the next
//!   stop, restart or delete; no sequence leaves two runtimes alive.
//! * Observations that do not fit the current state (a late "started" after a
//!   stop) are ignored rather than applied.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::account::FieldError;

/// Where a session is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Created,
    Starting,
    Running,
    Sleeping,
    Stopping,
    Stopped,
    Failed,
    Deleted,
}

impl SessionState {
    pub const ALL: [SessionState; 8] = [
        Self::Created,
        Self::Starting,
        Self::Running,
        Self::Sleeping,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Sleeping => "sleeping",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    /// Whether a container may exist for the session in this state.
    pub fn may_have_runtime(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Running | Self::Stopping | Self::Failed
        )
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown session state {s:?}"))
    }
}

/// What the user last asked for, kept apart from what the runtime is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
    Sleeping,
    Deleted,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Sleeping => "sleeping",
            Self::Deleted => "deleted",
        }
    }
}

impl FromStr for DesiredState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Running, Self::Stopped, Self::Sleeping, Self::Deleted]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown desired state {s:?}"))
    }
}

/// A lifecycle command from a user or operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionCommand {
    Start,
    Stop,
    Restart,
    Delete,
    /// Snapshot, then remove the container; any access wakes it.
    Sleep,
}

impl SessionCommand {
    pub const ALL: [SessionCommand; 5] = [
        Self::Start,
        Self::Stop,
        Self::Restart,
        Self::Delete,
        Self::Sleep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Delete => "delete",
            Self::Sleep => "sleep",
        }
    }
}

impl fmt::Display for SessionCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the coordinator must do for an accepted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The session is already in (or heading to) the requested state.
    AlreadyDone,
    /// Move to `starting`, start a new runtime generation.
    StartRuntime,
    /// Move to `stopping` and remove the runtime, then `stopped`.
    /// `runtime` is false when no container can exist (straight to `stopped`).
    StopRuntime { runtime: bool },
    /// Remove the current runtime, then start a new generation.
    RestartRuntime,
    /// Remove any runtime and mark the session `deleted`.
    Delete { runtime: bool },
    /// Move to `stopping`, remove the runtime (after a snapshot), then `sleeping`.
    SleepRuntime,
}

impl Action {
    /// The desired state once the action is accepted (`None` for `AlreadyDone`).
    pub fn desired(self) -> Option<DesiredState> {
        match self {
            Self::AlreadyDone => None,
            Self::StartRuntime | Self::RestartRuntime => Some(DesiredState::Running),
            Self::StopRuntime { .. } => Some(DesiredState::Stopped),
            Self::Delete { .. } => Some(DesiredState::Deleted),
            Self::SleepRuntime => Some(DesiredState::Sleeping),
        }
    }
}

/// A command that the current state does not allow (HTTP 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command} a session that is {state}")]
pub struct InvalidTransition {
    pub state: SessionState,
    pub command: SessionCommand,
}

/// Decides what `command` means for a session in `state`.
pub fn decide(state: SessionState, command: SessionCommand) -> Result<Action, InvalidTransition> {
    use SessionCommand as C;
    use SessionState as S;
    let reject = Err(InvalidTransition { state, command });
    match (state, command) {
        (S::Deleted, C::Delete) => Ok(Action::AlreadyDone),
        (S::Deleted, _) => reject,
        (_, C::Delete) => Ok(Action::Delete {
            runtime: state.may_have_runtime(),
        }),

        (S::Starting | S::Running, C::Start) => Ok(Action::AlreadyDone),
        (S::Created | S::Sleeping | S::Stopped | S::Failed, C::Start) => Ok(Action::StartRuntime),
        (S::Stopping, C::Start) => reject,

        (S::Created | S::Stopping | S::Stopped, C::Stop) => Ok(Action::AlreadyDone),
        (S::Starting | S::Running | S::Failed, C::Stop) => {
            Ok(Action::StopRuntime { runtime: true })
        }
        (S::Sleeping, C::Stop) => Ok(Action::StopRuntime { runtime: false }),

        (S::Running | S::Failed, C::Restart) => Ok(Action::RestartRuntime),
        (S::Created | S::Sleeping | S::Stopped, C::Restart) => Ok(Action::StartRuntime),
        (S::Starting | S::Stopping, C::Restart) => reject,

        // Only a running session has something to put to sleep.
        (S::Running, C::Sleep) => Ok(Action::SleepRuntime),
        (S::Sleeping, C::Sleep) => Ok(Action::AlreadyDone),
        (S::Created | S::Starting | S::Stopping | S::Stopped | S::Failed, C::Sleep) => reject,
    }
}

/// The state an accepted action moves the session to first.
pub fn entered_state(action: Action, current: SessionState) -> SessionState {
    match action {
        Action::AlreadyDone => current,
        Action::StartRuntime => SessionState::Starting,
        Action::StopRuntime { runtime: true } | Action::RestartRuntime | Action::SleepRuntime => {
            SessionState::Stopping
        }
        Action::StopRuntime { runtime: false } => SessionState::Stopped,
        Action::Delete { .. } => SessionState::Deleted,
    }
}

/// What the coordinator learned from the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The container is up and the agent answered its health check.
    Started,
    /// Starting the container failed.
    StartFailed { reason: String },
    /// The runtime was removed after a stop.
    Stopped,
    /// The runtime was removed after a sleep (its snapshot is stored).
    Slept,
    /// A running container died on its own.
    Exited { reason: String },
}

/// Applies an observation; `None` means it does not fit the state and is ignored.
pub fn observe(state: SessionState, observation: &Observation) -> Option<SessionState> {
    use Observation as O;
    use SessionState as S;
    match (state, observation) {
        (S::Starting, O::Started) => Some(S::Running),
        (S::Starting, O::StartFailed { .. }) => Some(S::Failed),
        (S::Stopping, O::Stopped) => Some(S::Stopped),
        (S::Stopping, O::Slept) => Some(S::Sleeping),
        (S::Running, O::Exited { .. }) => Some(S::Failed),
        _ => None,
    }
}

/// A session name: 1–40 of `[a-z0-9-]`, starting with a letter, not ending in `-`.
/// Unique per workspace among sessions that are not deleted; used in
/// `ssh bf-<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionName(String);

impl SessionName {
    pub const MAX_LEN: usize = 40;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw.as_bytes()[0].is_ascii_lowercase()
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.ends_with('-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "name",
                format!(
                    "{raw:?} must be 1-40 of a-z, 0-9 and dashes, starting with a letter and not ending in a dash"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Compute sizes a session can run with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceType {
    #[default]
    Small,
    Medium,
    Large,
}

/// Limits of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub pids: u32,
}

impl InstanceType {
    pub const ALL: [InstanceType; 3] = [Self::Small, Self::Medium, Self::Large];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }

    pub fn limits(self) -> InstanceLimits {
        match self {
            Self::Small => InstanceLimits {
                cpu_millis: 1000,
                memory_mib: 1024,
                pids: 512,
            },
            Self::Medium => InstanceLimits {
                cpu_millis: 2000,
                memory_mib: 4096,
                pids: 1024,
            },
            Self::Large => InstanceLimits {
                cpu_millis: 4000,
                memory_mib: 8192,
                pids: 2048,
            },
        }
    }
}

impl FromStr for InstanceType {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "instance_type",
                    format!("{s:?} is not an instance type (small, medium, large)"),
                )
            })
    }
}

/// Environment variable names a user may set: `[A-Za-z_][A-Za-z0-9_]*`, at most
/// 128 bytes, not in the reserved `BURSTFLARE_` namespace.
pub fn validate_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("BURSTFLARE_")
}

/// Roots a persisted path must live under.
pub const PERSIST_ROOTS: [&str; 2] = ["/home/dev", "/workspace"];

/// Validates persisted paths: absolute, normalised (no `.`/`..`/empty
/// segments, no trailing slash), under [`PERSIST_ROOTS`], at most 16, no
/// duplicates. Paths nested in another listed path are allowed (redundant but harmless).
pub fn validate_persisted_paths(paths: &[String]) -> Result<Vec<String>, FieldError> {
    let bad = |i: usize, p: &str, why: &str| {
        FieldError::new("persisted_paths", format!("[{i}] {p:?} {why}"))
    };
    if paths.len() > 16 {
        return Err(FieldError::new("persisted_paths", "at most 16 paths"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(bad(i, p, "must be absolute"));
        }
        if p.len() > 512 {
            return Err(bad(i, p, "is longer than 512 bytes"));
        }
        if p.len() > 1 && p.ends_with('/') {
            return Err(bad(i, p, "must not end with `/`"));
        }
        if p[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad(
                i,
                p,
                "must be normalised (no empty, `.` or `..` segments)",
            ));
        }
        if p.chars().any(char::is_control) {
            return Err(bad(i, p, "contains control characters"));
        }
        let under_root = PERSIST_ROOTS
            .iter()
            .any(|root| p == root || p.starts_with(&format!("{root}/")));
        if !under_root {
            return Err(bad(i, p, "must be under /home/dev or /workspace"));
        }
        if out.contains(p) {
            return Err(bad(i, p, "is listed twice"));
        }
        out.push(p.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settle(state: SessionState, action: Action) -> SessionState {
        match entered_state(action, state) {
            SessionState::Starting => SessionState::Running,
            SessionState::Stopping if action == Action::RestartRuntime => SessionState::Running,
            SessionState::Stopping if action == Action::SleepRuntime => SessionState::Sleeping,
            SessionState::Stopping => SessionState::Stopped,
            other => other,
        }
    }

    #[test]
    fn every_state_command_pair_has_a_reasoned_answer() {
        for state in SessionState::ALL {
            for command in SessionCommand::ALL {
                match decide(state, command) {
                    Ok(action) => {
                        // Accepted commands land where the command asked for.
                        let settled = settle(state, action);
                        let expected = match command {
                            SessionCommand::Start | SessionCommand::Restart => {
                                SessionState::Running
                            }
                            SessionCommand::Stop => SessionState::Stopped,
                            SessionCommand::Delete => SessionState::Deleted,
                            SessionCommand::Sleep => SessionState::Sleeping,
                        };
                        if action == Action::AlreadyDone {
                            // Already there, or already heading there.
                            assert!(
                                state == expected
                                    || matches!(
                                        (state, command),
                                        (SessionState::Starting, SessionCommand::Start)
                                            | (
                                                SessionState::Stopping | SessionState::Created,
                                                SessionCommand::Stop
                                            )
                                    ),
                                "{state} + {command}"
                            );
                        } else {
                            assert_eq!(settled, expected, "{state} + {command}");
                        }
                        // Repeating the command once settled is AlreadyDone (except restart).
                        if command != SessionCommand::Restart {
                            assert_eq!(
                                decide(settled, command),
                                Ok(Action::AlreadyDone),
                                "{state} + {command} twice"
                            );
                        }
                        // Runtime removal is requested exactly when a container may exist.
                        if let Action::Delete { runtime } | Action::StopRuntime { runtime } = action
                        {
                            assert_eq!(runtime, state.may_have_runtime(), "{state} + {command}");
                        }
                    }
                    Err(err) => {
                        assert_eq!(err, InvalidTransition { state, command });
                        // Sleep needs a running session; the rest is refused
                        // only while deleted or in transit.
                        assert!(
                            command == SessionCommand::Sleep && state != SessionState::Running
                                || matches!(
                                    state,
                                    SessionState::Deleted
                                        | SessionState::Starting
                                        | SessionState::Stopping
                                ),
                            "{state} + {command} should be accepted"
                        );
                        assert!(err.to_string().contains(state.as_str()));
                    }
                }
            }
        }
    }

    #[test]
    fn deleted_is_terminal() {
        for command in SessionCommand::ALL {
            let r = decide(SessionState::Deleted, command);
            if command == SessionCommand::Delete {
                assert_eq!(r, Ok(Action::AlreadyDone));
            } else {
                assert!(r.is_err());
            }
        }
    }

    #[test]
    fn start_while_starting_is_already_done() {
        assert_eq!(
            decide(SessionState::Starting, SessionCommand::Start),
            Ok(Action::AlreadyDone)
        );
    }

    /// One step of a simulated coordinator: a command (performed to completion,
    /// possibly failing at start) or a spontaneous container death.
    #[derive(Debug, Clone)]
    enum Step {
        Command(SessionCommand, bool),
        Die,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (prop::sample::select(SessionCommand::ALL.to_vec()), any::<bool>())
                .prop_map(|(c, fail)| Step::Command(c, fail)),
            1 => Just(Step::Die),
        ]
    }

    proptest! {
        /// Drives the state machine the way the coordinator does, against a
        /// model runtime that only loses containers when an action says so,
        /// and checks that no sequence leaks a container or keeps two.
        #[test]
        fn runtimes_never_leak(steps in prop::collection::vec(step(), 0..60)) {
            let mut state = SessionState::Created;
            // Containers of the session: `true` while alive.
            let mut containers: Vec<bool> = Vec::new();
            for s in steps {
                match s {
                    Step::Die => {
                        if let Some(alive) = containers.last_mut() {
                            *alive = false;
                        }
                        if let Some(next) = observe(state, &Observation::Exited { reason: "killed".into() }) {
                            state = next;
                        }
                    }
                    Step::Command(command, fail) => {
                        let Ok(action) = decide(state, command) else {
                            prop_assert!(command == SessionCommand::Sleep || matches!(state, SessionState::Deleted | SessionState::Starting | SessionState::Stopping));
                            continue;
                        };
                        let entered = entered_state(action, state);
                        match action {
                            Action::AlreadyDone => {}
                            Action::StartRuntime | Action::RestartRuntime => {
                                // Starting a generation removes the previous ones first.
                                containers.clear();
                                if action == Action::RestartRuntime {
                                    prop_assert_eq!(entered, SessionState::Stopping);
                                    state = observe(entered, &Observation::Stopped).unwrap_or(entered);
                                    prop_assert_eq!(state, SessionState::Stopped);
                                }
                                state = SessionState::Starting;
                                containers.push(!fail);
                                let obs = if fail {
                                    Observation::StartFailed { reason: "docker down".into() }
                                } else {
                                    Observation::Started
                                };
                                state = observe(state, &obs).unwrap_or(state);
                            }
                            Action::StopRuntime { runtime } | Action::Delete { runtime } => {
                                if runtime {
                                    containers.clear();
                                } else {
                                    prop_assert!(containers.is_empty(), "{} skips removing a container", command);
                                }
                                state = observe(entered, &Observation::Stopped).unwrap_or(entered);
                            }
                            Action::SleepRuntime => {
                                prop_assert_eq!(entered, SessionState::Stopping);
                                containers.clear();
                                state = observe(entered, &Observation::Slept).unwrap_or(entered);
                                prop_assert_eq!(state, SessionState::Sleeping);
                            }
                        }
                    }
                }
                prop_assert!(containers.len() <= 1);
                if !containers.is_empty() {
                    prop_assert!(state.may_have_runtime(), "container kept in {}", state);
                }
                if containers.first() == Some(&true) {
                    prop_assert_eq!(state, SessionState::Running);
                }
                prop_assert!(!matches!(state, SessionState::Starting | SessionState::Stopping), "unsettled {}", state);
            }
        }

        #[test]
        fn observations_out_of_place_are_ignored(
            state in prop::sample::select(SessionState::ALL.to_vec()),
            which in 0..5usize,
        ) {
            let obs = [
                Observation::Started,
                Observation::StartFailed { reason: "x".into() },
                Observation::Stopped,
                Observation::Slept,
                Observation::Exited { reason: "x".into() },
            ][which].clone();
            if let Some(next) = observe(state, &obs) {
                prop_assert!(matches!(state, SessionState::Starting | SessionState::Stopping | SessionState::Running));
                prop_assert!(next != SessionState::Deleted);
            } else if state == SessionState::Deleted {
                prop_assert!(observe(state, &obs).is_none());
            }
        }

        #[test]
        fn session_names(raw in "[a-z][a-z0-9-]{0,38}[a-z0-9]") {
            prop_assert!(SessionName::parse(&raw).is_ok());
        }
    }

    #[test]
    fn persisted_paths() {
        let ok = |v: &[&str]| {
            validate_persisted_paths(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(ok(&["/home/dev", "/workspace/src"]).is_ok());
        for bad in [
            "home/dev",
            "/home/dev/",
            "/home/dev/../etc",
            "/etc",
            "/home/devx",
            "/home//dev",
        ] {
            let err = ok(&[bad]).unwrap_err();
            assert_eq!(err.field, "persisted_paths", "{bad}");
            assert!(err.message.contains(bad), "{bad}: {}", err.message);
        }
        assert!(ok(&["/home/dev", "/home/dev"]).is_err());
    }

    #[test]
    fn bad_names_and_env() {
        for bad in ["", "1abc", "Abc", "a_b", "abc-", &"a".repeat(41)] {
            let err = SessionName::parse(bad).unwrap_err();
            assert_eq!(err.field, "name");
        }
        assert!(validate_env_name("EDITOR"));
        assert!(!validate_env_name("BURSTFLARE_AGENT_SECRET"));
        assert!(!validate_env_name("1X"));
        assert!(!validate_env_name("A-B"));
        assert_eq!("small".parse::<InstanceType>(), Ok(InstanceType::Small));
        assert!("huge".parse::<InstanceType>().is_err());
    }
}
