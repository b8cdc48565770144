//! Prometheus metrics with upstream's names and labels (spec §8), plus a few extensions
//! (marked below) that count bad input and drops.
//!
//! The control plane updates these directly (it is low-rate). Data-plane counters are kept
//! per worker and summed at scrape time; they are never written into this registry per packet.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

const NS: &str = "rtcd";

/// Upstream's `rtcd_rtc_rtp_tracks_writes_time` buckets.
const WRITE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
];
/// Upstream's `rtcd_rtc_client_loss_rate` buckets.
const LOSS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
];

pub struct Metrics {
    registry: Registry,
    // WebSocket (upstream)
    pub ws_connections: IntGaugeVec,
    pub ws_messages: IntCounterVec,
    // RTC (upstream)
    pub rtc_sessions: IntGaugeVec,
    pub rtc_tracks: IntGaugeVec,
    pub rtc_track_writes_time: HistogramVec,
    pub rtc_conn_states: IntCounterVec,
    pub rtc_errors: IntCounterVec,
    pub rtc_connection_time: HistogramVec,
    pub rtc_dc_open_time: HistogramVec,
    pub rtc_lock_grab_time: HistogramVec,
    pub rtc_lock_locked_time: HistogramVec,
    pub rtc_client_loss_rate: HistogramVec,
    pub rtc_client_rtt: HistogramVec,
    pub rtc_client_jitter: HistogramVec,
    // Extensions (not in upstream): bad input and drops.
    pub ws_errors: IntCounterVec,
    pub auth_errors: IntCounterVec,
    pub bridge_drops: IntCounterVec,
    pub worker_packets: IntCounterVec,
    pub worker_bytes: IntCounterVec,
    pub worker_drops: IntCounterVec,
    pub worker_handovers: IntCounterVec,
    pub worker_fanouts: IntCounterVec,
    pub layer_switches: IntCounterVec,
    pub ring_occupancy: IntGaugeVec,
    pub direct_flows: IntGaugeVec,
    pub recv_buffer_exhaustions: IntCounterVec,
    pub recv_coalesced: IntCounterVec,
    /// Latest loop-turn histograms per worker, rendered by hand (see `render`).
    loop_turns: std::sync::Mutex<Vec<(usize, crate::bridge::LoopTurns)>>,
    pub io_backend: IntGaugeVec,
    pub worker_sessions: IntGaugeVec,
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help).namespace(NS), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help).namespace(NS), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Option<&[f64]>,
) -> HistogramVec {
    let mut opts = HistogramOpts::new(name, help).namespace(NS);
    if let Some(b) = buckets {
        opts = opts.buckets(b.to_vec());
    }
    let h = HistogramVec::new(opts, labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

impl Metrics {
    /// Builds the registry. Panics only on a programming error (duplicate metric name),
    /// which the unit test below catches.
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc =
                prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, NS);
            let _ = r.register(Box::new(pc));
        }
        let latency: Option<&[f64]> = None;
        Metrics {
            ws_connections: gauge(
                &r,
                "ws_connections_total",
                "Open plugin WebSocket connections",
                &["clientID"],
            ),
            ws_messages: counter(
                &r,
                "ws_messages_total",
                "WebSocket messages",
                &["clientID", "type", "direction"],
            ),
            rtc_sessions: gauge(
                &r,
                "rtc_sessions_total",
                "Active RTC sessions",
                &["groupID"],
            ),
            rtc_tracks: gauge(
                &r,
                "rtc_rtp_tracks_total",
                "Active RTP tracks",
                &["groupID", "direction", "type"],
            ),
            rtc_track_writes_time: histogram(
                &r,
                "rtc_rtp_tracks_writes_time",
                "Seconds per forwarded packet write",
                &["groupID", "type"],
                Some(WRITE_BUCKETS),
            ),
            rtc_conn_states: counter(
                &r,
                "rtc_conn_states_total",
                "Peer connection state changes",
                &["type"],
            ),
            rtc_errors: counter(&r, "rtc_errors_total", "RTC errors", &["groupID", "type"]),
            rtc_connection_time: histogram(
                &r,
                "rtc_connection_time",
                "Seconds from join to connected",
                &["groupID"],
                None,
            ),
            rtc_dc_open_time: histogram(
                &r,
                "rtc_dc_open_time",
                "Seconds from first offer to data channel open",
                &["groupID"],
                None,
            ),
            rtc_lock_grab_time: histogram(
                &r,
                "rtc_signaling_lock_grab_time",
                "Seconds waiting for the signaling lock",
                &["groupID"],
                None,
            ),
            rtc_lock_locked_time: histogram(
                &r,
                "rtc_signaling_lock_locked_time",
                "Seconds the signaling lock was held",
                &["groupID"],
                None,
            ),
            rtc_client_loss_rate: histogram(
                &r,
                "rtc_client_loss_rate",
                "Client-reported loss rate",
                &["groupID"],
                Some(LOSS_BUCKETS),
            ),
            rtc_client_rtt: histogram(
                &r,
                "rtc_client_rtt",
                "Client-reported round-trip time (s)",
                &["groupID"],
                latency,
            ),
            rtc_client_jitter: histogram(
                &r,
                "rtc_client_jitter",
                "Client-reported jitter (s)",
                &["groupID"],
                latency,
            ),
            ws_errors: counter(
                &r,
                "ws_errors_total",
                "Rejected WebSocket input (extension)",
                &["clientID", "type"],
            ),
            auth_errors: counter(
                &r,
                "auth_errors_total",
                "Failed authentications (extension)",
                &["type"],
            ),
            bridge_drops: counter(
                &r,
                "bridge_drops_total",
                "Commands or notices dropped between planes (extension)",
                &["direction", "reason"],
            ),
            worker_packets: counter(
                &r,
                "rtc_packets_total",
                "Media packets received and forwarded per worker (extension)",
                &["worker", "direction"],
            ),
            worker_bytes: counter(
                &r,
                "rtc_bytes_total",
                "Media bytes received and forwarded per worker (extension)",
                &["worker", "direction"],
            ),
            worker_drops: counter(
                &r,
                "rtc_drops_total",
                "Packets and messages dropped per worker, by reason (extension)",
                &["worker", "reason"],
            ),
            worker_handovers: counter(
                &r,
                "rtc_handovers_total",
                "Datagrams steered to another worker (extension)",
                &["worker"],
            ),
            worker_fanouts: counter(
                &r,
                "rtc_fanout_packets_total",
                "Media packets handed to another worker's subscribers through the fan-out ring (extension)",
                &["worker"],
            ),
            layer_switches: counter(
                &r,
                "rtc_simulcast_layer_switches_total",
                "Screen-share simulcast layer switches of receivers, by new layer (extension)",
                &["worker", "layer"],
            ),
            direct_flows: gauge(
                &r,
                "rtc_direct_flows",
                "Client flows received on a connected socket of the owning worker instead of being handed over (extension)",
                &["worker"],
            ),
            ring_occupancy: gauge(
                &r,
                "rtc_fanout_ring_occupancy",
                "Packets waiting in the fan-out rings towards each worker (extension)",
                &["worker"],
            ),
            recv_buffer_exhaustions: counter(
                &r,
                "rtc_recv_buffer_exhaustions_total",
                "Times io_uring's multishot receive ran out of provided buffers and was re-armed (extension)",
                &["worker"],
            ),
            recv_coalesced: counter(
                &r,
                "rtc_recv_coalesced_datagrams_total",
                "Datagrams received coalesced by UDP GRO and split again (extension)",
                &["worker"],
            ),
            loop_turns: std::sync::Mutex::new(Vec::new()),
            io_backend: gauge(
                &r,
                "rtc_io_backend",
                "1 for the UDP I/O backend each worker runs: io_uring or portable (extension)",
                &["worker", "backend"],
            ),
            worker_sessions: gauge(
                &r,
                "rtc_worker_sessions",
                "Sessions per worker (extension)",
                &["worker"],
            ),
            registry: r,
        }
    }

    /// Applies a data-plane observation.
    pub fn observe(&self, e: &crate::bridge::StatEvent) {
        use crate::bridge::StatEvent as E;
        match e {
            E::Error { group_id, kind } => self
                .rtc_errors
                .with_label_values(&[&**group_id, *kind])
                .inc(),
            E::ConnState { state } => self.rtc_conn_states.with_label_values(&[*state]).inc(),
            E::ConnectionTime { group_id, seconds } => self
                .rtc_connection_time
                .with_label_values(&[&**group_id])
                .observe(*seconds),
            E::DcOpenTime { group_id, seconds } => self
                .rtc_dc_open_time
                .with_label_values(&[&**group_id])
                .observe(*seconds),
            E::LockHeld { group_id, seconds } => self
                .rtc_lock_locked_time
                .with_label_values(&[&**group_id])
                .observe(*seconds),
            E::Client {
                group_id,
                metric,
                value,
            } => {
                let h = match *metric {
                    "loss_rate" => &self.rtc_client_loss_rate,
                    "rtt" => &self.rtc_client_rtt,
                    _ => &self.rtc_client_jitter,
                };
                h.with_label_values(&[&**group_id]).observe(*value);
            }
            E::Track {
                group_id,
                direction,
                mime,
                delta,
            } => self
                .rtc_tracks
                .with_label_values(&[&**group_id, *direction, *mime])
                .add(*delta),
        }
    }

    /// Brings the per-worker counters up to the data plane's values (scrape time).
    pub fn sync_workers(&self, workers: &[crate::bridge::WorkerCounters]) {
        if let Ok(mut t) = self.loop_turns.lock() {
            *t = workers
                .iter()
                .map(|w| (w.worker, w.loop_turns.clone()))
                .collect();
        }
        for w in workers {
            let id = w.worker.to_string();
            self.ring_occupancy
                .with_label_values(&[&id])
                .set(w.ring_occupancy as i64);
            self.direct_flows
                .with_label_values(&[&id])
                .set(w.direct_flows as i64);
            self.io_backend
                .with_label_values(&[id.as_str(), w.io_backend])
                .set(1);
        }
        fn set(c: &prometheus::IntCounter, v: u64) {
            let cur = c.get();
            if v > cur {
                c.inc_by(v - cur);
            }
        }
        for w in workers {
            let id = w.worker.to_string();
            set(
                &self.worker_packets.with_label_values(&[&id, "in"]),
                w.rx_packets,
            );
            set(
                &self.worker_packets.with_label_values(&[&id, "out"]),
                w.tx_packets,
            );
            set(
                &self.worker_bytes.with_label_values(&[&id, "in"]),
                w.rx_bytes,
            );
            set(
                &self.worker_bytes.with_label_values(&[&id, "out"]),
                w.tx_bytes,
            );
            set(
                &self.worker_handovers.with_label_values(&[&id]),
                w.handovers,
            );
            set(&self.worker_fanouts.with_label_values(&[&id]), w.fanouts);
            for (layer, v) in ["l", "h"].iter().zip(w.layer_switches) {
                set(&self.layer_switches.with_label_values(&[&id, *layer]), v);
            }
            set(
                &self.recv_buffer_exhaustions.with_label_values(&[&id]),
                w.recv_buffer_exhaustions,
            );
            set(
                &self.recv_coalesced.with_label_values(&[&id]),
                w.recv_coalesced,
            );
            self.worker_sessions
                .with_label_values(&[&id])
                .set(w.sessions as i64);
            for (reason, v) in &w.drops {
                if *v > 0 {
                    set(
                        &self.worker_drops.with_label_values(&[id.as_str(), *reason]),
                        *v,
                    );
                }
            }
        }
    }

    /// Prometheus text exposition of everything registered, then the per-worker loop-turn
    /// histograms (kept by the workers as plain atomics, rendered here).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        let mut out = String::from_utf8(buf).unwrap_or_default();
        let turns = self
            .loop_turns
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        render_loop_turns(&mut out, &turns);
        out
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Name of the loop-turn histogram (extension).
pub const LOOP_TURN_METRIC: &str = "rtcd_rtc_loop_turn_seconds";

