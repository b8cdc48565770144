//! The raw relay baseline's wire format: what an SFU's forwarding path costs with no WebRTC
//! engine at all. Plain UDP; each member announces itself with a `HELLO` carrying its call
//! number and its own AES-128-GCM key; media packets carry a 12-byte RTP-like header (used as
//! AAD and for the nonce) followed by the sealed payload. The relay opens each packet once with
//! the sender's key and seals it again for every other member of the call with theirs.
//!
//! Owns: packet layout, nonce derivation, seal/open. Must not: do I/O.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

/// First byte of a HELLO: `[0x01][call u32 BE][key 16]`.
pub const HELLO: u8 = 0x01;
/// The relay's answer to a HELLO: `[0x02]`.
pub const HELLO_ACK: u8 = 0x02;
/// A member leaves: `[0x03]`.
pub const BYE: u8 = 0x03;
/// Length of the RTP-like header in front of the sealed payload.
pub const HEADER_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
pub const HELLO_LEN: usize = 1 + 4 + 16;

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than its fixed part.
    Truncated,
    /// First byte is neither a control type nor RTP version 2.
    UnknownType(u8),
    /// The AEAD tag did not verify.
    BadTag,
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacketError::Truncated => write!(f, "datagram truncated"),
            PacketError::UnknownType(b) => write!(f, "unknown datagram type 0x{b:02x}"),
            PacketError::BadTag => write!(f, "authentication tag mismatch"),
        }
    }
}

impl std::error::Error for PacketError {}

/// A parsed datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    Hello {
        call: u32,
        key: [u8; 16],
    },
    HelloAck,
    Bye,
    /// Header and sealed payload (ciphertext ‖ tag).
    Media {
        header: [u8; HEADER_LEN],
        sealed: &'a [u8],
    },
}

pub fn parse(d: &[u8]) -> Result<Datagram<'_>, PacketError> {
    let first = *d.first().ok_or(PacketError::Truncated)?;
    match first {
        HELLO => {
            if d.len() < HELLO_LEN {
                return Err(PacketError::Truncated);
            }
            let call = u32::from_be_bytes([d[1], d[2], d[3], d[4]]);
            let mut key = [0u8; 16];
            key.copy_from_slice(&d[5..21]);
            Ok(Datagram::Hello { call, key })
        }
        HELLO_ACK => Ok(Datagram::HelloAck),
        BYE => Ok(Datagram::Bye),
        b if b >> 6 == 2 => {
            if d.len() < HEADER_LEN + TAG_LEN {
                return Err(PacketError::Truncated);
            }
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(&d[..HEADER_LEN]);
            Ok(Datagram::Media {
                header,
                sealed: &d[HEADER_LEN..],
            })
        }
        b => Err(PacketError::UnknownType(b)),
    }
}

pub fn hello(call: u32, key: &[u8; 16]) -> Vec<u8> {
    let mut v = vec![HELLO];
    v.extend_from_slice(&call.to_be_bytes());
    v.extend_from_slice(key);
    v
}

/// An RTP-like header: V=2, payload type, sequence, timestamp, SSRC.
pub fn header(pt: u8, seq: u16, ts: u32, ssrc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = 0x80;
    h[1] = pt & 0x7f;
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// Unique per (key, ssrc, timestamp, seq) — as SRTP's GCM nonce is per (ssrc, index).
fn nonce(h: &[u8; HEADER_LEN]) -> Nonce {
    let mut n = [0u8; 12];
    n[0..4].copy_from_slice(&h[8..12]);
    n[4..8].copy_from_slice(&h[4..8]);
    n[8..10].copy_from_slice(&h[2..4]);
    Nonce::assume_unique_for_key(n)
}

/// One member's AES-128-GCM key.
pub struct Key(LessSafeKey);

impl Key {
    pub fn new(raw: &[u8; 16]) -> Key {
        // AES-128 accepts any 16 bytes: the only error is a wrong length, which the type rules out.
        match UnboundKey::new(&AES_128_GCM, raw) {
            Ok(k) => Key(LessSafeKey::new(k)),
            Err(_) => unreachable!("16-byte key"),
        }
    }

    /// Appends `header ‖ seal(plain)` to `out` (cleared first).
    pub fn seal(&self, header: &[u8; HEADER_LEN], plain: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(header);
        out.extend_from_slice(plain);
        let (_, body) = out.split_at_mut(HEADER_LEN);
        // A seal only fails for inputs over GCM's 64 GiB limit.
        if let Ok(tag) = self
            .0
            .seal_in_place_separate_tag(nonce(header), Aad::from(header), body)
        {
            out.extend_from_slice(tag.as_ref());
        }
    }

    /// Opens `sealed` in place; returns the plaintext.
    pub fn open<'a>(
        &self,
        header: &[u8; HEADER_LEN],
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], PacketError> {
        self.0
            .open_in_place(nonce(header), Aad::from(header), sealed)
            .map_err(|_| PacketError::BadTag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_packet_opens_with_the_same_key_and_not_another() {
        let k = Key::new(&[7; 16]);
        let h = header(111, 5, 960, 42);
        let mut out = Vec::new();
        k.seal(&h, b"hello opus", &mut out);
        let Ok(Datagram::Media { header, sealed }) = parse(&out) else {
            panic!("media")
        };
        let mut buf = sealed.to_vec();
        assert_eq!(
            k.open(&header, &mut buf).map(|p| p.to_vec()),
            Ok(b"hello opus".to_vec())
        );
        let mut buf = sealed.to_vec();
        assert_eq!(
            Key::new(&[8; 16]).open(&header, &mut buf).map(|_| ()),
            Err(PacketError::BadTag)
        );
    }

    #[test]
    fn malformed_datagrams_are_refused_with_a_reason() {
        assert_eq!(parse(&[]), Err(PacketError::Truncated));
        assert_eq!(parse(&[HELLO, 0, 0]), Err(PacketError::Truncated));
        assert_eq!(parse(&[0x80; 20]), Err(PacketError::Truncated));
        assert_eq!(parse(&[0x42]), Err(PacketError::UnknownType(0x42)));
        assert_eq!(
            parse(&hello(9, &[1; 16])),
            Ok(Datagram::Hello {
                call: 9,
                key: [1; 16]
            })
        );
    }
}
