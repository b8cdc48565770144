//! Token buckets: rtcd forwards at most one keyframe request per second per source (spec
//! §5.5) and evaluates bandwidth estimates at most once per second with a burst of 4 (§5.7).

use std::time::Instant;

/// A token bucket with golang.org/x/time/rate's semantics (what rtcd uses): it starts full,
/// refills continuously at `rate_per_sec` up to `burst`, and each allowed event takes one
/// token. Time is an argument; a `now` earlier than the last one refills nothing.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A non-finite or non-positive rate is taken as 1/s, a zero burst as 1.
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        let rate_per_sec = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            1.0
        };
        let burst = burst.max(1);
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// rtcd's bandwidth-estimate event limiter: 1/s, burst 4 (spec §5.7).
    pub fn bwe_events() -> Self {
        Self::new(1.0, 4)
    }

    /// Takes a token if one is available at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now > last => {
                let refill = now.duration_since(last).as_secs_f64() * self.rate_per_sec;
                self.tokens = (self.tokens + refill).min(f64::from(self.burst));
                self.last = Some(now);
            }
            Some(_) => {}
            None => self.last = Some(now),
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// rtcd's PLI limiter: rate 1/s, burst 1.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle(TokenBucket);

impl KeyframeThrottle {
    pub fn new() -> Self {
        KeyframeThrottle(TokenBucket::new(1.0, 1))
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        self.0.allow(now)
    }
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keyframe_requests_pass_at_most_once_per_second() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new();
        assert!(k.allow(t0));
        assert!(!k.allow(t0 + Duration::from_millis(500)));
        assert!(!k.allow(t0 + Duration::from_millis(900)));
        assert!(k.allow(t0 + Duration::from_millis(1500)));
        assert!(!k.allow(t0 + Duration::from_millis(1600)));
    }

    #[test]
    fn bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 4);
        for _ in 0..4 {
            assert!(b.allow(t0));
        }
        assert!(!b.allow(t0));
        assert!(b.allow(t0 + Duration::from_secs(1)));
        assert!(!b.allow(t0 + Duration::from_secs(1)));
        // Tokens accumulate up to the burst only.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.allow(later)).count(), 4);
    }

    #[test]
    fn fractional_tokens_accumulate_across_calls() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4.0, 1);
        assert!(b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_millis(100)));
        assert!(!b.allow(t0 + Duration::from_millis(200)));
        assert!(b.allow(t0 + Duration::from_millis(260)));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut k = KeyframeThrottle::new();
        assert!(k.allow(t0));
        assert!(!k.allow(t0 - Duration::from_secs(5)));
        assert!(!k.allow(t0 + Duration::from_millis(999)));
        assert!(k.allow(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn bad_parameters_fall_back_to_one_per_second() {
        let t0 = Instant::now();
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut b = TokenBucket::new(rate, 0);
            assert!(b.allow(t0));
            assert!(!b.allow(t0 + Duration::from_millis(500)));
            assert!(b.allow(t0 + Duration::from_secs(1)));
        }
    }
}
