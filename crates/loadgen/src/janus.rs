//! Janus signaling adapter (HTTP JSON API, VideoRoom plugin): one Janus session for the run,
//! one handle per PeerConnection. Publishers `joinandconfigure` with an offer (`trickle:false`)
//! and get the answer as an async event; subscribers `join` (ptype subscriber, one stream per
//! feed), get Janus's offer, and `start` with the answer. Async events arrive by HTTP long-poll
//! on a thread of their own.
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

    /// Creates room `room` (synchronous reply).
    pub fn create_room(&mut self, handle: u64, room: u64, publishers: usize) -> Result<(), String> {
        let v = self.message(
            handle,
            json!({"request": "create", "room": room, "publishers": publishers.max(1),
                   "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
                   "notify_joining": false, "audiolevel_event": false}),
            None,
        )?;
        match v["plugindata"]["data"]["videoroom"].as_str() {
            Some("created") => Ok(()),
            _ => Err(format!("create room: {}", v["plugindata"]["data"])),
        }
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
        if let Some(t) = self.poller.take() {
            let _ = t.join();
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
}
