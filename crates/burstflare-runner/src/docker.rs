//! The runner's view of Docker Engine: create/start, inspect, list, stop and
//! remove the containers labelled with this runner's instance name.
//!
//! Invariants:
//! * The runner keeps no state of its own. Docker labels are the source of
//!   truth, so a restarted runner sees exactly the containers it created before.
//! * A container that does not carry `dev.burstflare.managed=true` and this
//!   runner's `dev.burstflare.runner` label does not exist as far as the API is
//!   concerned (404), and is never stopped or removed.
//! * The Docker connection is made lazily and cached once it works, so the runner
//!   starts (and answers `503 runtime_unavailable`) while Docker is down and
//!   recovers without a restart when it comes back.
//! * API version: bollard 0.21 sends unversioned request paths, so the daemon
//!   answers in its own API version (Docker 20.10 speaks 1.41);
//!   `negotiate_version` additionally lowers the client version to the daemon's
//!   so a versioned client would not ask a daemon for an API it lacks.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use burstflare_api::runtime::{
    ContainerInfo, ContainerStatus, LABEL_GENERATION, LABEL_MANAGED, LABEL_RUNNER, LABEL_SESSION,
};
use tokio::sync::Mutex;

use crate::error::{RunnerError, RunnerResult, chain};
use crate::spec::{ContainerSpec, PUBLISH_HOST_IP, plausible_name};

/// Seconds bollard waits for any one Docker call (stop waits up to
/// [`MAX_STOP_TIMEOUT_SECS`] plus the kill).
const DOCKER_TIMEOUT_SECS: u64 = 330;
/// How long connecting (version negotiation) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the health check waits for Docker.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest grace period `stop` accepts.
pub const MAX_STOP_TIMEOUT_SECS: u32 = 300;
/// Grace period when the caller gives none.
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 10;

/// The Docker Engine this runner drives, scoped to one instance label.
pub struct Engine {
    host: String,
    instance: String,
    client: Mutex<Option<Docker>>,
}

/// The outcome of an idempotent create.
#[derive(Debug)]
pub enum Created {
    /// A new container was created and started.
    New(ContainerInfo),
    /// The container existed already (and is started now if it was not running).
    Existing(ContainerInfo),
}

impl Engine {
    pub fn new(host: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            instance: instance.into(),
            client: Mutex::new(None),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn unreachable(&self, err: &DockerError) -> RunnerError {
        RunnerError::DockerUnreachable {
            host: self.host.clone(),
            cause: chain(err),
        }
    }

    /// Maps a Docker error that has no specific meaning for the operation.
    fn failed(&self, action: impl Into<String>, err: DockerError) -> RunnerError {
        match err {
            DockerError::DockerResponseServerError { message, .. } => RunnerError::Docker {
                action: action.into(),
                message,
            },
            DockerError::JsonDataError { .. } | DockerError::JsonSerdeError { .. } => {
                RunnerError::Docker {
                    action: action.into(),
                    message: format!("unexpected answer: {}", chain(&err)),
                }
            }
            other => self.unreachable(&other),
        }
    }

    /// The connected client, connecting (and negotiating the API version) first if needed.
    async fn docker(&self) -> RunnerResult<Docker> {
        let mut slot = self.client.lock().await;
        if let Some(docker) = slot.as_ref() {
            return Ok(docker.clone());
        }
        let connected = if self.host.starts_with("unix://") {
            Docker::connect_with_unix(
                &self.host,
                DOCKER_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            )
        } else {
            Docker::connect_with_http(
                &self.host,
                DOCKER_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            )
        };
        let docker = connected.map_err(|e| self.unreachable(&e))?;
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(self.unreachable(&e)),
            Err(_) => {
                return Err(RunnerError::DockerUnreachable {
                    host: self.host.clone(),
                    cause: format!("no answer within {CONNECT_TIMEOUT:?}"),
                });
            }
        };
        let version = docker.client_version();
        tracing::info!(host = %self.host, api = %format!("{}.{}", version.major_version, version.minor_version), "connected to Docker Engine");
        *slot = Some(docker.clone());
        Ok(docker)
    }

