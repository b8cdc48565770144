//! The plugin ↔ rtcd WebSocket message codec ("ClientMessage", spec §3.4–3.6).
//!
//! Owns: turning one binary WebSocket frame into a [`ClientMessage`] and back, byte-compatible
//! with vmihailenco/msgpack v5 as used by both Go sides. A frame is two msgpack values
//! concatenated: `str(type) || value(data)`, `data` being nil (`c0`) when absent.
//!
//! Decoding is lenient where Go's decoder is (keys in any order, unknown keys ignored, any int
//! width, `[]byte` as bin or str, nil as the zero value) and strict about framing: oversized
//! frames, truncation, length prefixes larger than the frame, nesting deeper than 32 levels
//! and trailing bytes are errors. Semantic validation (is the session ID non-empty, does the
//! session exist) is the caller's job; see [`Join::validate`] and [`RtcMessage::validate`].
//!
//! Must not: do I/O, allocate from an untrusted length prefix, or panic on any input.

use serde::{Serialize, Serializer};

use crate::msgpack::{self, ReadError, Reader, Token};

/// Largest frame accepted: upstream's WebSocket read limit (1 MiB; larger drops the connection).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Longest unknown type string kept in [`WireError::UnknownType`] (keeps logs bounded).
pub const MAX_UNKNOWN_TYPE_LEN: usize = 64;

/// One WebSocket message between the Calls plugin and rtcd.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// rtcd → plugin, first frame on every connection: `{"clientID", "connID"}`.
    Hello { client_id: String, conn_id: String },
    /// rtcd → plugin after a session is torn down: `{"sessionID"}`.
    Close { session_id: String },
    /// plugin → rtcd: create an RTC session.
    Join(Join),
    /// plugin → rtcd: close a session: `{"sessionID"}`.
    Leave { session_id: String },
    /// plugin → rtcd: route this session's messages to this connection: `{"sessionID"}`.
    Reconnect { session_id: String },
    /// Signaling in both directions (ICE, SDP, mute, screen/video on/off).
    Rtc(RtcMessage),
    /// rtcd → plugin voice activity (type 7/8, no data).
    Vad(RtcMessage),
}

/// The `join` payload: a generic Go `map[string]any` upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Join {
    /// `callID`; a non-string value decodes as empty (upstream type-asserts to string).
    pub call_id: String,
    /// `userID`; non-string → empty.
    pub user_id: String,
    /// `sessionID`; non-string → empty.
    pub session_id: String,
    /// `channelID` as it arrived; echoed in `Props` by the sessions API.
    pub channel_id: PropValue,
    /// `av1Support` as it arrived; only `Bool(true)` enables AV1.
    pub av1_support: PropValue,
    /// `dcSignaling` as it arrived; only `Bool(true)` sends rtcd's offers over the DC.
    pub dc_signaling: PropValue,
}

/// A `join` value kept as it arrived, because upstream echoes it verbatim in JSON (`Props`).
#[derive(Debug, Clone, Default)]
pub enum PropValue {
    /// Key absent or msgpack nil.
    #[default]
    Nil,
    Bool(bool),
    /// Any msgpack int that fits an `i64`.
    Int(i64),
    /// float32 (widened) or float64.
    Float(f64),
    /// A msgpack str (invalid UTF-8 replaced with U+FFFD).
    Str(String),
    /// Anything else (bin, array, map, ext, uint64 above `i64::MAX`); encodes as nil.
    Other,
}

/// The `rtc.Message` struct carried by `rtc` and `vad` (spec §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtcMessage {
    pub group_id: String,
    pub user_id: String,
    pub session_id: String,
    pub call_id: String,
    pub msg_type: MessageType,
    /// Payload bytes (JSON for ICE/SDP/ScreenOn/VideoOn); the key is omitted when empty.
    pub data: Vec<u8>,
}

/// `rtc.Message.type` (Go `int`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Ice,
    Sdp,
    Mute,
    Unmute,
    ScreenOn,
    ScreenOff,
    VoiceOn,
    VoiceOff,
    VideoOn,
    VideoOff,
    /// Any other value, including 0 (which [`RtcMessage::validate`] rejects).
    Other(i64),
}

