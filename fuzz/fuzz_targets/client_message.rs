//! Any bytes → `ClientMessage::decode` must not panic; whatever decodes must re-encode to a
//! frame that decodes to the same message, and encoding must then be a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd_proto::ws::{ClientMessage, PropValue};

/// `PropValue::Other` (bin/array/map/ext join values) is kept only as "something else" and
/// re-encodes as nil, so such messages cannot round-trip exactly.
fn has_lossy_props(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::Join(j)
        if [&j.channel_id, &j.av1_support, &j.dc_signaling].contains(&&PropValue::Other))
}

fuzz_target!(|data: &[u8]| {
    let Ok(m1) = ClientMessage::decode(data) else {
        return;
    };
    if let ClientMessage::Rtc(m) | ClientMessage::Vad(m) = &m1 {
        assert!(m.data.len() <= data.len());
    }
    let b1 = m1.to_bytes();
    let m2 = ClientMessage::decode(&b1).expect("a re-encoded frame must decode");
    if !has_lossy_props(&m1) {
        assert_eq!(m1, m2);
    }
    assert_eq!(m2.to_bytes(), b1, "encoding must be a fixed point");
});
