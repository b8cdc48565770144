//! Any bytes → `inflate_sdp` must not panic and must respect its output bound; what inflates
//! must survive a compress → inflate round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd_proto::dc::{compress_sdp, inflate_sdp};

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = inflate_sdp(data, LIMIT) {
        assert!(out.len() <= LIMIT);
        assert_eq!(
            inflate_sdp(&compress_sdp(&out), LIMIT).as_deref(),
            Ok(&out[..])
        );
    }
});
