//! Per-worker counters: plain relaxed atomics written by their worker only, summed by the
//! control plane at scrape time (never a shared registry update per packet).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::bridge::{LoopTurns, WorkerCounters, LOOP_TURN_BOUNDS};

/// Why a packet or message was dropped; the label of `rtcd_rtc_drops_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    UnknownSource,
    Malformed,
    BadStun,
    RejectedTrack,
    Muted,
    KeyframeThrottled,
    DataChannelFull,
    ActionQueueFull,
    NoticeQueueFull,
    SendFailed,
    HandoverFull,
    TcpOverflow,
    RingFull,
    PeerQueueFull,
    Oversized,
}

impl Drop {
    pub const ALL: [Drop; 15] = [
        Drop::UnknownSource,
        Drop::Malformed,
        Drop::BadStun,
        Drop::RejectedTrack,
        Drop::Muted,
        Drop::KeyframeThrottled,
        Drop::DataChannelFull,
        Drop::ActionQueueFull,
        Drop::NoticeQueueFull,
        Drop::SendFailed,
        Drop::HandoverFull,
        Drop::TcpOverflow,
        Drop::RingFull,
        Drop::PeerQueueFull,
        Drop::Oversized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Drop::UnknownSource => "unknown_source",
            Drop::Malformed => "malformed",
            Drop::BadStun => "bad_stun",
            Drop::RejectedTrack => "rejected_track",
            Drop::Muted => "muted",
            Drop::KeyframeThrottled => "keyframe_throttled",
            Drop::DataChannelFull => "data_channel_full",
            Drop::ActionQueueFull => "action_queue_full",
            Drop::NoticeQueueFull => "notice_queue_full",
            Drop::SendFailed => "send_failed",
            Drop::HandoverFull => "handover_full",
            Drop::TcpOverflow => "tcp_overflow",
            Drop::RingFull => "fanout_ring_full",
            Drop::PeerQueueFull => "peer_queue_full",
            Drop::Oversized => "oversized",
        }
    }
}

pub struct WorkerStats {
    io: super::io::IoKind,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    handovers: AtomicU64,
    sessions: AtomicU64,
    fanouts: AtomicU64,
    /// Screen-share layer switches: [down to `l`, up to `h`].
    layer_switches: [AtomicU64; 2],
    ring_occupancy: AtomicU64,
    direct_flows: AtomicU64,
    recv_buffer_exhaustions: AtomicU64,
    recv_coalesced: AtomicU64,
    turn_buckets: [AtomicU64; LOOP_TURN_BOUNDS.len() + 1],
    turn_nanos: AtomicU64,
    drops: [AtomicU64; 15],
}

impl WorkerStats {
    pub fn new(io: super::io::IoKind) -> WorkerStats {
        WorkerStats {
            io,
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            handovers: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            fanouts: AtomicU64::new(0),
            layer_switches: Default::default(),
            ring_occupancy: AtomicU64::new(0),
            direct_flows: AtomicU64::new(0),
            recv_buffer_exhaustions: AtomicU64::new(0),
            recv_coalesced: AtomicU64::new(0),
            turn_buckets: Default::default(),
            turn_nanos: AtomicU64::new(0),
            drops: Default::default(),
        }
    }

    /// The I/O backend's running count of receive-buffer exhaustions.
    pub fn recv_buffer_exhaustions(&self, total: u64) {
        self.recv_buffer_exhaustions.store(total, Relaxed);
    }

    /// Datagrams that arrived coalesced by UDP GRO (split again before processing).
    pub fn recv_coalesced(&self, n: usize) {
        if n > 0 {
            self.recv_coalesced.fetch_add(n as u64, Relaxed);
        }
    }

    pub fn rx(&self, bytes: usize) {
        self.rx_packets.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A forwarded media packet (payload bytes).
    pub fn tx(&self, bytes: usize) {
        self.tx_packets.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// One loop turn's busy time.
    pub fn loop_turn(&self, busy: std::time::Duration) {
        let secs = busy.as_secs_f64();
        let i = LOOP_TURN_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LOOP_TURN_BOUNDS.len());
        self.turn_buckets[i].fetch_add(1, Relaxed);
        self.turn_nanos
            .fetch_add(busy.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Open direct-path sockets (flows the kernel delivers to this worker's connected
    /// socket instead of another worker's).
    pub fn set_direct_flows(&self, n: usize) {
        self.direct_flows.store(n as u64, Relaxed);
    }

    pub fn set_ring_occupancy(&self, n: usize) {
        self.ring_occupancy.store(n as u64, Relaxed);
    }

    /// A packet pushed to another worker's fan-out ring.
    pub fn fanout(&self) {
        self.fanouts.fetch_add(1, Relaxed);
    }

    /// A receiver's screen-share simulcast layer switched (`up`: to `h`).
    pub fn layer_switch(&self, up: bool) {
        self.layer_switches[usize::from(up)].fetch_add(1, Relaxed);
    }

    pub fn handover(&self) {
        self.handovers.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, why: Drop) {
        self.dropped_n(why, 1);
    }

    /// `n` drops for one reason at once (no store when `n` is zero).
    pub fn dropped_n(&self, why: Drop, n: usize) {
        if let (true, Some(c)) = (n > 0, self.drops.get(why as usize)) {
            c.fetch_add(n as u64, Relaxed);
        }
    }

    pub fn set_sessions(&self, n: usize) {
        self.sessions.store(n as u64, Relaxed);
    }

    pub fn snapshot(&self, worker: usize) -> WorkerCounters {
        WorkerCounters {
            worker,
            io_backend: self.io.as_str(),
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            handovers: self.handovers.load(Relaxed),
            fanouts: self.fanouts.load(Relaxed),
            layer_switches: [
                self.layer_switches[0].load(Relaxed),
                self.layer_switches[1].load(Relaxed),
            ],
            ring_occupancy: self.ring_occupancy.load(Relaxed),
            direct_flows: self.direct_flows.load(Relaxed),
            recv_buffer_exhaustions: self.recv_buffer_exhaustions.load(Relaxed),
            recv_coalesced: self.recv_coalesced.load(Relaxed),
            loop_turns: {
                let mut t = LoopTurns::default();
                for (i, b) in self.turn_buckets.iter().enumerate() {
                    t.buckets[i] = b.load(Relaxed);
                }
                t.count = t.buckets.iter().sum();
                t.sum_nanos = self.turn_nanos.load(Relaxed);
                t
            },
            sessions: self.sessions.load(Relaxed),
            drops: Drop::ALL
                .iter()
                .map(|d| (d.as_str(), self.drops[*d as usize].load(Relaxed)))
                .collect(),
        }
    }
}
