//! Screen-share simulcast layer choice (spec §5.7, upstream `service/rtc/simulcast.go` and
//! `session.go::getExpectedSimulcastLevel`).
//!
//! Owns: which layer (`l`/`h`) a receiver should get when a screen track appears
//! ([`expected_layer`]), and when to switch a receiver's layer as its bandwidth estimate
//! moves ([`LayerController`]). Switching itself (remove the current track, add the other
//! layer's, two renegotiations) is the caller's.
//!
//! Inputs and str0m: pion's send-side estimator reports a target rate plus separate
//! loss-based and delay-based estimates; str0m reports one TWCC estimate
//! (`Event::EgressBitrateEstimate(BweKind::Twcc)`). [`LayerController::on_estimate`] takes
//! the separate estimates as `Option`s. A missing estimate counts as 0, which is what
//! upstream's failed type assertion gives, with these consequences: the loss-based veto on
//! downgrades never fires, and the "both dropped" exception to the backoff fires only on the
//! first event after a switch. With str0m, pass the single estimate as both: the veto then
//! never fires either (loss-based = estimate cannot exceed 0.9 × source while the estimate
//! itself says "downgrade"), but a falling estimate while on `h` downgrades during the
//! backoff as upstream intends.
//!
//! Must not: read the clock (time is an argument).

use std::time::{Duration, Instant};

use crate::keyframe::TokenBucket;

/// Nominal rate of the `h` layer (bits/s).
pub const HIGH_RATE: u64 = 2_500_000;
/// Nominal rate of the `l` layer (bits/s).
pub const LOW_RATE: u64 = 500_000;
/// rtcd's `rateTolerance`: a rate "reaches" another above 0.9 of it.
pub const RATE_TOLERANCE: f32 = 0.9;
/// Wait after the first switch; each switch multiplies it by 1.5.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);

/// A screen-share simulcast layer, by RID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layer {
    /// `l`, rtcd's default (also a non-simulcast screen track).
    #[default]
    Low,
    /// `h`.
    High,
}

impl Layer {
    pub fn rid(self) -> &'static str {
        match self {
            Layer::Low => "l",
            Layer::High => "h",
        }
    }

    /// The layer of a RID; `None` for other RIDs. (A track without a RID is rtcd's `l`.)
    pub fn from_rid(rid: &str) -> Option<Layer> {
        match rid {
            "l" => Some(Layer::Low),
            "h" => Some(Layer::High),
            _ => None,
        }
    }

    /// Nominal bit rate of the layer (rtcd's `simulcastRates`).
    pub fn nominal_rate(self) -> u64 {
        match self {
            Layer::Low => LOW_RATE,
            Layer::High => HIGH_RATE,
        }
    }

    /// The [`RateMonitor`](crate::rate::RateMonitor) window for the layer's source rate:
    /// 2 s for `h`, 5 s for `l`.
    pub fn rate_window(self) -> Duration {
        match self {
            Layer::Low => Duration::from_secs(5),
            Layer::High => Duration::from_secs(2),
        }
    }
}

/// `int(float32(rate) * rateTolerance)` exactly as Go computes it: in `f32`, truncated.
fn tolerated(rate: u64) -> u64 {
    // Float-to-int `as` truncates toward zero and saturates, like Go for in-range values.
    (rate as f32 * RATE_TOLERANCE) as u64
}

/// The layer a receiver should get when a simulcast screen track appears: `h` if its BWE
/// target is above 0.9 × 2.5 Mbit/s (= 2 250 000), else `l`. Receivers without an
/// estimator, and new joiners, get `l` (the caller passes no estimate; see [`Layer::default`]).
pub fn expected_layer(bwe_target_bps: u64) -> Layer {
    if bwe_target_bps > tolerated(HIGH_RATE) {
        Layer::High
    } else {
        Layer::Low
    }
}

/// rtcd's `getSimulcastLevel`: `h` if the estimate is above 0.9 × the source rate.
fn layer_for(estimate_bps: u64, source_bps: u64) -> Layer {
    if source_bps > 0 && estimate_bps > tolerated(source_bps) {
        Layer::High
    } else {
        Layer::Low
    }
}

/// One receiver's layer switching: feed it every bandwidth estimate.
#[derive(Debug, Clone)]
pub struct LayerController {
    events: TokenBucket,
    backoff: Duration,
    last_switch: Option<Instant>,
    last_delay_bps: u64,
    last_loss_bps: u64,
}

impl Default for LayerController {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerController {
    pub fn new() -> Self {
        LayerController {
            events: TokenBucket::bwe_events(),
            backoff: INITIAL_BACKOFF,
            last_switch: None,
            last_delay_bps: 0,
            last_loss_bps: 0,
        }
    }

