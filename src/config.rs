//! Configuration: upstream rtcd's TOML keys and defaults, the `RTCD_*` environment overrides,
//! validation, and the command line.
//!
//! Loading order is upstream's (rtcd `cmd/rtcd/config.go`): built-in defaults → TOML file (a
//! missing file is not an error) → environment → validation. Every key, its environment
//! variable and its decoder live in one table, [`ENV_TABLE`]; TOML decoding and the
//! environment both go through it, so a key cannot exist in one and be missing from the other.
//!
//! This module owns parsing and the error messages (`key = value: rule`). It must not open
//! sockets, start threads or read the process environment itself: callers pass a lookup.
//!
//! Compatibility notes (decoders upstream: BurntSushi/toml, kelseyhightower/envconfig):
//! * TOML keys match case-insensitively (`[API]`, `ICE_PORT_UDP` work); unknown keys are
//!   ignored and returned in [`LoadReport::unknown_keys`].
//! * Environment integers use Go's `strconv.ParseInt(s, 0, 64)` forms (`0x1F`, `0o17`, `017`
//!   octal, `1_000`), booleans Go's `strconv.ParseBool` forms. A variable that is set but empty
//!   clears a string key and is an error for any other type, as upstream.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where `rtcd` looks for its config when no `-config` flag is given (relative to the CWD).
pub const DEFAULT_CONFIG_PATH: &str = "config/config.toml";

/// Accepted log level names (rtcd: mlog's standard levels), compared case-insensitively.
pub const LOG_LEVELS: &[&str] = &[
    "panic", "fatal", "error", "warn", "info", "debug", "trace", "stdlog",
];

/// Upper bound for `rtc.turn.credentials_expiration_minutes` (exclusive): one week.
pub const MAX_TURN_CREDENTIALS_EXPIRATION_MINUTES: i64 = 7 * 24 * 60;

/// Upper bound for our `rtc.workers` extension.
pub const MAX_WORKERS: usize = 1024;

/// Upper bound for our `rtc.drain_timeout_seconds` extension: one day.
pub const MAX_DRAIN_TIMEOUT_SECONDS: i64 = 24 * 60 * 60;

const PORT_RULE: &str = "must be in range 80-49151";
const NACK_RULE: &str = "must be 0 (meaning 256) or a power of two in range 32-8192";
const WORKERS_RULE: &str = "must be in range 0-1024 (0 means one worker per available core)";
const SPILL_RULE: &str = "must be in range 0-1000000 (0 means a call never spills)";
/// Default of our `rtc.worker_spill_sessions` extension.
pub const DEFAULT_SPILL_SESSIONS: usize = 256;
const DRAIN_RULE: &str =
    "must be in range 0-86400 (seconds; 0 closes every session at once on shutdown)";
const IO_BACKEND_RULE: &str = "must be one of \"auto\", \"io_uring\", \"portable\"";
const HOST_PORT_RULE: &str =
    "must be a port in range 80-49151 or a comma-separated list of IP/port pairs";
const LEVEL_RULE: &str =
    "must be one of panic, fatal, error, warn, info, debug, trace, stdlog (any case)";
const BOOL_RULE: &str =
    "must be a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)";

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// The whole configuration; field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub api: ApiConfig,
    pub rtc: RtcConfig,
    pub store: StoreConfig,
    pub logger: LoggerConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub http: HttpConfig,
    pub security: SecurityConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Go `net.Listen` syntax: `":8045"` means every interface.
    pub listen_address: String,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub enable: bool,
    pub cert_file: String,
    pub cert_key: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    pub allow_self_registration: bool,
    pub enable_admin: bool,
    pub admin_secret_key: String,
    pub session_cache: SessionCacheConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCacheConfig {
    pub expiration_minutes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcConfig {
    /// Comma-separated IPs (whitespace around entries ignored); empty = every local IP.
    pub ice_address_udp: String,
    pub ice_port_udp: u16,
    /// Comma-separated IPs; empty = listen on all interfaces.
    pub ice_address_tcp: String,
    pub ice_port_tcp: u16,
    pub enable_ipv6: bool,
    /// IP, hostname or `EXT/INT,…` NAT mapping list; deliberately not validated (upstream).
    pub ice_host_override: String,
    pub ice_host_port_override: HostPortOverride,
    pub ice_servers: Vec<IceServer>,
    pub turn: TurnConfig,
    /// Upstream default: 100 × CPUs.
    pub udp_sockets_count: i64,
    /// 0 means the default, 256.
    pub nack_buffer_size: u16,
    pub nack_disable_copy: bool,
    /// Extension (not upstream): data-plane worker threads; 0 = one per available core.
    pub workers: usize,
    /// Extension (not upstream): socket I/O implementation.
    pub io_backend: IoBackend,
    /// Extension (not upstream): a call's new sessions join its worker while that worker
    /// hosts fewer sessions than this, else the least-loaded worker; 0 = never spill.
    pub worker_spill_sessions: usize,
    /// Extension (not upstream): on SIGTERM/SIGINT, how long running calls may go on (new
    /// sessions refused) before the remaining sessions are closed. Upstream waits forever.
    pub drain_timeout_seconds: i64,
    /// Extension (not upstream): a send-side bandwidth estimate per session, which picks the
    /// screen-share simulcast layer of each viewer. Off: viewers stay on `l`, and forwarding
    /// costs less CPU per packet.
    pub bandwidth_estimation: bool,
}

/// `rtc.ice_host_port_override`: the port advertised in host candidates instead of the
/// listening port. TOML accepts an integer or a string; the environment a string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostPortOverride {
    /// Unset (`""`).
    #[default]
    None,
    /// One port for every instance (80–49151).
    Port(u16),
    /// `"IP/port,IP/port,…"`: each instance uses the port of the first of its own local IPs
    /// found in the list (one config shared by many nodes). No duplicate IPs or ports.
    Mapping(Vec<(IpAddr, u16)>),
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    pub static_auth_secret: String,
    pub credentials_expiration_minutes: i64,
}

/// Extension (not upstream): which socket I/O implementation the data plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring when the kernel allows it, else portable.
    #[default]
    Auto,
    IoUring,
    Portable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory for persistent data (registered clients).
    pub data_source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerConfig {
    pub enable_console: bool,
    pub console_json: bool,
    /// One of [`LOG_LEVELS`], any case.
    pub console_level: String,
    pub enable_file: bool,
    pub file_json: bool,
    pub file_level: String,
    pub file_location: String,
    pub enable_color: bool,
}

/// What [`Config::load`] did besides producing the config, for main to log once logging is up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The file that was read; `None` when it did not exist (defaults were used).
    pub file_used: Option<PathBuf>,
    /// Environment variables that overrode a key, in [`ENV_TABLE`] order.
    pub env_applied: Vec<&'static str>,
    /// TOML keys that matched nothing and were ignored (upstream ignores them too).
    pub unknown_keys: Vec<String>,
}

/// Why the configuration was rejected. Messages name the key, the offending value and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", syntax_message(file.as_deref(), *line, *column, message))]
    Syntax {
        /// `None` when decoding a string rather than a file.
        file: Option<PathBuf>,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid config: {key} = {value}: {rule}")]
    Invalid {
        key: String,
        value: String,
        rule: String,
    },
    #[error("invalid environment variable {var} = {value} (sets {key}): {rule}")]
    Env {
        var: &'static str,
        key: &'static str,
        value: String,
        rule: String,
    },
}

fn syntax_message(file: Option<&Path>, line: usize, column: usize, message: &str) -> String {
    let mut s = String::from("failed to decode config");
    if let Some(f) = file {
        s.push_str(&format!(" file {}", f.display()));
    }
    if line > 0 {
        s.push_str(&format!(" at line {line}, column {column}"));
    }
    format!("{s}: {message}")
}

fn invalid(
    key: impl Into<String>,
    value: impl Into<String>,
    rule: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        rule: rule.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults (rtcd `service/config.go` SetDefaults)
// ---------------------------------------------------------------------------------------------

/// Upstream's `udp_sockets_count` default: 100 per CPU. Go counts the CPUs of the affinity
/// mask; `available_parallelism` also honours cgroup CPU quotas, so in a CPU-limited container
/// we open fewer sockets than upstream would (deliberate: upstream's count is sized for cores
/// the process may actually use).
pub fn default_udp_sockets_count() -> i64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    i64::try_from(cpus).map_or(i64::MAX, |n| n.saturating_mul(100))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api: ApiConfig {
                http: HttpConfig {
                    listen_address: ":8045".into(),
                    tls: TlsConfig {
                        enable: false,
                        cert_file: String::new(),
                        cert_key: String::new(),
                    },
                },
                security: SecurityConfig {
                    allow_self_registration: false,
                    enable_admin: false,
                    admin_secret_key: String::new(),
                    session_cache: SessionCacheConfig {
                        expiration_minutes: 1440,
                    },
                },
            },
            rtc: RtcConfig {
                ice_address_udp: String::new(),
                ice_port_udp: 8443,
                ice_address_tcp: String::new(),
                ice_port_tcp: 8443,
                enable_ipv6: false,
                ice_host_override: String::new(),
                ice_host_port_override: HostPortOverride::None,
                ice_servers: Vec::new(),
                turn: TurnConfig {
                    static_auth_secret: String::new(),
                    credentials_expiration_minutes: 1440,
                },
                udp_sockets_count: default_udp_sockets_count(),
                nack_buffer_size: 256,
                nack_disable_copy: true,
                workers: 0,
                io_backend: IoBackend::Auto,
                worker_spill_sessions: DEFAULT_SPILL_SESSIONS,
                drain_timeout_seconds: 30,
                bandwidth_estimation: true,
            },
            store: StoreConfig {
                data_source: "/tmp/rtcd_db".into(),
            },
            logger: LoggerConfig {
                enable_console: true,
                console_json: false,
                console_level: "INFO".into(),
                enable_file: true,
                file_json: true,
                file_level: "DEBUG".into(),
                file_location: "rtcd.log".into(),
                // The code default; upstream's sample file sets it to true.
                enable_color: false,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers the rest of the daemon uses
// ---------------------------------------------------------------------------------------------

impl RtcConfig {
    /// `ice_address_udp` as IPs (empty = not narrowed). Call after [`Config::validate`].
    pub fn ice_addresses_udp(&self) -> Vec<IpAddr> {
        parse_ip_list(&self.ice_address_udp).unwrap_or_default()
    }

    /// `ice_address_tcp` as IPs (empty = not narrowed). Call after [`Config::validate`].
    pub fn ice_addresses_tcp(&self) -> Vec<IpAddr> {
        parse_ip_list(&self.ice_address_tcp).unwrap_or_default()
    }

    /// The NACK buffer size actually used: 0 means 256.
    pub fn effective_nack_buffer_size(&self) -> u16 {
        if self.nack_buffer_size == 0 {
            256
        } else {
            self.nack_buffer_size
        }
    }

    /// rtcd: STUN public-IP discovery queries the first URL of the first STUN-only entry.
    pub fn first_stun_url(&self) -> Option<&str> {
        self.ice_servers
            .iter()
            .find(|s| s.is_stun())
            .and_then(|s| s.urls.first())
            .map(String::as_str)
    }
}

impl HostPortOverride {
    /// Parses upstream's string form. A nonzero integer is a single port; anything else must be
    /// an `IP/port` list. `"0"` is therefore invalid, as upstream.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(HostPortOverride::None);
        }
        // rtcd: `strconv.Atoi` first; a nonzero result is the single-port form.
        if let Ok(port) = s.parse::<i64>() {
            if port != 0 {
                return match u16::try_from(port) {
                    Ok(p) if (80..=49151).contains(&p) => Ok(HostPortOverride::Port(p)),
                    _ => Err(format!("{HOST_PORT_RULE} (single port out of range)")),
                };
            }
        }
        let mut pairs: Vec<(IpAddr, u16)> = Vec::new();
        for pair in s.split(',') {
            let mut parts = pair.split('/');
            let (Some(ip), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!(
                    "{HOST_PORT_RULE} ({pair:?} is not an IP/port pair)"
                ));
            };
            // Deliberate deviation: upstream accepts any text before '/', which can never match
            // a local IP; we reject it so a typo fails at startup instead of silently.
            let ip: IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| format!("{HOST_PORT_RULE} ({:?} is not an IP address)", ip.trim()))?;
            let port: u16 = port
                .trim()
                .parse()
                .map_err(|_| format!("{HOST_PORT_RULE} ({:?} is not a port)", port.trim()))?;
            check_mapping_pair(&pairs, ip, port)?;
            pairs.push((ip, port));
        }
        Ok(HostPortOverride::Mapping(pairs))
    }

    /// The port to advertise on a node whose local IPs are `local_ips` (in interface order):
    /// the single port, or the port of the first local IP present in the mapping. Port 0 in a
    /// mapping means no override, as upstream.
    pub fn resolve(&self, local_ips: &[IpAddr]) -> Option<u16> {
        match self {
            HostPortOverride::None => None,
            HostPortOverride::Port(p) => Some(*p),
            HostPortOverride::Mapping(pairs) => local_ips
                .iter()
                .find_map(|ip| pairs.iter().find(|(m, _)| m == ip).map(|&(_, p)| p))
                .filter(|&p| p != 0),
        }
    }
}

