//! The routing table between plugin connections and RTC sessions (spec §3.6–3.7).
//!
//! Owns: live plugin connections (connID → client and outbound queue), the session registry
//! (group → call → session, with the worker each session lives on and the connection its
//! messages go to), and the dispatch of decoded plugin messages to workers and of worker
//! notices to connections. Never awaits while holding its lock.
//!
//! Deliberate differences from upstream (README compatibility table):
//! * sessions are keyed by (group, session): a client can only reach its own sessions;
//! * `close` and other outbound messages go to the session's latest connection (after
//!   `reconnect`), and fall back to the most recent live connection of the same client when
//!   that one is gone, instead of being dropped;
//! * `reconnect` for an unknown session is ignored instead of leaving a stale mapping.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rtcd_proto::ws::{ClientMessage, Join, MessageType, PropValue, RtcMessage};
use serde::Serialize;
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::placement;
use crate::bridge::{CloseReason, Command, DataPlane, Notice, SessionInfo, SessionKey, WorkerId};

/// A plugin WebSocket connection's ID (26-char, announced in `hello`).
pub type ConnId = Arc<str>;

/// Outbound frames for one connection (already encoded ClientMessages).
pub type OutTx = mpsc::Sender<Vec<u8>>;

/// Why an inbound message was rejected; `kind` is the metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HubError {
    #[error("invalid message: {0}")]
    Decode(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("unexpected message type {0:?} from plugin")]
    UnexpectedType(&'static str),
    #[error("invalid session config: {0}")]
    InvalidJoin(&'static str),
    #[error("session {0} already exists")]
    DuplicateSession(String),
    #[error("session {0} not found")]
    UnknownSession(String),
    #[error("missing session_id")]
    MissingSessionId,
    #[error("data plane refused the command: {0}")]
    DataPlane(String),
    #[error("draining: session {0} refused")]
    Draining(String),
}

impl HubError {
    pub fn kind(&self) -> &'static str {
        match self {
            HubError::Decode(_) => "decode",
            HubError::UnknownType(_) => "unknown_type",
            HubError::UnexpectedType(_) => "unexpected_type",
            HubError::InvalidJoin(_) => "invalid_join",
            HubError::DuplicateSession(_) => "duplicate_session",
            HubError::UnknownSession(_) => "unknown_session",
            HubError::MissingSessionId => "missing_session_id",
            HubError::DataPlane(_) => "data_plane",
            HubError::Draining(_) => "draining",
        }
    }
}

/// `SessionConfig` as upstream serialises it for `/calls/...` (Go field names, no tags).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionConfig {
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "CallID")]
    pub call_id: String,
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "SessionID")]
    pub session_id: String,
    #[serde(rename = "Props")]
    pub props: SessionProps,
}

/// The three join props upstream keeps, echoed as they arrived (possibly null).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionProps {
    #[serde(rename = "channelID")]
    pub channel_id: PropValue,
    #[serde(rename = "av1Support")]
    pub av1_support: PropValue,
    #[serde(rename = "dcSignaling")]
    pub dc_signaling: PropValue,
}

/// Why a `/calls/...` lookup found nothing (upstream's 404 messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("group not found")]
    GroupNotFound,
    #[error("call not found")]
    CallNotFound,
    #[error("session not found")]
    SessionNotFound,
    #[error("no sessions found")]
    NoSessions,
}

struct ConnEntry {
    client_id: Arc<str>,
    tx: OutTx,
    /// Increases with every connection; the fallback picks the newest live one.
    seq: u64,
}

struct SessionEntry {
    info: SessionInfo,
    props: SessionProps,
    conn: ConnId,
    worker: WorkerId,
    leaving: bool,
}

struct CallEntry {
    sessions: BTreeSet<Arc<str>>,
    home: WorkerId,
}

#[derive(Default)]
struct HubState {
    conns: HashMap<ConnId, ConnEntry>,
    sessions: HashMap<SessionKey, SessionEntry>,
    calls: HashMap<(Arc<str>, Arc<str>), CallEntry>,
    worker_load: Vec<usize>,
    next_seq: u64,
    accepting: bool,
}

/// Placement tuning.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Sessions per worker beyond which a call's new sessions spill to the least-loaded worker.
    pub spill_at: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            spill_at: crate::config::DEFAULT_SPILL_SESSIONS,
        }
    }
}

pub struct Hub {
    state: Mutex<HubState>,
    data: Arc<dyn DataPlane>,
    metrics: Arc<Metrics>,
    settings: HubSettings,
}

