//! `cpu_load` for `GET /system` (spec §1.3): elapsed seconds divided by idle CPU-seconds over
//! the same interval, i.e. the reciprocal of the number of idle CPUs. The plugin places new
//! calls on the host with the lowest value.
//!
//! Deviation: upstream divides by zero when no CPU was idle (+Inf, then an empty 200 body);
//! we count at least one clock tick of idle time so the value stays finite and monotone.
//!
//! Extension: while the daemon drains (after SIGTERM), the value is [`DRAINING_CPU_LOAD`], far
//! above anything a working host reports, so the plugin places new calls on other daemons.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Idle time (in clock ticks) from the aggregate `cpu` line of `/proc/stat` (idle + iowait).
pub fn parse_idle_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let idle = *fields.get(3)?;
    let iowait = fields.get(4).copied().unwrap_or(0);
    Some(idle + iowait)
}

/// Load between two samples taken `elapsed` apart.
pub fn cpu_load(elapsed: Duration, idle_ticks_delta: u64, ticks_per_second: u64) -> f64 {
    let tps = ticks_per_second.max(1) as f64;
    let idle_seconds = (idle_ticks_delta.max(1)) as f64 / tps;
    elapsed.as_secs_f64() / idle_seconds
}

/// `cpu_load` reported while draining: a saturated host reports about 100 (one clock tick of
/// idle time per second), so this loses every comparison and still decodes as a float.
pub const DRAINING_CPU_LOAD: f64 = 1.0e6;

/// Latest `cpu_load`, shared with the HTTP handler (0 until two samples exist).
#[derive(Clone, Default)]
pub struct CpuLoad(Arc<AtomicU64>, Arc<AtomicBool>);

impl CpuLoad {
    pub fn get(&self) -> f64 {
        if self.1.load(Ordering::Relaxed) {
            return DRAINING_CPU_LOAD;
        }
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// From now on report [`DRAINING_CPU_LOAD`] (the daemon is draining).
    pub fn set_draining(&self) {
        self.1.store(true, Ordering::Relaxed);
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Samples `/proc/stat` every `period` until the task is dropped.
    pub fn spawn_sampler(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let tps = clock_ticks_per_second();
        tokio::spawn(async move {
            let mut prev: Option<(tokio::time::Instant, u64)> = None;
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Ok(stat) = tokio::fs::read_to_string("/proc/stat").await else {
                    continue;
                };
                let Some(idle) = parse_idle_ticks(&stat) else {
                    continue;
                };
                let now = tokio::time::Instant::now();
                if let Some((t0, idle0)) = prev {
                    me.set(cpu_load(now - t0, idle.saturating_sub(idle0), tps));
                }
                prev = Some((now, idle));
            }
        })
    }
}

/// `/proc/stat` counts in USER_HZ, which the kernel fixes at 100 on every architecture we
/// build for (x86_64, aarch64), independent of the kernel's internal HZ.
fn clock_ticks_per_second() -> u64 {
    100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_ticks_come_from_the_aggregate_cpu_line() {
        let stat = "cpu  100 0 50 1000 20 0 0 0 0 0\ncpu0 50 0 25 500 10 0 0 0 0 0\n";
        assert_eq!(parse_idle_ticks(stat), Some(1020));
        assert_eq!(parse_idle_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn load_is_reciprocal_of_idle_cpus() {
        // 1 s elapsed, 4 CPUs fully idle (400 ticks at 100 Hz) → 0.25.
        assert!((cpu_load(Duration::from_secs(1), 400, 100) - 0.25).abs() < 1e-9);
        // One idle CPU → 1.0.
        assert!((cpu_load(Duration::from_secs(1), 100, 100) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_draining_host_reports_a_load_above_any_working_host() {
        let l = CpuLoad::default();
        l.set(cpu_load(Duration::from_secs(1), 0, 100));
        let saturated = l.get();
        l.set_draining();
        assert!(l.get() > saturated * 1000.0 && l.get().is_finite());
    }

    #[test]
    fn saturated_host_gives_a_finite_load() {
        let v = cpu_load(Duration::from_secs(1), 0, 100);
        assert!(v.is_finite() && v >= 100.0);
    }
}