fn check_mapping_pair(pairs: &[(IpAddr, u16)], ip: IpAddr, port: u16) -> Result<(), String> {
    if pairs.iter().any(|&(i, _)| i == ip) {
        return Err(format!("{HOST_PORT_RULE} (duplicate IP {ip})"));
    }
    if pairs.iter().any(|&(_, p)| p == port) {
        return Err(format!("{HOST_PORT_RULE} (duplicate port {port})"));
    }
    Ok(())
}

impl fmt::Display for HostPortOverride {
    /// Upstream's string form (`""`, `"8443"`, `"10.0.0.1/8443,10.0.0.2/8444"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPortOverride::None => Ok(()),
            HostPortOverride::Port(p) => write!(f, "{p}"),
            HostPortOverride::Mapping(pairs) => {
                for (i, (ip, port)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{ip}/{port}")?;
                }
                Ok(())
            }
        }
    }
}

impl IceServer {
    /// Every URL is `stun:`/`stuns:` (and there is at least one).
    pub fn is_stun(&self) -> bool {
        !self.urls.is_empty()
            && self
                .urls
                .iter()
                .all(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
    }

    /// Every URL is `turn:`/`turns:` (and there is at least one).
    pub fn is_turn(&self) -> bool {
        !self.urls.is_empty()
            && self
                .urls
                .iter()
                .all(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    }
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        "\"\""
    } else {
        "<redacted>"
    }
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &format_args!("{}", redacted(&self.credential)),
            )
            .finish()
    }
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field(
                "static_auth_secret",
                &format_args!("{}", redacted(&self.static_auth_secret)),
            )
            .field(
                "credentials_expiration_minutes",
                &self.credentials_expiration_minutes,
            )
            .finish()
    }
}

impl fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("allow_self_registration", &self.allow_self_registration)
            .field("enable_admin", &self.enable_admin)
            .field(
                "admin_secret_key",
                &format_args!("{}", redacted(&self.admin_secret_key)),
            )
            .field("session_cache", &self.session_cache)
            .finish()
    }
}

impl IoBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::Auto => "auto",
            IoBackend::IoUring => "io_uring",
            IoBackend::Portable => "portable",
        }
    }
}

