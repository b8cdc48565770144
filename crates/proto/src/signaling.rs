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
    #[error("field {0} out of range")]
    OutOfRange(&'static str),
}

/// Longest piece of untrusted input quoted in an error (keeps logs bounded).
pub const MAX_QUOTED: usize = 64;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_QUOTED).collect()
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

/// Parses a JSON object (serde's derive would also take an array for a struct; Go does not).
fn json<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, SignalError> {
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(SignalError::Json("expected a JSON object".into()));
    }
    // serde_json messages can quote the offending value: keep them short.
    serde_json::from_slice(data).map_err(|e| {
        let msg = e.to_string();
        SignalError::Json(msg.chars().take(4 * MAX_QUOTED).collect())
    })
}

/// `{"type":"offer"|"answer","sdp":"…"}` (pion's `SessionDescription`). Other types
/// (`pranswer`, `rollback`, anything else) are refused, as upstream refuses them after
/// parsing; an empty `sdp` is refused here rather than by the SDP parser.
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
        other => return Err(SignalError::SdpType(bounded(other))),
    };
    if raw.sdp.is_empty() {
        return Err(SignalError::Missing("sdp"));
    }
    Ok(SdpMessage { kind, sdp: raw.sdp })
}

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it (what rtcd sends):
/// `"` and `\` escaped, `\b \f \n \r \t` short forms, other control characters as
/// `\u00xx`, and the HTML-sensitive `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
fn write_go_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{0}'..='\u{1f}' | '<' | '>' | '&' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            _ => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out.push(b'"');
}

/// The JSON of an SDP as rtcd sends it: `{"type":"…","sdp":"…"}`, byte for byte what Go's
/// `json.Marshal` gives for pion's `SessionDescription`.
pub fn sdp_json(kind: SdpKind, sdp: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(sdp.len() + sdp.len() / 16 + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"sdp\":");
    write_go_json_str(&mut out, sdp);
    out.push(b'}');
    out
}

/// A remote candidate as the browser sends it (`RTCIceCandidateInit`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InboundCandidate {
    #[serde(default)]
    pub candidate: String,
    #[serde(rename = "sdpMid", default)]
    pub sdp_mid: Option<String>,
    /// At most 65535 (pion's `*uint16`).
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
    if c.sdp_mline_index.is_some_and(|i| i > u32::from(u16::MAX)) {
        return Err(SignalError::OutOfRange("sdpMLineIndex"));
    }
    Ok((!c.candidate.trim().is_empty()).then_some(c))
}

/// rtcd's outbound candidate message (spec §4.2): the browser code dispatches on the
/// top-level `type`, so the wrapper is mandatory. Byte for byte what upstream sends: Go
/// marshals the wrapper from a map (keys sorted, so `candidate` comes before `type`) and the
/// inner object from pion's `ICECandidateInit` (fields in declaration order):
/// `{"candidate":{"candidate":"candidate:…","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null},"type":"candidate"}`.
/// `candidate_line` may carry an `a=` prefix; `candidate:` is added when missing.
pub fn candidate_json(candidate_line: &str, sdp_mid: &str, sdp_mline_index: u32) -> Vec<u8> {
    let line = candidate_line.strip_prefix("a=").unwrap_or(candidate_line);
    let mut out = Vec::with_capacity(line.len() + sdp_mid.len() + 128);
    out.extend_from_slice(b"{\"candidate\":{\"candidate\":");
    if line.starts_with("candidate:") {
        write_go_json_str(&mut out, line);
    } else {
        write_go_json_str(&mut out, &format!("candidate:{line}"));
    }
    out.extend_from_slice(b",\"sdpMid\":");
    write_go_json_str(&mut out, sdp_mid);
    out.extend_from_slice(b",\"sdpMLineIndex\":");
    out.extend_from_slice(sdp_mline_index.to_string().as_bytes());
    out.extend_from_slice(b",\"usernameFragment\":null},\"type\":\"candidate\"}");
    out
}

fn stream_id(data: &[u8], field: &'static str) -> Result<String, SignalError> {
    check(data, MAX_SMALL_JSON)?;
    let v: serde_json::Map<String, serde_json::Value> = json(data)?;
    match v.get(field).and_then(|s| s.as_str()) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(SignalError::Missing(field)),
    }
}

