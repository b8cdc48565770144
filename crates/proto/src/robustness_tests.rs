//! Deterministic mutation fuzzing of every decoder, run with the ordinary test suite (the
//! cargo-fuzz targets in `fuzz/` do the same with coverage guidance). Seeds are golden frames;
//! mutations are truncations, bit flips, byte substitutions with "interesting" msgpack
//! markers, length-prefix blow-ups, splices and pure noise. Asserts: no panic, decoded sizes
//! bounded by the input, and decode → encode → decode is a fixed point.
#![allow(clippy::unwrap_used)]

use crate::dc::{decode_dc, encode_dc, inflate_sdp, DcInbound, DcMessage};
use crate::test_support::{fixture, hex};
use crate::ws::{ClientMessage, Join, MessageType, PropValue, RtcMessage};

/// xorshift64*: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = &[
    0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc9, 0xca, 0xcb, 0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
    0xe0, 0xff,
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let len = b.len();
        match rng.below(8) {
            0 => b.truncate(rng.below(len + 1)),
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                b[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 if len > 0 => {
                // Blow up a length prefix: a 32-bit container/str header with a huge count.
                let i = rng.below(len);
                let marker = [0xdb, 0xc6, 0xdd, 0xdf][rng.below(4)];
                let n = [0xffff_ffffu32, 0x7fff_ffff, 0x0010_0000, len as u32][rng.below(4)];
                let mut blown = vec![marker];
                blown.extend_from_slice(&n.to_be_bytes());
                b.splice(i..i, blown);
            }
            4 => {
                let i = rng.below(len + 1);
                let noise: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                b.splice(i..i, noise);
            }
            5 if len > 0 => {
                // Splice in a chunk of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let start = rng.below(other.len());
                let end = start + rng.below(other.len() - start + 1);
                let i = rng.below(len);
                b.splice(i..i, other[start..end].iter().copied());
            }
            6 => b = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            _ => {
                // Deep nesting.
                let i = rng.below(len + 1);
                let depth = rng.below(80);
                b.splice(i..i, std::iter::repeat_n(0x91, depth));
            }
        }
    }
    b
}

fn has_lossy_props(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::Join(j)
        if [&j.channel_id, &j.av1_support, &j.dc_signaling].contains(&&PropValue::Other))
}

/// The checks the cargo-fuzz `client_message` target also makes.
fn check_client_message(frame: &[u8]) -> bool {
    let Ok(m1) = ClientMessage::decode(frame) else {
        return false;
    };
    if let ClientMessage::Rtc(m) | ClientMessage::Vad(m) = &m1 {
        assert!(m.data.len() <= frame.len());
    }
    let b1 = m1.to_bytes();
    let m2 = ClientMessage::decode(&b1)
        .unwrap_or_else(|e| panic!("re-encoding of {} fails: {e}: {}", hex(frame), hex(&b1)));
    if !has_lossy_props(&m1) {
        assert_eq!(m1, m2, "{}", hex(frame));
    }
    assert_eq!(
        hex(&m2.to_bytes()),
        hex(&b1),
        "not a fixed point: {}",
        hex(frame)
    );
    true
}

/// The checks the cargo-fuzz `dc_message` target also makes.
fn check_dc(bytes: &[u8]) -> bool {
    let Ok(DcInbound::Message(m1)) = decode_dc(bytes) else {
        return false;
    };
    if let DcMessage::Sdp(z) = &m1 {
        assert!(z.len() <= bytes.len());
    }
    let mut b1 = Vec::new();
    encode_dc(&m1, &mut b1);
    let Ok(DcInbound::Message(m2)) = decode_dc(&b1) else {
        panic!("re-encoding of {} fails: {}", hex(bytes), hex(&b1));
    };
    // Debug output compares floats by value and shows NaN, so NaN payloads compare equal.
    assert_eq!(format!("{m1:?}"), format!("{m2:?}"), "{}", hex(bytes));
    assert_eq!(hex(&m2.to_bytes()), hex(&b1));
    true
}

fn check_inflate(bytes: &[u8]) -> bool {
    const LIMIT: usize = 4096;
    match inflate_sdp(bytes, LIMIT) {
        Ok(out) => {
            assert!(out.len() <= LIMIT);
            true
        }
        Err(_) => false,
    }
}

