//! CPU and memory of a process from `/proc`: user and system CPU seconds from
//! `/proc/PID/stat` (fields 14 and 15, in clock ticks), RSS from `/proc/PID/status` (`VmRSS`).

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct CpuTimes {
    pub user_s: f64,
    pub system_s: f64,
}

impl CpuTimes {
    pub fn total(&self) -> f64 {
        self.user_s + self.system_s
    }

    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcError(pub String);

impl std::fmt::Display for ProcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(line: &str, ticks_per_s: f64) -> Result<CpuTimes, ProcError> {
    let close = line
        .rfind(')')
        .ok_or_else(|| ProcError("stat line has no ')' after the command name".into()))?;
    // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |i: usize, name: &str| -> Result<f64, ProcError> {
        let s = rest
            .get(i)
            .ok_or_else(|| ProcError(format!("stat line too short for {name}")))?;
        s.parse::<u64>()
            .map(|v| v as f64 / ticks_per_s)
            .map_err(|_| ProcError(format!("{name} is not a number: {s:?}")))
    };
    Ok(CpuTimes {
        user_s: field(11, "utime")?,
        system_s: field(12, "stime")?,
    })
}

/// `VmRSS` in bytes from a `/proc/PID/status` text.
pub fn parse_rss(status: &str) -> Result<u64, ProcError> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| ProcError("no VmRSS line".into()))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProcError(format!("VmRSS value unreadable: {line:?}")))?;
    match it.next() {
        Some("kB") => Ok(n * 1024),
        other => Err(ProcError(format!("VmRSS unit {other:?}, expected kB"))),
    }
}

fn ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU times of `pid` ("self" for this process).
pub fn cpu(pid: &str) -> Result<CpuTimes, ProcError> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| ProcError(format!("/proc/{pid}/stat: {e}")))?;
    parse_stat(&s, ticks())
}

pub fn rss(pid: &str) -> Result<u64, ProcError> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| ProcError(format!("/proc/{pid}/status: {e}")))?;
    parse_rss(&s)
}

/// Seconds spent runnable but waiting for a CPU (field 2 of a `schedstat` line): how much a
/// thread was starved by other processes on its core.
pub fn parse_schedstat(line: &str) -> Result<f64, ProcError> {
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .ok_or_else(|| ProcError(format!("schedstat line unreadable: {line:?}")))
}

/// Run-queue wait of the calling thread.
pub fn thread_wait() -> Result<f64, ProcError> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_err(|e| ProcError(format!("/proc/thread-self/schedstat: {e}")))?;
    parse_schedstat(&s)
}

/// Run-queue wait summed over all threads of `pid`.
pub fn process_wait(pid: &str) -> Result<f64, ProcError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| ProcError(format!("/proc/{pid}/task: {e}")))?;
    let mut total = 0.0;
    for e in dir.flatten() {
        if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
            total += parse_schedstat(&s)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_a_command_name_with_spaces_and_parens() {
        let line = "4242 (rtcd (worker) 1) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 75 0 0 20 0 5 0 100 123456789 2048 18446744073709551615";
        let t = parse_stat(line, 100.0).expect("parses");
        assert_eq!(t.user_s, 2.5);
        assert_eq!(t.system_s, 0.75);
        assert_eq!(t.total(), 3.25);
    }

    #[test]
    fn a_truncated_or_garbled_stat_line_is_an_error() {
        assert!(parse_stat("4242 rtcd S 1", 100.0).is_err());
        assert!(parse_stat("4242 (rtcd) S 1 2 3", 100.0).is_err());
        assert!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 5 0", 100.0).is_err());
    }

    #[test]
    fn rss_is_read_in_bytes_from_the_status_text() {
        let s = "Name:\trtcd\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(s), Ok(2048 * 1024));
        assert!(parse_rss("Name:\tx\n").is_err());
        assert!(parse_rss("VmRSS:\t12 MB\n").is_err());
    }

    #[test]
    fn run_queue_wait_is_the_second_schedstat_field_in_seconds() {
        assert_eq!(parse_schedstat("600574 2500000000 17\n"), Ok(2.5));
        assert!(parse_schedstat("12").is_err());
        assert!(thread_wait().is_ok());
        assert!(process_wait("self").is_ok());
    }

    #[test]
    fn cpu_deltas_keep_user_and_system_apart() {
        let a = CpuTimes {
            user_s: 1.0,
            system_s: 2.0,
        };
        let b = CpuTimes {
            user_s: 1.5,
            system_s: 2.25,
        };
        assert_eq!(
            b.since(&a),
            CpuTimes {
                user_s: 0.5,
                system_s: 0.25
            }
        );
        assert!(cpu("self").is_ok());
        assert!(rss("self").is_ok_and(|r| r > 0));
    }
}