    /// Docker Engine's version and the number of this runner's containers, or
    /// 503 when Docker does not answer within [`HEALTH_TIMEOUT`].
    pub async fn health(&self) -> RunnerResult<(String, usize)> {
        let check = async { Ok((self.version().await?, self.list(None).await?.len())) };
        tokio::time::timeout(HEALTH_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| {
                Err(RunnerError::DockerUnreachable {
                    host: self.host.clone(),
                    cause: format!("no answer within {HEALTH_TIMEOUT:?}"),
                })
            })
    }

    /// Docker Engine's version (`20.10.24+dfsg1`).
    pub async fn version(&self) -> RunnerResult<String> {
        let docker = self.docker().await?;
        let v = docker
            .version()
            .await
            .map_err(|e| self.failed("report its version", e))?;
        Ok(v.version.unwrap_or_else(|| "unknown".to_owned()))
    }

    /// Creates and starts the container of `spec`; idempotent per container name.
    pub async fn create(&self, spec: &ContainerSpec) -> RunnerResult<Created> {
        let docker = self.docker().await?;
        let image = &spec.request.image;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match docker
            .create_container(Some(options), spec.create_body(&self.instance))
            .await
        {
            Ok(_) => {}
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => return self.ensure_started(&docker, &spec.name).await,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(RunnerError::ImageNotFound(image.clone())),
            Err(DockerError::DockerResponseServerError {
                status_code: 400,
                message,
            }) => {
                return Err(RunnerError::InvalidField {
                    field: "limits".to_owned(),
                    message: format!("Docker Engine rejected the container spec: {message}"),
                });
            }
            Err(e) => return Err(self.failed(format!("create container {}", spec.name), e)),
        }
        tracing::info!(name = %spec.name, %image, "created container");
        if let Err(e) = docker.start_container(&spec.name, None).await {
            // A container whose first start fails would fail the same way on
            // every retry; remove it so a corrected request can take the name.
            let err = self.failed(format!("start container {}", spec.name), e);
            let force = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            if let Err(rm) = docker.remove_container(&spec.name, Some(force)).await {
                tracing::warn!(name = %spec.name, error = %chain(&rm), "could not remove a container that failed to start");
            }
            return Err(err);
        }
        let info = self.inspect_managed_with(&docker, &spec.name).await?;
        Ok(Created::New(info))
    }

