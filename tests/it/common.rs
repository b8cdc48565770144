//! Test harness: an in-process control plane with a scripted data plane.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use rtcd::bridge::{
    notice_queue, Command, DataPlane, Notice, NoticeTx, SessionKey, SubmitError, WorkerId,
};
use rtcd::config::Config;
use rtcd::control::{ControlOptions, ControlPlane};
use rtcd_proto::ws::ClientMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A data plane double: records every command, answers like a worker would for the
/// parts of the protocol the control plane relies on.
pub struct FakeDataPlane {
    pub workers: usize,
    pub commands: Mutex<Vec<(WorkerId, Command)>>,
    pub notices: NoticeTx,
    /// When set, every submit fails with this error.
    pub refuse: Mutex<Option<SubmitError>>,
}

impl FakeDataPlane {
    pub fn commands(&self) -> Vec<(WorkerId, Command)> {
        self.commands.lock().unwrap().clone()
    }

    pub fn notify(&self, n: Notice) {
        self.notices.try_send(n).unwrap();
    }
}

impl DataPlane for FakeDataPlane {
    fn worker_count(&self) -> usize {
        self.workers
    }

    fn submit(&self, worker: WorkerId, cmd: Command) -> Result<(), SubmitError> {
        if let Some(e) = *self.refuse.lock().unwrap() {
            return Err(e);
        }
        if worker.0 >= self.workers {
            return Err(SubmitError::NoSuchWorker);
        }
        // A worker answers leave with Closed.
        if let Command::Leave { key } = &cmd {
            let _ = self.notices.try_send(Notice::Closed {
                key: key.clone(),
                reason: rtcd::bridge::CloseReason::Leave,
            });
        }
        self.commands.lock().unwrap().push((worker, cmd));
        Ok(())
    }
}

pub struct TestServer {
    pub control: Option<ControlPlane>,
    pub data: Arc<FakeDataPlane>,
    pub base: String,
    pub ws_url: String,
    _dir: tempfile::TempDir,
}

pub struct Setup {
    pub self_registration: bool,
    pub admin: Option<&'static str>,
    pub workers: usize,
    pub opts: ControlOptions,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            self_registration: true,
            admin: None,
            workers: 2,
            opts: ControlOptions {
                cpu_sample_period: Duration::from_millis(200),
                ..ControlOptions::default()
            },
        }
    }
}

pub fn test_config(dir: &std::path::Path, setup: &Setup) -> Config {
    let mut cfg = Config::default();
    cfg.api.http.listen_address = "127.0.0.1:0".into();
    cfg.api.security.allow_self_registration = setup.self_registration;
    if let Some(secret) = setup.admin {
        cfg.api.security.enable_admin = true;
        cfg.api.security.admin_secret_key = secret.into();
    }
    cfg.store.data_source = dir.join("db").to_string_lossy().into_owned();
    cfg.logger.enable_file = false;
    cfg
}

