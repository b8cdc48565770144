//! RFC 7983 first-byte demultiplexing and the STUN USERNAME peek used to find the session
//! (and worker) a first packet belongs to, plus the Binding Request/Response pair of the
//! start-up public-address discovery (spec §6.3).
//!
//! Must not: allocate on the receive path, panic on any input, or read past a length field
//! it has not checked against the datagram.

/// What a datagram on the shared RTC port is (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
const ATTR_FINGERPRINT: u16 = 0x8028;
/// RFC 8489 §14.3: USERNAME is at most 513 bytes.
const MAX_USERNAME_LEN: usize = 513;

/// Classifies a datagram by its first bytes.
pub fn classify(b: &[u8]) -> PacketKind {
    match b.first() {
        // RFC 7983 §7: 0..=3 STUN, 20..=63 DTLS, 128..=191 RTP/RTCP; 16..=19 (ZRTP) and
        // 64..=79 (TURN channel data) are not used on rtcd's port.
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => match b.get(1) {
            // RFC 5761 §4: RTCP packet types 192..=223 (marker bit included in the byte).
            Some(pt) if (192..=223).contains(pt) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// The attributes of a STUN message whose header and length were already checked, as
/// `(type, value)`. Stops at the first attribute that overruns the message.
struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, tail) = self.rest.split_first_chunk::<4>()?;
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(value) = tail.get(..len) else {
            self.rest = &[];
            return None;
        };
        // RFC 8489 §14: values are padded to 4 bytes; a missing final padding just ends the
        // walk (the caller has already checked the message length).
        let padded = len.div_ceil(4) * 4;
        self.rest = tail.get(padded..).unwrap_or(&[]);
        Some((typ, value))
    }
}

/// For a STUN Binding Request, our (local) ufrag: the part of USERNAME before `:`
/// (RFC 8445 §7.2.2: USERNAME = "<receiver ufrag>:<sender ufrag>"), as pion's UDP mux
/// reads it. `None` for anything else: other message types, a bad magic cookie, a length
/// field that disagrees with the datagram, no USERNAME before MESSAGE-INTEGRITY, or a
/// USERNAME that is empty before `:`, longer than 513 bytes or not UTF-8.
pub fn binding_request_local_ufrag(b: &[u8]) -> Option<&str> {
    let (header, body) = b.split_first_chunk::<HEADER_LEN>()?;
    if u16::from_be_bytes([header[0], header[1]]) != BINDING_REQUEST || header[4..8] != MAGIC_COOKIE
    {
        return None;
    }
    // RFC 8489 §6: the length counts the attributes only, is a multiple of 4, and a datagram
    // (or an RFC 4571 frame) carries exactly one message.
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if len % 4 != 0 || len != body.len() {
        return None;
    }
    for (typ, value) in (Attributes { rest: body }) {
        match typ {
            ATTR_USERNAME => {
                if value.len() > MAX_USERNAME_LEN {
                    return None;
                }
                let username = std::str::from_utf8(value).ok()?;
                let local = username.split(':').next().unwrap_or_default();
                return (!local.is_empty()).then_some(local);
            }
            // RFC 8489 §14.5: attributes after the integrity check are not authenticated.
            ATTR_MESSAGE_INTEGRITY | ATTR_MESSAGE_INTEGRITY_SHA256 | ATTR_FINGERPRINT => {
                return None
            }
            _ => {}
        }
    }
    None
}

const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const BINDING_SUCCESS: u16 = 0x0101;

/// A minimal Binding Request (RFC 8489 §6.1) for public-address discovery.
pub fn binding_request(transaction_id: [u8; 12]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(&transaction_id);
    m
}

