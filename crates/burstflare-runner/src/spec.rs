//! Validation of `POST /v1/containers` and the Docker container spec it becomes.
//!
//! Pure functions: [`ContainerSpec::validate`] checks a [`CreateContainer`]
//! field by field (errors name the field path, e.g. `ports[2]`) and
//! [`ContainerSpec::create_body`] renders the exact Docker create request:
//! labels that let a restarted runner rediscover its containers, CPU / memory
//! (swap equal to memory, so no swap on top) / pids limits, every port published
//! on 127.0.0.1 only with an ephemeral host port, no `--init` (the image's tini is
//! PID 1) and restart policy `no` (the control plane decides about restarts).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use burstflare_api::runtime::{
    CreateContainer, LABEL_GENERATION, LABEL_MANAGED, LABEL_RUNNER, LABEL_SESSION, ResourceLimits,
};

use crate::error::RunnerError;

/// Most ports one container may publish.
pub const MAX_PORTS: usize = 16;
/// Longest session id accepted (Docker names stay well below their limits).
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Docker refuses CPU quotas below 0.01 CPU.
pub const MIN_CPU_MILLIS: u32 = 10;
/// Docker refuses memory limits below 6 MiB.
pub const MIN_MEMORY_MIB: u32 = 6;
/// Most environment variables one container may get.
pub const MAX_ENV: usize = 256;

/// The host address every published port binds to.
pub const PUBLISH_HOST_IP: &str = "127.0.0.1";

/// A validated create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub request: CreateContainer,
}

/// The runner's name for a session generation's container: `bf-<session>-g<generation>`.
pub fn container_name(session_id: &str, generation: u64) -> String {
    format!("bf-{session_id}-g{generation}")
}