/// Why a frame could not be decoded. `context` names the part of the message at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("frame ended early while reading {context}")]
    Truncated { context: &'static str },
    #[error("frame does not start with a msgpack str type (marker 0x{marker:02x})")]
    TypeNotStr { marker: u8 },
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{context}: expected {expected}, found marker 0x{marker:02x}")]
    WrongShape {
        context: &'static str,
        expected: &'static str,
        marker: u8,
    },
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("field {0:?} is empty")]
    EmptyField(&'static str),
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
    #[error("{count} trailing bytes after the message")]
    TrailingBytes { count: usize },
}

impl WireError {
    /// A short stable label for metrics and structured logs.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Oversized { .. } => "oversized",
            WireError::Truncated { .. } => "truncated",
            WireError::TypeNotStr { .. } => "type_not_str",
            WireError::UnknownType(_) => "unknown_type",
            WireError::WrongShape { .. } => "wrong_shape",
            WireError::MissingField(_) => "missing_field",
            WireError::EmptyField(_) => "empty_field",
            WireError::InvalidUtf8 { .. } => "invalid_utf8",
            WireError::IntOutOfRange { .. } => "int_out_of_range",
            WireError::TooDeep { .. } => "too_deep",
            WireError::LengthExceedsInput { .. } => "length_exceeds_input",
            WireError::TrailingBytes { .. } => "trailing_bytes",
        }
    }

    fn at(context: &'static str) -> impl Fn(ReadError) -> WireError {
        move |e| match e {
            ReadError::Truncated => WireError::Truncated { context },
            ReadError::Unexpected { expected, marker } => WireError::WrongShape {
                context,
                expected,
                marker,
            },
            ReadError::TooDeep => WireError::TooDeep {
                context,
                max: msgpack::MAX_DEPTH,
            },
            ReadError::LengthExceedsInput {
                declared,
                remaining,
            } => WireError::LengthExceedsInput {
                context,
                declared,
                remaining,
            },
            ReadError::InvalidUtf8 => WireError::InvalidUtf8 { context },
        }
    }
}

// Type strings and keys exactly as upstream spells them.
const T_HELLO: &str = "hello";
const T_CLOSE: &str = "close";
const T_JOIN: &str = "join";
const T_LEAVE: &str = "leave";
const T_RECONNECT: &str = "reconnect";
const T_RTC: &str = "rtc";
const T_VAD: &str = "vad";

const K_CLIENT_ID: &str = "clientID";
const K_CONN_ID: &str = "connID";
const K_SESSION_ID: &str = "sessionID";
const K_CALL_ID: &str = "callID";
const K_USER_ID: &str = "userID";
const K_CHANNEL_ID: &str = "channelID";
const K_AV1_SUPPORT: &str = "av1Support";
const K_DC_SIGNALING: &str = "dcSignaling";