impl FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(IoBackend::Auto),
            "io_uring" => Ok(IoBackend::IoUring),
            "portable" => Ok(IoBackend::Portable),
            _ => Err(IO_BACKEND_RULE.to_string()),
        }
    }
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits a comma-separated IP list, trimming whitespace around entries (rtcd `ICEAddress`).
/// On failure returns the offending entry.
fn parse_ip_list(s: &str) -> Result<Vec<IpAddr>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|a| {
            let a = a.trim();
            a.parse::<IpAddr>().map_err(|_| a.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The key / environment table
// ---------------------------------------------------------------------------------------------

/// How a key's value is stored and decoded.
#[derive(Clone, Copy)]
enum Slot {
    Bool(fn(&mut Config) -> &mut bool),
    Str(fn(&mut Config) -> &mut String),
    /// A Go `int`: any i64 decodes; `validate` applies the rule.
    Int(fn(&mut Config) -> &mut i64),
    /// A Go `int` port we store as u16: values that do not fit fail with the port rule.
    Port(fn(&mut Config) -> &mut u16),
    /// rtc.nack_buffer_size (Go `uint16`).
    NackBufferSize,
    /// rtc.workers (extension).
    Workers,
    /// rtc.io_backend (extension).
    IoBackend,
    /// rtc.worker_spill_sessions (extension).
    SpillSessions,
    /// rtc.drain_timeout_seconds (extension).
    DrainTimeout,
    /// rtc.ice_host_port_override: TOML integer or string, env string.
    HostPortOverride,
    /// rtc.ice_servers: TOML array of strings/tables, env JSON.
    IceServers,
}

/// One configuration key: its dotted TOML name and its `RTCD_*` environment variable.
pub struct EnvVar {
    /// The environment variable: `RTCD_` + the Go struct field path, upper-cased (upstream's
    /// envconfig naming, which differs from the TOML names).
    pub name: &'static str,
    /// The dotted TOML key (canonical lower-case spelling).
    pub key: &'static str,
    slot: Slot,
}

impl EnvVar {
    /// Whether the key is one of our extensions rather than an upstream key.
    pub fn is_extension(&self) -> bool {
        matches!(
            self.name,
            "RTCD_RTC_WORKERS"
                | "RTCD_RTC_IOBACKEND"
                | "RTCD_RTC_WORKERSPILLSESSIONS"
                | "RTCD_RTC_DRAINTIMEOUTSECONDS"
                | "RTCD_RTC_BANDWIDTHESTIMATION"
        )
    }
}

macro_rules! var {
    ($name:literal, $key:literal, $slot:expr) => {
        EnvVar {
            name: $name,
            key: $key,
            slot: $slot,
        }
    };
}

/// Every configuration key, in upstream's `docs/env_config.md` order, then our extensions.
#[rustfmt::skip]
pub static ENV_TABLE: &[EnvVar] = &[
    var!("RTCD_API_HTTP_LISTENADDRESS", "api.http.listen_address", Slot::Str(|c| &mut c.api.http.listen_address)),
    var!("RTCD_API_HTTP_TLS_ENABLE", "api.http.tls.enable", Slot::Bool(|c| &mut c.api.http.tls.enable)),
    var!("RTCD_API_HTTP_TLS_CERTFILE", "api.http.tls.cert_file", Slot::Str(|c| &mut c.api.http.tls.cert_file)),
    var!("RTCD_API_HTTP_TLS_CERTKEY", "api.http.tls.cert_key", Slot::Str(|c| &mut c.api.http.tls.cert_key)),
    var!("RTCD_API_SECURITY_ENABLEADMIN", "api.security.enable_admin", Slot::Bool(|c| &mut c.api.security.enable_admin)),
    var!("RTCD_API_SECURITY_ADMINSECRETKEY", "api.security.admin_secret_key", Slot::Str(|c| &mut c.api.security.admin_secret_key)),
    var!("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "api.security.allow_self_registration", Slot::Bool(|c| &mut c.api.security.allow_self_registration)),
    var!("RTCD_API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES", "api.security.session_cache.expiration_minutes", Slot::Int(|c| &mut c.api.security.session_cache.expiration_minutes)),
    var!("RTCD_RTC_ICEADDRESSUDP", "rtc.ice_address_udp", Slot::Str(|c| &mut c.rtc.ice_address_udp)),
    var!("RTCD_RTC_ICEPORTUDP", "rtc.ice_port_udp", Slot::Port(|c| &mut c.rtc.ice_port_udp)),
    var!("RTCD_RTC_ICEADDRESSTCP", "rtc.ice_address_tcp", Slot::Str(|c| &mut c.rtc.ice_address_tcp)),
    var!("RTCD_RTC_ICEPORTTCP", "rtc.ice_port_tcp", Slot::Port(|c| &mut c.rtc.ice_port_tcp)),
    var!("RTCD_RTC_ICEHOSTOVERRIDE", "rtc.ice_host_override", Slot::Str(|c| &mut c.rtc.ice_host_override)),
    var!("RTCD_RTC_ICEHOSTPORTOVERRIDE", "rtc.ice_host_port_override", Slot::HostPortOverride),
    var!("RTCD_RTC_ICESERVERS", "rtc.ice_servers", Slot::IceServers),
    var!("RTCD_RTC_TURNCONFIG_STATICAUTHSECRET", "rtc.turn.static_auth_secret", Slot::Str(|c| &mut c.rtc.turn.static_auth_secret)),
    var!("RTCD_RTC_TURNCONFIG_CREDENTIALSEXPIRATIONMINUTES", "rtc.turn.credentials_expiration_minutes", Slot::Int(|c| &mut c.rtc.turn.credentials_expiration_minutes)),
    var!("RTCD_RTC_ENABLEIPV6", "rtc.enable_ipv6", Slot::Bool(|c| &mut c.rtc.enable_ipv6)),
    var!("RTCD_RTC_UDPSOCKETSCOUNT", "rtc.udp_sockets_count", Slot::Int(|c| &mut c.rtc.udp_sockets_count)),
    var!("RTCD_RTC_NACKBUFFERSIZE", "rtc.nack_buffer_size", Slot::NackBufferSize),
    var!("RTCD_RTC_NACKDISABLECOPY", "rtc.nack_disable_copy", Slot::Bool(|c| &mut c.rtc.nack_disable_copy)),
    var!("RTCD_STORE_DATASOURCE", "store.data_source", Slot::Str(|c| &mut c.store.data_source)),
    var!("RTCD_LOGGER_ENABLECONSOLE", "logger.enable_console", Slot::Bool(|c| &mut c.logger.enable_console)),
    var!("RTCD_LOGGER_CONSOLEJSON", "logger.console_json", Slot::Bool(|c| &mut c.logger.console_json)),
    var!("RTCD_LOGGER_CONSOLELEVEL", "logger.console_level", Slot::Str(|c| &mut c.logger.console_level)),
    var!("RTCD_LOGGER_ENABLEFILE", "logger.enable_file", Slot::Bool(|c| &mut c.logger.enable_file)),
    var!("RTCD_LOGGER_FILEJSON", "logger.file_json", Slot::Bool(|c| &mut c.logger.file_json)),
    var!("RTCD_LOGGER_FILELEVEL", "logger.file_level", Slot::Str(|c| &mut c.logger.file_level)),
    var!("RTCD_LOGGER_FILELOCATION", "logger.file_location", Slot::Str(|c| &mut c.logger.file_location)),
    var!("RTCD_LOGGER_ENABLECOLOR", "logger.enable_color", Slot::Bool(|c| &mut c.logger.enable_color)),
    // Our extensions (not upstream).
    var!("RTCD_RTC_WORKERS", "rtc.workers", Slot::Workers),
    var!("RTCD_RTC_IOBACKEND", "rtc.io_backend", Slot::IoBackend),
    var!(
        "RTCD_RTC_WORKERSPILLSESSIONS",
        "rtc.worker_spill_sessions",
        Slot::SpillSessions
    ),
    var!("RTCD_RTC_DRAINTIMEOUTSECONDS", "rtc.drain_timeout_seconds", Slot::DrainTimeout),
    var!(
        "RTCD_RTC_BANDWIDTHESTIMATION",
        "rtc.bandwidth_estimation",
        Slot::Bool(|c| &mut c.rtc.bandwidth_estimation)
    ),
];

/// A raw value on its way into a slot.
enum Input<'a> {
    Toml(&'a toml::Value),
    Env(&'a str),
}

/// A decode failure before the key/source are attached.
struct Bad {
    /// Appended to the key (e.g. `[2].urls`), for errors inside ice_servers.
    suffix: String,
    /// Shown as the value; `None` shows the whole input.
    value: Option<String>,
    rule: String,
}

impl Bad {
    fn rule(rule: impl Into<String>) -> Self {
        Bad {
            suffix: String::new(),
            value: None,
            rule: rule.into(),
        }
    }
}

impl EnvVar {
    fn decode(
        &self,
        cfg: &mut Config,
        input: &Input<'_>,
        unknown: &mut Vec<String>,
    ) -> Result<(), Bad> {
        match self.slot {
            Slot::Bool(f) => *f(cfg) = input_bool(input)?,
            Slot::Str(f) => *f(cfg) = input_str(input, "must be a string")?.to_string(),
            Slot::Int(f) => *f(cfg) = input_int(input, false)?,
            Slot::Port(f) => {
                *f(cfg) =
                    u16::try_from(input_int(input, false)?).map_err(|_| Bad::rule(PORT_RULE))?;
            }
            Slot::NackBufferSize => {
                // Go uint16: no sign in the environment, range checked at decode.
                cfg.rtc.nack_buffer_size =
                    u16::try_from(input_int(input, true)?).map_err(|_| Bad::rule(NACK_RULE))?;
            }
            Slot::Workers => {
                cfg.rtc.workers = usize::try_from(input_int(input, false)?)
                    .map_err(|_| Bad::rule(WORKERS_RULE))?;
            }
            Slot::SpillSessions => {
                cfg.rtc.worker_spill_sessions =
                    usize::try_from(input_int(input, false)?).map_err(|_| Bad::rule(SPILL_RULE))?;
            }
            Slot::DrainTimeout => {
                // Range checked in `validate`, like upstream's integer keys.
                cfg.rtc.drain_timeout_seconds = input_int(input, false)?;
            }
            Slot::IoBackend => {
                cfg.rtc.io_backend = input_str(input, IO_BACKEND_RULE)?
                    .parse()
                    .map_err(Bad::rule)?;
            }
            Slot::HostPortOverride => {
                let text = match input {
                    Input::Env(s) => (*s).to_string(),
                    Input::Toml(toml::Value::String(s)) => s.clone(),
                    // rtcd: an integer is formatted in decimal and parsed like the string.
                    Input::Toml(toml::Value::Integer(i)) => i.to_string(),
                    Input::Toml(_) => return Err(Bad::rule(HOST_PORT_RULE)),
                };
                cfg.rtc.ice_host_port_override =
                    HostPortOverride::parse(&text).map_err(Bad::rule)?;
            }
            Slot::IceServers => {
                cfg.rtc.ice_servers = match input {
                    Input::Toml(v) => ice_servers_from_toml(v, unknown)?,
                    Input::Env(s) => ice_servers_from_json(s)?,
                };
            }
        }
        Ok(())
    }
}

fn input_bool(input: &Input<'_>) -> Result<bool, Bad> {
    match input {
        Input::Toml(v) => v.as_bool().ok_or_else(|| Bad::rule("must be a boolean")),
        Input::Env(s) => parse_go_bool(s).ok_or_else(|| Bad::rule(BOOL_RULE)),
    }
}

fn input_str<'a>(input: &'a Input<'_>, rule: &str) -> Result<&'a str, Bad> {
    match input {
        Input::Toml(v) => v.as_str().ok_or_else(|| Bad::rule(rule)),
        Input::Env(s) => Ok(s),
    }
}

fn input_int(input: &Input<'_>, unsigned: bool) -> Result<i64, Bad> {
    match input {
        Input::Toml(v) => v
            .as_integer()
            .ok_or_else(|| Bad::rule("must be an integer")),
        Input::Env(s) => {
            if unsigned && (s.starts_with('+') || s.starts_with('-')) {
                return Err(Bad::rule("must be an unsigned integer"));
            }
            parse_go_int(s).ok_or_else(|| Bad::rule("must be an integer"))
        }
    }
}

/// Go `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.ParseInt(s, 0, 64)` (envconfig's integer parser): optional sign, then `0x`,
/// `0o`, `0b` or a leading `0` (octal) prefix, and `_` allowed only between digits or after a
/// prefix.
fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let bytes = body.as_bytes();
    let (radix, digits, prefixed) = match bytes {
        [b'0', b'x' | b'X', ..] => (16, &body[2..], true),
        [b'0', b'o' | b'O', ..] => (8, &body[2..], true),
        [b'0', b'b' | b'B', ..] => (2, &body[2..], true),
        [b'0', _, ..] => (8, &body[1..], true),
        _ => (10, body, false),
    };
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    // An underscore must follow a digit or the prefix and be followed by a digit.
    let mut after_digit = prefixed;
    for b in digits.bytes() {
        if b == b'_' {
            if !after_digit {
                return None;
            }
            after_digit = false;
        } else {
            after_digit = true;
        }
    }
    if !after_digit {
        return None;
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    let magnitude = i128::from(u64::from_str_radix(&cleaned, radix).ok()?);
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// TOML form (rtcd `ICEServers.UnmarshalTOML`): each array element is either a URL string
/// (a server with that one URL) or a table `{urls = [...], username = "", credential = ""}`.
fn ice_servers_from_toml(
    v: &toml::Value,
    unknown: &mut Vec<String>,
) -> Result<Vec<IceServer>, Bad> {
    let Some(items) = v.as_array() else {
        return Err(Bad::rule(
            "must be an array of URL strings or of {urls, username, credential} tables",
        ));
    };
    let mut servers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |suffix: String, value: String, rule: &str| Bad {
            suffix,
            value: Some(value),
            rule: rule.to_string(),
        };
        match item {
            toml::Value::String(url) => servers.push(IceServer {
                urls: vec![url.clone()],
                ..IceServer::default()
            }),
            toml::Value::Table(t) => {
                let mut server = IceServer::default();
                for (k, val) in t {
                    // rtcd reads these three keys with exact, case-sensitive names.
                    match k.as_str() {
                        "urls" => {
                            let urls = val.as_array().ok_or_else(|| {
                                at(
                                    format!("[{i}].urls"),
                                    show_toml(val),
                                    "must be an array of URL strings",
                                )
                            })?;
                            for (j, u) in urls.iter().enumerate() {
                                let u = u.as_str().ok_or_else(|| {
                                    at(format!("[{i}].urls[{j}]"), show_toml(u), "must be a string")
                                })?;
                                server.urls.push(u.to_string());
                            }
                        }
                        "username" => {
                            server.username = val
                                .as_str()
                                .ok_or_else(|| {
                                    at(
                                        format!("[{i}].username"),
                                        show_toml(val),
                                        "must be a string",
                                    )
                                })?
                                .to_string();
                        }
                        "credential" => {
                            server.credential = val
                                .as_str()
                                .ok_or_else(|| {
                                    at(
                                        format!("[{i}].credential"),
                                        "<redacted>".into(),
                                        "must be a string",
                                    )
                                })?
                                .to_string();
                        }
                        other => unknown.push(format!("rtc.ice_servers[{i}].{other}")),
                    }
                }
                servers.push(server);
            }
            other => {
                return Err(at(
                    format!("[{i}]"),
                    show_toml(other),
                    "must be a URL string or a {urls, username, credential} table",
                ))
            }
        }
    }
    Ok(servers)
}

/// Environment form (rtcd `ICEServers.Decode`): JSON, either an array of URL strings (one
/// server with all those URLs) or an array of `{"urls": [...], "username": "", "credential": ""}`
/// objects (field names case-insensitive, as Go's encoding/json).
///
/// Deliberate deviation: `[]` and `null` mean "no servers"; upstream turns them into one server
/// without URLs, which then fails validation.
fn ice_servers_from_json(s: &str) -> Result<Vec<IceServer>, Bad> {
    const SHAPE: &str = "must be a JSON array of URL strings or of {\"urls\", \"username\", \"credential\"} objects";
    // The value may hold TURN credentials: never echo it.
    let hidden = || Some(format!("<{} bytes of JSON>", s.len()));
    let bad = |rule: String| Bad {
        suffix: String::new(),
        value: hidden(),
        rule,
    };
    let json: serde_json::Value =
        serde_json::from_str(s).map_err(|e| bad(format!("{SHAPE} ({e})")))?;
    let items = match json {
        serde_json::Value::Null => return Ok(Vec::new()),
        serde_json::Value::Array(items) => items,
        _ => return Err(bad(SHAPE.to_string())),
    };
    if items.is_empty() {
        return Ok(Vec::new());
    }
    if items.iter().all(serde_json::Value::is_string) {
        let urls = items
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(u) => Some(u),
                _ => None,
            })
            .collect();
        return Ok(vec![IceServer {
            urls,
            ..IceServer::default()
        }]);
    }
    let mut servers = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let serde_json::Value::Object(obj) = item else {
            return Err(bad(format!("{SHAPE} (element {i} is neither)")));
        };
        let mut server = IceServer::default();
        for (k, v) in obj {
            let field = k.to_ascii_lowercase();
            let as_string = |v: serde_json::Value| match v {
                serde_json::Value::String(s) => Ok(s),
                serde_json::Value::Null => Ok(String::new()),
                _ => Err(bad(format!(
                    "{SHAPE} (element {i}: \"{k}\" must be a string)"
                ))),
            };
            match field.as_str() {
                "urls" => match v {
                    serde_json::Value::Null => server.urls.clear(),
                    serde_json::Value::Array(urls) => {
                        for u in urls {
                            match u {
                                serde_json::Value::String(u) => server.urls.push(u),
                                _ => {
                                    return Err(bad(format!(
                                        "{SHAPE} (element {i}: every URL must be a string)"
                                    )))
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(bad(format!(
                            "{SHAPE} (element {i}: \"{k}\" must be an array of strings)"
                        )))
                    }
                },
                "username" => server.username = as_string(v)?,
                "credential" => server.credential = as_string(v)?,
                // encoding/json ignores unknown fields.
                _ => {}
            }
        }
        servers.push(server);
    }
    Ok(servers)
}

/// A short rendering of a TOML value for error messages.
fn show_toml(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Table(_) => "{…}".to_string(),
        other => other.to_string(),
    };
    truncate(s)
}

fn truncate(s: String) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        return s;
    }
    let mut t: String = s.chars().take(MAX).collect();
    t.push('…');
    t
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Defaults → TOML file at `path` (missing file = defaults, reported as `file_used: None`)
    /// → `RTCD_*` environment via `env` → [`Config::validate`].
    pub fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, LoadReport), ConfigError> {
        let mut cfg = Config::default();
        let mut report = LoadReport::default();
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| {
                    let (line, column) = line_column(
                        &String::from_utf8_lossy(e.as_bytes()),
                        e.utf8_error().valid_up_to(),
                    );
                    ConfigError::Syntax {
                        file: Some(path.to_path_buf()),
                        line,
                        column,
                        message: "file is not valid UTF-8".into(),
                    }
                })?;
                report.unknown_keys = cfg.merge_toml(&text, Some(path))?;
                report.file_used = Some(path.to_path_buf());
            }
            // rtcd: a missing file means defaults (and a log line, which main writes).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        report.env_applied = cfg.apply_env(env)?;
        cfg.validate()?;
        Ok((cfg, report))
    }

    /// Defaults overlaid with the TOML document `s`; no environment, no validation. Unknown
    /// keys are ignored (use [`Config::load`] to get them reported).
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        cfg.merge_toml(s, None)?;
        Ok(cfg)
    }

    /// Overlays the TOML document `s`; returns the unknown keys.
    fn merge_toml(&mut self, s: &str, file: Option<&Path>) -> Result<Vec<String>, ConfigError> {
        let table: toml::Table = s.parse().map_err(|e: toml::de::Error| {
            let (line, column) = e.span().map_or((0, 0), |sp| line_column(s, sp.start));
            ConfigError::Syntax {
                file: file.map(Path::to_path_buf),
                line,
                column,
                message: e.message().trim().replace('\n', "; "),
            }
        })?;
        let mut unknown = Vec::new();
        self.merge_table(&table, "", "", &mut unknown)?;
        Ok(unknown)
    }

    /// Walks one TOML table. `canon` is the lower-cased path matched against [`ENV_TABLE`]
    /// (rtcd's decoder matches names case-insensitively); `written` is the path as spelled in
    /// the file, for the unknown-key report.
    fn merge_table(
        &mut self,
        table: &toml::Table,
        canon: &str,
        written: &str,
        unknown: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        for (k, v) in table {
            let join = |prefix: &str, k: &str| {
                if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                }
            };
            let canon_key = join(canon, &k.to_lowercase());
            let written_key = join(written, k);
            if let Some(entry) = ENV_TABLE.iter().find(|e| e.key == canon_key) {
                entry
                    .decode(self, &Input::Toml(v), unknown)
                    .map_err(|bad| {
                        invalid(
                            format!("{}{}", entry.key, bad.suffix),
                            bad.value.unwrap_or_else(|| show_toml(v)),
                            bad.rule,
                        )
                    })?;
            } else if is_section(&canon_key) {
                let Some(sub) = v.as_table() else {
                    return Err(invalid(canon_key, show_toml(v), "must be a table"));
                };
                self.merge_table(sub, &canon_key, &written_key, unknown)?;
            } else {
                unknown.push(written_key);
            }
        }
        Ok(())
    }

    /// Applies every `RTCD_*` variable that `env` returns; returns the names applied.
    pub fn apply_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<&'static str>, ConfigError> {
        let mut applied = Vec::new();
        let mut unknown = Vec::new();
        for entry in ENV_TABLE {
            let Some(raw) = env(entry.name) else { continue };
            entry
                .decode(self, &Input::Env(&raw), &mut unknown)
                .map_err(|bad| ConfigError::Env {
                    var: entry.name,
                    key: entry.key,
                    value: bad.value.unwrap_or_else(|| truncate(format!("{raw:?}"))),
                    rule: bad.rule,
                })?;
            applied.push(entry.name);
        }
        Ok(applied)
    }

    /// Upstream's rules (rtcd `IsValid` methods) plus ours for the extensions. Returns the
    /// first violation, checked in upstream's order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let q = |s: &str| format!("{s:?}");

        // api
        let sec = &self.api.security;
        if sec.enable_admin && sec.admin_secret_key.is_empty() {
            return Err(invalid(
                "api.security.admin_secret_key",
                q(""),
                "must not be empty when api.security.enable_admin is true",
            ));
        }
        let http = &self.api.http;
        if http.listen_address.is_empty() {
            return Err(invalid(
                "api.http.listen_address",
                q(""),
                "must not be empty",
            ));
        }
        if http.tls.enable {
            // Loading the pair is left to the HTTP server at startup (upstream does it here).
            for (key, value) in [
                ("api.http.tls.cert_file", &http.tls.cert_file),
                ("api.http.tls.cert_key", &http.tls.cert_key),
            ] {
                if value.is_empty() {
                    return Err(invalid(
                        key,
                        q(""),
                        "must not be empty when api.http.tls.enable is true",
                    ));
                }
            }
        }
        // rtcd checks this when the session cache is created, still before serving.
        let exp = sec.session_cache.expiration_minutes;
        if exp <= 0 {
            return Err(invalid(
                "api.security.session_cache.expiration_minutes",
                exp.to_string(),
                "must be greater than 0",
            ));
        }

        // rtc
        let rtc = &self.rtc;
        for (key, value) in [
            ("rtc.ice_address_udp", &rtc.ice_address_udp),
            ("rtc.ice_address_tcp", &rtc.ice_address_tcp),
        ] {
            if let Err(entry) = parse_ip_list(value) {
                return Err(invalid(
                    key,
                    q(value),
                    format!(
                        "{entry:?} is not an IP address (expected a comma-separated list of IPs)"
                    ),
                ));
            }
        }
        for (key, port) in [
            ("rtc.ice_port_udp", rtc.ice_port_udp),
            ("rtc.ice_port_tcp", rtc.ice_port_tcp),
        ] {
            if !(80..=49151).contains(&port) {
                return Err(invalid(key, port.to_string(), PORT_RULE));
            }
        }
        for (i, server) in rtc.ice_servers.iter().enumerate() {
            let urls = format!("{:?}", server.urls);
            if server.urls.is_empty() {
                return Err(invalid(
                    format!("rtc.ice_servers[{i}].urls"),
                    urls,
                    "must list at least one URL",
                ));
            }
            if let Some(j) = server.urls.iter().position(String::is_empty) {
                return Err(invalid(
                    format!("rtc.ice_servers[{i}].urls[{j}]"),
                    q(""),
                    "must not be empty",
                ));
            }
            if !server.is_stun() && !server.is_turn() {
                return Err(invalid(
                    format!("rtc.ice_servers[{i}].urls"),
                    urls,
                    "every URL of a server must start with stun:/stuns:, or every URL with turn:/turns:",
                ));
            }
        }
        let turn = &rtc.turn;
        let exp = turn.credentials_expiration_minutes;
        if !turn.static_auth_secret.is_empty()
            && !(1..MAX_TURN_CREDENTIALS_EXPIRATION_MINUTES).contains(&exp)
        {
            return Err(invalid(
                "rtc.turn.credentials_expiration_minutes",
                exp.to_string(),
                "must be in range 1-10079 (less than a week) when rtc.turn.static_auth_secret is set",
            ));
        }
        match &rtc.ice_host_port_override {
            HostPortOverride::None => {}
            HostPortOverride::Port(p) => {
                if !(80..=49151).contains(p) {
                    return Err(invalid(
                        "rtc.ice_host_port_override",
                        p.to_string(),
                        PORT_RULE,
                    ));
                }
            }
            HostPortOverride::Mapping(pairs) => {
                for (n, &(ip, port)) in pairs.iter().enumerate() {
                    check_mapping_pair(&pairs[..n], ip, port).map_err(|rule| {
                        invalid(
                            "rtc.ice_host_port_override",
                            q(&rtc.ice_host_port_override.to_string()),
                            rule,
                        )
                    })?;
                }
            }
        }
        if rtc.udp_sockets_count <= 0 {
            return Err(invalid(
                "rtc.udp_sockets_count",
                rtc.udp_sockets_count.to_string(),
                "must be greater than 0",
            ));
        }
        let nack = rtc.nack_buffer_size;
        if nack != 0 && (!(32..=8192).contains(&nack) || !nack.is_power_of_two()) {
            return Err(invalid("rtc.nack_buffer_size", nack.to_string(), NACK_RULE));
        }
        if rtc.workers > MAX_WORKERS {
            return Err(invalid(
                "rtc.workers",
                rtc.workers.to_string(),
                WORKERS_RULE,
            ));
        }
        if rtc.worker_spill_sessions > 1_000_000 {
            return Err(invalid(
                "rtc.worker_spill_sessions",
                rtc.worker_spill_sessions.to_string(),
                SPILL_RULE,
            ));
        }
        if !(0..=MAX_DRAIN_TIMEOUT_SECONDS).contains(&rtc.drain_timeout_seconds) {
            return Err(invalid(
                "rtc.drain_timeout_seconds",
                rtc.drain_timeout_seconds.to_string(),
                DRAIN_RULE,
            ));
        }

        // store
        if self.store.data_source.is_empty() {
            return Err(invalid("store.data_source", q(""), "must not be empty"));
        }

        // logger
        let log = &self.logger;
        if !log.enable_console && !log.enable_file {
            return Err(invalid(
                "logger.enable_console",
                "false",
                "at least one of logger.enable_console and logger.enable_file must be true",
            ));
        }
        let level_ok = |l: &str| LOG_LEVELS.iter().any(|n| n.eq_ignore_ascii_case(l));
        if log.enable_console && !level_ok(&log.console_level) {
            return Err(invalid(
                "logger.console_level",
                q(&log.console_level),
                LEVEL_RULE,
            ));
        }
        if log.enable_file && !level_ok(&log.file_level) {
            return Err(invalid("logger.file_level", q(&log.file_level), LEVEL_RULE));
        }
        if log.enable_file && log.file_location.is_empty() {
            return Err(invalid(
                "logger.file_location",
                q(""),
                "must not be empty when logger.enable_file is true",
            ));
        }
        Ok(())
    }

    /// Every key with its effective value in TOML-like notation, secrets redacted: for the
    /// startup log and for tests. Written out by hand (not through [`ENV_TABLE`]) so the two
    /// can check each other.
    pub fn effective_values(&self) -> Vec<(&'static str, String)> {
        let q = |s: &str| format!("{s:?}");
        let secret = |s: &str| redacted(s).to_string();
        let (a, r, l) = (&self.api, &self.rtc, &self.logger);
        let servers: Vec<String> = r
            .ice_servers
            .iter()
            .map(|s| {
                format!(
                    "{{urls = {:?}, username = {:?}, credential = {}}}",
                    s.urls,
                    s.username,
                    redacted(&s.credential)
                )
            })
            .collect();
        vec![
            ("api.http.listen_address", q(&a.http.listen_address)),
            ("api.http.tls.enable", a.http.tls.enable.to_string()),
            ("api.http.tls.cert_file", q(&a.http.tls.cert_file)),
            ("api.http.tls.cert_key", q(&a.http.tls.cert_key)),
            (
                "api.security.allow_self_registration",
                a.security.allow_self_registration.to_string(),
            ),
            (
                "api.security.enable_admin",
                a.security.enable_admin.to_string(),
            ),
            (
                "api.security.admin_secret_key",
                secret(&a.security.admin_secret_key),
            ),
            (
                "api.security.session_cache.expiration_minutes",
                a.security.session_cache.expiration_minutes.to_string(),
            ),
            ("rtc.ice_address_udp", q(&r.ice_address_udp)),
            ("rtc.ice_port_udp", r.ice_port_udp.to_string()),
            ("rtc.ice_address_tcp", q(&r.ice_address_tcp)),
            ("rtc.ice_port_tcp", r.ice_port_tcp.to_string()),
            ("rtc.enable_ipv6", r.enable_ipv6.to_string()),
            ("rtc.ice_host_override", q(&r.ice_host_override)),
            (
                "rtc.ice_host_port_override",
                q(&r.ice_host_port_override.to_string()),
            ),
            ("rtc.ice_servers", format!("[{}]", servers.join(", "))),
            (
                "rtc.turn.static_auth_secret",
                secret(&r.turn.static_auth_secret),
            ),
            (
                "rtc.turn.credentials_expiration_minutes",
                r.turn.credentials_expiration_minutes.to_string(),
            ),
            ("rtc.udp_sockets_count", r.udp_sockets_count.to_string()),
            ("rtc.nack_buffer_size", r.nack_buffer_size.to_string()),
            ("rtc.nack_disable_copy", r.nack_disable_copy.to_string()),
            ("rtc.workers", r.workers.to_string()),
            ("rtc.io_backend", q(r.io_backend.as_str())),
            (
                "rtc.worker_spill_sessions",
                r.worker_spill_sessions.to_string(),
            ),
            (
                "rtc.drain_timeout_seconds",
                r.drain_timeout_seconds.to_string(),
            ),
            (
                "rtc.bandwidth_estimation",
                r.bandwidth_estimation.to_string(),
            ),
            ("store.data_source", q(&self.store.data_source)),
            ("logger.enable_console", l.enable_console.to_string()),
            ("logger.console_json", l.console_json.to_string()),
            ("logger.console_level", q(&l.console_level)),
            ("logger.enable_file", l.enable_file.to_string()),
            ("logger.file_json", l.file_json.to_string()),
            ("logger.file_level", q(&l.file_level)),
            ("logger.file_location", q(&l.file_location)),
            ("logger.enable_color", l.enable_color.to_string()),
        ]
    }
}

