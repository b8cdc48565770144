//! JSON payloads carried in `rtc` messages (spec §3.5, §4.2): SDP `{"type","sdp"}`, ICE
//! candidates (the browser's `RTCIceCandidate` JSON in, rtcd's wrapped form out), and the
//! `ScreenOn`/`VideoOn` stream IDs.

use serde::Deserialize;

/// Largest SDP payload accepted (upstream's WS frame limit).
pub const MAX_SDP_JSON: usize = 1 << 20;
/// Largest candidate / control payload accepted.
pub const MAX_SMALL_JSON: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("payload of {len} bytes over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("unsupported SDP type {0:?}")]
    SdpType(String),
    #[error("missing or empty field {0}")]
    Missing(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

impl SdpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpMessage {
    pub kind: SdpKind,
    pub sdp: String,
}

fn check(data: &[u8], max: usize) -> Result<(), SignalError> {
    if data.len() > max {
        return Err(SignalError::TooLarge {
            len: data.len(),
            max,
        });
    }
    Ok(())
}

fn json<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, SignalError> {
    serde_json::from_slice(data).map_err(|e| SignalError::Json(e.to_string()))
}

/// `{"type":"offer"|"answer","sdp":"…"}`.
pub fn parse_sdp(data: &[u8]) -> Result<SdpMessage, SignalError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        sdp: String,
    }
    check(data, MAX_SDP_JSON)?;
    let raw: Raw = json(data)?;
    let kind = match raw.kind.as_str() {
        "offer" => SdpKind::Offer,
        "answer" => SdpKind::Answer,
        other => return Err(SignalError::SdpType(other.to_string())),
    };
    if raw.sdp.is_empty() {
        return Err(SignalError::Missing("sdp"));
    }
    Ok(SdpMessage { kind, sdp: raw.sdp })
}

/// The JSON a browser's `RTCSessionDescription` takes.
pub fn sdp_json(kind: SdpKind, sdp: &str) -> Vec<u8> {
    serde_json::json!({"type": kind.as_str(), "sdp": sdp})
        .to_string()
        .into_bytes()
}

/// A remote candidate as the browser sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InboundCandidate {
    #[serde(default)]
    pub candidate: String,
    #[serde(rename = "sdpMid", default)]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_mline_index: Option<u32>,
    #[serde(rename = "usernameFragment", default)]
    pub username_fragment: Option<String>,
}

/// Parses an inbound candidate; `None` for the empty end-of-candidates marker (skipped
/// upstream).
pub fn parse_candidate(data: &[u8]) -> Result<Option<InboundCandidate>, SignalError> {
    check(data, MAX_SMALL_JSON)?;
    let c: InboundCandidate = json(data)?;
    Ok((!c.candidate.trim().is_empty()).then_some(c))
}

/// rtcd's outbound candidate message: the browser code dispatches on the top-level
/// `type`, so the wrapper is mandatory (spec §4.2).
pub fn candidate_json(candidate_line: &str, sdp_mid: &str, sdp_mline_index: u32) -> Vec<u8> {
    let line = candidate_line.strip_prefix("a=").unwrap_or(candidate_line);
    serde_json::json!({
        "type": "candidate",
        "candidate": {
            "candidate": line,
            "sdpMid": sdp_mid,
            "sdpMLineIndex": sdp_mline_index,
            "usernameFragment": null,
        }
    })
    .to_string()
    .into_bytes()
}

fn stream_id(data: &[u8], field: &'static str) -> Result<String, SignalError> {
    check(data, MAX_SMALL_JSON)?;
    let v: serde_json::Map<String, serde_json::Value> = json(data)?;
    match v.get(field).and_then(|s| s.as_str()) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(SignalError::Missing(field)),
    }
}

/// `ScreenOn` data: `{"screenStreamID": "…"}`.
pub fn parse_screen_on(data: &[u8]) -> Result<String, SignalError> {
    stream_id(data, "screenStreamID")
}

/// `VideoOn` data: `{"videoStreamID": "…"}`.
pub fn parse_video_on(data: &[u8]) -> Result<String, SignalError> {
    stream_id(data, "videoStreamID")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_messages_parse_and_serialise() {
        let m = parse_sdp(br#"{"type":"offer","sdp":"v=0\r\n"}"#).unwrap();
        assert_eq!(m.kind, SdpKind::Offer);
        assert_eq!(m.sdp, "v=0\r\n");
        assert_eq!(
            sdp_json(SdpKind::Answer, "v=0\r\n"),
            br#"{"sdp":"v=0\r\n","type":"answer"}"#.to_vec()
        );
        assert_eq!(
            parse_sdp(br#"{"type":"pranswer","sdp":"x"}"#),
            Err(SignalError::SdpType("pranswer".into()))
        );
        assert_eq!(
            parse_sdp(br#"{"type":"offer"}"#),
            Err(SignalError::Missing("sdp"))
        );
        assert!(matches!(parse_sdp(b"{"), Err(SignalError::Json(_))));
        assert!(matches!(
            parse_sdp(&vec![b' '; MAX_SDP_JSON + 1]),
            Err(SignalError::TooLarge { .. })
        ));
    }

    #[test]
    fn browser_candidates_parse_and_end_of_candidates_is_skipped() {
        let c = parse_candidate(br#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.username_fragment.as_deref(), Some("abcd"));
        assert_eq!(
            parse_candidate(br#"{"candidate":"","sdpMid":"0"}"#),
            Ok(None)
        );
        assert!(parse_candidate(b"[1]").is_err());
    }

    #[test]
    fn outbound_candidate_has_rtcd_wrapper_bytes() {
        let j = candidate_json(
            "a=candidate:1 1 udp 2130706175 127.0.0.1 8443 typ host",
            "0",
            0,
        );
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["type"], "candidate");
        assert_eq!(
            v["candidate"]["candidate"],
            "candidate:1 1 udp 2130706175 127.0.0.1 8443 typ host"
        );
        assert_eq!(v["candidate"]["sdpMid"], "0");
        assert_eq!(v["candidate"]["sdpMLineIndex"], 0);
        assert!(v["candidate"]["usernameFragment"].is_null());
    }

    #[test]
    fn screen_and_video_stream_ids_are_required() {
        assert_eq!(
            parse_screen_on(br#"{"screenStreamID":"abc"}"#).unwrap(),
            "abc"
        );
        assert_eq!(parse_video_on(br#"{"videoStreamID":"v"}"#).unwrap(), "v");
        assert_eq!(
            parse_screen_on(br#"{"screenStreamID":""}"#),
            Err(SignalError::Missing("screenStreamID"))
        );
        assert!(parse_video_on(b"null").is_err());
    }
}
