//! The media plane end to end over loopback UDP and TCP, with str0m clients that behave like
//! the Mattermost client (RTCPeer): they create `calls-dc`, offer their microphone, answer
//! server offers, answer pings. Real ICE, DTLS, SRTP and SCTP against the real worker pool.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtcd::bridge::{
    notice_queue, CloseReason, Command, DataPlane, MessageType, Notice, NoticeRx, SessionInfo,
    SessionKey, WorkerId,
};
use rtcd::data::media::MediaSettings;
use rtcd::data::net::{self, Endpoint};
use rtcd::data::{PoolSettings, WorkerPool};
use rtcd_proto::dc::{self, DcInbound, DcMessage};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    pool: WorkerPool,
    notices: NoticeRx,
    port: u16,
    /// Notices that arrived for sessions other than the one being waited on.
    parked: Vec<Notice>,
}

impl Server {
    fn start(workers: usize) -> Server {
        let port = free_udp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ep = Endpoint {
            local: addr,
            advertised: addr,
        };
        let (tx, rx) = notice_queue();
        let pool = WorkerPool::start(
            PoolSettings {
                workers,
                udp: vec![ep],
                tcp: vec![ep],
                candidates: rtcd::data::media::LocalCandidates {
                    udp: vec![addr],
                    tcp: vec![addr],
                },
                media: MediaSettings::default(),
                pin: false,
            },
            tx,
        )
        .unwrap();
        Server {
            pool,
            notices: rx,
            port,
            parked: Vec::new(),
        }
    }

    fn join(&self, worker: usize, session: &str, call: &str) -> SessionKey {
        let key = SessionKey::new("group", session);
        self.pool
            .submit(
                WorkerId(worker),
                Command::Join(SessionInfo {
                    key: key.clone(),
                    call_id: Arc::from(call),
                    user_id: Arc::from(format!("user-{session}").as_str()),
                    av1_support: false,
                    dc_signaling: false,
                }),
            )
            .unwrap();
        key
    }

    fn signal(&self, worker: usize, key: &SessionKey, t: MessageType, data: Vec<u8>) {
        self.pool
            .submit(
                WorkerId(worker),
                Command::Signal {
                    key: key.clone(),
                    msg_type: t,
                    data,
                },
            )
            .unwrap();
    }

    /// All notices available now (non-blocking).
    fn poll_notices(&mut self) -> Vec<Notice> {
        let mut out = std::mem::take(&mut self.parked);
        while let Ok(n) = self.notices.try_recv() {
            out.push(n);
        }
        out
    }
}

enum Transport {
    Udp(UdpSocket),
    Tcp(TcpStream, Vec<u8>),
}

/// A client peer driven like RTCPeer: offers mic + `calls-dc`, answers server offers.
struct Client {
    key: SessionKey,
    worker: usize,
    rtc: Rtc,
    transport: Transport,
    local: SocketAddr,
    server: SocketAddr,
    dc: Option<ChannelId>,
    dc_open: bool,
    mic: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    /// Received RTP packets per incoming mid.
    received: HashMap<Mid, usize>,
    media_maps: Vec<Vec<(String, dc::MediaMapEntry)>>,
    pongs: usize,
    lock_replies: Vec<bool>,
    vad: Vec<bool>,
    closed: Option<CloseReason>,
    connected: bool,
    next_send: Instant,
    media_time: u64,
    candidates: usize,
    screen: Option<Mid>,
    next_video: Instant,
    video_time: u64,
    keyframe_requests: usize,
    video_frames: HashMap<Mid, usize>,
}

