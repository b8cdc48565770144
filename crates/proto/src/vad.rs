//! rtcd's voice activity detection (spec §5.9, upstream `service/rtc/vad` and
//! `service/rtc/stat`): over the last 50 audio levels (0 loudest, 127 silence), voice turns
//! on when the rounded sample standard deviation exceeds 10 and off when it falls under 4,
//! but not sooner than 2 s after it turned on.
//!
//! Exactness notes, all as upstream:
//! * the first `window` levels only fill the window; the first decision is made on the
//!   `window + 1`-th level, and on every level after that;
//! * the deviation is taken around the **rounded** mean, Bessel-corrected (n − 1), then
//!   rounded; rounding is Go's `math.Round` (half away from zero, = `f64::round`);
//! * the 2 s are measured from the activation, and a deviation under the off threshold
//!   before then is simply ignored (it is re-checked on the next level).
//!
//! Must not: read the clock (time is an argument) or allocate after construction.

use std::time::{Duration, Instant};

pub const WINDOW: usize = 50;
pub const ON_THRESHOLD: u8 = 10;
pub const OFF_THRESHOLD: u8 = 4;
pub const MIN_ACTIVE: Duration = Duration::from_secs(2);

/// The monitor's parameters; [`VadConfig::default`] is rtcd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadConfig {
    /// Levels kept (upstream `VoiceLevelsSampleSize`).
    pub window: usize,
    /// Voice turns on when the deviation is above this.
    pub on_threshold: u8,
    /// Voice turns off when the deviation is below this…
    pub off_threshold: u8,
    /// …and at least this long after it turned on.
    pub min_active: Duration,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            window: WINDOW,
            on_threshold: ON_THRESHOLD,
            off_threshold: OFF_THRESHOLD,
            min_active: MIN_ACTIVE,
        }
    }
}

/// A [`VadConfig`] that upstream's `MonitorConfig.IsValid` would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid VAD config: {0} should be > 0")]
pub struct InvalidVadConfig(&'static str);

/// Rounded mean of `samples` (upstream `stat.Avg`); 0 when empty.
pub fn mean_rounded(samples: &[u8]) -> u8 {
    if samples.is_empty() {
        return 0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s)).sum();
    // The mean of u8 values is within 0..=255, so the cast cannot saturate.
    (sum / samples.len() as f64).round() as u8
}

/// Rounded, Bessel-corrected standard deviation of `samples` around `mean` (upstream
/// `stat.StdDev`, which is handed the rounded mean); 0 when empty. A single sample gives
/// NaN upstream, which converts to 0 both there and here.
pub fn std_dev_rounded(samples: &[u8], mean: u8) -> u8 {
    if samples.is_empty() {
        return 0;
    }
    let total: f64 = samples
        .iter()
        .map(|&s| {
            let d = f64::from(s) - f64::from(mean);
            d * d
        })
        .sum();
    // At most 255·sqrt(n/(n−1)) for n ≥ 2: saturates only for n = 2 and extreme samples,
    // where Go's conversion is undefined anyway.
    (total / (samples.len() as f64 - 1.0)).sqrt().round() as u8
}

/// One publisher's voice activity monitor.
#[derive(Debug, Clone)]
pub struct VoiceActivity {
    cfg: VadConfig,
    /// The window, filled up to `cfg.window`, then used as a ring starting at `next`.
    levels: Vec<u8>,
    next: usize,
    on_since: Option<Instant>,
}

impl Default for VoiceActivity {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceActivity {
    /// rtcd's monitor: window 50, on above 10, off below 4 after 2 s.
    pub fn new() -> Self {
        VoiceActivity {
            cfg: VadConfig::default(),
            levels: Vec::with_capacity(WINDOW),
            next: 0,
            on_since: None,
        }
    }

    /// A monitor with other parameters (upstream's tests use a window of 10).
    pub fn with_config(cfg: VadConfig) -> Result<Self, InvalidVadConfig> {
        if cfg.window == 0 {
            return Err(InvalidVadConfig("window"));
        }
        if cfg.min_active.is_zero() {
            return Err(InvalidVadConfig("min_active"));
        }
        if cfg.on_threshold == 0 {
            return Err(InvalidVadConfig("on_threshold"));
        }
        if cfg.off_threshold == 0 {
            return Err(InvalidVadConfig("off_threshold"));
        }
        Ok(VoiceActivity {
            cfg,
            levels: Vec::with_capacity(cfg.window),
            next: 0,
            on_since: None,
        })
    }