impl TestServer {
    pub async fn start(setup: Setup) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let cfg = test_config(dir.path(), &setup);
        let (tx, rx) = notice_queue();
        let data = Arc::new(FakeDataPlane {
            workers: setup.workers,
            commands: Mutex::new(Vec::new()),
            notices: tx,
            refuse: Mutex::new(None),
        });
        let control = ControlPlane::start(&cfg, data.clone(), rx, setup.opts)
            .await
            .unwrap();
        let addr = control.local_addr;
        TestServer {
            control: Some(control),
            data,
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/ws"),
            _dir: dir,
        }
    }

    pub async fn default() -> TestServer {
        Self::start(Setup::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn hub(&self) -> &rtcd::control::hub::Hub {
        &self.control.as_ref().unwrap().hub
    }

    pub fn metrics_text(&self) -> String {
        self.control.as_ref().unwrap().metrics.render()
    }

    pub async fn register(&self, client: &str, key: &str) {
        let r = http()
            .post(self.url("/register"))
            .json(&serde_json::json!({"clientID": client, "authKey": key}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// Waits until the data plane has seen `n` commands.
    pub async fn wait_commands(&self, n: usize) -> Vec<(WorkerId, Command)> {
        for _ in 0..200 {
            let c = self.data.commands();
            if c.len() >= n {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} commands, got {:?}", self.data.commands());
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A plugin-like WebSocket client.
pub struct Plugin {
    pub ws: Ws,
    pub conn_id: String,
}

pub async fn ws_connect(
    url: &str,
    auth: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

impl Plugin {
    /// Connects with Basic auth and reads `hello`.
    pub async fn connect(server: &TestServer, client: &str, key: &str) -> Plugin {
        let mut ws = ws_connect(&server.ws_url, &basic(client, key))
            .await
            .unwrap();
        let hello = next_binary(&mut ws).await;
        match ClientMessage::decode(&hello).unwrap() {
            ClientMessage::Hello { client_id, conn_id } => {
                assert_eq!(client_id, client);
                assert_eq!(conn_id.len(), 26);
                Plugin { ws, conn_id }
            }
            other => panic!("first frame is not hello: {other:?}"),
        }
    }

    pub async fn send_raw(&mut self, frame: Vec<u8>) {
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    pub async fn recv(&mut self) -> ClientMessage {
        let b = next_binary(&mut self.ws).await;
        ClientMessage::decode(&b).unwrap()
    }

    /// Asserts nothing arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Binary(b)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("unexpected frame {:?}", ClientMessage::decode(&b));
        }
    }
}

/// Next binary frame (pings are answered by tungstenite while reading).
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection closed")
            .expect("read error");
        if let Message::Binary(b) = m {
            return b.to_vec();
        }
    }
}

/// A `join` as the Go plugin encodes it (generic map, str and bool values).
pub fn join_frame(call: &str, user: &str, session: &str) -> Vec<u8> {
    let mut f = Vec::new();
    rmp::encode::write_str(&mut f, "join").unwrap();
    rmp::encode::write_map_len(&mut f, 6).unwrap();
    for (k, v) in [
        ("callID", call),
        ("userID", user),
        ("sessionID", session),
        ("channelID", "chan"),
    ] {
        rmp::encode::write_str(&mut f, k).unwrap();
        rmp::encode::write_str(&mut f, v).unwrap();
    }
    rmp::encode::write_str(&mut f, "av1Support").unwrap();
    rmp::encode::write_bool(&mut f, true).unwrap();
    rmp::encode::write_str(&mut f, "dcSignaling").unwrap();
    rmp::encode::write_bool(&mut f, false).unwrap();
    f
}

/// A `leave`/`reconnect` frame: str type + map{"sessionID": str}.
pub fn session_frame(kind: &str, session: &str) -> Vec<u8> {
    let mut f = Vec::new();
    rmp::encode::write_str(&mut f, kind).unwrap();
    rmp::encode::write_map_len(&mut f, 1).unwrap();
    rmp::encode::write_str(&mut f, "sessionID").unwrap();
    rmp::encode::write_str(&mut f, session).unwrap();
    f
}

/// An `rtc` frame as the plugin sends it (empty group/user/call IDs).
pub fn rtc_frame(session: &str, msg_type: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    rmp::encode::write_str(&mut f, "rtc").unwrap();
    rmp::encode::write_map_len(&mut f, 6).unwrap();
    for (k, v) in [
        ("group_id", ""),
        ("user_id", ""),
        ("session_id", session),
        ("call_id", ""),
    ] {
        rmp::encode::write_str(&mut f, k).unwrap();
        rmp::encode::write_str(&mut f, v).unwrap();
    }
    rmp::encode::write_str(&mut f, "type").unwrap();
    rmp::encode::write_uint(&mut f, msg_type as u64).unwrap();
    rmp::encode::write_str(&mut f, "data").unwrap();
    rmp::encode::write_bin(&mut f, data).unwrap();
    f
}

pub fn key(group: &str, session: &str) -> SessionKey {
    SessionKey::new(group, session)
}
