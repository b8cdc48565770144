//! Token buckets: rtcd forwards at most one keyframe request per second per source (spec
//! §5.5) and evaluates bandwidth estimates at most once per second with a burst of 4 (§5.7).

use std::time::{Duration, Instant};

/// A token bucket; time is an argument.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    interval: Duration,
    burst: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        let rate = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            1.0
        };
        TokenBucket {
            interval: Duration::from_secs_f64(1.0 / rate),
            burst: burst.max(1),
            tokens: f64::from(burst.max(1)),
            last: None,
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens =
                (self.tokens + elapsed / self.interval.as_secs_f64()).min(f64::from(self.burst));
        }
        self.last = Some(now);
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
    }
}
