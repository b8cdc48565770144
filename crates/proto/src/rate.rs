//! The publisher-layer rate monitor (spec §5.7, upstream `service/rtc/rate.go`): the bit
//! rate a simulcast layer actually arrives at, used to choose a receiver's layer.
//!
//! As upstream: samples (arrival time, packet size) are collected until they span twice the
//! window ("at the beginning it's likely we get a burst of packets"); until then the rate is
//! unknown. From then on the number of samples is fixed and each new sample replaces the
//! oldest. The rate is the bytes of the newest samples, walking back until one is at least a
//! window old at `now`, divided by that sample's age, in bits per second, rounded.
//!
//! Deviation (bounded memory): at most [`MAX_SAMPLES`] samples are kept. A layer fast enough
//! to reach the cap before its samples span two windows is considered filled at the cap, so
//! its rate is known (over a shorter span) where upstream would keep growing its buffer.
//!
//! Must not: read the clock (time is an argument) or allocate once filled.

use std::time::{Duration, Instant};

/// Most samples one monitor keeps: 2 048 packets/s over the `h` layer's 4 s fill span
/// (≈ 18 Mbit/s of 1 100-byte packets), about 200 KiB.
pub const MAX_SAMPLES: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes: u32,
}

/// One publisher layer's arrival-rate monitor.
#[derive(Debug, Clone)]
pub struct RateMonitor {
    window: Duration,
    /// Grows until filled, then is a ring whose oldest sample is at `next`.
    samples: Vec<Sample>,
    next: usize,
    filled: bool,
}

