//! The `calls-dc` data-channel message codec (spec §4.6).
//!
//! Owns: decoding what a client sends on the data channel and encoding what rtcd sends, byte
//! for byte as upstream (`service/rtc/dc/msg.go`): `msgpack_uint(type) [msgpack(payload)]`,
//! rtcd emitting the type as uint8 (`cc n`), clients usually as a positive fixint. Also owns
//! the zlib wrapping of SDP payloads, with a hard bound on inflated size.
//!
//! Like upstream, bytes after the payload are ignored (Go decodes from a reader and never
//! checks for leftovers). [`decode_dc`] leaves SDP payloads compressed; call [`inflate_sdp`]
//! with a limit when the SDP is needed.
//!
//! Must not: do I/O, inflate without a bound, allocate from a length prefix, or panic.

use std::io::Write;

use flate2::{Compression, Decompress, FlushDecompress, Status};

use crate::msgpack::{self, ReadError, Reader, Token};

/// Largest data-channel message accepted: Chrome's advertised SCTP `max-message-size`
/// (262144). Nothing legitimate on `calls-dc` comes close.
pub const MAX_DC_MESSAGE_LEN: usize = 256 * 1024;

/// Largest inflated SDP accepted (JSON `{"type","sdp"}`).
pub const MAX_SDP_LEN: usize = 1 << 20;

/// The raw text an old mobile client sends instead of a msgpack Ping.
pub const LEGACY_PING: &[u8] = b"ping";
/// The raw text answer to [`LEGACY_PING`].
pub const LEGACY_PONG: &[u8] = b"pong";

/// One `calls-dc` message.
#[derive(Debug, Clone, PartialEq)]
pub enum DcMessage {
    /// 1, client → rtcd at 1 Hz; answer with `Pong`.
    Ping,
    /// 2, rtcd → client.
    Pong,
    /// 3, both ways: zlib-compressed JSON `{"type","sdp"}`, as on the wire.
    Sdp(Vec<u8>),
    /// 4, client → rtcd.
    LossRate(f64),
    /// 5, client → rtcd, seconds.
    RoundTripTime(f64),
    /// 6, client → rtcd, seconds.
    Jitter(f64),
    /// 7 without a bool payload: the client asks for the signaling lock.
    LockRequest,
    /// 7 with a bool payload: rtcd's answer to `LockRequest`.
    LockResponse(bool),
    /// 8, client → rtcd: release the signaling lock.
    Unlock,
    /// 9, rtcd → client, before every server offer: transceiver `mid` → what it carries.
    MediaMap(Vec<(String, MediaMapEntry)>),
}

/// One MediaMap value: `{"type", "sender_id"[, "mime_type"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaMapEntry {
    /// `"voice"`, `"screen"`, `"screen-audio"` or `"video"`.
    pub kind: String,
    pub sender_id: String,
    /// Read by newer clients only; emitted only when set.
    pub mime_type: Option<String>,
}

/// What arrived on the data channel.
#[derive(Debug, Clone, PartialEq)]
pub enum DcInbound {
    Message(DcMessage),
    /// The raw bytes were exactly `ping`: answer with the raw bytes [`LEGACY_PONG`].
    LegacyTextPing,
}