    /// The current backoff (10 s, then ×1.5 after every switch).
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Evaluates a new estimate; `Some(layer)` means "switch to `layer` now" and commits
    /// the switch (backoff grows, the estimate history is reset to the new layer's rate).
    ///
    /// * `estimate_bps`: the estimator's target rate.
    /// * `loss_based_bps`, `delay_based_bps`: its separate estimates, if it has them (see the
    ///   module doc for what `None` does).
    /// * `current`: the layer this receiver currently receives, `None` when it receives no
    ///   simulcast screen track (then nothing switches, but the event still counts against
    ///   the rate limit and updates the history, as upstream).
    /// * `source_rate`: the measured source rate of a layer of the current sharer, for the
    ///   codec this receiver gets; `None` (or 0) while unknown **or when that layer's track is
    ///   not available** to forward.
    ///
    /// On `Some(Layer::High)` the caller also sets the estimator's target to
    /// `source_rate(High)`, as rtcd does, so the estimate reflects the new source.
    ///
    /// Rules, in upstream's order: at most 1 event/s with a burst of 4 (excess ignored);
    /// skip while within the backoff since the last switch, unless on `h` and both the loss-
    /// and delay-based estimates dropped since the previous event; target `h` if the estimate
    /// is above 0.9 × the current layer's source rate, else `l`; do not leave `h` while the
    /// loss-based estimate is above 0.9 × that source rate; the target layer's rate must be
    /// known.
    ///
    /// Deviation: upstream tests "on `h`" with the layer of its own last switch (starting at
    /// `l`); this uses `current`. They differ only after a screen share restarts.
    pub fn on_estimate(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        loss_based_bps: Option<u64>,
        delay_based_bps: Option<u64>,
        current: Option<Layer>,
        source_rate: impl Fn(Layer) -> Option<u64>,
    ) -> Option<Layer> {
        // rtcd: "up to one rate change per second with a burst size of 4".
        if !self.events.allow(now) {
            return None;
        }
        let loss = loss_based_bps.unwrap_or(0);
        let delay = delay_based_bps.unwrap_or(0);
        let both_dropped = delay < self.last_delay_bps && loss < self.last_loss_bps;
        self.last_delay_bps = delay;
        self.last_loss_bps = loss;

        // rtcd: give the estimate time to settle after a switch, unless serving `h` and the
        // estimate is falling, where acting fast matters.
        let in_backoff = self
            .last_switch
            .is_some_and(|at| now.saturating_duration_since(at) < self.backoff);
        let on_high = current == Some(Layer::High);
        if in_backoff && !(on_high && both_dropped) {
            return None;
        }

        let current = current?;
        let current_rate = source_rate(current).filter(|&r| r > 0)?;
        let target = layer_for(estimate_bps, current_rate);
        if target == current {
            return None;
        }
        // rtcd: a loss-based estimate above the source rate means the delay-based one is
        // fluctuating; do not downgrade on it.
        if current == Layer::High && loss > tolerated(current_rate) {
            return None;
        }
        let target_rate = source_rate(target).filter(|&r| r > 0)?;
        self.commit(now, target_rate);
        Some(target)
    }

    /// Records a switch made outside [`Self::on_estimate`] (the receiver's current layer
    /// stopped arriving and it falls back): the backoff grows as for any switch, and the next
    /// estimates are compared against `target_rate`. Not rate-limited: a frozen picture
    /// does not wait. Extension (not upstream; see the caller).
    pub fn fallback(&mut self, now: Instant, target_rate: u64) {
        self.commit(now, target_rate);
    }

    fn commit(&mut self, now: Instant, target_rate: u64) {
        // Go: `backoff + backoff/2` on int64 nanoseconds.
        self.backoff = self.backoff.saturating_add(self.backoff / 2);
        // The new source may be slower than the old estimates; compare against it next time.
        self.last_delay_bps = target_rate;
        self.last_loss_bps = target_rate;
        self.last_switch = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_counts_as_a_switch_for_the_backoff() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        c.fallback(t0, 450_000);
        assert_eq!(c.backoff(), Duration::from_secs(15));
        // Within the backoff an upgrade waits, even with a high estimate.
        assert_eq!(
            c.on_estimate(t0 + SEC, 5_000_000, None, None, Some(Layer::Low), both),
            None
        );
        // After it, the upgrade goes ahead.
        assert_eq!(
            c.on_estimate(t0 + 16 * SEC, 5_000_000, None, None, Some(Layer::Low), both),
            Some(Layer::High)
        );
    }

    const SEC: Duration = Duration::from_secs(1);

    /// A sharer whose `l` arrives at 450 kbit/s and `h` at 2.4 Mbit/s.
    fn both(layer: Layer) -> Option<u64> {
        Some(match layer {
            Layer::Low => 450_000,
            Layer::High => 2_400_000,
        })
    }

