//! Browser-facing access to sessions over the real stack: the terminal
//! WebSocket (a real login shell through the agent's PTY; reattach after a
//! dropped connection keeps the shell; opening it wakes a sleeping session)
//! and previews (HTTP and WebSockets to a declared port of a real server in
//! the container, who may see them, what the app receives, waking, activity).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use burstflare_api::ErrorCode;
use burstflare_api::identity::{
    AcceptInviteRequest, CreateInviteRequest, CreateWorkspaceRequest, SessionVisibility,
    UpdateSettingsRequest,
};
use burstflare_api::sessions::{CreateSessionRequest, Session};
use burstflare_api::templates::{CreateTemplateRequest, CreateVersionRequest};
use burstflare_domain::{Role, SessionCommand, SessionState, WorkspaceId};
use burstflare_e2e::Stack;
use burstflare_e2e::stack::unique;
use burstflare_e2e::user::User;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::builds::build_and_promote;
use crate::support::{eventually, expect_envelope};

/// A Python server on port 3000: JSON echo of what it received, and a
/// WebSocket echo at any path. Port 3001 is declared but nothing listens.
const PREVIEW_TEMPLATE: &str = r#"
base = "runtime"
packages = ["python3"]
sleep_ttl = "1h"
setup = ['''mkdir -p /opt/preview && cat > /opt/preview/server.py <<'PY'
import base64, hashlib, http.server, json, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def info(self, body=""):
        return {
            "method": self.command,
            "path": self.path,
            "cookie": self.headers.get("cookie"),
            "authorization": self.headers.get("authorization"),
            "prefix": self.headers.get("x-forwarded-prefix"),
            "host": self.headers.get("x-forwarded-host"),
            "internal": [k for k in self.headers.keys() if k.lower().startswith("x-burstflare")],
            "body": body,
        }

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("set-cookie", "app=1; Path=/")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("upgrade", "").lower() == "websocket":
            return self.websocket()
        self.reply(self.info())

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        self.reply(self.info(self.rfile.read(n).decode()))

    def websocket(self):
        key = self.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            op, n = head[0] & 15, head[1] & 127
            if n == 126:
                n = int.from_bytes(self.rfile.read(2), "big")
            elif n == 127:
                n = int.from_bytes(self.rfile.read(8), "big")
            mask = self.rfile.read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if op == 8:
                return
            if op == 1:
                out = b"echo:" + data
                self.wfile.write(bytes([0x81, len(out)]) + out)
                self.wfile.flush()

http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
PY''']
start = ["(exec python3 /opt/preview/server.py 3000 > /tmp/preview.log 2>&1) &"]

[[ports]]
port = 3000
name = "web"

[[ports]]
port = 3001
"#;

/// A WebSocket request to `url` (http → ws) with `token` as bearer.
fn ws_request(
    url: &str,
    token: &str,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let mut req = url.replace("http://", "ws://").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads terminal frames until the text seen contains `want`; returns the
/// `ready` terminal id if one came by, and everything read.
async fn read_until(ws: &mut Ws, want: &str) -> Result<(Option<String>, String)> {
    let mut seen = String::new();
    let mut id = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(want) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("waiting for {want:?}; the terminal showed:\n{seen}"))?
            .context("the terminal closed")??;
        match msg {
            Message::Binary(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t)?;
                if v["type"] == "ready" {
                    id = v["terminal_id"].as_str().map(str::to_owned);
                }
                if v["type"] == "exit" {
                    bail!("the shell exited: {t}");
                }
            }
            _ => {}
        }
    }
    Ok((id, seen))
}

async fn type_line(ws: &mut Ws, line: &str) -> Result<()> {
    ws.send(Message::Binary(format!("{line}\r").into_bytes().into()))
        .await?;
    Ok(())
}

async fn wait_state(u: &User, id: &str, state: SessionState) -> Result<Session> {
    eventually(
        Duration::from_secs(120),
        &format!("session in {state}"),
        || async {
            let s = u.client.get_session(id).await?;
            Ok((s.state == state).then_some(s))
        },
    )
    .await
}