impl ClientMessage {
    /// The wire type string (`"hello"`, `"rtc"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => T_HELLO,
            ClientMessage::Close { .. } => T_CLOSE,
            ClientMessage::Join(_) => T_JOIN,
            ClientMessage::Leave { .. } => T_LEAVE,
            ClientMessage::Reconnect { .. } => T_RECONNECT,
            ClientMessage::Rtc(_) => T_RTC,
            ClientMessage::Vad(_) => T_VAD,
        }
    }

    /// Appends the frame bytes to `out`, as the Go side would emit them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        msgpack::write_str(out, self.type_name());
        match self {
            ClientMessage::Hello { client_id, conn_id } => {
                // The plugin decodes a typed map inferred from the first entry: values must be
                // str, never bin.
                msgpack::write_map_len(out, 2);
                msgpack::write_str(out, K_CLIENT_ID);
                msgpack::write_str(out, client_id);
                msgpack::write_str(out, K_CONN_ID);
                msgpack::write_str(out, conn_id);
            }
            ClientMessage::Close { session_id }
            | ClientMessage::Leave { session_id }
            | ClientMessage::Reconnect { session_id } => {
                msgpack::write_map_len(out, 1);
                msgpack::write_str(out, K_SESSION_ID);
                msgpack::write_str(out, session_id);
            }
            ClientMessage::Join(join) => join.encode_data(out),
            ClientMessage::Rtc(msg) | ClientMessage::Vad(msg) => msg.encode_data(out),
        }
    }

    /// The frame as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one binary WebSocket frame.
    ///
    /// A well-formed frame of a type this codec does not know yields
    /// [`WireError::UnknownType`] with the type string (cut to [`MAX_UNKNOWN_TYPE_LEN`] bytes).
    pub fn decode(frame: &[u8]) -> Result<ClientMessage, WireError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(WireError::Oversized {
                len: frame.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let mut r = Reader::new(frame);
        let marker = r.peek().map_err(WireError::at("type"))?;
        // Go's DecodeString accepts bin as well as str.
        let ty = match r.token().map_err(WireError::at("type"))? {
            Token::Str(b) | Token::Bin(b) => b,
            _ => return Err(WireError::TypeNotStr { marker }),
        };
        let msg = match ty {
            b"hello" => {
                let mut client_id = None;
                let mut conn_id = None;
                decode_map(&mut r, "hello data", |key, r| {
                    match key {
                        b"clientID" => {
                            client_id = Some(r.string().map_err(WireError::at("hello.clientID"))?)
                        }
                        b"connID" => {
                            conn_id = Some(r.string().map_err(WireError::at("hello.connID"))?)
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                ClientMessage::Hello {
                    client_id: client_id.ok_or(WireError::MissingField(K_CLIENT_ID))?,
                    conn_id: conn_id.ok_or(WireError::MissingField(K_CONN_ID))?,
                }
            }
            b"close" => ClientMessage::Close {
                session_id: decode_session_map(&mut r, "close data")?,
            },
            b"leave" => ClientMessage::Leave {
                session_id: decode_session_map(&mut r, "leave data")?,
            },
            b"reconnect" => ClientMessage::Reconnect {
                session_id: decode_session_map(&mut r, "reconnect data")?,
            },
            b"join" => ClientMessage::Join(Join::decode_data(&mut r)?),
            b"rtc" => ClientMessage::Rtc(RtcMessage::decode_data(&mut r)?),
            b"vad" => ClientMessage::Vad(RtcMessage::decode_data(&mut r)?),
            other => {
                // Upstream still decodes the data (generically) before rejecting the type, so a
                // malformed frame is a framing error, not an unknown type.
                r.skip_value(1).map_err(WireError::at("data"))?;
                ensure_consumed(&r)?;
                return Err(WireError::UnknownType(truncated_lossy(other)));
            }
        };
        ensure_consumed(&r)?;
        Ok(msg)
    }
}

fn ensure_consumed(r: &Reader<'_>) -> Result<(), WireError> {
    match r.remaining() {
        0 => Ok(()),
        count => Err(WireError::TrailingBytes { count }),
    }
}

/// The first [`MAX_UNKNOWN_TYPE_LEN`] bytes, lossily decoded (a multi-byte character cut in
/// half shows up as U+FFFD, which is fine for a log line).
fn truncated_lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_UNKNOWN_TYPE_LEN)]).into_owned()
}

/// Reads a map (the `data` value) and hands each key to `f`, which reads the value and
/// returns `true`, or returns `false` to have it skipped. Nil or a non-map is an error: every
/// map-typed message upstream fails without a map.
fn decode_map<'a>(
    r: &mut Reader<'a>,
    context: &'static str,
    mut f: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    let marker = r.peek().map_err(WireError::at(context))?;
    let n = r
        .map_len()
        .map_err(WireError::at(context))?
        .ok_or(WireError::WrongShape {
            context,
            expected: "map",
            marker,
        })?;
    for_each_entry(r, context, n, &mut f)
}

fn for_each_entry<'a>(
    r: &mut Reader<'a>,
    context: &'static str,
    n: u32,
    f: &mut impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    for _ in 0..n {
        let key = r.key().map_err(WireError::at(context))?;
        if !f(key, r)? {
            // Values we ignore are at depth 2 (inside the data map).
            r.skip_value(2).map_err(WireError::at(context))?;
        }
    }
    Ok(())
}

/// `{"sessionID": str}` as sent in `close`, `leave` and `reconnect` (Go `map[string]string`).
fn decode_session_map(r: &mut Reader<'_>, context: &'static str) -> Result<String, WireError> {
    let mut session_id = None;
    decode_map(r, context, |key, r| {
        if key != K_SESSION_ID.as_bytes() {
            return Ok(false);
        }
        session_id = Some(r.string().map_err(WireError::at("sessionID"))?);
        Ok(true)
    })?;
    session_id.ok_or(WireError::MissingField(K_SESSION_ID))
}

impl Join {
    /// The checks upstream makes before creating a session (`groupID` comes from the
    /// connection and is checked by the caller).
    pub fn validate(&self) -> Result<(), WireError> {
        if self.call_id.is_empty() {
            return Err(WireError::EmptyField(K_CALL_ID));
        }
        if self.user_id.is_empty() {
            return Err(WireError::EmptyField(K_USER_ID));
        }
        if self.session_id.is_empty() {
            return Err(WireError::EmptyField(K_SESSION_ID));
        }
        Ok(())
    }

