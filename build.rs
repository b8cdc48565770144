//! Injects build information for `/version` (upstream fills these via -ldflags).
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let hash = run("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M"]).unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(|s| format!("rust{s}")))
        .unwrap_or_default();
    println!("cargo:rustc-env=RTCD_BUILD_HASH={hash}");
    println!("cargo:rustc-env=RTCD_BUILD_DATE={date}");
    println!("cargo:rustc-env=RTCD_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=RTCD_BUILD_VERSION");
}
