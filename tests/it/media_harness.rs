//! Test harness for the media plane: the real worker pool on loopback, and str0m clients that
//! behave like the Mattermost client (RTCPeer): they create `calls-dc`, offer their
//! microphone, answer server offers, answer pings, take the lock to share a screen.
#![allow(dead_code)]

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
use rtcd::data::net::Endpoint;
use rtcd::data::{PoolSettings, WorkerPool};
use rtcd_proto::dc::{self, DcInbound, DcMessage};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// A port that is free for both UDP and TCP right now. Picked below the kernel's
/// ephemeral range (32768+) so that other tests' client sockets cannot take it, and inside
/// upstream's allowed RTC port range (80-49151).
pub fn free_udp_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let udp = UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP after 1000 tries");
}

/// The UDP I/O backend data-plane tests run on: `RTCD_TEST_IO_BACKEND=portable|io_uring`
/// (default: auto, i.e. io_uring where available). `scripts/test.sh` runs them under both.
pub fn test_io() -> rtcd::data::io::IoChoice {
    use rtcd::data::io::IoChoice;
    match std::env::var("RTCD_TEST_IO_BACKEND").as_deref() {
        Ok("portable") => IoChoice::Portable,
        Ok("io_uring") => IoChoice::IoUring,
        _ => IoChoice::Auto,
    }
}

pub struct Server {
    pub pool: WorkerPool,
    pub notices: NoticeRx,
    pub port: u16,
    /// Notices that arrived for sessions other than the one being waited on.
    pub parked: Vec<Notice>,
}

impl Server {
    pub fn start(workers: usize) -> Server {
        Self::start_with(workers, MediaSettings::default())
    }

    /// As `start`, with shortened media timings.
    pub fn start_with(workers: usize, media: MediaSettings) -> Server {
        // Another test process can take the port between the pick and the bind: pick again.
        let mut last = None;
        for _ in 0..10 {
            match Self::try_start(workers, media) {
                Ok(s) => return s,
                Err(e) => last = Some(e),
            }
        }
        panic!("worker pool did not start: {last:?}");
    }

    fn try_start(workers: usize, media: MediaSettings) -> Result<Server, rtcd::data::StartError> {
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
                media,
                pin: false,
                io: test_io(),
            },
            tx,
        )?;
        Ok(Server {
            pool,
            notices: rx,
            port,
            parked: Vec::new(),
        })
    }

    pub fn join(&self, worker: usize, session: &str, call: &str) -> SessionKey {
        self.join_with(worker, session, call, false)
    }

    pub fn join_with(
        &self,
        worker: usize,
        session: &str,
        call: &str,
        dc_signaling: bool,
    ) -> SessionKey {
        let key = SessionKey::new("group", session);
        self.pool
            .submit(
                WorkerId(worker),
                Command::Join(SessionInfo {
                    key: key.clone(),
                    call_id: Arc::from(call),
                    user_id: Arc::from(format!("user-{session}").as_str()),
                    av1_support: false,
                    dc_signaling,
                }),
            )
            .unwrap();
        key
    }

    pub fn signal(&self, worker: usize, key: &SessionKey, t: MessageType, data: Vec<u8>) {
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

    /// Media packets forwarded by all workers so far.
    pub fn pool_counters_tx(&self) -> u64 {
        use rtcd::bridge::DataPlane;
        self.pool.counters().iter().map(|c| c.tx_packets).sum()
    }

    /// All notices available now (non-blocking).
    pub fn poll_notices(&mut self) -> Vec<Notice> {
        let mut out = std::mem::take(&mut self.parked);
        while let Ok(n) = self.notices.try_recv() {
            out.push(n);
        }
        out
    }
}

pub enum Transport {
    Udp(UdpSocket),
    Tcp(TcpStream, Vec<u8>),
}

/// A client peer driven like RTCPeer: offers mic + `calls-dc`, answers server offers.
pub struct Client {
    pub key: SessionKey,
    pub worker: usize,
    pub rtc: Rtc,
    pub transport: Transport,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub dc: Option<ChannelId>,
    pub dc_open: bool,
    pub mic: Option<Mid>,
    pub pending: Option<SdpPendingOffer>,
    /// Received RTP packets per incoming mid.
    pub received: HashMap<Mid, usize>,
    pub media_maps: Vec<Vec<(String, dc::MediaMapEntry)>>,
    pub pongs: usize,
    pub lock_replies: Vec<bool>,
    pub vad: Vec<bool>,
    pub closed: Option<CloseReason>,
    pub connected: bool,
    pub next_send: Instant,
    pub media_time: u64,
    pub candidates: usize,
    pub screen: Option<Mid>,
    pub dc_offers: usize,
    pub simulcast: bool,
    /// Simulcast: stop sending `h` (as a browser does when its uplink cannot carry it).
    pub pause_high: bool,
    /// Percentage of datagrams dropped in each direction (deterministic), like an nftables
    /// `numgen random mod 100 < N drop` rule.
    pub loss_percent: u64,
    pub rng: u64,
    pub video_sent: usize,
    pub pending_dc_out: Vec<Vec<u8>>,
    pub next_video: Instant,
    pub video_time: u64,
    pub keyframe_requests: usize,
    pub video_frames: HashMap<Mid, usize>,
    /// Received video payload bytes per m-line (tells a simulcast layer by its size).
    pub video_bytes: HashMap<Mid, usize>,
    /// The `a=setup` values of every answer rtcd sent to our offers.
    pub answer_setups: Vec<String>,
    /// Sends UDP through rtcd's portable backend with GSO: what one `drain` produces for
    /// the server leaves in coalesced bursts (see [`Client::send_with_gso`]).
    pub gso: Option<Box<dyn rtcd::data::io::UdpIo>>,
}

