//! Operations artefacts that must not drift from the code (the Grafana dashboard's metric
//! names, the config `scripts/install.sh` writes, the Kubernetes ConfigMap's config) and the
//! control plane's side of a graceful drain.

use std::collections::BTreeSet;
use std::path::Path;

use rtcd::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `rtcd_*` identifier in `text`.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("rtcd_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Names registered through the `gauge(`/`counter(`/`histogram(` helpers of
/// `src/control/metrics.rs` (the string literal after `&r,`), with the `rtcd_` namespace.
fn registered_in_source(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for helper in ["gauge(", "counter(", "histogram("] {
        for (i, _) in src.match_indices(helper) {
            let after = src[i + helper.len()..].trim_start();
            let Some(args) = after.strip_prefix("&r,") else {
                continue; // the helper's own definition
            };
            let args = args.trim_start();
            if let Some(lit) = args.strip_prefix('"') {
                if let Some(end) = lit.find('"') {
                    out.insert(format!("rtcd_{}", &lit[..end]));
                }
            }
        }
    }
    out
}

#[test]
fn dashboard_refers_only_to_metrics_the_daemon_exports() {
    let dash = std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/rtcd-dashboard.json"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is valid JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() > 10));

    let src = std::fs::read_to_string(Path::new(ROOT).join("src/control/metrics.rs")).unwrap();
    let mut known = registered_in_source(&src);
    assert!(
        known.contains("rtcd_rtc_sessions_total") && known.contains("rtcd_rtc_packets_total"),
        "source scan found {known:?}"
    );
    // Unlabelled metrics (the process collector) appear in a fresh registry's output.
    let rendered = rtcd::control::metrics::Metrics::new().render();
    known.extend(
        rendered
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(metric_tokens),
    );

    let used = metric_tokens(&dash);
    assert!(used.len() > 15, "dashboard uses {used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            !known.contains(*name) && !known.contains(base)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics not exported by rtcd: {missing:?}"
    );
}

#[test]
fn config_written_by_install_sh_is_valid_and_keeps_the_store_in_var_lib() {
    let dest = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(Path::new(ROOT).join("scripts/install.sh"))
        .args(["--destdir", dest.path().to_str().unwrap(), "--no-tune"])
        .args(["--binary", env!("CARGO_BIN_EXE_rtcd")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dest.path().join("etc/rtcd/config.toml");
    let no_env = |_: &str| None;
    let (cfg, report) = Config::load(&path, &no_env).unwrap();
    assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
    assert_eq!(cfg.store.data_source, "/var/lib/rtcd");
    assert!(!cfg.logger.enable_file && cfg.logger.enable_console);
    assert_eq!(cfg.logger.file_location, "/var/log/rtcd/rtcd.log");
    let mut want = Config::default();
    want.store.data_source = "/var/lib/rtcd".into();
    want.logger.enable_file = false;
    want.logger.file_location = "/var/log/rtcd/rtcd.log".into();
    assert_eq!(cfg, want, "otherwise the sample's (upstream) defaults");
}

#[test]
fn kubernetes_configmap_config_is_valid_and_sets_the_drain_timeout() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/k8s/configmap.yaml")).unwrap();
    // The block scalar under `config.toml: |`, de-indented.
    let mut lines = text.lines().skip_while(|l| l.trim() != "config.toml: |");
    assert!(lines.next().is_some(), "no config.toml in the ConfigMap");
    let block: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect();
    let toml = block
        .iter()
        .map(|l| l.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = Config::from_toml_str(&toml).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.rtc.drain_timeout_seconds, 30);
    assert_eq!(cfg.store.data_source, "/var/lib/rtcd");
    let ds = std::fs::read_to_string(Path::new(ROOT).join("deploy/k8s/daemonset.yaml")).unwrap();
    let grace: i64 = ds
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace >= 10 + cfg.rtc.drain_timeout_seconds + 12,
        "grace period {grace} s must cover preStop (10 s) + drain + close and HTTP shutdown (12 s)"
    );
}

/// The control plane's side of a drain, without the binary: joins refused with `close` and
/// counted, the refused session never reaches a worker, existing sessions keep their routing,
/// and `/system` reports the draining load.
#[tokio::test]
async fn while_draining_a_join_gets_close_and_system_reports_the_draining_load() {
    use crate::common::*;
    use rtcd::bridge::Command;
    use rtcd_proto::ws::ClientMessage;

    let server = TestServer::default().await;
    server.register("mm", KEY).await;
    let mut plugin = Plugin::connect(&server, "mm", KEY).await;
    plugin.send_raw(join_frame("call1", "u1", "live")).await;
    server.wait_commands(1).await;

    server.control.as_ref().unwrap().begin_drain();
    plugin.send_raw(join_frame("call1", "u2", "late")).await;
    match plugin.recv().await {
        ClientMessage::Close { session_id } => assert_eq!(session_id, "late"),
        other => panic!("expected close, got {other:?}"),
    }
    let cmds = server.data.commands();
    assert_eq!(cmds.len(), 1, "the refused join never reached a worker");
    assert!(matches!(&cmds[0].1, Command::Join(i) if &*i.key.session_id == "live"));
    assert_eq!(server.hub().session_count(), 1, "the live session stays");
    assert!(server
        .metrics_text()
        .contains("rtcd_ws_errors_total{clientID=\"mm\",type=\"draining\"} 1"));

    // Signaling for the live session still reaches its worker.
    plugin.send_raw(rtc_frame("live", 3, b"")).await;
    server.wait_commands(2).await;

    let v: serde_json::Value = http()
        .get(server.url("/system"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["cpu_load"].as_f64(),
        Some(rtcd::control::system::DRAINING_CPU_LOAD)
    );
}
