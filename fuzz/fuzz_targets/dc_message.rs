//! Any bytes → `decode_dc` must not panic; whatever decodes must re-encode to bytes that
//! decode to the same message (compared via Debug so NaN payloads compare equal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd_proto::dc::{decode_dc, encode_dc, DcInbound, DcMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(DcInbound::Message(m1)) = decode_dc(data) else {
        return;
    };
    if let DcMessage::Sdp(z) = &m1 {
        assert!(z.len() <= data.len());
    }
    let mut b1 = Vec::new();
    encode_dc(&m1, &mut b1);
    let Ok(DcInbound::Message(m2)) = decode_dc(&b1) else {
        panic!("a re-encoded message must decode");
    };
    assert_eq!(format!("{m1:?}"), format!("{m2:?}"));
    assert_eq!(m2.to_bytes(), b1, "encoding must be a fixed point");
});