    /// The existing container `name`: checked to be ours and started if it is not running.
    async fn ensure_started(&self, docker: &Docker, name: &str) -> RunnerResult<Created> {
        let inspect = match docker.inspect_container(name, None).await {
            Ok(i) => i,
            Err(e) => return Err(self.failed(format!("inspect container {name}"), e)),
        };
        let labels = labels_of(&inspect);
        if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
            return Err(RunnerError::NameTaken {
                name: name.to_owned(),
                owner: "it is not a BurstFlare container".to_owned(),
            });
        }
        if let Some(owner) = labels.get(LABEL_RUNNER).filter(|o| **o != self.instance) {
            return Err(RunnerError::NameTaken {
                name: name.to_owned(),
                owner: format!("it belongs to runner {owner:?}"),
            });
        }
        let running = inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            // Docker answers 304 (success for bollard) when it is running already.
            docker
                .start_container(name, None)
                .await
                .map_err(|e| self.failed(format!("start container {name}"), e))?;
            tracing::info!(%name, "started existing container");
        }
        let info = self.inspect_managed_with(docker, name).await?;
        Ok(Created::Existing(info))
    }

    async fn inspect_managed_with(
        &self,
        docker: &Docker,
        name: &str,
    ) -> RunnerResult<ContainerInfo> {
        let inspect = self.inspect_raw(docker, name).await?;
        Ok(container_info(&inspect))
    }

    /// Docker's inspect of `name`, or 404 when it is not this runner's.
    async fn inspect_raw(
        &self,
        docker: &Docker,
        name: &str,
    ) -> RunnerResult<ContainerInspectResponse> {
        let not_found = || RunnerError::ContainerNotFound(name.to_owned());
        if !plausible_name(name) {
            return Err(not_found());
        }
        let inspect = match docker.inspect_container(name, None).await {
            Ok(i) => i,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(not_found()),
            Err(e) => return Err(self.failed(format!("inspect container {name}"), e)),
        };
        // Docker also resolves ids and id prefixes; only the exact name counts.
        let exact = inspect.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(name);
        if !exact || !self.is_ours(&inspect) {
            return Err(not_found());
        }
        Ok(inspect)
    }

    fn is_ours(&self, inspect: &ContainerInspectResponse) -> bool {
        let labels = labels_of(inspect);
        labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
            && labels.get(LABEL_RUNNER) == Some(&self.instance)
    }

    /// `GET /v1/containers/{name}`.
    pub async fn get(&self, name: &str) -> RunnerResult<ContainerInfo> {
        let docker = self.docker().await?;
        self.inspect_managed_with(&docker, name).await
    }

    /// Every container of this runner (any state), optionally of one session, by name.
    pub async fn list(&self, session_id: Option<&str>) -> RunnerResult<Vec<ContainerInfo>> {
        let docker = self.docker().await?;
        let mut labels = vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_RUNNER}={}", self.instance),
        ];
        if let Some(session) = session_id {
            labels.push(format!("{LABEL_SESSION}={session}"));
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels)])),
            ..Default::default()
        };
        let summaries = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.failed("list containers", e))?;
        let names: Vec<String> = summaries
            .iter()
            .filter_map(|s| s.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
        let inspections =
            futures_util::future::join_all(names.iter().map(|n| self.inspect_raw(&docker, n)))
                .await;
        let mut items = Vec::with_capacity(names.len());
        for result in inspections {
            match result {
                Ok(inspect) => items.push(container_info(&inspect)),
                // Removed between the list and the inspect.
                Err(RunnerError::ContainerNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(items)
    }

    /// SIGTERM, then SIGKILL after `timeout_secs`; stopping a stopped container succeeds.
    pub async fn stop(&self, name: &str, timeout_secs: u32) -> RunnerResult<ContainerInfo> {
        let docker = self.docker().await?;
        self.inspect_raw(&docker, name).await?;
        let options = StopContainerOptions {
            t: Some(i32::try_from(timeout_secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        match docker.stop_container(name, Some(options)).await {
            Ok(()) => {}
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(RunnerError::ContainerNotFound(name.to_owned())),
            Err(e) => return Err(self.failed(format!("stop container {name}"), e)),
        }
        tracing::info!(%name, timeout_secs, "stopped container");
        self.inspect_managed_with(&docker, name).await
    }

    /// Force-removes the container (and its anonymous volumes).
    pub async fn remove(&self, name: &str) -> RunnerResult<()> {
        let docker = self.docker().await?;
        self.inspect_raw(&docker, name).await?;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(name, Some(options)).await {
            Ok(()) => {
                tracing::info!(%name, "removed container");
                Ok(())
            }
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(RunnerError::ContainerNotFound(name.to_owned())),
            Err(e) => Err(self.failed(format!("remove container {name}"), e)),
        }
    }

    /// Where to connect for container port `port` of `name`. The port must be
    /// published; the runner then connects to the container's bridge address
    /// directly (skipping Docker's userland port proxy, one copy fewer on the
    /// SSH path) and falls back to the 127.0.0.1 host port when the container
    /// has no bridge address.
    pub async fn upstream(&self, name: &str, port: u16) -> RunnerResult<SocketAddr> {
        let docker = self.docker().await?;
        let inspect = self.inspect_raw(&docker, name).await?;
        let info = container_info(&inspect);
        if info.status != ContainerStatus::Running {
            return Err(RunnerError::NotRunning {
                name: name.to_owned(),
                status: status_word(info.status).to_owned(),
            });
        }
        match info.ports.get(&port) {
            Some(&host_port) => Ok(match bridge_ip(&inspect) {
                Some(ip) => SocketAddr::from((ip, port)),
                None => SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)),
            }),
            None => Err(RunnerError::PortNotPublished {
                name: name.to_owned(),
                port,
                published: if info.ports.is_empty() {
                    "none".to_owned()
                } else {
                    info.ports
                        .keys()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            }),
        }
    }
}

/// The container's IPv4 address on a Docker network, if it has one.
fn bridge_ip(inspect: &ContainerInspectResponse) -> Option<Ipv4Addr> {
    let settings = inspect.network_settings.as_ref()?;
    settings
        .networks
        .as_ref()?
        .values()
        .filter_map(|n| n.ip_address.as_deref())
        .find_map(|ip| ip.parse().ok())
}

fn labels_of(inspect: &ContainerInspectResponse) -> HashMap<String, String> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

/// The lower-case word for a status, as the API spells it.
pub fn status_word(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Restarting => "restarting",
        ContainerStatus::Removing => "removing",
        ContainerStatus::Exited => "exited",
        ContainerStatus::Dead => "dead",
    }
}

fn map_status(status: Option<ContainerStateStatusEnum>) -> ContainerStatus {
    match status {
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => {
            ContainerStatus::Running
        }
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY) | None => {
            ContainerStatus::Created
        }
    }
}

/// Docker reports "never" as the zero time.
fn docker_time(t: Option<&String>) -> Option<String> {
    t.filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
        .cloned()
}

/// The API's view of a Docker inspect answer.
pub fn container_info(inspect: &ContainerInspectResponse) -> ContainerInfo {
    let labels = labels_of(inspect);
    let state = inspect.state.clone().unwrap_or_default();
    let status = map_status(state.status);
    let mut ports = BTreeMap::new();
    if let Some(map) = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    {
        for (key, bindings) in map {
            let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            let host_port = bindings.iter().flatten().find_map(|b| {
                (b.host_ip.as_deref() == Some(PUBLISH_HOST_IP))
                    .then(|| b.host_port.as_deref()?.parse::<u16>().ok())
                    .flatten()
            });
            if let Some(host_port) = host_port {
                ports.insert(port, host_port);
            }
        }
    }
    ContainerInfo {
        name: inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        docker_id: inspect.id.clone().unwrap_or_default(),
        session_id: labels.get(LABEL_SESSION).cloned().unwrap_or_default(),
        generation: labels
            .get(LABEL_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or_default(),
        image: inspect
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .or_else(|| inspect.image.clone())
            .unwrap_or_default(),
        status,
        exit_code: matches!(status, ContainerStatus::Exited | ContainerStatus::Dead)
            .then_some(state.exit_code)
            .flatten(),
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
        started_at: docker_time(state.started_at.as_ref()),
        finished_at: docker_time(state.finished_at.as_ref()),
        ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_maps_to_container_info() {
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "abc123",
            "Name": "/bf-ses_x-g2",
            "Image": "sha256:feed",
            "State": {
                "Status": "exited", "Running": false, "OOMKilled": true, "ExitCode": 137,
                "Error": "", "StartedAt": "2026-01-01T00:00:00.1Z",
                "FinishedAt": "0001-01-01T00:00:00Z"
            },
            "Config": {
                "Image": "burstflare/runtime:dev",
                "Labels": {
                    "dev.burstflare.managed": "true", "dev.burstflare.runner": "local",
                    "dev.burstflare.session": "ses_x", "dev.burstflare.generation": "2"
                }
            },
            "NetworkSettings": { "Ports": {
                "7070/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}],
                "22/tcp": null,
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "1"}]
            }}
        }))
        .unwrap();
        let info = container_info(&inspect);
        assert_eq!(info.name, "bf-ses_x-g2");
        assert_eq!(info.session_id, "ses_x");
        assert_eq!(info.generation, 2);
        assert_eq!(info.image, "burstflare/runtime:dev");
        assert_eq!(info.status, ContainerStatus::Exited);
        assert_eq!(info.exit_code, Some(137));
        assert!(info.oom_killed);
        assert_eq!(info.error, None);
        assert_eq!(info.started_at.as_deref(), Some("2026-01-01T00:00:00.1Z"));
        assert_eq!(info.finished_at, None);
        assert_eq!(info.ports, BTreeMap::from([(7070, 49153)]));
    }
}
