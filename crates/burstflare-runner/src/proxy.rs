//! The reverse proxy behind `ANY /v1/containers/{name}/ports/{port}/{*rest}`.
//!
//! Every request gets its own upstream connection to the container port — at
//! the container's bridge address when it has one, else its 127.0.0.1 host
//! port (connects are cheap, and an upgrade needs a connection of its own
//! anyway). Only published ports are reachable either way.
//!
//! * Plain HTTP: the request and response bodies stream through unbuffered, so
//!   bodies of any size pass in constant memory.
//! * Upgrades (WebSocket or any other `Upgrade:` protocol): the upgrade request
//!   goes upstream as is; when the upstream answers 101 the runner answers 101
//!   with the upstream's headers and then splices the two upgraded connections
//!   with `copy_bidirectional`. The runner never parses frames, so every
//!   subprotocol works and throughput is that of a TCP relay (this path carries
//!   SSH over WebSocket).
//!
//! Header policy: `Authorization` (the runner secret) and hop-by-hop headers are
//! dropped, except `Upgrade`/`Connection` on upgrades, and so is `Expect`
//! (hyper answers `100-continue` on the caller's hop); everything else,
//! including `x-burstflare-agent-token`, is forwarded. `Host` becomes
//! `127.0.0.1:<container port>` (what a client inside the container would
//! send) and the caller's `Host` travels as `X-Forwarded-Host`, unless the
//! caller sent one (a proxy in front keeps the browser's).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, CONNECTION, EXPECT, HOST, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{RunnerError, RunnerResult, chain};

/// Relay buffer per direction of an upgraded connection.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Headers that describe one hop, never forwarded as they are.
const HOP_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// Whether the request asks to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (and the ones `Connection` names); keeps
/// `Upgrade` and `Connection` when `keep_upgrade`.
pub fn strip_hop_headers(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !(keep_upgrade && t == "upgrade"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_HEADERS {
        if keep_upgrade && (name == "connection" || name == "upgrade") {
            continue;
        }
        headers.remove(name);
    }
}

/// The path and query to request upstream: everything after
/// `/v1/containers/{name}/ports/{port}` in the raw (still percent-encoded) URI.
pub fn upstream_path(uri: &Uri) -> String {
    // "", "v1", "containers", name, "ports", port, rest
    let rest = uri.path().splitn(7, '/').nth(6).unwrap_or_default();
    match uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    }
}

/// Forwards `req` to `upstream` (container `name`'s port `port`).
pub async fn forward(
    upstream: SocketAddr,
    name: &str,
    port: u16,
    mut req: Request,
) -> RunnerResult<Response> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let path = upstream_path(req.uri());
    let (parts, body) = req.into_parts();

    let mut headers = parts.headers;
    let caller_host = headers.remove(HOST);
    headers.remove(AUTHORIZATION);
    // The runner answers `Expect: 100-continue` on its own hop.
    headers.remove(EXPECT);
    strip_hop_headers(&mut headers, upgrade);
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // A caller that is itself a proxy (the control plane) names the
    // browser's host already; that one is kept.
    if let Some(host) = caller_host
        && !headers.contains_key(X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Ok(host) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        headers.insert(HOST, host);
    }
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = path
        .parse()
        .map_err(|e| RunnerError::Internal(format!("upstream path {path:?}: {e}")))?;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = headers;

    let stream = TcpStream::connect(upstream).await.map_err(|e| {
        RunnerError::Upstream(format!(
            "nothing accepts connections on port {port} of container {name} ({upstream}): {e}"
        ))
    })?;
    // Interactive traffic (SSH keystrokes) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            RunnerError::Upstream(format!(
                "port {port} of container {name} failed the HTTP handshake: {}",
                chain(&e)
            ))
        })?;
    let conn_name = format!("{name}:{port}");
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %conn_name, error = %chain(&e), "upstream connection ended with an error");
        }
    });

    let mut resp = sender.send_request(upstream_req).await.map_err(|e| {
        RunnerError::Upstream(format!(
            "port {port} of container {name} closed the connection without an answer (is anything listening on it inside the container?): {}",
            chain(&e)
        ))
    })?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(RunnerError::Upstream(format!(
                "port {port} of container {name} switched protocols on a request that did not ask to"
            )));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let tunnel = format!("{name}:{port}");
        tokio::spawn(async move {
            let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(%tunnel, error = %chain(&e), "upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut upstream,
                TUNNEL_BUFFER,
                TUNNEL_BUFFER,
            )
            .await
            {
                Ok((up, down)) => {
                    tracing::debug!(%tunnel, bytes_up = up, bytes_down = down, "tunnel closed");
                }
                Err(e) => tracing::debug!(%tunnel, error = %e, "tunnel ended with an error"),
            }
        });
        let (mut parts, _) = resp.into_parts();
        strip_hop_headers(&mut parts.headers, true);
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_headers(&mut parts.headers, false);
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_after_the_port_is_kept_raw() {
        let uri: Uri = "/v1/containers/bf-x-g1/ports/7070/a/b%20c/?q=1&r=%2F"
            .parse()
            .unwrap();
        assert_eq!(upstream_path(&uri), "/a/b%20c/?q=1&r=%2F");
        let uri: Uri = "/v1/containers/bf-x-g1/ports/7070".parse().unwrap();
        assert_eq!(upstream_path(&uri), "/");
        let uri: Uri = "/v1/containers/bf-x-g1/ports/7070/?x".parse().unwrap();
        assert_eq!(upstream_path(&uri), "/?x");
    }

    #[test]
    fn hop_headers_go_and_upgrade_stays_on_upgrades() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade, x-hop"),
        );
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-burstflare-agent-token", HeaderValue::from_static("t"));
        assert!(is_upgrade(&h));
        let mut plain = h.clone();
        strip_hop_headers(&mut plain, false);
        assert_eq!(
            plain.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-burstflare-agent-token"]
        );
        strip_hop_headers(&mut h, true);
        assert!(h.contains_key(UPGRADE) && h.contains_key(CONNECTION));
        assert!(!h.contains_key("x-hop") && !h.contains_key("keep-alive"));
    }
}
