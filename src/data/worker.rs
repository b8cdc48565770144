//! The worker shell: one thread per core that owns its sockets and its [`Media`], reads the
//! clock once per loop turn, and never blocks on another thread.
//!
//! Steering (DESIGN.md decision 3): the kernel hashes each remote 4-tuple to one worker's
//! SO_REUSEPORT socket. A first STUN packet names the owning worker in our ufrag; a packet
//! that lands on another worker is handed over through the owner's bounded queue, and the
//! flow is remembered so later packets of that flow follow without parsing. Replies leave
//! from the owner's own socket on the same port. ICE-TCP connections are handed over whole.
//!
//! Direct path: once a handed-over flow has proved itself (a STUN check with a session's
//! credentials), the owner opens a UDP socket on the shared port *connected* to the client.
//! The kernel prefers a connected socket's exact 4-tuple to the SO_REUSEPORT group, so the
//! flow's later datagrams reach the owner directly and the handover stops. Such sockets are
//! bounded in number and closed when their flow is idle or its session is gone.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rtcd_proto::framing::{encode_frame, Rfc4571Decoder};
use str0m::net::Protocol;

use super::engine::worker_of_ufrag;
use super::io::{RecvBatch, RxClock, UdpIo};
use super::media::{Forwarded, Media, PeerMsg, Transmit};
use super::net::Endpoint;
use super::stats::{Drop as DropReason, WorkerStats};
use crate::bridge::Command;

const WAKER: Token = Token(0);
const UDP_BASE: usize = 1;
const LISTENER_BASE: usize = 1 << 16;
const CONN_BASE: usize = 1 << 20;
/// Datagrams read per turn before other work gets a turn.
const READ_BUDGET: usize = 256;
/// Commands and handovers handled per turn.
const QUEUE_BUDGET: usize = 1024;
/// Bytes buffered per TCP connection in either direction.
const TCP_BUFFER: usize = 1 << 20;
/// Remembered steering decisions; cleared when full.
const MAX_FLOWS: usize = 1 << 16;
/// Fan-out packets taken from each incoming ring per turn.
const RING_BUDGET: usize = 1024;
/// Tokens of direct-path sockets.
const DIRECT_BASE: usize = 1 << 40;
/// Direct-path sockets per worker; beyond, flows stay on the handover path.
const MAX_DIRECT: usize = 4096;
/// A direct-path socket idle this long is closed (sessions fail after 25 s of silence).
const DIRECT_IDLE: Duration = Duration::from_secs(30);
/// How often direct-path sockets are checked for idleness and dead sessions.
const DIRECT_SWEEP: Duration = Duration::from_secs(5);

/// Something another worker passes to the owner of a session.
pub enum Handover {
    Udp {
        socket: usize,
        source: SocketAddr,
        bytes: Vec<u8>,
        /// Kernel receive time (wall-clock ns, 0: none; see `io::RxClock`).
        rx_ns: u64,
    },
    Tcp {
        stream: std::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        /// Bytes already read from the stream (whole and partial frames).
        buffered: Vec<u8>,
    },
}

/// The handle other threads hold to reach a worker.
pub struct WorkerHandle {
    pub commands: Sender<Command>,
    pub handovers: Sender<Handover>,
    /// Call-state messages from other workers.
    pub peer: Sender<PeerMsg>,
    pub waker: Arc<Waker>,
    /// Set while the worker sleeps in `poll`: wake-ups are skipped while it is busy.
    pub sleeping: Arc<AtomicBool>,
    pub stats: Arc<WorkerStats>,
}

impl WorkerHandle {
    /// Wakes the worker if it sleeps; costs a fence and a load when it is busy. Pairs with
    /// the worker's SeqCst store of `sleeping` before it re-checks its queues: either it
    /// sees what we queued, or we see it asleep.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            let _ = self.waker.wake();
        }
    }
}

/// A UDP socket on the shared port connected to one client (the direct path).
struct Direct {
    sock: mio::net::UdpSocket,
    source: SocketAddr,
    /// Index of the shared-port endpoint it is bound to.
    endpoint: usize,
    last_rx: Instant,
}