    #[test]
    fn layers_map_to_rids_and_rates() {
        for l in [Layer::Low, Layer::High] {
            assert_eq!(Layer::from_rid(l.rid()), Some(l));
        }
        assert_eq!(Layer::from_rid("m"), None);
        assert_eq!(Layer::default(), Layer::Low);
        assert_eq!(Layer::High.nominal_rate(), HIGH_RATE);
        assert_eq!(Layer::Low.rate_window(), 5 * SEC);
        assert_eq!(Layer::High.rate_window(), 2 * SEC);
    }

    #[test]
    fn tolerance_is_computed_in_f32_like_go() {
        assert_eq!(tolerated(2_500_000), 2_250_000);
        assert_eq!(tolerated(500_000), 450_000);
        // f32 has 24 bits of mantissa: 0.9 × 33 554 433 is computed on 33 554 432.
        assert_eq!(tolerated(33_554_433), 30_198_988);
        assert_eq!(tolerated(0), 0);
    }

    #[test]
    fn expected_layer_is_high_only_above_ninety_percent_of_the_high_rate() {
        assert_eq!(expected_layer(0), Layer::Low);
        assert_eq!(expected_layer(2_250_000), Layer::Low);
        assert_eq!(expected_layer(2_250_001), Layer::High);
        assert_eq!(expected_layer(u64::MAX), Layer::High);
    }

    #[test]
    fn upgrades_when_the_estimate_exceeds_the_current_layers_source_rate() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        // 0.9 × 450 000 = 405 000.
        let e = |c: &mut LayerController, t, bps| {
            c.on_estimate(t, bps, None, None, Some(Layer::Low), both)
        };
        assert_eq!(e(&mut c, t0, 405_000), None);
        assert_eq!(e(&mut c, t0 + SEC, 405_001), Some(Layer::High));
    }