impl Hub {
    pub fn new(data: Arc<dyn DataPlane>, metrics: Arc<Metrics>, settings: HubSettings) -> Self {
        let workers = data.worker_count().max(1);
        Hub {
            state: Mutex::new(HubState {
                worker_load: vec![0; workers],
                accepting: true,
                ..HubState::default()
            }),
            data,
            metrics,
            settings,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Registers a new plugin connection.
    pub fn add_conn(&self, conn_id: ConnId, client_id: &str, tx: OutTx) {
        let mut st = self.lock();
        st.next_seq += 1;
        let seq = st.next_seq;
        st.conns.insert(
            conn_id,
            ConnEntry {
                client_id: Arc::from(client_id),
                tx,
                seq,
            },
        );
        drop(st);
        self.metrics
            .ws_connections
            .with_label_values(&[client_id])
            .inc();
    }

    /// Forgets a connection. Its sessions keep running (upstream): their messages go to the
    /// client's other connections until a `reconnect` remaps them.
    pub fn remove_conn(&self, conn_id: &str) {
        let removed = self.lock().conns.remove(conn_id);
        if let Some(c) = removed {
            self.metrics
                .ws_connections
                .with_label_values(&[&c.client_id])
                .dec();
        }
    }

    pub fn conn_count(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Stops admitting new sessions (drain); `join` is then refused.
    pub fn stop_accepting(&self) {
        self.lock().accepting = false;
    }

    /// Handles one binary frame from a plugin connection authenticated as `client_id`.
    pub fn handle_frame(
        &self,
        conn_id: &ConnId,
        client_id: &str,
        frame: &[u8],
    ) -> Result<(), HubError> {
        let msg = ClientMessage::decode(frame).map_err(|e| match e {
            rtcd_proto::ws::WireError::UnknownType(t) => HubError::UnknownType(t),
            other => HubError::Decode(other.to_string()),
        })?;
        self.metrics
            .ws_messages
            .with_label_values(&[client_id, msg.type_name(), "in"])
            .inc();
        match msg {
            ClientMessage::Join(join) => self.join(conn_id, client_id, join),
            ClientMessage::Leave { session_id } => self.leave(client_id, &session_id),
            ClientMessage::Reconnect { session_id } => {
                self.reconnect(conn_id, client_id, &session_id)
            }
            ClientMessage::Rtc(m) => self.rtc(client_id, m),
            other => Err(HubError::UnexpectedType(other.type_name())),
        }
    }

    fn join(&self, conn_id: &ConnId, client_id: &str, join: Join) -> Result<(), HubError> {
        // rtcd: the group is always the connection's client ID, whatever the plugin sent.
        let group = client_id;
        if group.is_empty() {
            return Err(HubError::InvalidJoin("empty groupID"));
        }
        if join.call_id.is_empty() {
            return Err(HubError::InvalidJoin("empty callID"));
        }
        if join.user_id.is_empty() {
            return Err(HubError::InvalidJoin("empty userID"));
        }
        if join.session_id.is_empty() {
            return Err(HubError::InvalidJoin("empty sessionID"));
        }
        let key = SessionKey::new(group, &join.session_id);
        let info = SessionInfo {
            key: key.clone(),
            call_id: Arc::from(join.call_id.as_str()),
            user_id: Arc::from(join.user_id.as_str()),
            av1_support: join.av1_support.as_bool(),
            dc_signaling: join.dc_signaling.as_bool(),
        };
        let worker = {
            let mut st = self.lock();
            if !st.accepting {
                // Extension (drain): answer with `close` at once so the plugin removes the
                // user instead of waiting for a session that will never come.
                let target = Self::route(&st, conn_id, group);
                drop(st);
                let mut frame = Vec::new();
                ClientMessage::Close {
                    session_id: join.session_id.clone(),
                }
                .encode(&mut frame);
                self.deliver(target, &key, "close", frame, false);
                return Err(HubError::Draining(join.session_id));
            }
            if st.sessions.contains_key(&key) {
                return Err(HubError::DuplicateSession(join.session_id.clone()));
            }
            let call_key = (key.group_id.clone(), info.call_id.clone());
            let home = st.calls.get(&call_key).map(|c| c.home);
            let worker = placement::place(home, &st.worker_load, self.settings.spill_at);
            st.calls
                .entry(call_key)
                .or_insert_with(|| CallEntry {
                    sessions: BTreeSet::new(),
                    home: worker,
                })
                .sessions
                .insert(key.session_id.clone());
            if let Some(l) = st.worker_load.get_mut(worker.0) {
                *l += 1;
            }
            st.sessions.insert(
                key.clone(),
                SessionEntry {
                    info: info.clone(),
                    props: SessionProps {
                        channel_id: join.channel_id,
                        av1_support: join.av1_support,
                        dc_signaling: join.dc_signaling,
                    },
                    conn: conn_id.clone(),
                    worker,
                    leaving: false,
                },
            );
            worker
        };
        self.metrics.rtc_sessions.with_label_values(&[group]).inc();
        tracing::info!(groupID = %group, callID = %info.call_id, sessionID = %key.session_id, %worker, "session joined");
        if let Err(e) = self.data.submit(worker, Command::Join(info)) {
            self.metrics
                .bridge_drops
                .with_label_values(&["command", "join"])
                .inc();
            // The session never reached a worker: close it so the plugin does not wait.
            self.finish_close(&key, CloseReason::Internal);
            return Err(HubError::DataPlane(e.to_string()));
        }
        Ok(())
    }

    fn leave(&self, client_id: &str, session_id: &str) -> Result<(), HubError> {
        if session_id.is_empty() {
            return Err(HubError::MissingSessionId);
        }
        let key = SessionKey::new(client_id, session_id);
        let worker = {
            let mut st = self.lock();
            match st.sessions.get_mut(&key) {
                // rtcd: leave for an unknown session is silently ignored.
                None => return Ok(()),
                Some(s) => {
                    s.leaving = true;
                    s.worker
                }
            }
        };
        if let Err(e) = self
            .data
            .submit(worker, Command::Leave { key: key.clone() })
        {
            tracing::warn!(sessionID = %session_id, error = %e, "leave could not reach the worker; closing here");
            self.metrics
                .bridge_drops
                .with_label_values(&["command", "leave"])
                .inc();
            self.finish_close(&key, CloseReason::Leave);
        }
        Ok(())
    }

    fn reconnect(
        &self,
        conn_id: &ConnId,
        client_id: &str,
        session_id: &str,
    ) -> Result<(), HubError> {
        if session_id.is_empty() {
            return Err(HubError::MissingSessionId);
        }
        let key = SessionKey::new(client_id, session_id);
        let mut st = self.lock();
        match st.sessions.get_mut(&key) {
            Some(s) => {
                s.conn = conn_id.clone();
                Ok(())
            }
            None => Err(HubError::UnknownSession(session_id.to_string())),
        }
    }

    fn rtc(&self, client_id: &str, m: RtcMessage) -> Result<(), HubError> {
        if m.session_id.is_empty() {
            return Err(HubError::MissingSessionId);
        }
        let key = SessionKey::new(client_id, &m.session_id);
        let worker = self
            .lock()
            .sessions
            .get(&key)
            .map(|s| s.worker)
            .ok_or_else(|| HubError::UnknownSession(m.session_id.clone()))?;
        self.data
            .submit(
                worker,
                Command::Signal {
                    key,
                    msg_type: m.msg_type,
                    data: m.data,
                },
            )
            .map_err(|e| {
                self.metrics
                    .bridge_drops
                    .with_label_values(&["command", "rtc"])
                    .inc();
                HubError::DataPlane(e.to_string())
            })
    }

    /// Routes a worker notice to the plugin.
    pub fn handle_notice(&self, notice: Notice) {
        match notice {
            Notice::Signal {
                key,
                msg_type,
                data,
            } => {
                self.send_rtc(&key, "rtc", msg_type, data);
            }
            Notice::Vad { key, on } => {
                let t = if on {
                    MessageType::VoiceOn
                } else {
                    MessageType::VoiceOff
                };
                self.send_rtc(&key, "vad", t, Vec::new());
            }
            Notice::Closed { key, reason } => self.finish_close(&key, reason),
            Notice::Stat(e) => self.metrics.observe(&e),
        }
    }

    fn send_rtc(&self, key: &SessionKey, kind: &'static str, msg_type: MessageType, data: Vec<u8>) {
        let st = self.lock();
        let Some(s) = st.sessions.get(key) else {
            tracing::debug!(session = %key, kind, "message for a closed session dropped");
            return;
        };
        let rtc = RtcMessage {
            group_id: key.group_id.to_string(),
            user_id: s.info.user_id.to_string(),
            session_id: key.session_id.to_string(),
            call_id: s.info.call_id.to_string(),
            msg_type,
            data,
        };
        let msg = if kind == "vad" {
            ClientMessage::Vad(rtc)
        } else {
            ClientMessage::Rtc(rtc)
        };
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        let target = Self::route(&st, &s.conn, &key.group_id);
        drop(st);
        self.deliver(target, key, kind, frame, true);
    }

    /// The connection for a session: its mapped one, else the newest live connection of
    /// the same client (every plugin node can relay to any user of its installation).
    fn route(st: &HubState, mapped: &ConnId, client_id: &str) -> Option<(Arc<str>, OutTx)> {
        if let Some(c) = st.conns.get(mapped) {
            return Some((c.client_id.clone(), c.tx.clone()));
        }
        st.conns
            .values()
            .filter(|c| &*c.client_id == client_id)
            .max_by_key(|c| c.seq)
            .map(|c| (c.client_id.clone(), c.tx.clone()))
    }

    fn deliver(
        &self,
        target: Option<(Arc<str>, OutTx)>,
        key: &SessionKey,
        kind: &'static str,
        frame: Vec<u8>,
        counted: bool,
    ) {
        let Some((client, tx)) = target else {
            tracing::warn!(session = %key, kind, "no live connection for the session's client; message dropped");
            self.metrics
                .bridge_drops
                .with_label_values(&["ws_out", "no_connection"])
                .inc();
            return;
        };
        match tx.try_send(frame) {
            Ok(()) => {
                if counted {
                    self.metrics
                        .ws_messages
                        .with_label_values(&[&client, kind, "out"])
                        .inc();
                }
            }
            Err(e) => {
                tracing::warn!(session = %key, kind, error = %e, "plugin connection queue full or closed; message dropped");
                self.metrics
                    .bridge_drops
                    .with_label_values(&["ws_out", "queue_full"])
                    .inc();
            }
        }
    }

    /// Removes a closed session and tells the plugin with `close`.
    fn finish_close(&self, key: &SessionKey, reason: CloseReason) {
        let mut st = self.lock();
        let Some(s) = st.sessions.remove(key) else {
            return;
        };
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        if let Some(call) = st.calls.get_mut(&call_key) {
            call.sessions.remove(&key.session_id);
            if call.sessions.is_empty() {
                st.calls.remove(&call_key);
            }
        }
        if let Some(l) = st.worker_load.get_mut(s.worker.0) {
            *l = l.saturating_sub(1);
        }
        let target = Self::route(&st, &s.conn, &key.group_id);
        drop(st);
        self.metrics
            .rtc_sessions
            .with_label_values(&[&key.group_id])
            .dec();
        tracing::info!(groupID = %key.group_id, callID = %s.info.call_id, sessionID = %key.session_id, reason = reason.as_str(), leaving = s.leaving, "session closed");
        let mut frame = Vec::new();
        ClientMessage::Close {
            session_id: key.session_id.to_string(),
        }
        .encode(&mut frame);
        // rtcd counts outbound messages only for rtc/vad.
        self.deliver(target, key, "close", frame, false);
    }

    /// Asks every worker to close its sessions and stop.
    pub fn shutdown_data_plane(&self) {
        for w in 0..self.data.worker_count() {
            if let Err(e) = self.data.submit(WorkerId(w), Command::Shutdown) {
                tracing::warn!(worker = w, error = %e, "shutdown could not reach worker");
            }
        }
    }

    /// Sessions of a call in the client's group (`GET /calls/{callID}/sessions`).
    pub fn call_sessions(
        &self,
        group: &str,
        call: &str,
    ) -> Result<Vec<SessionConfig>, LookupError> {
        let st = self.lock();
        let call_key: (Arc<str>, Arc<str>) = (Arc::from(group), Arc::from(call));
        let Some(c) = st.calls.get(&call_key) else {
            return Err(if st.calls.keys().any(|(g, _)| &**g == group) {
                LookupError::CallNotFound
            } else {
                LookupError::GroupNotFound
            });
        };
        let out: Vec<SessionConfig> = c
            .sessions
            .iter()
            .filter_map(|sid| {
                st.sessions
                    .get(&SessionKey {
                        group_id: call_key.0.clone(),
                        session_id: sid.clone(),
                    })
                    .map(Self::config_of)
            })
            .collect();
        if out.is_empty() {
            return Err(LookupError::NoSessions);
        }
        Ok(out)
    }

    /// One session of a call (`GET /calls/{callID}/sessions/{sessionID}`).
    pub fn call_session(
        &self,
        group: &str,
        call: &str,
        session: &str,
    ) -> Result<SessionConfig, LookupError> {
        let st = self.lock();
        let call_key: (Arc<str>, Arc<str>) = (Arc::from(group), Arc::from(call));
        if !st.calls.contains_key(&call_key) {
            return Err(if st.calls.keys().any(|(g, _)| &**g == group) {
                LookupError::CallNotFound
            } else {
                LookupError::GroupNotFound
            });
        }
        st.sessions
            .get(&SessionKey::new(group, session))
            .filter(|s| &*s.info.call_id == call)
            .map(Self::config_of)
            .ok_or(LookupError::SessionNotFound)
    }

    fn config_of(s: &SessionEntry) -> SessionConfig {
        SessionConfig {
            group_id: s.info.key.group_id.to_string(),
            call_id: s.info.call_id.to_string(),
            user_id: s.info.user_id.to_string(),
            session_id: s.info.key.session_id.to_string(),
            props: s.props.clone(),
        }
    }

    /// The data plane's per-worker counters (read at scrape time).
    pub fn worker_counters(&self) -> Vec<crate::bridge::WorkerCounters> {
        self.data.counters()
    }

    /// Which worker hosts a session (tests and diagnostics).
    pub fn worker_of(&self, key: &SessionKey) -> Option<WorkerId> {
        self.lock().sessions.get(key).map(|s| s.worker)
    }
}