/// `ScreenOn` data: `{"screenStreamID": "…"}`. Stricter than upstream, which stores a
/// missing or empty ID (and still takes the call's screen-sharer slot).
pub fn parse_screen_on(data: &[u8]) -> Result<String, SignalError> {
    stream_id(data, "screenStreamID")
}

/// `VideoOn` data: `{"videoStreamID": "…"}`; missing or empty is refused (upstream stores "").
pub fn parse_video_on(data: &[u8]) -> Result<String, SignalError> {
    stream_id(data, "videoStreamID")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_and_answers_parse() {
        let m = parse_sdp(br#"{"type":"offer","sdp":"v=0\r\n"}"#).unwrap();
        assert_eq!(m.kind, SdpKind::Offer);
        assert_eq!(m.sdp, "v=0\r\n");
        // Key order and unknown keys do not matter.
        let m = parse_sdp(br#"{"sdp":"v=0","x":[1],"type":"answer"}"#).unwrap();
        assert_eq!(m.kind, SdpKind::Answer);
    }

    #[test]
    fn other_sdp_types_and_malformed_payloads_are_refused() {
        assert_eq!(
            parse_sdp(br#"{"type":"pranswer","sdp":"x"}"#),
            Err(SignalError::SdpType("pranswer".into()))
        );
        assert_eq!(
            parse_sdp(br#"{"type":"rollback","sdp":"x"}"#),
            Err(SignalError::SdpType("rollback".into()))
        );
        assert_eq!(
            parse_sdp(br#"{"sdp":"x"}"#),
            Err(SignalError::SdpType(String::new()))
        );
        assert_eq!(
            parse_sdp(br#"{"type":"offer"}"#),
            Err(SignalError::Missing("sdp"))
        );
        for bad in [
            &b"{"[..],
            b"",
            b"[]",
            br#"["offer","v=0"]"#,
            b"null",
            br#"{"type":1,"sdp":"x"}"#,
        ] {
            assert!(
                matches!(parse_sdp(bad), Err(SignalError::Json(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_sdp(&vec![b' '; MAX_SDP_JSON + 1]),
            Err(SignalError::TooLarge { .. })
        ));
    }

    #[test]
    fn errors_quote_untrusted_input_only_briefly() {
        let long_type = format!(r#"{{"type":"{}","sdp":"x"}}"#, "t".repeat(10_000));
        match parse_sdp(long_type.as_bytes()) {
            Err(SignalError::SdpType(t)) => assert_eq!(t.len(), MAX_QUOTED),
            other => panic!("{other:?}"),
        }
        let long_value = format!(r#"{{"candidate":"c","sdpMid":{}}}"#, "1".repeat(10_000));
        match parse_candidate(long_value.as_bytes()) {
            Err(SignalError::Json(m)) => assert!(m.chars().count() <= 4 * MAX_QUOTED),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sdp_json_has_go_field_order_and_escaping() {
        assert_eq!(
            String::from_utf8(sdp_json(SdpKind::Answer, "v=0\r\na=x\r\n")).unwrap(),
            r#"{"type":"answer","sdp":"v=0\r\na=x\r\n"}"#
        );
        assert_eq!(
            String::from_utf8(sdp_json(SdpKind::Offer, "")).unwrap(),
            r#"{"type":"offer","sdp":""}"#
        );
        // Round trip through our own parser.
        let sdp = "v=0\r\ns=\"q\" \\ <&> \u{1} \u{7f} é \u{2028}\t\u{8}\u{c}\r\n";
        let back = parse_sdp(&sdp_json(SdpKind::Offer, sdp)).unwrap();
        assert_eq!(back.sdp, sdp);
    }

    /// Go's `encoding/json` (1.22+) string escaping, character by character.
    #[test]
    fn strings_are_escaped_like_go_encoding_json() {
        let cases = [
            ("plain ascii é 日本", r#""plain ascii é 日本""#),
            ("\"\\", r#""\"\\""#),
            ("\u{8}\u{c}\n\r\t", r#""\b\f\n\r\t""#),
            ("\u{0}\u{1}\u{1f}", r#""\u0000\u0001\u001f""#),
            ("<a&b>", r#""\u003ca\u0026b\u003e""#),
            ("\u{2028}\u{2029}", r#""\u2028\u2029""#),
            ("\u{7f}/", "\"\u{7f}/\""),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            write_go_json_str(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn browser_candidates_parse_and_end_of_candidates_is_skipped() {
        let c = parse_candidate(br#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(c.candidate, "candidate:1 1 udp 1 127.0.0.1 5000 typ host");
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_mline_index, Some(0));
        assert_eq!(c.username_fragment.as_deref(), Some("abcd"));
        // Firefox sends nulls; older clients omit fields.
        let c = parse_candidate(
            br#"{"candidate":"candidate:x","sdpMid":null,"usernameFragment":null}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.sdp_mid, c.sdp_mline_index, c.username_fragment),
            (None, None, None)
        );
        assert_eq!(
            parse_candidate(br#"{"candidate":"","sdpMid":"0"}"#),
            Ok(None)
        );
        assert_eq!(parse_candidate(br#"{"candidate":"  "}"#), Ok(None));
        assert_eq!(parse_candidate(b"{}"), Ok(None));
    }

    #[test]
    fn malformed_candidates_are_refused() {
        assert!(parse_candidate(b"[1]").is_err());
        assert!(parse_candidate(br#"["candidate:x","0",0,null]"#).is_err());
        assert!(parse_candidate(b"").is_err());
        assert!(parse_candidate(br#"{"candidate":5}"#).is_err());
        assert!(parse_candidate(br#"{"candidate":"c","sdpMLineIndex":-1}"#).is_err());
        assert_eq!(
            parse_candidate(br#"{"candidate":"c","sdpMLineIndex":65536}"#),
            Err(SignalError::OutOfRange("sdpMLineIndex"))
        );
        assert!(parse_candidate(br#"{"candidate":"c","sdpMLineIndex":65535}"#).is_ok());
        assert!(matches!(
            parse_candidate(&vec![b' '; MAX_SMALL_JSON + 1]),
            Err(SignalError::TooLarge { .. })
        ));
    }

    #[test]
    fn outbound_candidate_has_upstreams_exact_bytes() {
        let want = r#"{"candidate":{"candidate":"candidate:1 1 udp 2130706175 127.0.0.1 8443 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null},"type":"candidate"}"#;
        for line in [
            "a=candidate:1 1 udp 2130706175 127.0.0.1 8443 typ host",
            "candidate:1 1 udp 2130706175 127.0.0.1 8443 typ host",
            "1 1 udp 2130706175 127.0.0.1 8443 typ host",
        ] {
            let got = String::from_utf8(candidate_json(line, "0", 0)).unwrap();
            assert_eq!(got, want, "{line:?}");
        }
        let tcp = candidate_json(
            "candidate:2 1 tcp 1671430143 10.0.0.1 8443 typ host tcptype passive",
            "audio",
            3,
        );
        assert_eq!(
            String::from_utf8(tcp).unwrap(),
            r#"{"candidate":{"candidate":"candidate:2 1 tcp 1671430143 10.0.0.1 8443 typ host tcptype passive","sdpMid":"audio","sdpMLineIndex":3,"usernameFragment":null},"type":"candidate"}"#
        );
    }

    #[test]
    fn outbound_candidate_reads_back_as_the_browser_sees_it() {
        let j = candidate_json("candidate:1 1 udp 1 ::1 8443 typ host", "0", 0);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["type"], "candidate");
        let inner = serde_json::to_vec(&v["candidate"]).unwrap();
        let c = parse_candidate(&inner).unwrap().unwrap();
        assert_eq!(c.candidate, "candidate:1 1 udp 1 ::1 8443 typ host");
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.username_fragment, None);
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
        assert_eq!(
            parse_screen_on(br#"{"videoStreamID":"v"}"#),
            Err(SignalError::Missing("screenStreamID"))
        );
        assert_eq!(
            parse_video_on(br#"{"videoStreamID":7}"#),
            Err(SignalError::Missing("videoStreamID"))
        );
        assert!(parse_video_on(b"null").is_err());
        assert!(matches!(
            parse_screen_on(&vec![b' '; MAX_SMALL_JSON + 1]),
            Err(SignalError::TooLarge { .. })
        ));
    }
}
