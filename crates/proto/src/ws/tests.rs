#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_support::{fixture, hex};

/// The message encodes to exactly these bytes, and these bytes decode to the message.
fn assert_wire(msg: &ClientMessage, bytes: &[u8]) {
    assert_eq!(hex(&msg.to_bytes()), hex(bytes), "encoding of {msg:?}");
    assert_eq!(
        &ClientMessage::decode(bytes).unwrap(),
        msg,
        "decoding of {}",
        hex(bytes)
    );
}

fn rtc(session_id: &str, msg_type: MessageType, data: &[u8]) -> RtcMessage {
    RtcMessage {
        group_id: "g".into(),
        user_id: "u".into(),
        session_id: session_id.into(),
        call_id: "c".into(),
        msg_type,
        data: data.to_vec(),
    }
}

const RTC_ICE_SPEC: &str = r#"a3 "rtc" 86 a8 "group_id" a1 "g" a7 "user_id" a1 "u"
    aa "session_id" a1 "s" a7 "call_id" a1 "c" a4 "type" 01
    a4 "data" c4 07 7b 22 61 22 3a 31 7d"#;

// ---- golden frames, both directions ---------------------------------------------------------

#[test]
fn leave_matches_the_spec_bytes() {
    let bytes = fixture("a5 6c 65 61 76 65 81 a9 73 65 73 73 69 6f 6e 49 44 a3 61 62 63");
    assert_wire(
        &ClientMessage::Leave {
            session_id: "abc".into(),
        },
        &bytes,
    );
}

