//! Pure protocol code for rtcd: no sockets, threads, clock or `unsafe`.
//! Time, where needed, is an argument.
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | the JSON bodies of the HTTP API's POST routes |
//! | [`framing`] | RFC 4571 framing of ICE-TCP |
//! | [`host`] | advertised host candidates: `ice_host_override`, STUN results, port override |
//! | [`keyframe`] | token buckets: keyframe-request and estimate throttles |
//! | [`rate`] | publisher-layer arrival-rate monitor |
//! | [`signaling`] | JSON payloads of `rtc` messages: SDP, candidates, stream IDs |
//! | [`simulcast`] | screen-share layer choice (`l`/`h`) per receiver |
//! | [`stun`] | RFC 7983 demux and the STUN USERNAME peek for steering |
//! | [`track`] | forwarded track IDs and track classification |
//! | [`vad`] | voice activity detection |
//! | [`ws`] | the plugin ↔ rtcd WebSocket frames (`ClientMessage`, `rtc.Message`) |
//! | [`dc`] | the `calls-dc` data-channel messages and the bounded SDP zlib codec |
//! | [`id`] | 26-character Mattermost-style IDs |
//! | [`turn`] | TURN REST credentials |
//!
//! Every decoder here takes untrusted bytes: it must return an error, never panic, and never
//! size an allocation from a length prefix it has not checked against the input.
#![forbid(unsafe_code)]

pub mod api;
pub mod dc;
pub mod framing;
pub mod host;
pub mod id;
pub mod keyframe;
mod msgpack;
pub mod rate;
pub mod signaling;
pub mod simulcast;
pub mod stun;
pub mod track;
pub mod turn;
pub mod vad;
pub mod ws;

pub use dc::{
    compress_sdp, decode_dc, encode_dc, inflate_sdp, DcError, DcInbound, DcMessage, MediaMapEntry,
    LEGACY_PING, LEGACY_PONG, MAX_DC_MESSAGE_LEN, MAX_SDP_LEN,
};
pub use id::{is_valid_id, new_id, ID_LEN};
pub use turn::{turn_credentials, TurnCredentials, TurnError};
pub use ws::{ClientMessage, Join, MessageType, PropValue, RtcMessage, WireError, MAX_FRAME_LEN};

#[cfg(test)]
mod robustness_tests;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    /// Builds bytes from a fixture written like the spec: hex bytes separated by spaces, and
    /// `"quoted"` text inserted as its raw bytes (the header byte is written out in hex, so
    /// fixtures do not depend on our encoder).
    pub(crate) fn fixture(spec: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = spec.trim_start();
        while !rest.is_empty() {
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').unwrap_or_else(|| panic!("unclosed quote"));
                out.extend_from_slice(&quoted.as_bytes()[..end]);
                rest = &quoted[end + 1..];
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let byte = u8::from_str_radix(&rest[..end], 16)
                    .unwrap_or_else(|_| panic!("bad hex byte {:?}", &rest[..end]));
                out.push(byte);
                rest = &rest[end..];
            }
            rest = rest.trim_start();
        }
        out
    }

    /// Lower-case hex with spaces, for readable assertion failures.
    pub(crate) fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