/// Why a data-channel message (or its SDP payload) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcError {
    #[error("data channel message of {len} bytes exceeds the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("data channel message ended early while reading {context}")]
    Truncated { context: &'static str },
    #[error("data channel message type is not a msgpack int (marker 0x{marker:02x})")]
    TypeNotInt { marker: u8 },
    #[error("unknown data channel message type {0}")]
    UnknownType(i64),
    #[error("{context}: expected {expected}, found marker 0x{marker:02x}")]
    WrongShape {
        context: &'static str,
        expected: &'static str,
        marker: u8,
    },
    #[error("{context} is not valid UTF-8")]
    InvalidUtf8 { context: &'static str },
    #[error("{context}: integer out of range")]
    IntOutOfRange { context: &'static str },
    #[error("{context}: nesting deeper than {max} levels")]
    TooDeep { context: &'static str, max: usize },
    #[error("{context}: header declares {declared} elements but only {remaining} bytes remain")]
    LengthExceedsInput {
        context: &'static str,
        declared: u64,
        remaining: usize,
    },
    #[error("SDP payload is not valid zlib: {0}")]
    CorruptZlib(String),
    #[error("SDP payload ends before the end of its zlib stream")]
    TruncatedZlib,
    #[error("inflated SDP exceeds the {max}-byte limit")]
    SdpTooLarge { max: usize },
}

impl DcError {
    /// A short stable label for metrics and structured logs.
    pub fn label(&self) -> &'static str {
        match self {
            DcError::Oversized { .. } => "oversized",
            DcError::Truncated { .. } => "truncated",
            DcError::TypeNotInt { .. } => "type_not_int",
            DcError::UnknownType(_) => "unknown_type",
            DcError::WrongShape { .. } => "wrong_shape",
            DcError::InvalidUtf8 { .. } => "invalid_utf8",
            DcError::IntOutOfRange { .. } => "int_out_of_range",
            DcError::TooDeep { .. } => "too_deep",
            DcError::LengthExceedsInput { .. } => "length_exceeds_input",
            DcError::CorruptZlib(_) => "corrupt_zlib",
            DcError::TruncatedZlib => "truncated_zlib",
            DcError::SdpTooLarge { .. } => "sdp_too_large",
        }
    }

    fn at(context: &'static str) -> impl Fn(ReadError) -> DcError {
        move |e| match e {
            ReadError::Truncated => DcError::Truncated { context },
            ReadError::Unexpected { expected, marker } => DcError::WrongShape {
                context,
                expected,
                marker,
            },
            ReadError::TooDeep => DcError::TooDeep {
                context,
                max: msgpack::MAX_DEPTH,
            },
            ReadError::LengthExceedsInput {
                declared,
                remaining,
            } => DcError::LengthExceedsInput {
                context,
                declared,
                remaining,
            },
            ReadError::InvalidUtf8 => DcError::InvalidUtf8 { context },
        }
    }
}

const TYPE_PING: u8 = 1;
const TYPE_PONG: u8 = 2;
const TYPE_SDP: u8 = 3;
const TYPE_LOSS_RATE: u8 = 4;
const TYPE_RTT: u8 = 5;
const TYPE_JITTER: u8 = 6;
const TYPE_LOCK: u8 = 7;
const TYPE_UNLOCK: u8 = 8;
const TYPE_MEDIA_MAP: u8 = 9;

impl DcMessage {
    /// The numeric message type on the wire.
    pub fn type_id(&self) -> u8 {
        match self {
            DcMessage::Ping => TYPE_PING,
            DcMessage::Pong => TYPE_PONG,
            DcMessage::Sdp(_) => TYPE_SDP,
            DcMessage::LossRate(_) => TYPE_LOSS_RATE,
            DcMessage::RoundTripTime(_) => TYPE_RTT,
            DcMessage::Jitter(_) => TYPE_JITTER,
            DcMessage::LockRequest | DcMessage::LockResponse(_) => TYPE_LOCK,
            DcMessage::Unlock => TYPE_UNLOCK,
            DcMessage::MediaMap(_) => TYPE_MEDIA_MAP,
        }
    }

    /// An SDP message from plain JSON `{"type","sdp"}` (compresses it).
    pub fn sdp_from_json(json: &[u8]) -> DcMessage {
        DcMessage::Sdp(compress_sdp(json))
    }

    /// The message as a new buffer (see [`encode_dc`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_dc(self, &mut out);
        out
    }
}

/// Appends `msg` to `out` as rtcd emits it: type as uint8 (`cc n`), then the payload if any.
pub fn encode_dc(msg: &DcMessage, out: &mut Vec<u8>) {
    msgpack::write_u8(out, msg.type_id());
    match msg {
        DcMessage::Ping | DcMessage::Pong | DcMessage::LockRequest | DcMessage::Unlock => {}
        DcMessage::Sdp(zlib) => msgpack::write_bin(out, zlib),
        DcMessage::LossRate(v) | DcMessage::RoundTripTime(v) | DcMessage::Jitter(v) => {
            msgpack::write_f64(out, *v)
        }
        DcMessage::LockResponse(granted) => msgpack::write_bool(out, *granted),
        DcMessage::MediaMap(entries) => {
            msgpack::write_map_len(out, entries.len());
            for (mid, entry) in entries {
                msgpack::write_str(out, mid);
                msgpack::write_map_len(out, if entry.mime_type.is_some() { 3 } else { 2 });
                msgpack::write_str(out, "type");
                msgpack::write_str(out, &entry.kind);
                msgpack::write_str(out, "sender_id");
                msgpack::write_str(out, &entry.sender_id);
                if let Some(mime) = &entry.mime_type {
                    msgpack::write_str(out, "mime_type");
                    msgpack::write_str(out, mime);
                }
            }
        }
    }
}

/// Decodes one data-channel message. SDP payloads stay compressed.
pub fn decode_dc(bytes: &[u8]) -> Result<DcInbound, DcError> {
    if bytes == LEGACY_PING {
        return Ok(DcInbound::LegacyTextPing);
    }
    if bytes.len() > MAX_DC_MESSAGE_LEN {
        return Err(DcError::Oversized {
            len: bytes.len(),
            max: MAX_DC_MESSAGE_LEN,
        });
    }
    let mut r = Reader::new(bytes);
    let marker = r.peek().map_err(DcError::at("type"))?;
    let ty = match r.token().map_err(DcError::at("type"))? {
        Token::Int(n) => n,
        _ => return Err(DcError::TypeNotInt { marker }),
    };
    let ty = i64::try_from(ty).map_err(|_| DcError::IntOutOfRange { context: "type" })?;
    let msg = match u8::try_from(ty) {
        Ok(TYPE_PING) => DcMessage::Ping,
        Ok(TYPE_PONG) => DcMessage::Pong,
        Ok(TYPE_UNLOCK) => DcMessage::Unlock,
        Ok(TYPE_SDP) => {
            // Go decodes `[]byte` from bin or str.
            let marker = r.peek().map_err(DcError::at("sdp payload"))?;
            match r.token().map_err(DcError::at("sdp payload"))? {
                Token::Bin(b) | Token::Str(b) => DcMessage::Sdp(b.to_vec()),
                _ => {
                    return Err(DcError::WrongShape {
                        context: "sdp payload",
                        expected: "bin",
                        marker,
                    })
                }
            }
        }
        Ok(TYPE_LOSS_RATE) => DcMessage::LossRate(read_number(&mut r, "loss rate")?),
        Ok(TYPE_RTT) => DcMessage::RoundTripTime(read_number(&mut r, "round trip time")?),
        Ok(TYPE_JITTER) => DcMessage::Jitter(read_number(&mut r, "jitter")?),
        Ok(TYPE_LOCK) => {
            // Upstream: a bool payload is a response; anything else (usually nothing) is a
            // request.
            match r.token() {
                Ok(Token::Bool(granted)) => DcMessage::LockResponse(granted),
                _ => DcMessage::LockRequest,
            }
        }
        Ok(TYPE_MEDIA_MAP) => DcMessage::MediaMap(read_media_map(&mut r)?),
        // 10 (CodecSupportMap) is not implemented upstream in v1.2.6 either.
        _ => return Err(DcError::UnknownType(ty)),
    };
    Ok(DcInbound::Message(msg))
}

/// A Go `float64` field: float32, float64 or any int; nil as 0 (vmihailenco's rules).
fn read_number(r: &mut Reader<'_>, context: &'static str) -> Result<f64, DcError> {
    let marker = r.peek().map_err(DcError::at(context))?;
    match r.token().map_err(DcError::at(context))? {
        Token::F64(v) => Ok(v),
        Token::F32(v) => Ok(f64::from(v)),
        Token::Int(n) => Ok(n as f64),
        Token::Nil => Ok(0.0),
        _ => Err(DcError::WrongShape {
            context,
            expected: "number",
            marker,
        }),
    }
}

/// `map[string]TrackInfo`: Go map, any order; struct values with unknown keys ignored.
fn read_media_map(r: &mut Reader<'_>) -> Result<Vec<(String, MediaMapEntry)>, DcError> {
    const CONTEXT: &str = "media map";
    let Some(n) = r.map_len().map_err(DcError::at(CONTEXT))? else {
        return Ok(Vec::new());
    };
    // Each entry costs ~100 bytes in memory but can take 2 on the wire: grow as entries
    // actually arrive rather than trusting the header.
    let mut entries = Vec::with_capacity((n as usize).min(16));
    for _ in 0..n {
        let mid = r.string().map_err(DcError::at("media map mid"))?;
        let mut entry = MediaMapEntry::default();
        if let Some(fields) = r.map_len().map_err(DcError::at("media map entry"))? {
            for _ in 0..fields {
                let key = r.key().map_err(DcError::at("media map entry"))?;
                match key {
                    b"type" => entry.kind = r.string().map_err(DcError::at("media map type"))?,
                    b"sender_id" => {
                        entry.sender_id = r.string().map_err(DcError::at("media map sender_id"))?
                    }
                    b"mime_type" => {
                        let mime = r.string().map_err(DcError::at("media map mime_type"))?;
                        entry.mime_type = (!mime.is_empty()).then_some(mime);
                    }
                    _ => r.skip_value(3).map_err(DcError::at("media map entry"))?,
                }
            }
        }
        entries.push((mid, entry));
    }
    Ok(entries)
}

/// zlib-compresses an SDP JSON for the wire (default level, like Go's `zlib.NewWriter`).
pub fn compress_sdp(json: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(json.len() / 2 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail; on a (flate2) bug we return an empty payload, which the
    // peer rejects, instead of panicking.
    if enc.write_all(json).is_err() {
        return Vec::new();
    }
    enc.finish().unwrap_or_default()
}

/// Inflates a zlib SDP payload, failing as soon as the output would exceed `max_out` bytes.
///
/// Memory use is bounded by `max_out` (plus one growth step), whatever the compression ratio,
/// so a zip bomb costs at most that much. Bytes after the end of the zlib stream are ignored,
/// as Go's `zlib.Reader` does; the Adler-32 checksum is verified.
pub fn inflate_sdp(zlib: &[u8], max_out: usize) -> Result<Vec<u8>, DcError> {
    let mut out = Vec::new();
    inflate_into(zlib, max_out, &mut out)?;
    Ok(out)
}

/// [`inflate_sdp`] into a caller's (empty) buffer, whose capacity never exceeds
/// `max_out + 1` — tests check that bound after a zip bomb.
fn inflate_into(zlib: &[u8], max_out: usize, out: &mut Vec<u8>) -> Result<(), DcError> {
    const MIN_STEP: usize = 4096;
    // One byte more than allowed, so "exactly max_out" and "more than max_out" differ.
    let hard_cap = max_out.saturating_add(1);
    let mut inflater = Decompress::new(true);
    // `max(..).min(..)` rather than `clamp`, which panics when MIN_STEP > hard_cap.
    out.clear();
    out.reserve_exact(zlib.len().saturating_mul(4).max(MIN_STEP).min(hard_cap));
    loop {
        if out.len() == out.capacity() {
            let grown = out.capacity().saturating_mul(2).max(MIN_STEP).min(hard_cap);
            if grown <= out.len() {
                return Err(DcError::SdpTooLarge { max: max_out });
            }
            out.reserve_exact(grown - out.len());
        }
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
        let input = zlib.get(consumed..).unwrap_or(&[]);
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|e| DcError::CorruptZlib(e.to_string()))?;
        if out.len() > max_out {
            return Err(DcError::SdpTooLarge { max: max_out });
        }
        if status == Status::StreamEnd {
            return Ok(());
        }
        let progressed = inflater.total_in() != in_before || inflater.total_out() != out_before;
        if !progressed && out.len() < out.capacity() {
            // Room to write and nothing left to read: the stream was cut short.
            return Err(DcError::TruncatedZlib);
        }
    }
}

#[cfg(test)]
mod tests;