    /// Encodes as the Go plugin sends it: all six keys, IDs as str, props as they are.
    fn encode_data(&self, out: &mut Vec<u8>) {
        msgpack::write_map_len(out, 6);
        msgpack::write_str(out, K_CALL_ID);
        msgpack::write_str(out, &self.call_id);
        msgpack::write_str(out, K_USER_ID);
        msgpack::write_str(out, &self.user_id);
        msgpack::write_str(out, K_SESSION_ID);
        msgpack::write_str(out, &self.session_id);
        msgpack::write_str(out, K_CHANNEL_ID);
        self.channel_id.encode(out);
        msgpack::write_str(out, K_AV1_SUPPORT);
        self.av1_support.encode(out);
        msgpack::write_str(out, K_DC_SIGNALING);
        self.dc_signaling.encode(out);
    }

    fn decode_data(r: &mut Reader<'_>) -> Result<Join, WireError> {
        let mut join = Join::default();
        decode_map(r, "join data", |key, r| {
            match key {
                b"callID" => join.call_id = PropValue::decode(r)?.into_string(),
                b"userID" => join.user_id = PropValue::decode(r)?.into_string(),
                b"sessionID" => join.session_id = PropValue::decode(r)?.into_string(),
                b"channelID" => join.channel_id = PropValue::decode(r)?,
                b"av1Support" => join.av1_support = PropValue::decode(r)?,
                b"dcSignaling" => join.dc_signaling = PropValue::decode(r)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(join)
    }
}

impl PropValue {
    /// `true` only for `Bool(true)`, as upstream's `props["x"].(bool)` assertion.
    pub fn as_bool(&self) -> bool {
        matches!(self, PropValue::Bool(true))
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PropValue::Str(s) => Some(s),
            _ => None,
        }
    }

    fn into_string(self) -> String {
        match self {
            PropValue::Str(s) => s,
            _ => String::new(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PropValue::Nil | PropValue::Other => msgpack::write_nil(out),
            PropValue::Bool(b) => msgpack::write_bool(out, *b),
            PropValue::Int(n) => msgpack::write_int(out, *n),
            PropValue::Float(f) => msgpack::write_f64(out, *f),
            PropValue::Str(s) => msgpack::write_str(out, s),
        }
    }

    /// Reads one value of any kind (the value sits at depth 2, inside the join map).
    fn decode(r: &mut Reader<'_>) -> Result<PropValue, WireError> {
        const CONTEXT: &str = "join value";
        let at = WireError::at(CONTEXT);
        let v = match r.token().map_err(&at)? {
            Token::Nil => PropValue::Nil,
            Token::Bool(b) => PropValue::Bool(b),
            Token::Int(n) => i64::try_from(n).map_or(PropValue::Other, PropValue::Int),
            Token::F32(f) => PropValue::Float(f64::from(f)),
            Token::F64(f) => PropValue::Float(f),
            Token::Str(b) => PropValue::Str(String::from_utf8_lossy(b).into_owned()),
            Token::Bin(_) | Token::Ext => PropValue::Other,
            Token::Array(n) => {
                for _ in 0..n {
                    r.skip_value(3).map_err(&at)?;
                }
                PropValue::Other
            }
            Token::Map(n) => {
                for _ in 0..2 * u64::from(n) {
                    r.skip_value(3).map_err(&at)?;
                }
                PropValue::Other
            }
        };
        Ok(v)
    }
}

impl From<bool> for PropValue {
    fn from(v: bool) -> Self {
        PropValue::Bool(v)
    }
}

impl From<i64> for PropValue {
    fn from(v: i64) -> Self {
        PropValue::Int(v)
    }
}

impl From<&str> for PropValue {
    fn from(v: &str) -> Self {
        PropValue::Str(v.to_owned())
    }
}

impl From<String> for PropValue {
    fn from(v: String) -> Self {
        PropValue::Str(v)
    }
}

/// Floats compare by bit pattern so that a decoded value always equals itself (NaN included).
impl PartialEq for PropValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PropValue::Nil, PropValue::Nil) | (PropValue::Other, PropValue::Other) => true,
            (PropValue::Bool(a), PropValue::Bool(b)) => a == b,
            (PropValue::Int(a), PropValue::Int(b)) => a == b,
            (PropValue::Float(a), PropValue::Float(b)) => a.to_bits() == b.to_bits(),
            (PropValue::Str(a), PropValue::Str(b)) => a == b,
            _ => false,
        }
    }
}