impl Client {
    fn new(server: &Server, worker: usize, session: &str, call: &str, tcp: bool) -> Client {
        let server_addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let (transport, local) = if tcp {
            let s = TcpStream::connect(server_addr).unwrap();
            s.set_nonblocking(true).unwrap();
            let local = s.local_addr().unwrap();
            (Transport::Tcp(s, Vec::new()), local)
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            let local = s.local_addr().unwrap();
            (Transport::Udp(s), local)
        };
        let now = Instant::now();
        let mut rtc = Rtc::builder().build(now);
        let cand = if tcp {
            Candidate::builder()
                .tcp()
                .host(local)
                .tcptype(str0m::net::TcpType::Active)
                .build()
                .unwrap()
        } else {
            Candidate::host(local, "udp").unwrap()
        };
        rtc.add_local_candidate(cand);
        let key = server.join(worker, session, call);
        let mut api = rtc.sdp_api();
        let mic = api.add_media(
            MediaKind::Audio,
            Direction::SendRecv,
            Some(format!("stream-{session}")),
            None,
            None,
        );
        let dc = api.add_channel("calls-dc".to_string());
        let (offer, pending) = api.apply().unwrap();
        let json = serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()});
        server.signal(
            worker,
            &key,
            MessageType::Sdp,
            serde_json::to_vec(&json).unwrap(),
        );
        Client {
            key,
            worker,
            rtc,
            transport,
            local,
            server: server_addr,
            dc: Some(dc),
            dc_open: false,
            mic: Some(mic),
            pending: Some(pending),
            received: HashMap::new(),
            media_maps: Vec::new(),
            pongs: 0,
            lock_replies: Vec::new(),
            vad: Vec::new(),
            closed: None,
            connected: false,
            next_send: now,
            media_time: 0,
            candidates: 0,
            screen: None,
            next_video: now,
            video_time: 0,
            keyframe_requests: 0,
            video_frames: HashMap::new(),
        }
    }

    fn proto(&self) -> Protocol {
        match self.transport {
            Transport::Udp(_) => Protocol::Udp,
            Transport::Tcp(..) => Protocol::Tcp,
        }
    }

    fn on_notice(&mut self, server: &Server, n: Notice) {
        match n {
            Notice::Signal {
                msg_type: MessageType::Sdp,
                data,
                ..
            } => {
                let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                let sdp = v["sdp"].as_str().unwrap();
                match v["type"].as_str().unwrap() {
                    "answer" => {
                        let pending = self.pending.take().expect("answer without offer");
                        self.rtc
                            .sdp_api()
                            .accept_answer(pending, SdpAnswer::from_sdp_string(sdp).unwrap())
                            .unwrap();
                    }
                    "offer" => {
                        let answer = self
                            .rtc
                            .sdp_api()
                            .accept_offer(SdpOffer::from_sdp_string(sdp).unwrap())
                            .unwrap();
                        let json =
                            serde_json::json!({"type": "answer", "sdp": answer.to_sdp_string()});
                        server.signal(
                            self.worker,
                            &self.key,
                            MessageType::Sdp,
                            serde_json::to_vec(&json).unwrap(),
                        );
                    }
                    other => panic!("unexpected sdp type {other}"),
                }
            }
            Notice::Signal {
                msg_type: MessageType::Ice,
                data,
                ..
            } => {
                let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(v["type"], "candidate", "rtcd wraps candidates");
                let line = v["candidate"]["candidate"].as_str().unwrap();
                assert!(v["candidate"]["sdpMid"].is_string());
                assert_eq!(v["candidate"]["sdpMLineIndex"], 0);
                let c = Candidate::from_sdp_string(line).unwrap();
                self.candidates += 1;
                self.rtc.add_remote_candidate(c);
            }
            Notice::Vad { on, .. } => self.vad.push(on),
            Notice::Closed { reason, .. } => self.closed = Some(reason),
            other => panic!("unexpected notice {other:?}"),
        }
    }

    fn read_transport(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        for _ in 0..64 {
            let data: Vec<Vec<u8>> = match &mut self.transport {
                Transport::Udp(s) => match s.recv_from(&mut buf) {
                    Ok((n, _)) => vec![buf[..n].to_vec()],
                    Err(_) => return,
                },
                Transport::Tcp(s, inbuf) => {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => {}
                        Ok(n) => inbuf.extend_from_slice(&buf[..n]),
                    }
                    let mut frames = Vec::new();
                    while inbuf.len() >= 2 {
                        let len = u16::from_be_bytes([inbuf[0], inbuf[1]]) as usize;
                        if inbuf.len() < 2 + len {
                            break;
                        }
                        frames.push(inbuf[2..2 + len].to_vec());
                        inbuf.drain(..2 + len);
                    }
                    if frames.is_empty() {
                        return;
                    }
                    frames
                }
            };
            for d in data {
                let proto = self.proto();
                let r = Receive::new(proto, self.server, self.local, &d).unwrap();
                self.rtc.handle_input(Input::Receive(now, r)).unwrap();
                self.drain(now);
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        match &mut self.transport {
            Transport::Udp(s) => {
                let _ = s.send_to(bytes, self.server);
            }
            Transport::Tcp(s, _) => {
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(bytes);
                s.set_nonblocking(false).unwrap();
                s.write_all(&framed).unwrap();
                s.set_nonblocking(true).unwrap();
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(_) => return,
                Output::Transmit(t) => self.send(&t.contents),
                Output::Event(e) => self.on_event(e, now),
            }
        }
    }

    fn on_event(&mut self, e: Event, _now: Instant) {
        match e {
            Event::Connected => self.connected = true,
            Event::ChannelOpen(id, _) => {
                self.dc = Some(id);
                self.dc_open = true;
            }
            Event::ChannelData(d) => {
                if !d.binary {
                    assert_eq!(&d.data[..], b"pong");
                    self.pongs += 1;
                    return;
                }
                match dc::decode_dc(&d.data).unwrap() {
                    DcInbound::Message(DcMessage::Pong) => self.pongs += 1,
                    DcInbound::Message(DcMessage::MediaMap(m)) => self.media_maps.push(m),
                    DcInbound::Message(DcMessage::LockResponse(b)) => self.lock_replies.push(b),
                    other => panic!("unexpected dc message {other:?}"),
                }
            }
            Event::MediaData(d) => {
                if d.params.spec().codec == Codec::Vp8 {
                    *self.video_frames.entry(d.mid).or_default() += 1;
                } else {
                    *self.received.entry(d.mid).or_default() += 1;
                }
            }
            Event::KeyframeRequest(_) => self.keyframe_requests += 1,
            _ => {}
        }
    }

    fn dc_write(&mut self, binary: bool, bytes: &[u8]) {
        let id = self.dc.unwrap();
        let ok = self.rtc.channel(id).unwrap().write(binary, bytes).unwrap();
        assert!(ok);
        self.drain(Instant::now());
    }

    /// Sends 20 ms of "Opus" with an audio level, loud (`speaking`) or silent.
    fn send_audio(&mut self, now: Instant, speaking: bool) {
        if !self.connected || now < self.next_send {
            return;
        }
        self.next_send = now + Duration::from_millis(20);
        let Some(mid) = self.mic else { return };
        let pt = self
            .rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
            .unwrap();
        self.media_time += 960;
        // Alternating levels give the standard deviation rtcd's VAD looks for.
        let level: i8 = if speaking {
            if (self.media_time / 960).is_multiple_of(2) {
                -5
            } else {
                -60
            }
        } else {
            -127
        };
        if let Some(w) = self.rtc.writer(mid) {
            let _ = w.audio_level(level, speaking).write(
                pt,
                now,
                MediaTime::from_90khz(self.media_time),
                vec![0xf8u8; 60],
            );
        }
        self.drain(now);
    }

    /// Shares a screen as the webapp does: ScreenOn first, then take the lock, add the
    /// track and offer; unlock once the answer is applied.
    fn start_screen(&mut self, server: &mut Server) {
        let stream = format!("screen-{}", self.key.session_id);
        let on = serde_json::json!({ "screenStreamID": stream });
        server.signal(
            self.worker,
            &self.key,
            MessageType::ScreenOn,
            serde_json::to_vec(&on).unwrap(),
        );
        self.dc_write(true, &[0x07]);
        let mut me = [self];
        assert!(run_until(
            server,
            &mut me,
            Duration::from_secs(5),
            &[],
            |cs| !cs[0].lock_replies.is_empty()
        ));
        let this = me.into_iter().next().unwrap();
        assert_eq!(this.lock_replies.last(), Some(&true), "lock granted");
        let mut api = this.rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream),
            None,
            None,
        );
        let (offer, pending) = api.apply().unwrap();
        this.pending = Some(pending);
        this.screen = Some(mid);
        let json = serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()});
        server.signal(
            this.worker,
            &this.key,
            MessageType::Sdp,
            serde_json::to_vec(&json).unwrap(),
        );
        let mut me = [this];
        assert!(
            run_until(server, &mut me, Duration::from_secs(5), &[], |cs| cs[0]
                .pending
                .is_none()),
            "answer to the screen offer"
        );
        me[0].dc_write(true, &[0x08]);
    }

    /// Sends one VP8 "frame" on the screen track.
    fn send_video(&mut self, now: Instant) {
        let Some(mid) = self.screen else { return };
        if now < self.next_video {
            return;
        }
        self.next_video = now + Duration::from_millis(50);
        let pt = self
            .rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
            .unwrap();
        self.video_time += 4500;
        // A VP8 keyframe-looking payload (P bit clear, start code).
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        frame.extend_from_slice(&[0x55; 400]);
        if let Some(w) = self.rtc.writer(mid) {
            let _ = w.write(pt, now, MediaTime::from_90khz(self.video_time), frame);
        }
        self.drain(now);
    }

    fn tick(&mut self, now: Instant) {
        self.read_transport(now);
        if self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain(now);
        }
    }

    fn total_received(&self) -> usize {
        self.received.values().sum()
    }
}

