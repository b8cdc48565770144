//! Build information served by `GET /version` and printed by `rtcd --version`.

use serde::Serialize;

/// The upstream rtcd release whose wire protocol and behaviour we implement. The plugin
/// requires `buildVersion` to be semver ≥ its `min_rtcd_version` (v0.17.0) and ≥ v1.0.0 to
/// trust `/calls/{id}/sessions`, so we report the upstream version we are compatible with.
pub const BUILD_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The JSON body of `GET /version`, field order as upstream's struct.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionInfo {
    #[serde(rename = "buildDate")]
    pub build_date: String,
    #[serde(rename = "buildVersion")]
    pub build_version: String,
    #[serde(rename = "buildHash")]
    pub build_hash: String,
    /// Upstream reports the Go toolchain here; we report the Rust one (`rust1.95.0`).
    #[serde(rename = "goVersion")]
    pub go_version: String,
    #[serde(rename = "goOS")]
    pub go_os: String,
    #[serde(rename = "goArch")]
    pub go_arch: String,
}

impl VersionInfo {
    pub fn current() -> Self {
        VersionInfo {
            build_date: env!("RTCD_BUILD_DATE").to_string(),
            build_version: BUILD_VERSION.to_string(),
            build_hash: env!("RTCD_BUILD_HASH").to_string(),
            go_version: env!("RTCD_RUSTC_VERSION").to_string(),
            go_os: std::env::consts::OS.to_string(),
            go_arch: go_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

/// Go's GOARCH spelling of the Rust target architecture.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_version_is_semver_at_least_plugin_minimum() {
        let v = BUILD_VERSION.trim_start_matches('v');
        let parts: Vec<u64> = v.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0] >= 1, "plugin needs >= v1.0.0 for /calls sessions");
    }

    #[test]
    fn go_arch_maps_rust_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}
