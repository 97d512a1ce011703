//! `GET /ssh`: a WebSocket carrying the raw byte stream of one TCP connection
//! to sshd (binary frames both ways; text frames are ignored).
//!
//! Efficiency: TCP reads go into 64 KiB buffers that become WebSocket frames
//! without copying; each direction waits for the other side to take its data
//! (backpressure), so memory per connection stays bounded.
//!
//! Closing: when sshd closes (TCP EOF or error), the agent sends what it read,
//! then a Close frame, and waits up to [`CLOSE_GRACE`] for the client's Close
//! reply. When the client closes (Close frame, or the connection drops), the
//! agent shuts down the TCP write side so sshd sees EOF, and drops the TCP
//! connection once the WebSocket is finished. At agent shutdown the client
//! gets Close 1001 (going away). Both halves live in one task, so
//! whichever side goes away, nothing outlives the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::activity::Channel;

/// Size of one TCP read.
pub const READ_BUF: usize = 64 * 1024;
/// Largest frame the agent sends: data that is already waiting after a read is
/// coalesced into the same frame, because every frame costs a hop through each
/// WebSocket relay between here and the client, whatever its size.
pub const MAX_FRAME: usize = 512 * 1024;
/// How long the agent waits for the client's Close after sending its own.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bridges `socket` and `tcp` until both are done, or until `shutdown`
/// turns true (the client then gets Close 1001).
pub async fn bridge(
    socket: WebSocket,
    tcp: TcpStream,
    channel: Arc<Channel>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = channel.open();
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut tcp_rx, mut tcp_tx) = tcp.into_split();

    let upstream = async {
        while let Some(msg) = ws_rx.next().await {
            match msg {
                Ok(Message::Binary(data)) => {
                    channel.input(data.len());
                    if let Err(e) = tcp_tx.write_all(&data).await {
                        tracing::debug!(error = %e, "ssh: write to sshd failed");
                        break;
                    }
                }
                // The stream ends after the close handshake; sshd sees EOF now.
                Ok(Message::Close(_)) => {
                    let _ = tcp_tx.shutdown().await;
                }
                Ok(Message::Text(_)) => tracing::debug!("ssh: ignoring a text frame"),
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "ssh: websocket read failed");
                    break;
                }
            }
        }
        let _ = tcp_tx.shutdown().await;
    };

    let downstream = async {
        let mut buf = BytesMut::with_capacity(READ_BUF);
        let (code, reason) = loop {
            buf.reserve(READ_BUF);
            let read = tokio::select! {
                read = tcp_rx.read_buf(&mut buf) => read,
                _ = shutdown.wait_for(|s| *s) => break (close_code::AWAY, "the agent is shutting down"),
            };
            match read {
                Ok(0) => break (close_code::NORMAL, "sshd closed the connection"),
                Ok(mut n) => {
                    // Take whatever else sshd has written already, without waiting.
                    while buf.len() < MAX_FRAME {
                        buf.reserve(READ_BUF);
                        match tcp_rx.try_read_buf(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(more) => n += more,
                        }
                    }
                    channel.output(n);
                    if ws_tx
                        .send(Message::Binary(buf.split().freeze()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "ssh: read from sshd failed");
                    break (close_code::NORMAL, "the connection to sshd failed");
                }
            }
        };
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    };

    tokio::pin!(upstream, downstream);
    tokio::select! {
        () = &mut upstream => {}
        () = &mut downstream => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut upstream).await;
        }
    }
}
