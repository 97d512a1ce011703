//! A local stand-in for Cloudflare Turnstile's siteverify endpoint, speaking
//! its documented protocol: `POST` with a form-encoded `secret`, `response`
//! and optional `remoteip`; answer `{"success": bool, "error-codes": [...]}`.
//!
//! It accepts a token that starts with `pass-` when the secret matches, and
//! answers `invalid-input-secret` / `invalid-input-response` otherwise. Every
//! request's form is recorded so tests can check what the Worker sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Siteverify {
    pub url: String,
    pub secret: String,
    requests: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Siteverify {
    /// Starts the server on a free 127.0.0.1 port (inside a Tokio runtime).
    pub async fn start(secret: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/turnstile/v0/siteverify", listener.local_addr()?);
        let requests: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
        let (log, expected) = (requests.clone(), secret.to_owned());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (log, expected) = (log.clone(), expected.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head, then Content-Length bytes of body.
                    let body = loop {
                        let Ok(n) = conn.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break buf[end + 4..end + 4 + len].to_vec();
                        }
                    };
                    let form: BTreeMap<String, String> =
                        url::form_urlencoded::parse(&body).into_owned().collect();
                    let verdict = if form.get("secret") != Some(&expected) {
                        serde_json::json!({"success": false, "error-codes": ["invalid-input-secret"]})
                    } else if form.get("response").is_some_and(|r| r.starts_with("pass-")) {
                        serde_json::json!({"success": true, "error-codes": [], "hostname": "localhost",
                            "challenge_ts": "2026-11-27T00:00:00Z"})
                    } else {
                        serde_json::json!({"success": false, "error-codes": ["invalid-input-response"]})
                    };
                    if let Ok(mut log) = log.lock() {
                        log.push(form);
                    }
                    let body = verdict.to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        Ok(Self {
            url,
            secret: secret.to_owned(),
            requests,
            task,
        })
    }

    /// The forms received so far.
    pub fn requests(&self) -> Vec<BTreeMap<String, String>> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Siteverify {
    fn drop(&mut self) {
        self.task.abort();
    }
}