    pub fn is_on(&self) -> bool {
        self.on_since.is_some()
    }

    /// Adds one packet's level (0 loudest … 127 silence; with str0m, `-audio_level`);
    /// returns `Some(on)` when voice turns on or off.
    pub fn push(&mut self, level: u8, now: Instant) -> Option<bool> {
        // rtcd: the levels that fill the window are not evaluated.
        if self.levels.len() < self.cfg.window {
            self.levels.push(level);
            return None;
        }
        self.levels[self.next] = level;
        self.next = (self.next + 1) % self.cfg.window;

        let mean = mean_rounded(&self.levels);
        let dev = std_dev_rounded(&self.levels, mean);
        match self.on_since {
            None if dev > self.cfg.on_threshold => {
                self.on_since = Some(now);
                Some(true)
            }
            // rtcd: VAD turns off only `min_active` after it turned on.
            Some(since)
                if dev < self.cfg.off_threshold
                    && now.saturating_duration_since(since) >= self.cfg.min_active =>
            {
                self.on_since = None;
                Some(false)
            }
            _ => None,
        }
    }

    /// Clears the window and turns voice off; the return says whether it was on.
    ///
    /// rtcd's Mute calls this and then **always** emits VoiceOff, whether or not voice was
    /// on (upstream `Monitor.Reset` invokes the callback with `false` unconditionally), so
    /// callers replicating rtcd send VoiceOff regardless of the returned value.
    pub fn reset(&mut self) -> bool {
        self.levels.clear();
        self.next = 0;
        self.on_since.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `levels` 20 ms apart starting at `start_ms`, returning the edges with their time.
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

    fn alternating(n: usize, a: u8, b: u8) -> impl Iterator<Item = u8> {
        (0..n).map(move |i| if i % 2 == 0 { a } else { b })
    }

    // Upstream stat_test.go, uint8 cases.
    #[test]
    fn mean_is_rounded_half_away_from_zero() {
        assert_eq!(mean_rounded(&[]), 0);
        assert_eq!(mean_rounded(&[2, 4, 4, 4, 5, 5, 7, 9]), 5);
        assert_eq!(mean_rounded(&[1, 2, 3, 4]), 3, "2.5 rounds up");
        assert_eq!(mean_rounded(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 1);
        assert_eq!(mean_rounded(&[24, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 2);
    }

    #[test]
    fn std_dev_is_bessel_corrected_around_the_rounded_mean_and_rounded() {
        assert_eq!(std_dev_rounded(&[], 0), 0);
        let s = [2, 4, 4, 4, 5, 5, 7, 9];
        assert_eq!(std_dev_rounded(&s, mean_rounded(&s)), 2);
        let s = [2, 4, 9, 4, 5, 5, 7, 9];
        assert_eq!(std_dev_rounded(&s, mean_rounded(&s)), 3);
        // Around the rounded mean, not the exact one: mean 3.2 → 3, so sqrt(1/4) = 0.5 → 1,
        // where the exact mean would give sqrt(0.8/4) = 0.447 → 0.
        let s = [3, 3, 3, 3, 4];
        assert_eq!(std_dev_rounded(&s, mean_rounded(&s)), 1);
    }

    #[test]
    fn no_decision_while_the_window_fills_nor_on_its_last_sample() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        // 50 loud, varying levels only fill the window…
        assert!(feed(&mut v, alternating(50, 0, 100), t0, 0).is_empty());
        assert!(!v.is_on());
        // …the 51st is the first one evaluated.
        assert_eq!(v.push(0, t0 + Duration::from_secs(1)), Some(true));
    }

    #[test]
    fn steady_silence_never_activates() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        assert!(feed(&mut v, std::iter::repeat_n(127, 500), t0, 0).is_empty());
    }

    #[test]
    fn activation_follows_a_jump_in_deviation() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        // Background noise with deviation 5 (between the thresholds) never switches.
        assert!(feed(&mut v, alternating(200, 55, 45), t0, 0).is_empty());
        // Speech: louder, varying levels raise the deviation above 10 after a few packets.
        let edges = feed(&mut v, std::iter::repeat_n(20, 20), t0, 4000);
        assert_eq!(edges.len(), 1);
        assert!(edges[0].1);
        assert!(v.is_on());
    }

    #[test]
    fn voice_turns_off_only_two_seconds_after_it_turned_on() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        assert!(feed(&mut v, std::iter::repeat_n(127, 50), t0, 0).is_empty());
        let edges = feed(&mut v, alternating(50, 10, 90), t0, 1000);
        let on_at = edges[0].0;
        assert_eq!(edges, vec![(on_at, true)]);
        // Silence right away: the deviation is under 4 once the loud levels have left the
        // window (50 packets = 1 s), but the 2 s minimum holds voice on until on_at + 2 s.
        let edges = feed(&mut v, std::iter::repeat_n(127, 150), t0, 2000);
        assert_eq!(edges.len(), 1);
        let (off_at, on) = edges[0];
        assert!(!on);
        assert_eq!(off_at, (on_at + 2000).next_multiple_of(20));
        assert!(!v.is_on());
    }

