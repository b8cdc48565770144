//! The Calls plugin's side of rtcd: `POST /register`, then the `/ws` WebSocket with Basic auth,
//! carrying msgpack `ClientMessage` frames (rtcd spec §2–3). The socket lives on its own thread
//! (blocking tungstenite with a short read timeout); frames cross by channels.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use rtcd_proto::ws::ClientMessage;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

pub struct Plugin {
    pub tx: Sender<Vec<u8>>,
    pub rx: Receiver<Result<ClientMessage, String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// `POST /register {"clientID","authKey"}`; 201 is success.
pub fn register(api: SocketAddr, client: &str, key: &str) -> Result<(), String> {
    let body = serde_json::json!({"clientID": client, "authKey": key}).to_string();
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5))
        .map_err(|e| format!("connect {api}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /register HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).ok_or_else(|| {
        format!(
            "register: no HTTP status line in {:?}",
            text.chars().take(80).collect::<String>()
        )
    })?;
    if status != "201" {
        return Err(format!(
            "register: HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(())
}

impl Plugin {
    /// Connects, checks `hello`, and starts the relay thread.
    pub fn connect(api: SocketAddr, client: &str, key: &str) -> Result<Plugin, String> {
        let stream = TcpStream::connect_timeout(&api, Duration::from_secs(5))
            .map_err(|e| format!("ws connect {api}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut req = format!("ws://{api}/ws")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{key}"));
        let value = format!("Basic {auth}")
            .parse()
            .map_err(|_| "auth header".to_string())?;
        req.headers_mut().insert("Authorization", value);
        let (mut ws, _) =
            tungstenite::client(req, stream).map_err(|e| format!("ws handshake: {e}"))?;
        let hello = match ws.read() {
            Ok(Message::Binary(b)) => {
                ClientMessage::decode(&b).map_err(|e| format!("hello: {e}"))?
            }
            Ok(other) => return Err(format!("first frame is not binary: {other:?}")),
            Err(e) => return Err(format!("ws read: {e}")),
        };
        if !matches!(hello, ClientMessage::Hello { .. }) {
            return Err(format!("first frame is not hello: {hello:?}"));
        }
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(1)))
            .map_err(|e| e.to_string())?;
        let (tx, out_rx) = channel::<Vec<u8>>();
        let (in_tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ws".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let mut wrote = false;
                    while let Ok(f) = out_rx.try_recv() {
                        if let Err(e) = ws.write(Message::Binary(f.into())) {
                            let _ = in_tx.send(Err(format!("ws write: {e}")));
                            return;
                        }
                        wrote = true;
                    }
                    if wrote {
                        if let Err(e) = ws.flush() {
                            let _ = in_tx.send(Err(format!("ws flush: {e}")));
                            return;
                        }
                    }
                    match ws.read() {
                        Ok(Message::Binary(b)) => {
                            let m = ClientMessage::decode(&b).map_err(|e| format!("decode: {e}"));
                            if in_tx.send(m).is_err() {
                                return;
                            }
                        }
                        Ok(Message::Close(_)) => {
                            let _ = in_tx.send(Err("ws closed by server".into()));
                            return;
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => {
                            let _ = in_tx.send(Err(format!("ws read: {e}")));
                            return;
                        }
                    }
                }
                let _ = ws.close(None);
                let _ = ws.flush();
            })
            .map_err(|e| e.to_string())?;
        Ok(Plugin {
            tx,
            rx,
            stop,
            thread: Some(thread),
        })
    }

    pub fn send(&self, frame: Vec<u8>) -> Result<(), String> {
        self.tx
            .send(frame)
            .map_err(|_| "ws thread gone".to_string())
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
