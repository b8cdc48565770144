#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_support::{fixture, hex};

fn decoded(bytes: &[u8]) -> DcMessage {
    match decode_dc(bytes) {
        Ok(DcInbound::Message(m)) => m,
        other => panic!("{} decoded to {other:?}", hex(bytes)),
    }
}

/// The message encodes to exactly these bytes, and these bytes decode to the message.
fn assert_wire(msg: &DcMessage, bytes: &[u8]) {
    assert_eq!(hex(&msg.to_bytes()), hex(bytes), "encoding of {msg:?}");
    assert_eq!(&decoded(bytes), msg, "decoding of {}", hex(bytes));
}

const SENDER: &str = "yyyoryaryidyxnyjbefoadeqbh";

// ---- golden bytes -------------------------------------------------------------------------

#[test]
fn browser_ping_is_a_positive_fixint() {
    assert_eq!(decoded(&fixture("01")), DcMessage::Ping);
    assert_wire(&DcMessage::Ping, &fixture("cc 01"));
}

#[test]
fn pong_is_encoded_as_uint8() {
    assert_wire(&DcMessage::Pong, &fixture("cc 02"));
}

#[test]
fn lock_request_from_browser_has_no_payload() {
    assert_eq!(decoded(&fixture("07")), DcMessage::LockRequest);
    assert_wire(&DcMessage::LockRequest, &fixture("cc 07"));
}

#[test]
fn lock_response_is_uint8_type_then_bool() {
    assert_wire(&DcMessage::LockResponse(true), &fixture("cc 07 c3"));
    assert_wire(&DcMessage::LockResponse(false), &fixture("cc 07 c2"));
    assert_eq!(decoded(&fixture("07 c3")), DcMessage::LockResponse(true));
}

#[test]
fn lock_with_a_payload_that_is_not_a_bool_is_a_request() {
    // Upstream tries to decode a bool and falls back to "request" on any failure.
    for bytes in ["07 c0", "07 01", "07 a1 41", "07 d9"] {
        assert_eq!(decoded(&fixture(bytes)), DcMessage::LockRequest, "{bytes}");
    }
}

#[test]
fn browser_unlock_is_a_positive_fixint() {
    assert_eq!(decoded(&fixture("08")), DcMessage::Unlock);
    assert_wire(&DcMessage::Unlock, &fixture("cc 08"));
}

