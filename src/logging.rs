//! Logging: the `[logger]` section turned into a global `tracing` subscriber.
//!
//! Two optional targets, each with its own format and level, as upstream (rtcd `logger/`):
//! * console: standard output (upstream writes there too), plain text or JSON, ANSI colour
//!   only when `enable_color`;
//! * file: `file_location`, JSON or plain text, rotated at 100 MB; rotated files are renamed
//!   `<stem>-<UTC timestamp>.<ext>` and gzip-compressed in the background, and kept forever
//!   (upstream: lumberjack with max_size 100, max_age 0, max_backups 0, compress).
//!
//! Both targets write through `tracing-appender`'s non-blocking worker threads, so a slow
//! terminal or disk never stalls a data-plane worker: when a queue is full, lines are dropped
//! (lossy) rather than blocking. [`LogGuard`] flushes the queues when dropped.
//!
//! Levels: upstream's names map onto `tracing` levels (see [`level_filter`]). Other crates
//! (str0m, hyper, …) are chatty at debug, so they are held at `warn` unless the level is
//! `trace` (upstream likewise maps pion's debug output to trace).
//!
//! This module must not be initialised twice; a second [`init`] returns an error.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LoggerConfig;

/// Size at which the log file is rotated (upstream: 100 MB).
pub const ROTATE_BYTES: u64 = 100 * 1024 * 1024;

/// Our own crates' target prefix; it also covers `rtcd_proto`.
const OWN_TARGET: &str = "rtcd";

/// Lines buffered per target before new ones are dropped.
const QUEUE_LINES: usize = 128_000;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Keeps the logging worker threads alive; dropping it flushes pending lines.
#[must_use = "dropping the guard stops file and console logging"]
pub struct LogGuard {
    _workers: Vec<WorkerGuard>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid config: logger.{key} = {value:?}: must be one of panic, fatal, error, warn, info, debug, trace, stdlog (any case)")]
    Level { key: &'static str, value: String },
    #[error("invalid config: logger.enable_console = false: at least one of logger.enable_console and logger.enable_file must be true")]
    NoTarget,
    #[error("cannot open log file {}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("logging is already initialised")]
    AlreadyInitialised,
}

/// Maps an upstream (mlog) level name, case-insensitively, to a `tracing` level:
/// panic/fatal/error → ERROR, warn → WARN, info → INFO, debug → DEBUG, trace/stdlog → TRACE.
pub fn level_filter(name: &str) -> Option<LevelFilter> {
    Some(match name.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" | "stdlog" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// Per-target filter for one output: our crates at `level`, everything else at `level` but
/// no more verbose than WARN — unless `level` is TRACE, which shows everything.
fn target_filter(level: LevelFilter) -> Targets {
    let others = if level == LevelFilter::TRACE {
        LevelFilter::TRACE
    } else {
        level.min(LevelFilter::WARN)
    };
    Targets::new()
        .with_target(OWN_TARGET, level)
        .with_default(others)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Installs the global subscriber described by `cfg` (and routes `log` records into it).
pub fn init(cfg: &LoggerConfig) -> Result<LogGuard, LogError> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(LogError::AlreadyInitialised);
    }
    let (layers, guard) = match build(cfg) {
        Ok(x) => x,
        Err(e) => {
            // Nothing was installed: allow a corrected retry.
            INSTALLED.store(false, Ordering::SeqCst);
            return Err(e);
        }
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| LogError::AlreadyInitialised)?;
    Ok(guard)
}

/// Builds the layers without installing them (tests install them thread-locally).
fn build(cfg: &LoggerConfig) -> Result<(Vec<BoxedLayer>, LogGuard), LogError> {
    if !cfg.enable_console && !cfg.enable_file {
        return Err(LogError::NoTarget);
    }
    let level = |key: &'static str, value: &str| {
        level_filter(value).ok_or_else(|| LogError::Level {
            key,
            value: value.to_string(),
        })
    };
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let mut workers = Vec::new();

    if cfg.enable_file {
        let filter = target_filter(level("file_level", &cfg.file_level)?);
        let path = PathBuf::from(&cfg.file_location);
        let file = RotatingFile::open(&path, ROTATE_BYTES).map_err(|source| LogError::File {
            path: path.clone(),
            source,
        })?;
        let (writer, guard) = non_blocking(file, "rtcd-log-file");
        workers.push(guard);
        layers.push(output_layer(writer, cfg.file_json, false, filter));
    }
    if cfg.enable_console {
        let filter = target_filter(level("console_level", &cfg.console_level)?);
        let (writer, guard) = non_blocking(io::stdout(), "rtcd-log-console");
        workers.push(guard);
        layers.push(output_layer(
            writer,
            cfg.console_json,
            cfg.enable_color,
            filter,
        ));
    }
    Ok((layers, LogGuard { _workers: workers }))
}

fn non_blocking<W: Write + Send + 'static>(writer: W, thread: &str) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name(thread)
        .finish(writer)
}