impl RateMonitor {
    /// A monitor measuring over `window` (rtcd: 2 s for `h`, 5 s for `l`).
    pub fn new(window: Duration) -> Self {
        RateMonitor {
            window,
            samples: Vec::new(),
            next: 0,
            filled: false,
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records a packet of `bytes` (upstream: the whole RTP packet, header included) that
    /// arrived at `now`.
    pub fn push(&mut self, now: Instant, bytes: usize) {
        let sample = Sample {
            at: now,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        };
        if self.filled {
            self.samples[self.next] = sample;
            self.next = (self.next + 1) % self.samples.len();
            return;
        }
        self.samples.push(sample);
        if self.samples_duration() >= self.window.saturating_mul(2)
            || self.samples.len() >= MAX_SAMPLES
        {
            self.filled = true;
        }
    }

    /// Time between the oldest and the newest sample held.
    pub fn samples_duration(&self) -> Duration {
        let n = self.samples.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let newest = self.samples[(self.next + n - 1) % n].at;
        let oldest = self.samples[self.next].at;
        newest.saturating_duration_since(oldest)
    }

    /// The rate in bits/s at `now`, `None` while unknown (upstream: −1).
    pub fn rate(&self, now: Instant) -> Option<u64> {
        self.rate_and_span(now).map(|(bps, _)| bps)
    }

    /// The rate in bits/s and the span it was measured over (upstream `GetRate`).
    pub fn rate_and_span(&self, now: Instant) -> Option<(u64, Duration)> {
        if !self.filled {
            return None;
        }
        let n = self.samples.len();
        let mut total: u64 = 0;
        let mut span = Duration::ZERO;
        for back in 1..=n {
            let s = self.samples[(self.next + n - back) % n];
            span = now.saturating_duration_since(s.at);
            total += u64::from(s.bytes);
            if span >= self.window {
                break;
            }
        }
        if span.is_zero() {
            // Only with a clock that went backwards, or a zero window; upstream divides by
            // zero here.
            return None;
        }
        let bps = (total as f64 / span.as_secs_f64() * 8.0).round();
        // Finite and non-negative; saturating for absurd inputs.
        Some((bps as u64, span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Upstream rate_test.go "not enough samples" and "invalid timestamps".
    #[test]
    fn rate_is_unknown_until_samples_span_twice_the_window() {
        let t0 = Instant::now();
        let mut m = RateMonitor::new(Duration::from_secs(1));
        for _ in 0..3 {
            m.push(t0, 1000);
        }
        assert_eq!(m.rate_and_span(t0), None);
        let mut m = RateMonitor::new(Duration::from_secs(1));
        m.push(t0, 1000);
        assert_eq!(m.rate(t0 + Duration::from_secs(10)), None);
        // 100 ms apart: unknown up to the sample that makes the span 2 s.
        let mut m = RateMonitor::new(Duration::from_secs(1));
        for i in 0..20 {
            m.push(t0 + MS * (100 * i), 1000);
            assert_eq!(m.rate(t0 + MS * (100 * i)), None, "sample {i}");
        }
        m.push(t0 + MS * 2000, 1000);
        assert!(m.rate(t0 + MS * 2000).is_some());
    }

    /// Upstream rate_test.go "expected rate": their clock advances 100 ms on every read,
    /// including the read in `GetRate`.
    #[test]
    fn rate_over_the_newest_window_matches_upstream_cases() {
        let t0 = Instant::now();
        let mut clock = 0u32;
        let mut tick = || {
            clock += 100;
            t0 + MS * clock
        };
        let mut m = RateMonitor::new(Duration::from_secs(1));
        for _ in 0..22 {
            m.push(tick(), 1000);
        }
        assert_eq!(m.samples_duration(), Duration::from_secs(2));
        assert_eq!(m.samples.len(), 21);
        assert_eq!(
            m.rate_and_span(tick()),
            Some((80_000, Duration::from_secs(1)))
        );

        let mut m = RateMonitor::new(Duration::from_secs(1));
        for i in 0..22 {
            m.push(tick(), if i % 2 == 0 { 0 } else { 1000 });
        }
        assert_eq!(
            m.rate_and_span(tick()),
            Some((40_000, Duration::from_secs(1)))
        );
    }

    /// Upstream rate_test.go `TestGetSamplesDuration`: one sample per second, window 2 s.
    #[test]
    fn samples_duration_stops_growing_once_filled() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut m = RateMonitor::new(Duration::from_secs(2));
        m.push(at(1), 1000);
        assert_eq!(m.samples_duration(), Duration::ZERO);
        for s in 2..=4 {
            m.push(at(s), 1000);
        }
        assert!(!m.filled);
        assert_eq!(m.samples_duration(), Duration::from_secs(3));
        m.push(at(5), 1000);
        assert!(m.filled);
        assert_eq!(m.samples_duration(), Duration::from_secs(4));
        m.push(at(6), 1000);
        m.push(at(7), 1000);
        assert_eq!(m.samples.len(), 5);
        assert_eq!(m.samples_duration(), Duration::from_secs(4));
    }

    #[test]
    fn a_steady_stream_reports_its_bit_rate() {
        // 50 packets/s of 1250 bytes = 500 kbit/s, the `l` layer's nominal rate.
        let t0 = Instant::now();
        let mut m = RateMonitor::new(Duration::from_secs(5));
        let mut last = t0;
        for i in 0..600u32 {
            last = t0 + MS * (20 * i);
            m.push(last, 1250);
        }
        assert_eq!(m.rate(last), Some(502_000), "one extra packet at age 0");
        assert_eq!(m.rate(last + MS * 20), Some(500_000));
    }

    #[test]
    fn a_fixed_sample_count_measures_less_time_when_packets_speed_up() {
        let t0 = Instant::now();
        let mut m = RateMonitor::new(Duration::from_secs(1));
        // 10 packets/s fills 21 samples over 2 s…
        for i in 0..=20u32 {
            m.push(t0 + MS * (100 * i), 100);
        }
        assert_eq!(m.samples.len(), 21);
        // …then 100 packets/s: 21 samples cover 0.2 s, so the rate is over that span.
        let mut last = t0;
        for i in 1..=100u32 {
            last = t0 + MS * (2000 + 10 * i);
            m.push(last, 100);
        }
        let now = last + MS * 10;
        assert_eq!(m.rate_and_span(now), Some((80_000, MS * 210)));
    }

    #[test]
    fn memory_is_capped_and_a_capped_monitor_reports_a_rate() {
        let t0 = Instant::now();
        let mut m = RateMonitor::new(Duration::from_secs(2));
        // 100 000 packets/s never span 4 s within the cap.
        let mut last = t0;
        for i in 0..(MAX_SAMPLES as u32 + 100) {
            last = t0 + Duration::from_micros(10 * u64::from(i));
            m.push(last, 100);
        }
        assert_eq!(m.samples.len(), MAX_SAMPLES);
        let (bps, span) = m.rate_and_span(last + Duration::from_micros(10)).unwrap();
        assert_eq!(span, Duration::from_micros(10 * MAX_SAMPLES as u64));
        assert_eq!(bps, 80_000_000);
    }

    #[test]
    fn a_clock_going_backwards_yields_unknown_not_a_panic() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut m = RateMonitor::new(Duration::from_secs(1));
        m.push(t0, 1);
        m.push(t0 + Duration::from_secs(3), 1);
        assert_eq!(m.rate(t0 - Duration::from_secs(50)), None);
        m.push(t0 - Duration::from_secs(50), 1);
        let _ = m.samples_duration();
        let mut z = RateMonitor::new(Duration::ZERO);
        z.push(t0, 1);
        assert_eq!(z.rate(t0), None);
    }
}