/// Drives server notices and clients until `done` or the deadline.
fn run_until(
    server: &mut Server,
    clients: &mut [&mut Client],
    limit: Duration,
    speaking: &[bool],
    mut done: impl FnMut(&[&mut Client]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        for n in server.poll_notices() {
            let key = match &n {
                Notice::Signal { key, .. }
                | Notice::Vad { key, .. }
                | Notice::Closed { key, .. } => key.clone(),
                Notice::Stat(_) => continue,
            };
            match clients.iter_mut().find(|c| c.key == key) {
                Some(c) => c.on_notice(server, n),
                None => server.parked.push(n),
            }
        }
        let now = Instant::now();
        for (i, c) in clients.iter_mut().enumerate() {
            c.tick(now);
            c.send_audio(now, speaking.get(i).copied().unwrap_or(false));
            c.send_video(now);
        }
        if done(clients) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn three_clients_in_a_call_receive_each_others_audio() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    let mut c = Client::new(&server, 0, "sessC", "call1", false);
    let ok = run_until(
        &mut server,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(20),
        &[true, true, true],
        |cs| {
            cs.iter()
                .all(|c| c.received.len() >= 2 && c.received.values().all(|n| *n >= 20))
        },
    );
    for cl in [&a, &b, &c] {
        assert!(cl.connected, "{} connected", cl.key);
        assert!(cl.candidates >= 1, "server trickled its candidates");
    }
    assert!(
        ok,
        "each client hears the two others: a={:?} b={:?} c={:?}",
        a.received, b.received, c.received
    );
    // Every server offer was preceded by a MediaMap naming the forwarded voice tracks.
    for cl in [&a, &b, &c] {
        let last = cl.media_maps.last().expect("media map sent");
        assert!(last.iter().all(|(_, e)| e.kind == "voice"));
        assert_eq!(last.len(), 2);
    }
}

#[test]
fn data_channel_answers_pings_locks_and_legacy_text_ping() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(10),
        &[],
        |cs| cs[0].dc_open
    ));
    a.dc_write(true, &[0x01]); // Ping as the browser encodes it
    a.dc_write(false, b"ping"); // old mobile clients
    a.dc_write(true, &[0x07]); // Lock
    a.dc_write(true, &[0x07]); // Lock again: refused, we hold it
    a.dc_write(true, &[0x08]); // Unlock
    a.dc_write(true, &[0x07]); // Lock: granted again
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(5),
        &[],
        |cs| cs[0].pongs >= 2 && cs[0].lock_replies.len() >= 3
    ));
    assert_eq!(a.lock_replies, vec![true, false, true]);
}

