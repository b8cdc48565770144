//! One worker's media state: its sessions (one str0m `Rtc` each), the calls they belong to,
//! the tracks they publish, and the forwarding between them. No sockets and no clock: the
//! worker shell feeds datagrams and `now` in, and takes datagrams and notices out.
//!
//! Contract (push/pull, as str0m): `handle_*(now, …)` pushes input; afterwards the caller
//! takes [`Media::drain_transmits`] (and, with several workers, [`Media::drain_peer_msgs`]
//! and [`Media::drain_forwarded`]) and sleeps until [`Media::poll_deadline`].
//!
//! Behaviour follows upstream rtcd (spec §4–§5): the client's first offer is answered,
//! candidates trickle after the answer, media is forwarded only once the `calls-dc` data
//! channel is open, each track added or removed is one server offer/answer round under the
//! signaling lock, and a MediaMap precedes every server offer.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use rtcd_proto::dc::{self, DcInbound, DcMessage, MediaMapEntry};
use rtcd_proto::keyframe::KeyframeThrottle;
use rtcd_proto::rate::RateMonitor;
use rtcd_proto::signaling::{self, SdpKind};
use rtcd_proto::simulcast::{self, Layer, LayerController};
use rtcd_proto::track::{self, TrackKind};
use rtcd_proto::vad::VoiceActivity;
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, PacerReason, Reason, Rtc};

use super::engine::{new_ice_creds, Engine};
use super::stats::{Drop as DropReason, WorkerStats};
use crate::bridge::{
    CloseReason, MessageType, Notice, NoticeTx, SessionInfo, SessionKey, StatEvent,
};

/// rtcd: the first offer must arrive within this time after `join`.
pub const SIGNALING_TIMEOUT: Duration = Duration::from_secs(10);
/// rtcd: a server offer's answer must arrive within this time.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// rtcd (pion defaults): no traffic for this long after connecting fails the session.
pub const FAILED_AFTER: Duration = Duration::from_secs(25);
/// rtcd: a server renegotiation waits this long for the signaling lock, then is dropped.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// rtcd: remote candidates buffered before the first offer.
const MAX_EARLY_CANDIDATES: usize = 40;
/// rtcd: track actions queued per session.
const MAX_ACTIONS: usize = 100;
/// Packets kept per outbound stream to answer NACKs with RTX, and for how long.
const RTX_CACHE_PACKETS: usize = 1024;
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);
/// Bound on poll iterations after one input (a deadline may come back as `now`).
const MAX_PUMP_ROUNDS: usize = 16;

/// Largest step ahead of the loop's clock taken to release the next paced packet of a burst
/// (str0m's pacer asks for a timeout 1 µs after each packet).
const PACER_STEP: Duration = Duration::from_millis(1);

/// Maps on the per-packet path (session, call and track lookups per forwarded packet and
/// subscriber): foldhash instead of SipHash, seeded per map. Their keys are our own IDs; the
/// network can only look them up.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
/// How often a simulcast layer's measured source rate is refreshed (and sent to the other
/// workers); rtcd evaluates it at most once per second per receiver too.
const LAYER_RATE_PERIOD: Duration = Duration::from_secs(1);
/// A receiver leaves `h` only when its estimate stayed low for this long (see
/// `bandwidth_estimate`).
const SUSTAINED_ESTIMATE_WINDOW: Duration = Duration::from_secs(2);
/// `h` arriving at less than `l`'s rate divided by this counts as stopped.
const STALLED_LAYER_DIVISOR: u64 = 4;
/// After a switch up, how long the new layer's rate stands in for the estimate: str0m
/// restarts its estimator there, but its reported (smoothed) estimate takes about 2 s to
/// climb from the old value (measured).
const BWE_SETTLE: Duration = Duration::from_secs(3);

/// A datagram to send. `source` is the local (advertised) address the session used.
#[derive(Debug)]
pub struct Transmit {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Timings (shortened by tests) and options.
#[derive(Debug, Clone, Copy)]
pub struct MediaSettings {
    pub signaling_timeout: Duration,
    pub answer_timeout: Duration,
    pub failed_after: Duration,
    /// `rtc.bandwidth_estimation`: sessions estimate their send bandwidth (simulcast layers).
    pub bandwidth_estimation: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            signaling_timeout: SIGNALING_TIMEOUT,
            answer_timeout: ANSWER_TIMEOUT,
            failed_after: FAILED_AFTER,
            bandwidth_estimation: true,
        }
    }
}

/// Where the session's sockets are: host candidates to advertise.
#[derive(Debug, Clone, Default)]
pub struct LocalCandidates {
    /// Advertised UDP host addresses.
    pub udp: Vec<SocketAddr>,
    /// Advertised passive TCP host addresses.
    pub tcp: Vec<SocketAddr>,
}

pub type CallKey = (Arc<str>, Arc<str>);

/// What one worker tells another about the calls they share (DESIGN.md decision 5). Every
/// worker knows every published track, so a session placed on any worker can subscribe.
#[derive(Debug, Clone)]
pub enum PeerMsg {
    /// A track published on worker `meta.home`.
    Published(Arc<TrackMeta>),
    /// The track is gone.
    Unpublished { call: CallKey, track: Arc<str> },
    /// Worker `from` now has (`on`) or no longer has subscribers of `track`.
    Subscribe {
        call: CallKey,
        track: Arc<str>,
        from: usize,
        on: bool,
    },
    /// A subscriber on another worker asks for a keyframe.
    Keyframe { call: CallKey, track: Arc<str> },
    /// The call's screen sharer changed on worker `from` (rtcd: one sharer per call).
    ScreenSharer {
        call: CallKey,
        sharer: Option<Arc<str>>,
        from: usize,
    },
    /// A simulcast layer's measured source rate (bits/s; `None` while unknown), from its
    /// home worker, so receivers elsewhere can choose layers (spec §5.7).
    LayerRate {
        call: CallKey,
        track: Arc<str>,
        bps: Option<u64>,
    },
}

/// A published track as other workers see it.
#[derive(Debug)]
pub struct TrackMeta {
    pub call: CallKey,
    pub id: Arc<str>,
    pub publisher: Arc<str>,
    pub kind: TrackKind,
    pub media: MediaKind,
    pub codec: Codec,
    pub mid: Mid,
    pub rid: Option<Rid>,
    pub publisher_av1: bool,
    pub home: usize,
}

/// A decrypted media packet on its way to a track's subscribers: handed by value through
/// the ring to each other worker hosting subscribers (the payload is shared, not copied).
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub call: CallKey,
    pub track: Arc<str>,
    /// The publisher's extended sequence number.
    pub seq: u64,
    pub rtp_time: u32,
    pub received: Instant,
    pub marker: bool,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video: bool,
    pub payload: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    Free,
    Client(Instant),
    Server(Instant),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TrackAction {
    Add(Arc<str>),
    Remove(Arc<str>),
}

/// Which path a client offer came on; its answer goes back the same way (spec §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Ws,
    Dc,
}

struct PendingOffer {
    offer: SdpPendingOffer,
    action: TrackAction,
    /// For adds: the new send-only m-line.
    mid: Option<Mid>,
    deadline: Instant,
    /// The answer timeout passed once; the next deadline closes the session.
    overdue: bool,
}

/// After the answer timeout, how much longer a server offer may wait for its answer.
const OVERDUE_ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// A track this session receives from another session of its call.
struct OutTrack {
    mid: Mid,
    codec: Codec,
    /// Subtracted from the publisher's extended sequence number so this subscriber's SRTP
    /// rollover counter starts at 0 while the low 16 bits stay the publisher's.
    roc_base: Option<u64>,
    ssrc: Option<Ssrc>,
}

struct Session {
    info: SessionInfo,
    rtc: Rtc,
    ufrag: String,
    deadline: Instant,
    /// Set until the first offer has been answered.
    offer_deadline: Option<Instant>,
    joined_at: Instant,
    offer_at: Option<Instant>,
    connected: bool,
    last_rx: Instant,
    /// When the no-traffic check runs next (moved on by traffic lazily, when it fires).
    failure_check: Instant,
    /// The time of this session's live entry in the worker's timer heap.
    scheduled: Option<Instant>,
    early_candidates: Vec<Vec<u8>>,
    local_candidate_lines: Vec<String>,
    dc: Option<ChannelId>,
    initialized: bool,
    lock: Lock,
    /// Since when a queued track action has been waiting for a lock the client holds.
    lock_wait_since: Option<Instant>,
    pending: Option<PendingOffer>,
    actions: VecDeque<TrackAction>,
    screen_stream: Option<String>,
    video_stream: Option<String>,
    muted: bool,
    vad: VoiceActivity,
    /// Publisher side: (mid, rid) → our track ID (None: rejected, e.g. unannounced video).
    inbound: FastMap<(Mid, Option<Rid>), Option<Arc<str>>>,
    ssrc_source: FastMap<Ssrc, (Mid, Option<Rid>)>,
    /// Subscriber side: track ID → its send-only m-line.
    outbound: FastMap<Arc<str>, OutTrack>,
    mid_track: FastMap<Mid, Arc<str>>,
    dead: Option<CloseReason>,
    /// The latest send-side bandwidth estimate towards this client (bits/s; 0: none yet).
    bwe_bps: u64,
    /// Recent estimates (time, bits/s), the last [`SUSTAINED_ESTIMATE_WINDOW`] of them.
    recent_bwe: VecDeque<(Instant, u64)>,
    /// After a switch up: until when, and to which rate, the estimate is held up while
    /// str0m's smoothed estimate climbs to its restart value.
    bwe_settle: Option<(Instant, u64)>,
    /// Screen-share layer switching for this receiver (spec §5.7).
    layers: LayerController,
}

struct PublishedTrack {
    id: Arc<str>,
    publisher: Arc<str>,
    kind: TrackKind,
    media: MediaKind,
    codec: Codec,
    mid: Mid,
    rid: Option<Rid>,
    /// Subscribers on this worker.
    subscribers: BTreeSet<Arc<str>>,
    pli: KeyframeThrottle,
    publisher_av1: bool,
    /// The worker of the publishing session.
    home: usize,
    /// At home: other workers with subscribers (each gets one copy per packet).
    remote: Vec<usize>,
    /// Elsewhere: whether home was told this worker has subscribers.
    remote_subscribed: bool,
    /// A simulcast layer: its measured source rate (bits/s), kept current on every worker.
    rate_bps: Option<u64>,
    /// At home, for a simulcast layer: the arrival-rate monitor and when it is read next.
    rate: Option<(RateMonitor, Instant)>,
}