    #[test]
    fn downgrades_when_the_estimate_falls_under_the_current_layers_source_rate() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        // 0.9 × 2 400 000 = 2 160 000.
        let e = |c: &mut LayerController, t, bps| {
            c.on_estimate(t, bps, Some(bps), Some(bps), Some(Layer::High), both)
        };
        assert_eq!(e(&mut c, t0, 2_160_001), None);
        assert_eq!(e(&mut c, t0 + SEC, 2_160_000), Some(Layer::Low));
    }

    #[test]
    fn nothing_switches_without_a_screen_track_or_known_rates() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        assert_eq!(c.on_estimate(t0, 3_000_000, None, None, None, both), None);
        let no_rates = |_| None;
        assert_eq!(
            c.on_estimate(t0 + SEC, 3_000_000, None, None, Some(Layer::Low), no_rates),
            None,
            "current layer's rate unknown"
        );
        let only_low = |l| (l == Layer::Low).then_some(450_000);
        assert_eq!(
            c.on_estimate(
                t0 + 2 * SEC,
                3_000_000,
                None,
                None,
                Some(Layer::Low),
                only_low
            ),
            None,
            "target layer unavailable"
        );
        let zero = |_| Some(0);
        assert_eq!(
            c.on_estimate(t0 + 3 * SEC, 3_000_000, None, None, Some(Layer::Low), zero),
            None
        );
        // None of these was a switch: no backoff started.
        assert_eq!(
            c.on_estimate(t0 + 4 * SEC, 3_000_000, None, None, Some(Layer::Low), both),
            Some(Layer::High)
        );
    }

    #[test]
    fn estimates_are_rate_limited_to_one_per_second_with_a_burst_of_four() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        for _ in 0..4 {
            assert_eq!(
                c.on_estimate(t0, 100_000, None, None, Some(Layer::Low), both),
                None
            );
        }
        // Would upgrade, but the burst is spent.
        assert_eq!(
            c.on_estimate(t0, 3_000_000, None, None, Some(Layer::Low), both),
            None
        );
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            c.on_estimate(half, 3_000_000, None, None, Some(Layer::Low), both),
            None
        );
        assert_eq!(
            c.on_estimate(t0 + SEC, 3_000_000, None, None, Some(Layer::Low), both),
            Some(Layer::High)
        );
    }

    #[test]
    fn estimates_without_a_screen_track_still_spend_the_rate_limit() {
        // Upstream's limiter sits in the estimator callback, before it looks for a screen.
        let t0 = Instant::now();
        let mut c = LayerController::new();
        for _ in 0..4 {
            assert_eq!(c.on_estimate(t0, 3_000_000, None, None, None, both), None);
        }
        let low = Some(Layer::Low);
        assert_eq!(c.on_estimate(t0, 3_000_000, None, None, low, both), None);
        assert_eq!(
            c.on_estimate(t0 + SEC, 3_000_000, None, None, low, both),
            Some(Layer::High),
            "no backoff before the first switch"
        );
    }

    #[test]
    fn backoff_starts_at_ten_seconds_and_grows_by_half_after_each_switch() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        let up = |c: &mut LayerController, t| {
            c.on_estimate(
                t,
                3_000_000,
                Some(3_000_000),
                Some(3_000_000),
                Some(Layer::Low),
                both,
            )
        };
        // A rising delay-based estimate: never "both dropped".
        let mut rising = 3_000_000;
        let mut down = |c: &mut LayerController, t| {
            rising += 1;
            c.on_estimate(
                t,
                1_000_000,
                Some(1_000),
                Some(rising),
                Some(Layer::High),
                both,
            )
        };
        assert_eq!(up(&mut c, t0), Some(Layer::High));
        assert_eq!(c.backoff(), 15 * SEC);
        // The first downgrade attempt is checked against the grown backoff.
        assert_eq!(down(&mut c, t0 + 10 * SEC), None);
        assert_eq!(down(&mut c, t0 + 14 * SEC), None);
        let t1 = t0 + 15 * SEC;
        assert_eq!(down(&mut c, t1), Some(Layer::Low));
        assert_eq!(c.backoff(), Duration::from_millis(22_500));
        assert_eq!(up(&mut c, t1 + 22 * SEC), None);
        let t2 = t1 + Duration::from_millis(22_500);
        assert_eq!(up(&mut c, t2), Some(Layer::High));
        assert_eq!(c.backoff(), Duration::from_millis(33_750));
    }

    #[test]
    fn on_high_a_drop_of_both_estimates_bypasses_the_backoff() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        let high = Some(Layer::High);
        assert_eq!(
            c.on_estimate(t0, 3_000_000, None, None, Some(Layer::Low), both),
            Some(Layer::High)
        );
        // After the switch the history is the new source rate (2.4 M). Only the delay-based
        // estimate dropped: still in backoff.
        let t = t0 + 2 * SEC;
        assert_eq!(
            c.on_estimate(t, 1_000_000, Some(2_500_000), Some(1_000_000), high, both),
            None
        );
        // Only the loss-based one dropped (relative to the previous event): still in backoff.
        let t = t0 + 3 * SEC;
        assert_eq!(
            c.on_estimate(t, 1_000_000, Some(1_500), Some(1_000_000), high, both),
            None
        );
        // Both dropped since the previous event: switch now.
        let t = t0 + 4 * SEC;
        assert_eq!(
            c.on_estimate(t, 900_000, Some(1_000), Some(900_000), high, both),
            Some(Layer::Low)
        );
    }

    #[test]
    fn on_low_a_drop_does_not_bypass_the_backoff() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        let high_then = c.on_estimate(t0, 3_000_000, None, None, Some(Layer::Low), both);
        assert_eq!(high_then, Some(Layer::High));
        // Suppose the switch was later undone by the caller: on `l`, falling estimates that
        // would still ask for `h` wait for the backoff.
        let t = t0 + 2 * SEC;
        assert_eq!(
            c.on_estimate(
                t,
                1_000_000,
                Some(1_000_000),
                Some(1_000_000),
                Some(Layer::Low),
                both
            ),
            None
        );
    }

    #[test]
    fn a_high_loss_based_estimate_vetoes_a_downgrade() {
        let t0 = Instant::now();
        let mut c = LayerController::new();
        let high = Some(Layer::High);
        // Estimate under 0.9 × 2.4 M, but loss-based above it: stay on `h`.
        assert_eq!(
            c.on_estimate(t0, 1_000_000, Some(2_160_001), Some(1_000_000), high, both),
            None
        );
        assert_eq!(
            c.on_estimate(
                t0 + SEC,
                1_000_000,
                Some(2_160_000),
                Some(1_000_000),
                high,
                both
            ),
            Some(Layer::Low)
        );
    }

    #[test]
    fn a_single_estimate_passed_as_both_downgrades_fast_when_it_falls() {
        // The str0m wiring suggested in the module doc.
        let t0 = Instant::now();
        let mut c = LayerController::new();
        let mut feed = |t, bps, cur| c.on_estimate(t, bps, Some(bps), Some(bps), Some(cur), both);
        assert_eq!(feed(t0, 3_000_000, Layer::Low), Some(Layer::High));
        assert_eq!(
            feed(t0 + SEC, 2_450_000, Layer::High),
            None,
            "not falling: backoff"
        );
        assert_eq!(feed(t0 + 2 * SEC, 1_200_000, Layer::High), Some(Layer::Low));
    }
}
