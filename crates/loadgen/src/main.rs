//! `rtcd-loadgen`: plays both sides rtcd serves — the Calls plugin on the WebSocket and N WebRTC
//! participants (one str0m `Rtc` and one UDP socket each, all on one thread) — or the matching
//! simple mode for the raw relay baseline. Sends synthetic stamped media, measures per receiver
//! (loss, duplicates, reordering, added one-way latency, jitter) and the server process's CPU
//! (user/system) and RSS, and its own CPU to tell when it, not the server, saturated.
//! Prints a human summary and writes a JSON report (`--out`).

mod janus;
mod januspeer;
mod meter;
mod metrics;
mod opts;
mod payload;
mod plugin;
mod procstat;
mod rawpeer;
mod report;
mod rtcpeer;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rtcd_proto::ws::ClientMessage;

use januspeer::JanusPeer;
use meter::Meter;
use opts::{Opts, Role, ServerKind, Shape};
use rawpeer::RawPeer;
use rtcpeer::RtcPeer;

enum Peer {
    Rtc(Box<RtcPeer>),
    Raw(Box<RawPeer>),
    Janus(Box<JanusPeer>),
}

impl Peer {
    fn connected_at(&self) -> Option<Instant> {
        match self {
            Peer::Rtc(p) => p.connected_at,
            Peer::Raw(p) => p.connected_at,
            Peer::Janus(p) => p.connected_at(),
        }
    }
    fn first_media(&self) -> Option<Instant> {
        match self {
            Peer::Rtc(p) => p.first_media,
            Peer::Raw(p) => p.first_media,
            Peer::Janus(p) => p.first_media(),
        }
    }
    fn joined_at(&self) -> Instant {
        match self {
            Peer::Rtc(p) => p.joined_at,
            Peer::Raw(p) => p.joined_at,
            Peer::Janus(p) => p.joined_at,
        }
    }
    fn errors(&self) -> Vec<String> {
        match self {
            Peer::Rtc(p) => p.errors.clone(),
            Peer::Raw(p) => p.errors.clone(),
            Peer::Janus(p) => p.errors(),
        }
    }
}

/// A slot's socket token: `2 × slot`, and `2 × slot + 1` for a Janus subscriber PC.
fn token(slot: usize, subscriber: bool) -> Token {
    Token(2 * slot + usize::from(subscriber))
}

/// The slot and whether it is the Janus subscriber PC, from a token.
fn untoken(t: Token) -> (usize, bool) {
    (t.0 / 2, t.0 % 2 == 1)
}

/// One participant slot; a churned participant leaves its slot and a new slot is added.
pub struct Slot {
    peer: Option<Peer>,
    pub call: usize,
    pub role: Role,
    pub streams: (u32, u32),
    deadline: Instant,
    /// Joined during the window by churn.
    pub churned_in: bool,
    /// First-media and connect times, kept after the peer leaves.
    pub joined_at: Option<Instant>,
    pub connected_at: Option<Instant>,
    pub first_media: Option<Instant>,
}

