//! Host tuning for UDP media: the one table of kernel settings `rtcd` wants, and a pure check
//! of current values against it.
//!
//! The same table is written out as the sysctl drop-in `tuning/99-rtcd.conf` (installed to
//! `/etc/sysctl.d/`), which `tuning/tune.sh --check/--apply` reads; a test below parses that
//! file and requires it to equal [`TABLE`], so the daemon, the drop-in and the script cannot
//! drift apart. The daemon calls [`check`] once at start-up and logs a warning per value
//! below what is wanted (`src/main.rs`).
//!
//! Every setting is a floor: a host with a larger value (or, for multi-value keys such as
//! `net.ipv4.udp_mem`, larger values in every position) is tuned. This module owns the table
//! and the verdicts; it does no I/O — the caller passes a reader.

use std::path::{Path, PathBuf};

/// One wanted kernel setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// sysctl name, e.g. `net.core.rmem_max` (file `/proc/sys/net/core/rmem_max`).
    pub key: &'static str,
    /// Wanted minimum, whitespace-separated for multi-value keys.
    pub wanted: &'static str,
    /// Why, in a few words (shown by `--check` and in the log).
    pub why: &'static str,
}

/// What `rtcd` wants from the host. Keep in step with `tuning/99-rtcd.conf` (tested).
pub const TABLE: &[Setting] = &[
    Setting {
        key: "net.core.rmem_max",
        wanted: "16777216",
        why: "workers ask for 16 MiB UDP receive buffers; the kernel caps them here",
    },
    Setting {
        key: "net.core.wmem_max",
        wanted: "16777216",
        why: "workers ask for 16 MiB UDP send buffers; the kernel caps them here",
    },
    Setting {
        key: "net.core.rmem_default",
        wanted: "1048576",
        why: "receive buffer of sockets that do not size their own",
    },
    Setting {
        key: "net.core.wmem_default",
        wanted: "1048576",
        why: "send buffer of sockets that do not size their own",
    },
    Setting {
        key: "net.core.netdev_max_backlog",
        wanted: "10000",
        why: "packets queued per CPU before the stack drops them during bursts",
    },
    Setting {
        key: "net.ipv4.udp_mem",
        wanted: "262144 524288 1048576",
        why: "pages all UDP sockets may use (min pressure max) before drops",
    },
    Setting {
        key: "net.core.busy_poll",
        wanted: "50",
        why: "microseconds epoll busy-polls the NIC queue: lower latency for some CPU",
    },
    Setting {
        key: "net.core.busy_read",
        wanted: "50",
        why: "microseconds a socket read busy-polls the NIC queue",
    },
];

/// The verdict for one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// At or above the wanted value in every position.
    Tuned,
    /// Below the wanted value in at least one position.
    Low,
    /// The value could not be read (no such file, e.g. inside some containers).
    Unreadable,
    /// The value was read but is not a list of integers of the wanted length.
    Malformed,
}

/// One setting's current value and verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub setting: Setting,
    /// The current value, whitespace-normalised; `None` when unreadable.
    pub current: Option<String>,
    pub verdict: Verdict,
}

impl Finding {
    /// Whether the daemon should warn about it (unreadable values are not the host's fault).
    pub fn is_untuned(&self) -> bool {
        matches!(self.verdict, Verdict::Low | Verdict::Malformed)
    }
}

fn numbers(s: &str) -> Option<Vec<u64>> {
    s.split_whitespace().map(|t| t.parse().ok()).collect()
}

/// Compares one current value (as read from `/proc/sys`) with a wanted floor.
pub fn judge(wanted: &str, current: &str) -> Verdict {
    let (Some(want), Some(have)) = (numbers(wanted), numbers(current)) else {
        return Verdict::Malformed;
    };
    if want.len() != have.len() || want.is_empty() {
        return Verdict::Malformed;
    }
    if want.iter().zip(&have).all(|(w, h)| h >= w) {
        Verdict::Tuned
    } else {
        Verdict::Low
    }
}

/// Checks every setting of [`TABLE`]; `read` returns a sysctl's current value by name.
pub fn check(read: impl Fn(&str) -> Option<String>) -> Vec<Finding> {
    TABLE
        .iter()
        .map(|s| {
            let current = read(s.key).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
            let verdict = match &current {
                None => Verdict::Unreadable,
                Some(v) => judge(s.wanted, v),
            };
            Finding {
                setting: *s,
                current,
                verdict,
            }
        })
        .collect()
}