struct TcpConn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    decoder: Rfc4571Decoder,
    out: Vec<u8>,
    owned: bool,
}

pub struct Worker {
    id: usize,
    poll: Poll,
    /// UDP sockets (one per local endpoint) behind the I/O backend.
    io: Box<dyn UdpIo>,
    udp: Vec<Endpoint>,
    batch: RecvBatch,
    listeners: Vec<(TcpListener, Endpoint)>,
    conns: HashMap<Token, TcpConn>,
    conn_by_peer: HashMap<SocketAddr, Token>,
    next_conn: usize,
    peers: Arc<Vec<WorkerHandle>>,
    flows: HashMap<SocketAddr, usize>,
    direct: HashMap<Token, Direct>,
    direct_by_source: HashMap<SocketAddr, Token>,
    next_direct: usize,
    /// Direct sockets with datagrams left after their read budget.
    direct_backlog: Vec<Token>,
    next_direct_sweep: Instant,
    media: Media,
    commands: Receiver<Command>,
    handovers: Receiver<Handover>,
    peer_rx: Receiver<PeerMsg>,
    /// Fan-out ring to each other worker (None for ourselves).
    rings_out: Vec<Option<rtcd_ring::Producer<Forwarded>>>,
    /// Fan-out rings from the other workers: (source worker, ring).
    rings_in: Vec<(usize, rtcd_ring::Consumer<Forwarded>)>,
    /// Workers we queued something for this turn, to wake once at its end.
    to_wake: Vec<bool>,
    peer_buf: Vec<(usize, PeerMsg)>,
    fwd_buf: Vec<(usize, Forwarded)>,
    sleeping: Arc<AtomicBool>,
    stats: Arc<WorkerStats>,
    buf: Vec<u8>,
    out: Vec<Transmit>,
    /// Queues or connections with work left after their budget.
    backlog: bool,
    /// UDP datagrams may be left after the read budget.
    backlog_udp: bool,
    /// The previous turn's clock reading: no datagram is given an earlier arrival time
    /// (one that waited longer counts as arrived then).
    floor: Instant,
}

pub struct WorkerParts {
    pub id: usize,
    pub poll: Poll,
    pub io: Box<dyn UdpIo>,
    pub udp: Vec<Endpoint>,
    pub tcp: Vec<(std::net::TcpListener, Endpoint)>,
    pub media: Media,
    pub commands: Receiver<Command>,
    pub handovers: Receiver<Handover>,
    pub peer_rx: Receiver<PeerMsg>,
    pub rings_out: Vec<Option<rtcd_ring::Producer<Forwarded>>>,
    pub rings_in: Vec<(usize, rtcd_ring::Consumer<Forwarded>)>,
    pub sleeping: Arc<AtomicBool>,
    pub stats: Arc<WorkerStats>,
}

impl Worker {
    pub fn new(parts: WorkerParts, peers: Arc<Vec<WorkerHandle>>) -> io::Result<Worker> {
        let n_peers = peers.len();
        let mut io = parts.io;
        io.register(parts.poll.registry(), UDP_BASE)?;
        let udp = parts.udp;
        let mut listeners = Vec::new();
        for (i, (l, endpoint)) in parts.tcp.into_iter().enumerate() {
            let mut l = TcpListener::from_std(l);
            parts
                .poll
                .registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            listeners.push((l, endpoint));
        }
        Ok(Worker {
            id: parts.id,
            poll: parts.poll,
            io,
            udp,
            batch: RecvBatch::default(),
            listeners,
            conns: HashMap::new(),
            conn_by_peer: HashMap::new(),
            next_conn: CONN_BASE,
            peers,
            flows: HashMap::new(),
            direct: HashMap::new(),
            direct_by_source: HashMap::new(),
            next_direct: DIRECT_BASE,
            direct_backlog: Vec::new(),
            next_direct_sweep: Instant::now() + DIRECT_SWEEP,
            media: parts.media,
            commands: parts.commands,
            handovers: parts.handovers,
            peer_rx: parts.peer_rx,
            rings_out: parts.rings_out,
            rings_in: parts.rings_in,
            to_wake: vec![false; n_peers],
            peer_buf: Vec::new(),
            fwd_buf: Vec::new(),
            sleeping: parts.sleeping,
            stats: parts.stats,
            buf: vec![0u8; super::io::GRO_SLOT],
            out: Vec::new(),
            backlog: false,
            backlog_udp: false,
            floor: Instant::now(),
        })
    }

