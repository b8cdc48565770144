//! The plugin WebSocket endpoint `/ws` (spec §3): auth before upgrade, `hello` first,
//! binary msgpack frames in both directions, pings every 10 s and pong-based liveness
//! (a connection that sends no pong for 20 s is dropped), a 1 MiB frame limit, and a
//! bounded outbound queue.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use rtcd_proto::ws::{ClientMessage, MAX_FRAME_LEN};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

use super::hub::{ConnId, Hub};

/// Timings and limits of plugin connections. Defaults are upstream's.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    pub ping_interval: Duration,
    /// Read deadline, extended only when a pong arrives (upstream: 2 × ping interval).
    pub pong_wait: Duration,
    pub write_timeout: Duration,
    pub out_queue: usize,
    pub max_frame: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            ping_interval: Duration::from_secs(10),
            pong_wait: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            out_queue: 5000,
            max_frame: MAX_FRAME_LEN,
        }
    }
}

/// A fresh 26-char connection ID.
pub fn new_conn_id() -> ConnId {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    Arc::from(rtcd_proto::id::new_id(b).as_str())
}

/// Serves one upgraded plugin connection until it closes, fails liveness, or shutdown.
pub async fn serve_conn(
    socket: WebSocket,
    hub: Arc<Hub>,
    client_id: String,
    settings: WsSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn_id = new_conn_id();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(settings.out_queue);
    let (mut sink, mut stream) = socket.split();

    let mut hello = Vec::new();
    ClientMessage::Hello {
        client_id: client_id.clone(),
        conn_id: conn_id.to_string(),
    }
    .encode(&mut hello);
    if !matches!(
        timeout(
            settings.write_timeout,
            sink.send(Message::Binary(hello.into()))
        )
        .await,
        Ok(Ok(()))
    ) {
        tracing::warn!(clientID = %client_id, connID = %conn_id, "failed to send hello");
        return;
    }
    hub.add_conn(conn_id.clone(), &client_id, out_tx);
    tracing::info!(clientID = %client_id, connID = %conn_id, "plugin connected");

    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    let mut deadline = Instant::now() + settings.pong_wait;
    let reason: &str = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                // Frames queued before shutdown (the drain's `close` messages) go out first.
                while let Ok(frame) = out_rx.try_recv() {
                    let sent = timeout(settings.write_timeout, sink.send(Message::Binary(frame.into())));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        break;
                    }
                }
                let _ = timeout(settings.write_timeout, sink.send(Message::Close(None))).await;
                break "shutdown";
            }
            _ = tokio::time::sleep_until(deadline) => break "no pong within deadline",
            frame = out_rx.recv() => {
                let Some(frame) = frame else { break "outbound queue closed" };
                match timeout(settings.write_timeout, sink.send(Message::Binary(frame.into()))).await {
                    Ok(Ok(())) => {}
                    _ => break "write failed",
                }
            }
            _ = ping.tick() => {
                match timeout(settings.write_timeout, sink.send(Message::Ping(Vec::new().into()))).await {
                    Ok(Ok(())) => {}
                    _ => break "ping write failed",
                }
            }
            msg = stream.next() => {
                match msg {
                    None => break "closed by peer",
                    Some(Err(e)) => {
                        let text = e.to_string();
                        let kind = if text.contains("too long") || text.contains("Space limit") { "oversized" } else { "read" };
                        hub.metrics().ws_errors.with_label_values(&[&client_id, kind]).inc();
                        tracing::warn!(clientID = %client_id, connID = %conn_id, error = %e, "websocket read error");
                        break "read error";
                    }
                    Some(Ok(Message::Binary(b))) => {
                        if let Err(e) = hub.handle_frame(&conn_id, &client_id, &b) {
                            hub.metrics().ws_errors.with_label_values(&[&client_id, e.kind()]).inc();
                            tracing::warn!(clientID = %client_id, connID = %conn_id, error = %e, "rejected plugin message");
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        // rtcd: text frames are accepted at the WS layer but ignored.
                        hub.metrics().ws_errors.with_label_values(&[&client_id, "text_frame"]).inc();
                        tracing::warn!(clientID = %client_id, connID = %conn_id, "ignoring text frame");
                    }
                    Some(Ok(Message::Pong(_))) => {
                        deadline = Instant::now() + settings.pong_wait;
                    }
                    Some(Ok(Message::Ping(_))) => {} // answered by the WebSocket layer
                    Some(Ok(Message::Close(_))) => break "closed by peer",
                }
            }
        }
    };
    hub.remove_conn(&conn_id);
    tracing::info!(clientID = %client_id, connID = %conn_id, reason, "plugin disconnected");
}
