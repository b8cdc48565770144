//! RFC 4571 framing for ICE-TCP: each packet is preceded by its 16-bit big-endian length.

/// Why a TCP stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("tcp receive buffer over its limit of {max} bytes")]
    BufferFull { max: usize },
    #[error("packet of {len} bytes does not fit an RFC 4571 frame")]
    TooLong { len: usize },
}

/// Splits a byte stream into frames, buffering at most `max_buffer` bytes.
#[derive(Debug)]
pub struct Rfc4571Decoder {
    buf: Vec<u8>,
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

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() + data.len() > self.max_buffer {
            return Err(FramingError::BufferFull {
                max: self.max_buffer,
            });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame, if any. Zero-length frames are skipped.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            let rest = &self.buf[self.start..];
            if rest.len() < 2 {
                return None;
            }
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            if rest.len() < 2 + len {
                return None;
            }
            let frame = rest[2..2 + len].to_vec();
            self.start += 2 + len;
            if !frame.is_empty() {
                return Some(frame);
            }
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Appends `payload` framed to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FramingError> {
    let len =
        u16::try_from(payload.len()).map_err(|_| FramingError::TooLong { len: payload.len() })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_every_byte_boundary_are_reassembled() {
        let mut stream = Vec::new();
        encode_frame(b"hello", &mut stream).unwrap();
        encode_frame(b"", &mut stream).unwrap();
        encode_frame(&[7u8; 300], &mut stream).unwrap();
        for cut in 0..stream.len() {
            let mut d = Rfc4571Decoder::new(1 << 16);
            let mut got = Vec::new();
            d.push(&stream[..cut]).unwrap();
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
            d.push(&stream[cut..]).unwrap();
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
            assert_eq!(got, vec![b"hello".to_vec(), vec![7u8; 300]], "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn oversized_input_and_payloads_are_refused() {
        let mut d = Rfc4571Decoder::new(10);
        assert!(d.push(&[0; 11]).is_err());
        assert!(encode_frame(&vec![0; 65_536], &mut Vec::new()).is_err());
        assert!(encode_frame(&vec![0; 65_535], &mut Vec::new()).is_ok());
    }
}