/// The file under a proc root (normally `/proc/sys`) that holds a sysctl.
pub fn proc_path(root: &Path, key: &str) -> PathBuf {
    root.join(key.replace('.', "/"))
}

/// Parses a sysctl.d file (`key = value` lines, `#`/`;` comments) into (key, value) pairs,
/// values whitespace-normalised, in file order.
pub fn parse_sysctl_conf(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_start_matches('-');
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            Some((k.to_string(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn host(values: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn tuned_host() -> Vec<(&'static str, &'static str)> {
        TABLE.iter().map(|s| (s.key, s.wanted)).collect()
    }

    #[test]
    fn a_host_with_the_wanted_values_is_tuned() {
        let f = check(host(&tuned_host()));
        assert_eq!(f.len(), TABLE.len());
        assert!(f.iter().all(|f| f.verdict == Verdict::Tuned), "{f:?}");
        assert!(!f.iter().any(Finding::is_untuned));
    }

    #[test]
    fn larger_values_than_wanted_count_as_tuned() {
        let f = check(host(&[
            ("net.core.rmem_max", "67108864"),
            ("net.ipv4.udp_mem", "9999999\t9999999 9999999\n"),
        ]));
        let by_key = |k: &str| f.iter().find(|f| f.setting.key == k).unwrap().clone();
        assert_eq!(by_key("net.core.rmem_max").verdict, Verdict::Tuned);
        let udp = by_key("net.ipv4.udp_mem");
        assert_eq!(udp.verdict, Verdict::Tuned);
        assert_eq!(udp.current.as_deref(), Some("9999999 9999999 9999999"));
    }

    #[test]
    fn a_stock_kernel_value_is_reported_low_with_its_current_value() {
        let mut values = tuned_host();
        values.retain(|(k, _)| *k != "net.core.rmem_max");
        values.push(("net.core.rmem_max", "212992\n"));
        let untuned: Vec<_> = check(host(&values))
            .into_iter()
            .filter(Finding::is_untuned)
            .collect();
        assert_eq!(untuned.len(), 1);
        assert_eq!(untuned[0].setting.key, "net.core.rmem_max");
        assert_eq!(untuned[0].current.as_deref(), Some("212992"));
        assert_eq!(untuned[0].verdict, Verdict::Low);
    }

    #[test]
    fn one_low_position_of_a_multi_value_key_is_low() {
        assert_eq!(
            judge("262144 524288 1048576", "262144 524288 1048575"),
            Verdict::Low
        );
        assert_eq!(
            judge("262144 524288 1048576", "300000 600000 2000000"),
            Verdict::Tuned
        );
    }

    #[test]
    fn garbage_or_wrong_arity_is_malformed_and_missing_is_unreadable() {
        assert_eq!(judge("50", "fast"), Verdict::Malformed);
        assert_eq!(judge("1 2 3", "1 2"), Verdict::Malformed);
        assert_eq!(judge("1", ""), Verdict::Malformed);
        let f = check(host(&[]));
        assert!(f.iter().all(|f| f.verdict == Verdict::Unreadable));
        assert!(
            !f.iter().any(Finding::is_untuned),
            "unreadable is not warned"
        );
    }

    #[test]
    fn proc_path_maps_dots_to_directories() {
        assert_eq!(
            proc_path(Path::new("/tmp/fake"), "net.ipv4.udp_mem"),
            PathBuf::from("/tmp/fake/net/ipv4/udp_mem")
        );
    }

    #[test]
    fn sysctl_drop_in_file_equals_the_table() {
        let text = include_str!("../tuning/99-rtcd.conf");
        let file = parse_sysctl_conf(text);
        let table: Vec<(String, String)> = TABLE
            .iter()
            .map(|s| (s.key.to_string(), s.wanted.to_string()))
            .collect();
        assert_eq!(
            file, table,
            "tuning/99-rtcd.conf and src/tuning.rs TABLE must list the same keys and values in the same order"
        );
    }

    #[test]
    fn sysctl_parser_skips_comments_and_blank_lines() {
        let parsed = parse_sysctl_conf("# c\n; c\n\n a.b =  1   2 \n-c.d=3\n");
        assert_eq!(
            parsed,
            vec![
                ("a.b".to_string(), "1 2".to_string()),
                ("c.d".to_string(), "3".to_string())
            ]
        );
    }
}