#[test]
fn mute_stops_forwarding_with_voice_off_and_unmute_resumes() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[true, false],
            |cs| { cs[1].total_received() >= 60 && cs[0].vad.contains(&true) }
        ),
        "b hears a and a's voice activity is detected: vad={:?} b={:?}",
        a.vad,
        b.received
    );
    let key = a.key.clone();
    server.signal(0, &key, MessageType::Mute, Vec::new());
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(5),
            &[true, false],
            |cs| { cs[0].vad.last() == Some(&false) }
        ),
        "mute forces VoiceOff"
    );
    // Let in-flight packets land, then check nothing more arrives.
    run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_millis(300),
        &[true, false],
        |_| false,
    );
    let before = b.total_received();
    run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[true, false],
        |_| false,
    );
    assert_eq!(b.total_received(), before, "muted voice is not forwarded");
    server.signal(0, &key, MessageType::Unmute, Vec::new());
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(5),
            &[true, false],
            |cs| { cs[1].total_received() >= before + 20 }
        ),
        "unmute resumes forwarding"
    );
}

#[test]
fn leave_closes_the_session_and_others_stop_receiving_it() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(20),
        &[true, false],
        |cs| cs[1].total_received() >= 20
    ));
    server
        .pool
        .submit(WorkerId(0), Command::Leave { key: a.key.clone() })
        .unwrap();
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        &[true, false],
        |cs| cs[0].closed.is_some()
    ));
    assert_eq!(a.closed, Some(CloseReason::Leave));
    run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_millis(300),
        &[true, false],
        |_| false,
    );
    let before = b.total_received();
    run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[true, false],
        |_| false,
    );
    assert_eq!(b.total_received(), before, "the leaver's audio stops");
}

