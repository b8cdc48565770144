//! rtcd's voice activity detection (spec §5.9): over the last 50 audio levels (0 loudest,
//! 127 silence), voice turns on when the sample standard deviation exceeds 10 and off when it
//! falls under 4, but not sooner than 2 s after it turned on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const WINDOW: usize = 50;
pub const ON_THRESHOLD: i64 = 10;
pub const OFF_THRESHOLD: i64 = 4;
pub const MIN_ACTIVE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
pub struct VoiceActivity {
    levels: VecDeque<u8>,
    on_since: Option<Instant>,
}

/// Go's `math.Round`: half away from zero.
fn round(x: f64) -> i64 {
    x.round() as i64
}

impl VoiceActivity {
    pub fn new() -> Self {
        VoiceActivity {
            levels: VecDeque::with_capacity(WINDOW),
            on_since: None,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on_since.is_some()
    }

    /// Rounded mean and rounded sample (n−1) standard deviation of the window.
    fn stats(&self) -> (i64, i64) {
        let n = self.levels.len() as f64;
        let mean = self.levels.iter().map(|&l| f64::from(l)).sum::<f64>() / n;
        let var = self
            .levels
            .iter()
            .map(|&l| (f64::from(l) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (round(mean), round(var.sqrt()))
    }

    /// Adds one packet's level; returns `Some(on)` when voice turns on or off.
    pub fn push(&mut self, level: u8, now: Instant) -> Option<bool> {
        if self.levels.len() == WINDOW {
            self.levels.pop_front();
        }
        self.levels.push_back(level.min(127));
        if self.levels.len() < WINDOW {
            return None;
        }
        let (_, stddev) = self.stats();
        match self.on_since {
            None if stddev > ON_THRESHOLD => {
                self.on_since = Some(now);
                Some(true)
            }
            Some(since)
                if stddev < OFF_THRESHOLD && now.saturating_duration_since(since) >= MIN_ACTIVE =>
            {
                self.on_since = None;
                Some(false)
            }
            _ => None,
        }
    }

    /// Clears the window and turns voice off. rtcd's Mute calls this and then always sends
    /// VoiceOff, whatever the previous state; the return says whether it was on.
    pub fn reset(&mut self) -> bool {
        self.levels.clear();
        self.on_since.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(
        v: &mut VoiceActivity,
        levels: impl IntoIterator<Item = u8>,
        t0: Instant,
        start_ms: u64,
    ) -> Vec<(u64, bool)> {
        let mut edges = Vec::new();
        for (i, l) in levels.into_iter().enumerate() {
            let ms = start_ms + 20 * i as u64;
            if let Some(on) = v.push(l, t0 + Duration::from_millis(ms)) {
                edges.push((ms, on));
            }
        }
        edges
    }

    #[test]
    fn no_decision_before_the_window_is_full() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        let speech = (0..49).map(|i| if i % 2 == 0 { 0 } else { 100 });
        assert!(feed(&mut v, speech, t0, 0).is_empty());
        assert_eq!(v.push(0, t0 + Duration::from_secs(1)), Some(true));
    }

    #[test]
    fn steady_silence_never_activates() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        assert!(feed(&mut v, std::iter::repeat_n(127, 200), t0, 0).is_empty());
    }

    #[test]
    fn voice_turns_off_only_after_two_seconds_of_activity() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        let speech = (0..50).map(|i| if i % 2 == 0 { 10 } else { 90 });
        assert_eq!(feed(&mut v, speech, t0, 0), vec![(980, true)]);
        // Silence right away: stddev drops below 4 once the loud samples have left the
        // window (after 50 packets = 1 s), but the 2 s minimum holds it on until 2.98 s.
        let edges = feed(&mut v, std::iter::repeat_n(127, 150), t0, 1000);
        assert_eq!(edges.len(), 1);
        let (ms, on) = edges[0];
        assert!(!on);
        assert!(ms >= 980 + 2000, "turned off at {ms} ms");
    }

    #[test]
    fn reset_clears_state() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        feed(
            &mut v,
            (0..50).map(|i| if i % 2 == 0 { 0 } else { 100 }),
            t0,
            0,
        );
        assert!(v.is_on());
        assert!(v.reset());
        assert!(!v.is_on());
        assert!(!v.reset());
        // After a reset the window refills before any decision.
        assert!(feed(
            &mut v,
            (0..49).map(|i| if i % 2 == 0 { 0 } else { 100 }),
            t0,
            2000
        )
        .is_empty());
    }
}