struct Run<'a> {
    opts: &'a Opts,
    meter: Meter,
    slots: Vec<Slot>,
    poll: Poll,
    plugin: Option<plugin::Plugin>,
    sessions: HashMap<String, usize>,
    errors: Vec<String>,
    closes: u64,
    run_tag: String,
    janus: Option<janus::Janus>,
    /// Janus handle → (slot, is the subscriber handle).
    handles: HashMap<u64, (usize, bool)>,
    /// Janus: the handle that creates and destroys the rooms, and the rooms' id base
    /// (room of call c = base + c).
    admin_handle: u64,
    room_base: u64,
    /// Planned publishers per call.
    planned: HashMap<usize, usize>,
    /// Still joining the initial participants.
    setting_up: bool,
    next_reconcile: Instant,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(rep) => {
            if !opts.quiet {
                println!("{}", report::summary(&rep));
            }
            let json = match serde_json::to_string_pretty(&rep) {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("rtcd-loadgen: report: {e}");
                    std::process::exit(1);
                }
            };
            match &opts.out {
                Some(path) => {
                    if let Err(e) = std::fs::write(path, json) {
                        eprintln!("rtcd-loadgen: writing {path}: {e}");
                        std::process::exit(1);
                    }
                }
                None if opts.quiet => println!("{json}"),
                None => {}
            }
        }
        Err(e) => {
            eprintln!("rtcd-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

impl Run<'_> {
    /// Publishers planned in `call` other than this participant.
    fn other_publishers(&self, call: usize, publishes: bool) -> usize {
        self.planned
            .get(&call)
            .copied()
            .unwrap_or(0)
            .saturating_sub(usize::from(publishes))
    }

    fn new_slot(
        &mut self,
        call: usize,
        role: Role,
        now: Instant,
        churned_in: bool,
    ) -> Result<usize, String> {
        let slot = self.meter.add_receiver();
        let streams = (2 * slot as u32, 2 * slot as u32 + 1);
        let peer = match self.opts.server {
            ServerKind::Rtcd => {
                let session = format!("{}s{slot}", self.run_tag);
                let call_id = format!("{}c{call}", self.run_tag);
                let (mut p, frames) = RtcPeer::new(
                    session.clone(),
                    &call_id,
                    role,
                    slot,
                    streams,
                    self.opts,
                    now,
                )?;
                self.poll
                    .registry()
                    .register(&mut p.sock, token(slot, false), Interest::READABLE)
                    .map_err(|e| format!("register socket: {e}"))?;
                if let Some(pl) = &self.plugin {
                    for f in frames {
                        pl.send(f)?;
                    }
                }
                self.sessions.insert(session, slot);
                Peer::Rtc(Box::new(p))
            }
            ServerKind::Janus => {
                let session = format!("{}s{slot}", self.run_tag);
                let publishes = role.audio || role.video;
                let others = self.other_publishers(call, publishes);
                let mut jp = JanusPeer::new(None, role.receives && others > 0, now);
                if publishes {
                    // Janus's publisher PC only sends; the others' media comes on the subscriber.
                    let send_only = Role {
                        receives: false,
                        ..role
                    };
                    let (mut p, offer) = RtcPeer::plain(
                        session.clone(),
                        send_only,
                        slot,
                        streams,
                        self.opts,
                        now,
                        true,
                        false,
                    )?;
                    let offer = offer.ok_or("publisher without an offer")?;
                    self.poll
                        .registry()
                        .register(&mut p.sock, token(slot, false), Interest::READABLE)
                        .map_err(|e| format!("register socket: {e}"))?;
                    let j = self.janus.as_mut().ok_or("janus not connected")?;
                    let handle = j.attach()?;
                    self.handles.insert(handle, (slot, false));
                    jp.pub_handle = Some(handle);
                    j.message(
                        handle,
                        serde_json::json!({"request": "joinandconfigure",
                            "room": self.room_base + call as u64,
                            "ptype": "publisher", "display": session,
                            "audio": role.audio, "video": role.video}),
                        Some(("offer", &offer)),
                    )?;
                    jp.publisher = Some(p);
                }
                Peer::Janus(Box::new(jp))
            }
            ServerKind::Raw => {
                let mut p = RawPeer::new(call as u32, role, slot, streams, self.opts, now)?;
                self.poll
                    .registry()
                    .register(&mut p.sock, token(slot, false), Interest::READABLE)
                    .map_err(|e| format!("register socket: {e}"))?;
                Peer::Raw(Box::new(p))
            }
        };
        self.slots.push(Slot {
            peer: Some(peer),
            call,
            role,
            streams,
            deadline: now,
            churned_in,
            joined_at: Some(now),
            connected_at: None,
            first_media: None,
        });
        Ok(slot)
    }

    /// The participant in `slot` leaves. For Janus, `signal` sends `leave` and `detach` on its
    /// handles (churn); the final teardown destroys the rooms and the session instead.
    fn leave(&mut self, slot: usize, signal: bool) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(mut peer) = s.peer.take() else {
            return;
        };
        s.connected_at = peer.connected_at();
        s.first_media = peer.first_media();
        for e in peer.errors() {
            if self.errors.len() < 20 {
                self.errors.push(format!("slot {slot}: {e}"));
            }
        }
        match &mut peer {
            Peer::Rtc(p) => {
                if let Some(pl) = &self.plugin {
                    let _ = pl.send(p.leave_frame());
                }
                let _ = self.poll.registry().deregister(&mut p.sock);
                self.sessions.remove(&p.session);
            }
            Peer::Raw(p) => {
                p.leave();
                let _ = self.poll.registry().deregister(&mut p.sock);
            }
            Peer::Janus(p) => {
                for h in [p.pub_handle, p.sub_handle].into_iter().flatten() {
                    self.handles.remove(&h);
                    if let (true, Some(j)) = (signal, self.janus.as_mut()) {
                        // Errors here only mean Janus already dropped the participant.
                        let _ = j.message(h, serde_json::json!({"request": "leave"}), None);
                        let _ = j.detach(h);
                    }
                }
                for pc in [p.publisher.as_mut(), p.subscriber.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    let _ = self.poll.registry().deregister(&mut pc.sock);
                }
            }
        }
    }

    /// Janus: ready feeds of `call` as (feed, owner slot).
    fn ready_feeds(&self, call: usize, now: Instant) -> Vec<(u64, usize)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.call == call)
            .filter_map(|(i, s)| match &s.peer {
                Some(Peer::Janus(p)) => Some((p.feed_ready(now)?, i)),
                _ => None,
            })
            .collect()
    }

    /// Janus: makes the subscriber PCs that are due and adds newly ready feeds to the
    /// subscriptions that are up (`subscribe`; Janus answers with a new offer).
    fn reconcile_janus(&mut self, now: Instant) -> Result<(), String> {
        if self.janus.is_none() || now < self.next_reconcile {
            return Ok(());
        }
        self.next_reconcile = now + Duration::from_millis(20);
        let mut ready: HashMap<usize, Vec<(u64, usize)>> = HashMap::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(Peer::Janus(p)) = &s.peer {
                if let Some(feed) = p.feed_ready(now) {
                    ready.entry(s.call).or_default().push((feed, i));
                }
            }
        }
        for slot in 0..self.slots.len() {
            let call = self.slots[slot].call;
            let publishes = self.slots[slot].role.audio || self.slots[slot].role.video;
            let planned_others = self.other_publishers(call, publishes);
            let Some(Peer::Janus(p)) = self.slots[slot].peer.as_mut() else {
                continue;
            };
            if !p.needs_subscriber {
                continue;
            }
            let add = januspeer::feeds_to_add(
                ready.get(&call).map_or(&[][..], Vec::as_slice),
                slot,
                &p.subscribed,
            );
            if add.is_empty() {
                continue;
            }
            let j = self.janus.as_mut().ok_or("janus not connected")?;
            let streams: Vec<serde_json::Value> = add
                .iter()
                .map(|f| serde_json::json!({ "feed": f }))
                .collect();
            if p.sub_handle.is_none() {
                if !januspeer::subscriber_due(add.len(), planned_others, self.setting_up) {
                    continue;
                }
                let session = format!("{}s{slot}r", self.run_tag);
                let listen = Role {
                    call,
                    audio: false,
                    video: false,
                    receives: true,
                };
                let streams_ids = self.slots[slot].streams;
                let (mut sub, _) = RtcPeer::plain(
                    session,
                    listen,
                    slot,
                    streams_ids,
                    self.opts,
                    now,
                    false,
                    false,
                )?;
                self.poll
                    .registry()
                    .register(&mut sub.sock, token(slot, true), Interest::READABLE)
                    .map_err(|e| format!("register socket: {e}"))?;
                let handle = j.attach()?;
                self.handles.insert(handle, (slot, true));
                j.message(
                    handle,
                    serde_json::json!({"request": "join", "room": self.room_base + call as u64,
                        "ptype": "subscriber", "streams": streams}),
                    None,
                )?;
                let Some(Peer::Janus(p)) = self.slots[slot].peer.as_mut() else {
                    continue;
                };
                p.sub_handle = Some(handle);
                p.subscriber = Some(sub);
                p.subscribed.extend(add);
            } else if p
                .subscriber
                .as_ref()
                .is_some_and(|s| s.connected_at.is_some())
            {
                // Updates only once the subscription's PC is up (Janus queues the rest).
                let h = p.sub_handle.unwrap_or_default();
                j.message(
                    h,
                    serde_json::json!({"request": "subscribe", "streams": streams}),
                    None,
                )?;
                p.subscribed.extend(add);
            }
        }
        Ok(())
    }

    fn pump_janus(&mut self, now: Instant) -> Result<(), String> {
        let Some(j) = self.janus.as_mut() else {
            return Ok(());
        };
        let mut starts = Vec::new();
        let mut retry = Vec::new();
        while let Ok(ev) = j.events.try_recv() {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    if self.errors.len() < 20 {
                        self.errors.push(format!("janus events: {e}"));
                    }
                    continue;
                }
            };
            let Some(&(slot, is_sub)) = self.handles.get(&ev.sender) else {
                continue;
            };
            let Some(Some(Peer::Janus(p))) = self.slots.get_mut(slot).map(|s| s.peer.as_mut())
            else {
                continue;
            };
            match janus::room_event(&ev.data, ev.jsep.as_ref()) {
                janus::RoomEvent::Error { code, reason } => {
                    // A subscription refused before it was up ("No such feed" for a feed that
                    // left meanwhile) is made again from the feeds there are now.
                    let again = is_sub
                        && p.subscriber
                            .as_ref()
                            .is_some_and(|s| s.connected_at.is_none());
                    let what = if is_sub { "subscriber" } else { "publisher" };
                    let note = if again { " (subscribing again)" } else { "" };
                    p.record_error(format!("janus {what}: error {code}: {reason}{note}"));
                    if again {
                        retry.push(slot);
                    }
                }
                janus::RoomEvent::Joined { feed, answer } if !is_sub => {
                    if let Some(pc) = p.publisher.as_mut() {
                        match answer {
                            Some(sdp) => {
                                if let Err(e) = pc.accept_answer(&sdp) {
                                    pc.record_error(e);
                                }
                            }
                            None => pc.record_error("joined without an answer".into()),
                        }
                        pc.drain(now, &mut self.meter);
                    }
                    p.feed = Some(feed);
                }
                janus::RoomEvent::Offer { sdp } if is_sub => {
                    if let Some(pc) = p.subscriber.as_mut() {
                        match pc.accept_offer(&sdp) {
                            Ok(answer) => starts.push((ev.sender, answer)),
                            Err(e) => pc.record_error(e),
                        }
                        pc.drain(now, &mut self.meter);
                    }
                }
                _ => {}
            }
            self.slots[slot].deadline = now;
        }
        for (handle, answer) in starts {
            j.message(
                handle,
                serde_json::json!({"request": "start"}),
                Some(("answer", &answer)),
            )?;
        }
        for slot in retry {
            let Some(Some(Peer::Janus(p))) = self.slots.get_mut(slot).map(|s| s.peer.as_mut())
            else {
                continue;
            };
            if let Some(h) = p.sub_handle.take() {
                self.handles.remove(&h);
                let _ = j.detach(h);
            }
            if let Some(mut pc) = p.subscriber.take() {
                let _ = self.poll.registry().deregister(&mut pc.sock);
            }
            p.subscribed.clear();
        }
        self.reconcile_janus(now)
    }

    fn pump_plugin(&mut self, now: Instant) -> Result<(), String> {
        self.pump_janus(now)?;
        let Some(pl) = &self.plugin else {
            return Ok(());
        };
        let mut replies = Vec::new();
        while let Ok(m) = pl.rx.try_recv() {
            match m {
                Ok(ClientMessage::Rtc(msg)) => {
                    let Some(&slot) = self.sessions.get(&msg.session_id) else {
                        continue;
                    };
                    if let Some(Some(Peer::Rtc(p))) =
                        self.slots.get_mut(slot).map(|s| s.peer.as_mut())
                    {
                        if let Some(r) = p.on_signal(msg.msg_type, &msg.data, now, &mut self.meter)
                        {
                            replies.push(r);
                        }
                        self.slots[slot].deadline = now;
                    }
                }
                Ok(ClientMessage::Close { .. }) => self.closes += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("plugin websocket: {e}")),
            }
        }
        for r in replies {
            pl.send(r)?;
        }
        Ok(())
    }

    fn step(&mut self, events: &mut Events, sending: bool) -> Result<(), String> {
        let now = Instant::now();
        self.pump_plugin(now)?;
        let next = self
            .slots
            .iter()
            .filter(|s| s.peer.is_some())
            .map(|s| s.deadline)
            .min()
            .unwrap_or(now + Duration::from_millis(2));
        let timeout = next
            .saturating_duration_since(now)
            .min(Duration::from_millis(2));
        self.poll
            .poll(events, Some(timeout))
            .map_err(|e| format!("poll: {e}"))?;
        for ev in events.iter() {
            let (slot, sub) = untoken(ev.token());
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            match s.peer.as_mut() {
                Some(Peer::Rtc(p)) => {
                    p.on_readable(&mut self.meter);
                    s.deadline = s.deadline.min(p.next_timeout);
                }
                Some(Peer::Raw(p)) => p.on_readable(&mut self.meter),
                Some(Peer::Janus(p)) => {
                    let pc = if sub {
                        p.subscriber.as_mut()
                    } else {
                        p.publisher.as_mut()
                    };
                    if let Some(pc) = pc {
                        pc.on_readable(&mut self.meter);
                        s.deadline = s.deadline.min(pc.next_timeout);
                    }
                }
                None => {}
            }
        }
        let now = Instant::now();
        for s in &mut self.slots {
            if s.deadline > now {
                continue;
            }
            s.deadline = match s.peer.as_mut() {
                Some(Peer::Rtc(p)) => p.tick(now, &mut self.meter, sending),
                Some(Peer::Raw(p)) => p.tick(now, &mut self.meter, sending),
                Some(Peer::Janus(p)) => {
                    let mut next = now + Duration::from_secs(3600);
                    for pc in [p.publisher.as_mut(), p.subscriber.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        next = next.min(pc.tick(now, &mut self.meter, sending));
                    }
                    next
                }
                None => now + Duration::from_secs(3600),
            };
        }
        Ok(())
    }
}

