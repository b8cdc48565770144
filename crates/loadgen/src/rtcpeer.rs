//! One WebRTC participant as the Mattermost client drives it (RTCPeer): it offers its
//! microphone (and a screen track when presenting) plus `calls-dc`, answers the server's
//! re-offers, and sends synthetic Opus/VP8 whose payloads carry a [`Stamp`].
//!
//! push/pull: `on_signal`/`on_readable` push input in, `tick` handles timers and media, and every
//! path drains `poll_output` into the socket and the [`Meter`].

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::UdpSocket;
use rtcd_proto::signaling::{parse_sdp, sdp_json, SdpKind};
use rtcd_proto::ws::{ClientMessage, Join, MessageType, PropValue, RtcMessage};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::meter::{Meter, Source};
use crate::opts::Role;
use crate::payload::{Kind, Stamp};

/// VP8 frame tag + keyframe start code: the SFU sees a real-looking keyframe/interframe bit.
const VP8_KEY: [u8; 10] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
const VP8_INTER: [u8; 10] = [0x11, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0];
/// Where the stamp starts inside a VP8 frame.
pub const VP8_STAMP_AT: usize = 10;

pub struct RtcPeer {
    pub session: String,
    pub slot: usize,
    pub rtc: Rtc,
    pub sock: UdpSocket,
    pub local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mic: Option<Mid>,
    screen: Option<Mid>,
    pub joined_at: Instant,
    pub connected_at: Option<Instant>,
    pub first_media: Option<Instant>,
    pub next_timeout: Instant,
    pub audio: Option<Source>,
    pub video: Option<Source>,
    pt_opus: Option<Pt>,
    pt_vp8: Option<Pt>,
    pub errors: Vec<String>,
    force_keyframe: bool,
    buf: Vec<u8>,
    pub alive: bool,
}

fn rtc_frame(session: &str, t: MessageType, data: Vec<u8>) -> Vec<u8> {
    ClientMessage::Rtc(RtcMessage {
        group_id: String::new(),
        user_id: String::new(),
        session_id: session.to_string(),
        call_id: String::new(),
        msg_type: t,
        data,
    })
    .to_bytes()
}

