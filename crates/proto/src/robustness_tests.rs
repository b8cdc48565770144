//! Deterministic mutation fuzzing of every decoder, run with the ordinary test suite (the
//! cargo-fuzz targets in `fuzz/` do the same with coverage guidance). Seeds are golden frames;
//! mutations are truncations, bit flips, byte substitutions with "interesting" msgpack
//! markers (or JSON tokens), length-prefix blow-ups, splices and pure noise. Asserts: no
//! panic, decoded sizes bounded by the input, and decode → encode → decode is a fixed point.
//! The STUN peek, the RFC 4571 decoder, the signaling JSON parsers and the `ice_host_override`
//! parser get the same treatment with their own properties (see `check_stun`,
//! `check_rfc4571`, `check_signaling`, `check_host_override`).
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
    mutate_with(rng, seeds, INTERESTING)
}

/// Bytes worth substituting into JSON.
const JSON_INTERESTING: &[u8] = b"{}[]\":,\\/0123456789-+.eEtrufalsn \t\r\n\x00\x7f\xc3\xa9\xff";

fn mutate_with(rng: &mut Rng, seeds: &[Vec<u8>], interesting: &[u8]) -> Vec<u8> {
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
                b[i] = interesting[rng.below(interesting.len())];
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

/// The checks the cargo-fuzz `stun_peek` target also makes.
fn check_stun(b: &[u8]) -> bool {
    use crate::stun::{binding_request_local_ufrag, classify, PacketKind};
    let kind = classify(b);
    let Some(ufrag) = binding_request_local_ufrag(b) else {
        return false;
    };
    assert_eq!(kind, PacketKind::Stun, "{}", hex(b));
    assert!(!ufrag.is_empty() && ufrag.len() <= 513 && !ufrag.contains(':'));
    // Borrowed from the datagram itself, inside the attributes.
    let start = ufrag.as_ptr() as usize - b.as_ptr() as usize;
    assert!(start >= 24 && start + ufrag.len() <= b.len());
    true
}

fn stun_seeds() -> Vec<Vec<u8>> {
    let request = |attrs: &[(u16, &[u8])]| {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = fixture("00 01");
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&fixture("21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"));
        m.extend_from_slice(&body);
        m
    };
    vec![
        request(&[
            (0x0006, b"kqTnWzYhbFcXeRsA:8Kx+"),
            (0xc057, &[0, 1, 0, 10]),
            (0x802a, &[1; 8]),
            (0x0025, &[]),
            (0x0024, &[0x6e, 0x7f, 0x1e, 0xff]),
            (0x0008, &[7; 20]),
            (0x8028, &[9; 4]),
        ]),
        request(&[
            (0x8022, b"STUN test client"),
            (0x0024, &[0x6e, 0, 1, 0xff]),
            (0x0006, b"evtj:h6vY"),
            (0x0008, &[1; 20]),
        ]),
        request(&[(0x0006, b"a")]),
        fixture("80 60 00 01 00 00 00 00 de ad be ef"),
        fixture("16 fe fd 00 00 00 00 00 00 00 00"),
    ]
}

#[test]
fn stun_peek_survives_mutated_datagrams() {
    let seeds = stun_seeds();
    assert!(check_stun(&seeds[0]) && check_stun(&seeds[1]) && check_stun(&seeds[2]));
    let mut rng = Rng(0x5eed_0004);
    let accepted = (0..20_000)
        .filter(|_| check_stun(&mutate(&mut rng, &seeds)))
        .count();
    assert!(accepted > 500, "only {accepted} mutated requests peeked");
    for seed in &seeds {
        for i in 0..seed.len() {
            for m in [0x00, 0x01, 0x06, 0x3a, 0x80, 0xff] {
                let mut b = seed.clone();
                b[i] = m;
                check_stun(&b);
            }
        }
    }
}

/// Frames of `stream` read in one go, without limits: the reference for the decoder.
fn rfc4571_reference(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while let Some((head, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*head));
        let Some(frame) = tail.get(..len) else { break };
        if len > 0 {
            out.push(frame.to_vec());
        }
        rest = &tail[len..];
    }
    out
}

