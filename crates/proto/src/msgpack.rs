//! The small MessagePack subset both wire codecs need, written out by hand so every byte is
//! under our control (upstream compatibility depends on exact markers, e.g. `cc n` for data
//! channel types and smallest-int encodings for `rtc.Message.type`).
//!
//! Owns: reading one msgpack token from a byte slice without ever trusting a length prefix
//! (every declared length is checked against the bytes that remain before anything is sized
//! from it), bounded-depth skipping of values we do not care about, and the writers.
//! Must not: allocate from a length prefix, recurse without a depth limit, or panic.

/// Deepest nesting accepted when skipping a value (the top-level data value is depth 1).
pub(crate) const MAX_DEPTH: usize = 32;

/// What went wrong while reading msgpack; the codecs add the context (which field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The input ended inside a value.
    Truncated,
    /// A value of another kind than the one required (`marker` is its first byte).
    Unexpected { expected: &'static str, marker: u8 },
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An array/map header declares more elements than the remaining bytes could hold.
    LengthExceedsInput { declared: u64, remaining: usize },
    /// A `str` that must become a Rust string is not UTF-8.
    InvalidUtf8,
}

/// One msgpack token. Scalars are complete; for arrays and maps only the header has been
/// read (with its element count already checked against the remaining input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Token<'a> {
    Nil,
    Bool(bool),
    /// Any of positive/negative fixint, uint8..64, int8..64.
    Int(i128),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    /// An extension value (fixext/ext8..32); its bytes have been consumed.
    Ext,
}