#[test]
fn sdp_is_uint8_type_then_bin() {
    let zlib = compress_sdp(br#"{"type":"answer","sdp":"v=0"}"#);
    assert!(zlib.len() < 256);
    let mut want = fixture(&format!("cc 03 c4 {:02x}", zlib.len()));
    want.extend_from_slice(&zlib);
    assert_wire(&DcMessage::Sdp(zlib), &want);
}

#[test]
fn large_sdp_payload_is_bin16_then_bin32() {
    for (len, header) in [
        (300usize, "cc 03 c5 01 2c"),
        (70_000, "cc 03 c6 00 01 11 70"),
    ] {
        let payload = vec![0x5a; len];
        let mut want = fixture(header);
        want.extend_from_slice(&payload);
        assert_wire(&DcMessage::Sdp(payload), &want);
    }
}

#[test]
fn sdp_payload_sent_as_str_is_accepted() {
    assert_eq!(
        decoded(&fixture(r#"03 a3 "abc""#)),
        DcMessage::Sdp(b"abc".to_vec())
    );
}

#[test]
fn metrics_are_encoded_as_float64() {
    assert_wire(
        &DcMessage::LossRate(0.25),
        &fixture("cc 04 cb 3f d0 00 00 00 00 00 00"),
    );
    assert_wire(
        &DcMessage::RoundTripTime(0.5),
        &fixture("cc 05 cb 3f e0 00 00 00 00 00 00"),
    );
    assert_wire(
        &DcMessage::Jitter(1.5),
        &fixture("cc 06 cb 3f f8 00 00 00 00 00 00"),
    );
}

#[test]
fn metrics_accept_any_number_encoding() {
    assert_eq!(
        decoded(&fixture("04 ca 3e 80 00 00")),
        DcMessage::LossRate(0.25)
    );
    assert_eq!(decoded(&fixture("05 00")), DcMessage::RoundTripTime(0.0));
    assert_eq!(decoded(&fixture("06 cc 03")), DcMessage::Jitter(3.0));
    assert_eq!(decoded(&fixture("06 ff")), DcMessage::Jitter(-1.0));
    assert_eq!(decoded(&fixture("04 d1 01 00")), DcMessage::LossRate(256.0));
    // vmihailenco decodes nil into a float64 as 0.
    assert_eq!(decoded(&fixture("04 c0")), DcMessage::LossRate(0.0));
}

#[test]
fn media_map_matches_the_spec_bytes() {
    let bytes = fixture(&format!(
        r#"cc 09 81 a1 "1" 82 a4 "type" a5 "voice" a9 "sender_id" ba "{SENDER}""#
    ));
    let msg = DcMessage::MediaMap(vec![(
        "1".into(),
        MediaMapEntry {
            kind: "voice".into(),
            sender_id: SENDER.into(),
            mime_type: None,
        },
    )]);
    assert_wire(&msg, &bytes);
}

#[test]
fn media_map_adds_mime_type_only_when_set() {
    let bytes = fixture(&format!(
        r#"cc 09 82 a1 "0" 82 a4 "type" ac "screen-audio" a9 "sender_id" ba "{SENDER}"
           a1 "3" 83 a4 "type" a5 "video" a9 "sender_id" ba "{SENDER}"
                     a9 "mime_type" a9 "video/AV1""#
    ));
    let msg = DcMessage::MediaMap(vec![
        (
            "0".into(),
            MediaMapEntry {
                kind: "screen-audio".into(),
                sender_id: SENDER.into(),
                mime_type: None,
            },
        ),
        (
            "3".into(),
            MediaMapEntry {
                kind: "video".into(),
                sender_id: SENDER.into(),
                mime_type: Some("video/AV1".into()),
            },
        ),
    ]);
    assert_wire(&msg, &bytes);
}

#[test]
fn media_map_decodes_keys_in_any_order_and_ignores_unknown_ones() {
    let bytes = fixture(
        r#"09 81 a2 "10" 84 a1 "x" 92 01 02 a9 "sender_id" a1 "s" a9 "mime_type" c0
           a4 "type" a6 "screen""#,
    );
    assert_eq!(
        decoded(&bytes),
        DcMessage::MediaMap(vec![(
            "10".into(),
            MediaMapEntry {
                kind: "screen".into(),
                sender_id: "s".into(),
                mime_type: None,
            }
        )])
    );
}

#[test]
fn empty_media_map_round_trips() {
    assert_wire(&DcMessage::MediaMap(Vec::new()), &fixture("cc 09 80"));
}

#[test]
fn legacy_text_ping_is_recognised_by_its_raw_bytes() {
    assert_eq!(decode_dc(b"ping"), Ok(DcInbound::LegacyTextPing));
    assert_eq!(LEGACY_PONG, b"pong");
    // Anything else starting with 'p' (0x70) is an unknown msgpack type.
    assert_eq!(decode_dc(b"pingx"), Err(DcError::UnknownType(0x70)));
    assert_eq!(decode_dc(b"pong"), Err(DcError::UnknownType(0x70)));
}

#[test]
fn bytes_after_the_payload_are_ignored_like_upstream() {
    assert_eq!(decoded(&fixture("01 c0 c0")), DcMessage::Ping);
    assert_eq!(
        decoded(&fixture("cc 07 c3 ff")),
        DcMessage::LockResponse(true)
    );
}

// ---- rejections ----------------------------------------------------------------------------

#[test]
fn codec_support_map_is_rejected_as_unknown() {
    assert_eq!(
        decode_dc(&fixture(r#"0a 81 a9 "video/av1" 02"#)),
        Err(DcError::UnknownType(10))
    );
}

#[test]
fn unknown_and_out_of_range_types_are_rejected() {
    assert_eq!(decode_dc(&fixture("00")), Err(DcError::UnknownType(0)));
    assert_eq!(decode_dc(&fixture("cc ff")), Err(DcError::UnknownType(255)));
    assert_eq!(decode_dc(&fixture("ff")), Err(DcError::UnknownType(-1)));
    // Go would truncate 257 to uint8 1 (Ping); we refuse it.
    assert_eq!(
        decode_dc(&fixture("cd 01 01")),
        Err(DcError::UnknownType(257))
    );
    assert_eq!(
        decode_dc(&fixture("cf ff ff ff ff ff ff ff ff")),
        Err(DcError::IntOutOfRange { context: "type" })
    );
}

#[test]
fn type_that_is_not_an_int_is_rejected() {
    assert_eq!(
        decode_dc(&fixture("c0")),
        Err(DcError::TypeNotInt { marker: 0xc0 })
    );
    assert_eq!(
        decode_dc(&fixture("ca 3f 80 00 00")),
        Err(DcError::TypeNotInt { marker: 0xca })
    );
    assert_eq!(
        decode_dc(&fixture(r#"a4 "pong""#)),
        Err(DcError::TypeNotInt { marker: 0xa4 })
    );
}

#[test]
fn empty_and_truncated_messages_are_rejected() {
    assert_eq!(decode_dc(&[]), Err(DcError::Truncated { context: "type" }));
    assert_eq!(
        decode_dc(&fixture("cc")),
        Err(DcError::Truncated { context: "type" })
    );
    assert_eq!(
        decode_dc(&fixture("03")),
        Err(DcError::Truncated {
            context: "sdp payload"
        })
    );
    assert_eq!(
        decode_dc(&fixture("cc 03 c4 05 78 9c")),
        Err(DcError::Truncated {
            context: "sdp payload"
        })
    );
    assert_eq!(
        decode_dc(&fixture("04")),
        Err(DcError::Truncated {
            context: "loss rate"
        })
    );
    assert_eq!(
        decode_dc(&fixture("05 cb 3f")),
        Err(DcError::Truncated {
            context: "round trip time"
        })
    );
    let full = fixture(&format!(
        r#"cc 09 81 a1 "1" 82 a4 "type" a5 "voice" a9 "sender_id" ba "{SENDER}""#
    ));
    for cut in 1..full.len() {
        assert!(
            decode_dc(&full[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
}

#[test]
fn payload_of_the_wrong_kind_is_rejected() {
    assert_eq!(
        decode_dc(&fixture("03 01")),
        Err(DcError::WrongShape {
            context: "sdp payload",
            expected: "bin",
            marker: 0x01
        })
    );
    assert!(matches!(
        decode_dc(&fixture(r#"04 a1 "1""#)),
        Err(DcError::WrongShape {
            context: "loss rate",
            expected: "number",
            ..
        })
    ));
    assert!(matches!(
        decode_dc(&fixture("09 91 01")),
        Err(DcError::WrongShape {
            context: "media map",
            expected: "map",
            ..
        })
    ));
    assert!(matches!(
        decode_dc(&fixture(
            r#"09 81 a1 "1" 82 a4 "type" 01 a9 "sender_id" a0"#
        )),
        Err(DcError::WrongShape {
            context: "media map type",
            ..
        })
    ));
}

#[test]
fn huge_media_map_header_is_rejected_without_allocating() {
    assert_eq!(
        decode_dc(&fixture("09 df ff ff ff ff a1 31 80")),
        Err(DcError::LengthExceedsInput {
            context: "media map",
            declared: 0xffff_ffff,
            remaining: 3
        })
    );
}

#[test]
fn oversized_message_is_rejected() {
    let mut bytes = fixture("cc 03 c6 00 04 00 00");
    bytes.resize(MAX_DC_MESSAGE_LEN + 1, 0);
    assert_eq!(
        decode_dc(&bytes),
        Err(DcError::Oversized {
            len: MAX_DC_MESSAGE_LEN + 1,
            max: MAX_DC_MESSAGE_LEN
        })
    );
}

// ---- SDP zlib -----------------------------------------------------------------------------

const OFFER_JSON: &[u8] = br#"{"type":"offer","sdp":"v=0"}"#;

#[test]
fn sdp_compressed_by_another_zlib_inflates() {
    // Python's zlib.compress(OFFER_JSON), default level.
    let zlib = fixture(
        "78 9c ab 56 2a a9 2c 48 55 b2 52 ca 4f 4b 4b 2d 52 d2 51 2a 4e 29 00 f2 ca 6c 0d \
         94 6a 01 84 53 08 a7",
    );
    assert_eq!(inflate_sdp(&zlib, MAX_SDP_LEN).unwrap(), OFFER_JSON);
}

#[test]
fn sdp_round_trips_through_zlib() {
    let sdp = format!(
        r#"{{"type":"offer","sdp":"{}"}}"#,
        "a=candidate:1 1 udp 2130706431 192.0.2.1 8443 typ host\\r\\n".repeat(200)
    );
    let zlib = compress_sdp(sdp.as_bytes());
    assert!(zlib.len() < sdp.len() / 4, "SDP text should compress well");
    assert_eq!(zlib[0], 0x78, "zlib header");
    assert_eq!(inflate_sdp(&zlib, MAX_SDP_LEN).unwrap(), sdp.as_bytes());
    assert_eq!(inflate_sdp(&compress_sdp(b""), 0).unwrap(), b"");
    let DcMessage::Sdp(zlib) = DcMessage::sdp_from_json(OFFER_JSON) else {
        unreachable!()
    };
    assert_eq!(inflate_sdp(&zlib, MAX_SDP_LEN).unwrap(), OFFER_JSON);
}

#[test]
fn inflated_size_limit_is_inclusive() {
    let zlib = compress_sdp(OFFER_JSON);
    assert_eq!(inflate_sdp(&zlib, OFFER_JSON.len()).unwrap(), OFFER_JSON);
    assert_eq!(
        inflate_sdp(&zlib, OFFER_JSON.len() - 1),
        Err(DcError::SdpTooLarge {
            max: OFFER_JSON.len() - 1
        })
    );
    assert_eq!(inflate_sdp(&zlib, 0), Err(DcError::SdpTooLarge { max: 0 }));
}

/// A valid zlib stream inflating to `1 + 258 * runs` zero bytes, written directly as one
/// fixed-Huffman deflate block (RFC 1951 §3.2.6): literal 0, then `runs` copies of
/// (length 258, distance 1). 13 bits per 258 output bytes, so a 50 MB bomb is cheap to make.
fn zero_bomb(runs: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        cur: u8,
        n: u8,
    }
    impl Bits {
        fn bit(&mut self, b: u32) {
            self.cur |= ((b & 1) as u8) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.cur);
                (self.cur, self.n) = (0, 0);
            }
        }
        /// Header fields: least significant bit first.
        fn field(&mut self, v: u32, len: u32) {
            (0..len).for_each(|i| self.bit(v >> i));
        }
        /// Huffman codes: most significant bit first.
        fn code(&mut self, v: u32, len: u32) {
            (0..len).rev().for_each(|i| self.bit(v >> i));
        }
    }
    let mut w = Bits {
        out: vec![0x78, 0x9c],
        cur: 0,
        n: 0,
    };
    w.field(1, 1); // BFINAL
    w.field(1, 2); // BTYPE = fixed Huffman
    w.code(0x30, 8); // literal 0
    for _ in 0..runs {
        w.code(0b1100_0101, 8); // length symbol 285 = 258
        w.code(0, 5); // distance code 0 = 1
    }
    w.code(0, 7); // end of block (256)
    if w.n > 0 {
        w.out.push(w.cur);
    }
    // Adler-32 of N zero bytes: a = 1, b = N mod 65521.
    let total = 1 + 258 * runs as u64;
    let adler = ((total % 65521) << 16) as u32 | 1;
    w.out.extend_from_slice(&adler.to_be_bytes());
    w.out
}

#[test]
fn zero_bomb_builder_makes_a_valid_stream() {
    let out = inflate_sdp(&zero_bomb(1000), MAX_SDP_LEN).unwrap();
    assert_eq!(out.len(), 1 + 258 * 1000);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn zip_bomb_is_rejected_without_inflating_it_all() {
    // ~50 MB of zeros from ~300 KB of input.
    let bomb = zero_bomb(50_000_000 / 258);
    assert!(bomb.len() < 400_000);
    let mut out = Vec::new();
    assert_eq!(
        inflate_into(&bomb, MAX_SDP_LEN, &mut out),
        Err(DcError::SdpTooLarge { max: MAX_SDP_LEN })
    );
    assert!(
        out.capacity() <= MAX_SDP_LEN + 1,
        "buffer grew to {} bytes",
        out.capacity()
    );
    assert_eq!(
        inflate_sdp(&bomb, MAX_SDP_LEN),
        Err(DcError::SdpTooLarge { max: MAX_SDP_LEN })
    );
}

#[test]
fn zip_bomb_made_by_a_real_compressor_is_rejected() {
    let bomb = compress_sdp(&vec![0u8; 4 * MAX_SDP_LEN]);
    assert_eq!(
        inflate_sdp(&bomb, MAX_SDP_LEN),
        Err(DcError::SdpTooLarge { max: MAX_SDP_LEN })
    );
}

#[test]
fn truncated_zlib_stream_is_rejected() {
    let zlib = compress_sdp(OFFER_JSON);
    for cut in 0..zlib.len() {
        let err = inflate_sdp(&zlib[..cut], MAX_SDP_LEN).unwrap_err();
        assert!(
            matches!(err, DcError::TruncatedZlib | DcError::CorruptZlib(_)),
            "cut at {cut}: {err:?}"
        );
    }
    assert_eq!(inflate_sdp(&[], MAX_SDP_LEN), Err(DcError::TruncatedZlib));
}

#[test]
fn corrupt_zlib_is_rejected() {
    // Not a zlib header.
    assert!(matches!(
        inflate_sdp(br#"{"type":"offer"}"#, MAX_SDP_LEN),
        Err(DcError::CorruptZlib(_))
    ));
    // Wrong Adler-32.
    let mut zlib = compress_sdp(OFFER_JSON);
    let last = zlib.len() - 1;
    zlib[last] ^= 0xff;
    assert!(matches!(
        inflate_sdp(&zlib, MAX_SDP_LEN),
        Err(DcError::CorruptZlib(_))
    ));
}

#[test]
fn bytes_after_the_zlib_stream_are_ignored_like_go() {
    let mut zlib = compress_sdp(OFFER_JSON);
    zlib.extend_from_slice(b"garbage");
    assert_eq!(inflate_sdp(&zlib, MAX_SDP_LEN).unwrap(), OFFER_JSON);
}

#[test]
fn error_labels_are_stable_metric_values() {
    assert_eq!(DcError::UnknownType(10).label(), "unknown_type");
    assert_eq!(DcError::SdpTooLarge { max: 1 }.label(), "sdp_too_large");
    assert_eq!(
        DcError::UnknownType(10).to_string(),
        "unknown data channel message type 10"
    );
}