/// Whether `canon` is a table on the way to some key (`api`, `api.http`, `rtc.turn`, …).
fn is_section(canon: &str) -> bool {
    ENV_TABLE.iter().any(|e| {
        e.key.len() > canon.len()
            && e.key.starts_with(canon)
            && e.key.as_bytes()[canon.len()] == b'.'
    })
}

/// 1-based line and column (in characters) of byte offset `at` in `s`.
fn line_column(s: &str, at: usize) -> (usize, usize) {
    let before = s.get(..at.min(s.len())).unwrap_or(s);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAction {
    Run { config: PathBuf },
    Version,
    Help,
}

/// Parses the arguments after the program name. Accepts Go `flag` spellings: `-config FILE`,
/// `--config FILE`, `-config=FILE`, `--config=FILE` (last one wins), plus `-version`/`--version`
/// (ours) and `-h`/`-help`/`--help`. Unknown flags and stray arguments are errors.
pub fn cli_config_path(args: &[String]) -> Result<CliAction, String> {
    let mut config = PathBuf::from(DEFAULT_CONFIG_PATH);
    let mut version = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            if let Some(extra) = it.next() {
                return Err(format!("unexpected argument {extra:?}"));
            }
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        match (name, inline) {
            ("config", Some(v)) => config = PathBuf::from(v),
            ("config", None) => match it.next() {
                Some(v) => config = PathBuf::from(v),
                None => return Err("flag needs an argument: -config".into()),
            },
            ("h" | "help", None) => return Ok(CliAction::Help),
            ("version", None) => version = true,
            _ => return Err(format!("flag provided but not defined: {arg}")),
        }
    }
    Ok(if version {
        CliAction::Version
    } else {
        CliAction::Run { config }
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::net::Ipv4Addr;

    const SAMPLE: &str = include_str!("../config/config.sample.toml");

    /// Every variable in upstream's docs/env_config.md (spec §7.3).
    const UPSTREAM_ENV_NAMES: &[&str] = &[
        "RTCD_API_HTTP_LISTENADDRESS",
        "RTCD_API_HTTP_TLS_ENABLE",
        "RTCD_API_HTTP_TLS_CERTFILE",
        "RTCD_API_HTTP_TLS_CERTKEY",
        "RTCD_API_SECURITY_ENABLEADMIN",
        "RTCD_API_SECURITY_ADMINSECRETKEY",
        "RTCD_API_SECURITY_ALLOWSELFREGISTRATION",
        "RTCD_API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES",
        "RTCD_RTC_ICEADDRESSUDP",
        "RTCD_RTC_ICEPORTUDP",
        "RTCD_RTC_ICEADDRESSTCP",
        "RTCD_RTC_ICEPORTTCP",
        "RTCD_RTC_ICEHOSTOVERRIDE",
        "RTCD_RTC_ICEHOSTPORTOVERRIDE",
        "RTCD_RTC_ICESERVERS",
        "RTCD_RTC_TURNCONFIG_STATICAUTHSECRET",
        "RTCD_RTC_TURNCONFIG_CREDENTIALSEXPIRATIONMINUTES",
        "RTCD_RTC_ENABLEIPV6",
        "RTCD_RTC_UDPSOCKETSCOUNT",
        "RTCD_RTC_NACKBUFFERSIZE",
        "RTCD_RTC_NACKDISABLECOPY",
        "RTCD_STORE_DATASOURCE",
        "RTCD_LOGGER_ENABLECONSOLE",
        "RTCD_LOGGER_CONSOLEJSON",
        "RTCD_LOGGER_CONSOLELEVEL",
        "RTCD_LOGGER_ENABLEFILE",
        "RTCD_LOGGER_FILEJSON",
        "RTCD_LOGGER_FILELEVEL",
        "RTCD_LOGGER_FILELOCATION",
        "RTCD_LOGGER_ENABLECOLOR",
    ];

    /// The keys of upstream's config/config.sample.toml, including the ones it shows
    /// commented out (ice_host_port_override, udp_sockets_count, nack_*).
    const UPSTREAM_SAMPLE_KEYS: &[&str] = &[
        "api.http.listen_address",
        "api.http.tls.enable",
        "api.http.tls.cert_file",
        "api.http.tls.cert_key",
        "api.security.allow_self_registration",
        "api.security.enable_admin",
        "api.security.admin_secret_key",
        "api.security.session_cache.expiration_minutes",
        "rtc.ice_address_udp",
        "rtc.ice_port_udp",
        "rtc.ice_address_tcp",
        "rtc.ice_port_tcp",
        "rtc.enable_ipv6",
        "rtc.ice_host_override",
        "rtc.ice_host_port_override",
        "rtc.ice_servers",
        "rtc.turn.static_auth_secret",
        "rtc.turn.credentials_expiration_minutes",
        "rtc.udp_sockets_count",
        "rtc.nack_buffer_size",
        "rtc.nack_disable_copy",
        "store.data_source",
        "logger.enable_console",
        "logger.console_json",
        "logger.console_level",
        "logger.enable_file",
        "logger.file_json",
        "logger.file_level",
        "logger.file_location",
        "logger.enable_color",
    ];

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// Decodes `toml` over the defaults and validates; returns the error text.
    fn rejection(toml: &str) -> String {
        match Config::from_toml_str(toml).and_then(|c| c.validate()) {
            Ok(()) => panic!("accepted:\n{toml}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_rejects(toml: &str, key: &str, value: &str, rule: &str) {
        let msg = rejection(toml);
        assert!(msg.contains(key), "{msg:?} does not name key {key}");
        assert!(msg.contains(value), "{msg:?} does not show value {value}");
        assert!(msg.contains(rule), "{msg:?} does not state rule {rule}");
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn defaults_equal_upstream() {
        let c = Config::default();
        let v: HashMap<_, _> = c.effective_values().into_iter().collect();
        let expect = [
            ("api.http.listen_address", "\":8045\""),
            ("api.http.tls.enable", "false"),
            ("api.http.tls.cert_file", "\"\""),
            ("api.http.tls.cert_key", "\"\""),
            ("api.security.allow_self_registration", "false"),
            ("api.security.enable_admin", "false"),
            ("api.security.admin_secret_key", "\"\""),
            ("api.security.session_cache.expiration_minutes", "1440"),
            ("rtc.ice_address_udp", "\"\""),
            ("rtc.ice_port_udp", "8443"),
            ("rtc.ice_address_tcp", "\"\""),
            ("rtc.ice_port_tcp", "8443"),
            ("rtc.enable_ipv6", "false"),
            ("rtc.ice_host_override", "\"\""),
            ("rtc.ice_host_port_override", "\"\""),
            ("rtc.ice_servers", "[]"),
            ("rtc.turn.static_auth_secret", "\"\""),
            ("rtc.turn.credentials_expiration_minutes", "1440"),
            ("rtc.nack_buffer_size", "256"),
            ("rtc.nack_disable_copy", "true"),
            ("rtc.workers", "0"),
            ("rtc.io_backend", "\"auto\""),
            ("rtc.worker_spill_sessions", "256"),
            ("rtc.drain_timeout_seconds", "30"),
            ("rtc.bandwidth_estimation", "true"),
            ("store.data_source", "\"/tmp/rtcd_db\""),
            ("logger.enable_console", "true"),
            ("logger.console_json", "false"),
            ("logger.console_level", "\"INFO\""),
            ("logger.enable_file", "true"),
            ("logger.file_json", "true"),
            ("logger.file_level", "\"DEBUG\""),
            ("logger.file_location", "\"rtcd.log\""),
            ("logger.enable_color", "false"),
        ];
        for (k, want) in expect {
            assert_eq!(v[k], want, "default of {k}");
        }
        let cpus = std::thread::available_parallelism().unwrap().get() as i64;
        assert_eq!(c.rtc.udp_sockets_count, 100 * cpus);
        assert_eq!(
            expect.len() + 1,
            v.len(),
            "every key has an expected default"
        );
        c.validate().unwrap();
    }

    #[test]
    fn sample_parses_unchanged_and_differs_from_defaults_only_in_color() {
        let (cfg, report) = {
            let dir = temp_dir();
            let path = dir.path().join("config.toml");
            std::fs::write(&path, SAMPLE).unwrap();
            Config::load(&path, &no_env).unwrap()
        };
        assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
        assert!(report.file_used.is_some());
        let mut want = Config::default();
        want.logger.enable_color = true;
        assert_eq!(cfg, want);
    }

    #[test]
    fn sample_has_upstream_keys_plus_commented_extensions() {
        // Active keys.
        let table: toml::Table = SAMPLE.parse().unwrap();
        let mut active = BTreeSet::new();
        fn leaves(t: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v.as_table() {
                    Some(sub) => leaves(sub, &key, out),
                    None => {
                        out.insert(key);
                    }
                }
            }
        }
        leaves(&table, "", &mut active);
        // Keys shown commented out as `# key = value` inside a section.
        let mut commented = BTreeSet::new();
        let mut section = String::new();
        for line in SAMPLE.lines() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
            } else if let Some(rest) = line.strip_prefix("# ") {
                if let Some((k, _)) = rest.split_once('=') {
                    let k = k.trim();
                    if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                        commented.insert(format!("{section}.{k}"));
                    }
                }
            }
        }
        let upstream: BTreeSet<String> =
            UPSTREAM_SAMPLE_KEYS.iter().map(|s| s.to_string()).collect();
        let all: BTreeSet<String> = active.union(&commented).cloned().collect();
        let extensions: BTreeSet<String> = [
            "rtc.workers",
            "rtc.io_backend",
            "rtc.worker_spill_sessions",
            "rtc.drain_timeout_seconds",
            "rtc.bandwidth_estimation",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            all,
            upstream
                .union(&extensions)
                .cloned()
                .collect::<BTreeSet<_>>()
        );
        for ext in &extensions {
            assert!(
                !active.contains(ext),
                "{ext} must be commented out in the sample"
            );
        }
        // Uncommenting the extensions yields a valid config.
        let uncommented = SAMPLE
            .replace("# workers = 0", "workers = 0")
            .replace("# io_backend = \"auto\"", "io_backend = \"auto\"")
            .replace(
                "# worker_spill_sessions = 256",
                "worker_spill_sessions = 256",
            )
            .replace("# drain_timeout_seconds = 30", "drain_timeout_seconds = 30")
            .replace(
                "# bandwidth_estimation = true",
                "bandwidth_estimation = true",
            );
        assert_ne!(uncommented, SAMPLE);
        Config::from_toml_str(&uncommented)
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn empty_file_gives_defaults() {
        let dir = temp_dir();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        let (cfg, report) = Config::load(&path, &no_env).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(report.file_used.as_deref(), Some(path.as_path()));
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
    }

    #[test]
    fn missing_file_gives_defaults_and_is_reported() {
        let dir = temp_dir();
        let path = dir.path().join("does-not-exist.toml");
        let (cfg, report) = Config::load(&path, &no_env).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(report, LoadReport::default());
        // Go's os.Stat("") is "not exist" too.
        assert!(Config::load(Path::new(""), &no_env).is_ok());
    }

    #[test]
    fn unreadable_path_is_an_error() {
        let dir = temp_dir();
        let err = Config::load(dir.path(), &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn unknown_keys_are_ignored_and_reported() {
        let dir = temp_dir();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[invalid]\nx = 1\n[api]\nhttp.bogus = 2\n[rtc]\nice_servers = [{urls = [\"stun:a:1\"], extra = 1}]\n",
        )
        .unwrap();
        let (cfg, report) = Config::load(&path, &no_env).unwrap();
        assert_eq!(cfg.rtc.ice_servers.len(), 1);
        assert_eq!(
            report.unknown_keys,
            vec!["api.http.bogus", "invalid", "rtc.ice_servers[0].extra"]
        );
    }

    #[test]
    fn toml_names_match_case_insensitively() {
        let cfg = Config::from_toml_str(
            "[API]\nHTTP.Listen_Address = \":9000\"\nhttp.TLS.Enable = false\n[Rtc]\nICE_PORT_UDP = 9001\nTURN.static_auth_secret = \"s\"\n",
        )
        .unwrap();
        assert_eq!(cfg.api.http.listen_address, ":9000");
        assert_eq!(cfg.rtc.ice_port_udp, 9001);
        assert_eq!(cfg.rtc.turn.static_auth_secret, "s");
    }

    #[test]
    fn toml_syntax_error_names_file_and_line() {
        let dir = temp_dir();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[api]\nhttp.listen_address = \":8045\"\nsecurity.enable_admin = = true\n",
        )
        .unwrap();
        let err = Config::load(&path, &no_env).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        // Duplicate keys are a decode error too, as upstream.
        let err = Config::from_toml_str("[store]\ndata_source = \"a\"\ndata_source = \"b\"\n")
            .unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{err}");
    }

    #[test]
    fn toml_type_errors_name_key_and_value() {
        assert_rejects(
            "[rtc]\nice_port_udp = \"8443\"",
            "rtc.ice_port_udp",
            "\"8443\"",
            "must be an integer",
        );
        assert_rejects(
            "[rtc]\nenable_ipv6 = 1",
            "rtc.enable_ipv6",
            "1",
            "must be a boolean",
        );
        assert_rejects(
            "[store]\ndata_source = 5",
            "store.data_source",
            "5",
            "must be a string",
        );
        assert_rejects("rtc = 5", "rtc", "5", "must be a table");
        assert_rejects(
            "[rtc]\nice_servers = \"stun:a:1\"",
            "rtc.ice_servers",
            "\"stun:a:1\"",
            "must be an array",
        );
        assert_rejects(
            "[rtc]\nice_servers = [1]",
            "rtc.ice_servers[0]",
            "1",
            "must be a URL string or",
        );
        assert_rejects(
            "[rtc]\nice_servers = [{urls = [\"stun:a:1\", 2]}]",
            "rtc.ice_servers[0].urls[1]",
            "2",
            "must be a string",
        );
        assert_rejects(
            "[rtc]\nice_host_port_override = 1.5",
            "rtc.ice_host_port_override",
            "1.5",
            HOST_PORT_RULE,
        );
    }

    #[test]
    fn every_env_table_entry_overrides_its_key() {
        let base = Config::default();
        let before: HashMap<_, _> = base.effective_values().into_iter().collect();
        for entry in ENV_TABLE {
            let value = match entry.key {
                "api.http.listen_address" => "127.0.0.1:9045",
                "api.http.tls.cert_file" => "/c.pem",
                "api.http.tls.cert_key" => "/k.pem",
                "api.security.admin_secret_key" => "s3cret",
                "api.security.session_cache.expiration_minutes" => "60",
                "rtc.ice_address_udp" => "10.0.0.1",
                "rtc.ice_port_udp" => "9443",
                "rtc.ice_address_tcp" => "10.0.0.2",
                "rtc.ice_port_tcp" => "9444",
                "rtc.ice_host_override" => "203.0.113.7",
                "rtc.ice_host_port_override" => "30443",
                "rtc.ice_servers" => r#"["stun:stun.example.com:3478"]"#,
                "rtc.turn.static_auth_secret" => "turnsecret",
                "rtc.turn.credentials_expiration_minutes" => "120",
                "rtc.udp_sockets_count" => "7",
                "rtc.nack_buffer_size" => "1024",
                "store.data_source" => "/var/lib/rtcd",
                "logger.console_level" => "debug",
                "logger.file_level" => "error",
                "logger.file_location" => "/var/log/rtcd.log",
                "rtc.workers" => "3",
                "rtc.io_backend" => "portable",
                "rtc.worker_spill_sessions" => "17",
                "rtc.drain_timeout_seconds" => "5",
                key => match (&entry.slot, before[key].as_str()) {
                    (Slot::Bool(_), "true") => "f",
                    (Slot::Bool(_), "false") => "T",
                    _ => panic!("no test value for {key}"),
                },
            };
            let mut cfg = base.clone();
            let applied = cfg.apply_env(&env_of(&[(entry.name, value)])).unwrap();
            assert_eq!(applied, vec![entry.name]);
            let after: HashMap<_, _> = cfg.effective_values().into_iter().collect();
            let changed: Vec<_> = after
                .iter()
                .filter(|(k, v)| before[*k] != **v)
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(
                changed,
                vec![entry.key],
                "{} must change exactly {}",
                entry.name,
                entry.key
            );
        }
    }

    #[test]
    fn env_table_covers_upstream_names_and_every_sample_key() {
        let names: BTreeSet<&str> = ENV_TABLE.iter().map(|e| e.name).collect();
        let keys: BTreeSet<&str> = ENV_TABLE.iter().map(|e| e.key).collect();
        assert_eq!(names.len(), ENV_TABLE.len(), "duplicate variable");
        assert_eq!(keys.len(), ENV_TABLE.len(), "duplicate key");
        for n in UPSTREAM_ENV_NAMES {
            assert!(names.contains(n), "{n} missing from ENV_TABLE");
        }
        for k in UPSTREAM_SAMPLE_KEYS {
            assert!(keys.contains(k), "{k} missing from ENV_TABLE");
        }
        let ours: Vec<_> = ENV_TABLE
            .iter()
            .filter(|e| e.is_extension())
            .map(|e| e.name)
            .collect();
        assert_eq!(
            ours,
            vec![
                "RTCD_RTC_WORKERS",
                "RTCD_RTC_IOBACKEND",
                "RTCD_RTC_WORKERSPILLSESSIONS",
                "RTCD_RTC_DRAINTIMEOUTSECONDS",
                "RTCD_RTC_BANDWIDTHESTIMATION"
            ]
        );
        assert_eq!(ENV_TABLE.len(), UPSTREAM_ENV_NAMES.len() + ours.len());
        // Every key can be displayed.
        assert_eq!(Config::default().effective_values().len(), ENV_TABLE.len());
    }

    #[test]
    fn env_overrides_file_and_is_reported() {
        let dir = temp_dir();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, SAMPLE).unwrap();
        let env = env_of(&[
            ("RTCD_LOGGER_FILELEVEL", "ERROR"),
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "1"),
        ]);
        let (cfg, report) = Config::load(&path, &env).unwrap();
        assert_eq!(cfg.logger.file_level, "ERROR");
        assert!(cfg.api.security.allow_self_registration);
        assert_eq!(
            report.env_applied,
            vec![
                "RTCD_API_SECURITY_ALLOWSELFREGISTRATION",
                "RTCD_LOGGER_FILELEVEL"
            ]
        );
    }

    #[test]
    fn env_booleans_accept_go_parsebool_forms() {
        for (s, want) in [
            ("1", true),
            ("t", true),
            ("T", true),
            ("TRUE", true),
            ("true", true),
            ("True", true),
            ("0", false),
            ("f", false),
            ("F", false),
            ("FALSE", false),
            ("false", false),
            ("False", false),
        ] {
            let mut cfg = Config::default();
            cfg.rtc.enable_ipv6 = !want;
            cfg.apply_env(&env_of(&[("RTCD_RTC_ENABLEIPV6", s)]))
                .unwrap();
            assert_eq!(cfg.rtc.enable_ipv6, want, "{s}");
        }
        for s in ["yes", "tRUE", "", " true"] {
            let err = Config::default()
                .apply_env(&env_of(&[("RTCD_RTC_ENABLEIPV6", s)]))
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("RTCD_RTC_ENABLEIPV6") && msg.contains("rtc.enable_ipv6"),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("{s:?}")) && msg.contains("must be a boolean"),
                "{msg}"
            );
        }
    }

    #[test]
    fn env_integers_use_go_base_prefixes() {
        assert_eq!(parse_go_int("8443"), Some(8443));
        assert_eq!(parse_go_int("+8443"), Some(8443));
        assert_eq!(parse_go_int("-5"), Some(-5));
        assert_eq!(parse_go_int("0x20FB"), Some(8443));
        assert_eq!(parse_go_int("0o20373"), Some(8443));
        assert_eq!(parse_go_int("020373"), Some(8443));
        assert_eq!(parse_go_int("0b1000"), Some(8));
        assert_eq!(parse_go_int("1_440"), Some(1440));
        assert_eq!(parse_go_int("0x_1F"), Some(31));
        assert_eq!(parse_go_int("0"), Some(0));
        for bad in [
            "",
            "08443",
            "1__0",
            "_1",
            "1_",
            "0x",
            "12a",
            " 1",
            "0x+5",
            "9223372036854775808",
        ] {
            assert_eq!(parse_go_int(bad), None, "{bad:?}");
        }
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));

        let mut cfg = Config::default();
        cfg.apply_env(&env_of(&[("RTCD_RTC_ICEPORTUDP", "0x20FC")]))
            .unwrap();
        assert_eq!(cfg.rtc.ice_port_udp, 8444);
        let msg = cfg
            .apply_env(&env_of(&[("RTCD_RTC_ICEPORTUDP", "70000")]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("RTCD_RTC_ICEPORTUDP") && msg.contains("70000") && msg.contains(PORT_RULE),
            "{msg}"
        );
        let msg = cfg
            .apply_env(&env_of(&[("RTCD_RTC_NACKBUFFERSIZE", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("RTCD_RTC_NACKBUFFERSIZE") && msg.contains("unsigned"),
            "{msg}"
        );
    }

    #[test]
    fn empty_env_value_clears_strings_and_rejects_other_types() {
        let mut cfg = Config::default();
        cfg.apply_env(&env_of(&[("RTCD_STORE_DATASOURCE", "")]))
            .unwrap();
        assert_eq!(cfg.store.data_source, "");
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("store.data_source"));
        assert!(Config::default()
            .apply_env(&env_of(&[("RTCD_RTC_ICEPORTUDP", "")]))
            .is_err());
        assert!(Config::default()
            .apply_env(&env_of(&[("RTCD_RTC_ICESERVERS", "")]))
            .is_err());
    }

    #[test]
    fn host_port_override_accepts_integer_and_string_forms() {
        let int = Config::from_toml_str("[rtc]\nice_host_port_override = 30443").unwrap();
        assert_eq!(
            int.rtc.ice_host_port_override,
            HostPortOverride::Port(30443)
        );
        let string = Config::from_toml_str("[rtc]\nice_host_port_override = \"30443\"").unwrap();
        assert_eq!(
            string.rtc.ice_host_port_override,
            HostPortOverride::Port(30443)
        );
        let map = Config::from_toml_str(
            "[rtc]\nice_host_port_override = \"10.0.0.1/8443, 10.0.0.2/8444,::1/8445\"",
        )
        .unwrap();
        let ip = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        assert_eq!(
            map.rtc.ice_host_port_override,
            HostPortOverride::Mapping(vec![
                (ip(10, 0, 0, 1), 8443),
                (ip(10, 0, 0, 2), 8444),
                ("::1".parse().unwrap(), 8445)
            ])
        );
        map.validate().unwrap();
        assert_eq!(
            map.rtc.ice_host_port_override.to_string(),
            "10.0.0.1/8443,10.0.0.2/8444,::1/8445"
        );
        let local = [ip(127, 0, 0, 1), ip(10, 0, 0, 2), ip(10, 0, 0, 1)];
        assert_eq!(map.rtc.ice_host_port_override.resolve(&local), Some(8444));
        assert_eq!(map.rtc.ice_host_port_override.resolve(&local[..1]), None);
        assert_eq!(HostPortOverride::Port(30443).resolve(&[]), Some(30443));
        let env = {
            let mut c = Config::default();
            c.apply_env(&env_of(&[(
                "RTCD_RTC_ICEHOSTPORTOVERRIDE",
                "10.0.0.9/9000",
            )]))
            .unwrap();
            c.rtc.ice_host_port_override
        };
        assert_eq!(
            env,
            HostPortOverride::Mapping(vec![(ip(10, 0, 0, 9), 9000)])
        );
        assert_eq!(
            Config::from_toml_str("[rtc]\nice_host_port_override = \"\"")
                .unwrap()
                .rtc
                .ice_host_port_override,
            HostPortOverride::None
        );
    }

    #[test]
    fn ice_servers_accept_string_list_and_table_forms_in_toml() {
        let strings =
            Config::from_toml_str("[rtc]\nice_servers = [\"stun:a:3478\", \"stun:b:3478\"]")
                .unwrap();
        // rtcd: each string is its own server in TOML.
        assert_eq!(
            strings.rtc.ice_servers,
            vec![
                IceServer {
                    urls: vec!["stun:a:3478".into()],
                    ..Default::default()
                },
                IceServer {
                    urls: vec!["stun:b:3478".into()],
                    ..Default::default()
                },
            ]
        );
        let tables = Config::from_toml_str(
            "[rtc]\nice_servers = [{urls = [\"stun:localhost:3478\"], username = \"test\", credential= \"test\"},\n{urls = [\"turn:localhost:3478\"], username = \"username\", credential = \"password\"}]",
        )
        .unwrap();
        assert_eq!(tables.rtc.ice_servers.len(), 2);
        assert_eq!(tables.rtc.ice_servers[1].urls, vec!["turn:localhost:3478"]);
        assert_eq!(tables.rtc.ice_servers[1].username, "username");
        assert_eq!(tables.rtc.ice_servers[1].credential, "password");
        assert!(tables.rtc.ice_servers[1].is_turn());
        assert_eq!(tables.rtc.first_stun_url(), Some("stun:localhost:3478"));
        tables.validate().unwrap();
        let array_of_tables = Config::from_toml_str(
            "[[rtc.ice_servers]]\nurls = [\"turns:t:5349\"]\n[[rtc.ice_servers]]\nurls = [\"stun:s:3478\"]\n",
        )
        .unwrap();
        assert_eq!(array_of_tables.rtc.ice_servers.len(), 2);
        // Secrets stay out of Debug output.
        assert!(!format!("{tables:?}").contains("password"));
    }

    #[test]
    fn ice_servers_accept_string_list_and_object_forms_in_env_json() {
        let load = |json: &str| {
            let mut c = Config::default();
            c.apply_env(&env_of(&[("RTCD_RTC_ICESERVERS", json)]))
                .map(|_| c.rtc.ice_servers)
        };
        // rtcd: a JSON string array is ONE server with all the URLs.
        assert_eq!(
            load(r#"["stun:a:3478","stun:b:3478"]"#).unwrap(),
            vec![IceServer {
                urls: vec!["stun:a:3478".into(), "stun:b:3478".into()],
                ..Default::default()
            }]
        );
        let objs = load(r#"[{"urls":["turn:t:3478"],"username":"u","credential":"c"},{"URLs":["stun:s:3478"],"ignored":1}]"#)
            .unwrap();
        assert_eq!(
            objs,
            vec![
                IceServer {
                    urls: vec!["turn:t:3478".into()],
                    username: "u".into(),
                    credential: "c".into()
                },
                IceServer {
                    urls: vec!["stun:s:3478".into()],
                    ..Default::default()
                },
            ]
        );
        assert_eq!(load("[]").unwrap(), vec![]);
        for bad in [
            r#"{"urls":[]}"#,
            r#"["stun:a", {"urls":[]}]"#,
            r#"[{"urls":"stun:a"}]"#,
            "not json",
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(
                err.contains("RTCD_RTC_ICESERVERS") && err.contains("must be a JSON array"),
                "{err}"
            );
        }
        let err = load(r#"[{"urls":["turn:t"],"credential":5,"username":"hunter2"}]"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "value must not be echoed: {err}");
    }

    #[test]
    fn validation_rules_reject_with_key_value_and_rule() {
        assert_rejects(
            "[api]\nsecurity.enable_admin = true",
            "api.security.admin_secret_key",
            "\"\"",
            "must not be empty when api.security.enable_admin is true",
        );
        assert_rejects(
            "[api]\nhttp.listen_address = \"\"",
            "api.http.listen_address",
            "\"\"",
            "must not be empty",
        );
        assert_rejects(
            "[api]\nhttp.tls.enable = true\nhttp.tls.cert_key = \"k\"",
            "api.http.tls.cert_file",
            "\"\"",
            "must not be empty when api.http.tls.enable is true",
        );
        assert_rejects(
            "[api]\nhttp.tls.enable = true\nhttp.tls.cert_file = \"c\"",
            "api.http.tls.cert_key",
            "\"\"",
            "must not be empty when api.http.tls.enable is true",
        );
        assert_rejects(
            "[api]\nsecurity.session_cache.expiration_minutes = 0",
            "api.security.session_cache.expiration_minutes",
            "0",
            "must be greater than 0",
        );
        assert_rejects(
            "[rtc]\nice_address_udp = \"127.0.0.1, not_an_address\"",
            "rtc.ice_address_udp",
            "not_an_address",
            "is not an IP address",
        );
        assert_rejects(
            "[rtc]\nice_address_tcp = \"127.0.0.0.1\"",
            "rtc.ice_address_tcp",
            "127.0.0.0.1",
            "is not an IP address",
        );
        assert_rejects(
            "[rtc]\nice_port_udp = 70000",
            "rtc.ice_port_udp",
            "70000",
            PORT_RULE,
        );
        assert_rejects(
            "[rtc]\nice_port_udp = 22",
            "rtc.ice_port_udp",
            "22",
            PORT_RULE,
        );
        assert_rejects(
            "[rtc]\nice_port_tcp = 65000",
            "rtc.ice_port_tcp",
            "65000",
            PORT_RULE,
        );
        assert_rejects(
            "[rtc]\nice_port_tcp = -1",
            "rtc.ice_port_tcp",
            "-1",
            PORT_RULE,
        );
        for (v, why) in [
            ("\"45\"", "out of range"),
            ("65000", "out of range"),
            ("\"0\"", "not an IP/port pair"),
            ("0", "not an IP/port pair"),
            ("\"127.0.0.1,8443\"", "not an IP/port pair"),
            (
                "\"127.0.0.1/8444,127.0.0.1/8445\"",
                "duplicate IP 127.0.0.1",
            ),
            ("\"127.0.0.1/8444,127.0.0.2/8444\"", "duplicate port 8444"),
            ("\"host/8444\"", "not an IP address"),
            ("\"127.0.0.1/x\"", "not a port"),
        ] {
            let msg = rejection(&format!("[rtc]\nice_host_port_override = {v}"));
            assert!(
                msg.contains("rtc.ice_host_port_override") && msg.contains(HOST_PORT_RULE),
                "{msg}"
            );
            assert!(
                msg.contains(v) && msg.contains(why),
                "{msg} should show {v} and say {why}"
            );
        }
        let mut c = Config::default();
        c.rtc.ice_host_port_override = HostPortOverride::Port(45);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rtc.ice_host_port_override = 45: must be in range 80-49151"));
        c.rtc.ice_host_port_override = HostPortOverride::Mapping(vec![
            (IpAddr::V4(Ipv4Addr::LOCALHOST), 1),
            (IpAddr::V4(Ipv4Addr::LOCALHOST), 2),
        ]);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("duplicate IP"));

        assert_rejects(
            "[rtc]\nice_servers = [{username = \"u\"}]",
            "rtc.ice_servers[0].urls",
            "[]",
            "must list at least one URL",
        );
        assert_rejects(
            "[rtc]\nice_servers = [\"\"]",
            "rtc.ice_servers[0].urls[0]",
            "\"\"",
            "must not be empty",
        );
        assert_rejects(
            "[rtc]\nice_servers = [\"stun:a:1\", \"localhost:3478\"]",
            "rtc.ice_servers[1].urls",
            "localhost:3478",
            "every URL of a server must start with stun:/stuns:, or every URL with turn:/turns:",
        );
        assert_rejects(
            "[rtc]\nice_servers = [{urls = [\"turn:a:1\", \"stun:b:1\"]}]",
            "rtc.ice_servers[0].urls",
            "stun:b:1",
            "every URL of a server",
        );
        assert_rejects(
            "[rtc]\nturn.static_auth_secret = \"s\"\nturn.credentials_expiration_minutes = 0",
            "rtc.turn.credentials_expiration_minutes",
            "0",
            "must be in range 1-10079",
        );
        assert_rejects(
            "[rtc]\nturn.static_auth_secret = \"s\"\nturn.credentials_expiration_minutes = 10080",
            "rtc.turn.credentials_expiration_minutes",
            "10080",
            "must be in range 1-10079",
        );
        // Without a secret the expiry is not checked (upstream).
        Config::from_toml_str("[rtc]\nturn.credentials_expiration_minutes = 0")
            .unwrap()
            .validate()
            .unwrap();
        assert_rejects(
            "[rtc]\nudp_sockets_count = 0",
            "rtc.udp_sockets_count",
            "0",
            "must be greater than 0",
        );
        assert_rejects(
            "[rtc]\nnack_buffer_size = 16",
            "rtc.nack_buffer_size",
            "16",
            NACK_RULE,
        );
        assert_rejects(
            "[rtc]\nnack_buffer_size = 16384",
            "rtc.nack_buffer_size",
            "16384",
            NACK_RULE,
        );
        assert_rejects(
            "[rtc]\nnack_buffer_size = 100",
            "rtc.nack_buffer_size",
            "100",
            NACK_RULE,
        );
        assert_rejects(
            "[rtc]\nnack_buffer_size = 70000",
            "rtc.nack_buffer_size",
            "70000",
            NACK_RULE,
        );
        let zero = Config::from_toml_str("[rtc]\nnack_buffer_size = 0").unwrap();
        zero.validate().unwrap();
        assert_eq!(zero.rtc.effective_nack_buffer_size(), 256);
        assert_rejects("[rtc]\nworkers = 1025", "rtc.workers", "1025", WORKERS_RULE);
        assert_rejects("[rtc]\nworkers = -1", "rtc.workers", "-1", WORKERS_RULE);
        assert_rejects(
            "[rtc]\ndrain_timeout_seconds = -1",
            "rtc.drain_timeout_seconds",
            "-1",
            DRAIN_RULE,
        );
        assert_rejects(
            "[rtc]\ndrain_timeout_seconds = 86401",
            "rtc.drain_timeout_seconds",
            "86401",
            DRAIN_RULE,
        );
        assert_rejects(
            "[rtc]\nio_backend = \"epoll\"",
            "rtc.io_backend",
            "\"epoll\"",
            IO_BACKEND_RULE,
        );
        assert_eq!(
            Config::from_toml_str("[rtc]\nio_backend = \"IO_URING\"")
                .unwrap()
                .rtc
                .io_backend,
            IoBackend::IoUring
        );
        assert_rejects(
            "[store]\ndata_source = \"\"",
            "store.data_source",
            "\"\"",
            "must not be empty",
        );
        assert_rejects(
            "[logger]\nenable_console = false\nenable_file = false",
            "logger.enable_console",
            "false",
            "at least one of logger.enable_console and logger.enable_file must be true",
        );
        assert_rejects(
            "[logger]\nconsole_level = \"warning\"",
            "logger.console_level",
            "\"warning\"",
            LEVEL_RULE,
        );
        assert_rejects(
            "[logger]\nfile_level = \"verbose\"",
            "logger.file_level",
            "\"verbose\"",
            LEVEL_RULE,
        );
        assert_rejects(
            "[logger]\nfile_location = \"\"",
            "logger.file_location",
            "\"\"",
            "must not be empty when logger.enable_file is true",
        );
        // Levels are case-insensitive and only checked for enabled targets (upstream).
        for level in LOG_LEVELS {
            let toml = format!(
                "[logger]\nconsole_level = \"{}\"\nfile_level = \"{level}\"",
                level.to_uppercase()
            );
            Config::from_toml_str(&toml).unwrap().validate().unwrap();
        }
        Config::from_toml_str(
            "[logger]\nenable_file = false\nfile_level = \"nope\"\nfile_location = \"\"",
        )
        .unwrap()
        .validate()
        .unwrap();
    }

    #[test]
    fn error_message_has_the_documented_shape() {
        assert_eq!(
            rejection("[rtc]\nice_port_udp = 70000"),
            "invalid config: rtc.ice_port_udp = 70000: must be in range 80-49151"
        );
    }

    #[test]
    fn ice_addresses_are_trimmed_lists() {
        let c = Config::from_toml_str("[rtc]\nice_address_udp = \" 10.0.0.1 ,10.0.0.2\"").unwrap();
        c.validate().unwrap();
        assert_eq!(c.rtc.ice_addresses_udp().len(), 2);
        assert!(c.rtc.ice_addresses_tcp().is_empty());
    }

    #[test]
    fn cli_accepts_every_flag_spelling() {
        let run = |args: &[&str]| {
            cli_config_path(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let cfg = |p: &str| {
            Ok(CliAction::Run {
                config: PathBuf::from(p),
            })
        };
        assert_eq!(run(&[]), cfg("config/config.toml"));
        assert_eq!(run(&["--config", "a.toml"]), cfg("a.toml"));
        assert_eq!(run(&["-config", "b.toml"]), cfg("b.toml"));
        assert_eq!(run(&["--config=c.toml"]), cfg("c.toml"));
        assert_eq!(run(&["-config=d.toml"]), cfg("d.toml"));
        assert_eq!(run(&["-config", "x", "--config=y"]), cfg("y"));
        assert_eq!(run(&["-config", "-odd-name"]), cfg("-odd-name"));
        assert_eq!(run(&["-config="]), cfg(""));
        assert_eq!(run(&["--config", "a", "--"]), cfg("a"));
        assert_eq!(run(&["--version"]), Ok(CliAction::Version));
        assert_eq!(run(&["-version"]), Ok(CliAction::Version));
        assert_eq!(run(&["-h"]), Ok(CliAction::Help));
        assert_eq!(run(&["--help"]), Ok(CliAction::Help));
        assert_eq!(run(&["-help"]), Ok(CliAction::Help));
        assert_eq!(run(&["--version", "-h"]), Ok(CliAction::Help));
        assert!(run(&["--config"])
            .unwrap_err()
            .contains("needs an argument"));
        assert!(run(&["--bogus"]).unwrap_err().contains("not defined"));
        assert!(run(&["--version=1"]).is_err());
        assert!(run(&["stray"]).unwrap_err().contains("unexpected argument"));
        assert!(run(&["--", "stray"]).is_err());
    }
}