/// A cursor over one msgpack-encoded buffer.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The first byte of the next value, without consuming it.
    pub(crate) fn peek(&self) -> Result<u8, ReadError> {
        self.buf.get(self.pos).copied().ok_or(ReadError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, ReadError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if n > self.remaining() {
            return Err(ReadError::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    fn be(&mut self, n: usize) -> Result<u64, ReadError> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length-prefixed byte run (str/bin/ext body). `Truncated` if it runs past the end.
    fn run(&mut self, len: u64) -> Result<&'a [u8], ReadError> {
        let len = usize::try_from(len).map_err(|_| ReadError::Truncated)?;
        self.take(len)
    }

    /// Checks that `declared` elements of at least `min_bytes` each can fit in what remains.
    fn container(&self, declared: u64, min_bytes: u64) -> Result<u32, ReadError> {
        let remaining = self.remaining();
        let needed = declared.saturating_mul(min_bytes);
        if needed > remaining as u64 {
            return Err(ReadError::LengthExceedsInput {
                declared,
                remaining,
            });
        }
        u32::try_from(declared).map_err(|_| ReadError::LengthExceedsInput {
            declared,
            remaining,
        })
    }

    /// Reads one token. Arrays and maps yield only their (checked) header.
    pub(crate) fn token(&mut self) -> Result<Token<'a>, ReadError> {
        let m = self.byte()?;
        let t = match m {
            0x00..=0x7f => Token::Int(i128::from(m)),
            0x80..=0x8f => Token::Map(self.container(u64::from(m & 0x0f), 2)?),
            0x90..=0x9f => Token::Array(self.container(u64::from(m & 0x0f), 1)?),
            0xa0..=0xbf => Token::Str(self.run(u64::from(m & 0x1f))?),
            0xc0 => Token::Nil,
            0xc2 => Token::Bool(false),
            0xc3 => Token::Bool(true),
            0xc4..=0xc6 => {
                let n = self.be(1 << (m - 0xc4))?;
                Token::Bin(self.run(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.be(1 << (m - 0xc7))?;
                // One type byte, then the body.
                self.take(1)?;
                self.run(n)?;
                Token::Ext
            }
            0xca => Token::F32(f32::from_bits(self.be(4)? as u32)),
            0xcb => Token::F64(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Token::Int(i128::from(self.be(1 << (m - 0xcc))?)),
            0xd0 => Token::Int(i128::from(self.be(1)? as u8 as i8)),
            0xd1 => Token::Int(i128::from(self.be(2)? as u16 as i16)),
            0xd2 => Token::Int(i128::from(self.be(4)? as u32 as i32)),
            0xd3 => Token::Int(i128::from(self.be(8)? as i64)),
            0xd4..=0xd8 => {
                // fixext 1/2/4/8/16: one type byte, then a fixed-size body.
                self.take(1 + (1 << (m - 0xd4)))?;
                Token::Ext
            }
            0xd9..=0xdb => {
                let n = self.be(1 << (m - 0xd9))?;
                Token::Str(self.run(n)?)
            }
            0xdc | 0xdd => {
                let n = self.be(2 << (m - 0xdc))?;
                Token::Array(self.container(n, 1)?)
            }
            0xde | 0xdf => {
                let n = self.be(2 << (m - 0xde))?;
                Token::Map(self.container(n, 2)?)
            }
            0xe0..=0xff => Token::Int(i128::from(m as i8)),
            // 0xc1 is "never used" in the msgpack spec.
            0xc1 => {
                return Err(ReadError::Unexpected {
                    expected: "a msgpack value (0xc1 is never used)",
                    marker: m,
                })
            }
        };
        Ok(t)
    }

    /// Consumes one complete value of any kind; `depth` is the nesting level of that value.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Result<(), ReadError> {
        if depth > MAX_DEPTH {
            return Err(ReadError::TooDeep);
        }
        let children = match self.token()? {
            Token::Array(n) => u64::from(n),
            Token::Map(n) => 2 * u64::from(n),
            _ => 0,
        };
        for _ in 0..children {
            self.skip_value(depth + 1)?;
        }
        Ok(())
    }

    /// Reads a map header; `Ok(None)` for nil (Go decodes nil into an empty/zero value).
    pub(crate) fn map_len(&mut self) -> Result<Option<u32>, ReadError> {
        let marker = self.peek()?;
        match self.token()? {
            Token::Map(n) => Ok(Some(n)),
            Token::Nil => Ok(None),
            _ => Err(ReadError::Unexpected {
                expected: "map",
                marker,
            }),
        }
    }

    /// Reads a map key: msgpack str (or bin, which Go's struct decoder also accepts).
    pub(crate) fn key(&mut self) -> Result<&'a [u8], ReadError> {
        let marker = self.peek()?;
        match self.token()? {
            Token::Str(b) | Token::Bin(b) => Ok(b),
            _ => Err(ReadError::Unexpected {
                expected: "str map key",
                marker,
            }),
        }
    }

    /// A Go `string` field: str or bin, nil as "". Must be UTF-8 to become a Rust string.
    pub(crate) fn string(&mut self) -> Result<String, ReadError> {
        let marker = self.peek()?;
        match self.token()? {
            Token::Str(b) | Token::Bin(b) => std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| ReadError::InvalidUtf8),
            Token::Nil => Ok(String::new()),
            _ => Err(ReadError::Unexpected {
                expected: "str",
                marker,
            }),
        }
    }

    /// A Go `[]byte` field: bin or str, nil as empty.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], ReadError> {
        let marker = self.peek()?;
        match self.token()? {
            Token::Str(b) | Token::Bin(b) => Ok(b),
            Token::Nil => Ok(&[]),
            _ => Err(ReadError::Unexpected {
                expected: "bin or str",
                marker,
            }),
        }
    }

    /// A Go integer field: any int width, nil as 0.
    pub(crate) fn int(&mut self) -> Result<i128, ReadError> {
        let marker = self.peek()?;
        match self.token()? {
            Token::Int(n) => Ok(n),
            Token::Nil => Ok(0),
            _ => Err(ReadError::Unexpected {
                expected: "int",
                marker,
            }),
        }
    }
}

// ---- writers -------------------------------------------------------------------------------
//
// Lengths above u32::MAX cannot occur for our messages (frames are capped at a few MiB); they
// saturate rather than panic.

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

pub(crate) fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

pub(crate) fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xc3 } else { 0xc2 });
}

