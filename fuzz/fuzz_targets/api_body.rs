//! The HTTP API's JSON bodies (`/register`, `/unregister`, `/login`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = rtcd_proto::api::parse_string_map(data) {
        assert!(map.len() <= data.len());
    }
});
