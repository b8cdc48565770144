//! RFC 7983 first-byte demultiplexing and the STUN USERNAME peek used to find the session
//! (and worker) a first packet belongs to. Never allocates, never panics.

/// What a datagram on the shared RTC port is (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;
const BINDING_REQUEST: u16 = 0x0001;

/// Classifies a datagram by its first bytes.
pub fn classify(b: &[u8]) -> PacketKind {
    match b.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => match b.get(1) {
            // RTCP packet types 192..=223 (RFC 5761 §4).
            Some(pt) if (192..=223).contains(pt) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// For a STUN Binding Request, our (local) ufrag: the part of USERNAME before `:`
/// (RFC 8445 §7.2.2: USERNAME = "<receiver ufrag>:<sender ufrag>").
pub fn binding_request_local_ufrag(b: &[u8]) -> Option<&str> {
    if b.len() < HEADER_LEN || b[4..8] != MAGIC_COOKIE {
        return None;
    }
    let msg_type = u16::from_be_bytes([b[0], b[1]]);
    if msg_type != BINDING_REQUEST {
        return None;
    }
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    if !len.is_multiple_of(4) || HEADER_LEN + len > b.len() {
        return None;
    }
    let end = HEADER_LEN + len;
    let mut i = HEADER_LEN;
    while i + 4 <= end {
        let typ = u16::from_be_bytes([b[i], b[i + 1]]);
        let alen = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let value = b.get(i + 4..i + 4 + alen)?;
        if i + 4 + alen > end {
            return None;
        }
        if typ == ATTR_USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            let local = s.split(':').next()?;
            return (!local.is_empty()).then_some(local);
        }
        i += 4 + alen.div_ceil(4) * 4;
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
    if b.len() < HEADER_LEN
        || b[4..8] != MAGIC_COOKIE
        || u16::from_be_bytes([b[0], b[1]]) != BINDING_SUCCESS
        || b[8..20] != transaction_id[..]
    {
        return None;
    }
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let end = (HEADER_LEN + len).min(b.len());
    let mut i = HEADER_LEN;
    let mut plain = None;
    while i + 4 <= end {
        let typ = u16::from_be_bytes([b[i], b[i + 1]]);
        let alen = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let v = b.get(i + 4..i + 4 + alen)?;
        if (typ == ATTR_XOR_MAPPED_ADDRESS || typ == ATTR_MAPPED_ADDRESS) && v.len() >= 8 {
            let xor = typ == ATTR_XOR_MAPPED_ADDRESS;
            let mut port = u16::from_be_bytes([v[2], v[3]]);
            if xor {
                port ^= 0x2112;
            }
            let ip: Option<IpAddr> = match v[1] {
                0x01 => {
                    let mut o = [v[4], v[5], v[6], v[7]];
                    if xor {
                        for (x, k) in o.iter_mut().zip(MAGIC_COOKIE) {
                            *x ^= k;
                        }
                    }
                    Some(Ipv4Addr::from(o).into())
                }
                0x02 if v.len() >= 20 => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&v[4..20]);
                    if xor {
                        let key: Vec<u8> =
                            MAGIC_COOKIE.iter().chain(transaction_id).copied().collect();
                        for (x, k) in o.iter_mut().zip(key) {
                            *x ^= k;
                        }
                    }
                    Some(Ipv6Addr::from(o).into())
                }
                _ => None,
            };
            if let Some(ip) = ip {
                let addr = SocketAddr::new(ip, port);
                if xor {
                    return Some(addr);
                }
                plain = Some(addr);
            }
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let _ = binding_response_address(&resp[..cut], &tid);
        }
    }

    /// A Binding Request as Chrome sends it: USERNAME, GOOG-NETWORK-INFO, ICE-CONTROLLING,
    /// USE-CANDIDATE, PRIORITY, MESSAGE-INTEGRITY, FINGERPRINT.
    fn binding(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        let mut attr = |t: u16, v: &[u8]| {
            attrs.extend_from_slice(&t.to_be_bytes());
            attrs.extend_from_slice(&(v.len() as u16).to_be_bytes());
            attrs.extend_from_slice(v);
            while attrs.len() % 4 != 0 {
                attrs.push(0);
            }
        };
        attr(0x0006, username.as_bytes());
        attr(0xc057, &[0, 1, 0, 10]);
        attr(0x802a, &[1; 8]);
        attr(0x0025, &[]);
        attr(0x0024, &[0x6e, 0, 0x1e, 0xff]);
        attr(0x0008, &[7; 20]);
        attr(0x8028, &[9; 4]);
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[3; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn binding_request_yields_our_ufrag() {
        let m = binding("00abcdefgh:remoteUfr");
        assert_eq!(classify(&m), PacketKind::Stun);
        assert_eq!(binding_request_local_ufrag(&m), Some("00abcdefgh"));
        // Odd-length username is padded.
        let m = binding("abc:de");
        assert_eq!(binding_request_local_ufrag(&m), Some("abc"));
    }

    #[test]
    fn non_requests_and_truncations_yield_nothing() {
        let mut resp = binding("x:y");
        resp[1] = 0x01;
        resp[0] = 0x01; // Binding success response
        assert_eq!(binding_request_local_ufrag(&resp), None);
        let m = binding("abc:def");
        for cut in 0..m.len() {
            let _ = binding_request_local_ufrag(&m[..cut]);
        }
        assert_eq!(binding_request_local_ufrag(&m[..m.len() - 1]), None);
        let mut bad_len = binding("abc:def");
        bad_len[3] = 0xff;
        assert_eq!(binding_request_local_ufrag(&bad_len), None);
    }

    #[test]
    fn first_byte_demux_follows_rfc_7983() {
        assert_eq!(classify(&[0x16, 0xfe, 0xfd]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 111]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 0xe0 | 96]), PacketKind::Rtp);
        assert_eq!(classify(&[0x81, 200]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80]), PacketKind::Unknown);
        assert_eq!(classify(&[]), PacketKind::Unknown);
        assert_eq!(classify(&[0xff, 0]), PacketKind::Unknown);
    }
}