#[test]
fn two_calls_stay_isolated() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    let mut c = Client::new(&server, 0, "sessC", "call2", false);
    let mut d = Client::new(&server, 0, "sessD", "call2", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b, &mut c, &mut d],
        Duration::from_secs(20),
        &[true, true, true, true],
        |cs| { cs.iter().all(|c| c.total_received() >= 30) }
    ));
    for cl in [&a, &b, &c, &d] {
        assert_eq!(
            cl.received.len(),
            1,
            "{} receives exactly one remote track",
            cl.key
        );
        assert_eq!(cl.media_maps.last().unwrap().len(), 1);
    }
}

#[test]
fn ice_over_tcp_carries_media() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", true);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[true, true],
            |cs| { cs[0].total_received() >= 20 && cs[1].total_received() >= 20 }
        ),
        "tcp client a={:?} udp client b={:?}",
        a.received,
        b.received
    );
}

#[test]
fn sessions_owned_by_the_second_worker_are_steered_to_it() {
    let mut server = Server::start(2);
    // Both sessions live on worker 1; the kernel may deliver their packets to worker 0.
    let mut a = Client::new(&server, 1, "sessA", "call1", false);
    let mut b = Client::new(&server, 1, "sessB", "call1", false);
    let mut c = Client::new(&server, 1, "sessC", "call1", true);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b, &mut c],
            Duration::from_secs(20),
            &[true, true, true],
            |cs| {
                cs.iter()
                    .all(|c| c.received.len() == 2 && c.total_received() >= 40)
            }
        ),
        "a={:?} b={:?} c={:?}",
        a.received,
        b.received,
        c.received
    );
    let counters = server.pool.counters();
    assert_eq!(counters.len(), 2);
    assert_eq!(counters[1].sessions, 3);
}

#[test]
fn a_session_without_an_offer_is_closed_after_the_signaling_timeout() {
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ep = Endpoint {
        local: addr,
        advertised: addr,
    };
    let (tx, mut rx) = notice_queue();
    let pool = WorkerPool::start(
        PoolSettings {
            workers: 1,
            udp: vec![ep],
            tcp: vec![],
            candidates: Default::default(),
            media: MediaSettings {
                signaling_timeout: Duration::from_millis(200),
                ..MediaSettings::default()
            },
            pin: false,
        },
        tx,
    )
    .unwrap();
    let key = SessionKey::new("g", "s1");
    pool.submit(
        WorkerId(0),
        Command::Join(SessionInfo {
            key: key.clone(),
            call_id: "c".into(),
            user_id: "u".into(),
            av1_support: false,
            dc_signaling: false,
        }),
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Ok(Notice::Closed { key: k, reason }) => {
                assert_eq!(k, key);
                assert_eq!(reason, CloseReason::SignalingTimeout);
                break;
            }
            Ok(_) => {}
            Err(_) => {
                assert!(Instant::now() < end, "no close notice");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let _ = net::probe_ports(&[], &[]);
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let mut server = Server::start(1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", server.port);
    for bad in [
        &b"\x00\x01garbage"[..],
        &[0x16, 0xfe, 0xfd][..],
        &[0x80; 40][..],
        &[][..],
    ] {
        sock.send_to(bad, &target).unwrap();
    }
    // A real session still works afterwards.
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(10),
        &[],
        |cs| cs[0].dc_open
    ));
    let drops: u64 = server.pool.counters()[0]
        .drops
        .iter()
        .filter(|(r, _)| *r == "unknown_source" || *r == "malformed")
        .map(|(_, v)| v)
        .sum();
    assert!(drops >= 3, "{:?}", server.pool.counters());
}

#[test]
fn screen_share_reaches_viewers_with_a_screen_media_map_and_a_keyframe_request() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(20),
        &[true, true],
        |cs| { cs.iter().all(|c| c.total_received() >= 5) }
    ));
    a.start_screen(&mut server);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[false, false],
            |cs| { cs[1].video_frames.values().sum::<usize>() >= 10 }
        ),
        "viewer decodes the screen: frames={:?} maps={:?}",
        b.video_frames,
        b.media_maps.last()
    );
    let map = b.media_maps.last().unwrap();
    assert!(
        map.iter()
            .any(|(_, e)| e.kind == "screen" && e.sender_id == "sessA"),
        "{map:?}"
    );
    assert!(
        a.keyframe_requests >= 1,
        "the new viewer triggered a PLI to the sharer"
    );
    // ScreenOff removes the screen track at the viewer by renegotiation.
    let offers_before = b.media_maps.len();
    server.signal(0, &a.key, MessageType::ScreenOff, Vec::new());
    a.screen = None;
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(10),
            &[false, false],
            |cs| { cs[1].media_maps.len() > offers_before }
        ),
        "a removal offer follows ScreenOff"
    );
    assert!(b
        .media_maps
        .last()
        .unwrap()
        .iter()
        .all(|(_, e)| e.kind != "screen"));
}