#[test]
fn hello_is_encoded_with_str_values() {
    let bytes = fixture(r#"a5 "hello" 82 a8 "clientID" a2 "c1" a6 "connID" a2 "k1""#);
    assert_wire(
        &ClientMessage::Hello {
            client_id: "c1".into(),
            conn_id: "k1".into(),
        },
        &bytes,
    );
}

#[test]
fn hello_with_a_26_char_conn_id_uses_fixstr() {
    let bytes =
        fixture(r#"a5 "hello" 82 a8 "clientID" a0 a6 "connID" ba "yyyoryaryidyxnyjbefoadeqbh""#);
    assert_wire(
        &ClientMessage::Hello {
            client_id: String::new(),
            conn_id: "yyyoryaryidyxnyjbefoadeqbh".into(),
        },
        &bytes,
    );
}

#[test]
fn close_is_encoded_as_a_str_session_map() {
    let bytes = fixture(r#"a5 "close" 81 a9 "sessionID" a3 "abc""#);
    assert_wire(
        &ClientMessage::Close {
            session_id: "abc".into(),
        },
        &bytes,
    );
}

#[test]
fn reconnect_matches_golden_bytes() {
    let bytes = fixture(r#"a9 "reconnect" 81 a9 "sessionID" a3 "abc""#);
    assert_wire(
        &ClientMessage::Reconnect {
            session_id: "abc".into(),
        },
        &bytes,
    );
}

#[test]
fn rtc_ice_message_matches_the_spec_bytes() {
    assert_wire(
        &ClientMessage::Rtc(rtc("s", MessageType::Ice, br#"{"a":1}"#)),
        &fixture(RTC_ICE_SPEC),
    );
}

#[test]
fn rtc_message_omits_empty_data_key() {
    let bytes = fixture(
        r#"a3 "rtc" 85 a8 "group_id" a1 "g" a7 "user_id" a1 "u"
           aa "session_id" a1 "s" a7 "call_id" a1 "c" a4 "type" 03"#,
    );
    assert_wire(
        &ClientMessage::Rtc(rtc("s", MessageType::Mute, b"")),
        &bytes,
    );
}

#[test]
fn vad_is_sent_without_a_data_key() {
    for (ty, byte) in [(MessageType::VoiceOn, "07"), (MessageType::VoiceOff, "08")] {
        let bytes = fixture(&format!(
            r#"a3 "vad" 85 a8 "group_id" a1 "g" a7 "user_id" a1 "u"
               aa "session_id" a1 "s" a7 "call_id" a1 "c" a4 "type" {byte}"#
        ));
        assert_wire(&ClientMessage::Vad(rtc("s", ty, b"")), &bytes);
    }
}

#[test]
fn rtc_data_longer_than_255_bytes_is_bin16() {
    let data = vec![b'x'; 300];
    let msg = ClientMessage::Rtc(rtc("s", MessageType::Sdp, &data));
    let mut want = fixture(
        r#"a3 "rtc" 86 a8 "group_id" a1 "g" a7 "user_id" a1 "u"
           aa "session_id" a1 "s" a7 "call_id" a1 "c" a4 "type" 02 a4 "data" c5 01 2c"#,
    );
    want.extend_from_slice(&data);
    assert_wire(&msg, &want);
}

#[test]
fn rtc_type_outside_the_catalogue_uses_the_smallest_int_encoding() {
    for (n, enc) in [
        (200, "cc c8"),
        (1000, "cd 03 e8"),
        (-1, "ff"),
        (-100, "d0 9c"),
        (0, "00"),
    ] {
        let bytes = fixture(&format!(
            r#"a3 "rtc" 85 a8 "group_id" a0 a7 "user_id" a0 aa "session_id" a1 "s"
               a7 "call_id" a0 a4 "type" {enc}"#
        ));
        let msg = ClientMessage::Rtc(RtcMessage {
            session_id: "s".into(),
            msg_type: MessageType::Other(n),
            ..RtcMessage::default()
        });
        assert_wire(&msg, &bytes);
    }
}

#[test]
fn join_as_the_plugin_sends_it_round_trips() {
    let bytes = fixture(
        r#"a4 "join" 86
           a6 "callID" ba "8uibt4rkgbfjbpjqpmmsm5k1oa"
           a6 "userID" ba "yyyoryaryidyxnyjbefoadeqbh"
           a9 "sessionID" ba "54s5756k93fm7yjdeiuauk6p7h"
           a9 "channelID" ba "9999999997899x99999999999h"
           aa "av1Support" c3
           ab "dcSignaling" c2"#,
    );
    let join = Join {
        call_id: "8uibt4rkgbfjbpjqpmmsm5k1oa".into(),
        user_id: "yyyoryaryidyxnyjbefoadeqbh".into(),
        session_id: "54s5756k93fm7yjdeiuauk6p7h".into(),
        channel_id: PropValue::Str("9999999997899x99999999999h".into()),
        av1_support: PropValue::Bool(true),
        dc_signaling: PropValue::Bool(false),
    };
    assert_wire(&ClientMessage::Join(join.clone()), &bytes);
    assert_eq!(join.validate(), Ok(()));
    assert!(join.av1_support.as_bool());
    assert!(!join.dc_signaling.as_bool());
}

#[test]
fn unknown_type_with_nil_data_is_reported_with_its_name() {
    let bytes = fixture(r#"a4 "test" c0"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::UnknownType("test".into()))
    );
}

// ---- decoding leniency (what Go accepts) ----------------------------------------------------

#[test]
fn rtc_keys_in_shuffled_order_decode_the_same() {
    let bytes = fixture(
        r#"a3 "rtc" 86 a4 "data" c4 07 7b 22 61 22 3a 31 7d a4 "type" 01 a7 "call_id" a1 "c"
           aa "session_id" a1 "s" a7 "user_id" a1 "u" a8 "group_id" a1 "g""#,
    );
    assert_eq!(
        ClientMessage::decode(&bytes).unwrap(),
        ClientMessage::Rtc(rtc("s", MessageType::Ice, br#"{"a":1}"#))
    );
}

#[test]
fn rtc_type_accepts_every_int_width() {
    for enc in [
        "02",
        "cc 02",
        "cd 00 02",
        "ce 00 00 00 02",
        "cf 00 00 00 00 00 00 00 02",
        "d0 02",
        "d1 00 02",
        "d2 00 00 00 02",
        "d3 00 00 00 00 00 00 00 02",
    ] {
        let bytes = fixture(&format!(
            r#"a3 "rtc" 82 aa "session_id" a1 "s" a4 "type" {enc}"#
        ));
        let msg = ClientMessage::decode(&bytes).unwrap();
        let ClientMessage::Rtc(m) = msg else {
            panic!("not rtc: {msg:?}")
        };
        assert_eq!(m.msg_type, MessageType::Sdp, "{enc}");
    }
}

#[test]
fn rtc_data_accepts_str_as_well_as_bin() {
    const JSON: &str = "7b 22 61 22 3a 31 7d"; // {"a":1}
    for enc in [
        format!("a7 {JSON}"),
        format!("d9 07 {JSON}"),
        format!("da 00 07 {JSON}"),
        format!("c5 00 07 {JSON}"),
        format!("c6 00 00 00 07 {JSON}"),
    ] {
        let bytes = fixture(&format!(
            r#"a3 "rtc" 83 aa "session_id" a1 "s" a4 "type" 01 a4 "data" {enc}"#
        ));
        let ClientMessage::Rtc(m) = ClientMessage::decode(&bytes).unwrap() else {
            panic!("not rtc")
        };
        assert_eq!(m.data, br#"{"a":1}"#, "{enc}");
    }
}

#[test]
fn str8_and_str16_encodings_decode() {
    let bytes = fixture(r#"d9 05 "leave" 81 da 00 09 "sessionID" db 00 00 00 03 "abc""#);
    assert_eq!(
        ClientMessage::decode(&bytes).unwrap(),
        ClientMessage::Leave {
            session_id: "abc".into()
        }
    );
}

#[test]
fn long_ids_are_encoded_as_str8_and_str16() {
    let id40 = "x".repeat(40);
    let mut want = fixture(r#"a5 "leave" 81 a9 "sessionID" d9 28"#);
    want.extend_from_slice(id40.as_bytes());
    assert_wire(&ClientMessage::Leave { session_id: id40 }, &want);

    let id300 = "y".repeat(300);
    let mut want = fixture(r#"a5 "close" 81 a9 "sessionID" da 01 2c"#);
    want.extend_from_slice(id300.as_bytes());
    assert_wire(&ClientMessage::Close { session_id: id300 }, &want);
}

#[test]
fn type_string_may_be_bin_as_go_accepts() {
    let bytes = fixture(r#"c4 05 "leave" 81 a9 "sessionID" a1 "s""#);
    assert_eq!(ClientMessage::decode(&bytes).unwrap().type_name(), "leave");
}

#[test]
fn rtc_unknown_keys_are_ignored_whatever_their_value() {
    let bytes = fixture(
        r#"a3 "rtc" 85 a5 "extra" 82 a1 "k" 92 01 02 a1 "m" c0
           aa "session_id" a1 "s" a3 "ext" d4 01 ff a4 "more" cb 00 00 00 00 00 00 00 00
           a4 "type" 06"#,
    );
    let ClientMessage::Rtc(m) = ClientMessage::decode(&bytes).unwrap() else {
        panic!("not rtc")
    };
    assert_eq!(m.session_id, "s");
    assert_eq!(m.msg_type, MessageType::ScreenOff);
}

#[test]
fn rtc_missing_keys_and_nils_default_to_zero_values() {
    let bytes = fixture(r#"a3 "rtc" 83 aa "session_id" a1 "s" a8 "group_id" c0 a4 "data" c0"#);
    let ClientMessage::Rtc(m) = ClientMessage::decode(&bytes).unwrap() else {
        panic!("not rtc")
    };
    assert_eq!(
        m,
        RtcMessage {
            session_id: "s".into(),
            ..RtcMessage::default()
        }
    );
    assert_eq!(m.validate(), Err(WireError::EmptyField("type")));
}

#[test]
fn rtc_with_nil_data_decodes_to_an_empty_message_that_fails_validation() {
    let m = ClientMessage::decode(&fixture(r#"a3 "rtc" c0"#)).unwrap();
    assert_eq!(m, ClientMessage::Rtc(RtcMessage::default()));
    let ClientMessage::Rtc(m) = m else {
        unreachable!()
    };
    assert_eq!(m.validate(), Err(WireError::EmptyField("session_id")));
}

#[test]
fn rtc_validate_accepts_a_routable_message() {
    assert_eq!(rtc("s", MessageType::Ice, b"{}").validate(), Ok(()));
    assert_eq!(rtc("s", MessageType::Other(42), b"").validate(), Ok(()));
}

#[test]
fn join_in_shuffled_order_with_missing_keys_decodes_to_empty_and_nil() {
    let bytes = fixture(r#"a4 "join" 82 ab "dcSignaling" c3 a6 "callID" a1 "c""#);
    let ClientMessage::Join(j) = ClientMessage::decode(&bytes).unwrap() else {
        panic!("not join")
    };
    assert_eq!(
        j,
        Join {
            call_id: "c".into(),
            dc_signaling: PropValue::Bool(true),
            ..Join::default()
        }
    );
    assert_eq!(j.validate(), Err(WireError::EmptyField("userID")));
    // An empty map decodes too; validation is the caller's job.
    let empty = ClientMessage::decode(&fixture(r#"a4 "join" 80"#)).unwrap();
    assert_eq!(empty, ClientMessage::Join(Join::default()));
}

#[test]
fn join_ids_that_are_not_strings_decode_as_empty() {
    let bytes =
        fixture(r#"a4 "join" 83 a6 "callID" 07 a6 "userID" c4 01 41 a9 "sessionID" 91 a1 "s""#);
    let ClientMessage::Join(j) = ClientMessage::decode(&bytes).unwrap() else {
        panic!("not join")
    };
    assert_eq!(j, Join::default());
    assert_eq!(j.validate(), Err(WireError::EmptyField("callID")));
}

#[test]
fn join_props_keep_what_arrived_and_serialize_it_as_json() {
    let bytes = fixture(
        r#"a4 "join" 83 a9 "channelID" d1 ff 85 aa "av1Support" ca 3f c0 00 00
           ab "dcSignaling" 81 a1 "x" c3"#,
    );
    let ClientMessage::Join(j) = ClientMessage::decode(&bytes).unwrap() else {
        panic!("not join")
    };
    assert_eq!(j.channel_id, PropValue::Int(-123));
    assert_eq!(j.av1_support, PropValue::Float(1.5));
    assert_eq!(j.dc_signaling, PropValue::Other);
    assert!(!j.av1_support.as_bool());
    assert!(!j.dc_signaling.as_bool());
    let json = serde_json::to_string(&[
        &j.channel_id,
        &j.av1_support,
        &j.dc_signaling,
        &PropValue::Nil,
        &PropValue::Bool(true),
        &PropValue::Str("ch".into()),
    ])
    .unwrap();
    assert_eq!(json, r#"[-123,1.5,null,null,true,"ch"]"#);
}

#[test]
fn join_props_encode_as_they_arrived() {
    let join = Join {
        call_id: "c".into(),
        user_id: "u".into(),
        session_id: "s".into(),
        channel_id: PropValue::Int(300),
        av1_support: PropValue::Nil,
        dc_signaling: PropValue::Float(0.5),
    };
    let bytes = fixture(
        r#"a4 "join" 86 a6 "callID" a1 "c" a6 "userID" a1 "u" a9 "sessionID" a1 "s"
           a9 "channelID" cd 01 2c aa "av1Support" c0
           ab "dcSignaling" cb 3f e0 00 00 00 00 00 00"#,
    );
    assert_wire(&ClientMessage::Join(join), &bytes);
}

#[test]
fn prop_value_as_bool_is_true_only_for_bool_true() {
    assert!(PropValue::Bool(true).as_bool());
    for v in [
        PropValue::Bool(false),
        PropValue::Nil,
        PropValue::Int(1),
        PropValue::Float(1.0),
        PropValue::Str("true".into()),
        PropValue::Other,
    ] {
        assert!(!v.as_bool(), "{v:?}");
    }
}

#[test]
fn prop_value_nan_equals_itself() {
    assert_eq!(PropValue::Float(f64::NAN), PropValue::Float(f64::NAN));
    assert_ne!(PropValue::Float(0.0), PropValue::Float(-0.0));
}

#[test]
fn message_type_round_trips_through_i64() {
    for n in -3..=12 {
        assert_eq!(MessageType::from_i64(n).as_i64(), n);
    }
    assert_eq!(MessageType::from_i64(1), MessageType::Ice);
    assert_eq!(MessageType::from_i64(10), MessageType::VideoOff);
    assert_eq!(MessageType::from_i64(11), MessageType::Other(11));
    assert_eq!(MessageType::default().as_i64(), 0);
}

#[test]
fn leave_ignores_extra_keys() {
    let bytes = fixture(r#"a5 "leave" 82 a1 "x" 01 a9 "sessionID" a1 "s""#);
    assert_eq!(
        ClientMessage::decode(&bytes).unwrap(),
        ClientMessage::Leave {
            session_id: "s".into()
        }
    );
}

// ---- rejections -------------------------------------------------------------------------------

#[test]
fn leave_without_session_id_is_a_missing_field() {
    for data in ["80", r#"81 a1 "x" a1 "y""#] {
        let bytes = fixture(&format!(r#"a5 "leave" {data}"#));
        assert_eq!(
            ClientMessage::decode(&bytes),
            Err(WireError::MissingField("sessionID"))
        );
    }
    let bytes = fixture(r#"a9 "reconnect" 80"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::MissingField("sessionID"))
    );
}

#[test]
fn hello_requires_both_ids() {
    let bytes = fixture(r#"a5 "hello" 81 a8 "clientID" a2 "c1""#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::MissingField("connID"))
    );
}

#[test]
fn leave_session_id_that_is_not_a_string_is_wrong_shape() {
    let bytes = fixture(r#"a5 "leave" 81 a9 "sessionID" 01"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::WrongShape {
            context: "sessionID",
            expected: "str",
            marker: 0x01
        })
    );
}

#[test]
fn map_typed_messages_reject_data_that_is_not_a_map() {
    for ty in ["join", "leave", "reconnect", "hello", "close"] {
        for (data, marker) in [("c0", 0xc0), ("90", 0x90), (r#"a1 "x""#, 0xa1)] {
            let mut bytes = fixture(&format!("{:02x}", 0xa0 + ty.len()));
            bytes.extend_from_slice(ty.as_bytes());
            bytes.extend_from_slice(&fixture(data));
            let err = ClientMessage::decode(&bytes).unwrap_err();
            assert!(
                matches!(err, WireError::WrongShape { expected: "map", marker: m, .. } if m == marker),
                "{ty} {data}: {err:?}"
            );
        }
    }
}

#[test]
fn rtc_field_of_the_wrong_kind_is_rejected() {
    let bytes = fixture(r#"a3 "rtc" 81 aa "session_id" 05"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::WrongShape {
            context: "rtc.session_id",
            expected: "str",
            marker: 0x05
        })
    );
    let bytes = fixture(r#"a3 "rtc" 81 a4 "type" a1 "1""#);
    assert!(matches!(
        ClientMessage::decode(&bytes),
        Err(WireError::WrongShape {
            context: "rtc.type",
            expected: "int",
            ..
        })
    ));
    let bytes = fixture(r#"a3 "rtc" 81 a4 "data" 92 01 02"#);
    assert!(matches!(
        ClientMessage::decode(&bytes),
        Err(WireError::WrongShape {
            context: "rtc.data",
            ..
        })
    ));
}

#[test]
fn rtc_type_beyond_i64_is_out_of_range() {
    let bytes = fixture(r#"a3 "rtc" 81 a4 "type" cf ff ff ff ff ff ff ff ff"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::IntOutOfRange {
            context: "rtc.type"
        })
    );
}

#[test]
fn session_id_that_is_not_utf8_is_rejected() {
    let bytes = fixture(r#"a5 "leave" 81 a9 "sessionID" a2 ff fe"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::InvalidUtf8 {
            context: "sessionID"
        })
    );
}

#[test]
fn trailing_bytes_after_the_data_are_rejected() {
    let mut bytes = fixture(RTC_ICE_SPEC);
    bytes.push(0xc0);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::TrailingBytes { count: 1 })
    );
    let bytes = fixture(r#"a4 "test" c0 c0 c0"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::TrailingBytes { count: 2 })
    );
}

#[test]
fn oversized_frame_is_rejected_before_parsing() {
    let mut bytes = fixture(r#"a4 "test" c6 00 10 00 00"#);
    bytes.resize(MAX_FRAME_LEN + 1, 0);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::Oversized {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
}

#[test]
fn frame_at_the_size_limit_is_accepted() {
    let data = vec![b'x'; MAX_FRAME_LEN - 200];
    let frame = ClientMessage::Rtc(rtc("s", MessageType::Sdp, &data)).to_bytes();
    assert!(frame.len() <= MAX_FRAME_LEN);
    assert!(ClientMessage::decode(&frame).is_ok());
}

#[test]
fn type_that_is_not_a_str_is_rejected() {
    assert_eq!(
        ClientMessage::decode(&fixture("01 c0")),
        Err(WireError::TypeNotStr { marker: 0x01 })
    );
    assert_eq!(
        ClientMessage::decode(&fixture(r#"81 a4 "type" a3 "rtc""#)),
        Err(WireError::TypeNotStr { marker: 0x81 })
    );
}

#[test]
fn empty_and_truncated_frames_are_rejected() {
    assert_eq!(
        ClientMessage::decode(&[]),
        Err(WireError::Truncated { context: "type" })
    );
    assert_eq!(
        ClientMessage::decode(&fixture(r#"a5 "lea""#)),
        Err(WireError::Truncated { context: "type" })
    );
    // Type without any data value (Go always writes at least nil).
    assert!(matches!(
        ClientMessage::decode(&fixture(r#"a5 "leave""#)),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        ClientMessage::decode(&fixture(r#"a4 "test""#)),
        Err(WireError::Truncated { context: "data" })
    ));
    // Every strict prefix of a valid frame fails.
    let full = fixture(RTC_ICE_SPEC);
    for cut in 0..full.len() {
        assert!(
            ClientMessage::decode(&full[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
}

#[test]
fn huge_length_prefixes_are_rejected_without_allocating() {
    let bytes = fixture(r#"a3 "rtc" df ff ff ff ff a4 "type" 01"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::LengthExceedsInput {
            context: "rtc.Message",
            declared: 0xffff_ffff,
            remaining: 6
        })
    );
    let bytes = fixture(r#"a4 "test" dd 7f ff ff ff c0"#);
    assert!(matches!(
        ClientMessage::decode(&bytes),
        Err(WireError::LengthExceedsInput {
            context: "data",
            ..
        })
    ));
    let bytes = fixture(r#"a3 "rtc" 81 a4 "data" c6 7f ff ff ff 00"#);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::Truncated {
            context: "rtc.data"
        })
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_rejected() {
    let mut bytes = fixture(r#"a4 "test""#);
    bytes.extend(std::iter::repeat_n(0x91, 40));
    bytes.push(0xc0);
    assert!(matches!(
        ClientMessage::decode(&bytes),
        Err(WireError::TooDeep {
            context: "data",
            max: 32
        })
    ));
    let mut bytes = fixture(r#"a3 "rtc" 81 a1 "x""#);
    bytes.extend(std::iter::repeat_n(0x91, 40));
    bytes.push(0xc0);
    assert!(matches!(
        ClientMessage::decode(&bytes),
        Err(WireError::TooDeep { .. })
    ));
}

#[test]
fn unknown_type_with_malformed_data_is_a_framing_error() {
    assert!(matches!(
        ClientMessage::decode(&fixture(r#"a4 "test" 92 cd 01"#)),
        Err(WireError::Truncated { context: "data" })
    ));
}

#[test]
fn unknown_type_name_is_cut_to_a_bounded_length() {
    let name = "z".repeat(300);
    let mut bytes = fixture("da 01 2c");
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0xc0);
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::UnknownType("z".repeat(MAX_UNKNOWN_TYPE_LEN)))
    );
    // Non-UTF-8 type names are reported lossily rather than rejected.
    let bytes = fixture("a2 ff 41 c0");
    assert_eq!(
        ClientMessage::decode(&bytes),
        Err(WireError::UnknownType("\u{fffd}A".into()))
    );
}

#[test]
fn error_labels_are_stable_metric_values() {
    assert_eq!(WireError::UnknownType("x".into()).label(), "unknown_type");
    assert_eq!(
        WireError::TrailingBytes { count: 1 }.label(),
        "trailing_bytes"
    );
    assert_eq!(
        WireError::MissingField("sessionID").to_string(),
        r#"missing field "sessionID""#
    );
}