/// fixstr / str8 / str16 / str32, the smallest that fits (vmihailenco/msgpack v5).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let n = len32(s.len());
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// bin8 / bin16 / bin32, the smallest that fits.
pub(crate) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let n = len32(b.len());
    if n <= 0xff {
        out.extend_from_slice(&[0xc4, n as u8]);
    } else if n <= 0xffff {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// fixmap / map16 / map32 header.
pub(crate) fn write_map_len(out: &mut Vec<u8>, n: usize) {
    let n = len32(n);
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Smallest unsigned encoding: positive fixint, then uint8..uint64 (vmihailenco `EncodeUint`).
pub(crate) fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n <= 0x7f {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if n <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Smallest signed encoding as vmihailenco v5 `EncodeInt` does for Go `int`: non-negative
/// values go through [`write_uint`], negatives use negative fixint, then int8..int64.
pub(crate) fn write_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        write_uint(out, n as u64);
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Always uint8 (`cc n`), as Go encodes a `uint8`-kinded value without compact ints.
pub(crate) fn write_u8(out: &mut Vec<u8>, n: u8) {
    out.extend_from_slice(&[0xcc, n]);
}

/// float64 (`cb`), as Go encodes a `float64`.
pub(crate) fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tokens(bytes: &[u8]) -> Result<Token<'_>, ReadError> {
        Reader::new(bytes).token()
    }

    #[test]
    fn every_int_width_reads_as_the_same_number() {
        let cases: &[(&[u8], i128)] = &[
            (&[0x07], 7),
            (&[0xcc, 0x07], 7),
            (&[0xcd, 0x00, 0x07], 7),
            (&[0xce, 0, 0, 0, 0x07], 7),
            (&[0xcf, 0, 0, 0, 0, 0, 0, 0, 0x07], 7),
            (&[0xd0, 0x07], 7),
            (&[0xd1, 0x00, 0x07], 7),
            (&[0xd2, 0, 0, 0, 0x07], 7),
            (&[0xd3, 0, 0, 0, 0, 0, 0, 0, 0x07], 7),
            (&[0xff], -1),
            (&[0xe0], -32),
            (&[0xd0, 0x80], -128),
            (
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                u64::MAX as i128,
            ),
            (&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], i64::MIN as i128),
        ];
        for (bytes, want) in cases {
            assert_eq!(tokens(bytes).unwrap(), Token::Int(*want), "{bytes:02x?}");
        }
    }

    #[test]
    fn writers_pick_the_smallest_encoding() {
        let mut out = Vec::new();
        write_int(&mut out, 1);
        write_int(&mut out, 127);
        write_int(&mut out, 128);
        write_int(&mut out, 256);
        write_int(&mut out, 65536);
        write_int(&mut out, 1 << 32);
        write_int(&mut out, -1);
        write_int(&mut out, -33);
        write_int(&mut out, -129);
        write_int(&mut out, -32769);
        write_int(&mut out, i64::MIN);
        let want: Vec<u8> = [
            &[0x01][..],
            &[0x7f],
            &[0xcc, 0x80],
            &[0xcd, 0x01, 0x00],
            &[0xce, 0x00, 0x01, 0x00, 0x00],
            &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0],
            &[0xff],
            &[0xd0, 0xdf],
            &[0xd1, 0xff, 0x7f],
            &[0xd2, 0xff, 0xff, 0x7f, 0xff],
            &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn string_headers_switch_at_32_256_and_65536_bytes() {
        for (len, header) in [
            (31usize, vec![0xbf]),
            (32, vec![0xd9, 32]),
            (255, vec![0xd9, 255]),
            (256, vec![0xda, 0x01, 0x00]),
            (65535, vec![0xda, 0xff, 0xff]),
            (65536, vec![0xdb, 0x00, 0x01, 0x00, 0x00]),
        ] {
            let s = "x".repeat(len);
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(&out[..header.len()], &header[..], "len {len}");
            assert_eq!(out.len(), header.len() + len);
            assert_eq!(Reader::new(&out).token().unwrap(), Token::Str(s.as_bytes()));
        }
    }

    #[test]
    fn map_header_larger_than_input_is_rejected_before_allocating() {
        let err = tokens(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0]).unwrap_err();
        assert_eq!(
            err,
            ReadError::LengthExceedsInput {
                declared: 0xffff_ffff,
                remaining: 1
            }
        );
        let err = tokens(&[0xdd, 0x00, 0x00, 0x00, 0x03, 0xc0, 0xc0]).unwrap_err();
        assert!(matches!(
            err,
            ReadError::LengthExceedsInput { declared: 3, .. }
        ));
    }

    #[test]
    fn str_length_past_the_end_is_truncated() {
        assert_eq!(
            tokens(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']),
            Err(ReadError::Truncated)
        );
        assert_eq!(tokens(&[0xa3, b'a']), Err(ReadError::Truncated));
        assert_eq!(tokens(&[0xcd, 0x01]), Err(ReadError::Truncated));
        assert_eq!(tokens(&[]), Err(ReadError::Truncated));
    }

    #[test]
    fn skipping_stops_at_the_depth_limit() {
        // MAX_DEPTH - 1 arrays, the innermost holding a nil at depth MAX_DEPTH.
        let mut deep = vec![0x91; MAX_DEPTH - 1];
        deep.push(0xc0);
        assert_eq!(Reader::new(&deep).skip_value(1), Ok(()));
        let mut deeper = vec![0x91; MAX_DEPTH];
        deeper.push(0xc0);
        assert_eq!(Reader::new(&deeper).skip_value(1), Err(ReadError::TooDeep));
    }

    #[test]
    fn ext_values_are_skipped_whole() {
        // fixext1, fixext16, ext8 with 2 body bytes, then a nil that must remain.
        let mut bytes = vec![0xd4, 0x01, 0xaa];
        bytes.extend_from_slice(&[0xd8, 0x01]);
        bytes.extend_from_slice(&[0u8; 16]);
        bytes.extend_from_slice(&[0xc7, 0x02, 0x05, 0xaa, 0xbb, 0xc0]);
        let mut r = Reader::new(&bytes);
        for _ in 0..3 {
            r.skip_value(1).unwrap();
        }
        assert_eq!(r.token().unwrap(), Token::Nil);
        assert_eq!(r.remaining(), 0);
    }

    /// An independent implementation (the `rmp` crate) picks the same smallest encodings.
    #[test]
    fn writers_agree_with_the_rmp_crate() {
        let mut ints: Vec<i64> = vec![i64::MIN, i64::MAX, 0];
        for shift in 0..63 {
            let p = 1i64 << shift;
            ints.extend_from_slice(&[p - 1, p, p + 1, -p, -p - 1, -p + 1]);
        }
        for n in ints {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_int(&mut ours, n);
            rmp::encode::write_sint(&mut theirs, n).unwrap();
            assert_eq!(ours, theirs, "int {n}");
            if n >= 0 {
                ours.clear();
                theirs.clear();
                write_uint(&mut ours, n as u64);
                rmp::encode::write_uint(&mut theirs, n as u64).unwrap();
                assert_eq!(ours, theirs, "uint {n}");
            }
        }
        for len in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000] {
            let s = "a".repeat(len);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_str(&mut ours, &s);
            rmp::encode::write_str(&mut theirs, &s).unwrap();
            assert_eq!(ours, theirs, "str {len}");
            ours.clear();
            theirs.clear();
            write_bin(&mut ours, s.as_bytes());
            rmp::encode::write_bin(&mut theirs, s.as_bytes()).unwrap();
            assert_eq!(ours, theirs, "bin {len}");
            ours.clear();
            theirs.clear();
            write_map_len(&mut ours, len);
            rmp::encode::write_map_len(&mut theirs, len as u32).unwrap();
            assert_eq!(ours, theirs, "map {len}");
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        write_u8(&mut ours, 2);
        write_f64(&mut ours, -0.125);
        write_bool(&mut ours, true);
        write_nil(&mut ours);
        rmp::encode::write_u8(&mut theirs, 2).unwrap();
        rmp::encode::write_f64(&mut theirs, -0.125).unwrap();
        rmp::encode::write_bool(&mut theirs, true).unwrap();
        rmp::encode::write_nil(&mut theirs).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn reserved_marker_is_rejected() {
        assert!(matches!(
            tokens(&[0xc1]),
            Err(ReadError::Unexpected { marker: 0xc1, .. })
        ));
    }
}
