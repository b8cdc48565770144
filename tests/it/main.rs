#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One integration binary: the control plane on 127.0.0.1 with a temporary store, driven by
//! a plugin-like client that encodes msgpack exactly like the Go plugin, plus the real
//! `rtcd` binary for start-up, restart and signal behaviour.

mod api;
mod common;
mod daemon;
mod fanout;
mod media;
mod media_harness;
mod ops;
mod ws;