#[derive(Default)]
struct Call {
    sessions: BTreeSet<Arc<str>>,
    screen_sharer: Option<Arc<str>>,
    tracks: FastMap<Arc<str>, PublishedTrack>,
}

/// All sessions and calls of one worker.
pub struct Media {
    worker: usize,
    engine: Engine,
    settings: MediaSettings,
    candidates: LocalCandidates,
    notices: NoticeTx,
    stats: Arc<WorkerStats>,
    sessions: FastMap<SessionKey, Session>,
    calls: FastMap<CallKey, Call>,
    by_ufrag: FastMap<String, SessionKey>,
    by_addr: FastMap<(Protocol, SocketAddr), SessionKey>,
    transmits: Vec<Transmit>,
    /// Sessions with queued output to drain at the end of the current input.
    dirty: FastSet<SessionKey>,
    /// Server offers held until the client has acknowledged the MediaMap before them.
    deferred: Vec<Deferred>,
    /// Sessions marked dead since the last `finish`.
    dying: Vec<SessionKey>,
    /// Session timers: a min-heap with lazy deletion (an entry is live while it equals its
    /// session's `scheduled`), so a loop turn costs O(expired), not O(sessions).
    timers: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    /// Sessions whose timers may have changed during the current input.
    touched: FastSet<SessionKey>,
    /// Number of workers (for broadcasts to the others).
    workers: usize,
    /// Messages for other workers: (destination, message).
    peer_out: Vec<(usize, PeerMsg)>,
    /// Packets for subscribers on other workers: (destination, packet).
    fwd_out: Vec<(usize, Forwarded)>,
}

/// A WebSocket server offer waiting for its MediaMap to be acknowledged on the data channel
/// (SCTP SACK), so the client never sees the offer first (spec §4.6.4: the webapp ignores
/// video without a MediaMap entry). Released after [`MEDIA_MAP_WAIT`] at the latest.
struct Deferred {
    key: SessionKey,
    notice: Notice,
    until: Option<Instant>,
}

/// Longest a server offer waits for the MediaMap's acknowledgement.
const MEDIA_MAP_WAIT: Duration = Duration::from_millis(250);

impl Media {
    pub fn new(
        worker: usize,
        engine: Engine,
        settings: MediaSettings,
        candidates: LocalCandidates,
        notices: NoticeTx,
        stats: Arc<WorkerStats>,
    ) -> Media {
        Media {
            worker,
            engine,
            settings,
            candidates,
            notices,
            stats,
            sessions: FastMap::default(),
            calls: FastMap::default(),
            by_ufrag: FastMap::default(),
            by_addr: FastMap::default(),
            transmits: Vec::new(),
            dirty: FastSet::default(),
            deferred: Vec::new(),
            dying: Vec::new(),
            timers: BinaryHeap::new(),
            touched: FastSet::default(),
            workers: 1,
            peer_out: Vec::new(),
            fwd_out: Vec::new(),
        }
    }

    /// Tells this worker how many workers share its calls (default 1: none).
    pub fn set_workers(&mut self, workers: usize) {
        self.workers = workers.max(1);
    }

    /// Messages for other workers produced since the last call.
    pub fn drain_peer_msgs(&mut self, out: &mut Vec<(usize, PeerMsg)>) {
        out.append(&mut self.peer_out);
    }

    /// Packets for other workers produced since the last call.
    pub fn drain_forwarded(&mut self, out: &mut Vec<(usize, Forwarded)>) {
        out.append(&mut self.fwd_out);
    }

    fn broadcast(&mut self, msg: PeerMsg) {
        broadcast_to(&mut self.peer_out, self.workers, self.worker, msg);
    }

