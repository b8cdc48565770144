//! Janus signaling adapter (HTTP JSON API, VideoRoom plugin): one Janus session for the run,
//! one VideoRoom per call, one handle per PeerConnection. Publishers `joinandconfigure` with an
//! offer (`trickle:false`) and get the answer as an async event; subscribers `join` (ptype
//! subscriber, one stream per feed), get Janus's offer, and `start` with the answer; later
//! feeds are added with `subscribe`, and every new offer (`updated`) is answered with `start`
//! again. Async events arrive by HTTP long-poll on a thread of their own.
//!
//! Every response is checked: a non-JSON body, a `janus:"error"`, a missing id or a missing jsep
//! is an error with the reason, never a panic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

/// Largest HTTP response read (an SDP is a few kB).
const MAX_RESPONSE: usize = 1 << 20;

/// One async event for a handle.
#[derive(Debug, Clone, PartialEq)]
pub struct JanusEvent {
    pub sender: u64,
    /// `plugindata.data` of the event.
    pub data: Value,
    /// `jsep` as (type, sdp), when present.
    pub jsep: Option<(String, String)>,
}

/// What a VideoRoom event means for the participant whose handle got it.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// Publisher joined: its feed id and the answer to its offer.
    Joined { feed: u64, answer: Option<String> },
    /// Subscriber (new or updated subscription): Janus's offer, to answer with `start`.
    Offer { sdp: String },
    /// The plugin refused a request (`error_code`/`error`).
    Error { code: u64, reason: String },
    /// Anything else (`started`, `updating`, `publishers`, `leaving`, `unpublished`…).
    Other,
}

/// Classifies a VideoRoom event (`plugindata.data` and `jsep`); never fails: what the adapter
/// does not act on is `Other`.
pub fn room_event(data: &Value, jsep: Option<&(String, String)>) -> RoomEvent {
    if let Some(reason) = data.get("error").and_then(Value::as_str) {
        return RoomEvent::Error {
            code: data.get("error_code").and_then(Value::as_u64).unwrap_or(0),
            reason: reason.to_string(),
        };
    }
    let kind = data.get("videoroom").and_then(Value::as_str);
    match (kind, jsep) {
        (Some("joined"), j) => match data.get("id").and_then(Value::as_u64) {
            Some(feed) => RoomEvent::Joined {
                feed,
                answer: j.filter(|(t, _)| t == "answer").map(|(_, s)| s.clone()),
            },
            None => RoomEvent::Error {
                code: 0,
                reason: "joined event without a numeric id".into(),
            },
        },
        (Some("attached") | Some("updated") | Some("event"), Some((t, sdp))) if t == "offer" => {
            RoomEvent::Offer { sdp: sdp.clone() }
        }
        _ => RoomEvent::Other,
    }
}

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1; extensions and trailers ignored).
pub fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: size line without CRLF")?;
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| "chunked body: size not ASCII")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| {
            format!(
                "chunked body: bad chunk size {:?}",
                hex.chars().take(16).collect::<String>()
            )
        })?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 || &b[size..size + 2] != b"\r\n" {
            return Err("chunked body: truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Splits an HTTP/1.1 response with `Connection: close` into status and body.
pub fn parse_http(resp: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("HTTP response without end of headers")?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| "HTTP headers not UTF-8")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("HTTP response without a status code")?;
    let body = &resp[end + 4..];
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)?));
    }
    Ok((status, body.to_vec()))
}

/// A Janus reply: `success` (with `data`) or `ack`; `error` becomes Err with Janus's reason.
pub fn parse_reply(body: &[u8]) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Janus reply is not JSON: {e}"))?;
    match v.get("janus").and_then(Value::as_str) {
        Some("success") | Some("ack") | Some("event") => Ok(v),
        Some("error") => Err(format!(
            "Janus error {}: {}",
            v["error"]["code"],
            v["error"]["reason"].as_str().unwrap_or("?")
        )),
        Some(other) => Err(format!("unexpected Janus reply {other:?}")),
        None => Err("Janus reply without \"janus\"".into()),
    }
}

/// The events of one long-poll answer (an array, or one object).
pub fn parse_events(body: &[u8]) -> Result<Vec<JanusEvent>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Janus events are not JSON: {e}"))?;
    let list = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err("Janus events: neither an array nor an object".into()),
    };
    let mut out = Vec::new();
    for e in list {
        if e.get("janus").and_then(Value::as_str) != Some("event") {
            continue; // keepalive, webrtcup, media, hangup, slowlink…
        }
        let sender = e
            .get("sender")
            .and_then(Value::as_u64)
            .ok_or("Janus event without a numeric sender")?;
        let data = e
            .get("plugindata")
            .and_then(|p| p.get("data"))
            .cloned()
            .unwrap_or(Value::Null);
        let jsep = match e.get("jsep") {
            None => None,
            Some(j) => Some((
                j.get("type")
                    .and_then(Value::as_str)
                    .ok_or("jsep without type")?
                    .to_string(),
                j.get("sdp")
                    .and_then(Value::as_str)
                    .ok_or("jsep without sdp")?
                    .to_string(),
            )),
        };
        out.push(JanusEvent { sender, data, jsep });
    }
    Ok(out)
}

