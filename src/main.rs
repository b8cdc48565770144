//! `rtcd`: config → data plane → control plane → wait for a signal → stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rtcd::bridge::{notice_queue, DataPlane};
use rtcd::config::{cli_config_path, CliAction, Config, IoBackend};
use rtcd::control::{ControlOptions, ControlPlane};
use rtcd::data::io::IoChoice;
use rtcd::data::media::MediaSettings;
use rtcd::data::{net, PoolSettings, WorkerPool};
use rtcd::version::VersionInfo;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: rtcd [--config FILE]   (also -config FILE; default config/config.toml)
       rtcd --version
Every key can be overridden with its RTCD_* environment variable (see README).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config_path: PathBuf = match cli_config_path(&args) {
        Ok(CliAction::Version) => {
            let v = VersionInfo::current();
            println!(
                "rtcd {} (commit {}, built {}, {})",
                v.build_version, v.build_hash, v.build_date, v.go_version
            );
            return ExitCode::SUCCESS;
        }
        Ok(CliAction::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(CliAction::Run { config }) => config,
        Err(e) => {
            eprintln!("rtcd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    let (cfg, report) = match Config::load(&config_path, &env) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("rtcd: {e}");
            return ExitCode::from(1);
        }
    };
    let _log_guard = match rtcd::logging::init(&cfg.logger) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rtcd: logger: {e}");
            return ExitCode::from(1);
        }
    };
    match &report.file_used {
        Some(p) => tracing::info!(path = %p.display(), "config loaded"),
        None => {
            tracing::info!(path = %config_path.display(), "config file not found, using defaults")
        }
    }
    for k in &report.unknown_keys {
        tracing::warn!(key = %k, "unknown config key ignored");
    }
    for v in &report.env_applied {
        tracing::info!(var = %v, "config overridden from environment");
    }

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rtcd-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtcd: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rtcd: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let workers = match cfg.rtc.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (notice_tx, notice_rx) = notice_queue();
    let advertised = net::host_candidates(&cfg)?;
    let plan = net::plan(&cfg.rtc, &|ip| {
        advertised
            .iter()
            .find(|c| c.local == ip)
            .map_or((ip, 0), |c| (c.advertised, c.port_override.unwrap_or(0)))
    })
    .map_err(|e| format!("rtc: {e}"))?;
    tracing::info!(udp = ?plan.udp, tcp = ?plan.tcp, "rtc sockets planned");
    let pool = Arc::new(
        WorkerPool::start(
            PoolSettings {
                workers,
                udp: plan.udp,
                tcp: plan.tcp,
                candidates: plan.candidates,
                media: MediaSettings::default(),
                pin: true,
                io: match cfg.rtc.io_backend {
                    IoBackend::Auto => IoChoice::Auto,
                    IoBackend::IoUring => IoChoice::IoUring,
                    IoBackend::Portable => IoChoice::Portable,
                },
            },
            notice_tx,
        )
        .map_err(|e| format!("cannot start workers: {e}"))?,
    );
    tracing::info!(
        workers,
        version = rtcd::version::BUILD_VERSION,
        "data plane started"
    );
    let data: Arc<dyn DataPlane> = pool.clone();
    let mut options = ControlOptions::default();
    options.hub.spill_at = match cfg.rtc.worker_spill_sessions {
        0 => usize::MAX,
        n => n,
    };
    let control = ControlPlane::start(&cfg, data, notice_rx, options)
        .await
        .map_err(|e| e.to_string())?;

    wait_for_signal().await;
    tracing::info!("shutting down");
    control.hub.stop_accepting();
    control.hub.shutdown_data_plane();
    // Let the workers' close notices reach the plugin before the sockets go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while control.hub.session_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control.shutdown().await;
    drop(pool);
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
