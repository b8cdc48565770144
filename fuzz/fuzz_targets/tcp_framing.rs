//! A TCP byte stream, pushed in chunks chosen by the input, must come out of
//! `Rfc4571Decoder` as exactly the frames a one-shot parse finds (or a prefix of them if the
//! buffer limit refused a push), never buffering more than the limit.
//! Input: byte 0 picks the limit, byte 1 the number of chunks, then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd_proto::framing::Rfc4571Decoder;

fn reference(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    while let Some((head, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*head));
        let Some(frame) = tail.get(..len) else { break };
        if len > 0 {
            out.push(frame);
        }
        rest = &tail[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [limit, chunks, stream @ ..] = data else {
        return;
    };
    let max_buffer = [16, 64, 1500, 1 << 17][usize::from(*limit % 4)];
    let chunks = usize::from(*chunks % 8) + 1;
    let step = stream.len().div_ceil(chunks).max(1);
    let mut d = Rfc4571Decoder::new(max_buffer);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut refused = false;
    for piece in stream.chunks(step) {
        if d.push(piece).is_err() {
            refused = true;
            break;
        }
        while let Some(f) = d.next_frame_ref() {
            assert!(!f.is_empty());
            got.push(f.to_vec());
        }
        assert!(d.buffered() <= max_buffer);
    }
    let want = reference(stream);
    assert!(got.len() <= want.len());
    assert!(got.iter().zip(&want).all(|(g, w)| g == w));
    if !refused {
        assert_eq!(got.len(), want.len());
    }
});