    /// Runs until a `Shutdown` command (or every sender is gone).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        tracing::debug!(worker = self.id, "worker started");
        loop {
            let timeout = if self.backlog {
                Duration::ZERO
            } else {
                self.media
                    .poll_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1))
            };
            self.sleeping.store(true, Ordering::SeqCst);
            // Dekker pairing with `WorkerHandle::wake`: our flag store must be visible before
            // we look at the queues (a later load may not move above a store otherwise).
            fence(Ordering::SeqCst);
            // Work queued just before we went to sleep must not wait for the timeout.
            let timeout = if self.commands.is_empty()
                && self.handovers.is_empty()
                && self.peer_rx.is_empty()
                && self.rings_in.iter().all(|(_, r)| r.is_empty())
            {
                timeout
            } else {
                Duration::ZERO
            };
            let res = self.poll.poll(&mut events, Some(timeout));
            self.sleeping.store(false, Ordering::Release);
            if let Err(e) = res {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.id, error = %e, "poll failed");
                }
            }
            let now = Instant::now();
            self.backlog = false;
            let turn_start = now;
            if !self.handle_commands(now) {
                break;
            }
            self.handle_handovers(now);
            self.handle_peers(now);
            let mut udp_ready = self.backlog_udp;
            let mut direct_ready = std::mem::take(&mut self.direct_backlog);
            for ev in events.iter() {
                let t = ev.token().0;
                if t == WAKER.0 {
                    continue;
                } else if t >= DIRECT_BASE {
                    direct_ready.push(ev.token());
                } else if (UDP_BASE..LISTENER_BASE).contains(&t) {
                    udp_ready = true;
                } else if (LISTENER_BASE..CONN_BASE).contains(&t) {
                    self.accept(t - LISTENER_BASE);
                } else {
                    if ev.is_writable() {
                        self.flush_conn(ev.token());
                    }
                    if ev.is_readable() || ev.is_read_closed() {
                        self.read_conn(ev.token(), now);
                    }
                }
            }
            self.backlog_udp = false;
            if udp_ready {
                self.read_udp(now);
            }
            for token in direct_ready {
                self.read_direct(token, now);
            }
            if now >= self.next_direct_sweep {
                self.sweep_direct(now);
            }
            if self.media.poll_deadline().is_some_and(|d| d <= now) {
                self.media.handle_timeout(now);
            }
            self.flush(now);
            self.wake_peers();
            self.stats.set_sessions(self.media.session_count());
            self.stats
                .set_ring_occupancy(self.rings_in.iter().map(|(_, r)| r.len()).sum());
            self.stats.loop_turn(turn_start.elapsed());
            self.floor = now;
        }
        let now = Instant::now();
        self.media.close_all(now);
        self.flush(now);
        self.wake_peers();
        tracing::debug!(worker = self.id, "worker stopped");
    }

    /// Returns false on shutdown.
    fn handle_commands(&mut self, now: Instant) -> bool {
        for _ in 0..QUEUE_BUDGET {
            let cmd = match self.commands.try_recv() {
                Ok(c) => c,
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            };
            match cmd {
                Command::Join(info) => self.media.handle_join(info, now),
                Command::Signal {
                    key,
                    msg_type,
                    data,
                } => self.media.handle_signal(&key, msg_type, &data, now),
                Command::Leave { key } => self.media.handle_leave(&key, now),
                Command::Shutdown => return false,
            }
            self.flush(now);
        }
        self.backlog = true;
        true
    }

    /// Call-state messages and fan-out packets from the other workers.
    fn handle_peers(&mut self, now: Instant) {
        let mut n = 0;
        while n < QUEUE_BUDGET {
            let Ok(m) = self.peer_rx.try_recv() else {
                break;
            };
            self.media.handle_peer(m, now);
            n += 1;
        }
        if n == QUEUE_BUDGET {
            self.backlog = true;
        }
        let mut got = false;
        for (_, ring) in &self.rings_in {
            let mut taken = 0;
            while taken < RING_BUDGET {
                let Some(f) = ring.pop() else {
                    break;
                };
                self.media.handle_forwarded(&f);
                taken += 1;
            }
            got |= taken > 0;
            if taken == RING_BUDGET {
                self.backlog = true;
            }
        }
        if got {
            self.flush(now);
        }
    }

    /// Wakes the workers we queued messages or packets for during this turn.
    fn wake_peers(&mut self) {
        for (w, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                if let Some(p) = self.peers.get(w) {
                    p.wake();
                }
            }
        }
    }

    fn handle_handovers(&mut self, now: Instant) {
        // Read once, and only when a datagram was handed over (stamps are converted with it).
        let mut clock = None;
        for _ in 0..QUEUE_BUDGET {
            let Ok(h) = self.handovers.try_recv() else {
                return;
            };
            match h {
                Handover::Udp {
                    socket,
                    source,
                    bytes,
                    rx_ns,
                } => {
                    let Some(dst) = self.udp.get(socket).map(|e| e.advertised) else {
                        continue;
                    };
                    let arrival = clock
                        .get_or_insert_with(RxClock::now)
                        .arrival(rx_ns, self.floor, now);
                    self.media
                        .handle_receive(Protocol::Udp, source, dst, &bytes, arrival, now);
                    self.open_direct(socket, source, now);
                }
                Handover::Tcp {
                    stream,
                    peer,
                    local,
                    buffered,
                } => {
                    let token = self.add_conn(TcpStream::from_std(stream), peer, local, true);
                    if let Some(token) = token {
                        self.feed_conn(token, &buffered, now);
                    }
                }
            }
        }
        self.backlog = true;
    }

    /// Reads datagrams (up to the turn budget) and steers each to its owner.
    fn read_udp(&mut self, now: Instant) {
        // The backend's running count (up to the previous read), one store per turn.
        self.stats
            .recv_buffer_exhaustions(self.io.recv_buffer_exhaustions());
        let mut read = 0;
        while read < READ_BUDGET {
            let more = self.io.recv(&mut self.batch);
            let clock = RxClock::now();
            read += self.batch.len().max(1);
            self.stats.recv_coalesced(self.batch.coalesced());
            self.stats
                .dropped_n(DropReason::Oversized, self.batch.oversized());
            for i in 0..self.batch.len() {
                let Some((d, bytes)) = self.batch.get(i) else {
                    continue;
                };
                let Some(advertised) = self.udp.get(d.sock).map(|e| e.advertised) else {
                    continue;
                };
                let source = d.source;
                let ufrag_owner =
                    rtcd_proto::stun::binding_request_local_ufrag(bytes).and_then(worker_of_ufrag);
                let owner = match ufrag_owner {
                    Some(w) => {
                        if w == self.id {
                            self.flows.remove(&source);
                        } else {
                            if self.flows.len() >= MAX_FLOWS {
                                self.flows.clear();
                            }
                            self.flows.insert(source, w);
                        }
                        w
                    }
                    None => self.flows.get(&source).copied().unwrap_or(self.id),
                };
                if owner != self.id && owner < self.peers.len() {
                    let h = Handover::Udp {
                        socket: d.sock,
                        source,
                        bytes: bytes.to_vec(),
                        rx_ns: d.rx_ns,
                    };
                    handover(&self.peers, &self.stats, owner, h);
                } else {
                    let arrival = clock.arrival(d.rx_ns, self.floor, now);
                    self.media.handle_receive(
                        Protocol::Udp,
                        source,
                        advertised,
                        bytes,
                        arrival,
                        now,
                    );
                }
            }
            self.flush(now);
            if !more {
                return;
            }
        }
        self.backlog = true;
        self.backlog_udp = true;
    }

    /// Opens the direct path for a handed-over flow once its source is a session's proven
    /// address (never for unauthenticated sources: no socket per spoofed address).
    fn open_direct(&mut self, endpoint: usize, source: SocketAddr, now: Instant) {
        if self.direct_by_source.contains_key(&source)
            || self.direct.len() >= MAX_DIRECT
            || !self.media.knows_source(Protocol::Udp, source)
        {
            return;
        }
        let Some(local) = self.udp.get(endpoint).map(|e| e.local) else {
            return;
        };
        let sock = match super::net::connected_udp_socket(local, source) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(worker = self.id, %source, error = %e, "no direct path");
                return;
            }
        };
        // A publisher's burst arrives as one message (split again in `read_direct`).
        if let Err(e) = super::io::set_udp_gro(&sock, true) {
            tracing::debug!(worker = self.id, error = %e, "no UDP GRO on a direct socket");
        }
        if let Err(e) = super::io::set_rx_timestamps(sock.as_raw_fd()) {
            tracing::debug!(worker = self.id, error = %e, "no receive timestamps on a direct socket");
        }
        let mut sock = mio::net::UdpSocket::from_std(sock);
        let token = Token(self.next_direct);
        self.next_direct += 1;
        if self
            .poll
            .registry()
            .register(&mut sock, token, Interest::READABLE)
            .is_err()
        {
            return;
        }
        self.direct.insert(
            token,
            Direct {
                sock,
                source,
                endpoint,
                last_rx: now,
            },
        );
        self.direct_by_source.insert(source, token);
        self.stats.set_direct_flows(self.direct.len());
        // Datagrams that raced the connect may sit in it already (readiness is edge-
        // triggered): read it this turn.
        self.direct_backlog.push(token);
        self.backlog = true;
    }

    /// Reads a direct-path socket (up to the turn budget).
    fn read_direct(&mut self, token: Token, now: Instant) {
        let Some(d) = self.direct.get_mut(&token) else {
            return;
        };
        let (source, endpoint) = (d.source, d.endpoint);
        let Some(advertised) = self.udp.get(endpoint).map(|e| e.advertised) else {
            return;
        };
        let mut buf = std::mem::take(&mut self.buf);
        let mut read = 0;
        while read < READ_BUDGET {
            let Some(d) = self.direct.get_mut(&token) else {
                break;
            };
            match super::io::recv_gro(d.sock.as_raw_fd(), &mut buf) {
                Ok(None) => {
                    read += 1;
                    self.stats.dropped(DropReason::Oversized);
                }
                Ok(Some((n, control))) => {
                    d.last_rx = now;
                    read += 1;
                    let arrival = RxClock::now().arrival(control.rx_ns, self.floor, now);
                    // The shared socket's rule (`RecvBatch`): split, drop what no slot holds.
                    let (mut parts, mut oversized) = (0, 0);
                    for (off, len) in super::io::gro_segments(n, control.seg) {
                        parts += 1;
                        match buf.get(off..off + len) {
                            Some(bytes) if len <= super::io::SLOT => self.media.handle_receive(
                                Protocol::Udp,
                                source,
                                advertised,
                                bytes,
                                arrival,
                                now,
                            ),
                            _ => oversized += 1,
                        }
                    }
                    if parts > 1 {
                        self.stats.recv_coalesced(parts);
                    }
                    self.stats.dropped_n(DropReason::Oversized, oversized);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors (e.g. port unreachable) surface here; the flow's fate is the
                // session's (consent), the socket stays until the sweep.
                Err(_) => break,
            }
        }
        self.buf = buf;
        if read >= READ_BUDGET {
            self.direct_backlog.push(token);
            self.backlog = true;
        }
        self.flush(now);
    }

    /// Closes direct-path sockets whose flow is idle or whose session is gone.
    fn sweep_direct(&mut self, now: Instant) {
        self.next_direct_sweep = now + DIRECT_SWEEP;
        let stale: Vec<Token> = self
            .direct
            .iter()
            .filter(|(_, d)| {
                now.saturating_duration_since(d.last_rx) > DIRECT_IDLE
                    || !self.media.knows_source(Protocol::Udp, d.source)
            })
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            if let Some(mut d) = self.direct.remove(&t) {
                let _ = self.poll.registry().deregister(&mut d.sock);
                self.direct_by_source.remove(&d.source);
            }
        }
        self.stats.set_direct_flows(self.direct.len());
    }

    fn handover(&self, owner: usize, h: Handover) {
        handover(&self.peers, &self.stats, owner, h);
    }

    fn accept(&mut self, idx: usize) {
        for _ in 0..READ_BUDGET {
            let Some((l, endpoint)) = self.listeners.get(idx) else {
                return;
            };
            let advertised = endpoint.advertised;
            match l.accept() {
                Ok((stream, peer)) => {
                    // A wildcard listener advertises per-IP candidates: the address the
                    // client reached is the candidate (ICE checks compare them).
                    let local = match stream.local_addr() {
                        Ok(a) if endpoint.local.ip().is_unspecified() => a,
                        _ => advertised,
                    };
                    let _ = stream.set_nodelay(true);
                    self.add_conn(stream, peer, local, false);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(worker = self.id, error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn add_conn(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        owned: bool,
    ) -> Option<Token> {
        let token = Token(self.next_conn);
        self.next_conn = if self.next_conn == usize::MAX {
            CONN_BASE
        } else {
            self.next_conn + 1
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::debug!(worker = self.id, error = %e, "cannot register tcp connection");
            return None;
        }
        self.conns.insert(
            token,
            TcpConn {
                stream,
                peer,
                local,
                decoder: Rfc4571Decoder::new(TCP_BUFFER),
                out: Vec::new(),
                owned,
            },
        );
        if owned {
            self.conn_by_peer.insert(peer, token);
        }
        Some(token)
    }

    fn read_conn(&mut self, token: Token, now: Instant) {
        let mut closed = false;
        let mut data = Vec::new();
        {
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            for _ in 0..READ_BUDGET {
                match c.stream.read(&mut self.buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => data.extend_from_slice(&self.buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if !data.is_empty() {
            self.feed_conn(token, &data, now);
        }
        if closed {
            self.close_conn(token);
        }
    }

    /// Deframes bytes from a connection; the first frame decides which worker owns it.
    fn feed_conn(&mut self, token: Token, data: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.decoder.push(data).is_err() {
            self.stats.dropped(DropReason::TcpOverflow);
            self.close_conn(token);
            return;
        }
        loop {
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            if !c.owned {
                // Peek the first frame for the ufrag without consuming it.
                let Some(frame) = c.decoder.next_frame() else {
                    return;
                };
                let owner =
                    rtcd_proto::stun::binding_request_local_ufrag(&frame).and_then(worker_of_ufrag);
                match owner {
                    Some(w) if w != self.id && w < self.peers.len() => {
                        let Some(mut c) = self.conns.remove(&token) else {
                            return;
                        };
                        let _ = self.poll.registry().deregister(&mut c.stream);
                        // The peeked frame, then everything after it as received (a frame
                        // cut across reads included: the owner's decoder completes it).
                        let mut buffered = Vec::new();
                        let _ = encode_frame(&frame, &mut buffered);
                        buffered.extend_from_slice(&c.decoder.take_rest());
                        let h = Handover::Tcp {
                            stream: std::net::TcpStream::from(c.stream),
                            peer: c.peer,
                            local: c.local,
                            buffered,
                        };
                        self.handover(w, h);
                        return;
                    }
                    Some(_) => {
                        c.owned = true;
                        let peer = c.peer;
                        let local = c.local;
                        self.conn_by_peer.insert(peer, token);
                        self.media
                            .handle_receive(Protocol::Tcp, peer, local, &frame, now, now);
                        self.flush(now);
                    }
                    None => {
                        // Not ICE: nothing we serve.
                        self.stats.dropped(DropReason::UnknownSource);
                        self.close_conn(token);
                        return;
                    }
                }
                continue;
            }
            let Some(frame) = c.decoder.next_frame() else {
                return;
            };
            let (peer, local) = (c.peer, c.local);
            self.media
                .handle_receive(Protocol::Tcp, peer, local, &frame, now, now);
            self.flush(now);
        }
    }

    fn flush_conn(&mut self, token: Token) {
        let mut failed = false;
        if let Some(c) = self.conns.get_mut(&token) {
            while !c.out.is_empty() {
                match c.stream.write(&c.out) {
                    Ok(0) => {
                        failed = true;
                        break;
                    }
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            self.close_conn(token);
        }
    }

    fn close_conn(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if self.conn_by_peer.get(&c.peer) == Some(&token) {
                self.conn_by_peer.remove(&c.peer);
            }
        }
    }

    /// Ends the current input batch and sends what the sessions produced.
    fn flush(&mut self, now: Instant) {
        self.media.end_input(now);
        self.media.drain_transmits(&mut self.out);
        let mut out = std::mem::take(&mut self.out);
        for t in out.drain(..) {
            match t.proto {
                Protocol::Udp => {
                    let sock = self
                        .udp
                        .iter()
                        .position(|e| e.advertised == t.source)
                        .or_else(|| {
                            self.udp
                                .iter()
                                .position(|e| e.advertised.is_ipv4() == t.destination.is_ipv4())
                        });
                    let Some(sock) = sock else {
                        self.stats.dropped(DropReason::SendFailed);
                        continue;
                    };
                    self.io.send(sock, t.destination, t.contents);
                }
                _ => {
                    let Some(&token) = self.conn_by_peer.get(&t.destination) else {
                        self.stats.dropped(DropReason::SendFailed);
                        continue;
                    };
                    if let Some(c) = self.conns.get_mut(&token) {
                        if c.out.len() + t.contents.len() + 2 > TCP_BUFFER
                            || encode_frame(&t.contents, &mut c.out).is_err()
                        {
                            self.stats.dropped(DropReason::TcpOverflow);
                            continue;
                        }
                    }
                    self.flush_conn(token);
                }
            }
        }
        self.out = out;
        for _ in 0..self.io.flush() {
            self.stats.dropped(DropReason::SendFailed);
        }
        self.media.release_deferred(Instant::now());
        self.media.drain_peer_msgs(&mut self.peer_buf);
        for (w, m) in self.peer_buf.drain(..) {
            let Some(p) = self.peers.get(w) else {
                continue;
            };
            if p.peer.try_send(m).is_err() {
                tracing::warn!(
                    worker = self.id,
                    to = w,
                    "peer queue full: call-state message dropped"
                );
                self.stats.dropped(DropReason::PeerQueueFull);
            } else if let Some(x) = self.to_wake.get_mut(w) {
                *x = true;
            }
        }
        self.media.drain_forwarded(&mut self.fwd_buf);
        for (w, f) in self.fwd_buf.drain(..) {
            let Some(Some(ring)) = self.rings_out.get(w) else {
                continue;
            };
            if ring.push(f).is_err() {
                self.stats.dropped(DropReason::RingFull);
            } else {
                self.stats.fanout();
                if let Some(x) = self.to_wake.get_mut(w) {
                    *x = true;
                }
            }
        }
    }
}

/// Passes a packet or connection to the worker that owns its session.
fn handover(peers: &[WorkerHandle], stats: &WorkerStats, owner: usize, h: Handover) {
    let Some(peer) = peers.get(owner) else {
        return;
    };
    match peer.handovers.try_send(h) {
        Ok(()) => {
            stats.handover();
            peer.wake();
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            stats.dropped(DropReason::HandoverFull);
        }
    }
}
