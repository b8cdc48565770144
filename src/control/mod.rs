//! The control plane: HTTP API, plugin WebSockets, auth and credential store, metrics,
//! and placement of sessions on workers. Runs on tokio; never touches a media packet.
//! Talks to the data plane only through [`crate::bridge`].

pub mod api;
pub mod auth;
pub mod hub;
pub mod metrics;
pub mod placement;
pub mod store;
pub mod system;
pub mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bridge::{DataPlane, NoticeRx};
use crate::config::Config;
use auth::{AuthService, AuthSettings};
use hub::{Hub, HubSettings};
use metrics::Metrics;
use store::Store;
use system::CpuLoad;
use ws::WsSettings;

/// Tunables that are not config keys (upstream hard-codes them); tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct ControlOptions {
    pub ws: WsSettings,
    pub hub: HubSettings,
    pub cpu_sample_period: Duration,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            ws: WsSettings::default(),
            hub: HubSettings::default(),
            cpu_sample_period: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("api.http.listen_address = {addr:?}: {msg}")]
    Listen { addr: String, msg: String },
    #[error("api.http.tls: {0}")]
    Tls(String),
}

/// A running control plane.
pub struct ControlPlane {
    pub local_addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    cpu_load: CpuLoad,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    handle: axum_server::Handle<SocketAddr>,
}

/// Go's listen address forms: ":8045" (all interfaces), "host:port", "[v6]:port".
pub fn resolve_listen_address(addr: &str) -> Result<std::net::TcpListener, String> {
    let bind = |a: &str| std::net::TcpListener::bind(a).map_err(|e| e.to_string());
    if let Some(port) = addr.strip_prefix(':') {
        // Dual-stack where IPv6 exists, IPv4 otherwise.
        return bind(&format!("[::]:{port}")).or_else(|_| bind(&format!("0.0.0.0:{port}")));
    }
    bind(addr)
}

impl ControlPlane {
    pub async fn start(
        cfg: &Config,
        data: Arc<dyn DataPlane>,
        mut notices: NoticeRx,
        opts: ControlOptions,
    ) -> Result<ControlPlane, StartError> {
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(Store::open(Path::new(&cfg.store.data_source))?);
        tracing::info!(path = %store.path().display(), "credential store opened");
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let sec = &cfg.api.security;
        let auth = Arc::new(AuthService::new(
            store,
            AuthSettings {
                enable_admin: sec.enable_admin,
                admin_secret_key: sec.admin_secret_key.clone(),
                token_ttl: Duration::from_secs(
                    (sec.session_cache.expiration_minutes.max(1) as u64) * 60,
                ),
                bcrypt_rate: 12.0 * cpus as f64,
            },
        ));
        let hub = Arc::new(Hub::new(data, metrics.clone(), opts.hub));
        let cpu_load = CpuLoad::default();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(api::AppState {
            hub: hub.clone(),
            auth,
            metrics: metrics.clone(),
            cpu_load: cpu_load.clone(),
            allow_self_registration: sec.allow_self_registration,
            enable_admin: sec.enable_admin,
            ws: opts.ws,
            shutdown: shutdown_rx,
        });
        let app = api::router(state);

        let listen = &cfg.api.http.listen_address;
        let listener = resolve_listen_address(listen).map_err(|msg| StartError::Listen {
            addr: listen.clone(),
            msg,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| StartError::Listen {
                addr: listen.clone(),
                msg: e.to_string(),
            })?;
        let local_addr = listener.local_addr().map_err(|e| StartError::Listen {
            addr: listen.clone(),
            msg: e.to_string(),
        })?;
        let handle = axum_server::Handle::new();
        let tls = &cfg.api.http.tls;
        let service = app.into_make_service();
        let server = if tls.enable {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls_cfg =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_file, &tls.cert_key)
                    .await
                    .map_err(|e| {
                        StartError::Tls(format!("{} / {}: {e}", tls.cert_file, tls.cert_key))
                    })?;
            let srv = axum_server::from_tcp_rustls(listener, rustls_cfg)
                .map_err(|e| StartError::Listen {
                    addr: listen.clone(),
                    msg: e.to_string(),
                })?
                .handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = srv.serve(service).await {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
            })
        } else {
            let srv = axum_server::from_tcp(listener)
                .map_err(|e| StartError::Listen {
                    addr: listen.clone(),
                    msg: e.to_string(),
                })?
                .handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = srv.serve(service).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            })
        };
        tracing::info!(addr = %local_addr, tls = tls.enable, "API listening");

        let pump_hub = hub.clone();
        let pump = tokio::spawn(async move {
            while let Some(n) = notices.recv().await {
                pump_hub.handle_notice(n);
            }
        });
        let sampler = cpu_load.spawn_sampler(opts.cpu_sample_period);
        Ok(ControlPlane {
            local_addr,
            hub,
            metrics,
            cpu_load,
            shutdown_tx,
            server,
            tasks: vec![pump, sampler],
            handle,
        })
    }

    /// Starts a graceful drain: `join` is refused (the plugin gets `close` at once) and
    /// `/system` reports a very high `cpu_load` so the plugin places new calls elsewhere.
    /// Running sessions, the API and plugin connections carry on.
    pub fn begin_drain(&self) {
        self.hub.stop_accepting();
        self.cpu_load.set_draining();
    }

    /// Closes every plugin connection and stops the HTTP server (at most 10 s, as upstream).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let _ = tokio::time::timeout(Duration::from_secs(11), self.server).await;
        for t in self.tasks {
            t.abort();
        }
    }
}