/// The VideoRoom `create` request: Opus/VP8 only, no bitrate cap, no talking or joining
/// events (the generator does not read them).
pub fn create_room_body(room: u64, publishers: usize) -> Value {
    json!({"request": "create", "room": room, "publishers": publishers.max(1),
           "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
           "notify_joining": false, "audiolevel_event": false})
}

/// A synchronous VideoRoom reply (`create`, `destroy`): `plugindata.data.videoroom` must be
/// `want`; a plugin error (`error_code`) is returned with its reason.
pub fn sync_result(reply: &Value, want: &str) -> Result<(), String> {
    let data = &reply["plugindata"]["data"];
    if let Some(reason) = data.get("error").and_then(Value::as_str) {
        return Err(format!("VideoRoom error {}: {reason}", data["error_code"]));
    }
    match data.get("videoroom").and_then(Value::as_str) {
        Some(k) if k == want => Ok(()),
        _ => Err(format!("unexpected VideoRoom reply {data}")),
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("janus connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("janus write: {e}"))?;
    let mut resp = Vec::new();
    s.take(MAX_RESPONSE as u64)
        .read_to_end(&mut resp)
        .map_err(|e| format!("janus read: {e}"))?;
    let (status, body) = parse_http(&resp)?;
    if status != 200 {
        return Err(format!("janus HTTP {status}"));
    }
    Ok(body)
}

pub struct Janus {
    addr: SocketAddr,
    pub session: u64,
    next_tx: u64,
    pub events: Receiver<Result<JanusEvent, String>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl Janus {
    pub fn connect(addr: SocketAddr) -> Result<Janus, String> {
        let body = http(
            addr,
            "POST",
            "/janus",
            Some(&json!({"janus": "create", "transaction": "c"})),
            Duration::from_secs(5),
        )?;
        let v = parse_reply(&body)?;
        let session = v["data"]["id"].as_u64().ok_or("create: no session id")?;
        let (tx, events) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let poller = std::thread::Builder::new()
            .name("janus-poll".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let path = format!("/janus/{session}?maxev=50");
                    match http(addr, "GET", &path, None, Duration::from_secs(40))
                        .and_then(|b| parse_events(&b))
                    {
                        Ok(evs) => {
                            for e in evs {
                                if tx.send(Ok(e)).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            if stop2.load(Ordering::Relaxed) {
                                return;
                            }
                            let _ = tx.send(Err(e));
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Janus {
            addr,
            session,
            next_tx: 0,
            events,
            stop,
            poller: Some(poller),
        })
    }

    fn tx(&mut self) -> String {
        self.next_tx += 1;
        format!("t{}", self.next_tx)
    }

    fn post(&mut self, path: &str, mut body: Value) -> Result<Value, String> {
        body["transaction"] = Value::String(self.tx());
        let b = http(
            self.addr,
            "POST",
            path,
            Some(&body),
            Duration::from_secs(10),
        )?;
        parse_reply(&b)
    }

    /// A new VideoRoom handle.
    pub fn attach(&mut self) -> Result<u64, String> {
        let p = format!("/janus/{}", self.session);
        let v = self.post(
            &p,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| "attach: no handle id".into())
    }

    /// A plugin message; `jsep` is (type, sdp).
    pub fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<(&str, &str)>,
    ) -> Result<Value, String> {
        let p = format!("/janus/{}/{handle}", self.session);
        let mut m = json!({"janus": "message", "body": body});
        if let Some((t, sdp)) = jsep {
            m["jsep"] = json!({"type": t, "sdp": sdp, "trickle": false});
        }
        self.post(&p, m)
    }

    /// Creates room `room` for up to `publishers` publishers (synchronous reply).
    pub fn create_room(&mut self, handle: u64, room: u64, publishers: usize) -> Result<(), String> {
        let v = self.message(handle, create_room_body(room, publishers), None)?;
        sync_result(&v, "created").map_err(|e| format!("create room {room}: {e}"))
    }

    /// Destroys room `room`; its participants are kicked (synchronous reply).
    pub fn destroy_room(&mut self, handle: u64, room: u64) -> Result<(), String> {
        let v = self.message(handle, json!({"request": "destroy", "room": room}), None)?;
        sync_result(&v, "destroyed").map_err(|e| format!("destroy room {room}: {e}"))
    }

    /// Detaches a handle: Janus hangs up its PeerConnection and drops the plugin session.
    pub fn detach(&mut self, handle: u64) -> Result<(), String> {
        let p = format!("/janus/{}/{handle}", self.session);
        self.post(&p, json!({"janus": "detach"})).map(|_| ())
    }

    pub fn detach_all(&mut self) {
        let p = format!("/janus/{}", self.session);
        let _ = self.post(&p, json!({"janus": "destroy"}));
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.detach_all();
        // The poller may sit in a long-poll that Janus only answers after 30 s (a keepalive):
        // joining it cost every Janus run 30 s. It holds nothing but its socket; leave it.
        if let Some(t) = self.poller.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_replies_errors_and_events_parse_or_say_why() {
        let (st, body) =
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").expect("http");
        assert_eq!((st, body), (200, b"{}".to_vec()));
        let (_, body) = parse_http(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(body, br#"{"a":1}"#.to_vec());
        assert!(dechunk(b"zz\r\nabc").is_err());
        assert!(dechunk(b"5\r\nab").is_err());
        assert!(parse_http(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_http(b"garbage\r\n\r\n").is_err());
        assert!(parse_reply(br#"{"janus":"success","data":{"id":7}}"#)
            .is_ok_and(|v| v["data"]["id"] == 7));
        let e =
            parse_reply(br#"{"janus":"error","error":{"code":458,"reason":"No such session"}}"#)
                .unwrap_err();
        assert!(e.contains("No such session"), "{e}");
        assert!(parse_reply(b"not json").is_err());
        assert!(parse_reply(br#"{"x":1}"#).is_err());
        let evs = parse_events(
            br#"[{"janus":"keepalive"},{"janus":"event","sender":5,"plugindata":{"data":{"videoroom":"joined","id":9}},"jsep":{"type":"answer","sdp":"v=0"}}]"#,
        )
        .expect("events");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].sender, 5);
        assert_eq!(evs[0].data["id"], 9);
        assert_eq!(evs[0].jsep, Some(("answer".into(), "v=0".into())));
        assert!(
            parse_events(br#"{"janus":"event"}"#).is_err(),
            "event without sender"
        );
        assert!(parse_events(br#"{"janus":"event","sender":1,"jsep":{"type":"offer"}}"#).is_err());
        assert!(parse_events(b"7").is_err());
    }

    #[test]
    fn room_events_say_what_to_do_next() {
        let answer = ("answer".to_string(), "v=0".to_string());
        let offer = ("offer".to_string(), "v=1".to_string());
        assert_eq!(
            room_event(&json!({"videoroom": "joined", "id": 42}), Some(&answer)),
            RoomEvent::Joined {
                feed: 42,
                answer: Some("v=0".into())
            }
        );
        assert!(matches!(
            room_event(&json!({"videoroom": "joined"}), None),
            RoomEvent::Error { .. }
        ));
        for kind in ["attached", "updated"] {
            assert_eq!(
                room_event(&json!({ "videoroom": kind }), Some(&offer)),
                RoomEvent::Offer { sdp: "v=1".into() }
            );
        }
        assert_eq!(
            room_event(&json!({"videoroom": "updated"}), None),
            RoomEvent::Other,
            "an update with no SDP change carries no offer"
        );
        assert_eq!(
            room_event(
                &json!({"videoroom": "event", "error_code": 428, "error": "No such feed (7)"}),
                None
            ),
            RoomEvent::Error {
                code: 428,
                reason: "No such feed (7)".into()
            }
        );
        assert_eq!(
            room_event(&json!({"videoroom": "event", "started": "ok"}), None),
            RoomEvent::Other
        );
    }

    #[test]
    fn room_create_and_destroy_replies_are_checked() {
        let body = create_room_body(1001, 0);
        assert_eq!(body["publishers"], 1, "a room takes at least one publisher");
        assert_eq!(body["room"], 1001);
        let ok = json!({"janus": "success", "plugindata": {"data": {"videoroom": "created", "room": 1001}}});
        assert!(sync_result(&ok, "created").is_ok());
        assert!(sync_result(&ok, "destroyed").is_err());
        let taken = json!({"janus": "success", "plugindata": {"data": {"videoroom": "event",
            "error_code": 427, "error": "Room 1001 already exists"}}});
        let e = sync_result(&taken, "created").unwrap_err();
        assert!(e.contains("427") && e.contains("already exists"), "{e}");
    }
}
