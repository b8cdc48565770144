//! The generator's payload stamp: every synthetic media payload starts with
//! `magic "LG" ‖ kind u8 ‖ reserved u8 ‖ stream u32 ‖ seq u32 ‖ send time u64 (ns since the run's
//! epoch)`, big endian, then padding to the target size. SFUs forward payloads untouched, so the
//! stamp survives SSRC/sequence/timestamp rewriting.

pub const STAMP_LEN: usize = 20;
const MAGIC: [u8; 2] = *b"LG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio = 1,
    Video = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub kind: Kind,
    pub stream: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampError {
    Short(usize),
    Magic,
    Kind(u8),
}

impl std::fmt::Display for StampError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StampError::Short(n) => write!(f, "payload of {n} bytes is shorter than the stamp"),
            StampError::Magic => write!(f, "payload does not start with the generator's magic"),
            StampError::Kind(k) => write!(f, "unknown media kind {k}"),
        }
    }
}

impl Stamp {
    /// Appends the stamp to `out`, then pads with `fill` up to `size` bytes in all.
    pub fn write(&self, out: &mut Vec<u8>, size: usize, fill: u8) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(self.kind as u8);
        out.push(0);
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
        while out.len() - start < size {
            out.push(fill);
        }
    }

    pub fn read(b: &[u8]) -> Result<Stamp, StampError> {
        if b.len() < STAMP_LEN {
            return Err(StampError::Short(b.len()));
        }
        if b[0..2] != MAGIC {
            return Err(StampError::Magic);
        }
        let kind = match b[2] {
            1 => Kind::Audio,
            2 => Kind::Video,
            k => return Err(StampError::Kind(k)),
        };
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        Ok(Stamp {
            kind,
            stream: u32_at(4),
            seq: u32_at(8),
            sent_ns: u64::from_be_bytes(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_round_trips_and_pads_to_the_target_size() {
        let s = Stamp {
            kind: Kind::Video,
            stream: 7,
            seq: 123_456,
            sent_ns: 9_876_543_210,
        };
        let mut v = vec![0xaa];
        s.write(&mut v, 100, 0x55);
        assert_eq!(v.len(), 101);
        assert_eq!(Stamp::read(&v[1..]), Ok(s));
    }

    #[test]
    fn foreign_or_short_payloads_are_refused() {
        assert_eq!(Stamp::read(&[0; 5]), Err(StampError::Short(5)));
        assert_eq!(Stamp::read(&[0; 30]), Err(StampError::Magic));
        let mut v = b"LG\x09\x00".to_vec();
        v.resize(30, 0);
        assert_eq!(Stamp::read(&v), Err(StampError::Kind(9)));
    }
}
