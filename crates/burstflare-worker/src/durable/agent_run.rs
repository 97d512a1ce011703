//! Reading the agent's `POST /build/run` answer: NDJSON, one `{"line"}` per
//! log line as the commands produce it, then `{"exit_code", "failed_command"}`.

use futures_util::StreamExt;
use serde::Deserialize;
use worker::Response;

/// How the commands ended.
#[derive(Debug, Clone, Deserialize)]
pub struct RunEnd {
    pub exit_code: i32,
    pub failed_command: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Item {
    Line { line: String },
    End(RunEnd),
}

/// Reads the stream, calling `on_line` for every log line (awaiting it, so a
/// caller may persist progress); the end record.
pub async fn read<F, Fut>(resp: &mut Response, mut on_line: F) -> Result<RunEnd, String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut stream = resp.stream().map_err(|e| e.to_string())?;
    let mut pending: Vec<u8> = Vec::new();
    let mut end = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("the agent's answer broke off: {e}"))?;
        pending.extend_from_slice(&chunk);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=i).collect();
            let text = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Item>(&text) {
                Ok(Item::Line { line }) => on_line(line).await,
                Ok(Item::End(e)) => end = Some(e),
                Err(e) => return Err(format!("the agent sent {text:?}: {e}")),
            }
        }
    }
    end.ok_or_else(|| "the agent's answer ended without a result".to_owned())
}