impl Client {
    pub fn new(server: &Server, worker: usize, session: &str, call: &str, tcp: bool) -> Client {
        Self::new_with(server, worker, session, call, tcp, false)
    }

    pub fn new_with(
        server: &Server,
        worker: usize,
        session: &str,
        call: &str,
        tcp: bool,
        dc_signaling: bool,
    ) -> Client {
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
        let key = server.join_with(worker, session, call, dc_signaling);
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
            dc_offers: 0,
            simulcast: false,
            pause_high: false,
            loss_percent: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            video_sent: 0,
            pending_dc_out: Vec::new(),
            next_video: now,
            video_time: 0,
            keyframe_requests: 0,
            video_frames: HashMap::new(),
            video_bytes: HashMap::new(),
            answer_setups: Vec::new(),
            gso: None,
        }
    }

    fn proto(&self) -> Protocol {
        match self.transport {
            Transport::Udp(_) => Protocol::Udp,
            Transport::Tcp(..) => Protocol::Tcp,
        }
    }

    pub fn on_notice(&mut self, server: &Server, n: Notice) {
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
                        self.answer_setups.extend(
                            sdp.lines()
                                .filter_map(|l| l.trim_end().strip_prefix("a=setup:"))
                                .map(str::to_string),
                        );
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
                if self.lose() {
                    continue;
                }
                let proto = self.proto();
                let r = Receive::new(proto, self.server, self.local, &d).unwrap();
                self.rtc.handle_input(Input::Receive(now, r)).unwrap();
                self.drain(now);
            }
        }
    }

    /// Whether the next datagram is lost.
    pub fn lose(&mut self) -> bool {
        if self.loss_percent == 0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100 < self.loss_percent
    }

    fn send(&mut self, bytes: &[u8]) {
        if self.lose() {
            return;
        }
        match &mut self.transport {
            Transport::Udp(_) if self.gso.is_some() => {
                if let Some(io) = self.gso.as_mut() {
                    io.send(0, self.server, bytes.to_vec());
                }
            }
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

    pub fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(_) => {
                    if let Some(io) = self.gso.as_mut() {
                        io.flush();
                    }
                    return;
                }
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
                    DcInbound::Message(DcMessage::Sdp(z)) => {
                        // dcSignaling: the server's offer comes zlib-compressed over the
                        // channel; answer the same way.
                        let json = dc::inflate_sdp(&z, dc::MAX_SDP_LEN).unwrap();
                        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
                        assert_eq!(v["type"], "offer");
                        let answer = self
                            .rtc
                            .sdp_api()
                            .accept_offer(
                                SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap(),
                            )
                            .unwrap();
                        let json =
                            serde_json::json!({"type": "answer", "sdp": answer.to_sdp_string()});
                        let msg = DcMessage::Sdp(dc::compress_sdp(json.to_string().as_bytes()));
                        self.dc_offers += 1;
                        self.pending_dc_out.push(msg.to_bytes());
                    }
                    other => panic!("unexpected dc message {other:?}"),
                }
            }
            Event::MediaData(d) => {
                if d.params.spec().codec == Codec::Vp8 {
                    *self.video_frames.entry(d.mid).or_default() += 1;
                    *self.video_bytes.entry(d.mid).or_default() += d.data.len();
                } else {
                    *self.received.entry(d.mid).or_default() += 1;
                }
            }
            Event::KeyframeRequest(_) => self.keyframe_requests += 1,
            _ => {}
        }
    }

    pub fn dc_write(&mut self, binary: bool, bytes: &[u8]) {
        let id = self.dc.unwrap();
        let ok = self.rtc.channel(id).unwrap().write(binary, bytes).unwrap();
        assert!(ok);
        self.drain(Instant::now());
    }

    /// Sends 20 ms of "Opus" with an audio level, loud (`speaking`) or silent.
    pub fn send_audio(&mut self, now: Instant, speaking: bool) {
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
    pub fn start_screen(&mut self, server: &mut Server) {
        self.start_screen_with(server, false)
    }

    /// As `start_screen`, optionally with `l`/`h` simulcast layers as the webapp sends.
    pub fn start_screen_with(&mut self, server: &mut Server, simulcast: bool) {
        self.simulcast = simulcast;
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
        // The webapp's simulcast screen: `a=simulcast:send l;h`.
        let layers = simulcast.then(|| {
            let mut s = Simulcast::new();
            s.add_send_layer(SimulcastLayer::new("l"));
            s.add_send_layer(SimulcastLayer::new("h"));
            s
        });
        let mid = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream),
            None,
            layers,
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

    /// From now on, UDP datagrams go out with GSO: consecutive same-size datagrams (a
    /// video frame's packets) leave as one coalesced send, which a GRO socket receives as
    /// one message. The client still reads its own socket one datagram at a time.
    pub fn send_with_gso(&mut self) {
        let Transport::Udp(s) = &self.transport else {
            panic!("GSO needs a UDP client");
        };
        let mut io = rtcd::data::io::new_backend(
            rtcd::data::io::IoKind::Portable,
            vec![s.try_clone().unwrap()],
        )
        .unwrap();
        // GRO is a socket option: the shared socket must keep delivering single datagrams
        // to `read_transport`.
        assert!(!io.set_gro(false));
        io.set_gso(true);
        self.gso = Some(io);
    }

    /// Sends one VP8 "frame" on the screen track.
    pub fn send_video(&mut self, now: Instant) {
        let Some(mid) = self.screen else { return };
        if now < self.next_video {
            return;
        }
        // Simulcast frames every 100 ms, others every 50 ms.
        let period = if self.simulcast { 100 } else { 50 };
        self.next_video = now + Duration::from_millis(period);
        let pt = self
            .rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
            .unwrap();
        self.video_time += 90 * period;
        // A VP8 keyframe-looking payload (P bit clear, start code).
        let frame = |size: usize| {
            let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
            frame.resize(size, 0x55);
            frame
        };
        // Simulcast at 10 frames/s: `l` ≈ 240 kbit/s, `h` ≈ 1.2 Mbit/s (half the webapp's 0.5
        // and 2.5 Mbit/s, to keep parallel tests light; switching compares measured rates);
        // otherwise one small stream.
        let sends: Vec<(Option<&str>, usize)> = if self.simulcast {
            vec![(Some("l"), 3_000), (Some("h"), 15_000)]
        } else {
            vec![(None, 410)]
        };
        for (rid, size) in sends {
            if self.pause_high && rid == Some("h") {
                continue;
            }
            let Some(mut w) = self.rtc.writer(mid) else {
                continue;
            };
            if let Some(rid) = rid {
                w = w.rid(Rid::from(rid));
            }
            if w.write(pt, now, MediaTime::from_90khz(self.video_time), frame(size))
                .is_ok()
            {
                self.video_sent += 1;
            }
            self.drain(now);
        }
    }

    pub fn tick(&mut self, now: Instant) {
        self.read_transport(now);
        for m in std::mem::take(&mut self.pending_dc_out) {
            self.dc_write(true, &m);
        }
        if self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain(now);
        }
    }

    pub fn total_received(&self) -> usize {
        self.received.values().sum()
    }
}