/// The reflexive address in a Binding Success Response to `transaction_id`:
/// XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from old servers.
pub fn binding_response_address(
    b: &[u8],
    transaction_id: &[u8; 12],
) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let (header, body) = b.split_first_chunk::<HEADER_LEN>()?;
    if header[4..8] != MAGIC_COOKIE
        || u16::from_be_bytes([header[0], header[1]]) != BINDING_SUCCESS
        || header[8..20] != transaction_id[..]
    {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let body = body.get(..len).unwrap_or(body);
    let mut plain = None;
    for (typ, v) in (Attributes { rest: body }) {
        if (typ != ATTR_XOR_MAPPED_ADDRESS && typ != ATTR_MAPPED_ADDRESS) || v.len() < 8 {
            continue;
        }
        let xor = typ == ATTR_XOR_MAPPED_ADDRESS;
        let mut port = u16::from_be_bytes([v[2], v[3]]);
        // RFC 8489 §14.2: the port is XORed with the cookie's top half, the address with the
        // cookie (IPv4) or the cookie and the transaction ID (IPv6).
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&MAGIC_COOKIE);
        key[4..].copy_from_slice(transaction_id);
        if xor {
            port ^= 0x2112;
        }
        let ip: IpAddr = match (v[1], v.get(4..20)) {
            (0x01, _) => {
                let mut o = [v[4], v[5], v[6], v[7]];
                if xor {
                    o.iter_mut().zip(key).for_each(|(x, k)| *x ^= k);
                }
                Ipv4Addr::from(o).into()
            }
            (0x02, Some(raw)) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(raw);
                if xor {
                    o.iter_mut().zip(key).for_each(|(x, k)| *x ^= k);
                }
                Ipv6Addr::from(o).into()
            }
            _ => continue,
        };
        let addr = SocketAddr::new(ip, port);
        if xor {
            return Some(addr);
        }
        plain = Some(addr);
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn xor_mapped_address_is_decoded_from_a_binding_response() {
        let tid = [7u8; 12];
        let req = binding_request(tid);
        assert_eq!(req.len(), 20);
        assert_eq!(classify(&req), PacketKind::Stun);
        // 203.0.113.5:40000 XOR-encoded.
        let port = 40000u16 ^ 0x2112;
        let ip = [203 ^ 0x21, 0x12, 113 ^ 0xa4, 5 ^ 0x42];
        let mut resp = vec![0x01, 0x01, 0x00, 12];
        resp.extend_from_slice(&MAGIC_COOKIE);
        resp.extend_from_slice(&tid);
        resp.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        resp.extend_from_slice(&port.to_be_bytes());
        resp.extend_from_slice(&ip);
        assert_eq!(
            binding_response_address(&resp, &tid),
            Some("203.0.113.5:40000".parse().unwrap())
        );
        assert_eq!(
            binding_response_address(&resp, &[8u8; 12]),
            None,
            "other transaction"
        );
        for cut in 0..resp.len() {
            assert_eq!(binding_response_address(&resp[..cut], &tid), None);
        }
    }

    /// RFC 5769 §2.1 "Sample Request" (USERNAME "evtj:h6vY", password
    /// "VOkJxbRl1RmTxUk/WvJxBt"): SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    fn rfc5769_sample_request() -> Vec<u8> {
        fixture(
            "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff
             80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf",
        )
    }

    /// A Binding Request in the order Chrome sends its attributes: USERNAME
    /// (`<our ufrag>:<its ufrag>`, 21 bytes + 3 padding), GOOG-NETWORK-INFO, ICE-CONTROLLING,
    /// USE-CANDIDATE, PRIORITY, MESSAGE-INTEGRITY, FINGERPRINT.
    const CHROME_REQUEST: &str = r#"
        00 01 00 5c 21 12 a4 42 4b 2f 61 73 38 78 5a 51 70 31 6d 44
        00 06 00 15 "kqTnWzYhbFcXeRsA:8Kx+" 00 00 00
        c0 57 00 04 00 01 00 0a
        80 2a 00 08 1c 9e 54 2b 77 a0 11 f3
        00 25 00 00
        00 24 00 04 6e 7f 1e ff
        00 08 00 14 3d 61 0e 9a 5c 42 d7 80 11 c4 2a 90 fe 7b 02 68 cc 1d 35 a9
        80 28 00 04 5b 0c 94 e7"#;

    #[test]
    fn rfc5769_sample_request_fixture_is_byte_exact() {
        use hmac::{Hmac, Mac};
        // The transcription is checked with the vector's own integrity and fingerprint.
        let m = rfc5769_sample_request();
        assert_eq!(m.len(), 20 + 0x58);
        let mi_at = m.len() - 8 - 24;
        let mut signed = m[..mi_at].to_vec();
        signed[2..4].copy_from_slice(&((mi_at - 20 + 24) as u16).to_be_bytes());
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"VOkJxbRl1RmTxUk/WvJxBt").unwrap();
        mac.update(&signed);
        assert_eq!(mac.finalize().into_bytes()[..], m[mi_at + 4..mi_at + 24]);
        let crc = crc32(&m[..m.len() - 8]) ^ 0x5354_554e;
        assert_eq!(crc.to_be_bytes()[..], m[m.len() - 4..]);
    }

    /// Bitwise CRC-32 (ISO-HDLC), enough to check a test vector.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn binding_request_yields_the_ufrag_before_the_colon() {
        let m = rfc5769_sample_request();
        assert_eq!(classify(&m), PacketKind::Stun);
        assert_eq!(binding_request_local_ufrag(&m), Some("evtj"));
        let chrome = fixture(CHROME_REQUEST);
        assert_eq!(chrome.len(), 20 + 0x5c);
        assert_eq!(classify(&chrome), PacketKind::Stun);
        assert_eq!(
            binding_request_local_ufrag(&chrome),
            Some("kqTnWzYhbFcXeRsA")
        );
    }

    /// `attrs` as (type, value), padded, behind a Binding Request header.
    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[3; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn username_without_a_colon_is_taken_whole_and_an_empty_one_is_refused() {
        assert_eq!(
            binding_request_local_ufrag(&request(&[(ATTR_USERNAME, b"abc")])),
            Some("abc")
        );
        for refused in [&b""[..], b":remote", &[0xff, 0xfe, b':', b'x']] {
            assert_eq!(
                binding_request_local_ufrag(&request(&[(ATTR_USERNAME, refused)])),
                None,
                "{refused:?}"
            );
        }
        let long = vec![b'a'; MAX_USERNAME_LEN + 1];
        assert_eq!(
            binding_request_local_ufrag(&request(&[(ATTR_USERNAME, &long)])),
            None
        );
    }

    #[test]
    fn username_after_message_integrity_is_ignored() {
        let m = request(&[(ATTR_MESSAGE_INTEGRITY, &[0; 20]), (ATTR_USERNAME, b"a:b")]);
        assert_eq!(binding_request_local_ufrag(&m), None);
        let m = request(&[(ATTR_FINGERPRINT, &[0; 4]), (ATTR_USERNAME, b"a:b")]);
        assert_eq!(binding_request_local_ufrag(&m), None);
        let m = request(&[(0x8022, b"soft"), (ATTR_USERNAME, b"a:b")]);
        assert_eq!(binding_request_local_ufrag(&m), Some("a"));
    }

    #[test]
    fn responses_truncations_and_inconsistent_lengths_yield_nothing() {
        let m = fixture(CHROME_REQUEST);
        let mut resp = m.clone();
        resp[0] = 0x01;
        resp[1] = 0x01; // Binding Success Response
        assert_eq!(binding_request_local_ufrag(&resp), None);
        let mut indication = m.clone();
        indication[1] = 0x11; // Binding Indication
        assert_eq!(binding_request_local_ufrag(&indication), None);
        let mut cookie = m.clone();
        cookie[4] = 0;
        assert_eq!(binding_request_local_ufrag(&cookie), None);
        for cut in 0..m.len() {
            assert_eq!(binding_request_local_ufrag(&m[..cut]), None, "cut {cut}");
        }
        let mut trailing = m.clone();
        trailing.extend_from_slice(&[0; 4]);
        assert_eq!(binding_request_local_ufrag(&trailing), None);
        for len in [0xffff, 0x5b, 0x58, 0] {
            let mut bad = m.clone();
            bad[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            assert_eq!(binding_request_local_ufrag(&bad), None, "length {len:#x}");
        }
        // USERNAME's own length running past the message.
        let mut overrun = m.clone();
        overrun[22..24].copy_from_slice(&0x0100u16.to_be_bytes());
        assert_eq!(binding_request_local_ufrag(&overrun), None);
    }

    #[test]
    fn first_byte_demux_follows_rfc_7983() {
        assert_eq!(classify(&[0x00, 0x01]), PacketKind::Stun);
        assert_eq!(classify(&[0x03]), PacketKind::Stun);
        assert_eq!(classify(&[0x16, 0xfe, 0xfd]), PacketKind::Dtls);
        assert_eq!(classify(&[20]), PacketKind::Dtls);
        assert_eq!(classify(&[63]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 111]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 111]), PacketKind::Rtp, "marker set");
        assert_eq!(classify(&[0x80, 0xe0 | 96]), PacketKind::Rtp);
        assert_eq!(classify(&[0x81, 200]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 192]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x8f, 223]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 224]), PacketKind::Rtp);
        assert_eq!(classify(&[0xbf, 191]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80]), PacketKind::Unknown);
        assert_eq!(classify(&[]), PacketKind::Unknown);
        assert_eq!(classify(&[16]), PacketKind::Unknown, "ZRTP");
        assert_eq!(classify(&[64]), PacketKind::Unknown, "TURN channel");
        assert_eq!(classify(&[0xc0, 200]), PacketKind::Unknown);
        assert_eq!(classify(&[0xff, 0]), PacketKind::Unknown);
    }
}