pub async fn terminal_reattaches_and_wakes_the_session(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "term").await?;
    let s = u.running_session("term").await?;
    let token = u.client.token().unwrap_or_default().to_owned();
    let url = stack.api(&format!("/sessions/{}/terminal", s.id));

    // A login shell as the session user, sized as asked.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_request(&format!("{url}?cols=100&rows=30"), &token)?)
            .await?;
    let (id, _) = read_until(&mut ws, "$ ").await?;
    let id = id.context("no ready message")?;
    type_line(
        &mut ws,
        "KEPT=still-here; echo \"me=$(id -un) size=$(stty size)\"",
    )
    .await?;
    read_until(&mut ws, "me=dev size=30 100").await?;
    // Resize is a control message.
    ws.send(Message::Text(
        r#"{"type":"resize","cols":120,"rows":40}"#.into(),
    ))
    .await?;
    type_line(&mut ws, "echo \"now=$(stty size)\"").await?;
    read_until(&mut ws, "now=40 120").await?;

    // The connection drops; reattaching with the terminal id finds the same shell.
    drop(ws);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_request(&format!("{url}?terminal_id={id}"), &token)?)
            .await?;
    type_line(&mut ws, "echo \"kept=$KEPT\"").await?;
    read_until(&mut ws, "kept=still-here").await?;
    ws.close(None).await.ok();

    // Without the upgrade: 426; another user: 404.
    let http = stack.http();
    let resp = http.get(&url).bearer_auth(&token).send().await?;
    expect_envelope(resp, 426, ErrorCode::UpgradeRequired).await?;
    let other = User::new(stack, "term-other").await?;
    let other_token = other.client.token().unwrap_or_default().to_owned();
    match tokio_tungstenite::connect_async(ws_request(&url, &other_token)?).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            ensure!(resp.status() == 404, "{:?}", resp.status());
        }
        other => bail!("expected 404, got {:?}", other.map(|_| ())),
    }

    // Opening the terminal of a sleeping session wakes it.
    u.client
        .session_command(s.id.as_str(), SessionCommand::Sleep)
        .await?;
    wait_state(&u, s.id.as_str(), SessionState::Sleeping).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&url, &token)?).await?;
    type_line(&mut ws, "echo woke-$((6*7))").await?;
    read_until(&mut ws, "woke-42").await?;
    ensure!(u.client.get_session(s.id.as_str()).await?.state == SessionState::Running);
    let activity = u.client.session_activity(s.id.as_str()).await?;
    ensure!(
        activity.iter().any(|a| a.kind == "wake"),
        "no wake in {activity:?}"
    );
    ws.close(None).await.ok();
    u.client
        .session_command(s.id.as_str(), SessionCommand::Delete)
        .await?;
    Ok(())
}

/// A running session of a fresh preview template in workspace `ws`.
async fn preview_session(u: &User, ws: &WorkspaceId) -> Result<Session> {
    let t = u
        .client
        .create_template(&CreateTemplateRequest {
            name: format!("preview-{}", unique()),
            workspace_id: Some(ws.clone()),
            description: None,
        })
        .await?;
    let v = u
        .client
        .create_version(
            t.id.as_str(),
            &CreateVersionRequest {
                manifest: Some(PREVIEW_TEMPLATE.into()),
                devcontainer: None,
            },
        )
        .await?;
    build_and_promote(&u.client, t.id.as_str(), v.id.as_str()).await?;
    let s = u
        .client
        .create_session(&CreateSessionRequest {
            name: format!("pv-{}", unique().replace('-', "")),
            workspace_id: Some(ws.clone()),
            template: Some(t.id.to_string()),
            start: true,
            ..Default::default()
        })
        .await?;
    ensure!(s.state == SessionState::Running, "{s:?}");
    let release = s.spec.release.as_ref().context("no release")?;
    ensure!(
        release.ports == vec![3000, 3001] && !release.editor,
        "{release:?}"
    );
    Ok(s)
}