/// Drives server notices and clients until `done` or the deadline.
pub fn run_until(
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

/// Drives server notices and clients for `limit`, waiting for nothing (lets media flow, or
/// lets in-flight packets land before a "nothing more arrives" check).
pub fn idle(server: &mut Server, clients: &mut [&mut Client], limit: Duration, speaking: &[bool]) {
    run_until(server, clients, limit, speaking, |_| false);
}

/// Connects every client with everyone speaking: drives until each received at least `min`
/// audio packets, failing the test after 20 s.
pub fn connect_all(server: &mut Server, clients: &mut [&mut Client], min: usize) {
    let speaking = vec![true; clients.len()];
    assert!(
        run_until(server, clients, Duration::from_secs(20), &speaking, |cs| cs
            .iter()
            .all(|c| c.total_received() >= min)),
        "every client hears the others (at least {min} packets each)"
    );
}

/// Starts `sharer`'s simulcast screen share and drives until `viewer` decoded `min` frames
/// (at most 10 s); then every m-line of the viewer must hold only whole frames of one layer:
/// 3 000 bytes (`l`) or 15 000 bytes (`h`).
pub fn share_simulcast_and_check_whole_frames(
    server: &mut Server,
    sharer: &mut Client,
    viewer: &mut Client,
    min: usize,
) {
    sharer.start_screen_with(server, true);
    assert!(
        run_until(
            server,
            &mut [sharer, viewer],
            Duration::from_secs(10),
            &[false, false],
            |cs| cs[1].video_frames.values().sum::<usize>() >= min
        ),
        "viewer gets the screen: {:?}",
        viewer.video_frames
    );
    for (mid, frames) in &viewer.video_frames {
        let bytes = viewer.video_bytes[mid];
        assert!(
            bytes == frames * 3_000 || bytes == frames * 15_000,
            "whole frames on {mid}: {frames} frames, {bytes} bytes"
        );
    }
}