fn ws_seeds() -> Vec<Vec<u8>> {
    let rtc = RtcMessage {
        group_id: "g".into(),
        user_id: "u".into(),
        session_id: "yyyoryaryidyxnyjbefoadeqbh".into(),
        call_id: "c".into(),
        msg_type: MessageType::Ice,
        data: br#"{"candidate":"candidate:1 1 udp 1 192.0.2.1 8443 typ host"}"#.to_vec(),
    };
    let mut seeds: Vec<Vec<u8>> = [
        ClientMessage::Hello {
            client_id: "c1".into(),
            conn_id: "k1".into(),
        },
        ClientMessage::Close {
            session_id: "abc".into(),
        },
        ClientMessage::Leave {
            session_id: "abc".into(),
        },
        ClientMessage::Reconnect {
            session_id: "abc".into(),
        },
        ClientMessage::Join(Join {
            call_id: "c".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            channel_id: PropValue::Str("ch".into()),
            av1_support: PropValue::Bool(true),
            dc_signaling: PropValue::Float(0.5),
        }),
        ClientMessage::Rtc(rtc.clone()),
        ClientMessage::Vad(RtcMessage {
            msg_type: MessageType::VoiceOn,
            data: Vec::new(),
            ..rtc
        }),
    ]
    .iter()
    .map(ClientMessage::to_bytes)
    .collect();
    seeds.push(fixture(r#"a4 "test" c0"#));
    seeds.push(fixture(
        r#"a4 "join" 82 a9 "channelID" d1 ff 85 aa "av1Support" 92 c3 80"#,
    ));
    seeds.push(fixture(
        r#"a3 "rtc" 82 a4 "type" cd 00 02 a4 "data" a2 "{}""#,
    ));
    seeds
}

fn dc_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = vec![
        fixture("01"),
        fixture("07"),
        fixture("08"),
        fixture("cc 07 c3"),
        fixture("04 ca 3e 80 00 00"),
        fixture("05 cb 3f e0 00 00 00 00 00 00"),
        fixture(r#"cc 09 81 a1 "1" 82 a4 "type" a5 "voice" a9 "sender_id" a1 "s""#),
        fixture(r#"09 81 a1 "3" 83 a4 "type" a5 "video" a9 "sender_id" a0 a9 "mime_type" a1 "v""#),
        b"ping".to_vec(),
    ];
    seeds.push(
        DcMessage::Sdp(crate::dc::compress_sdp(br#"{"type":"offer","sdp":"v=0"}"#)).to_bytes(),
    );
    seeds
}

#[test]
fn ws_decoder_survives_mutated_frames() {
    let seeds = ws_seeds();
    for s in &seeds {
        assert!(check_client_message(s) || s.starts_with(b"\xa4test"));
    }
    let mut rng = Rng(0x5eed_0001);
    let accepted = (0..6000)
        .filter(|_| check_client_message(&mutate(&mut rng, &seeds)))
        .count();
    // The mutations must also reach the success path, or the round-trip checks test nothing.
    assert!(accepted > 150, "only {accepted} mutated frames decoded");
}

#[test]
fn dc_decoder_survives_mutated_messages() {
    let seeds = dc_seeds();
    for s in &seeds {
        assert!(check_dc(s) || s == b"ping");
    }
    let mut rng = Rng(0x5eed_0002);
    let accepted = (0..6000)
        .filter(|_| check_dc(&mutate(&mut rng, &seeds)))
        .count();
    assert!(accepted > 1000, "only {accepted} mutated messages decoded");
}

#[test]
fn sdp_inflater_survives_mutated_streams() {
    let seeds = vec![
        crate::dc::compress_sdp(br#"{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0"}"#),
        crate::dc::compress_sdp(&[0u8; 10_000]),
        crate::dc::compress_sdp(b""),
    ];
    let mut rng = Rng(0x5eed_0003);
    let accepted = (0..3000)
        .filter(|_| check_inflate(&mutate(&mut rng, &seeds)))
        .count();
    assert!(accepted > 20, "only {accepted} mutated streams inflated");
}

#[test]
fn every_single_byte_substitution_of_the_golden_frames_is_handled() {
    for seed in ws_seeds() {
        for i in 0..seed.len() {
            for &m in INTERESTING {
                let mut b = seed.clone();
                b[i] = m;
                check_client_message(&b);
            }
        }
    }
    for seed in dc_seeds() {
        for i in 0..seed.len() {
            for &m in INTERESTING {
                let mut b = seed.clone();
                b[i] = m;
                check_dc(&b);
            }
        }
    }
}