    #[test]
    fn deviation_between_the_thresholds_keeps_voice_on() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        feed(&mut v, std::iter::repeat_n(127, 50), t0, 0);
        assert_eq!(feed(&mut v, alternating(50, 10, 90), t0, 1000).len(), 1);
        // Deviation 5: not under 4, so voice stays on however long it lasts.
        assert!(feed(&mut v, alternating(500, 55, 45), t0, 2000).is_empty());
        assert!(v.is_on());
    }

    /// Upstream vad_test.go `TestPushAudioLevel`, on virtual time.
    #[test]
    fn upstream_push_audio_level_scenario() {
        let cfg = VadConfig {
            window: 10,
            min_active: Duration::from_millis(250),
            on_threshold: 10,
            off_threshold: 5,
        };
        let t0 = Instant::now();
        let mut v = VoiceActivity::with_config(cfg).unwrap();
        assert!(feed(&mut v, alternating(10, 55, 45), t0, 0).is_empty());
        assert_eq!(mean_rounded(&v.levels), 50);
        assert_eq!(std_dev_rounded(&v.levels, 50), 5);
        let t = t0 + Duration::from_millis(200);
        let edges: Vec<_> = (0..4).filter_map(|_| v.push(30, t)).collect();
        assert_eq!(edges, vec![true]);
        // Quieter, steady levels: under the off threshold but too soon after activation.
        let edges: Vec<_> = (0..8).filter_map(|_| v.push(40, t)).collect();
        assert!(edges.is_empty());
        assert!(v.is_on());
        assert_eq!(v.push(40, t + cfg.min_active), Some(false));
        assert!(!v.is_on());
    }

    /// Upstream vad_test.go `TestReset`.
    #[test]
    fn reset_clears_the_window_and_turns_voice_off() {
        let cfg = VadConfig {
            window: 10,
            min_active: Duration::from_millis(250),
            on_threshold: 10,
            off_threshold: 5,
        };
        let t0 = Instant::now();
        let mut v = VoiceActivity::with_config(cfg).unwrap();
        assert!(feed(&mut v, std::iter::repeat_n(45, 10), t0, 0).is_empty());
        assert_eq!(v.push(100, t0 + Duration::from_millis(200)), Some(true));
        assert_eq!(v.next, 1);
        assert!(v.reset());
        assert!(v.levels.is_empty());
        assert_eq!(v.next, 0);
        assert!(!v.is_on());
        assert!(!v.reset(), "already off");
        // After a reset the window refills before any decision.
        let t1 = t0 + Duration::from_secs(1);
        assert!(feed(&mut v, alternating(10, 0, 100), t1, 0).is_empty());
        assert_eq!(v.push(0, t1 + Duration::from_millis(200)), Some(true));
    }

    #[test]
    fn configs_upstream_refuses_are_refused() {
        let ok = VadConfig::default();
        assert!(VoiceActivity::with_config(ok).is_ok());
        for bad in [
            VadConfig { window: 0, ..ok },
            VadConfig {
                min_active: Duration::ZERO,
                ..ok
            },
            VadConfig {
                on_threshold: 0,
                ..ok
            },
            VadConfig {
                off_threshold: 0,
                ..ok
            },
        ] {
            assert!(VoiceActivity::with_config(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn levels_above_127_do_not_panic() {
        let t0 = Instant::now();
        let mut v = VoiceActivity::new();
        feed(&mut v, alternating(200, 0, 255), t0, 0);
        assert!(v.is_on());
    }
}