/// The checks the cargo-fuzz `tcp_framing` target also makes: `stream` pushed in the given
/// chunks gives the reference frames, unless the buffer limit refused a push, in which case
/// what came out before is a prefix of them.
fn check_rfc4571(stream: &[u8], cuts: &[usize], max_buffer: usize) -> bool {
    use crate::framing::Rfc4571Decoder;
    let mut d = Rfc4571Decoder::new(max_buffer);
    let mut got = Vec::new();
    let mut at = 0;
    let mut refused = false;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(at, stream.len());
        if d.push(&stream[at..cut]).is_err() {
            refused = true;
            break;
        }
        at = cut;
        while let Some(f) = d.next_frame() {
            assert!(!f.is_empty() && f.len() <= usize::from(u16::MAX));
            got.push(f);
        }
        assert!(d.buffered() <= max_buffer);
    }
    let want = rfc4571_reference(stream);
    if refused {
        assert!(want.starts_with(&got), "{}", hex(stream));
    } else {
        assert_eq!(got, want, "{}", hex(stream));
    }
    !refused && !got.is_empty()
}

#[test]
fn rfc4571_decoder_matches_a_one_shot_reference_on_mutated_streams() {
    let mut framed = Vec::new();
    for p in [&b"\x00\x01 stun"[..], &[0x16; 40], b"", &[0x80; 300], b"x"] {
        crate::framing::encode_frame(p, &mut framed).unwrap();
    }
    let seeds = vec![framed, fixture("00 00 00 00 00 02 ab cd ff ff 00")];
    let mut rng = Rng(0x5eed_0005);
    let mut accepted = 0;
    for _ in 0..4000 {
        let stream = mutate(&mut rng, &seeds);
        let cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(stream.len() + 1))
            .collect();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let max = [16, 64, 400, 1 << 17][rng.below(4)];
        accepted += usize::from(check_rfc4571(&stream, &cuts, max));
    }
    assert!(accepted > 500, "only {accepted} mutated streams framed");
}

/// The checks the cargo-fuzz `signaling_json` target also makes: no panic, and whatever
/// parses survives our own encoders.
fn check_signaling(data: &[u8]) -> bool {
    use crate::signaling::{
        candidate_json, parse_candidate, parse_screen_on, parse_sdp, parse_video_on, sdp_json,
    };
    let mut ok = false;
    if let Ok(m) = parse_sdp(data) {
        assert!(m.sdp.len() <= data.len());
        let back = parse_sdp(&sdp_json(m.kind, &m.sdp)).unwrap();
        assert_eq!(back, m);
        ok = true;
    }
    if let Ok(Some(c)) = parse_candidate(data) {
        let out = candidate_json(
            &c.candidate,
            c.sdp_mid.as_deref().unwrap_or("0"),
            c.sdp_mline_index.unwrap_or(0),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "candidate");
        let line = v["candidate"]["candidate"].as_str().unwrap();
        let sent = c.candidate.strip_prefix("a=").unwrap_or(&c.candidate);
        assert!(line.starts_with("candidate:") && line.ends_with(sent));
        ok = true;
    }
    for id in [parse_screen_on(data), parse_video_on(data)]
        .into_iter()
        .flatten()
    {
        assert!(!id.is_empty() && id.len() <= data.len());
        ok = true;
    }
    ok
}

