//! A participant of the raw relay baseline: HELLO with its call and key, then sealed RTP-like
//! packets; video frames go out as bursts of `video_packet`-byte packets, each with its own stamp.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use rtcd_rawrelay::{header, hello, parse, Datagram, Key, BYE, HEADER_LEN};

use crate::meter::{Meter, Source};
use crate::opts::{Opts, Role};
use crate::payload::{Kind, Stamp};

pub struct RawPeer {
    pub slot: usize,
    pub sock: UdpSocket,
    relay: SocketAddr,
    call: u32,
    key_raw: [u8; 16],
    key: Key,
    pub joined_at: Instant,
    pub connected_at: Option<Instant>,
    pub first_media: Option<Instant>,
    next_hello: Instant,
    pub audio: Option<Source>,
    pub video: Option<Source>,
    video_packet: usize,
    /// Packet sequence for video (one stamp per packet).
    video_seq: u32,
    buf: Vec<u8>,
    out: Vec<u8>,
    plain: Vec<u8>,
    pub errors: Vec<String>,
}

impl RawPeer {
    pub fn new(
        call: u32,
        role: Role,
        slot: usize,
        streams: (u32, u32),
        opts: &Opts,
        now: Instant,
    ) -> Result<RawPeer, String> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut key_raw = [0u8; 16];
        // Distinct per member: the relay must re-encrypt for every subscriber.
        key_raw[..8].copy_from_slice(&(slot as u64 + 1).to_be_bytes());
        key_raw[8..12].copy_from_slice(&call.to_be_bytes());
        Ok(RawPeer {
            slot,
            sock: UdpSocket::from_std(s),
            relay: opts.relay,
            call,
            key: Key::new(&key_raw),
            key_raw,
            joined_at: now,
            connected_at: None,
            first_media: None,
            next_hello: now,
            audio: role
                .audio
                .then(|| Source::audio(streams.0, opts.audio_bytes, now)),
            video: role
                .video
                .then(|| Source::video(streams.1, opts.video_kbps, opts.video_fps, now)),
            video_packet: opts.video_packet,
            video_seq: 0,
            buf: vec![0u8; 2048],
            out: Vec::with_capacity(2048),
            plain: Vec::with_capacity(2048),
            errors: Vec::new(),
        })
    }

    pub fn leave(&mut self) {
        let _ = self.sock.send_to(&[BYE], self.relay);
    }

    pub fn on_readable(&mut self, meter: &mut Meter) {
        for _ in 0..256 {
            let n = match self.sock.recv_from(&mut self.buf) {
                Ok((n, _)) => n,
                Err(_) => break,
            };
            let now = Instant::now();
            match parse(&self.buf[..n]) {
                Ok(Datagram::HelloAck) => {
                    self.connected_at.get_or_insert(now);
                }
                Ok(Datagram::Media { header, .. }) => {
                    let body = &mut self.buf[HEADER_LEN..n];
                    match self.key.open(&header, body) {
                        Ok(plain) => {
                            if meter.on_payload(self.slot, plain, 1, now)
                                && self.first_media.is_none()
                            {
                                self.first_media = Some(now);
                            }
                        }
                        Err(e) => meter_error(&mut self.errors, e.to_string()),
                    }
                }
                Ok(_) => {}
                Err(e) => meter_error(&mut self.errors, e.to_string()),
            }
        }
    }

    pub fn tick(&mut self, now: Instant, meter: &mut Meter, sending: bool) -> Instant {
        if self.connected_at.is_none() {
            if now >= self.next_hello {
                let _ = self
                    .sock
                    .send_to(&hello(self.call, &self.key_raw), self.relay);
                self.next_hello = now + Duration::from_millis(200);
            }
            return self.next_hello;
        }
        if !sending {
            return now + Duration::from_millis(5);
        }
        let now_ns = meter.ns(now);
        if let Some(src) = self.audio.as_mut() {
            if now >= src.next {
                let stamp = Stamp {
                    kind: Kind::Audio,
                    stream: src.stream,
                    seq: src.seq,
                    sent_ns: now_ns,
                };
                self.plain.clear();
                stamp.write(&mut self.plain, src.size, 0xf8);
                let h = header(111, src.seq as u16, src.seq.wrapping_mul(960), src.stream);
                self.key.seal(&h, &self.plain, &mut self.out);
                let _ = self.sock.send_to(&self.out, self.relay);
                meter.on_sent(&stamp, 1);
                src.advance(now);
            }
        }
        if let Some(src) = self.video.as_mut() {
            if now >= src.next {
                let mut left = src.frame_bytes();
                let ts = src.seq.wrapping_mul(6000);
                while left > 0 {
                    let size = left.min(self.video_packet);
                    left -= size;
                    let stamp = Stamp {
                        kind: Kind::Video,
                        stream: src.stream,
                        seq: self.video_seq,
                        sent_ns: now_ns,
                    };
                    self.plain.clear();
                    stamp.write(&mut self.plain, size.max(crate::payload::STAMP_LEN), 0x55);
                    let h = header(96, self.video_seq as u16, ts, src.stream);
                    self.video_seq = self.video_seq.wrapping_add(1);
                    self.key.seal(&h, &self.plain, &mut self.out);
                    let _ = self.sock.send_to(&self.out, self.relay);
                    meter.on_sent(&stamp, 1);
                }
                src.advance(now);
            }
        }
        let mut next = now + Duration::from_millis(20);
        for s in [&self.audio, &self.video].into_iter().flatten() {
            next = next.min(s.next);
        }
        next
    }
}

fn meter_error(errors: &mut Vec<String>, e: String) {
    if errors.len() < 8 {
        errors.push(e);
    }
}