impl RtcPeer {
    /// A new participant and the WS frames the plugin sends for it: `join`, `ScreenOn` when
    /// presenting, then the client's offer.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session: String,
        call_id: &str,
        role: Role,
        slot: usize,
        streams: (u32, u32),
        opts: &crate::opts::Opts,
        now: Instant,
    ) -> Result<(RtcPeer, Vec<Vec<u8>>), String> {
        let (peer, offer) = Self::plain(session, role, slot, streams, opts, now, true, true)?;
        let session = peer.session.clone();
        let screen_stream = format!("screen-{session}");
        let mut frames = vec![ClientMessage::Join(Join {
            call_id: call_id.to_string(),
            user_id: format!("user-{session}"),
            session_id: session.clone(),
            channel_id: PropValue::Str(format!("chan-{call_id}")),
            av1_support: PropValue::Bool(false),
            dc_signaling: PropValue::Bool(false),
        })
        .to_bytes()];
        if role.video {
            let on = serde_json::json!({ "screenStreamID": screen_stream }).to_string();
            frames.push(rtc_frame(&session, MessageType::ScreenOn, on.into_bytes()));
        }
        if let Some(offer) = offer {
            frames.push(rtc_frame(
                &session,
                MessageType::Sdp,
                sdp_json(SdpKind::Offer, &offer),
            ));
        }
        Ok((peer, frames))
    }

    /// A participant with no signaling attached: with `offer`, it offers its tracks (and
    /// `calls-dc` when `dc`); without, it waits for the server's offer. Binds `opts.local_ip`.
    #[allow(clippy::too_many_arguments)]
    pub fn plain(
        session: String,
        role: Role,
        slot: usize,
        streams: (u32, u32),
        opts: &crate::opts::Opts,
        now: Instant,
        offer: bool,
        dc: bool,
    ) -> Result<(RtcPeer, Option<String>), String> {
        let std_sock = std::net::UdpSocket::bind((opts.local_ip, 0))
            .map_err(|e| format!("bind {}: {e}", opts.local_ip))?;
        std_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let local = std_sock.local_addr().map_err(|e| e.to_string())?;
        let sock = UdpSocket::from_std(std_sock);
        let mut rtc = Rtc::builder().build(now);
        let cand = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(cand);
        let (mic, screen, pending, sdp) = if offer {
            let mut api = rtc.sdp_api();
            let dir = if role.receives {
                Direction::SendRecv
            } else {
                Direction::SendOnly
            };
            let mic = api.add_media(
                MediaKind::Audio,
                dir,
                Some(format!("stream-{session}")),
                None,
                None,
            );
            let screen = role.video.then(|| {
                api.add_media(
                    MediaKind::Video,
                    Direction::SendOnly,
                    Some(format!("screen-{session}")),
                    None,
                    None,
                )
            });
            if dc {
                api.add_channel("calls-dc".to_string());
            }
            let (o, pending) = api
                .apply()
                .ok_or_else(|| "sdp api produced no offer".to_string())?;
            (Some(mic), screen, Some(pending), Some(o.to_sdp_string()))
        } else {
            (None, None, None, None)
        };
        let peer = RtcPeer {
            session,
            slot,
            rtc,
            sock,
            local,
            pending,
            mic,
            screen,
            joined_at: now,
            connected_at: None,
            first_media: None,
            next_timeout: now,
            audio: role
                .audio
                .then(|| Source::audio(streams.0, opts.audio_bytes, now)),
            video: role
                .video
                .then(|| Source::video(streams.1, opts.video_kbps, opts.video_fps, now)),
            pt_opus: None,
            pt_vp8: None,
            errors: Vec::new(),
            force_keyframe: false,
            buf: vec![0u8; 2048],
            alive: true,
        };
        Ok((peer, sdp))
    }

    pub fn leave_frame(&self) -> Vec<u8> {
        ClientMessage::Leave {
            session_id: self.session.clone(),
        }
        .to_bytes()
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 8 {
            self.errors.push(e);
        }
    }

    /// Applies the answer to our pending offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let pending = self
            .pending
            .take()
            .ok_or("answer without a pending offer")?;
        let a = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("answer SDP: {e}"))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, a)
            .map_err(|e| format!("accept answer: {e}"))
    }

    /// Answers a server offer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, String> {
        let o = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("offer SDP: {e}"))?;
        let a = self
            .rtc
            .sdp_api()
            .accept_offer(o)
            .map_err(|e| format!("accept offer: {e}"))?;
        Ok(a.to_sdp_string())
    }

    pub fn record_error(&mut self, e: String) {
        self.error(e);
    }

    /// A relayed `rtc` message from rtcd; returns the frame to send back, if any.
    pub fn on_signal(
        &mut self,
        t: MessageType,
        data: &[u8],
        now: Instant,
        meter: &mut Meter,
    ) -> Option<Vec<u8>> {
        let reply = match t {
            MessageType::Sdp => match parse_sdp(data) {
                Ok(m) if m.kind == SdpKind::Answer => {
                    let Some(pending) = self.pending.take() else {
                        self.error("answer without a pending offer".into());
                        return None;
                    };
                    match SdpAnswer::from_sdp_string(&m.sdp) {
                        Ok(a) => {
                            if let Err(e) = self.rtc.sdp_api().accept_answer(pending, a) {
                                self.error(format!("accept answer: {e}"));
                            }
                        }
                        Err(e) => self.error(format!("answer SDP: {e}")),
                    }
                    None
                }
                Ok(m) => match SdpOffer::from_sdp_string(&m.sdp) {
                    Ok(o) => match self.rtc.sdp_api().accept_offer(o) {
                        Ok(answer) => Some(rtc_frame(
                            &self.session,
                            MessageType::Sdp,
                            sdp_json(SdpKind::Answer, &answer.to_sdp_string()),
                        )),
                        Err(e) => {
                            self.error(format!("accept offer: {e}"));
                            None
                        }
                    },
                    Err(e) => {
                        self.error(format!("offer SDP: {e}"));
                        None
                    }
                },
                Err(e) => {
                    self.error(format!("sdp message: {e}"));
                    None
                }
            },
            MessageType::Ice => {
                match parse_wrapped_candidate(data).and_then(|line| {
                    Candidate::from_sdp_string(&line).map_err(|e| format!("candidate: {e}"))
                }) {
                    Ok(c) => self.rtc.add_remote_candidate(c),
                    Err(e) => self.error(e),
                }
                None
            }
            _ => None,
        };
        self.drain(now, meter);
        reply
    }

    pub fn on_readable(&mut self, meter: &mut Meter) {
        for _ in 0..256 {
            let (n, from) = match self.sock.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(_) => break,
            };
            let now = Instant::now();
            let input = match Receive::new(Protocol::Udp, from, self.local, &self.buf[..n]) {
                Ok(r) => Input::Receive(now, r),
                Err(_) => continue,
            };
            if let Err(e) = self.rtc.handle_input(input) {
                self.error(format!("input: {e}"));
            }
            self.drain(now, meter);
        }
    }

    /// Timers and media due at `now`; returns the next deadline.
    pub fn tick(&mut self, now: Instant, meter: &mut Meter, sending: bool) -> Instant {
        if now >= self.next_timeout {
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                self.alive = false;
            }
            self.drain(now, meter);
        }
        if self.connected_at.is_some() && sending {
            self.send_media(now, meter);
        }
        let mut next = self.next_timeout;
        for s in [&self.audio, &self.video].into_iter().flatten() {
            next = next.min(s.next);
        }
        next
    }

    fn pt(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    fn send_media(&mut self, now: Instant, meter: &mut Meter) {
        let now_ns = meter.ns(now);
        if let (Some(src), Some(mid)) = (self.audio.as_mut(), self.mic) {
            if now >= src.next {
                if self.pt_opus.is_none() {
                    self.pt_opus = self
                        .rtc
                        .codec_config()
                        .iter()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt());
                }
                let stamp = Stamp {
                    kind: Kind::Audio,
                    stream: src.stream,
                    seq: src.seq,
                    sent_ns: now_ns,
                };
                let mut data = Vec::with_capacity(src.size);
                stamp.write(&mut data, src.size, 0xf8);
                let ts = MediaTime::from_90khz(src.frames * 1800);
                src.advance(now);
                if let (Some(pt), Some(w)) = (self.pt_opus, self.rtc.writer(mid)) {
                    if w.audio_level(-30, true).write(pt, now, ts, data).is_ok() {
                        meter.on_sent(&stamp, 1);
                    }
                }
            }
        }
        if self.pt_vp8.is_none() && self.video.is_some() {
            self.pt_vp8 = self.pt(Codec::Vp8);
        }
        if let (Some(src), Some(mid)) = (self.video.as_mut(), self.screen) {
            if now >= src.next {
                let key = src.is_keyframe() || self.force_keyframe;
                self.force_keyframe = false;
                let size = if key { src.size * 3 } else { src.size };
                let stamp = Stamp {
                    kind: Kind::Video,
                    stream: src.stream,
                    seq: src.seq,
                    sent_ns: now_ns,
                };
                let mut data = Vec::with_capacity(size + VP8_STAMP_AT);
                data.extend_from_slice(if key { &VP8_KEY } else { &VP8_INTER });
                stamp.write(&mut data, size, 0x55);
                let ts =
                    MediaTime::from_90khz(src.frames * (src.period.as_micros() as u64 * 90 / 1000));
                src.advance(now);
                let packets = data.len().div_ceil(1100) as u64;
                if let (Some(pt), Some(w)) = (self.pt_vp8, self.rtc.writer(mid)) {
                    if w.write(pt, now, ts, data).is_ok() {
                        meter.on_sent(&stamp, packets);
                    }
                }
            }
        }
        self.drain(now, meter);
    }

    pub fn drain(&mut self, now: Instant, meter: &mut Meter) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected_at = Some(now),
                    Event::MediaData(d) => {
                        let packets = d.seq_range.end().saturating_sub(**d.seq_range.start()) + 1;
                        let at = if d.params.spec().codec == Codec::Vp8 {
                            VP8_STAMP_AT
                        } else {
                            0
                        };
                        let body = d.data.get(at..).unwrap_or(&[]);
                        if meter.on_payload(self.slot, body, packets, d.network_time)
                            && self.first_media.is_none()
                        {
                            self.first_media = Some(d.network_time);
                        }
                    }
                    Event::KeyframeRequest(_) => self.force_keyframe = true,
                    _ => {}
                },
                Err(e) => {
                    self.error(format!("poll: {e}"));
                    self.alive = false;
                    self.next_timeout = now + std::time::Duration::from_secs(3600);
                    return;
                }
            }
        }
    }
}

/// rtcd's outbound candidate: `{"type":"candidate","candidate":{"candidate":"candidate:…", …}}`
/// (spec §4.2). Returns the candidate line; anything else is refused with the reason.
pub fn parse_wrapped_candidate(data: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("candidate JSON: {e}"))?;
    if v.get("type").and_then(|t| t.as_str()) != Some("candidate") {
        return Err("candidate message without type \"candidate\"".into());
    }
    v.get("candidate")
        .and_then(|c| c.get("candidate"))
        .and_then(|c| c.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "candidate message without candidate.candidate".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_candidates_parse_and_malformed_ones_say_why() {
        let ok = br#"{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host","sdpMid":"0","sdpMLineIndex":0}}"#;
        assert!(parse_wrapped_candidate(ok).is_ok_and(|l| l.starts_with("candidate:1")));
        assert!(parse_wrapped_candidate(b"{").is_err_and(|e| e.contains("JSON")));
        assert!(parse_wrapped_candidate(br#"{"type":"offer"}"#).is_err());
        assert!(parse_wrapped_candidate(br#"{"type":"candidate","candidate":{}}"#).is_err());
    }
}
