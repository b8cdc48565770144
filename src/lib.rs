//! rtcd: a thread-per-core WebRTC SFU, wire-compatible with Mattermost's rtcd.
//!
//! `control` (tokio: API, WebSockets, auth, store, metrics, placement) and `data` (pinned
//! workers: sockets, sessions, media) never import each other; both use `bridge` and the
//! pure `rtcd_proto` crate.

pub mod bridge;
pub mod config;
pub mod control;
pub mod data;
pub mod logging;
pub mod tuning;
pub mod version;
