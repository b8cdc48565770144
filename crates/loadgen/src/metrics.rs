//! Receiver-side measurement: per-stream sequence tracking (loss, duplicates, reordering),
//! RFC 3550 interarrival jitter, and added one-way latency in an HDR histogram.
//!
//! Must not: read the clock. Arrival and send times are arguments.

use hdrhistogram::Histogram;

const WINDOW_BITS: u32 = 1024;

/// What one arriving sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Newer than everything seen (possibly after a gap).
    InOrder,
    /// Older than the highest seen and not seen before: filled a gap.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// Remembers the last 1024 sequence numbers of one stream in a bitmap.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    highest: Option<u32>,
    bits: [u64; (WINDOW_BITS / 64) as usize],
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            highest: None,
            bits: [0; (WINDOW_BITS / 64) as usize],
        }
    }
}

impl SeqTracker {
    fn bit(&mut self, seq: u32) -> (&mut u64, u64) {
        let i = seq % WINDOW_BITS;
        (&mut self.bits[(i / 64) as usize], 1u64 << (i % 64))
    }

    pub fn arrive(&mut self, seq: u32) -> Arrival {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            let (w, m) = self.bit(seq);
            *w |= m;
            return Arrival::InOrder;
        };
        if seq > h {
            let d = seq - h;
            if d >= WINDOW_BITS {
                self.bits = [0; (WINDOW_BITS / 64) as usize];
            } else {
                for s in h + 1..=seq {
                    let (w, m) = self.bit(s);
                    *w &= !m;
                }
            }
            self.highest = Some(seq);
            let (w, m) = self.bit(seq);
            *w |= m;
            return Arrival::InOrder;
        }
        if h - seq >= WINDOW_BITS {
            // Too old to tell a duplicate from a late packet: call it late.
            return Arrival::Reordered;
        }
        let (w, m) = self.bit(seq);
        if *w & m != 0 {
            Arrival::Duplicate
        } else {
            *w |= m;
            Arrival::Reordered
        }
    }
}

/// RFC 3550 §6.4.1 interarrival jitter, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Jitter {
    last_transit: Option<f64>,
    pub value_us: f64,
}

impl Jitter {
    pub fn update(&mut self, sent_us: f64, arrived_us: f64) {
        let transit = arrived_us - sent_us;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            self.value_us += (d - self.value_us) / 16.0;
        }
        self.last_transit = Some(transit);
    }
}

/// One stream as seen by one receiver.
#[derive(Debug, Clone, Default)]
pub struct StreamRx {
    pub seq: SeqTracker,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// RTP packets (a video frame is several).
    pub packets: u64,
    pub jitter: Jitter,
}

/// Latency histogram in microseconds, up to 60 s.
pub fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_max(60_000_000, 3) {
        Ok(h) => h,
        Err(_) => unreachable!("constant bounds are valid"),
    }
}

impl StreamRx {
    /// Counts one frame (`packets` RTP packets) stamped `seq`, sent at `sent_ns` and arrived at
    /// `arrived_ns` (same clock); records its one-way latency in `hist`.
    pub fn on_frame(
        &mut self,
        seq: u32,
        packets: u64,
        sent_ns: u64,
        arrived_ns: u64,
        hist: &mut Histogram<u64>,
    ) {
        match self.seq.arrive(seq) {
            Arrival::Duplicate => {
                self.duplicates += 1;
                return;
            }
            Arrival::Reordered => self.reordered += 1,
            Arrival::InOrder => {}
        }
        self.unique += 1;
        self.packets += packets;
        let lat_us = arrived_ns.saturating_sub(sent_ns) / 1000;
        hist.saturating_record(lat_us);
        self.jitter
            .update(sent_ns as f64 / 1000.0, arrived_ns as f64 / 1000.0);
    }
}

/// Loss as a fraction of `expected` (0 when nothing was expected).
pub fn loss_fraction(expected: u64, unique: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        expected.saturating_sub(unique) as f64 / expected as f64
    }
}

/// p50/p99/p99.9/max in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_then_its_late_packet_counts_as_reordered_not_lost() {
        let mut s = SeqTracker::default();
        assert_eq!(s.arrive(10), Arrival::InOrder);
        assert_eq!(s.arrive(12), Arrival::InOrder);
        assert_eq!(s.arrive(11), Arrival::Reordered);
        assert_eq!(s.arrive(11), Arrival::Duplicate);
        assert_eq!(s.arrive(12), Arrival::Duplicate);
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_old_sequence_numbers() {
        let mut s = SeqTracker::default();
        s.arrive(5);
        assert_eq!(s.arrive(5 + 5000), Arrival::InOrder);
        // 5 is out of the window now: late, never a false duplicate.
        assert_eq!(s.arrive(5), Arrival::Reordered);
        // Bits reused by the wrap were cleared when the window advanced.
        assert_eq!(s.arrive(5000 + 5 - 1024 + 1), Arrival::Reordered);
    }

    #[test]
    fn loss_is_missing_unique_packets_over_expected() {
        let mut h = latency_histogram();
        let mut rx = StreamRx::default();
        for seq in [0u32, 1, 2, 4, 4, 3, 6, 7, 8, 9] {
            rx.on_frame(seq, 1, 0, 1_000_000, &mut h);
        }
        assert_eq!(rx.unique, 9);
        assert_eq!(rx.duplicates, 1);
        assert_eq!(rx.reordered, 1);
        assert!((loss_fraction(10, rx.unique) - 0.1).abs() < 1e-12);
        assert_eq!(loss_fraction(0, 0), 0.0);
        assert_eq!(
            loss_fraction(5, 7),
            0.0,
            "duplicates never make negative loss"
        );
    }

    #[test]
    fn latency_percentiles_come_from_send_and_arrival_stamps() {
        let mut h = latency_histogram();
        let mut rx = StreamRx::default();
        // 1000 frames: 990 at 1 ms, 9 at 15 ms, 1 at 200 ms.
        for seq in 0..1000u32 {
            let lat_ms = match seq {
                0..=989 => 1,
                990..=998 => 15,
                _ => 200,
            };
            let sent = seq as u64 * 20_000_000;
            rx.on_frame(seq, 1, sent, sent + lat_ms * 1_000_000, &mut h);
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 1.0).abs() < 0.01, "{p:?}");
        assert!(
            (p.p99_ms - 1.0).abs() < 0.01,
            "p99 is the 990th value: {p:?}"
        );
        assert!((p.p999_ms - 15.0).abs() < 0.05, "{p:?}");
        assert!((p.max_ms - 200.0).abs() < 0.5, "{p:?}");
    }

    #[test]
    fn constant_transit_has_zero_jitter_and_alternating_transit_converges_to_the_swing() {
        let mut j = Jitter::default();
        for i in 0..100 {
            j.update(i as f64 * 20_000.0, i as f64 * 20_000.0 + 500.0);
        }
        assert_eq!(j.value_us, 0.0);
        let mut j = Jitter::default();
        for i in 0..2000 {
            let extra = if i % 2 == 0 { 0.0 } else { 1000.0 };
            j.update(i as f64 * 20_000.0, i as f64 * 20_000.0 + extra);
        }
        assert!((j.value_us - 1000.0).abs() < 1.0, "{}", j.value_us);
    }
}