    /// Whether `source` proved itself by a STUN check with a session's credentials (and that
    /// session still lives).
    pub fn knows_source(&self, proto: Protocol, source: SocketAddr) -> bool {
        self.by_addr.contains_key(&(proto, source))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Appends produced datagrams to `out` (reuses the caller's buffer).
    pub fn drain_transmits(&mut self, out: &mut Vec<Transmit>) {
        out.append(&mut self.transmits);
    }

    /// Releases notices held until the datagrams taken with [`Media::drain_transmits`] were
    /// sent (server offers after their MediaMap).
    pub fn release_deferred(&mut self, now: Instant) {
        if self.deferred.is_empty() {
            return;
        }
        let mut keep = Vec::new();
        for mut d in std::mem::take(&mut self.deferred) {
            let until = *d.until.get_or_insert(now + MEDIA_MAP_WAIT);
            let acked = match self.sessions.get_mut(&d.key) {
                Some(s) => match s.dc {
                    Some(id) => guard(|| s.rtc.channel(id).map(|mut c| c.buffered_amount()))
                        .ok()
                        .flatten()
                        .is_none_or(|n| n == 0),
                    None => true,
                },
                None => true,
            };
            if acked || until <= now {
                emit(&self.notices, &self.stats, d.notice);
            } else {
                keep.push(d);
            }
        }
        self.deferred = keep;
    }

    /// The earliest time `handle_timeout` must run (may be early: a timer that moved
    /// later fires once more and is rescheduled).
    pub fn poll_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, key))) = self.timers.peek() {
            if self.sessions.get(key).and_then(|s| s.scheduled) == Some(*t) {
                return Some(*t);
            }
            self.timers.pop(); // stale
        }
        None
    }

    /// Recomputes the next wake-up of the sessions touched by the last input.
    fn reschedule_touched(&mut self) {
        for key in self.touched.drain() {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            let next = [
                Some(s.deadline),
                s.offer_deadline,
                s.pending.as_ref().map(|p| p.deadline),
                s.lock_wait_deadline(),
                s.answered().then_some(s.failure_check),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                continue;
            };
            if s.scheduled.is_none_or(|t| next < t) {
                s.scheduled = Some(next);
                self.timers.push(Reverse((next, key)));
            }
        }
    }

    fn notify(&self, n: Notice) {
        emit(&self.notices, &self.stats, n);
    }

    fn stat(&self, e: StatEvent) {
        self.notify(Notice::Stat(e));
    }

    fn error(&self, key: &SessionKey, kind: &'static str) {
        self.stat(StatEvent::Error {
            group_id: key.group_id.clone(),
            kind,
        });
    }

    // ----------------------------------------------------------------- commands

    /// `join`: create the session and wait for its first offer.
    pub fn handle_join(&mut self, info: SessionInfo, now: Instant) {
        let key = info.key.clone();
        if self.sessions.contains_key(&key) {
            tracing::warn!(session = %key, "duplicate join on worker ignored");
            return;
        }
        let creds = new_ice_creds(self.worker);
        let ufrag = creds.ufrag.clone();
        let mut rtc = self.engine.build(creds, now);
        let mut lines = Vec::new();
        for addr in &self.candidates.udp {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                if let Some(c) = rtc.add_local_candidate(c) {
                    lines.push(c.to_sdp_string());
                }
            }
        }
        for addr in &self.candidates.tcp {
            if let Ok(c) = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
            {
                if let Some(c) = rtc.add_local_candidate(c) {
                    lines.push(c.to_sdp_string());
                }
            }
        }
        let call_key: CallKey = (key.group_id.clone(), info.call_id.clone());
        self.calls
            .entry(call_key)
            .or_default()
            .sessions
            .insert(key.session_id.clone());
        self.by_ufrag.insert(ufrag.clone(), key.clone());
        self.touched.insert(key.clone());
        self.sessions.insert(
            key,
            Session {
                info,
                rtc,
                ufrag,
                deadline: now,
                offer_deadline: Some(now + self.settings.signaling_timeout),
                joined_at: now,
                offer_at: None,
                connected: false,
                last_rx: now,
                failure_check: now + self.settings.failed_after,
                scheduled: None,
                early_candidates: Vec::new(),
                local_candidate_lines: lines,
                dc: None,
                initialized: false,
                lock: Lock::Free,
                lock_wait_since: None,
                pending: None,
                actions: VecDeque::new(),
                screen_stream: None,
                video_stream: None,
                muted: false,
                vad: VoiceActivity::new(),
                inbound: FastMap::default(),
                ssrc_source: FastMap::default(),
                outbound: FastMap::default(),
                mid_track: FastMap::default(),
                dead: None,
                bwe_bps: 0,
                recent_bwe: VecDeque::new(),
                bwe_settle: None,
                layers: LayerController::new(),
            },
        );
        self.reschedule_touched();
    }

    /// An `rtc` message from the plugin.
    pub fn handle_signal(
        &mut self,
        key: &SessionKey,
        msg_type: MessageType,
        data: &[u8],
        now: Instant,
    ) {
        if !self.sessions.contains_key(key) {
            tracing::debug!(session = %key, "signal for unknown session dropped");
            return;
        }
        self.touched.insert(key.clone());
        match msg_type {
            MessageType::Sdp => match signaling::parse_sdp(data) {
                Ok(m) => match m.kind {
                    SdpKind::Offer => self.client_offer(key, m.sdp, Path::Ws, now),
                    SdpKind::Answer => self.client_answer(key, m.sdp, now),
                },
                Err(e) => {
                    tracing::warn!(session = %key, error = %e, "invalid SDP message");
                    self.error(key, "signaling");
                }
            },
            MessageType::Ice => self.remote_candidate(key, data, now),
            MessageType::Mute => self.set_muted(key, true),
            MessageType::Unmute => self.set_muted(key, false),
            MessageType::ScreenOn => match signaling::parse_screen_on(data) {
                Ok(stream) => self.screen_on(key, stream),
                Err(e) => tracing::warn!(session = %key, error = %e, "invalid ScreenOn"),
            },
            MessageType::ScreenOff => self.screen_off(key, now),
            MessageType::VideoOn => match signaling::parse_video_on(data) {
                Ok(stream) => {
                    if let Some(s) = self.sessions.get_mut(key) {
                        s.video_stream = Some(stream);
                    }
                }
                Err(e) => tracing::warn!(session = %key, error = %e, "invalid VideoOn"),
            },
            // rtcd: VideoOff does nothing; clients stop their own tracks.
            MessageType::VideoOff => {}
            other => {
                tracing::warn!(session = %key, msg_type = ?other, "unexpected rtc message type");
                self.error(key, "signaling");
            }
        }
        self.finish(now);
    }

    /// `leave`.
    pub fn handle_leave(&mut self, key: &SessionKey, now: Instant) {
        self.close_session(key, CloseReason::Leave, now);
        self.finish(now);
    }

    /// Closes every session (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let keys: Vec<SessionKey> = self.sessions.keys().cloned().collect();
        for k in keys {
            self.close_session(&k, CloseReason::Shutdown, now);
        }
        self.finish(now);
    }

    // ----------------------------------------------------------------- network input

    /// Which of our sessions a datagram belongs to, if any: STUN by our ufrag, else by the
    /// remote address learnt from ICE.
    pub fn route(
        &self,
        proto: Protocol,
        source: SocketAddr,
        ufrag: Option<&str>,
    ) -> Option<&SessionKey> {
        if let Some(u) = ufrag {
            if let Some(k) = self.by_ufrag.get(u) {
                return Some(k);
            }
        }
        self.by_addr.get(&(proto, source))
    }

    /// A datagram for this worker, which arrived at `arrival` (the kernel's receive time
    /// where known: what transport-wide congestion control feedback reports). Unknown
    /// senders are dropped and counted. Call [`Media::end_input`] after a batch: the
    /// subscribers a batch's packets were forwarded to are pumped once per batch, not once
    /// per packet.
    pub fn handle_receive(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
        arrival: Instant,
        now: Instant,
    ) {
        let ufrag = rtcd_proto::stun::binding_request_local_ufrag(bytes);
        let Some(key) = self.route(proto, source, ufrag).cloned() else {
            self.stats.dropped(DropReason::UnknownSource);
            return;
        };
        let recv = match Receive::new(proto, source, destination, bytes) {
            Ok(r) => r,
            Err(_) => {
                self.stats.dropped(DropReason::Malformed);
                return;
            }
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.dead.is_some() {
            // Failed earlier in this batch; closed at the end of it.
            return;
        }
        let input = Input::Receive(arrival, recv);
        if ufrag.is_some() && !s.rtc.accepts(&input) {
            self.stats.dropped(DropReason::BadStun);
            return;
        }
        s.last_rx = now;
        if ufrag.is_some() {
            self.by_addr.insert((proto, source), key.clone());
        }
        self.stats.rx(bytes.len());
        let res = feed(&mut s.rtc, input);
        self.after_input(&key, res, now);
    }

    /// Timers: str0m deadlines, signaling and answer timeouts, connection failure.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((t, key))) = self.timers.pop() else {
                break;
            };
            if let Some(s) = self.sessions.get_mut(&key) {
                if s.scheduled == Some(t) {
                    s.scheduled = None;
                    due.push(key);
                }
            }
        }
        for key in due {
            self.touched.insert(key.clone());
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            if s.answered() && s.failure_check <= now {
                // Traffic moved the failure check on since it was scheduled.
                s.failure_check = s.last_rx + self.settings.failed_after;
            }
            if s.offer_deadline.is_some_and(|d| d <= now) {
                tracing::info!(session = %key, "no offer within the signaling timeout");
                self.close_session(&key, CloseReason::SignalingTimeout, now);
                continue;
            }
            if s.answered() && s.failure_check <= now {
                tracing::info!(session = %key, "no traffic: connection failed");
                self.stat(StatEvent::ConnState { state: "failed" });
                self.close_session(&key, CloseReason::ConnectionFailed, now);
                continue;
            }
            if s.lock_wait_deadline().is_some_and(|d| d <= now) {
                // rtcd: the track action gives up after 5 s without the lock.
                let dropped = s.actions.pop_front();
                s.lock_wait_since = (!s.actions.is_empty()).then_some(now);
                tracing::warn!(session = %key, action = ?dropped, "signaling lock timeout; track action dropped");
                emit_stat(
                    &self.notices,
                    &self.stats,
                    StatEvent::Error {
                        group_id: key.group_id.clone(),
                        kind: "signaling_lock_timeout",
                    },
                );
            }
            if let Some(p) = s.pending.as_mut().filter(|p| p.deadline <= now) {
                if !p.overdue {
                    // rtcd gives up on the action after 10 s. We keep waiting instead: the
                    // browser may still apply this offer (a starved tab answers late), and
                    // dropping str0m's pending offer would leave the two sides with
                    // different m-lines for good. A client silent for 30 s is closed.
                    p.overdue = true;
                    p.deadline = now + OVERDUE_ANSWER_LIMIT;
                    tracing::warn!(session = %key, action = ?p.action, "no answer to server offer within 10 s; still waiting");
                    self.error(&key, "track");
                } else {
                    tracing::warn!(session = %key, "server offer never answered; closing the session");
                    self.close_session(&key, CloseReason::SignalingFailed, now);
                    continue;
                }
            }
            if let Some(s) = self.sessions.get_mut(&key) {
                if s.deadline <= now {
                    let res = feed(&mut s.rtc, Input::Timeout(now));
                    self.after_input(&key, res, now);
                }
            }
        }
        self.finish(now);
    }

    // ----------------------------------------------------------------- internals

    /// Drains a session after an input and handles its events.
    fn after_input(&mut self, key: &SessionKey, res: Result<(), String>, now: Instant) {
        if let Err(e) = res {
            tracing::warn!(session = %key, error = %e, "session input failed");
            self.mark_dead(key, CloseReason::Internal);
            return;
        }
        self.drain(key, now);
    }

    fn mark_dead(&mut self, key: &SessionKey, reason: CloseReason) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.dead.get_or_insert(reason);
            self.dying.push(key.clone());
        }
    }

    /// Polls a session until its next timeout, handling events (bounded).
    fn drain(&mut self, key: &SessionKey, now: Instant) {
        self.touched.insert(key.clone());
        for _ in 0..MAX_PUMP_ROUNDS {
            let mut events = Vec::new();
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            let polled = guard(|| loop {
                match s.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => return Ok(t),
                    Ok(Output::Transmit(t)) => self.transmits.push(Transmit {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    }),
                    Ok(Output::Event(e)) => events.push(e),
                    Err(e) => return Err(e.to_string()),
                }
            });
            let deadline = match polled.and_then(|r| r) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(session = %key, error = %e, "session output failed");
                    self.mark_dead(key, CloseReason::Internal);
                    return;
                }
            };
            s.deadline = deadline;
            for e in events {
                self.handle_event(key, e, now);
            }
            // Poll again only if handling the events fed this session new input, or its
            // deadline is already due.
            let wrote = self.dirty.remove(key);
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            // With the estimator on, str0m's pacer releases one packet per timeout and asks
            // for the next one a microsecond later: release the rest of a burst (a video
            // frame) now, in this drain, instead of one packet per loop turn.
            let at = if !wrote && s.deadline > now {
                let step = s.rtc.last_timeout_reason() == Reason::Pacer(PacerReason::Immediate)
                    && s.deadline <= now + PACER_STEP;
                if !step {
                    return;
                }
                s.deadline
            } else {
                now
            };
            if feed(&mut s.rtc, Input::Timeout(at)).is_err() {
                self.mark_dead(key, CloseReason::Internal);
                return;
            }
        }
    }

    /// Ends an input: drains sessions that got forwarded media or writes, closes the dead.
    fn finish(&mut self, now: Instant) {
        for _ in 0..MAX_PUMP_ROUNDS {
            if self.dirty.is_empty() {
                break;
            }
            let dirty: Vec<SessionKey> = self.dirty.drain().collect();
            for key in dirty {
                if let Some(s) = self.sessions.get_mut(&key) {
                    // write_rtp only queues; a timeout stamps and releases the packets.
                    let res = feed(&mut s.rtc, Input::Timeout(now));
                    self.after_input(&key, res, now);
                }
            }
        }
        // Only the sessions marked dead since the last input (not a scan of all sessions).
        while let Some(k) = self.dying.pop() {
            if let Some(r) = self.sessions.get(&k).and_then(|s| s.dead) {
                self.close_session(&k, r, now);
            }
        }
        // Closing may have queued renegotiations elsewhere.
        let dirty: Vec<SessionKey> = self.dirty.drain().collect();
        for key in dirty {
            if let Some(s) = self.sessions.get_mut(&key) {
                let res = feed(&mut s.rtc, Input::Timeout(now));
                self.after_input(&key, res, now);
            }
        }
        self.reschedule_touched();
    }

    fn handle_event(&mut self, key: &SessionKey, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                if let Some(s) = self.sessions.get_mut(key) {
                    s.connected = true;
                    let secs = now.saturating_duration_since(s.joined_at).as_secs_f64();
                    self.stat(StatEvent::ConnState { state: "connected" });
                    self.stat(StatEvent::ConnectionTime {
                        group_id: key.group_id.clone(),
                        seconds: secs,
                    });
                }
            }
            Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                self.stat(StatEvent::ConnState {
                    state: "disconnected",
                });
            }
            Event::ChannelOpen(id, label) => self.channel_open(key, id, &label, now),
            Event::ChannelData(d) => self.channel_data(key, d.id, d.binary, &d.data, now),
            Event::ChannelClose(_) => {}
            Event::RtpPacket(p) => self.rtp(key, p, now),
            Event::KeyframeRequest(r) => self.keyframe_request(key, r.mid, now),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.bandwidth_estimate(key, estimate.as_u64(), now)
            }

            Event::Closed => self.mark_dead(key, CloseReason::ConnectionFailed),
            _ => {}
        }
    }

    fn remote_candidate(&mut self, key: &SessionKey, data: &[u8], now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.offer_deadline.is_some() {
            // rtcd: candidates before the first offer are buffered (up to 40).
            if s.early_candidates.len() < MAX_EARLY_CANDIDATES {
                s.early_candidates.push(data.to_vec());
            } else {
                self.error(key, "ice");
            }
            return;
        }
        match signaling::parse_candidate(data) {
            Ok(None) => {}
            Ok(Some(c)) => match Candidate::from_sdp_string(&c.candidate) {
                Ok(cand) => {
                    let res = guard(|| {
                        s.rtc.add_remote_candidate(cand);
                    });
                    self.after_input(key, res, now);
                }
                // mDNS (.local) candidates and other forms str0m does not parse.
                Err(e) => tracing::debug!(session = %key, error = %e, "remote candidate ignored"),
            },
            Err(e) => {
                tracing::warn!(session = %key, error = %e, "invalid ICE candidate");
                self.error(key, "ice");
            }
        }
    }

    /// A client offer (initial or renegotiation), over WS or the data channel.
    fn client_offer(&mut self, key: &SessionKey, sdp: String, path: Path, now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.pending.is_some() {
            // rtcd is the impolite peer: a colliding client offer is ignored.
            tracing::debug!(session = %key, "client offer ignored while our offer is pending");
            return;
        }
        // The first offer fixes the DTLS role. An `actpass` offerer lets us choose: we take
        // the client role (`a=setup:active`), as upstream (pion answers active) and RFC 5763
        // §5 recommend; str0m would otherwise answer passive and be the DTLS server.
        if s.offer_deadline.is_some() && offer_leaves_dtls_role_to_us(&sdp) {
            match guard(|| s.rtc.direct_api().start_dtls(true)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(session = %key, error = %e, "cannot start DTLS"),
                Err(e) => tracing::error!(session = %key, error = %e, "panic while starting DTLS"),
            }
        }
        let result = match SdpOffer::from_sdp_string(&narrow_offer(&sdp)) {
            Err(e) => Err(format!("unparseable offer: {e}")),
            Ok(offer) => match guard(|| s.rtc.sdp_api().accept_offer(offer)) {
                Ok(r) => r.map_err(|e| format!("offer rejected: {e}")),
                Err(e) => {
                    tracing::error!(session = %key, error = %e, "panic while accepting offer");
                    s.dead = Some(CloseReason::Internal);
                    self.dying.push(key.clone());
                    return;
                }
            },
        };
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(session = %key, error = %e, "client offer failed");
                emit_stat(
                    &self.notices,
                    &self.stats,
                    StatEvent::Error {
                        group_id: key.group_id.clone(),
                        kind: "signaling",
                    },
                );
                // A failed first offer ends the session (rtcd); a failed renegotiation
                // leaves it as it was.
                if s.offer_deadline.is_some() {
                    s.dead = Some(CloseReason::SignalingFailed);
                    self.dying.push(key.clone());
                }
                return;
            }
        };
        // A client ICE restart replaces our ufrag: keep the demux table in step.
        let creds = s.rtc.direct_api().local_ice_credentials();
        if creds.ufrag != s.ufrag {
            self.by_ufrag.remove(&s.ufrag);
            s.ufrag = creds.ufrag.clone();
            self.by_ufrag.insert(creds.ufrag, key.clone());
        }
        let first = s.offer_deadline.take().is_some();
        if first {
            s.offer_at = Some(now);
        }
        let answer_sdp = answer.to_sdp_string();
        self.send_sdp(key, SdpKind::Answer, &answer_sdp, path);
        if first {
            self.trickle_local_candidates(key, &answer_sdp);
            let early = self
                .sessions
                .get_mut(key)
                .map(|s| std::mem::take(&mut s.early_candidates))
                .unwrap_or_default();
            for c in early {
                self.remote_candidate(key, &c, now);
            }
        }
        self.drain(key, now);
    }

    fn client_answer(&mut self, key: &SessionKey, sdp: String, now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(p) = s.pending.take() else {
            tracing::debug!(session = %key, "answer without a pending offer ignored");
            return;
        };
        let answer = match SdpAnswer::from_sdp_string(&sdp) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(session = %key, error = %e, "unparseable answer");
                s.lock = Lock::Free;
                self.error(key, "signaling");
                return;
            }
        };
        let res = guard(|| s.rtc.sdp_api().accept_answer(p.offer, answer));
        s.lock = Lock::Free;
        match res {
            Ok(Ok(())) => {
                if let (TrackAction::Add(t), Some(mid)) = (&p.action, p.mid) {
                    let codec = self.track_codec(key, t);
                    if let (Some(s), Some(codec)) = (self.sessions.get_mut(key), codec) {
                        s.outbound.insert(
                            t.clone(),
                            OutTrack {
                                mid,
                                codec,
                                roc_base: None,
                                ssrc: None,
                            },
                        );
                        s.mid_track.insert(mid, t.clone());
                        self.subscribe(key, t, now);
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(session = %key, error = %e, "answer rejected");
                self.error(key, "track");
            }
            Err(_) => self.mark_dead(key, CloseReason::Internal),
        }
        self.drain(key, now);
        self.process_actions(key, now);
    }

    fn track_codec(&self, key: &SessionKey, track: &str) -> Option<Codec> {
        let s = self.sessions.get(key)?;
        let call = self
            .calls
            .get(&(key.group_id.clone(), s.info.call_id.clone()))?;
        call.tracks.get(track).map(|t| t.codec)
    }

    /// A subscriber's m-line for `track` is negotiated: start forwarding and ask the
    /// publisher for a keyframe so the new viewer gets a picture at once.
    fn subscribe(&mut self, key: &SessionKey, track: &Arc<str>, now: Instant) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let Some(t) = call.tracks.get_mut(track) else {
            return;
        };
        t.subscribers.insert(key.session_id.clone());
        emit_stat(
            &self.notices,
            &self.stats,
            StatEvent::Track {
                group_id: key.group_id.clone(),
                direction: "out",
                mime: mime(t.codec),
                delta: 1,
            },
        );
        let video = t.media == MediaKind::Video;
        let home = t.home;
        if home != self.worker {
            self.sync_remote_subscription(&call_key, track);
            if video {
                self.peer_out.push((
                    home,
                    PeerMsg::Keyframe {
                        call: call_key,
                        track: track.clone(),
                    },
                ));
            }
            return;
        }
        if video {
            let (publisher, mid, rid) = (t.publisher.clone(), t.mid, t.rid);
            if t.pli.allow(now) {
                self.request_keyframe(
                    &SessionKey {
                        group_id: key.group_id.clone(),
                        session_id: publisher,
                    },
                    mid,
                    rid,
                    now,
                );
            }
        }
    }

    fn request_keyframe(
        &mut self,
        publisher: &SessionKey,
        mid: Mid,
        rid: Option<Rid>,
        now: Instant,
    ) {
        if let Some(p) = self.sessions.get_mut(publisher) {
            let res = guard(|| {
                if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                }
            });
            self.after_input(publisher, res, now);
        }
    }

    fn trickle_local_candidates(&mut self, key: &SessionKey, answer_sdp: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let first_mid = answer_sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .unwrap_or("0")
            .trim()
            .to_string();
        for line in &s.local_candidate_lines {
            let line = line.strip_prefix("a=").unwrap_or(line);
            self.notify(Notice::Signal {
                key: key.clone(),
                msg_type: MessageType::Ice,
                data: signaling::candidate_json(line, &first_mid, 0),
            });
        }
    }

    fn send_sdp(&mut self, key: &SessionKey, kind: SdpKind, sdp: &str, path: Path) {
        let json = signaling::sdp_json(kind, sdp);
        match path {
            // A server offer must reach the client after the MediaMap that precedes it on the
            // data channel: it is held until the worker has sent this turn's datagrams.
            Path::Ws if kind == SdpKind::Offer => self.deferred.push(Deferred {
                key: key.clone(),
                notice: Notice::Signal {
                    key: key.clone(),
                    msg_type: MessageType::Sdp,
                    data: json,
                },
                until: None,
            }),
            Path::Ws => self.notify(Notice::Signal {
                key: key.clone(),
                msg_type: MessageType::Sdp,
                data: json,
            }),
            Path::Dc => {
                let msg = DcMessage::Sdp(dc::compress_sdp(&json));
                self.dc_send(key, &msg);
            }
        }
    }

    fn dc_send(&mut self, key: &SessionKey, msg: &DcMessage) {
        let mut buf = Vec::new();
        dc::encode_dc(msg, &mut buf);
        self.dc_write(key, true, &buf);
    }

    fn dc_write(&mut self, key: &SessionKey, binary: bool, bytes: &[u8]) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(id) = s.dc else {
            return;
        };
        let ok = guard(|| {
            s.rtc
                .channel(id)
                .map(|mut ch| ch.write(binary, bytes).unwrap_or(false))
                .unwrap_or(false)
        });
        if !matches!(ok, Ok(true)) {
            self.stats.dropped(DropReason::DataChannelFull);
        }
        self.dirty.insert(key.clone());
    }

    fn channel_open(&mut self, key: &SessionKey, id: ChannelId, label: &str, now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if label != "calls-dc" {
            tracing::debug!(session = %key, label, "ignoring unexpected data channel");
            return;
        }
        s.dc = Some(id);
        s.initialized = true;
        if let Some(t) = s.offer_at {
            let secs = now.saturating_duration_since(t).as_secs_f64();
            self.stat(StatEvent::DcOpenTime {
                group_id: key.group_id.clone(),
                seconds: secs,
            });
        }
        // rtcd: only now is the session subscribed to the call's existing tracks.
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let receiver_av1 = s.info.av1_support;
        let mut adds = Vec::new();
        if let Some(call) = self.calls.get(&call_key) {
            for t in call.tracks.values() {
                if t.publisher == key.session_id {
                    continue;
                }
                let publisher_av1 = t.publisher_av1;
                // Simulcast: new receivers start on the low layer (rtcd).
                let default_layer = t.rid.is_none_or(|r| &*r == "l");
                if default_layer && wants(t, receiver_av1, publisher_av1) {
                    adds.push(t.id.clone());
                }
            }
        }
        adds.sort();
        for t in adds {
            self.enqueue(key, TrackAction::Add(t));
        }
        self.process_actions(key, now);
    }

    fn channel_data(
        &mut self,
        key: &SessionKey,
        _id: ChannelId,
        binary: bool,
        data: &[u8],
        now: Instant,
    ) {
        let msg = match dc::decode_dc(data) {
            Ok(DcInbound::LegacyTextPing) => {
                self.dc_write(key, false, dc::LEGACY_PONG);
                return;
            }
            Ok(DcInbound::Message(m)) => m,
            Err(e) => {
                tracing::debug!(session = %key, binary, error = %e, "invalid data channel message");
                self.stats.dropped(DropReason::Malformed);
                self.error(key, "signaling");
                return;
            }
        };
        match msg {
            DcMessage::Ping => self.dc_send(key, &DcMessage::Pong),
            DcMessage::Pong => {}
            DcMessage::Sdp(z) => match dc::inflate_sdp(&z, dc::MAX_SDP_LEN)
                .map_err(|e| e.to_string())
                .and_then(|j| signaling::parse_sdp(&j).map_err(|e| e.to_string()))
            {
                Ok(m) => match m.kind {
                    SdpKind::Offer => self.client_offer(key, m.sdp, Path::Dc, now),
                    SdpKind::Answer => self.client_answer(key, m.sdp, now),
                },
                Err(e) => {
                    tracing::warn!(session = %key, error = %e, "invalid SDP over data channel");
                    self.error(key, "signaling");
                }
            },
            DcMessage::LossRate(v) => self.client_stat(key, "loss_rate", v),
            DcMessage::RoundTripTime(v) => self.client_stat(key, "rtt", v),
            DcMessage::Jitter(v) => self.client_stat(key, "jitter", v),
            DcMessage::LockRequest => {
                let granted = match self.sessions.get_mut(key) {
                    Some(s) if s.lock == Lock::Free && s.pending.is_none() => {
                        s.lock = Lock::Client(now);
                        true
                    }
                    _ => false,
                };
                self.dc_send(key, &DcMessage::LockResponse(granted));
            }
            DcMessage::Unlock => {
                let held = match self.sessions.get_mut(key) {
                    Some(s) => match s.lock {
                        Lock::Client(since) => {
                            s.lock = Lock::Free;
                            Some(since)
                        }
                        _ => None,
                    },
                    None => None,
                };
                match held {
                    Some(since) => {
                        self.stat(StatEvent::LockHeld {
                            group_id: key.group_id.clone(),
                            seconds: now.saturating_duration_since(since).as_secs_f64(),
                        });
                        self.process_actions(key, now);
                    }
                    None => {
                        tracing::debug!(session = %key, "unlock while not locked by the client")
                    }
                }
            }
            DcMessage::LockResponse(_) | DcMessage::MediaMap(_) => {
                tracing::debug!(session = %key, "unexpected data channel message from client");
            }
        }
    }

    fn client_stat(&self, key: &SessionKey, metric: &'static str, value: f64) {
        if value.is_finite() {
            self.stat(StatEvent::Client {
                group_id: key.group_id.clone(),
                metric,
                value,
            });
        }
    }

    fn set_muted(&mut self, key: &SessionKey, muted: bool) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let has_voice = s
            .inbound
            .values()
            .flatten()
            .any(|t| track::parse_track_id(t).is_some_and(|(k, _)| k == TrackKind::Voice));
        if !has_voice {
            // rtcd: mute/unmute before the voice track exists is ignored.
            return;
        }
        s.muted = muted;
        if muted {
            s.vad.reset();
            // rtcd: Mute always emits VoiceOff.
            self.notify(Notice::Vad {
                key: key.clone(),
                on: false,
            });
        }
    }

    fn screen_on(&mut self, key: &SessionKey, stream: String) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.screen_stream = Some(stream);
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let call = self.calls.entry(call_key.clone()).or_default();
        match &call.screen_sharer {
            None => {
                call.screen_sharer = Some(key.session_id.clone());
                self.broadcast(PeerMsg::ScreenSharer {
                    call: call_key,
                    sharer: Some(key.session_id.clone()),
                    from: self.worker,
                });
            }
            Some(other) if *other == key.session_id => {}
            Some(other) => {
                // rtcd: one sharer per call.
                tracing::warn!(session = %key, sharer = %other, "screen share refused: call already has a sharer");
            }
        }
    }

    fn screen_off(&mut self, key: &SessionKey, now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.screen_sharer.as_deref() != Some(&*key.session_id) {
            tracing::warn!(session = %key, "ScreenOff from a session that is not sharing");
            return;
        }
        s.screen_stream = None;
        clear_sharer(
            call,
            &call_key,
            &mut self.peer_out,
            self.workers,
            self.worker,
        );
        // Screen video is removed at receivers by renegotiation; screen audio just stops.
        let screen: Vec<Arc<str>> = call
            .tracks
            .values()
            .filter(|t| {
                t.publisher == key.session_id
                    && matches!(t.kind, TrackKind::Screen | TrackKind::ScreenAudio)
            })
            .map(|t| t.id.clone())
            .collect();
        s.inbound
            .retain(|_, t| t.as_ref().is_none_or(|t| !screen.contains(t)));
        self.unpublish(&call_key, &screen, now);
    }

    /// Removes tracks from a call: video via a renegotiated removal at each subscriber,
    /// audio by just no longer writing it (rtcd, spec §5.11).
    fn unpublish(&mut self, call_key: &CallKey, tracks: &[Arc<str>], now: Instant) {
        let Some(call) = self.calls.get_mut(call_key) else {
            return;
        };
        let mut removals = Vec::new();
        let mut gone = Vec::new();
        for id in tracks {
            if let Some(t) = call.tracks.remove(id) {
                if t.home == self.worker {
                    gone.push(t.id.clone());
                    emit_stat(
                        &self.notices,
                        &self.stats,
                        StatEvent::Track {
                            group_id: call_key.0.clone(),
                            direction: "in",
                            mime: mime(t.codec),
                            delta: -1,
                        },
                    );
                }
                for sub in &t.subscribers {
                    removals.push((sub.clone(), t.id.clone(), t.media, t.codec));
                }
            }
        }
        for (sub, track, media, codec) in removals {
            let key = SessionKey {
                group_id: call_key.0.clone(),
                session_id: sub,
            };
            self.stat(StatEvent::Track {
                group_id: call_key.0.clone(),
                direction: "out",
                mime: mime(codec),
                delta: -1,
            });
            if media == MediaKind::Video {
                self.enqueue(&key, TrackAction::Remove(track));
                self.process_actions(&key, now);
            } else if let Some(s) = self.sessions.get_mut(&key) {
                if let Some(o) = s.outbound.remove(&track) {
                    s.mid_track.remove(&o.mid);
                }
            }
        }
        for track in gone {
            self.broadcast(PeerMsg::Unpublished {
                call: call_key.clone(),
                track,
            });
        }
        self.forget_call_if_empty(call_key);
        // Queued adds of tracks that are gone are skipped when processed.
    }

    fn forget_call_if_empty(&mut self, call_key: &CallKey) {
        if self.calls.get(call_key).is_some_and(|c| {
            c.sessions.is_empty() && c.tracks.is_empty() && c.screen_sharer.is_none()
        }) {
            self.calls.remove(call_key);
        }
    }

    /// Tells a remote track's home whether this worker still has subscribers of it.
    fn sync_remote_subscription(&mut self, call_key: &CallKey, track: &Arc<str>) {
        let Some(t) = self
            .calls
            .get_mut(call_key)
            .and_then(|c| c.tracks.get_mut(track))
        else {
            return;
        };
        if t.home == self.worker {
            return;
        }
        let want = !t.subscribers.is_empty();
        if want != t.remote_subscribed {
            t.remote_subscribed = want;
            self.peer_out.push((
                t.home,
                PeerMsg::Subscribe {
                    call: call_key.clone(),
                    track: track.clone(),
                    from: self.worker,
                    on: want,
                },
            ));
        }
    }

    /// A message from another worker.
    pub fn handle_peer(&mut self, msg: PeerMsg, now: Instant) {
        match msg {
            PeerMsg::Published(m) => {
                if m.home == self.worker {
                    return;
                }
                let call = self.calls.entry(m.call.clone()).or_default();
                call.tracks.insert(
                    m.id.clone(),
                    PublishedTrack {
                        id: m.id.clone(),
                        publisher: m.publisher.clone(),
                        kind: m.kind,
                        media: m.media,
                        codec: m.codec,
                        mid: m.mid,
                        rid: m.rid,
                        subscribers: BTreeSet::new(),
                        pli: KeyframeThrottle::new(),
                        publisher_av1: m.publisher_av1,
                        home: m.home,
                        remote: Vec::new(),
                        remote_subscribed: false,
                        rate_bps: None,
                        rate: None,
                    },
                );
                self.offer_to_receivers(&m.call, &m.id, now);
            }
            PeerMsg::Unpublished { call, track } => {
                let remote = self
                    .calls
                    .get(&call)
                    .and_then(|c| c.tracks.get(&track))
                    .is_some_and(|t| t.home != self.worker);
                if remote {
                    self.unpublish(&call, &[track], now);
                }
            }
            PeerMsg::Subscribe {
                call,
                track,
                from,
                on,
            } => {
                if let Some(t) = self
                    .calls
                    .get_mut(&call)
                    .and_then(|c| c.tracks.get_mut(&track))
                {
                    if t.home == self.worker {
                        t.remote.retain(|&w| w != from);
                        if on {
                            t.remote.push(from);
                        }
                    }
                }
            }
            PeerMsg::ScreenSharer { call, sharer, from } => {
                if from == self.worker {
                    return;
                }
                let c = self.calls.entry(call.clone()).or_default();
                match (&c.screen_sharer, sharer) {
                    // Another worker's sharer stopped: clear only if it was that one.
                    (Some(_), None) => {
                        c.screen_sharer = None;
                    }
                    (_, Some(s)) => c.screen_sharer = Some(s),
                    (None, None) => {}
                }
                self.forget_call_if_empty(&call);
            }
            PeerMsg::LayerRate { call, track, bps } => {
                if let Some(t) = self
                    .calls
                    .get_mut(&call)
                    .and_then(|c| c.tracks.get_mut(&track))
                {
                    if t.home != self.worker {
                        t.rate_bps = bps;
                        self.reevaluate_layers(&call, now);
                    }
                }
            }
            PeerMsg::Keyframe { call, track } => {
                let Some(t) = self
                    .calls
                    .get_mut(&call)
                    .and_then(|c| c.tracks.get_mut(&track))
                else {
                    return;
                };
                if t.home != self.worker {
                    return;
                }
                if !t.pli.allow(now) {
                    self.stats.dropped(DropReason::KeyframeThrottled);
                    return;
                }
                let (publisher, mid, rid) = (t.publisher.clone(), t.mid, t.rid);
                self.request_keyframe(
                    &SessionKey {
                        group_id: call.0.clone(),
                        session_id: publisher,
                    },
                    mid,
                    rid,
                    now,
                );
            }
        }
        self.finish(now);
    }

    fn enqueue(&mut self, key: &SessionKey, action: TrackAction) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.actions.len() >= MAX_ACTIONS {
            tracing::warn!(session = %key, "track action queue full; action dropped");
            self.stats.dropped(DropReason::ActionQueueFull);
            self.error(key, "track");
            return;
        }
        s.actions.push_back(action);
    }

    /// Runs the next queued track action as one server offer (spec §4.4), if the session is
    /// ready and the signaling lock is free.
    fn process_actions(&mut self, key: &SessionKey, now: Instant) {
        self.touched.insert(key.clone());
        loop {
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            if let Lock::Client(_) = s.lock {
                if !s.actions.is_empty() && s.lock_wait_since.is_none() {
                    s.lock_wait_since = Some(now);
                }
                return;
            }
            if !s.initialized || s.pending.is_some() || s.lock != Lock::Free || s.dead.is_some() {
                return;
            }
            s.lock_wait_since = None;
            let Some(action) = s.actions.pop_front() else {
                return;
            };
            let call_key = (key.group_id.clone(), s.info.call_id.clone());
            let (offer, mid) = match &action {
                TrackAction::Add(t) => {
                    if s.outbound.contains_key(t) {
                        continue;
                    }
                    let Some(track) = self.calls.get(&call_key).and_then(|c| c.tracks.get(t))
                    else {
                        continue; // published track went away meanwhile
                    };
                    let (kind, publisher) = (track.media, track.publisher.to_string());
                    let track_id = t.to_string();
                    let res = guard(|| {
                        let mut api = s.rtc.sdp_api();
                        let mid = api.add_media(
                            kind,
                            Direction::SendOnly,
                            Some(publisher),
                            Some(track_id),
                            None,
                        );
                        api.apply().map(|o| (o, mid))
                    });
                    match res {
                        Ok(Some((o, mid))) => (o, Some(mid)),
                        Ok(None) => continue,
                        Err(_) => {
                            s.dead = Some(CloseReason::Internal);
                            self.dying.push(key.clone());
                            return;
                        }
                    }
                }
                TrackAction::Remove(t) => {
                    let Some(out) = s.outbound.remove(t) else {
                        continue;
                    };
                    s.mid_track.remove(&out.mid);
                    let res = guard(|| {
                        let mut api = s.rtc.sdp_api();
                        api.set_direction(out.mid, Direction::Inactive);
                        api.apply()
                    });
                    match res {
                        Ok(Some(o)) => (o, None),
                        Ok(None) => continue,
                        Err(_) => {
                            s.dead = Some(CloseReason::Internal);
                            self.dying.push(key.clone());
                            return;
                        }
                    }
                }
            };
            let (sdp_offer, pending) = offer;
            s.lock = Lock::Server(now);
            s.pending = Some(PendingOffer {
                offer: pending,
                action,
                mid,
                deadline: now + self.settings.answer_timeout,
                overdue: false,
            });
            if let Some(m) = mid {
                if let TrackAction::Add(t) = &s
                    .pending
                    .as_ref()
                    .map(|p| p.action.clone())
                    .unwrap_or(TrackAction::Add(Arc::from("")))
                {
                    s.mid_track.insert(m, t.clone());
                }
            }
            let dc_signaling = s.info.dc_signaling;
            // rtcd: the MediaMap goes out before every server offer.
            let map = self.media_map(key);
            self.dc_send(key, &DcMessage::MediaMap(map));
            let path = if dc_signaling { Path::Dc } else { Path::Ws };
            self.send_sdp(key, SdpKind::Offer, &sdp_offer.to_sdp_string(), path);
            self.dirty.insert(key.clone());
            return;
        }
    }

    /// mid → {type, sender_id} for every m-line that sends a track, including the one being
    /// offered. Deliberate difference: `sender_id` is the publisher's session ID (upstream
    /// puts the receiver's own ID there, spec §12.7).
    fn media_map(&self, key: &SessionKey) -> Vec<(String, MediaMapEntry)> {
        let Some(s) = self.sessions.get(key) else {
            return Vec::new();
        };
        let mut out: Vec<(String, MediaMapEntry)> = s
            .mid_track
            .iter()
            .filter_map(|(mid, t)| {
                let (kind, publisher) = track::parse_track_id(t)?;
                Some((
                    mid.to_string(),
                    MediaMapEntry {
                        kind: kind.as_str().to_string(),
                        sender_id: publisher.to_string(),
                        mime_type: None,
                    },
                ))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A media packet from a publisher: publish its track on first sight, run VAD, and
    /// forward it to the call's subscribers.
    fn rtp(&mut self, key: &SessionKey, p: RtpPacket, now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let source = match s.ssrc_source.get(&p.header.ssrc) {
            Some(src) => *src,
            None => {
                let Some(rx) = s
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|r| (r.mid(), r.rid()))
                else {
                    return;
                };
                s.ssrc_source.insert(p.header.ssrc, rx);
                rx
            }
        };
        let track = match s.inbound.get(&source) {
            Some(t) => t.clone(),
            None => {
                let t = self.publish(key, source, p.header.payload_type, now);
                if let Some(s) = self.sessions.get_mut(key) {
                    s.inbound.insert(source, t.clone());
                }
                t
            }
        };
        let Some(track) = track else {
            self.stats.dropped(DropReason::RejectedTrack);
            return;
        };
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let kind = track::parse_track_id(&track).map(|(k, _)| k);
        if matches!(kind, Some(TrackKind::Voice | TrackKind::ScreenAudio)) {
            // rtcd: VAD runs on voice and screen audio, also while muted.
            if let Some(level) = p.header.ext_vals.audio_level {
                let level = level.unsigned_abs().min(127);
                if let Some(on) = s.vad.push(level, now) {
                    emit(
                        &self.notices,
                        &self.stats,
                        Notice::Vad {
                            key: key.clone(),
                            on,
                        },
                    );
                }
            }
        }
        if kind == Some(TrackKind::Voice) && s.muted {
            self.stats.dropped(DropReason::Muted);
            return;
        }
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let Some(t) = self
            .calls
            .get_mut(&call_key)
            .and_then(|c| c.tracks.get_mut(&track))
        else {
            return;
        };
        let mut rate_report = false;
        if let Some((monitor, next)) = &mut t.rate {
            // rtcd counts the whole RTP packet, header included.
            monitor.push(now, p.header.header_len + p.payload.len());
            if now >= *next {
                *next = now + LAYER_RATE_PERIOD;
                rate_report = true;
            }
        }
        let f = Forwarded {
            call: call_key,
            track,
            seq: *p.seq_no,
            rtp_time: p.header.timestamp,
            received: p.timestamp,
            marker: p.header.marker,
            audio_level: p.header.ext_vals.audio_level,
            voice_activity: p.header.ext_vals.voice_activity,
            video: t.media == MediaKind::Video,
            payload: p.payload,
        };
        // One copy per other worker hosting subscribers, then this worker's own.
        for &w in &t.remote {
            self.fwd_out.push((w, f.clone()));
        }
        self.deliver(&f);
        if rate_report {
            self.report_layer_rates(&f.call, now);
            self.reevaluate_layers(&f.call, now);
        }
    }

    /// Reads every simulcast layer measured here in the call afresh and tells the other
    /// workers. All layers together: a layer that stopped arriving has no packets of its
    /// own to trigger its report, and its falling rate is what lets viewers fall back.
    fn report_layer_rates(&mut self, call_key: &CallKey, now: Instant) {
        let Some(call) = self.calls.get_mut(call_key) else {
            return;
        };
        for t in call.tracks.values_mut() {
            if let Some((monitor, next)) = &mut t.rate {
                t.rate_bps = monitor.rate(now);
                *next = now + LAYER_RATE_PERIOD;
                broadcast_to(
                    &mut self.peer_out,
                    self.workers,
                    self.worker,
                    PeerMsg::LayerRate {
                        call: call_key.clone(),
                        track: t.id.clone(),
                        bps: t.rate_bps,
                    },
                );
            }
        }
    }

    /// A packet from another worker's publisher, for this worker's subscribers. Call
    /// [`Media::end_input`] after a batch.
    pub fn handle_forwarded(&mut self, f: &Forwarded) {
        self.deliver(f);
    }

    /// Ends a batch of inputs ([`Media::handle_receive`], [`Media::handle_forwarded`]):
    /// drains the sessions that got media, closes the dead.
    pub fn end_input(&mut self, now: Instant) {
        self.finish(now);
    }

    /// Writes a packet to this worker's subscribers of its track.
    fn deliver(&mut self, f: &Forwarded) {
        let Some(t) = self.calls.get(&f.call).and_then(|c| c.tracks.get(&f.track)) else {
            return;
        };
        for sub in t.subscribers.iter() {
            let skey = SessionKey {
                group_id: f.call.0.clone(),
                session_id: sub.clone(),
            };
            let Some(s) = self.sessions.get_mut(&skey) else {
                continue;
            };
            let Some(out) = s.outbound.get_mut(&f.track) else {
                continue;
            };
            let Some(pt) = pt_of(&s.rtc, out.codec) else {
                continue;
            };
            let base = *out.roc_base.get_or_insert((f.seq >> 16) << 16);
            let Some(seq) = f.seq.checked_sub(base) else {
                continue;
            };
            let ext = if f.video {
                // rtcd strips every header extension from forwarded video.
                ExtensionValues::default()
            } else {
                ExtensionValues {
                    audio_level: f.audio_level,
                    voice_activity: f.voice_activity.or(Some(false)),
                    ..Default::default()
                }
            };
            let (mid, cached) = (out.mid, out.ssrc);
            let payload = f.payload.clone();
            let res = guard(|| {
                let mut api = s.rtc.direct_api();
                let tx = match cached {
                    Some(ssrc) => api.stream_tx(&ssrc),
                    None => api.stream_tx_by_mid(mid, None),
                };
                let tx = tx?;
                if cached.is_none() {
                    // Answer every NACK we still hold the packet for: str0m's default stops
                    // resending above 15 % retransmissions, which a lossy viewer link
                    // (10 % loss on packets and on their resends) crosses all the time.
                    tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, None);
                    // The estimate chooses layers only; forwarding is never delayed by
                    // str0m's pacer (rtcd uses a no-op pacer).
                    tx.set_unpaced(true);
                }
                let ssrc = tx.ssrc();
                tx.write_rtp(
                    RtpWrite::new(pt, SeqNo::from(seq), f.rtp_time, f.received, payload)
                        .marker(f.marker)
                        .ext_vals(ext)
                        .nackable(f.video),
                );
                Some(ssrc)
            });
            match res {
                Ok(Some(ssrc)) => {
                    if let Some(o) = s.outbound.get_mut(&f.track) {
                        o.ssrc = Some(ssrc);
                    }
                    self.stats.tx(f.payload.len());
                    self.dirty.insert(skey);
                }
                Ok(None) => {}
                Err(_) => {
                    s.dead = Some(CloseReason::Internal);
                    self.dying.push(skey);
                }
            }
        }
    }

    /// First packet of a publisher's (mid, rid): classify it (spec §5.2), give it a track ID,
    /// and offer it to the call's initialised sessions.
    fn publish(
        &mut self,
        key: &SessionKey,
        (mid, rid): (Mid, Option<Rid>),
        pt: Pt,
        now: Instant,
    ) -> Option<Arc<str>> {
        let s = self.sessions.get(key)?;
        let media = s.rtc.media(mid)?;
        let media_kind = media.kind();
        let stream_id = media.stream_id().to_string();
        let codec = s
            .rtc
            .codec_config()
            .iter()
            .find(|p| p.pt() == pt)
            .map(|p| p.spec().codec)?;
        if !matches!(codec, Codec::Opus | Codec::Vp8 | Codec::Av1) {
            return None;
        }
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let call = self.calls.get(&call_key)?;
        let call_screen = call
            .screen_sharer
            .as_ref()
            .and_then(|sid| {
                self.sessions.get(&SessionKey {
                    group_id: key.group_id.clone(),
                    session_id: sid.clone(),
                })
            })
            .and_then(|sh| sh.screen_stream.clone());
        let Some(kind) = track::classify(
            media_kind == MediaKind::Audio,
            &stream_id,
            call_screen.as_deref(),
            s.video_stream.as_deref(),
        ) else {
            tracing::warn!(session = %key, stream = %stream_id, "video track rejected: no ScreenOn/VideoOn for its stream");
            self.error(key, "track");
            return None;
        };
        let mut r = [0u8; 8];
        rand::rng().fill_bytes(&mut r);
        let id: Arc<str> = Arc::from(track::track_id(
            kind,
            &key.session_id,
            &track::random_suffix(r),
        ));
        let publisher_av1 = s.info.av1_support;
        let published = PublishedTrack {
            id: id.clone(),
            publisher: key.session_id.clone(),
            kind,
            media: media_kind,
            codec,
            mid,
            rid,
            subscribers: BTreeSet::new(),
            pli: KeyframeThrottle::new(),
            publisher_av1,
            home: self.worker,
            remote: Vec::new(),
            remote_subscribed: false,
            rate_bps: None,
            // rtcd measures each layer of a simulcast screen (a track with a RID).
            rate: rid
                .and_then(|r| Layer::from_rid(&r))
                .filter(|_| kind == TrackKind::Screen)
                .map(|l| (RateMonitor::new(l.rate_window()), now + LAYER_RATE_PERIOD)),
        };
        // A later voice track replaces the earlier one (rtcd).
        let replaced: Vec<Arc<str>> = if kind == TrackKind::Voice {
            call.tracks
                .values()
                .filter(|t| t.publisher == key.session_id && t.kind == TrackKind::Voice)
                .map(|t| t.id.clone())
                .collect()
        } else {
            Vec::new()
        };
        if !replaced.is_empty() {
            self.unpublish(&call_key, &replaced, now);
        }
        let call = self.calls.get_mut(&call_key)?;
        let meta = Arc::new(TrackMeta {
            call: call_key.clone(),
            id: id.clone(),
            publisher: published.publisher.clone(),
            kind,
            media: media_kind,
            codec,
            mid,
            rid,
            publisher_av1,
            home: self.worker,
        });
        call.tracks.insert(id.clone(), published);
        self.stat(StatEvent::Track {
            group_id: key.group_id.clone(),
            direction: "in",
            mime: mime(codec),
            delta: 1,
        });
        tracing::info!(session = %key, track = %id, ?rid, codec = ?codec, "track published");
        self.broadcast(PeerMsg::Published(meta));
        self.offer_to_receivers(&call_key, &id, now);
        Some(id)
    }

    /// A layer's source rate was measured again (once per second per layer): re-evaluate the
    /// layer of this worker's screen viewers in the call with their latest estimate, since
    /// str0m reports an estimate only when it changes (a steady link stays quiet).
    fn reevaluate_layers(&mut self, call_key: &CallKey, now: Instant) {
        let Some(call) = self.calls.get(call_key) else {
            return;
        };
        let viewers: BTreeSet<Arc<str>> = call
            .tracks
            .values()
            .filter(|t| t.kind == TrackKind::Screen && t.rid.is_some())
            .flat_map(|t| t.subscribers.iter().cloned())
            .collect();
        for v in viewers {
            let key = SessionKey {
                group_id: call_key.0.clone(),
                session_id: v,
            };
            let Some(bwe) = self.sessions.get(&key).map(|s| s.bwe_bps) else {
                continue;
            };
            if bwe > 0 {
                self.bandwidth_estimate(&key, bwe, now);
            }
        }
    }

    /// A new send-side bandwidth estimate towards `key`'s client: maybe switch the screen
    /// layer it receives (spec §5.7). A switch is rtcd's: remove the current layer's track,
    /// then add the other layer's (two renegotiations; the viewer sees a new track).
    fn bandwidth_estimate(&mut self, key: &SessionKey, estimate_bps: u64, now: Instant) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.bwe_bps = estimate_bps;
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        // Layer rates are at most a second old (`report_layer_rates`), on every worker.
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let sharer = call.screen_sharer.clone();
        // The simulcast screen layer this receiver gets now, if any.
        let current = sharer.as_ref().and_then(|sharer| {
            s.outbound.keys().find_map(|id| {
                let t = call.tracks.get(id)?;
                let layer = Layer::from_rid(&t.rid?)?;
                (t.publisher == *sharer && t.kind == TrackKind::Screen)
                    .then(|| (t.id.clone(), layer, t.codec))
            })
        });
        // The sharer's track of a layer, for the codec this receiver gets.
        let layer_track = |layer: Layer| -> Option<&PublishedTrack> {
            let (_, _, codec) = current.as_ref()?;
            let sharer = sharer.as_ref()?;
            call.tracks.values().find(|t| {
                t.publisher == *sharer
                    && t.kind == TrackKind::Screen
                    && t.codec == *codec
                    && t.rid.is_some_and(|r| Layer::from_rid(&r) == Some(layer))
            })
        };
        // rtcd's estimator (pion GCC) has a loss-based estimate, counted from TWCC feedback,
        // which vetoes leaving `h` while it stays high: a delay-based dip alone (jitter)
        // does not downgrade. str0m reports one combined estimate, so the veto here is the
        // highest estimate of the last 2 s: `h` is left once the estimate stayed low that
        // long (a congested or lossy path), not on a single dip.
        s.recent_bwe.push_back((now, estimate_bps));
        while s.recent_bwe.len() > 64
            || s.recent_bwe.front().is_some_and(|(at, _)| {
                now.saturating_duration_since(*at) > SUSTAINED_ESTIMATE_WINDOW
            })
        {
            s.recent_bwe.pop_front();
        }
        let mut sustained = s.recent_bwe.iter().map(|(_, b)| *b).max().unwrap_or(0);
        match s.bwe_settle {
            Some((until, rate)) if now < until => sustained = sustained.max(rate),
            Some(_) => s.bwe_settle = None,
            None => {}
        }
        // Extension (not upstream): `h` counts as available only while it arrives at more
        // than a quarter of `l`'s rate (it normally runs at 4× the frame rate). A publisher
        // whose own uplink cannot carry `h` pauses it (browsers do); its viewers would freeze
        // on it, so they fall back to `l` at once, and nobody is moved up to it meanwhile.
        let rate = |layer: Layer| layer_track(layer).and_then(|t| t.rate_bps).unwrap_or(0);
        let (low_bps, high_bps) = (rate(Layer::Low), rate(Layer::High));
        let high_usable = high_bps > low_bps / STALLED_LAYER_DIVISOR;
        let switch = if current.as_ref().is_some_and(|c| c.1 == Layer::High)
            && !high_usable
            && low_bps > 0
        {
            s.layers.fallback(now, low_bps);
            Some(Layer::Low)
        } else {
            s.layers.on_estimate(
                now,
                estimate_bps,
                Some(sustained),
                Some(estimate_bps),
                current.as_ref().map(|c| c.1),
                |layer| {
                    let bps = rate(layer);
                    (bps > 0 && (layer == Layer::Low || high_usable)).then_some(bps)
                },
            )
        };
        let Some(target) = switch else {
            return;
        };
        let (Some((from, from_layer, _)), Some(to)) = (current.clone(), layer_track(target)) else {
            return;
        };
        let (to_id, to_rate) = (to.id.clone(), to.rate_bps.unwrap_or(0));
        tracing::info!(session = %key, from = from_layer.rid(), to = target.rid(), estimate_bps, "screen layer switch");
        if target == Layer::High {
            // rtcd: the estimator restarts from the new source's rate, so that it tells
            // within seconds whether the path carries it.
            let _ = guard(|| s.rtc.bwe().reset(Bitrate::bps(to_rate)));
            s.recent_bwe.clear();
            s.bwe_settle = Some((now + BWE_SETTLE, to_rate));
        }
        self.stats.layer_switch(target == Layer::High);
        self.enqueue(key, TrackAction::Remove(from));
        self.enqueue(key, TrackAction::Add(to_id));
        self.process_actions(key, now);
    }

    /// Offers a new track to this worker's initialised sessions of its call that want it.
    fn offer_to_receivers(&mut self, call_key: &CallKey, id: &Arc<str>, now: Instant) {
        let Some(call) = self.calls.get(call_key) else {
            return;
        };
        let Some(t) = call.tracks.get(id) else {
            return;
        };
        let receivers: Vec<Arc<str>> = call
            .sessions
            .iter()
            .filter(|sid| **sid != t.publisher)
            .cloned()
            .collect();
        for r in receivers {
            let rkey = SessionKey {
                group_id: call_key.0.clone(),
                session_id: r,
            };
            let Some(rs) = self.sessions.get(&rkey) else {
                continue;
            };
            if !rs.initialized {
                continue; // it subscribes to everything when its data channel opens
            }
            let Some(t) = self.calls.get(call_key).and_then(|c| c.tracks.get(id)) else {
                continue;
            };
            // Simulcast: a receiver gets the layer its estimate can carry (rtcd's expected
            // level: `h` above 0.9 × 2.5 Mbit/s, else `l`).
            let expected = simulcast::expected_layer(rs.bwe_bps);
            if t.rid.is_some_and(|r| Layer::from_rid(&r) != Some(expected)) {
                continue;
            }
            if wants(t, rs.info.av1_support, t.publisher_av1) {
                self.enqueue(&rkey, TrackAction::Add(id.clone()));
                self.process_actions(&rkey, now);
            }
        }
    }

    /// PLI/FIR from a subscriber: ask the publisher, at most once per second per source.
    fn keyframe_request(&mut self, key: &SessionKey, mid: Mid, now: Instant) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let Some(track) = s.mid_track.get(&mid).cloned() else {
            return;
        };
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        let Some(t) = self
            .calls
            .get_mut(&call_key)
            .and_then(|c| c.tracks.get_mut(&track))
        else {
            return;
        };
        if t.home != self.worker {
            // The publisher is on another worker; it throttles.
            let home = t.home;
            self.peer_out.push((
                home,
                PeerMsg::Keyframe {
                    call: call_key,
                    track,
                },
            ));
            return;
        }
        if !t.pli.allow(now) {
            self.stats.dropped(DropReason::KeyframeThrottled);
            return;
        }
        let (publisher, pmid, rid) = (t.publisher.clone(), t.mid, t.rid);
        self.request_keyframe(
            &SessionKey {
                group_id: key.group_id.clone(),
                session_id: publisher,
            },
            pmid,
            rid,
            now,
        );
    }

    /// Tears a session down (spec §5.11) and tells the control plane.
    fn close_session(&mut self, key: &SessionKey, reason: CloseReason, now: Instant) {
        let Some(mut s) = self.sessions.remove(key) else {
            return;
        };
        self.by_ufrag.remove(&s.ufrag);
        self.by_addr.retain(|_, k| k != key);
        self.dirty.remove(key);
        let call_key = (key.group_id.clone(), s.info.call_id.clone());
        if let Some(call) = self.calls.get_mut(&call_key) {
            call.sessions.remove(&key.session_id);
            if call.screen_sharer.as_deref() == Some(&*key.session_id) {
                clear_sharer(
                    call,
                    &call_key,
                    &mut self.peer_out,
                    self.workers,
                    self.worker,
                );
            }
            let own: Vec<Arc<str>> = call
                .tracks
                .values()
                .filter(|t| t.publisher == key.session_id)
                .map(|t| t.id.clone())
                .collect();
            let mut left_remote = Vec::new();
            for t in call.tracks.values_mut() {
                if t.subscribers.remove(&key.session_id) {
                    if t.home != self.worker && t.subscribers.is_empty() {
                        left_remote.push(t.id.clone());
                    }
                    emit_stat(
                        &self.notices,
                        &self.stats,
                        StatEvent::Track {
                            group_id: key.group_id.clone(),
                            direction: "out",
                            mime: mime(t.codec),
                            delta: -1,
                        },
                    );
                }
            }
            for t in left_remote {
                self.sync_remote_subscription(&call_key, &t);
            }
            self.unpublish(&call_key, &own, now);
            self.forget_call_if_empty(&call_key);
        }
        // Best effort: tell the peer (DTLS close_notify etc.), then drop.
        let _ = guard(|| {
            s.rtc.disconnect();
        });
        if reason != CloseReason::Shutdown {
            self.stat(StatEvent::ConnState { state: "closed" });
        }
        tracing::info!(session = %key, reason = reason.as_str(), "session closed");
        self.notify(Notice::Closed {
            key: key.clone(),
            reason,
        });
    }
}

