//! `GET /terminal`: the WebSocket protocol of browser terminals.
//!
//! * Binary frames carry raw terminal bytes both ways (input to the shell,
//!   output from it).
//! * Text frames carry JSON [`TerminalControl`] messages:
//!   * agent → client, first: `{"type":"ready","terminal_id":"…"}`; then, on a
//!     reattach, the replayed scrollback as binary frames; then live output;
//!   * client → agent: `{"type":"resize","cols":120,"rows":40}` (zero values
//!     are ignored; other messages and malformed JSON are ignored);
//!   * agent → client, last: `{"type":"exit","code":N}` when the shell exits
//!     (`N` = its exit status, 128 + signal number when killed), then a normal
//!     Close.
//! * Query: `?cols=&rows=` is the initial size (default 80×24; applied as a
//!   resize on reattach); `?terminal_id=` reattaches to a shell that is still
//!   alive. An unknown or expired id starts a new shell, whose different id
//!   arrives in `ready`.
//! * A reattach takes over: the previous client is cut off at once and gets
//!   Close code 4000 (when its connection still takes it).
//! * When the WebSocket drops, the shell stays alive for the grace period
//!   (default 10 minutes) for a reattach.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use burstflare_api::runtime::TerminalControl;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};

use crate::activity::Channel;
use crate::terminal::{Attachment, Event, Size, Terminal, Terminals};

/// Close code sent to a client whose terminal was attached elsewhere.
pub const CLOSE_REPLACED: u16 = 4000;
/// How long the agent waits for the client's Close after the shell exited.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

enum End {
    /// The shell exited and the client was told.
    Exited,
    /// Another client attached.
    Replaced,
    /// The client went away.
    Gone,
}

type Sink = SplitSink<WebSocket, Message>;

async fn send_control(tx: &mut Sink, msg: &TerminalControl) -> Result<(), axum::Error> {
    let text = serde_json::to_string(msg).map_err(axum::Error::new)?;
    tx.send(Message::Text(text.into())).await
}

async fn close(tx: &mut Sink, code: u16, reason: &'static str) {
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Serves one client of `term` until the shell exits, the client leaves or
/// another client takes over. `resize` is applied after attaching.
pub async fn serve(
    socket: WebSocket,
    terminals: Terminals,
    term: Arc<Terminal>,
    channel: Arc<Channel>,
    resize: Option<Size>,
) {
    let _open = channel.open();
    let Attachment {
        generation,
        replay,
        exit,
        mut events,
        mut replaced,
    } = term.attach();
    if let Some(size) = resize
        && let Err(e) = term.resize(size)
    {
        tracing::warn!(terminal = %term.id(), error = %e, "cannot resize the terminal");
    }
    let (mut tx, mut rx) = socket.split();

    let output = async {
        let ready = TerminalControl::Ready {
            terminal_id: term.id().to_owned(),
        };
        if send_control(&mut tx, &ready).await.is_err() {
            return End::Gone;
        }
        if !replay.is_empty() {
            channel.output(replay.len());
            if tx.send(Message::Binary(replay)).await.is_err() {
                return End::Gone;
            }
        }
        let mut exit = exit;
        while exit.is_none() {
            match events.recv().await {
                Some(Event::Output(data)) => {
                    channel.output(data.len());
                    if tx.send(Message::Binary(data)).await.is_err() {
                        return End::Gone;
                    }
                }
                Some(Event::Exit(code)) => exit = Some(code),
                None => return End::Replaced,
            }
        }
        let code = exit.unwrap_or_default();
        if send_control(&mut tx, &TerminalControl::Exit { code })
            .await
            .is_err()
        {
            return End::Gone;
        }
        close(&mut tx, close_code::NORMAL, "the shell exited").await;
        End::Exited
    };

    let input = async {
        while let Some(msg) = rx.next().await {
            match msg {
                Ok(Message::Binary(data)) => {
                    channel.input(data.len());
                    if let Err(e) = term.write(&data).await {
                        // The shell is going away; its exit event follows.
                        tracing::debug!(terminal = %term.id(), error = %e, "terminal write failed");
                    }
                }
                Ok(Message::Text(text)) => match serde_json::from_str::<TerminalControl>(&text) {
                    Ok(TerminalControl::Resize { cols, rows }) if cols > 0 && rows > 0 => {
                        if let Err(e) = term.resize(Size { cols, rows }) {
                            tracing::warn!(terminal = %term.id(), error = %e, "cannot resize the terminal");
                        }
                    }
                    Ok(other) => tracing::debug!(?other, "terminal: ignoring a control message"),
                    Err(e) => {
                        tracing::debug!(error = %e, "terminal: ignoring a malformed text frame")
                    }
                },
                Ok(Message::Close(_) | Message::Ping(_) | Message::Pong(_)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "terminal: websocket read failed");
                    break;
                }
            }
        }
    };

    // Boxed rather than pinned on the stack so that they can be dropped early,
    // which releases the socket halves they borrow.
    let mut output = Box::pin(output);
    let mut input = Box::pin(input);
    let end = tokio::select! {
        end = &mut output => end,
        () = &mut input => End::Gone,
        _ = &mut replaced => End::Replaced,
    };
    match end {
        End::Exited => {
            terminals.remove(term.id());
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut input).await;
        }
        End::Replaced => {
            // Dropping the output side also drops the event queue, which frees
            // the pump should it be waiting on this client.
            drop(output);
            drop(events);
            drop(input);
            let _ = tokio::time::timeout(
                CLOSE_GRACE,
                close(
                    &mut tx,
                    CLOSE_REPLACED,
                    "the terminal was attached elsewhere",
                ),
            )
            .await;
        }
        End::Gone => terminals.detached(&term, generation),
    }
}