/// JSON as upstream echoes join props: the value as it arrived, `null` for nil and for kinds
/// we do not keep (non-finite floats also become `null`, as serde_json writes them).
impl Serialize for PropValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PropValue::Nil | PropValue::Other => s.serialize_unit(),
            PropValue::Bool(b) => s.serialize_bool(*b),
            PropValue::Int(n) => s.serialize_i64(*n),
            PropValue::Float(f) => s.serialize_f64(*f),
            PropValue::Str(v) => s.serialize_str(v),
        }
    }
}

impl MessageType {
    pub fn from_i64(n: i64) -> MessageType {
        match n {
            1 => MessageType::Ice,
            2 => MessageType::Sdp,
            3 => MessageType::Mute,
            4 => MessageType::Unmute,
            5 => MessageType::ScreenOn,
            6 => MessageType::ScreenOff,
            7 => MessageType::VoiceOn,
            8 => MessageType::VoiceOff,
            9 => MessageType::VideoOn,
            10 => MessageType::VideoOff,
            n => MessageType::Other(n),
        }
    }

    pub fn as_i64(self) -> i64 {
        match self {
            MessageType::Ice => 1,
            MessageType::Sdp => 2,
            MessageType::Mute => 3,
            MessageType::Unmute => 4,
            MessageType::ScreenOn => 5,
            MessageType::ScreenOff => 6,
            MessageType::VoiceOn => 7,
            MessageType::VoiceOff => 8,
            MessageType::VideoOn => 9,
            MessageType::VideoOff => 10,
            MessageType::Other(n) => n,
        }
    }
}

impl Default for MessageType {
    /// Go's zero value (invalid).
    fn default() -> Self {
        MessageType::Other(0)
    }
}

impl RtcMessage {
    /// Upstream's `Message.IsValid`: `session_id` non-empty and `type` non-zero.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.session_id.is_empty() {
            return Err(WireError::EmptyField("session_id"));
        }
        if self.msg_type.as_i64() == 0 {
            return Err(WireError::EmptyField("type"));
        }
        Ok(())
    }

    /// Go struct order, `type` as the smallest int, `data` as bin and omitted when empty.
    fn encode_data(&self, out: &mut Vec<u8>) {
        msgpack::write_map_len(out, if self.data.is_empty() { 5 } else { 6 });
        msgpack::write_str(out, "group_id");
        msgpack::write_str(out, &self.group_id);
        msgpack::write_str(out, "user_id");
        msgpack::write_str(out, &self.user_id);
        msgpack::write_str(out, "session_id");
        msgpack::write_str(out, &self.session_id);
        msgpack::write_str(out, "call_id");
        msgpack::write_str(out, &self.call_id);
        msgpack::write_str(out, "type");
        msgpack::write_int(out, self.msg_type.as_i64());
        if !self.data.is_empty() {
            msgpack::write_str(out, "data");
            msgpack::write_bin(out, &self.data);
        }
    }

    /// Go struct decoding: any key order, unknown keys skipped, nil → zero message.
    fn decode_data(r: &mut Reader<'_>) -> Result<RtcMessage, WireError> {
        const CONTEXT: &str = "rtc.Message";
        let mut m = RtcMessage::default();
        let Some(n) = r.map_len().map_err(WireError::at(CONTEXT))? else {
            return Ok(m);
        };
        for_each_entry(r, CONTEXT, n, &mut |key, r| {
            match key {
                b"group_id" => m.group_id = r.string().map_err(WireError::at("rtc.group_id"))?,
                b"user_id" => m.user_id = r.string().map_err(WireError::at("rtc.user_id"))?,
                b"session_id" => {
                    m.session_id = r.string().map_err(WireError::at("rtc.session_id"))?
                }
                b"call_id" => m.call_id = r.string().map_err(WireError::at("rtc.call_id"))?,
                b"type" => {
                    let n = r.int().map_err(WireError::at("rtc.type"))?;
                    let n = i64::try_from(n).map_err(|_| WireError::IntOutOfRange {
                        context: "rtc.type",
                    })?;
                    m.msg_type = MessageType::from_i64(n);
                }
                b"data" => m.data = r.bytes().map_err(WireError::at("rtc.data"))?.to_vec(),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests;