fn output_layer(writer: NonBlocking, json: bool, color: bool, filter: Targets) -> BoxedLayer {
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true);
    if json {
        base.json()
            .flatten_event(true)
            .with_file(true)
            .with_line_number(true)
            .with_filter(filter)
            .boxed()
    } else {
        base.with_ansi(color).with_filter(filter).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Size-rotated log file
// ---------------------------------------------------------------------------------------------

/// An append-only file that is renamed aside and compressed once it would exceed `max_bytes`.
/// Writes arrive one formatted event at a time from the appender thread, so rotation happens
/// on line boundaries.
struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    compressions: Vec<JoinHandle<()>>,
}

impl RotatingFile {
    fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            compressions: Vec::new(),
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let backup = unused_backup_name(&self.path, SystemTime::now());
        std::fs::rename(&self.path, &backup)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        self.compressions.retain(|h| !h.is_finished());
        let spawned = std::thread::Builder::new()
            .name("rtcd-log-gzip".into())
            .spawn(move || {
                if let Err(e) = gzip_and_remove(&backup) {
                    eprintln!(
                        "rtcd: cannot compress rotated log {}: {e}",
                        backup.display()
                    );
                }
            });
        match spawned {
            Ok(handle) => self.compressions.push(handle),
            Err(e) => eprintln!("rtcd: cannot start log compression: {e}"),
        }
        Ok(())
    }

    #[cfg(test)]
    fn wait_for_compression(&mut self) {
        for h in self.compressions.drain(..) {
            let _ = h.join();
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size.saturating_add(buf.len() as u64) > self.max_bytes {
            if let Err(e) = self.rotate() {
                // Keep logging into the current file; try again after another max_bytes.
                eprintln!("rtcd: cannot rotate log {}: {e}", self.path.display());
                self.size = 0;
            }
        }
        let n = self.file.write(buf)?;
        self.size = self.size.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `dir/stem-YYYY-MM-DDTHH-MM-SS.mmm.ext` in UTC (lumberjack's naming), with a numeric suffix
/// if that name is taken (or its compressed form).
fn unused_backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let stamp = utc_stamp(now);
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let mut n = 0u32;
    loop {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let candidate = dir.join(format!("{stem}-{stamp}{suffix}{ext}"));
        let gz = PathBuf::from(format!("{}.gz", candidate.display()));
        if !candidate.exists() && !gz.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// `2006-01-02T15-04-05.000` (UTC).
fn utc_stamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Compresses `src` to `src.gz` and removes `src`; on failure the original is kept.
fn gzip_and_remove(src: &Path) -> io::Result<()> {
    let dst = PathBuf::from(format!("{}.gz", src.display()));
    let result = (|| {
        let mut input = File::open(src)?;
        let output = File::create(&dst)?;
        let mut enc = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?.sync_all()
    })();
    match result {
        Ok(()) => std::fs::remove_file(src),
        Err(e) => {
            let _ = std::fs::remove_file(&dst);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::Read;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn upstream_level_names_map_to_tracing_levels() {
        let cases = [
            ("panic", LevelFilter::ERROR),
            ("fatal", LevelFilter::ERROR),
            ("error", LevelFilter::ERROR),
            ("warn", LevelFilter::WARN),
            ("info", LevelFilter::INFO),
            ("INFO", LevelFilter::INFO),
            ("debug", LevelFilter::DEBUG),
            ("Debug", LevelFilter::DEBUG),
            ("trace", LevelFilter::TRACE),
            ("stdlog", LevelFilter::TRACE),
        ];
        for (name, want) in cases {
            assert_eq!(level_filter(name), Some(want), "{name}");
        }
        for bad in ["warning", "", "verbose", "off"] {
            assert_eq!(level_filter(bad), None, "{bad}");
        }
        // Every name the config accepts is mapped.
        for name in crate::config::LOG_LEVELS {
            assert!(level_filter(name).is_some(), "{name}");
        }
    }

    #[test]
    fn other_crates_are_held_at_warn_unless_trace() {
        use tracing::Level;
        let debug = target_filter(LevelFilter::DEBUG);
        assert!(debug.would_enable("rtcd::data", &Level::DEBUG));
        assert!(debug.would_enable("rtcd_proto::vad", &Level::DEBUG));
        assert!(!debug.would_enable("str0m::ice", &Level::INFO));
        assert!(debug.would_enable("str0m::ice", &Level::WARN));
        let error = target_filter(LevelFilter::ERROR);
        assert!(!error.would_enable("str0m::ice", &Level::WARN));
        assert!(!error.would_enable("rtcd", &Level::WARN));
        let trace = target_filter(LevelFilter::TRACE);
        assert!(trace.would_enable("str0m::ice", &Level::TRACE));
    }

    #[test]
    fn file_target_writes_json_lines_filtered_per_target() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let path = dir.join("sub").join("rtcd.log");
        let cfg = LoggerConfig {
            enable_console: false,
            console_json: false,
            console_level: "INFO".into(),
            enable_file: true,
            file_json: true,
            file_level: "DEBUG".into(),
            file_location: path.to_string_lossy().into_owned(),
            enable_color: false,
        };
        let (layers, guard) = build(&cfg).unwrap();
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "rtcd::control", call_id = "c1", "ours at debug");
            tracing::trace!(target: "rtcd::control", "ours at trace");
            tracing::debug!(target: "str0m::ice", "theirs at debug");
            tracing::warn!(target: "str0m::ice", "theirs at warn");
        });
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let messages: Vec<&str> = lines
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, vec!["ours at debug", "theirs at warn"]);
        assert_eq!(lines[0]["call_id"], "c1");
        assert_eq!(lines[0]["level"], "DEBUG");
    }

    #[test]
    fn invalid_settings_are_rejected_before_anything_starts() {
        let mut cfg = LoggerConfig {
            enable_console: true,
            console_json: false,
            console_level: "loud".into(),
            enable_file: false,
            file_json: true,
            file_level: "DEBUG".into(),
            file_location: String::new(),
            enable_color: false,
        };
        let msg = build(&cfg).err().unwrap().to_string();
        assert!(
            msg.contains("logger.console_level") && msg.contains("loud"),
            "{msg}"
        );
        cfg.enable_console = false;
        assert!(matches!(build(&cfg), Err(LogError::NoTarget)));
        cfg.enable_file = true;
        assert!(matches!(build(&cfg), Err(LogError::File { .. })));
    }

    #[test]
    fn file_rotates_by_size_and_compresses_the_old_file() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let path = dir.join("rtcd.log");
        let mut f = RotatingFile::open(&path, 64).unwrap();
        let line = [b'a'; 40];
        f.write_all(&line).unwrap();
        f.write_all(&line).unwrap(); // 80 > 64: rotates first
        f.wait_for_compression();
        let backups: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != &path)
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        let name = backups[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("rtcd-") && name.ends_with(".log.gz"),
            "{name}"
        );
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(File::open(&backups[0]).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, line);
        assert_eq!(std::fs::read(&path).unwrap(), line);

        // Reopening continues the existing file's size.
        let f = RotatingFile::open(&path, 64).unwrap();
        assert_eq!(f.size, 40);
    }

    #[test]
    fn backup_names_use_lumberjack_utc_timestamps() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(utc_stamp(t), "2023-11-14T22-13-20.123");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let tmp = temp_dir();
        let dir = tmp.path();
        assert_eq!(
            unused_backup_name(&dir.join("rtcd.log"), t),
            dir.join("rtcd-2023-11-14T22-13-20.123.log")
        );
        std::fs::write(dir.join("rtcd-2023-11-14T22-13-20.123.log.gz"), b"").unwrap();
        assert_eq!(
            unused_backup_name(&dir.join("rtcd.log"), t),
            dir.join("rtcd-2023-11-14T22-13-20.123-1.log")
        );
    }
}
