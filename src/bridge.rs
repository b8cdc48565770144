//! The only crossing between the control plane and the data plane.
//!
//! The control plane sends a [`Command`] to the worker that owns a session; workers send a
//! [`Notice`] back. Neither side imports the other: both import this module (and `proto`).
//! Queues are bounded in both directions; a full queue is an error the sender counts, never a
//! reason to block (the data plane must never wait for the control plane).

use std::fmt;
use std::sync::Arc;

pub use rtcd_proto::ws::MessageType;

/// Index of a data-plane worker (one per core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub usize);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker-{}", self.0)
    }
}

/// A session as the plugin names it. Upstream keys sessions by session ID alone (spec §12.4);
/// we key them by (group, session) so one Mattermost installation cannot reach another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub group_id: Arc<str>,
    pub session_id: Arc<str>,
}

impl SessionKey {
    pub fn new(group_id: &str, session_id: &str) -> Self {
        SessionKey {
            group_id: Arc::from(group_id),
            session_id: Arc::from(session_id),
        }
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group_id, self.session_id)
    }
}

/// Everything a worker needs to create a session (from the plugin's `join`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub key: SessionKey,
    pub call_id: Arc<str>,
    pub user_id: Arc<str>,
    /// The session may send and receive AV1 (join prop `av1Support`).
    pub av1_support: bool,
    /// Server-initiated offers go over the data channel (join prop `dcSignaling`).
    pub dc_signaling: bool,
}

/// Control plane → worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Create the session; the client's first offer must follow within 10 s (rtcd).
    Join(SessionInfo),
    /// An `rtc` message from the plugin for this session (SDP, ICE, mute, screen, video...).
    Signal {
        key: SessionKey,
        msg_type: MessageType,
        data: Vec<u8>,
    },
    /// Tear the session down; the worker answers with [`Notice::Closed`].
    Leave { key: SessionKey },
    /// Close every session (each with a [`Notice::Closed`]) and stop the worker.
    Shutdown,
}

impl Command {
    pub fn session(&self) -> Option<&SessionKey> {
        match self {
            Command::Join(info) => Some(&info.key),
            Command::Signal { key, .. } | Command::Leave { key } => Some(key),
            Command::Shutdown => None,
        }
    }
}

/// Why a session ended, as reported in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The plugin sent `leave`.
    Leave,
    /// The client's first offer did not arrive within the signaling timeout.
    SignalingTimeout,
    /// The offer could not be applied, or signaling otherwise failed.
    SignalingFailed,
    /// ICE/DTLS failed or consent expired.
    ConnectionFailed,
    /// The session's state machine hit an internal error (e.g. a caught panic).
    Internal,
    /// The daemon is shutting down.
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Leave => "leave",
            CloseReason::SignalingTimeout => "signaling_timeout",
            CloseReason::SignalingFailed => "signaling_failed",
            CloseReason::ConnectionFailed => "connection_failed",
            CloseReason::Internal => "internal",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Worker → control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Send an `rtc` message to the plugin (answers, server offers, candidates).
    Signal {
        key: SessionKey,
        msg_type: MessageType,
        data: Vec<u8>,
    },
    /// Voice activity edge (`vad` VoiceOn/VoiceOff).
    Vad { key: SessionKey, on: bool },
    /// The session is gone; the plugin gets `close`.
    Closed {
        key: SessionKey,
        reason: CloseReason,
    },
    /// A low-rate observation for the metrics (a few per session per second at most).
    Stat(StatEvent),
}

/// Observations the control plane turns into upstream's `rtcd_rtc_*` metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum StatEvent {
    /// `rtcd_rtc_errors_total{groupID,type}`.
    Error {
        group_id: Arc<str>,
        kind: &'static str,
    },
    /// `rtcd_rtc_conn_states_total{type}`.
    ConnState { state: &'static str },
    /// `rtcd_rtc_connection_time`.
    ConnectionTime { group_id: Arc<str>, seconds: f64 },
    /// `rtcd_rtc_dc_open_time`.
    DcOpenTime { group_id: Arc<str>, seconds: f64 },
    /// `rtcd_rtc_signaling_lock_locked_time`.
    LockHeld { group_id: Arc<str>, seconds: f64 },
    /// `rtcd_rtc_client_{loss_rate,rtt,jitter}`; `metric` is the suffix.
    Client {
        group_id: Arc<str>,
        metric: &'static str,
        value: f64,
    },
    /// `rtcd_rtc_rtp_tracks_total{groupID,direction,type}` changes by `delta`.
    Track {
        group_id: Arc<str>,
        direction: &'static str,
        mime: &'static str,
        delta: i64,
    },
}

/// One worker's counters, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub worker: usize,
    /// The worker's UDP I/O backend ("io_uring" or "portable").
    pub io_backend: &'static str,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub handovers: u64,
    /// Media packets pushed to other workers' fan-out rings.
    pub fanouts: u64,
    /// Screen-share simulcast layer switches: [down to `l`, up to `h`].
    pub layer_switches: [u64; 2],
    /// Packets waiting in the fan-out rings towards this worker (sampled each turn).
    pub ring_occupancy: u64,
    /// Open direct-path sockets (connected to one client each).
    pub direct_flows: u64,
    /// Times io_uring's multishot receive ran out of provided buffers (re-armed each time).
    pub recv_buffer_exhaustions: u64,
    /// Datagrams received coalesced by UDP GRO.
    pub recv_coalesced: u64,
    /// Busy time per loop turn (sleep excluded).
    pub loop_turns: LoopTurns,
    pub sessions: u64,
    pub drops: Vec<(&'static str, u64)>,
}

/// Upper bounds (seconds) of the loop-turn histogram buckets.
pub const LOOP_TURN_BOUNDS: [f64; 12] = [
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2,
];

/// A loop-turn duration histogram: counts per bucket (the last is +Inf), not cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopTurns {
    pub buckets: [u64; LOOP_TURN_BOUNDS.len() + 1],
    pub sum_nanos: u64,
    pub count: u64,
}

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("worker command queue is full")]
    Full,
    #[error("worker is not running")]
    Closed,
    #[error("no such worker")]
    NoSuchWorker,
}

/// What the control plane needs from a data plane. Implemented by the real worker pool
/// and by test doubles.
pub trait DataPlane: Send + Sync + 'static {
    /// Number of workers; sessions are placed on `WorkerId(0..n)`.
    fn worker_count(&self) -> usize;
    /// Queue a command for a worker without blocking.
    fn submit(&self, worker: WorkerId, cmd: Command) -> Result<(), SubmitError>;
    /// Per-worker counters for the metrics (test doubles may return none).
    fn counters(&self) -> Vec<WorkerCounters> {
        Vec::new()
    }
}

/// Capacity of the worker → control-plane notice queue.
pub const NOTICE_QUEUE: usize = 65_536;

/// Sending half of the notice queue, handed to every worker.
pub type NoticeTx = tokio::sync::mpsc::Sender<Notice>;
/// Receiving half of the notice queue, owned by the control plane.
pub type NoticeRx = tokio::sync::mpsc::Receiver<Notice>;

pub fn notice_queue() -> (NoticeTx, NoticeRx) {
    tokio::sync::mpsc::channel(NOTICE_QUEUE)
}