/// Appends the loop-turn histograms in Prometheus text format.
fn render_loop_turns(out: &mut String, turns: &[(usize, crate::bridge::LoopTurns)]) {
    use std::fmt::Write;
    if turns.is_empty() {
        return;
    }
    let m = LOOP_TURN_METRIC;
    let _ = writeln!(
        out,
        "# HELP {m} Busy time of one worker loop turn, sleep excluded (extension)"
    );
    let _ = writeln!(out, "# TYPE {m} histogram");
    for (w, t) in turns {
        let mut cumulative = 0u64;
        for (i, n) in t.buckets.iter().enumerate() {
            cumulative += n;
            let le = crate::bridge::LOOP_TURN_BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b}"));
            let _ = writeln!(out, "{m}_bucket{{worker=\"{w}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{m}_sum{{worker=\"{w}\"}} {}",
            t.sum_nanos as f64 / 1e9
        );
        let _ = writeln!(out, "{m}_count{{worker=\"{w}\"}} {}", t.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_buffer_exhaustions_are_exported_per_worker() {
        let m = Metrics::new();
        for total in [2, 5] {
            m.sync_workers(&[crate::bridge::WorkerCounters {
                worker: 0,
                io_backend: "io_uring",
                recv_buffer_exhaustions: total,
                ..Default::default()
            }]);
        }
        let text = m.render();
        assert!(
            text.contains("rtcd_rtc_recv_buffer_exhaustions_total{worker=\"0\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn loop_turn_histogram_is_rendered_cumulatively_per_worker() {
        let m = Metrics::new();
        let mut turns = crate::bridge::LoopTurns::default();
        turns.buckets[0] = 3; // ≤ 1 µs
        turns.buckets[2] = 2; // ≤ 5 µs
        turns.buckets[crate::bridge::LOOP_TURN_BOUNDS.len()] = 1; // +Inf
        turns.count = 6;
        turns.sum_nanos = 1_500_000_000;
        m.sync_workers(&[crate::bridge::WorkerCounters {
            worker: 1,
            io_backend: "portable",
            loop_turns: turns,
            ring_occupancy: 7,
            direct_flows: 3,
            layer_switches: [1, 2],
            ..Default::default()
        }]);
        let text = m.render();
        assert!(
            text.contains("rtcd_rtc_simulcast_layer_switches_total{layer=\"h\",worker=\"1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE rtcd_rtc_loop_turn_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_loop_turn_seconds_bucket{worker=\"1\",le=\"0.000001\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_loop_turn_seconds_bucket{worker=\"1\",le=\"0.000005\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_loop_turn_seconds_bucket{worker=\"1\",le=\"+Inf\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_loop_turn_seconds_sum{worker=\"1\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_loop_turn_seconds_count{worker=\"1\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_direct_flows{worker=\"1\"} 3")
                && text.contains("rtcd_rtc_fanout_ring_occupancy{worker=\"1\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("rtcd_rtc_io_backend{backend=\"portable\",worker=\"1\"} 1")
                || text.contains("rtcd_rtc_io_backend{worker=\"1\",backend=\"portable\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn upstream_metric_names_are_exported() {
        let m = Metrics::new();
        m.ws_connections.with_label_values(&["c"]).inc();
        m.ws_messages.with_label_values(&["c", "join", "in"]).inc();
        m.rtc_sessions.with_label_values(&["g"]).inc();
        m.rtc_tracks
            .with_label_values(&["g", "in", "audio/opus"])
            .inc();
        m.rtc_track_writes_time
            .with_label_values(&["g", "voice"])
            .observe(0.001);
        m.rtc_conn_states.with_label_values(&["connected"]).inc();
        m.rtc_errors.with_label_values(&["g", "ice"]).inc();
        m.rtc_connection_time.with_label_values(&["g"]).observe(0.1);
        m.rtc_dc_open_time.with_label_values(&["g"]).observe(0.1);
        m.rtc_lock_grab_time.with_label_values(&["g"]).observe(0.1);
        m.rtc_lock_locked_time
            .with_label_values(&["g"])
            .observe(0.1);
        m.rtc_client_loss_rate
            .with_label_values(&["g"])
            .observe(0.01);
        m.rtc_client_rtt.with_label_values(&["g"]).observe(0.01);
        m.rtc_client_jitter.with_label_values(&["g"]).observe(0.01);
        let text = m.render();
        for name in [
            "rtcd_ws_connections_total{clientID=\"c\"} 1",
            "rtcd_ws_messages_total{clientID=\"c\",direction=\"in\",type=\"join\"} 1",
            "rtcd_rtc_sessions_total{groupID=\"g\"} 1",
            "rtcd_rtc_rtp_tracks_total{direction=\"in\",groupID=\"g\",type=\"audio/opus\"} 1",
            "rtcd_rtc_rtp_tracks_writes_time_bucket{groupID=\"g\",type=\"voice\",le=\"0.0075\"} 1",
            "rtcd_rtc_conn_states_total{type=\"connected\"} 1",
            "rtcd_rtc_errors_total{groupID=\"g\",type=\"ice\"} 1",
            "rtcd_rtc_connection_time_bucket{groupID=\"g\",le=\"0.25\"} 1",
            "rtcd_rtc_dc_open_time_count",
            "rtcd_rtc_signaling_lock_grab_time_count",
            "rtcd_rtc_signaling_lock_locked_time_count",
            "rtcd_rtc_client_loss_rate_bucket{groupID=\"g\",le=\"0.025\"} 1",
            "rtcd_rtc_client_rtt_count",
            "rtcd_rtc_client_jitter_count",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        #[cfg(target_os = "linux")]
        assert!(
            text.contains("rtcd_process_resident_memory_bytes"),
            "{text}"
        );
    }
}
