//! Any datagram → `classify` and `binding_request_local_ufrag` must not panic; a peeked ufrag
//! is a non-empty, colon-free slice of the datagram's attributes, at most 513 bytes, and
//! only STUN-classified datagrams yield one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd_proto::stun::{binding_request_local_ufrag, classify, PacketKind};

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    let Some(ufrag) = binding_request_local_ufrag(data) else {
        return;
    };
    assert_eq!(kind, PacketKind::Stun);
    assert!(!ufrag.is_empty() && ufrag.len() <= 513 && !ufrag.contains(':'));
    let start = ufrag.as_ptr() as usize - data.as_ptr() as usize;
    assert!(start >= 24 && start + ufrag.len() <= data.len());
});