impl Session {
    fn answered(&self) -> bool {
        self.offer_deadline.is_none()
    }

    fn lock_wait_deadline(&self) -> Option<Instant> {
        self.lock_wait_since.map(|t| t + LOCK_TIMEOUT)
    }
}

/// Whether a receiver should get a track (spec §5.8): AV1 only when publisher and receiver
/// both support it, VP8 otherwise; audio always.
fn wants(t: &PublishedTrack, receiver_av1: bool, publisher_av1: bool) -> bool {
    let both = receiver_av1 && publisher_av1;
    match t.codec {
        Codec::Av1 => both,
        Codec::Vp8 => !both,
        _ => true,
    }
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

fn mime(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "audio/opus",
        Codec::Vp8 => "video/VP8",
        Codec::Av1 => "video/AV1",
        _ => "unknown",
    }
}

/// The client only sends on the m-lines it offers `sendrecv` (its microphone, camera,
/// screen): we rewrite them to `sendonly` so str0m answers `recvonly`, as pion does, and
/// the browser does not see a silent echo of its own stream.
pub fn narrow_offer(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.trim_end() == "a=sendrecv" {
            out.push_str(&line.replacen("a=sendrecv", "a=sendonly", 1));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Whether an offer lets the answerer pick the DTLS role: every `a=setup` is `actpass`
/// (RFC 5763 §5; the offerers we meet put it on each m-line).
pub fn offer_leaves_dtls_role_to_us(sdp: &str) -> bool {
    let mut setups = sdp
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=setup:"))
        .peekable();
    setups.peek().is_some() && setups.all(|v| v == "actpass")
}

fn emit(notices: &NoticeTx, stats: &WorkerStats, n: Notice) {
    if notices.try_send(n).is_err() {
        stats.dropped(DropReason::NoticeQueueFull);
        tracing::error!("notice queue full: notice lost");
    }
}

fn emit_stat(notices: &NoticeTx, stats: &WorkerStats, e: StatEvent) {
    emit(notices, stats, Notice::Stat(e));
}

/// Feeds one input to a session, turning errors and panics into a message.
fn feed(rtc: &mut Rtc, input: Input) -> Result<(), String> {
    guard(|| rtc.handle_input(input)).and_then(|r| r.map_err(|e| e.to_string()))
}

/// Runs a call into str0m, turning a panic into an error (the session is then closed,
/// never the worker).
/// Queues `msg` for every worker but `me` (a free function so callers holding borrows of
/// other `Media` fields can use it).
/// Clears a call's screen sharer and tells the other workers.
fn clear_sharer(
    call: &mut Call,
    call_key: &CallKey,
    out: &mut Vec<(usize, PeerMsg)>,
    workers: usize,
    me: usize,
) {
    call.screen_sharer = None;
    let msg = PeerMsg::ScreenSharer {
        call: call_key.clone(),
        sharer: None,
        from: me,
    };
    broadcast_to(out, workers, me, msg);
}

fn broadcast_to(out: &mut Vec<(usize, PeerMsg)>, workers: usize, me: usize, msg: PeerMsg) {
    out.extend((0..workers).filter(|w| *w != me).map(|w| (w, msg.clone())));
}

fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::notice_queue;

    #[test]
    fn only_an_all_actpass_offer_leaves_the_dtls_role_to_us() {
        let m = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        assert!(offer_leaves_dtls_role_to_us(&format!(
            "{m}a=setup:actpass\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=setup:actpass\r\n"
        )));
        assert!(!offer_leaves_dtls_role_to_us(&format!(
            "{m}a=setup:active\r\n"
        )));
        assert!(!offer_leaves_dtls_role_to_us(&format!(
            "{m}a=setup:passive\r\n"
        )));
        assert!(!offer_leaves_dtls_role_to_us(&format!(
            "{m}a=setup:actpass\r\na=setup:active\r\n"
        )));
        // No a=setup at all: leave it to str0m (it answers passive).
        assert!(!offer_leaves_dtls_role_to_us(m));
    }

    fn join(m: &mut Media, sid: &str, now: Instant) -> SessionKey {
        let key = SessionKey::new("g", sid);
        m.handle_join(
            SessionInfo {
                key: key.clone(),
                call_id: "c".into(),
                user_id: "u".into(),
                av1_support: false,
                dc_signaling: false,
            },
            now,
        );
        key
    }

    #[test]
    fn a_panic_inside_one_session_closes_that_session_only() {
        let (tx, mut rx) = notice_queue();
        let stats = Arc::new(WorkerStats::new(super::super::io::IoKind::Portable));
        let mut m = Media::new(
            0,
            Engine::new(true).expect("engine"),
            MediaSettings::default(),
            LocalCandidates::default(),
            tx,
            stats,
        );
        let now = Instant::now();
        let a = join(&mut m, "a", now);
        let b = join(&mut m, "b", now);
        // What the worker does with every str0m call: a panic is caught and becomes an error.
        let res =
            guard(|| -> Result<(), String> { panic!("bug inside the engine") }).and_then(|r| r);
        assert_eq!(res, Err("bug inside the engine".to_string()));
        m.after_input(&a, res, now);
        m.end_input(now);
        assert_eq!(m.session_count(), 1);
        assert!(m.sessions.contains_key(&b), "the other session lives on");
        let mut closed = Vec::new();
        while let Ok(n) = rx.try_recv() {
            if let Notice::Closed { key, reason } = n {
                closed.push((key, reason));
            }
        }
        assert_eq!(closed, vec![(a, CloseReason::Internal)]);
        // The worker goes on serving: timers of the survivor still run.
        m.handle_timeout(now + Duration::from_secs(11));
        assert_eq!(
            m.session_count(),
            0,
            "b closed by its own signaling timeout"
        );
    }
}