/// The whole daemon: a plugin-like WebSocket client relays a str0m client's signaling
/// through the control plane to a real worker, as the Calls plugin does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_through_the_plugin_websocket_and_the_daemon() {
    use crate::common::*;
    use rtcd_proto::ws::{ClientMessage, RtcMessage};

    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path(), &Setup::default());
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ep = Endpoint {
        local: addr,
        advertised: addr,
    };
    let (tx, rx) = notice_queue();
    let pool = Arc::new(
        WorkerPool::start(
            PoolSettings {
                workers: 2,
                udp: vec![ep],
                tcp: vec![],
                candidates: rtcd::data::media::LocalCandidates {
                    udp: vec![addr],
                    tcp: vec![],
                },
                media: MediaSettings::default(),
                pin: false,
            },
            tx,
        )
        .unwrap(),
    );
    let control = rtcd::control::ControlPlane::start(&cfg, pool.clone(), rx, Default::default())
        .await
        .unwrap();
    let base = format!("http://{}", control.local_addr);
    let r = http()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"clientID": "mm", "authKey": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut ws = ws_connect(
        &format!("ws://{}/ws", control.local_addr),
        &basic("mm", KEY),
    )
    .await
    .unwrap();
    let _hello = next_binary(&mut ws).await;
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        join_frame("call1", "user1", "sess1").into(),
    ))
    .await
    .unwrap();

    // The end user's peer.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let local = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_channel("calls-dc".to_string());
    let (offer, pending) = api.apply().unwrap();
    let mut pending = Some(pending);
    let offer_json = serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        rtc_frame("sess1", 2, offer_json.as_bytes()).into(),
    ))
    .await
    .unwrap();

    let mut dc_open = false;
    let mut got_answer = false;
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && !dc_open {
        // Plugin side: relay rtcd's messages to the peer.
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) =
            tokio::time::timeout(
                Duration::from_millis(5),
                futures_util::StreamExt::next(&mut ws),
            )
            .await
        {
            match ClientMessage::decode(&b).unwrap() {
                ClientMessage::Rtc(RtcMessage {
                    msg_type,
                    data,
                    group_id,
                    user_id,
                    call_id,
                    ..
                }) => {
                    assert_eq!(
                        (group_id.as_str(), user_id.as_str(), call_id.as_str()),
                        ("mm", "user1", "call1")
                    );
                    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                    if msg_type == MessageType::Sdp {
                        assert_eq!(v["type"], "answer");
                        let ans = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
                        rtc.sdp_api()
                            .accept_answer(pending.take().unwrap(), ans)
                            .unwrap();
                        got_answer = true;
                    } else if msg_type == MessageType::Ice {
                        assert!(got_answer, "candidates trickle after the answer");
                        let c = Candidate::from_sdp_string(
                            v["candidate"]["candidate"].as_str().unwrap(),
                        )
                        .unwrap();
                        rtc.add_remote_candidate(c);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let now = Instant::now();
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            rtc.handle_input(Input::Receive(
                now,
                Receive::new(Protocol::Udp, from, local, &buf[..n]).unwrap(),
            ))
            .unwrap();
        }
        let _ = rtc.handle_input(Input::Timeout(now));
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    let _ = sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::ChannelOpen(..)) => dc_open = true,
                Output::Event(_) => {}
            }
        }
    }
    assert!(got_answer, "the daemon answered the relayed offer");
    assert!(dc_open, "ICE, DTLS and SCTP came up through the daemon");
    // Leave through the plugin: the session closes and the plugin gets `close`.
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        session_frame("leave", "sess1").into(),
    ))
    .await
    .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no close");
        let b = next_binary(&mut ws).await;
        if let ClientMessage::Close { session_id } = ClientMessage::decode(&b).unwrap() {
            assert_eq!(session_id, "sess1");
            break;
        }
    }
    control.shutdown().await;
}