fn signaling_seeds() -> Vec<Vec<u8>> {
    [
        &br#"{"type":"offer","sdp":"v=0\r\no=- 4 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}"#[..],
        br#"{"type":"answer","sdp":"v=0\r\n\u003c\u00e9\ud83d\ude00"}"#,
        br#"{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"x+Yz"}"#,
        br#"{"candidate":"","sdpMid":null,"sdpMLineIndex":null}"#,
        br#"{"screenStreamID":"{a1b2c3d4-0000-4000-8000-000000000000}"}"#,
        br#"{"videoStreamID":"cam"}"#,
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

#[test]
fn signaling_parsers_survive_mutated_json() {
    let seeds = signaling_seeds();
    for s in &seeds[..3] {
        assert!(check_signaling(s));
    }
    let mut rng = Rng(0x5eed_0006);
    let accepted = (0..8000)
        .filter(|_| check_signaling(&mutate_with(&mut rng, &seeds, JSON_INTERESTING)))
        .count();
    assert!(accepted > 150, "only {accepted} mutated payloads parsed");
    for seed in &seeds {
        for i in 0..seed.len() {
            for &m in JSON_INTERESTING {
                let mut b = seed.clone();
                b[i] = m;
                check_signaling(&b);
            }
        }
    }
}

/// The checks the cargo-fuzz `host_override` target also makes. Returns whether the value
/// parsed to an override the candidates were computed with.
fn check_host_override(data: &[u8]) -> bool {
    use crate::host::{
        external_addresses, host_candidates, parse_host_override, HostOverride, HostOverrideSpec,
    };
    use std::net::IpAddr;
    let text = String::from_utf8_lossy(data);
    let spec = match parse_host_override(&text) {
        Ok(spec) => spec,
        Err(e) => {
            // The entry is quoted cut to 64 characters, ≤ 10 bytes each once Debug-escaped.
            assert!(e.to_string().len() <= 800, "{e}");
            return false;
        }
    };
    let host_override = match spec {
        HostOverrideSpec::None => {
            assert!(text.trim().is_empty());
            HostOverride::None
        }
        HostOverrideSpec::IpOrHostname(h) => {
            assert!(!h.is_empty() && h == text.trim() && !h.contains('/'));
            match h.parse::<IpAddr>() {
                Ok(ip) => HostOverride::Ip(ip),
                Err(_) => return false,
            }
        }
        HostOverrideSpec::Mapping(pairs) => {
            assert_eq!(pairs.len(), text.matches(',').count() + 1, "{text:?}");
            for (i, (ext, int)) in pairs.iter().enumerate() {
                assert_eq!(ext.is_ipv4(), int.is_ipv4());
                assert!(pairs[..i].iter().all(|(_, other)| other != int));
            }
            let rendered: Vec<String> = pairs.iter().map(|(e, i)| format!("{e}/{i}")).collect();
            assert_eq!(
                parse_host_override(&rendered.join(",")),
                Ok(HostOverrideSpec::Mapping(pairs.clone()))
            );
            HostOverride::Mapping(pairs)
        }
    };
    let locals: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "192.168.1.9", "2001:db8::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let stun = [(locals[1], locals[2])];
    let external = external_addresses(&host_override, &stun);
    for n in 1..=locals.len() {
        let got = host_candidates(&locals[..n], &host_override, &stun, Some(8443));
        assert_eq!(got.len(), n);
        for (c, local) in got.iter().zip(&locals) {
            assert_eq!(c.local, *local);
            assert_eq!(c.advertised.is_ipv4(), local.is_ipv4());
            assert_eq!(c.port_override.is_some(), external.contains(&c.advertised));
        }
    }
    true
}

/// Bytes worth substituting into an `ice_host_override` value.
const HOST_INTERESTING: &[u8] = b"/,.: \t0123456789abcdefx[]%\x00\xc3\xa9\xff";

fn host_override_seeds() -> Vec<Vec<u8>> {
    [
        &b"1.1.1.1/10.0.0.5, 2001:db8::ff/2001:db8::1"[..],
        b"203.0.113.7/10.0.0.5,127.0.0.1/127.0.0.1,8.8.8.8/192.168.1.9",
        b" 203.0.113.7 ",
        b"2001:db8::ff",
        b"rtc.example.com",
        b"::ffff:1.2.3.4/::ffff:10.0.0.5",
        b"",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

#[test]
fn host_override_parser_survives_mutated_settings() {
    let seeds = host_override_seeds();
    for s in &seeds[..4] {
        assert!(check_host_override(s), "{:?}", String::from_utf8_lossy(s));
    }
    let mut rng = Rng(0x5eed_0007);
    let accepted = (0..8000)
        .filter(|_| check_host_override(&mutate_with(&mut rng, &seeds, HOST_INTERESTING)))
        .count();
    assert!(accepted > 250, "only {accepted} mutated settings parsed");
    for seed in &seeds {
        for i in 0..seed.len() {
            for &m in HOST_INTERESTING {
                let mut b = seed.clone();
                b[i] = m;
                check_host_override(&b);
            }
        }
    }
    // Over the length limit: refused before any parsing.
    let long = "1.1.1.1/10.0.0.5,".repeat(crate::host::MAX_HOST_OVERRIDE_LEN / 17 + 1);
    assert!(!check_host_override(long.as_bytes()));
}