/// Whether `name` could be a container name this runner hands out; anything
/// else is answered with 404 without asking Docker.
pub fn plausible_name(name: &str) -> bool {
    name.starts_with("bf-")
        && name.len() <= MAX_SESSION_ID_LEN + 30
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The Docker port key (`7070/tcp`) of a container port.
pub fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> RunnerError {
    RunnerError::invalid_field(field, message)
}

impl ContainerSpec {
    pub fn validate(request: CreateContainer) -> Result<Self, RunnerError> {
        validate_session_id(&request.session_id)?;
        validate_image(&request.image)?;
        validate_limits(&request.limits)?;
        validate_ports(&request.ports)?;
        validate_env(&request.env)?;
        if let Some(cmd) = &request.cmd {
            if cmd.is_empty() {
                return Err(invalid(
                    "cmd",
                    "must name a program when present; omit it to run the image's command",
                ));
            }
            if let Some(i) = cmd.iter().position(|a| a.contains('\0')) {
                return Err(invalid(format!("cmd[{i}]"), "contains a NUL byte"));
            }
        }
        Ok(Self {
            name: container_name(&request.session_id, request.generation),
            request,
        })
    }

    /// The labels that identify the container as this runner's.
    pub fn labels(&self, instance: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_RUNNER.to_owned(), instance.to_owned()),
            (LABEL_SESSION.to_owned(), self.request.session_id.clone()),
            (
                LABEL_GENERATION.to_owned(),
                self.request.generation.to_string(),
            ),
        ])
    }

    /// The body of Docker's `POST /containers/create`.
    pub fn create_body(&self, instance: &str) -> ContainerCreateBody {
        let r = &self.request;
        let memory = i64::from(r.limits.memory_mib) * 1024 * 1024;
        let port_bindings = r
            .ports
            .iter()
            .map(|&port| {
                (
                    port_key(port),
                    Some(vec![PortBinding {
                        host_ip: Some(PUBLISH_HOST_IP.to_owned()),
                        // Empty: Docker picks a free ephemeral port.
                        host_port: Some(String::new()),
                    }]),
                )
            })
            .collect();
        ContainerCreateBody {
            image: Some(r.image.clone()),
            cmd: r.cmd.clone(),
            env: Some(r.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(self.labels(instance)),
            exposed_ports: Some(r.ports.iter().map(|&p| port_key(p)).collect()),
            host_config: Some(HostConfig {
                nano_cpus: Some(i64::from(r.limits.cpu_millis) * 1_000_000),
                memory: Some(memory),
                memory_swap: Some(memory),
                pids_limit: Some(i64::from(r.limits.pids)),
                port_bindings: Some(port_bindings),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                init: Some(false),
                auto_remove: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn validate_session_id(id: &str) -> Result<(), RunnerError> {
    if id.is_empty() || id.len() > MAX_SESSION_ID_LEN {
        return Err(invalid(
            "session_id",
            format!("{id:?} must be 1-{MAX_SESSION_ID_LEN} characters long"),
        ));
    }
    let first_ok = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(invalid(
            "session_id",
            format!(
                "{id:?} may contain only letters, digits, `_` and `-` and must start with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn validate_image(image: &str) -> Result<(), RunnerError> {
    if image.trim().is_empty() {
        return Err(invalid(
            "image",
            "must name an image, e.g. `burstflare/runtime:dev`",
        ));
    }
    if image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "image",
            format!("{image:?} is not an image reference"),
        ));
    }
    Ok(())
}

fn validate_limits(limits: &ResourceLimits) -> Result<(), RunnerError> {
    if limits.cpu_millis < MIN_CPU_MILLIS {
        return Err(invalid(
            "limits.cpu_millis",
            format!(
                "{} is below the minimum of {MIN_CPU_MILLIS} (0.01 CPU)",
                limits.cpu_millis
            ),
        ));
    }
    if limits.memory_mib < MIN_MEMORY_MIB {
        return Err(invalid(
            "limits.memory_mib",
            format!(
                "{} is below the minimum of {MIN_MEMORY_MIB} MiB",
                limits.memory_mib
            ),
        ));
    }
    if limits.pids == 0 {
        return Err(invalid(
            "limits.pids",
            "0 allows no process; use at least 1",
        ));
    }
    Ok(())
}

fn validate_ports(ports: &[u16]) -> Result<(), RunnerError> {
    if ports.len() > MAX_PORTS {
        return Err(invalid(
            "ports",
            format!(
                "{} ports requested; at most {MAX_PORTS} can be published",
                ports.len()
            ),
        ));
    }
    for (i, &port) in ports.iter().enumerate() {
        if port == 0 {
            return Err(invalid(format!("ports[{i}]"), "0 is not a port"));
        }
        if ports[..i].contains(&port) {
            return Err(invalid(
                format!("ports[{i}]"),
                format!("{port} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn validate_env(env: &std::collections::BTreeMap<String, String>) -> Result<(), RunnerError> {
    if env.len() > MAX_ENV {
        return Err(invalid(
            "env",
            format!("{} variables; at most {MAX_ENV} are allowed", env.len()),
        ));
    }
    for (key, value) in env {
        let key_ok = key.bytes().next().is_some_and(|b| !b.is_ascii_digit())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !key_ok {
            return Err(invalid(
                format!("env.{key}"),
                format!(
                    "{key:?} is not a variable name (letters, digits, `_`, `.`, `-`; not starting with a digit)"
                ),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(
                format!("env.{key}"),
                "the value contains a NUL byte",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request() -> CreateContainer {
        CreateContainer {
            session_id: "ses_0123456789abcdefghjkmnpqrs".into(),
            generation: 3,
            image: "burstflare/runtime:dev".into(),
            limits: ResourceLimits {
                cpu_millis: 500,
                memory_mib: 256,
                pids: 128,
            },
            env: BTreeMap::from([("BURSTFLARE_AGENT_SECRET".into(), "s3cret".into())]),
            ports: vec![7070, 22],
            cmd: None,
        }
    }

    fn field_of(r: CreateContainer) -> String {
        match ContainerSpec::validate(r) {
            Err(RunnerError::InvalidField { field, .. }) => field,
            other => panic!("expected invalid_field, got {other:?}"),
        }
    }

    #[test]
    fn body_has_labels_limits_and_loopback_ports() {
        let spec = ContainerSpec::validate(request()).unwrap();
        assert_eq!(spec.name, "bf-ses_0123456789abcdefghjkmnpqrs-g3");
        let body = spec.create_body("local");
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_RUNNER], "local");
        assert_eq!(labels[LABEL_GENERATION], "3");
        let hc = body.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(256 * 1024 * 1024));
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(hc.pids_limit, Some(128));
        assert_eq!(hc.init, Some(false));
        let bindings = hc.port_bindings.unwrap();
        assert_eq!(bindings.len(), 2);
        for b in bindings.values() {
            let b = b.as_ref().unwrap();
            assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
            assert_eq!(b[0].host_port.as_deref(), Some(""));
        }
        assert_eq!(body.env.unwrap(), vec!["BURSTFLARE_AGENT_SECRET=s3cret"]);
        assert!(body.cmd.is_none());
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = request();
        r.session_id = "ses 1".into();
        assert_eq!(field_of(r), "session_id");
        let mut r = request();
        r.session_id = "-x".into();
        assert_eq!(field_of(r), "session_id");
        let mut r = request();
        r.image = " ".into();
        assert_eq!(field_of(r), "image");
        let mut r = request();
        r.limits.cpu_millis = 0;
        assert_eq!(field_of(r), "limits.cpu_millis");
        let mut r = request();
        r.limits.memory_mib = 0;
        assert_eq!(field_of(r), "limits.memory_mib");
        let mut r = request();
        r.limits.pids = 0;
        assert_eq!(field_of(r), "limits.pids");
        let mut r = request();
        r.ports = vec![22, 0];
        assert_eq!(field_of(r), "ports[1]");
        let mut r = request();
        r.ports = vec![22, 80, 22];
        assert_eq!(field_of(r), "ports[2]");
        let mut r = request();
        r.ports = (1..=17).collect();
        assert_eq!(field_of(r), "ports");
        let mut r = request();
        r.env.insert("A=B".into(), "x".into());
        assert_eq!(field_of(r), "env.A=B");
        let mut r = request();
        r.cmd = Some(vec![]);
        assert_eq!(field_of(r), "cmd");
    }

    #[test]
    fn names_are_recognised() {
        assert!(plausible_name("bf-ses_abc-g1"));
        assert!(!plausible_name("other"));
        assert!(!plausible_name("bf-../x"));
    }
}
