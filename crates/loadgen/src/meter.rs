//! The run's bookkeeping shared by every backend: media sources (what to send when), and what
//! each receiver got, counted only for media stamped inside the measurement window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::metrics::{latency_histogram, StreamRx};
use crate::payload::{Kind, Stamp};

/// A synthetic media source of one participant.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: Kind,
    pub stream: u32,
    pub seq: u32,
    pub next: Instant,
    pub period: Duration,
    /// Bytes per audio packet, or per video frame (a keyframe is 3× that).
    pub size: usize,
    pub frames: u64,
}

impl Source {
    pub fn audio(stream: u32, size: usize, start: Instant) -> Source {
        Source {
            kind: Kind::Audio,
            stream,
            seq: 0,
            next: start,
            period: Duration::from_millis(20),
            size,
            frames: 0,
        }
    }

    pub fn video(stream: u32, kbps: u32, fps: u32, start: Instant) -> Source {
        let size = (kbps as usize * 1000 / 8 / fps as usize).max(64);
        Source {
            kind: Kind::Video,
            stream,
            seq: 0,
            next: start,
            period: Duration::from_secs(1) / fps,
            size,
            frames: 0,
        }
    }

    /// Keyframe every 3 s.
    pub fn is_keyframe(&self) -> bool {
        let per_3s = (Duration::from_secs(3).as_nanos() / self.period.as_nanos().max(1)) as u64;
        self.frames.is_multiple_of(per_3s.max(1))
    }

    pub fn frame_bytes(&self) -> usize {
        if self.kind == Kind::Video && self.is_keyframe() {
            self.size * 3
        } else {
            self.size
        }
    }

    /// Advances the schedule; skips missed ticks rather than bursting to catch up.
    pub fn advance(&mut self, now: Instant) {
        self.seq = self.seq.wrapping_add(1);
        self.frames += 1;
        self.next += self.period;
        if self.next + self.period < now {
            self.next = now;
        }
    }
}

pub struct Meter {
    pub epoch: Instant,
    pub win_start_ns: u64,
    pub win_end_ns: u64,
    pub audio_hist: Histogram<u64>,
    pub video_hist: Histogram<u64>,
    /// Per receiver, per stream.
    pub rx: Vec<HashMap<u32, StreamRx>>,
    /// Frames (or raw packets) stamped inside the window, per stream.
    pub sent_in_window: HashMap<u32, u64>,
    pub sent_packets: u64,
    pub malformed: u64,
    pub late_or_early: u64,
}

impl Meter {
    pub fn new(epoch: Instant) -> Meter {
        Meter {
            epoch,
            win_start_ns: u64::MAX,
            win_end_ns: u64::MAX,
            audio_hist: latency_histogram(),
            video_hist: latency_histogram(),
            rx: Vec::new(),
            sent_in_window: HashMap::new(),
            sent_packets: 0,
            malformed: 0,
            late_or_early: 0,
        }
    }

    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub fn in_window(&self, ns: u64) -> bool {
        ns >= self.win_start_ns && ns < self.win_end_ns
    }

    /// A receiver slot (participants that churn get a new one).
    pub fn add_receiver(&mut self) -> usize {
        self.rx.push(HashMap::new());
        self.rx.len() - 1
    }

    pub fn on_sent(&mut self, stamp: &Stamp, packets: u64) {
        if self.in_window(stamp.sent_ns) {
            *self.sent_in_window.entry(stamp.stream).or_default() += 1;
            self.sent_packets += packets;
        }
    }

    /// A payload arrived at `receiver`; returns whether it carried a valid stamp.
    pub fn on_payload(
        &mut self,
        receiver: usize,
        data: &[u8],
        packets: u64,
        arrived: Instant,
    ) -> bool {
        let Ok(stamp) = Stamp::read(data) else {
            self.malformed += 1;
            return false;
        };
        if !self.in_window(stamp.sent_ns) {
            self.late_or_early += 1;
            return true;
        }
        let arrived_ns = self.ns(arrived);
        let hist = match stamp.kind {
            Kind::Audio => &mut self.audio_hist,
            Kind::Video => &mut self.video_hist,
        };
        if let Some(r) = self.rx.get_mut(receiver) {
            r.entry(stamp.stream).or_default().on_frame(
                stamp.seq,
                packets,
                stamp.sent_ns,
                arrived_ns,
                hist,
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_media_stamped_inside_the_window_is_counted() {
        let epoch = Instant::now();
        let mut m = Meter::new(epoch);
        m.win_start_ns = 1_000;
        m.win_end_ns = 2_000;
        let r = m.add_receiver();
        let mut buf = Vec::new();
        for (seq, t) in [(0u32, 500u64), (1, 1_000), (2, 1_999), (3, 2_000)] {
            let s = Stamp {
                kind: Kind::Audio,
                stream: 1,
                seq,
                sent_ns: t,
            };
            m.on_sent(&s, 1);
            buf.clear();
            s.write(&mut buf, 100, 0);
            assert!(m.on_payload(r, &buf, 1, epoch + Duration::from_millis(1)));
        }
        assert_eq!(m.sent_in_window[&1], 2);
        assert_eq!(m.rx[r][&1].unique, 2);
        assert_eq!(m.late_or_early, 2);
        assert!(!m.on_payload(r, b"not a stamp at all, really", 1, epoch));
        assert_eq!(m.malformed, 1);
    }

    #[test]
    fn a_late_source_skips_ticks_instead_of_bursting() {
        let t0 = Instant::now();
        let mut s = Source::audio(1, 100, t0);
        s.advance(t0 + Duration::from_secs(1));
        assert_eq!(s.next, t0 + Duration::from_secs(1));
        let mut v = Source::video(2, 1500, 15, t0);
        assert!(v.is_keyframe());
        assert_eq!(v.frame_bytes(), 3 * 12_500);
        v.advance(t0);
        assert!(!v.is_keyframe());
    }
}