pub async fn previews_proxy_http_and_websockets_to_declared_ports(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "preview").await?;
    let member = User::new(stack, "preview-member").await?;
    // A team workspace with a member (personal workspaces have none).
    let team = u
        .client
        .create_workspace(&CreateWorkspaceRequest {
            name: format!("Preview team {}", unique()),
        })
        .await?;
    let invite = u
        .client
        .invite(
            team.id.as_str(),
            &CreateInviteRequest {
                email: member.email.clone(),
                role: Role::Member,
            },
        )
        .await?;
    member
        .client
        .accept_invite(&AcceptInviteRequest { code: invite.code })
        .await?;
    let s = preview_session(&u, &team.id).await?;
    let id = s.id.as_str();
    let token = u.client.token().unwrap_or_default().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let prefix = format!("/sessions/{id}/preview/3000");
    let url = |rest: &str| stack.api(&format!("{prefix}{rest}"));

    // The server starts in the background: wait for it to answer.
    let info: serde_json::Value =
        eventually(Duration::from_secs(60), "the preview server", || async {
            let resp = http
                .get(url("/hello/there?x=1"))
                .bearer_auth(&token)
                .header("cookie", "app_state=abc; bf_session=stolen; bf_csrf=stolen")
                .send()
                .await?;
            Ok(if resp.status() == 200 {
                Some(resp.json().await?)
            } else {
                None
            })
        })
        .await?;
    // The app sees the path below the prefix, its own cookies only, no
    // platform credentials or internal headers, and the prefix.
    ensure!(info["path"] == "/hello/there?x=1", "{info}");
    ensure!(info["cookie"] == "app_state=abc", "{info}");
    ensure!(info["authorization"].is_null(), "{info}");
    ensure!(info["internal"] == serde_json::json!([]), "{info}");
    ensure!(
        info["prefix"] == format!("/api/v1{prefix}").as_str(),
        "{info}"
    );
    let host = stack.url.trim_start_matches("http://");
    ensure!(info["host"] == host, "{info}");
    // Bodies go through, and the app's answer comes back as it is.
    let resp = http
        .post(url("/form"))
        .bearer_auth(&token)
        .body("a=1&b=2")
        .send()
        .await?;
    ensure!(resp.status() == 200);
    ensure!(
        resp.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            == Some("app=1; Path=/")
    );
    let info: serde_json::Value = resp.json().await?;
    ensure!(
        info["method"] == "POST" && info["body"] == "a=1&b=2",
        "{info}"
    );
    // The bare prefix redirects to the prefix with a slash.
    let resp = http.get(url("")).bearer_auth(&token).send().await?;
    ensure!(resp.status() == 308, "{:?}", resp.status());
    let location = resp.headers()["location"].to_str()?.to_owned();
    ensure!(
        location.ends_with(&format!("/api/v1{prefix}/")),
        "{location}"
    );

    // A WebSocket through the preview.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_request(&url("/socket"), &token)?).await?;
    ws.send(Message::Text("ping-preview".into())).await?;
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await?
        .context("closed")??;
    ensure!(
        echoed == Message::Text("echo:ping-preview".into()),
        "{echoed:?}"
    );
    ws.close(None).await.ok();

    // Ports: undeclared 404, not a number 400, declared but silent 502,
    // the editor of a session without one 404.
    let resp = http
        .get(stack.api(&format!("/sessions/{id}/preview/4000/")))
        .bearer_auth(&token)
        .send()
        .await?;
    let e = expect_envelope(resp, 404, ErrorCode::PortNotDeclared).await?;
    ensure!(e.message.contains("declared: 3000, 3001"), "{}", e.message);
    let resp = http
        .get(stack.api(&format!("/sessions/{id}/preview/http/")))
        .bearer_auth(&token)
        .send()
        .await?;
    expect_envelope(resp, 400, ErrorCode::InvalidField).await?;
    let resp = http
        .get(stack.api(&format!("/sessions/{id}/preview/3001/")))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(resp.status() == 502, "{:?}", resp.status());
    let resp = http
        .get(stack.api(&format!("/sessions/{id}/editor/")))
        .bearer_auth(&token)
        .send()
        .await?;
    let e = expect_envelope(resp, 404, ErrorCode::PortNotDeclared).await?;
    ensure!(e.message.contains("editor"), "{}", e.message);

    // Without credentials: 401 for API calls, the sign-in page for a browser.
    let resp = http.get(url("/")).send().await?;
    expect_envelope(resp, 401, ErrorCode::Unauthenticated).await?;
    let resp = http
        .get(url("/page?q=1"))
        .header("accept", "text/html")
        .send()
        .await?;
    ensure!(resp.status() == 302);
    let location = resp.headers()["location"].to_str()?.to_owned();
    ensure!(
        location.ends_with(&format!(
            "/signin?next=/api/v1/sessions/{id}/preview/3000/page%3Fq%3D1"
        )),
        "{location}"
    );

    // A member of the workspace: 404 while sessions are private to their
    // owners, allowed once the workspace shares them; a stranger: 404.
    let member_token = member.client.token().unwrap_or_default().to_owned();
    let resp = http.get(url("/")).bearer_auth(&member_token).send().await?;
    expect_envelope(resp, 404, ErrorCode::SessionNotFound).await?;
    match tokio_tungstenite::connect_async(ws_request(&url("/socket"), &member_token)?).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            ensure!(resp.status() == 404, "{:?}", resp.status());
        }
        other => bail!("expected 404, got {:?}", other.map(|_| ())),
    }
    u.client
        .update_workspace_settings(
            team.id.as_str(),
            &UpdateSettingsRequest {
                session_visibility: Some(SessionVisibility::Workspace),
                ..Default::default()
            },
        )
        .await?;
    let resp = http
        .get(url("/shared"))
        .bearer_auth(&member_token)
        .send()
        .await?;
    ensure!(resp.status() == 200, "{:?}", resp.status());
    // Their browser runs the owner's app sandboxed (an opaque origin); the
    // owner's own runs as it is.
    let csp = |r: &reqwest::Response| {
        r.headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ensure!(
        csp(&resp).is_some_and(|c| c.starts_with("sandbox ") && !c.contains("allow-same-origin")),
        "{:?}",
        csp(&resp)
    );
    let resp = http.get(url("/mine")).bearer_auth(&token).send().await?;
    ensure!(
        resp.status() == 200 && csp(&resp).is_none(),
        "{:?}",
        csp(&resp)
    );
    let stranger = User::new(stack, "preview-stranger").await?;
    let stranger_token = stranger.client.token().unwrap_or_default().to_owned();
    let resp = http
        .get(url("/"))
        .bearer_auth(&stranger_token)
        .send()
        .await?;
    expect_envelope(resp, 404, ErrorCode::SessionNotFound).await?;

    // Preview requests are activity: the activity log says so.
    let activity = u.client.session_activity(id).await?;
    ensure!(
        activity
            .iter()
            .any(|a| a.kind == "preview" && a.detail.contains("3000")),
        "{activity:?}"
    );

    // A preview request wakes a sleeping session and gets the app's answer.
    u.client.session_command(id, SessionCommand::Sleep).await?;
    wait_state(&u, id, SessionState::Sleeping).await?;
    let info: serde_json::Value =
        eventually(Duration::from_secs(120), "the woken preview", || async {
            let resp = http
                .get(url("/after-wake"))
                .bearer_auth(&token)
                .send()
                .await?;
            Ok(if resp.status() == 200 {
                Some(resp.json().await?)
            } else {
                None
            })
        })
        .await?;
    ensure!(info["path"] == "/after-wake", "{info}");
    ensure!(u.client.get_session(id).await?.state == SessionState::Running);
    u.client.session_command(id, SessionCommand::Delete).await?;
    Ok(())
}
