//! `rtcd`: config → host tuning check → data plane → control plane → wait for a signal →
//! drain → stop.
//!
//! Shutdown (extension; upstream waits for every call without a bound, spec §10): the first
//! SIGTERM or SIGINT starts a drain — `join` is refused with `close`, `/system` reports a very
//! high load, running calls go on — until no session is left or `rtc.drain_timeout_seconds`
//! pass; then the workers close the remaining sessions (the plugin gets `close` for each), the
//! plugin connections and the HTTP server stop, and the process exits 0. A second signal at
//! any point exits at once with status 1.

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
    warn_untuned_host();

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
    let code = match rt.block_on(run(cfg)) {
        Ok(Stopped::Drained) => ExitCode::SUCCESS,
        Ok(Stopped::Interrupted) => ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rtcd: {e}");
            ExitCode::from(1)
        }
    };
    // Tasks still running after an interrupted drain are dropped, not waited for.
    rt.shutdown_timeout(Duration::from_millis(500));
    code
}

/// Logs one warning per kernel setting below what `tuning/99-rtcd.conf` wants.
fn warn_untuned_host() {
    let root = std::path::Path::new("/proc/sys");
    let findings =
        rtcd::tuning::check(|key| std::fs::read_to_string(rtcd::tuning::proc_path(root, key)).ok());
    let unreadable = findings
        .iter()
        .filter(|f| f.verdict == rtcd::tuning::Verdict::Unreadable)
        .count();
    if unreadable == findings.len() {
        tracing::info!("cannot read /proc/sys; host tuning not checked");
        return;
    }
    let mut untuned = 0;
    for f in findings.iter().filter(|f| f.is_untuned()) {
        untuned += 1;
        tracing::warn!(
            key = f.setting.key,
            current = f.current.as_deref().unwrap_or(""),
            wanted = f.setting.wanted,
            why = f.setting.why,
            "host not tuned for UDP media (see tuning/tune.sh --check)"
        );
    }
    if untuned == 0 {
        tracing::info!("host kernel settings meet tuning/99-rtcd.conf");
    }
}

/// How the daemon stopped.
enum Stopped {
    /// After a drain (or with no sessions): exit 0.
    Drained,
    /// A second signal cut the drain short.
    Interrupted,
}

async fn run(cfg: Config) -> Result<Stopped, String> {
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
                media: MediaSettings {
                    bandwidth_estimation: cfg.rtc.bandwidth_estimation,
                    ..MediaSettings::default()
                },
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

    let mut signals = Signals::new();
    signals.recv().await;
    let drain_for = Duration::from_secs(cfg.rtc.drain_timeout_seconds.max(0) as u64);
    tracing::info!(
        sessions = control.hub.session_count(),
        timeout_s = drain_for.as_secs(),
        "draining: new sessions refused, running calls continue until they end or the timeout"
    );
    control.begin_drain();
    let deadline = tokio::time::Instant::now() + drain_for;
    let interrupted = loop {
        if control.hub.session_count() == 0 {
            break false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::time::sleep_until(deadline) => break false,
            _ = signals.recv() => break true,
        }
    };
    if interrupted {
        return Ok(interrupt(&control.hub));
    }
    let left = control.hub.session_count();
    if left > 0 {
        tracing::warn!(
            sessions = left,
            "drain timeout reached: closing the remaining sessions"
        );
    }
    control.hub.shutdown_data_plane();
    // Let the workers' close notices reach the plugin before the connections go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while control.hub.session_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = signals.recv() => return Ok(interrupt(&control.hub)),
        }
    }
    let hub = control.hub.clone();
    tokio::select! {
        _ = control.shutdown() => {}
        _ = signals.recv() => return Ok(interrupt(&hub)),
    }
    drop(pool);
    tracing::info!("stopped");
    Ok(Stopped::Drained)
}

/// A second signal: stop the workers and leave now.
fn interrupt(hub: &rtcd::control::hub::Hub) -> Stopped {
    tracing::warn!("second signal: exiting without waiting for the drain");
    hub.shutdown_data_plane();
    Stopped::Interrupted
}

/// SIGTERM and SIGINT, each delivery counted once (the first starts the drain, the next one
/// cuts it short).
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
