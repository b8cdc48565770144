//! The run's JSON report and its one-screen human summary.

use serde::Serialize;

use crate::meter::Meter;
use crate::metrics::{loss_fraction, percentiles, Percentiles};
use crate::opts::{Opts, ServerKind, Shape};
use crate::procstat::CpuTimes;
use crate::Slot;

/// Above this share of its own core the generator, not the server, may be the bottleneck.
pub const GENERATOR_SATURATED: f64 = 0.85;
/// Capacity limits (perf-anchors §5.4).
pub const SLO_LOSS: f64 = 0.001;
pub const SLO_P99_MS: f64 = 20.0;

#[derive(Debug, Serialize)]
pub struct ServerReport {
    /// CPU cap of the server's cgroup, % of one core (None: uncapped).
    pub cpu_cap_pct: Option<u32>,
    pub cpu: Option<CpuTimes>,
    /// Share of one core over the window.
    pub cpu_core_fraction: Option<f64>,
    pub forwarded_packets_per_cpu_s: Option<f64>,
    pub cpu_us_per_forwarded_packet: Option<f64>,
    pub rss_idle_bytes: Option<u64>,
    pub rss_loaded_bytes: Option<u64>,
    pub rss_per_session_kb: Option<f64>,
    /// Share of the window the server's threads (summed) waited for a CPU.
    pub run_queue_wait_fraction: Option<f64>,
    /// Server CPU spent while the sessions joined, per join.
    pub setup_cpu_ms_per_join: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct GeneratorReport {
    pub cpu: Option<CpuTimes>,
    pub cpu_core_fraction: Option<f64>,
    pub setup_cpu: Option<CpuTimes>,
    /// Share of the window the generator's thread was runnable but waiting for its core.
    pub run_queue_wait_fraction: Option<f64>,
    /// The generator used more than 85 % of a core, or used plus waited more than 85 %: the
    /// numbers measure it (or the machine's other load), not the server.
    pub saturated: bool,
}

#[derive(Debug, Serialize)]
pub struct ReceiverReport {
    pub slot: usize,
    pub call: usize,
    pub expected: u64,
    pub unique: u64,
    pub packets: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub loss: f64,
    pub jitter_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ChurnReport {
    pub joins: usize,
    pub connected: usize,
    pub with_media: usize,
    pub joins_per_s: f64,
    pub time_to_connect_ms: Percentiles,
    pub time_to_first_media_ms: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub server_kind: ServerKind,
    pub shape: Shape,
    pub n: usize,
    pub sessions: usize,
    pub connected: usize,
    pub setup_s: f64,
    pub connect_ms: Percentiles,
    pub window_s: f64,
    /// Frames (audio packets, video frames; raw mode: video packets) stamped in the window.
    pub sent_frames: u64,
    pub sent_packets: u64,
    /// None under churn, where membership changes during the window.
    pub expected_frames: Option<u64>,
    pub received_frames: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub loss: Option<f64>,
    pub forwarded_packets: u64,
    pub forwarded_pps: f64,
    pub latency_audio_ms: Percentiles,
    pub latency_video_ms: Percentiles,
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    pub server: ServerReport,
    pub generator: GeneratorReport,
    pub churn: Option<ChurnReport>,
    pub within_slo: bool,
    pub malformed_payloads: u64,
    pub ws_closes: u64,
    pub errors: Vec<String>,
    pub receivers: Vec<ReceiverReport>,
}

pub struct Input<'a> {
    pub opts: &'a Opts,
    pub meter: &'a Meter,
    pub slots: &'a [Slot],
    pub window_s: f64,
    pub server_cpu: Option<CpuTimes>,
    pub gen_cpu: Option<CpuTimes>,
    pub setup_s: f64,
    pub setup_cpu: Option<CpuTimes>,
    pub gen_setup_cpu: Option<CpuTimes>,
    /// Run-queue wait over the window (starvation by other processes on the core).
    pub gen_wait_s: Option<f64>,
    pub server_wait_s: Option<f64>,
    pub connect_ms: Vec<f64>,
    pub rss_idle: Option<u64>,
    pub rss_loaded: Option<u64>,
    pub errors: Vec<String>,
    pub closes: u64,
    pub churn: bool,
}

/// Percentiles of a small sample (join times), in the sample's unit.
pub fn sample_percentiles(v: &[f64]) -> Percentiles {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| -> f64 {
        if s.is_empty() {
            return 0.0;
        }
        let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
        s[i]
    };
    Percentiles {
        count: s.len() as u64,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: s.last().copied().unwrap_or(0.0),
    }
}

pub fn build(i: &Input) -> Report {
    let m = i.meter;
    // Streams published per call, to know what each receiver should have got.
    let mut by_call: std::collections::HashMap<usize, Vec<(usize, u32)>> = Default::default();
    for (idx, s) in i.slots.iter().enumerate() {
        if s.role.audio {
            by_call.entry(s.call).or_default().push((idx, s.streams.0));
        }
        if s.role.video {
            by_call.entry(s.call).or_default().push((idx, s.streams.1));
        }
    }
    let mut receivers = Vec::new();
    let (mut expected_all, mut unique_all, mut packets_all, mut dup_all, mut reo_all) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut jit_sum, mut jit_n, mut jit_max) = (0.0f64, 0u64, 0.0f64);
    for (idx, s) in i.slots.iter().enumerate() {
        let rx = &m.rx[idx];
        if !s.role.receives {
            continue;
        }
        // Under churn a receiver's expected share depends on when it was present: not counted.
        let expected: u64 = if i.churn {
            0
        } else {
            by_call
                .get(&s.call)
                .map(|v| {
                    v.iter()
                        .filter(|(owner, _)| *owner != idx)
                        .map(|(_, st)| m.sent_in_window.get(st).copied().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0)
        };
        let (mut unique, mut packets, mut dup, mut reo, mut jmax) = (0, 0, 0, 0, 0.0f64);
        for st in rx.values() {
            unique += st.unique;
            packets += st.packets;
            dup += st.duplicates;
            reo += st.reordered;
            let j = st.jitter.value_us / 1000.0;
            jmax = jmax.max(j);
            jit_sum += j;
            jit_n += 1;
        }
        jit_max = jit_max.max(jmax);
        expected_all += expected;
        unique_all += unique;
        packets_all += packets;
        dup_all += dup;
        reo_all += reo;
        receivers.push(ReceiverReport {
            slot: idx,
            call: s.call,
            expected,
            unique,
            packets,
            duplicates: dup,
            reordered: reo,
            loss: loss_fraction(expected, unique),
            jitter_ms: jmax,
        });
    }
    let loss = (!i.churn).then(|| loss_fraction(expected_all, unique_all));
    let w = i.window_s.max(1e-9);
    let server_cpu_s = i.server_cpu.map(|c| c.total());
    let initial = i.slots.iter().filter(|s| !s.churned_in).count();
    let connected = i
        .slots
        .iter()
        .filter(|s| !s.churned_in && s.connected_at.is_some())
        .count();
    let gen_frac = i.gen_cpu.map(|c| c.total() / w);
    let gen_wait = i.gen_wait_s.map(|x| x / w);
    let busy = gen_frac.unwrap_or(0.0) + gen_wait.unwrap_or(0.0);
    let audio = percentiles(&m.audio_hist);
    let video = percentiles(&m.video_hist);
    let worst_p99 = audio.p99_ms.max(video.p99_ms);
    let churn = i.churn.then(|| {
        let c: Vec<&Slot> = i.slots.iter().filter(|s| s.churned_in).collect();
        let ttc: Vec<f64> = c
            .iter()
            .filter_map(|s| Some((s.connected_at? - s.joined_at?).as_secs_f64() * 1000.0))
            .collect();
        let ttfm: Vec<f64> = c
            .iter()
            .filter_map(|s| Some((s.first_media? - s.joined_at?).as_secs_f64() * 1000.0))
            .collect();
        ChurnReport {
            joins: c.len(),
            connected: ttc.len(),
            with_media: ttfm.len(),
            joins_per_s: c.len() as f64 / w,
            time_to_connect_ms: sample_percentiles(&ttc),
            time_to_first_media_ms: sample_percentiles(&ttfm),
        }
    });
    let rss_per_session_kb = match (i.rss_idle, i.rss_loaded) {
        (Some(a), Some(b)) if initial > 0 => {
            Some((b.saturating_sub(a)) as f64 / 1024.0 / initial as f64)
        }
        _ => None,
    };
    Report {
        label: i.opts.label.clone(),
        server_kind: i.opts.server,
        shape: i.opts.shape,
        n: i.opts.n,
        sessions: initial,
        connected,
        setup_s: i.setup_s,
        connect_ms: sample_percentiles(&i.connect_ms),
        window_s: i.window_s,
        sent_frames: m.sent_in_window.values().sum(),
        sent_packets: m.sent_packets,
        expected_frames: (!i.churn).then_some(expected_all),
        received_frames: unique_all,
        duplicates: dup_all,
        reordered: reo_all,
        loss,
        forwarded_packets: packets_all,
        forwarded_pps: packets_all as f64 / w,
        latency_audio_ms: audio,
        latency_video_ms: video,
        jitter_ms_mean: if jit_n > 0 {
            jit_sum / jit_n as f64
        } else {
            0.0
        },
        jitter_ms_max: jit_max,
        server: ServerReport {
            cpu_cap_pct: i.opts.cpu_cap_pct,
            cpu: i.server_cpu,
            cpu_core_fraction: server_cpu_s.map(|c| c / w),
            forwarded_packets_per_cpu_s: server_cpu_s
                .filter(|c| *c > 0.0)
                .map(|c| packets_all as f64 / c),
            cpu_us_per_forwarded_packet: server_cpu_s
                .filter(|_| packets_all > 0)
                .map(|c| c * 1e6 / packets_all as f64),
            rss_idle_bytes: i.rss_idle,
            rss_loaded_bytes: i.rss_loaded,
            rss_per_session_kb,
            run_queue_wait_fraction: i.server_wait_s.map(|x| x / w),
            setup_cpu_ms_per_join: i
                .setup_cpu
                .filter(|_| initial > 0)
                .map(|c| c.total() * 1000.0 / initial as f64),
        },
        generator: GeneratorReport {
            cpu: i.gen_cpu,
            cpu_core_fraction: gen_frac,
            setup_cpu: i.gen_setup_cpu,
            run_queue_wait_fraction: gen_wait,
            saturated: gen_frac.is_some_and(|f| f > GENERATOR_SATURATED)
                || busy > GENERATOR_SATURATED,
        },
        churn,
        within_slo: loss.is_none_or(|l| l <= SLO_LOSS)
            && worst_p99 <= SLO_P99_MS
            && connected == initial,
        malformed_payloads: m.malformed,
        ws_closes: i.closes,
        errors: i.errors.clone(),
        receivers,
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

pub fn summary(r: &Report) -> String {
    let mut s = format!(
        "{:?} {:?} n={} sessions={} connected={} window={:.1}s{}\n",
        r.server_kind,
        r.shape,
        r.n,
        r.sessions,
        r.connected,
        r.window_s,
        r.server
            .cpu_cap_pct
            .map(|c| format!(" (server capped at {c} % of a core)"))
            .unwrap_or_default()
    );
    s += &format!(
        "  forwarded {} pkts ({:.0} pps), loss {}, dup {}, reordered {}\n",
        r.forwarded_packets,
        r.forwarded_pps,
        r.loss
            .map(|l| format!("{:.4}%", l * 100.0))
            .unwrap_or_else(|| "n/a (churn)".into()),
        r.duplicates,
        r.reordered
    );
    let l = &r.latency_audio_ms;
    s += &format!(
        "  audio latency ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; jitter mean {:.3} ms\n",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, r.jitter_ms_mean
    );
    if r.latency_video_ms.count > 0 {
        let v = &r.latency_video_ms;
        s += &format!(
            "  video latency ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}\n",
            v.p50_ms, v.p99_ms, v.p999_ms, v.max_ms
        );
    }
    s += &format!(
        "  server cpu {} s user / {} s sys ({} core), {} pkts/cpu-s, {} us/pkt, rss {} kB/session\n",
        opt(r.server.cpu.map(|c| c.user_s), 2),
        opt(r.server.cpu.map(|c| c.system_s), 2),
        opt(r.server.cpu_core_fraction, 2),
        opt(r.server.forwarded_packets_per_cpu_s, 0),
        opt(r.server.cpu_us_per_forwarded_packet, 2),
        opt(r.server.rss_per_session_kb, 1)
    );
    s += &format!(
        "  generator {} core, waited {} of the window for its core{}; within SLO: {}",
        opt(r.generator.cpu_core_fraction, 2),
        opt(r.generator.run_queue_wait_fraction, 2),
        if r.generator.saturated {
            " (SATURATED: numbers measure the generator)"
        } else {
            ""
        },
        r.within_slo
    );
    if let Some(c) = &r.churn {
        s += &format!(
            "\n  churn: {} joins ({:.1}/s), {} connected, {} with media; first media p50 {:.1} ms p99 {:.1} ms",
            c.joins, c.joins_per_s, c.connected, c.with_media, c.time_to_first_media_ms.p50_ms,
            c.time_to_first_media_ms.p99_ms
        );
    }
    if !r.errors.is_empty() {
        s += &format!("\n  errors: {:?}", r.errors);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_percentiles_pick_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = sample_percentiles(&v);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(sample_percentiles(&[]).count, 0);
    }
}
