//! Any `rtc` message payload → the signaling JSON parsers must not panic, and whatever
//! parses must survive our own encoders: SDP round-trips through `sdp_json`, a candidate
//! re-wrapped by `candidate_json` is valid JSON carrying the same line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd_proto::signaling::{
    candidate_json, parse_candidate, parse_screen_on, parse_sdp, parse_video_on, sdp_json,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_sdp(data) {
        assert!(m.sdp.len() <= data.len());
        let back = parse_sdp(&sdp_json(m.kind, &m.sdp)).expect("our SDP JSON must parse");
        assert_eq!(back, m);
    }
    if let Ok(Some(c)) = parse_candidate(data) {
        let out = candidate_json(
            &c.candidate,
            c.sdp_mid.as_deref().unwrap_or("0"),
            c.sdp_mline_index.unwrap_or(0),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["type"], "candidate");
        let line = v["candidate"]["candidate"].as_str().expect("a string");
        let sent = c.candidate.strip_prefix("a=").unwrap_or(&c.candidate);
        assert!(line.starts_with("candidate:") && line.ends_with(sent));
    }
    for id in [parse_screen_on(data), parse_video_on(data)]
        .into_iter()
        .flatten()
    {
        assert!(!id.is_empty() && id.len() <= data.len());
    }
});