fn server_cpu(pid: Option<u32>) -> Option<procstat::CpuTimes> {
    pid.and_then(|p| procstat::cpu(&p.to_string()).ok())
}

fn server_rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| procstat::rss(&p.to_string()).ok())
}

fn run(opts: &Opts) -> Result<report::Report, String> {
    let epoch = Instant::now();
    if let Some(pid) = opts.pid {
        procstat::cpu(&pid.to_string()).map_err(|e| format!("--pid {pid}: {e}"))?;
    }
    let rss_idle = server_rss(opts.pid);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let run_tag = format!("lg{}x{}", std::process::id(), nanos % 1_000_000_000);
    let plugin = match opts.server {
        ServerKind::Rtcd => {
            let client = format!("loadgen-{run_tag}");
            let key = format!("{:032x}", nanos);
            plugin::register(opts.api, &client, &key)?;
            Some(plugin::Plugin::connect(opts.api, &client, &key)?)
        }
        ServerKind::Raw | ServerKind::Janus => None,
    };
    let roles = opts::plan(opts.shape, opts.n);
    let planned: HashMap<usize, usize> =
        roles
            .iter()
            .filter(|r| r.audio || r.video)
            .fold(HashMap::new(), |mut m, r| {
                *m.entry(r.call).or_default() += 1;
                m
            });
    let calls = roles.iter().map(|r| r.call + 1).max().unwrap_or(0);
    // Janus: one VideoRoom per call, ids unique to this run (a rerun against the same Janus
    // does not collide), destroyed at the end.
    let room_base = 1_000_000 + (nanos % 1_000_000_000) as u64 * 1000;
    let (janus, admin_handle) = match opts.server {
        ServerKind::Janus => {
            let mut j = janus::Janus::connect(opts.janus)?;
            let h = j.attach()?;
            for call in 0..calls {
                // Headroom for churn: a joiner may arrive before Janus has dropped the leaver.
                let p = planned.get(&call).copied().unwrap_or(0);
                j.create_room(h, room_base + call as u64, 2 * p + 2)?;
            }
            (Some(j), h)
        }
        _ => (None, 0),
    };
    let mut r = Run {
        opts,
        meter: Meter::new(epoch),
        slots: Vec::new(),
        poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
        plugin,
        sessions: HashMap::new(),
        errors: Vec::new(),
        closes: 0,
        run_tag,
        janus,
        handles: HashMap::new(),
        admin_handle,
        room_base,
        planned,
        setting_up: true,
        next_reconcile: Instant::now(),
    };
    let mut events = Events::with_capacity(1024);

    // Setup: join at --join-rate until everyone is connected or the deadline passes.
    let setup_start = Instant::now();
    let setup_limit = Duration::from_secs_f64(15.0 + 2.0 * roles.len() as f64 / opts.join_rate);
    let gen_cpu_setup0 = procstat::cpu("self").ok();
    let srv_cpu_setup0 = server_cpu(opts.pid);
    loop {
        let now = Instant::now();
        let due = ((now - setup_start).as_secs_f64() * opts.join_rate) as usize + 1;
        while r.slots.len() < roles.len().min(due) {
            let role = roles[r.slots.len()];
            // Janus listeners join once every publisher of the call can be subscribed to, at
            // the join rate (their subscriber PC is made at once).
            let listener = !(role.audio || role.video);
            if opts.server == ServerKind::Janus
                && listener
                && r.ready_feeds(role.call, now).len()
                    < r.planned.get(&role.call).copied().unwrap_or(0)
            {
                break;
            }
            r.new_slot(role.call, role, now, false)?;
        }
        let connected = r
            .slots
            .iter()
            .filter(|s| s.peer.as_ref().and_then(Peer::connected_at).is_some())
            .count();
        if connected == roles.len() || now - setup_start > setup_limit {
            break;
        }
        r.step(&mut events, true)?;
    }
    r.setting_up = false;
    let setup_s = setup_start.elapsed().as_secs_f64();
    let setup_cpu = match (server_cpu(opts.pid), srv_cpu_setup0) {
        (Some(b), Some(a)) => Some(b.since(&a)),
        _ => None,
    };
    let gen_setup_cpu = match (procstat::cpu("self").ok(), gen_cpu_setup0) {
        (Some(b), Some(a)) => Some(b.since(&a)),
        _ => None,
    };
    let connect_ms: Vec<f64> = r
        .slots
        .iter()
        .filter_map(|s| {
            let p = s.peer.as_ref()?;
            Some((p.connected_at()? - p.joined_at()).as_secs_f64() * 1000.0)
        })
        .collect();

    // Warm-up, then the window.
    let win_start = Instant::now() + Duration::from_secs_f64(opts.warmup_s);
    let win_end = win_start + Duration::from_secs_f64(opts.duration_s);
    r.meter.win_start_ns = r.meter.ns(win_start);
    r.meter.win_end_ns = r.meter.ns(win_end);
    while Instant::now() < win_start {
        r.step(&mut events, true)?;
    }
    let t0 = Instant::now();
    let srv0 = server_cpu(opts.pid);
    let gen0 = procstat::cpu("self").ok();
    let gen_wait0 = procstat::thread_wait().ok();
    let srv_wait0 = opts
        .pid
        .and_then(|p| procstat::process_wait(&p.to_string()).ok());
    let churn = opts.shape == Shape::W6;
    let churn_every = Duration::from_secs_f64(1.0 / opts.churn_rate);
    let mut next_churn = t0 + churn_every;
    let mut cursor = 0usize;
    let mut active: Vec<usize> = (0..r.slots.len()).collect();
    while Instant::now() < win_end {
        r.step(&mut events, true)?;
        let now = Instant::now();
        if churn && now >= next_churn && !active.is_empty() {
            next_churn += churn_every;
            let i = cursor % active.len();
            cursor += 1;
            let old = active[i];
            let (call, role) = (r.slots[old].call, r.slots[old].role);
            r.leave(old, true);
            active[i] = r.new_slot(call, role, now, true)?;
        }
    }
    let t1 = Instant::now();
    let srv1 = server_cpu(opts.pid);
    let gen1 = procstat::cpu("self").ok();
    let gen_wait1 = procstat::thread_wait().ok();
    let srv_wait1 = opts
        .pid
        .and_then(|p| procstat::process_wait(&p.to_string()).ok());
    let rss_loaded = server_rss(opts.pid);
    // Drain what is in flight.
    let drain_end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < drain_end {
        r.step(&mut events, false)?;
    }
    for i in 0..r.slots.len() {
        r.leave(i, false);
    }
    if let Some(j) = r.janus.as_mut() {
        // Destroying a room kicks its participants; the session goes when `j` is dropped.
        for call in 0..calls {
            if let Err(e) = j.destroy_room(r.admin_handle, r.room_base + call as u64) {
                if r.errors.len() < 20 {
                    r.errors.push(e);
                }
            }
        }
    }
    // Let the WebSocket thread flush the leaves.
    std::thread::sleep(Duration::from_millis(200));
    let wall = (t1 - t0).as_secs_f64();
    let input = report::Input {
        opts,
        meter: &r.meter,
        slots: &r.slots,
        window_s: wall,
        server_cpu: match (srv1, srv0) {
            (Some(b), Some(a)) => Some(b.since(&a)),
            _ => None,
        },
        gen_cpu: match (gen1, gen0) {
            (Some(b), Some(a)) => Some(b.since(&a)),
            _ => None,
        },
        gen_wait_s: gen_wait1.zip(gen_wait0).map(|(b, a)| b - a),
        server_wait_s: srv_wait1.zip(srv_wait0).map(|(b, a)| b - a),
        setup_s,
        setup_cpu,
        gen_setup_cpu,
        connect_ms,
        rss_idle,
        rss_loaded,
        errors: r.errors.clone(),
        closes: r.closes,
        churn,
    };
    Ok(report::build(&input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_tokens_tell_the_slot_and_the_janus_subscriber_pc_apart() {
        for slot in [0, 1, 7, 4096] {
            assert_eq!(untoken(token(slot, false)), (slot, false));
            assert_eq!(untoken(token(slot, true)), (slot, true));
        }
        assert_ne!(token(1, false), token(0, true));
    }
}
