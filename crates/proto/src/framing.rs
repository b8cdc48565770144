//! RFC 4571 framing for ICE-TCP: each packet is preceded by its 16-bit big-endian length.
//!
//! Owns: splitting one TCP connection's byte stream into packets and framing packets for
//! sending. Must not: buffer more than the limit it was given (a peer that declares a long
//! frame and trickles it costs at most `max_buffer` bytes), or panic on any input.

/// Why a TCP stream was rejected, or a packet could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The peer sent more than we buffer: the connection should be closed.
    #[error("tcp receive buffer over its limit of {max} bytes")]
    BufferFull { max: usize },
    /// Our misuse: a packet longer than a 16-bit length can describe.
    #[error("packet of {len} bytes does not fit an RFC 4571 frame")]
    TooLong { len: usize },
}

/// Largest payload of one frame.
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Splits a byte stream into frames, buffering at most `max_buffer` bytes.
///
/// `max_buffer` bounds the bytes held between calls, so it must be at least one read's worth
/// plus one whole frame (`2 + 65535`) for every legal stream to get through; anything less
/// refuses long frames, which is a policy the caller may want.
#[derive(Debug, Clone)]
pub struct Rfc4571Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames.
    start: usize,
    max_buffer: usize,
}

impl Rfc4571Decoder {
    pub fn new(max_buffer: usize) -> Self {
        Rfc4571Decoder {
            buf: Vec::new(),
            start: 0,
            max_buffer,
        }
    }

    /// Appends received bytes. On error nothing is appended and the stream should be dropped.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if self.buffered() + data.len() > self.max_buffer {
            return Err(FramingError::BufferFull {
                max: self.max_buffer,
            });
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame, if any, borrowed from the buffer until the next call.
    /// Zero-length frames are skipped.
    pub fn next_frame_ref(&mut self) -> Option<&[u8]> {
        loop {
            let rest = &self.buf[self.start..];
            let (head, tail) = rest.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_be_bytes(*head));
            tail.get(..len)?;
            let at = self.start + 2;
            self.start = at + len;
            if len > 0 {
                return Some(&self.buf[at..at + len]);
            }
        }
    }

    /// The next complete frame, if any, as an owned copy. Zero-length frames are skipped.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.next_frame_ref().map(<[u8]>::to_vec)
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes every byte not yet returned as a frame (whole frames and a partial one, still
    /// framed), leaving the decoder empty: for handing a stream on to another decoder.
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        rest
    }
}

/// Appends `payload` framed to `out`; `out` is unchanged on error.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FramingError> {
    let len =
        u16::try_from(payload.len()).map_err(|_| FramingError::TooLong { len: payload.len() })?;
    out.reserve(2 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut Rfc4571Decoder, into: &mut Vec<Vec<u8>>) {
        while let Some(f) = d.next_frame() {
            into.push(f);
        }
    }

    #[test]
    fn the_rest_taken_for_a_handover_keeps_whole_and_partial_frames() {
        let stream = stream_of(&[b"first", b"second", b"third frame"]);
        let cut = stream.len() - 4; // the third frame arrives in two reads
        let mut d = Rfc4571Decoder::new(1 << 16);
        d.push(&stream[..cut]).unwrap();
        assert_eq!(d.next_frame().as_deref(), Some(&b"first"[..]));
        let mut next = Rfc4571Decoder::new(1 << 16);
        next.push(&d.take_rest()).unwrap();
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.next_frame(), None);
        next.push(&stream[cut..]).unwrap();
        let mut got = Vec::new();
        drain(&mut next, &mut got);
        assert_eq!(got, vec![b"second".to_vec(), b"third frame".to_vec()]);
    }

    fn stream_of(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            encode_frame(f, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn frames_split_at_every_byte_boundary_are_reassembled() {
        let stream = stream_of(&[b"hello", b"", &[7u8; 300], b"x"]);
        let want = vec![b"hello".to_vec(), vec![7u8; 300], b"x".to_vec()];
        for cut in 0..=stream.len() {
            let mut d = Rfc4571Decoder::new(1 << 17);
            let mut got = Vec::new();
            d.push(&stream[..cut]).unwrap();
            drain(&mut d, &mut got);
            d.push(&stream[cut..]).unwrap();
            drain(&mut d, &mut got);
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn a_stream_fed_one_byte_at_a_time_yields_each_frame_once_complete() {
        let stream = stream_of(&[b"ab", b"cde"]);
        let mut d = Rfc4571Decoder::new(8);
        let mut seen = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            d.push(&[*b]).unwrap();
            if let Some(f) = d.next_frame() {
                seen.push((i, f));
            }
        }
        assert_eq!(seen, vec![(3, b"ab".to_vec()), (8, b"cde".to_vec())]);
    }

    #[test]
    fn several_frames_in_one_push_come_out_in_order() {
        let stream = stream_of(&[b"one", b"two", b"", b"three"]);
        let mut d = Rfc4571Decoder::new(64);
        d.push(&stream).unwrap();
        assert_eq!(d.next_frame_ref(), Some(&b"one"[..]));
        assert_eq!(d.next_frame_ref(), Some(&b"two"[..]));
        assert_eq!(d.next_frame_ref(), Some(&b"three"[..]));
        assert_eq!(d.next_frame_ref(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_stream_of_only_empty_frames_yields_nothing() {
        let mut d = Rfc4571Decoder::new(64);
        d.push(&[0, 0, 0, 0, 0]).unwrap();
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.buffered(), 1);
    }

    #[test]
    fn buffering_past_the_limit_is_refused_and_keeps_the_stream_intact() {
        let mut d = Rfc4571Decoder::new(10);
        assert_eq!(d.push(&[0; 11]), Err(FramingError::BufferFull { max: 10 }));
        d.push(&[0, 3, b'a']).unwrap();
        // A refused push appends nothing.
        assert!(d.push(&[0; 8]).is_err());
        d.push(b"bc").unwrap();
        assert_eq!(d.next_frame(), Some(b"abc".to_vec()));
        // Consumed bytes no longer count against the limit.
        d.push(&[0; 10]).unwrap();
    }

    #[test]
    fn a_declared_frame_longer_than_the_limit_never_completes() {
        let mut d = Rfc4571Decoder::new(100);
        d.push(&[0xff, 0xff]).unwrap();
        d.push(&[0; 98]).unwrap();
        assert_eq!(d.next_frame(), None);
        assert!(d.push(&[0]).is_err());
    }

    #[test]
    fn oversized_payloads_are_refused_when_framing() {
        let mut out = vec![9];
        assert_eq!(
            encode_frame(&vec![0; 65_536], &mut out),
            Err(FramingError::TooLong { len: 65_536 })
        );
        assert_eq!(out, vec![9]);
        encode_frame(&vec![0; MAX_FRAME_PAYLOAD], &mut out).unwrap();
        assert_eq!(&out[..3], &[9, 0xff, 0xff]);
        let mut d = Rfc4571Decoder::new(1 << 17);
        d.push(&out[1..]).unwrap();
        assert_eq!(d.next_frame().map(|f| f.len()), Some(MAX_FRAME_PAYLOAD));
    }
}
